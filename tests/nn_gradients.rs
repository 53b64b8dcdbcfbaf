//! Shapes and gradient checks per layer, and for whole declared models: LeNet-5 in both layer
//! orders, the built-in MLP and small CNN, and a model using every layer.
//!
//! Reference values are central finite differences `(L(θ + h) - L(θ - h)) / 2h` of a scalar
//! loss. For the linear layers (convolution, pooling, dense) the probe loss is
//! `L = Σ y ⊙ R` for a fixed random `R`, which is linear in every parameter and input, so the
//! difference quotient is exact up to `f32` rounding. The whole-network check uses the summed
//! softmax cross-entropy with tanh (smooth, so no ReLU kink sits between `θ ± h`).

use cryptonn::nn::activation::Activation;
use cryptonn::nn::conv::{avg_pooled_backward, avg_pooled_forward, Conv2d, Conv2dConfig};
use cryptonn::nn::data::InputShape;
use cryptonn::nn::init::{seeded_rng, Init, RngStream};
use cryptonn::nn::lenet::{LayerOrder, LeNetConfig, PoolKind};
use cryptonn::nn::linear::Linear;
use cryptonn::nn::loss::{cross_entropy, softmax_cross_entropy_grad};
use cryptonn::nn::model::{LayerSpec, Model, ModelSpec};
use cryptonn::nn::pool;
use ndarray::{Array, Array2, Array4, ArrayD, Dimension};

fn random<D: Dimension>(shape: D, seed: u64) -> Array<f32, D> {
    let mut rng = seeded_rng(seed, RngStream::Weights);
    Init::HeUniform.sample(shape, 6, 0, &mut rng)
}

fn dot<D: Dimension>(a: &Array<f32, D>, b: &Array<f32, D>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// Central difference of `loss` with respect to element `i` of `param`.
fn central_diff(param: &mut [f32], i: usize, h: f32, mut loss: impl FnMut(&[f32]) -> f64) -> f64 {
    let orig = param[i];
    param[i] = orig + h;
    let lp = loss(param);
    param[i] = orig - h;
    let lm = loss(param);
    param[i] = orig;
    (lp - lm) / (2.0 * f64::from(h))
}

fn assert_close(what: &str, analytic: f64, numeric: f64, tol: f64) {
    let err = (analytic - numeric).abs() / (1.0 + numeric.abs());
    assert!(
        err < tol,
        "{what}: analytic {analytic} vs finite difference {numeric} (error {err})"
    );
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    for (stride, padding) in [(1, 0), (2, 1)] {
        let cfg = Conv2dConfig {
            in_channels: 2,
            out_channels: 3,
            kernel: 3,
            stride,
            padding,
        };
        let mut rng = seeded_rng(10, RngStream::Weights);
        let conv = Conv2d::new(cfg, Init::HeUniform, &mut rng);
        let x = random(ndarray::Ix4(2, 2, 7, 7), 11);
        let (y, cols) = conv.forward(x.view());
        let oh = cfg.output_side(7).unwrap();
        assert_eq!(y.dim(), (2, 3, oh, oh));
        let r = random(y.raw_dim(), 12);
        let (g, dx) = conv.backward(cols.view(), r.view(), [2, 2, 7, 7], true);
        assert_eq!(g.weight.dim(), (3, 18));
        assert_eq!(g.bias.dim(), 3);
        let dx = dx.unwrap();
        assert_eq!(dx.dim(), x.dim());

        let probe = |c: &Conv2d, x: &Array4<f32>| dot(&c.forward(x.view()).0, &r);
        for i in [0, 7, 17, 30, 53] {
            let mut w = conv.weight.clone().into_raw_vec_and_offset().0;
            let num = central_diff(&mut w, i, 1e-2, |w| {
                let mut c = conv.clone();
                c.weight = Array2::from_shape_vec(c.weight.raw_dim(), w.to_vec()).unwrap();
                probe(&c, &x)
            });
            assert_close(
                "conv dW",
                f64::from(g.weight.as_slice().unwrap()[i]),
                num,
                1e-3,
            );
        }
        for f in 0..3 {
            let mut b = conv.bias.to_vec();
            let num = central_diff(&mut b, f, 1e-2, |b| {
                let mut c = conv.clone();
                c.bias = Array::from_vec(b.to_vec());
                probe(&c, &x)
            });
            assert_close("conv db", f64::from(g.bias[f]), num, 1e-3);
        }
        for i in [0, 20, 49, 97, 150] {
            let mut xv = x.clone().into_raw_vec_and_offset().0;
            let num = central_diff(&mut xv, i, 1e-2, |xv| {
                probe(
                    &conv,
                    &Array4::from_shape_vec(x.raw_dim(), xv.to_vec()).unwrap(),
                )
            });
            assert_close("conv dx", f64::from(dx.as_slice().unwrap()[i]), num, 1e-3);
        }
    }
}

#[test]
fn avg_pooled_conv_gradients_match_finite_differences() {
    let cfg = Conv2dConfig {
        in_channels: 2,
        out_channels: 3,
        kernel: 5,
        stride: 2,
        padding: 0,
    };
    let mut rng = seeded_rng(20, RngStream::Weights);
    let conv = Conv2d::new(cfg, Init::HeUniform, &mut rng);
    let x = random(ndarray::Ix4(2, 2, 14, 14), 21);
    let (y, cols) = avg_pooled_forward(&conv, x.view());
    assert_eq!(y.dim(), (2, 3, 5, 5));
    let r = random(y.raw_dim(), 22);
    let (g, dx) = avg_pooled_backward(&conv, cols.view(), r.view(), [2, 2, 14, 14], true);
    let dx = dx.unwrap();
    let probe = |c: &Conv2d, x: &Array4<f32>| dot(&avg_pooled_forward(c, x.view()).0, &r);
    for i in [0, 13, 26, 49, 149] {
        let mut w = conv.weight.clone().into_raw_vec_and_offset().0;
        let num = central_diff(&mut w, i, 1e-2, |w| {
            let mut c = conv.clone();
            c.weight = Array2::from_shape_vec(c.weight.raw_dim(), w.to_vec()).unwrap();
            probe(&c, &x)
        });
        assert_close(
            "fused dW",
            f64::from(g.weight.as_slice().unwrap()[i]),
            num,
            1e-3,
        );
    }
    for i in [0, 15, 100, 195, 391] {
        let mut xv = x.clone().into_raw_vec_and_offset().0;
        let num = central_diff(&mut xv, i, 1e-2, |xv| {
            probe(
                &conv,
                &Array4::from_shape_vec(x.raw_dim(), xv.to_vec()).unwrap(),
            )
        });
        assert_close("fused dx", f64::from(dx.as_slice().unwrap()[i]), num, 1e-3);
    }
}

#[test]
fn pooling_gradients_match_finite_differences() {
    let x = random(ndarray::Ix4(2, 3, 6, 6), 30);
    let r = random(ndarray::Ix4(2, 3, 3, 3), 31);
    let (m, arg) = pool::max_pool2x2(x.view());
    assert_eq!(m.dim(), (2, 3, 3, 3));
    let d_avg = pool::avg_pool2x2_backward(r.view());
    let d_max = pool::max_pool2x2_backward(r.view(), arg.view());
    for i in [0, 5, 37, 100, 215] {
        let mut xv = x.clone().into_raw_vec_and_offset().0;
        let num = central_diff(&mut xv, i, 1e-3, |xv| {
            let xa = Array4::from_shape_vec(x.raw_dim(), xv.to_vec()).unwrap();
            dot(&pool::avg_pool2x2(xa.view()), &r)
        });
        assert_close(
            "avgpool dx",
            f64::from(d_avg.as_slice().unwrap()[i]),
            num,
            1e-3,
        );
        // Random inputs have no ties, so a step of 1e-3 does not move the maximum.
        let num = central_diff(&mut xv, i, 1e-3, |xv| {
            let xa = Array4::from_shape_vec(x.raw_dim(), xv.to_vec()).unwrap();
            dot(&pool::max_pool2x2(xa.view()).0, &r)
        });
        assert_close(
            "maxpool dx",
            f64::from(d_max.as_slice().unwrap()[i]),
            num,
            1e-3,
        );
    }
}

#[test]
fn generic_pooling_gradients_match_finite_differences() {
    let cfg = pool::Pool2dConfig {
        kernel: 3,
        stride: 2,
    };
    let x = random(ndarray::Ix4(2, 2, 7, 8), 32);
    let r = random(ndarray::Ix4(2, 2, 3, 3), 33);
    let (m, arg) = pool::max_pool(x.view(), cfg);
    assert_eq!(m.dim(), (2, 2, 3, 3));
    let d_avg = pool::avg_pool_backward(r.view(), cfg, (7, 8));
    let d_max = pool::max_pool_backward(r.view(), arg.view(), (7, 8));
    let rb = random(ndarray::Ix4(2, 2, 5, 6), 34);
    let d_box = pool::box_mean_backward(rb.view(), 2, 2, (7, 8));
    for i in [0, 9, 30, 77, 150, 223] {
        let mut xv = x.clone().into_raw_vec_and_offset().0;
        let num = central_diff(&mut xv, i, 1e-3, |xv| {
            let xa = Array4::from_shape_vec(x.raw_dim(), xv.to_vec()).unwrap();
            dot(&pool::avg_pool(xa.view(), cfg), &r)
        });
        assert_close(
            "avg pool 3/2 dx",
            f64::from(d_avg.as_slice().unwrap()[i]),
            num,
            1e-3,
        );
        let num = central_diff(&mut xv, i, 1e-3, |xv| {
            let xa = Array4::from_shape_vec(x.raw_dim(), xv.to_vec()).unwrap();
            dot(&pool::max_pool(xa.view(), cfg).0, &r)
        });
        assert_close(
            "max pool 3/2 dx",
            f64::from(d_max.as_slice().unwrap()[i]),
            num,
            1e-3,
        );
        let num = central_diff(&mut xv, i, 1e-3, |xv| {
            let xa = Array4::from_shape_vec(x.raw_dim(), xv.to_vec()).unwrap();
            dot(&pool::box_mean(xa.view(), 2, 2), &rb)
        });
        assert_close(
            "box mean dx",
            f64::from(d_box.as_slice().unwrap()[i]),
            num,
            1e-3,
        );
    }
}

#[test]
fn linear_gradients_match_finite_differences() {
    let mut rng = seeded_rng(40, RngStream::Weights);
    let layer = Linear::new(7, 4, Init::GlorotUniform, &mut rng);
    let x = random(ndarray::Ix2(3, 7), 41);
    let y = layer.forward(x.view());
    assert_eq!(y.dim(), (3, 4));
    let r = random(y.raw_dim(), 42);
    let (g, dx) = layer.backward(x.view(), r.view(), true);
    let dx = dx.unwrap();
    for i in [0, 9, 27] {
        let mut w = layer.weight.clone().into_raw_vec_and_offset().0;
        let num = central_diff(&mut w, i, 1e-2, |w| {
            let mut l = layer.clone();
            l.weight = Array2::from_shape_vec((4, 7), w.to_vec()).unwrap();
            dot(&l.forward(x.view()), &r)
        });
        assert_close(
            "dense dW",
            f64::from(g.weight.as_slice().unwrap()[i]),
            num,
            1e-3,
        );
    }
    for i in [0, 10, 20] {
        let mut xv = x.clone().into_raw_vec_and_offset().0;
        let num = central_diff(&mut xv, i, 1e-2, |xv| {
            let xa = Array2::from_shape_vec((3, 7), xv.to_vec()).unwrap();
            dot(&layer.forward(xa.view()), &r)
        });
        assert_close("dense dx", f64::from(dx.as_slice().unwrap()[i]), num, 1e-3);
    }
    let num = central_diff(&mut layer.bias.to_vec(), 2, 1e-2, |b| {
        let mut l = layer.clone();
        l.bias = Array::from_vec(b.to_vec());
        dot(&l.forward(x.view()), &r)
    });
    assert_close("dense db", f64::from(g.bias[2]), num, 1e-3);
}

/// Summed cross-entropy of `net` on `x` (the model's float input) with labels `y`.
fn network_loss(net: &Model, x: &ArrayD<f32>, y: &[u8]) -> f64 {
    let p = net.predict_proba(x.view());
    p.rows()
        .into_iter()
        .zip(y)
        .map(|(row, &l)| f64::from(cross_entropy(&row.to_vec(), usize::from(l))))
        .sum()
}

/// The analytic gradients of the summed loss, in parameter order.
fn model_grads(net: &Model, x: &ArrayD<f32>, y: &[u8]) -> Vec<Vec<f32>> {
    let (p1, c1) = net.first_forward(x.view());
    let cache = net.trunk_forward(p1);
    assert_eq!(cache.probs.dim(), (y.len(), net.classes()));
    let dlogits = softmax_cross_entropy_grad(cache.probs.view(), y);
    let (trunk, dp1) = net.trunk_backward(&cache, dlogits.view());
    let (w, b) = net.first_backward(&c1, dp1.view());
    let mut out = vec![w.iter().copied().collect(), b.to_vec()];
    out.extend(trunk);
    out
}

/// Checks every parameter tensor of `net` at three positions against finite differences.
fn check_model(net: &Model, x: &ArrayD<f32>, y: &[u8], has_max: bool, what: &str) {
    let analytic = model_grads(net, x, y);
    assert_eq!(
        analytic.len(),
        net.parameters().len(),
        "{what}: tensor count"
    );
    for (t, grad) in analytic.iter().enumerate() {
        let len = net.parameters()[t].1.len();
        assert_eq!(grad.len(), len, "{what}: gradient {t} length");
        for i in [0, len / 3, len - 1] {
            let mut probe = net.clone();
            let h = 1e-2f32;
            let orig = probe.parameters()[t].1[i];
            let l0 = network_loss(&probe, x, y);
            probe.parameters_mut()[t][i] = orig + h;
            let lp = network_loss(&probe, x, y);
            probe.parameters_mut()[t][i] = orig - h;
            let lm = network_loss(&probe, x, y);
            let hd = f64::from(h);
            let central = (lp - lm) / (2.0 * hd);
            let name = format!("{what} {}[{i}]", net.parameters()[t].0);
            let an = f64::from(grad[i]);
            if has_max {
                // A step may move a max-pool argmax (a step on a conv weight shifts hundreds
                // of pre-pool values): the loss is then piecewise smooth and the analytic
                // gradient is the derivative on one side of the kink. Accept agreement with
                // the central or with either one-sided quotient; a wrong gradient fails all.
                let candidates = [central, (lp - l0) / hd, (l0 - lm) / hd];
                let best = candidates
                    .iter()
                    .map(|c| (an - c).abs() / (1.0 + c.abs()))
                    .fold(f64::INFINITY, f64::min);
                assert!(best < 5e-3, "{name}: analytic {an} vs {candidates:?}");
            } else {
                assert_close(&name, an, central, 5e-3);
            }
        }
    }
}

#[test]
fn lenet_gradients_match_finite_differences_in_both_orders() {
    for (order, pool) in [
        (LayerOrder::LeCun1998, PoolKind::Average),
        (LayerOrder::Modern, PoolKind::Average),
        (LayerOrder::Modern, PoolKind::Max),
    ] {
        let cfg = LeNetConfig {
            order,
            activation: Activation::Tanh,
            pool,
            init: Init::GlorotUniform,
        };
        let net = Model::lenet5(cfg, 50);
        let x = random(ndarray::Ix4(3, 1, 32, 32), 51).into_dyn();
        let (s1, _) = net.first_forward(x.view());
        let want: &[usize] = if order == LayerOrder::LeCun1998 {
            &[3, 6, 14, 14]
        } else {
            &[3, 6, 28, 28]
        };
        assert_eq!(s1.shape(), want);
        check_model(
            &net,
            &x,
            &[3, 7, 0],
            pool == PoolKind::Max,
            &format!("{order:?}/{pool:?}"),
        );
    }
}

/// The built-in MLP and small CNN, and a model using every other layer: sigmoid, a strided,
/// padded convolution with a folded 3x3 average pool in the trunk, an overlapping 3x3 max
/// pool and an overlapping average pool.
#[test]
fn declared_model_gradients_match_finite_differences() {
    let digits = InputShape::Image {
        channels: 1,
        height: 8,
        width: 8,
    };
    // With tanh in place of ReLU (smooth, so no kink sits between θ ± h).
    let smooth = |mut s: ModelSpec| {
        for l in &mut s.layers {
            if *l == LayerSpec::Relu {
                *l = LayerSpec::Tanh;
            }
        }
        s
    };
    let mlp = smooth(ModelSpec::builtin("mlp", InputShape::Flat(12), 3).unwrap());
    let net = Model::new(&mlp, 60).unwrap();
    check_model(
        &net,
        &random(ndarray::Ix2(4, 12), 61).into_dyn(),
        &[0, 2, 1, 2],
        false,
        "mlp",
    );

    let cnn = smooth(ModelSpec::builtin("cnn-small", digits, 10).unwrap());
    let net = Model::new(&cnn, 62).unwrap();
    // cnn-small's first layer reads the input padded by 1: [n, 1, 10, 10].
    let x = random(ndarray::Ix4(2, 1, 10, 10), 63).into_dyn();
    check_model(&net, &x, &[4, 9], true, "cnn-small");

    let every = ModelSpec {
        name: "every".into(),
        input: InputShape::Image {
            channels: 2,
            height: 15,
            width: 14,
        },
        classes: 3,
        init: Init::GlorotUniform,
        layers: vec![
            LayerSpec::Conv2d {
                in_channels: 2,
                out_channels: 3,
                kernel: 3,
                stride: 1,
                padding: 0,
            },
            LayerSpec::Tanh,
            LayerSpec::Conv2d {
                in_channels: 3,
                out_channels: 4,
                kernel: 3,
                stride: 2,
                padding: 1,
            },
            LayerSpec::AvgPool2d {
                kernel: 2,
                stride: 2,
            },
            LayerSpec::Sigmoid,
            LayerSpec::AvgPool2d {
                kernel: 2,
                stride: 1,
            },
            LayerSpec::MaxPool2d {
                kernel: 2,
                stride: 1,
            },
            LayerSpec::Flatten,
            LayerSpec::Linear {
                inputs: 4,
                outputs: 3,
            },
        ],
    };
    let net = Model::new(&every, 64).unwrap();
    let x = random(ndarray::Ix4(2, 2, 15, 14), 65).into_dyn();
    check_model(&net, &x, &[1, 2], true, "every layer");
}
