//! The integer first layer against the float network it stands for.
//!
//! References: the float `avgpool(conv(x))` computed by the unfused layers (stride-1
//! [`Conv2d`] then [`pool::avg_pool2x2`]) and the float backward pass of [`LeNet5`]'s stage 1.
//! Weights and gradients are chosen as exact multiples of `1/S_w` and `1/S_g` so that the
//! encodings are exact and the two sides must agree to `f32` rounding.

use cryptonn::nn::conv::{Conv2d, Conv2dConfig};
use cryptonn::nn::data::{Dataset, LabelPermutation, PixelNormalization, IMAGE_PIXELS};
use cryptonn::nn::first_layer::{FirstLayerBackend, QuantConfig, QuantizedFirstLayer};
use cryptonn::nn::init::{seeded_rng, RngStream};
use cryptonn::nn::lenet::{LeNet5, LeNetConfig};
use cryptonn::nn::{pool, NnError};
use ndarray::{Array2, Array4};
use rand::Rng;

fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut rng = seeded_rng(seed, RngStream::Weights);
    let images = (0..n * IMAGE_PIXELS)
        .map(|i| if i % 3 == 0 { 0 } else { rng.gen::<u8>() })
        .collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset::new(images, labels).expect("valid synthetic data")
}

/// A LeNet whose conv1 weights are multiples of `1 / S_w`, and biases non-zero.
fn model_with_exact_weights(q: &QuantConfig) -> LeNet5 {
    let mut net = LeNet5::new(LeNetConfig::default(), 3);
    net.conv1
        .weight
        .mapv_inplace(|w| (f64::from(w) * q.scale_w).round() as f32 / q.scale_w as f32);
    net.conv1.bias = ndarray::Array1::from_vec(vec![0.1, -0.2, 0.3, 0.0, 0.05, -0.5]);
    net
}

#[test]
fn integer_forward_equals_float_conv_then_avgpool() {
    let q = QuantConfig::default();
    let norm = PixelNormalization::default();
    let data = synthetic(5, 1);
    let net = model_with_exact_weights(&q);
    let mut backend =
        QuantizedFirstLayer::new(&data, LabelPermutation::identity(), q, norm).unwrap();
    let batch = [4, 0, 2];
    let wq = q.encode_weights(net.conv1.weight.view()).unwrap();
    let z = backend.forward(&batch, wq.view()).unwrap();
    assert_eq!(z.dim(), (3, 6, 14, 14));
    let p = q
        .decode_forward(z.view(), net.conv1.bias.as_slice().unwrap())
        .unwrap();

    // Unfused float reference: stride-1 convolution, then 2x2 average pooling.
    let plain = Conv2d {
        config: Conv2dConfig::default(),
        weight: net.conv1.weight.clone(),
        bias: net.conv1.bias.clone(),
    };
    let x = LeNet5::input(&data, &batch, &norm);
    let (c, _) = plain.forward(x.view());
    assert_eq!(c.dim(), (3, 6, 28, 28));
    let want = pool::avg_pool2x2(c.view());
    let err = p
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-4, "max |integer - float| = {err}");
    // ...and the fused float stage 1 agrees too.
    let (s1, _) = net.stage1_forward(x.view());
    let err = p
        .iter()
        .zip(s1.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-4, "max |integer - fused float| = {err}");
}

#[test]
fn integer_weight_gradient_equals_float_gradient() {
    let q = QuantConfig::default();
    let norm = PixelNormalization::default();
    let data = synthetic(6, 2);
    let net = model_with_exact_weights(&q);
    let mut backend =
        QuantizedFirstLayer::new(&data, LabelPermutation::identity(), q, norm).unwrap();
    let batch = [1, 5, 3, 0];
    // dP: multiples of 1 / S_g, so dq is exact.
    let mut rng = seeded_rng(9, RngStream::Weights);
    let dq_ref = Array4::from_shape_simple_fn((4, 6, 14, 14), || rng.gen_range(-3000i64..3000));
    let dp = dq_ref.mapv(|v| (v as f64 / q.scale_grad) as f32);
    let dq = q.encode_output_gradient(dp.view()).unwrap();
    assert_eq!(dq, dq_ref);
    let g = backend.weight_gradient(&batch, dq.view()).unwrap();
    assert_eq!(g.dim(), (6, 25));
    let dw = q.decode_weight_gradient(g.view());

    let x = LeNet5::input(&data, &batch, &norm);
    let (_, cache) = net.stage1_forward(x.view());
    let want = net.stage1_backward(&cache, dp.view());
    let scale = want.weight.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = dw
        .iter()
        .zip(want.weight.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        err <= 1e-5 * scale.max(1.0),
        "max |ΔdW| = {err}, scale {scale}"
    );
}

#[test]
fn output_error_is_pq_minus_permuted_one_hot() {
    let q = QuantConfig::default();
    let data = synthetic(12, 3);
    let perm = LabelPermutation::from_seed(5);
    let mut backend =
        QuantizedFirstLayer::new(&data, perm.clone(), q, PixelNormalization::default()).unwrap();
    let batch = [7, 11];
    let pq = Array2::from_shape_fn((2, 10), |(i, k)| (i * 10 + k) as i64);
    let eq = backend.output_error(&batch, pq.view()).unwrap();
    for (r, &i) in batch.iter().enumerate() {
        let hot = usize::from(perm.apply(data.label(i)));
        for k in 0..10 {
            let want = pq[[r, k]] - if k == hot { 4096 } else { 0 };
            assert_eq!(eq[[r, k]], want);
        }
    }
}

#[test]
fn a_value_beyond_its_bound_is_an_error_naming_the_layer() {
    let q = QuantConfig {
        forward_bound: 1000,
        ..QuantConfig::default()
    };
    let data = synthetic(2, 4);
    let net = LeNet5::new(LeNetConfig::default(), 1);
    let mut backend = QuantizedFirstLayer::new(
        &data,
        LabelPermutation::identity(),
        q,
        PixelNormalization::default(),
    )
    .unwrap();
    let wq = q.encode_weights(net.conv1.weight.view()).unwrap();
    let err = backend.forward(&[0, 1], wq.view()).unwrap_err();
    assert!(
        matches!(
            err,
            NnError::BoundExceeded {
                layer: "conv1 forward z",
                bound: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("--scale-w"), "{err}");

    let q = QuantConfig {
        gradient_bound: 10,
        ..QuantConfig::default()
    };
    let mut backend = QuantizedFirstLayer::new(
        &data,
        LabelPermutation::identity(),
        q,
        PixelNormalization::default(),
    )
    .unwrap();
    let dq = Array4::from_elem((1, 6, 14, 14), 100i64);
    let err = backend.weight_gradient(&[1], dq.view()).unwrap_err();
    assert!(
        matches!(
            err,
            NnError::BoundExceeded {
                layer: "conv1 weight gradient G",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("--scale-grad"), "{err}");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let q = QuantConfig::default();
    let data = synthetic(3, 5);
    let mut backend = QuantizedFirstLayer::new(
        &data,
        LabelPermutation::identity(),
        q,
        PixelNormalization::default(),
    )
    .unwrap();
    let wq = Array2::<i64>::zeros((6, 25));
    assert!(matches!(
        backend.forward(&[0, 3], wq.view()),
        Err(NnError::IndexOutOfRange { index: 3, len: 3 })
    ));
    let bad = Array2::<i64>::zeros((6, 24));
    assert!(matches!(
        backend.forward(&[0], bad.view()),
        Err(NnError::Shape { .. })
    ));
    let pq = Array2::<i64>::zeros((2, 10));
    assert!(matches!(
        backend.output_error(&[0], pq.view()),
        Err(NnError::Shape { .. })
    ));
    let nan = Array2::from_elem((6, 25), f32::NAN);
    assert!(matches!(
        q.encode_weights(nan.view()),
        Err(NnError::Encoding {
            what: "conv1 weights",
            ..
        })
    ));
    let bad_scale = QuantConfig {
        scale_grad: 0.0,
        ..q
    };
    assert!(matches!(
        QuantizedFirstLayer::new(
            &data,
            LabelPermutation::identity(),
            bad_scale,
            PixelNormalization::default()
        ),
        Err(NnError::InvalidConfig(_))
    ));
}
