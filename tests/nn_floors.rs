//! Accuracy floors of the built-in models in quantised mode, measured on full datasets. These
//! are measurements, not timed tests: they are `#[ignore]`d and run by hand, e.g.
//!
//! ```text
//! nice cargo test --test nn_floors -- --ignored --nocapture mnist_mlp
//! ```
//!
//! Each prints its figures and asserts the floor of the issue.

use cryptonn::nn::data::{InputShape, Mnist};
use cryptonn::nn::model::ModelSpec;
use cryptonn::nn::train::{train, BatchSchedule, Mode, TrainConfig};

/// MNIST `mlp` (784-128-10), quantised, 2 epochs on 60,000 images: >= 97.5 % test accuracy.
#[test]
#[ignore = "a measurement on the full MNIST (about a minute); run by hand"]
fn mnist_mlp_quantized_reaches_97_5_percent() {
    let mnist = Mnist::load_default().expect("MNIST");
    let spec = ModelSpec::builtin("mlp", InputShape::MNIST, 10).expect("mlp");
    let cfg = TrainConfig {
        mode: Mode::Quantized,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::recommended("mlp", "mnist")
    };
    let (_, r) = train(&cfg, &spec, &mnist.train, &mnist.test, &mut ()).expect("run");
    println!(
        "mnist mlp quantized: test accuracy {:?}, {:.0} images/s, weights {}",
        r.test_accuracy, r.images_per_second, r.weights_sha256
    );
    assert!(r.test_accuracy[1] >= 0.975, "{:?}", r.test_accuracy);
}
