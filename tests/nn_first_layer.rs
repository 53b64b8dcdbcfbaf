//! The integer first layer against the float network it stands for.
//!
//! References: the float `avgpool(conv(x))` computed by the unfused layers (stride-1
//! [`Conv2d`] then [`pool::avg_pool2x2`]) and the float backward pass of the model's first
//! layer ([`Model::first_forward`], [`Model::first_backward`]), for LeNet-5 and for other
//! geometries (dense; strided, padded, multi-channel convolution with a 3x3 pool) on
//! standardised data. Weights and gradients are chosen as exact multiples of `1/S_w` and
//! `1/S_g` so that the encodings are exact and the two sides must agree to `f32` rounding.

use cryptonn::nn::conv::{Conv2d, Conv2dConfig};
use cryptonn::nn::data::{
    Dataset, InputEncoding, InputShape, LabelPermutation, Standardization, IMAGE_PIXELS,
};
use cryptonn::nn::first_layer::{
    FirstLayerBackend, FirstLayerSpec, QuantConfig, QuantizedFirstLayer,
};
use cryptonn::nn::init::{seeded_rng, RngStream};
use cryptonn::nn::lenet::LeNetConfig;
use cryptonn::nn::model::{LayerSpec, Model, ModelSpec};
use cryptonn::nn::{pool, NnError};
use ndarray::{Array2, Ix4};
use rand::Rng;

fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut rng = seeded_rng(seed, RngStream::Weights);
    let images = (0..n * IMAGE_PIXELS)
        .map(|i| if i % 3 == 0 { 0 } else { rng.gen::<u8>() })
        .collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset::new(images, labels).expect("valid synthetic data")
}

/// A model of `spec` whose first-layer weights are multiples of `1 / S_w`, and biases
/// non-zero.
fn model_with_exact_weights(spec: &ModelSpec, q: &QuantConfig) -> Model {
    let mut net = Model::new(spec, 3).expect("valid spec");
    let mut params = net.parameters_mut();
    for w in params[0].iter_mut() {
        *w = (f64::from(*w) * q.scale_w).round() as f32 / q.scale_w as f32;
    }
    for (k, b) in params[1].iter_mut().enumerate() {
        *b = [0.1, -0.2, 0.3, 0.0, 0.05, -0.5][k % 6];
    }
    net
}

fn max_diff<'a>(a: impl IntoIterator<Item = &'a f32>, b: impl IntoIterator<Item = &'a f32>) -> f32 {
    a.into_iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn integer_forward_equals_float_conv_then_avgpool() {
    let q = QuantConfig::default();
    let data = synthetic(5, 1);
    let net = model_with_exact_weights(&ModelSpec::lenet5(LeNetConfig::default()), &q);
    let mut backend = QuantizedFirstLayer::new(
        &data,
        LabelPermutation::identity(10),
        q,
        FirstLayerSpec::lenet5(),
    )
    .unwrap();
    let batch = [4, 0, 2];
    let wq = q.encode_weights(net.first_weight()).unwrap();
    let z = backend.forward(&batch, wq.view()).unwrap();
    assert_eq!(z.dim(), (3, 6 * 14 * 14));
    let p = q
        .decode_forward(&FirstLayerSpec::lenet5(), z.view(), net.first_bias())
        .unwrap();

    // Unfused float reference: stride-1 convolution, then 2x2 average pooling.
    let plain = Conv2d {
        config: Conv2dConfig::default(),
        weight: net.first_weight().to_owned(),
        bias: ndarray::Array1::from_vec(net.first_bias().to_vec()),
    };
    let x = net
        .input(&data, &batch)
        .into_dimensionality::<Ix4>()
        .unwrap();
    assert_eq!(x.dim(), (3, 1, 32, 32));
    let (c, _) = plain.forward(x.view());
    assert_eq!(c.dim(), (3, 6, 28, 28));
    let want = pool::avg_pool2x2(c.view());
    let err = p
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-4, "max |integer - float| = {err}");
    // ...and the fused float first layer agrees too.
    let (s1, _) = net.first_forward(x.view().into_dyn());
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
    let data = synthetic(6, 2);
    let net = model_with_exact_weights(&ModelSpec::lenet5(LeNetConfig::default()), &q);
    let mut backend = QuantizedFirstLayer::new(
        &data,
        LabelPermutation::identity(10),
        q,
        FirstLayerSpec::lenet5(),
    )
    .unwrap();
    let batch = [1, 5, 3, 0];
    // dP: multiples of 1 / S_g, so dq is exact.
    let mut rng = seeded_rng(9, RngStream::Weights);
    let dq_ref = Array2::from_shape_simple_fn((4, 6 * 196), || rng.gen_range(-3000i64..3000));
    let dp = dq_ref.mapv(|v| (v as f64 / q.scale_grad) as f32);
    let dq = q.encode_output_gradient(dp.view()).unwrap();
    assert_eq!(dq, dq_ref);
    let g = backend.weight_gradient(&batch, dq.view()).unwrap();
    assert_eq!(g.dim(), (6, 25));
    let dw = q.decode_weight_gradient(&FirstLayerSpec::lenet5(), g.view());

    let x = net.input(&data, &batch);
    let (_, cache) = net.first_forward(x.view());
    let dp4 = net.unflatten_first(dp).unwrap();
    let (want, _) = net.first_backward(&cache, dp4.view());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = max_diff(dw.iter(), want.iter());
    assert!(
        err <= 1e-5 * scale.max(1.0),
        "max |ΔdW| = {err}, scale {scale}"
    );
}

#[test]
fn output_error_is_pq_minus_permuted_one_hot() {
    let q = QuantConfig::default();
    let data = synthetic(12, 3);
    let perm = LabelPermutation::from_seed(5, 10);
    let mut backend =
        QuantizedFirstLayer::new(&data, perm.clone(), q, FirstLayerSpec::lenet5()).unwrap();
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
    let net = Model::lenet5(LeNetConfig::default(), 1);
    let mut backend = QuantizedFirstLayer::new(
        &data,
        LabelPermutation::identity(10),
        q,
        FirstLayerSpec::lenet5(),
    )
    .unwrap();
    let wq = q.encode_weights(net.first_weight()).unwrap();
    let err = backend.forward(&[0, 1], wq.view()).unwrap_err();
    assert!(
        matches!(
            err,
            NnError::BoundExceeded {
                layer: "first-layer forward z",
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
        LabelPermutation::identity(10),
        q,
        FirstLayerSpec::lenet5(),
    )
    .unwrap();
    let dq = Array2::from_elem((1, 6 * 196), 100i64);
    let err = backend.weight_gradient(&[1], dq.view()).unwrap_err();
    assert!(
        matches!(
            err,
            NnError::BoundExceeded {
                layer: "first-layer weight gradient G",
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
        LabelPermutation::identity(10),
        q,
        FirstLayerSpec::lenet5(),
    )
    .unwrap();
    let wq = Array2::<i64>::zeros((6, 25));
    assert!(matches!(
        backend.forward(&[0, 3], wq.view()),
        Err(NnError::IndexOutOfRange { index: 3, len: 3 })
    ));
    let bad = Array2::<i64>::zeros((6, 24));
    let dq = Array2::<i64>::zeros((2, 6 * 196));
    assert!(matches!(
        backend.weight_gradient(&[0], dq.view()),
        Err(NnError::Shape { .. })
    ));
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
            what: "first-layer weights",
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
            LabelPermutation::identity(10),
            bad_scale,
            FirstLayerSpec::lenet5()
        ),
        Err(NnError::InvalidConfig(_))
    ));
}

/// A dataset of `f32` features with a fitted standardisation.
fn standardized(shape: InputShape, n: usize, seed: u64) -> Dataset {
    let mut rng = seeded_rng(seed, RngStream::Weights);
    let values: Vec<f32> = (0..n * shape.len())
        .map(|k| rng.gen_range(-5.0f32..20.0) + (k % 7) as f32)
        .collect();
    let table = cryptonn::nn::datasets::Table {
        features: shape.len(),
        classes: 3,
        values: values.clone(),
        labels: (0..n).map(|i| (i % 3) as u8).collect(),
        image_shape: None,
    };
    let std = Standardization::fit(&table).expect("fit");
    let labels = (0..n).map(|i| (i % 3) as u8).collect();
    Dataset::from_f32(shape, 3, values, labels, InputEncoding::Standardized(std)).expect("dataset")
}

/// For a dense first layer and for a strided, padded two-channel convolution with a folded
/// 3x3 average pool, on standardised data: the decoded integer forward equals the float
/// first layer, and the decoded integer gradient equals the float gradient.
#[test]
fn generic_first_layers_match_their_float_layers() {
    let image = InputShape::Image {
        channels: 2,
        height: 13,
        width: 11,
    };
    let conv = ModelSpec {
        name: "conv".into(),
        input: image,
        classes: 3,
        init: Default::default(),
        layers: vec![
            LayerSpec::Conv2d {
                in_channels: 2,
                out_channels: 4,
                kernel: 3,
                stride: 2,
                padding: 1,
            },
            LayerSpec::AvgPool2d {
                kernel: 3,
                stride: 3,
            },
            LayerSpec::Relu,
            LayerSpec::Flatten,
            LayerSpec::Linear {
                inputs: 4 * 2 * 2,
                outputs: 3,
            },
        ],
    };
    let dense = ModelSpec::builtin("mlp", image, 3).unwrap();
    // S_x = 2^12 keeps the input rounding below the tolerance.
    let q = QuantConfig {
        scale_x: 4096.0,
        forward_bound: 1 << 40,
        gradient_bound: 1 << 50,
        ..QuantConfig::default()
    };
    for spec in [conv, dense] {
        let data = standardized(image, 7, 11);
        let net = model_with_exact_weights(&spec, &q);
        let first = *net.first_layer();
        let mut backend =
            QuantizedFirstLayer::new(&data, LabelPermutation::identity(3), q, first).unwrap();
        assert_eq!(backend.classes(), 3);
        let batch = [6, 0, 3];
        let wq = q.encode_weights(net.first_weight()).unwrap();
        let z = backend.forward(&batch, wq.view()).unwrap();
        let p = q
            .decode_forward(&first, z.view(), net.first_bias())
            .unwrap();
        let x = net.input(&data, &batch);
        let (want, cache) = net.first_forward(x.view());
        assert_eq!(want.len(), p.len(), "{}", spec.name);
        let err = max_diff(p.iter(), want.iter());
        assert!(err < 2e-3, "{}: max |integer - float| = {err}", spec.name);

        let mut rng = seeded_rng(4, RngStream::Weights);
        let dq_ref = Array2::from_shape_simple_fn((3, first.outputs_per_sample()), || {
            rng.gen_range(-3000i64..3000)
        });
        let dp = dq_ref.mapv(|v| (v as f64 / q.scale_grad) as f32);
        let g = backend
            .weight_gradient(&batch, q.encode_output_gradient(dp.view()).unwrap().view())
            .unwrap();
        let dw = q.decode_weight_gradient(&first, g.view());
        let dp = net.unflatten_first(dp).unwrap();
        let (want, _) = net.first_backward(&cache, dp.view());
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = max_diff(dw.iter(), want.iter());
        assert!(
            err <= 2e-3 * scale.max(1.0),
            "{}: max |ΔdW| = {err}",
            spec.name
        );
    }
}

#[test]
fn out_of_range_features_are_errors_naming_the_feature() {
    let shape = InputShape::Flat(4);
    let values = vec![0.0f32, 1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0];
    let std = Standardization::from_parts(vec![0.0; 4], vec![1.0; 4], 2.5).unwrap();
    let data = Dataset::from_f32(
        shape,
        2,
        values,
        vec![0, 1],
        InputEncoding::Standardized(std),
    )
    .unwrap();
    let err = data.encode_sample(0, 16.0).unwrap_err();
    assert!(
        matches!(
            err,
            NnError::FeatureOutOfRange {
                sample: 0,
                feature: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(data.encode_sample(1, 16.0).unwrap(), vec![16; 4]);
    // A NaN never enters a dataset.
    assert!(Dataset::from_f32(
        shape,
        2,
        vec![0.0, f32::NAN, 0.0, 0.0],
        vec![0],
        InputEncoding::default()
    )
    .is_err());
    // A label beyond the class count neither.
    assert!(Dataset::from_f32(shape, 2, vec![0.0; 4], vec![2], InputEncoding::default()).is_err());
}
