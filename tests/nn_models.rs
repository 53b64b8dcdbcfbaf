//! Declared models in training: today's LeNet-5 reproduced bit for bit by the generic model,
//! determinism across thread counts for every built-in in plain and quantised mode, and a
//! model read from a file.

use std::sync::OnceLock;

use cryptonn::nn::data::{default_data_dir, load_named, Dataset, InputEncoding, InputShape, Mnist};
use cryptonn::nn::lenet::LeNetConfig;
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::train::{train, BatchSchedule, Mode, TrainConfig, TrainReport};

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

fn subset(train_n: usize, test_n: usize) -> (Dataset, Dataset) {
    let m = mnist();
    (
        m.train.take(train_n, "training").expect("subset"),
        m.test.take(test_n, "test").expect("subset"),
    )
}

/// `weights_sha256` of LeNet-5 after one epoch on the first 256 MNIST training images (test:
/// the first 100), default configuration (seed 1, batch 16, chunk 8, lr 0.015, momentum 0.9,
/// cosine), in each mode and batch schedule.
///
/// Produced on main at commit bf1db56 (before declared models existed, when `LeNet5` was a
/// hand-written network) by `cargo test --test probe` with a test calling
/// `cryptonn::nn::train::train(&cfg, &train, &test, &mut ())` for these configurations and
/// printing `report.weights_sha256`. The generic model must reproduce them bit for bit.
const MAIN_HASHES: [(Mode, BatchSchedule, &str); 3] = [
    (Mode::Plain, BatchSchedule::Shuffled, PLAIN_SHUFFLED),
    (Mode::Quantized, BatchSchedule::Shuffled, QUANTIZED_SHUFFLED),
    (
        Mode::Quantized,
        BatchSchedule::FixedShards,
        QUANTIZED_SHARDS,
    ),
];
const PLAIN_SHUFFLED: &str = "86077717a7c59783b879dafa253e17d079688c8f76edd9f2a35c5992f7f3ae56";
const QUANTIZED_SHUFFLED: &str = "ea6048f47eb1ccb5d334658963d31c3a618582e0a0a1a9c5eb4387a5d8403bf8";
const QUANTIZED_SHARDS: &str = "6f8ff9439586764d1a4fe55b1f3a9ddf3f3c600ade0c93146bea37196e621a31";

#[test]
fn generic_lenet5_reproduces_the_hand_written_network_bit_for_bit() {
    let (tr, te) = subset(256, 100);
    for (mode, schedule, want) in MAIN_HASHES {
        let cfg = TrainConfig {
            mode,
            epochs: 1,
            schedule,
            ..TrainConfig::default()
        };
        let (model, report) =
            train(&cfg, &ModelSpec::lenet5(cfg.lenet), &tr, &te, &mut ()).expect("training run");
        assert_eq!(report.weights_sha256, model.weights_sha256());
        assert_eq!(report.weights_sha256, want, "{mode} {schedule:?}");
    }
}

fn run_in_pool(
    threads: usize,
    cfg: &TrainConfig,
    spec: &ModelSpec,
    tr: &Dataset,
    te: &Dataset,
) -> (Model, TrainReport) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| train(cfg, spec, tr, te, &mut ()).expect("training run"))
}

#[test]
fn every_builtin_is_bit_identical_for_any_thread_count() {
    let (tr, te) = subset(96, 40);
    for name in ["lenet5", "mlp", "cnn-small"] {
        let spec = ModelSpec::builtin(name, InputShape::MNIST, 10).expect("built-in");
        for mode in [Mode::Plain, Mode::Quantized] {
            let cfg = TrainConfig {
                mode,
                epochs: 1,
                ..TrainConfig::default()
            };
            let (a, ra) = run_in_pool(1, &cfg, &spec, &tr, &te);
            let (b, rb) = run_in_pool(3, &cfg, &spec, &tr, &te);
            assert_eq!(a.parameter_bytes(), b.parameter_bytes(), "{name} {mode}");
            assert_eq!(ra.train_loss, rb.train_loss);
            assert_eq!(ra.model, name);
            assert_ne!(
                a,
                Model::new(&spec, cfg.seed).expect("model"),
                "{name} learned"
            );
        }
    }
}

#[test]
fn a_model_file_trains_like_the_same_model_built_in_rust() {
    let (tr, te) = subset(64, 20);
    let dir = std::env::temp_dir().join(format!("cryptonn-nn-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("mlp.toml");
    let spec = ModelSpec::builtin("mlp", InputShape::MNIST, 10).expect("mlp");
    std::fs::write(&path, toml::to_string(&spec).expect("serialise")).expect("write");
    let read = ModelSpec::from_file(&path).expect("read back");
    assert_eq!(read, spec);
    let cfg = TrainConfig {
        mode: Mode::Quantized,
        epochs: 1,
        ..TrainConfig::default()
    };
    let (a, _) = train(&cfg, &spec, &tr, &te, &mut ()).expect("run");
    let (b, _) = train(&cfg, &read, &tr, &te, &mut ()).expect("run");
    assert_eq!(a.weights_sha256(), b.weights_sha256());
    // LeNet-5's configuration is a model like any other.
    assert_eq!(
        Model::lenet5(LeNetConfig::default(), 1),
        Model::new(&ModelSpec::lenet5(LeNetConfig::default()), 1).expect("model")
    );
    std::fs::remove_dir_all(dir).expect("clean up");
}

/// The three datasets load into the generic [`Dataset`] with their shapes, classes and
/// encodings, every test sample encodes within range, and one epoch of each built-in that
/// fits learns something in quantised mode.
#[test]
fn every_dataset_loads_and_trains_its_models() {
    let dir = default_data_dir();
    for (name, shape, classes, models) in [
        ("breast-cancer", InputShape::Flat(30), 2, &["mlp"][..]),
        (
            "digits",
            InputShape::Image {
                channels: 1,
                height: 8,
                width: 8,
            },
            10,
            &["mlp", "cnn-small"][..],
        ),
    ] {
        let split = load_named(name, &dir).expect("dataset");
        assert_eq!(split.train.shape(), shape, "{name}");
        assert_eq!(split.test.classes(), classes, "{name}");
        assert!(matches!(
            split.train.encoding(),
            InputEncoding::Standardized(_)
        ));
        for i in 0..split.test.len() {
            split.test.encode_sample(i, 64.0).expect("encodable");
        }
        for model in models {
            let spec = ModelSpec::builtin(model, shape, classes).expect("built-in");
            let cfg = TrainConfig {
                mode: Mode::Quantized,
                epochs: 2,
                ..TrainConfig::recommended(model, name)
            };
            let (_, r) = train(&cfg, &spec, &split.train, &split.test, &mut ()).expect("run");
            assert!(
                r.test_accuracy[1] > 0.8,
                "{name} {model}: {:?}",
                r.test_accuracy
            );
        }
    }
    let mnist = load_named("mnist", &dir).expect("mnist");
    assert_eq!(mnist.train.shape(), InputShape::MNIST);
    assert!(load_named("cifar", &dir).is_err());
}
