//! Criterion benchmarks of the network, with size sweeps.
//!
//! - `sgd_step/{plain,quantized}/B`: one full SGD step (forward, backward, update) on a
//!   mini-batch of `B` MNIST images, parallel over chunks of 8 on the global rayon pool.
//! - `chunk/{forward,forward_backward}/n`: one chunk of `n` images on one thread (the unit of
//!   parallel work).
//! - `first_layer_integer/{forward,weight_gradient}/B`: the quantised backend's integer conv1 +
//!   pooling for a mini-batch (what secure training replaces with FE decryptions).
//! - `mlp_first_layer_integer/{forward,weight_gradient}/B`: the same for the MLP's dense
//!   784 → 128 first layer.
//!
//! Throughput is reported in images per second. Run with `cargo bench --bench nn`; the machine
//! is shared and noisy, so compare medians.

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use cryptonn::nn::data::{InputShape, LabelPermutation, Mnist};
use cryptonn::nn::first_layer::{
    FirstLayerBackend, FirstLayerSpec, QuantConfig, QuantizedFirstLayer,
};
use cryptonn::nn::lenet::LeNetConfig;
use cryptonn::nn::loss::softmax_cross_entropy_grad;
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::optim::{Sgd, SgdConfig};
use cryptonn::nn::train::{backend_step, plain_step, Mode, TrainConfig};
use ndarray::Array2;
use std::hint::black_box;
use std::time::Duration;

fn benches(c: &mut Criterion) {
    let mnist = Mnist::load_default().expect("MNIST in data/");
    let data = mnist.train.take(4096, "training").expect("subset");
    let labels = LabelPermutation::from_seed(1, 10);
    // A tiny learning rate keeps the weights (and so the work) stable over many iterations.
    let sgd_cfg = SgdConfig {
        lr: 1e-6,
        ..SgdConfig::default()
    };

    let mut g = c.benchmark_group("sgd_step");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for batch in [16usize, 64, 256] {
        let idx: Vec<usize> = (0..batch).collect();
        g.throughput(Throughput::Elements(batch as u64));
        let cfg = TrainConfig::default();
        let mut model = Model::lenet5(cfg.lenet, 1);
        let mut sgd = Sgd::new(sgd_cfg);
        g.bench_with_input(BenchmarkId::new("plain", batch), &idx, |b, idx| {
            b.iter(|| plain_step(&mut model, &mut sgd, &cfg, &data, &labels, idx).expect("step"))
        });
        let qcfg = TrainConfig {
            mode: Mode::Quantized,
            ..cfg
        };
        let mut backend =
            QuantizedFirstLayer::new(&data, labels.clone(), qcfg.quant, FirstLayerSpec::lenet5())
                .expect("backend");
        let mut model = Model::lenet5(cfg.lenet, 1);
        let mut sgd = Sgd::new(sgd_cfg);
        g.bench_with_input(BenchmarkId::new("quantized", batch), &idx, |b, idx| {
            b.iter(|| backend_step(&mut model, &mut sgd, &qcfg, &mut backend, idx).expect("step"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("chunk");
    g.sample_size(30).measurement_time(Duration::from_secs(2));
    let model = Model::lenet5(LeNetConfig::default(), 1);
    for n in [1usize, 8, 32] {
        let idx: Vec<usize> = (0..n).collect();
        let x = model.input(&data, &idx);
        let y: Vec<u8> = idx.iter().map(|&i| data.label(i)).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("forward", n), &x, |b, x| {
            b.iter(|| black_box(model.predict_proba(x.view())))
        });
        g.bench_with_input(BenchmarkId::new("forward_backward", n), &x, |b, x| {
            b.iter(|| {
                let (s1, c1) = model.first_forward(x.view());
                let cache = model.trunk_forward(s1);
                let d = softmax_cross_entropy_grad(cache.probs.view(), &y);
                let (trunk, ds1) = model.trunk_backward(&cache, d.view());
                black_box((trunk, model.first_backward(&c1, ds1.view())))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("first_layer_integer");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    let q = QuantConfig::default();
    let mut backend = QuantizedFirstLayer::new(&data, labels.clone(), q, FirstLayerSpec::lenet5())
        .expect("backend");
    let wq = q.encode_weights(model.first_weight()).expect("weights");
    for batch in [16usize, 64, 256] {
        let idx: Vec<usize> = (0..batch).collect();
        let dq = Array2::from_shape_fn((batch, 6 * 196), |(n, o)| {
            ((n * 7 + o * 13) % 41) as i64 - 20
        });
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::new("forward", batch), &idx, |b, idx| {
            b.iter(|| backend.forward(idx, wq.view()).expect("forward"))
        });
        g.bench_with_input(
            BenchmarkId::new("weight_gradient", batch),
            &idx,
            |b, idx| b.iter(|| backend.weight_gradient(idx, dq.view()).expect("gradient")),
        );
    }
    g.finish();

    let mut g = c.benchmark_group("mlp_first_layer_integer");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    let mlp = Model::new(
        &ModelSpec::builtin("mlp", InputShape::MNIST, 10).expect("mlp"),
        1,
    )
    .expect("model");
    let spec = *mlp.first_layer();
    let mut backend = QuantizedFirstLayer::new(&data, labels.clone(), q, spec).expect("backend");
    let wq = q.encode_weights(mlp.first_weight()).expect("weights");
    for batch in [16usize, 64] {
        let idx: Vec<usize> = (0..batch).collect();
        let dq = Array2::from_shape_fn((batch, 128), |(n, o)| ((n * 7 + o * 13) % 41) as i64 - 20);
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::new("forward", batch), &idx, |b, idx| {
            b.iter(|| backend.forward(idx, wq.view()).expect("forward"))
        });
        g.bench_with_input(
            BenchmarkId::new("weight_gradient", batch),
            &idx,
            |b, idx| b.iter(|| backend.weight_gradient(idx, dq.view()).expect("gradient")),
        );
    }
    g.finish();
}

mod group {
    #![allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn`
    criterion::criterion_group!(nn_benches, super::benches);
}
use group::nn_benches;
criterion_main!(nn_benches);
