//! Accuracy floors of the built-in models in quantised mode, measured on full datasets. These
//! are measurements, not timed tests: they are `#[ignore]`d and run by hand, e.g.
//!
//! ```text
//! nice cargo test --test nn_floors -- --ignored --nocapture mnist_mlp
//! ```
//!
//! Each prints its figures and asserts the floor of the issue.

use cryptonn::nn::data::{default_data_dir, load_named, InputShape, Mnist};
use cryptonn::nn::model::ModelSpec;
use cryptonn::nn::train::{train, BatchSchedule, Mode, TrainConfig};

/// MNIST `mlp` (784-128-10), quantised, 2 epochs on 60,000 images: >= 97.5 % test accuracy.
#[test]
#[ignore = "a measurement on the full MNIST (about a minute); run by hand"]
fn mnist_mlp_quantized_reaches_97_5_percent() {
    let mnist = Mnist::load_default().expect("MNIST");
    let spec = ModelSpec::builtin("mlp", InputShape::MNIST, 10).expect("mlp");
    let mut cfg = TrainConfig {
        mode: Mode::Quantized,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::recommended("mlp", "mnist")
    };
    // For exploring: CRYPTONN_FLOOR_LR overrides the learning rate.
    if let Some(lr) = std::env::var("CRYPTONN_FLOOR_LR")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.sgd.lr = lr;
    }
    let (_, r) = train(&cfg, &spec, &mnist.train, &mnist.test, &mut ()).expect("run");
    println!(
        "mnist mlp quantized (lr {}): test accuracy {:?}, {:.0} images/s, weights {}",
        cfg.sgd.lr, r.test_accuracy, r.images_per_second, r.weights_sha256
    );
    assert!(r.test_accuracy[1] >= 0.975, "{:?}", r.test_accuracy);
}

fn table_floor(model: &str, dataset: &str, floor: f64) {
    let dir = default_data_dir();
    let split = load_named(dataset, &dir).expect("dataset");
    let spec =
        ModelSpec::builtin(model, split.train.shape(), split.train.classes()).expect("model");
    let cfg = TrainConfig {
        mode: Mode::Quantized,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::recommended(model, dataset)
    };
    let (_, r) = train(&cfg, &spec, &split.train, &split.test, &mut ()).expect("run");
    let last = r.test_accuracy.last().copied().unwrap_or(0.0);
    println!(
        "{dataset} {model} quantized: final test accuracy {last:.4} ({} epochs, max {:.4}), \
         {:.0} images/s, weights {}",
        r.epochs,
        r.test_accuracy.iter().copied().fold(0.0, f64::max),
        r.images_per_second,
        r.weights_sha256
    );
    assert!(last >= floor, "{:?}", r.test_accuracy);
}

/// Breast cancer, quantised `mlp` (30-128-2): >= 95 % test accuracy.
#[test]
#[ignore = "a measurement (seconds); run by hand"]
fn breast_cancer_mlp_quantized_reaches_95_percent() {
    table_floor("mlp", "breast-cancer", 0.95);
}

/// Digits, quantised `cnn-small`: >= 95 % test accuracy.
#[test]
#[ignore = "a measurement (seconds); run by hand"]
fn digits_cnn_small_quantized_reaches_95_percent() {
    table_floor("cnn-small", "digits", 0.95);
}
