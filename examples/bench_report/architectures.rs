//! The architectures section: every built-in model on its dataset, in the three modes, one row
//! each (`architectures.<model>.<dataset>` in report.json), and what the server could rebuild
//! of the first shard of each secure run (`leakage.models.<model>.<dataset>`).
//!
//! `lenet5 / mnist` is the training section's own runs (same sizes); the other rows train
//! here with [`TrainConfig::recommended`] on fixed shards. Secure runs go through the library's
//! `SecureTrainingSession` ([`crate::secure::run`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use cryptonn::coordinator::secure_training::ShardLeakage;
use cryptonn::nn::data::load_named;
use cryptonn::nn::model::ModelSpec;
use cryptonn::nn::train::{BatchSchedule, TrainConfig};
use serde::Serialize;

use crate::secure::{Breakdown, Extras, SecureExtra};
use crate::training::{run_mode, ModeFigures, ModeRun, RunSpec, SecureOptions, TrainMode};

/// The built-in (model, dataset) pairs, in report order (the report contract's).
pub const PAIRS: [(&str, &str); 5] = cryptonn::report_schema::ARCHITECTURES;

/// The sizes of one row (the first `train_size` / `test_size` samples of the fixed splits;
/// `None`: the whole split).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Model name.
    pub model: &'static str,
    /// Dataset name.
    pub dataset: &'static str,
    /// Training samples.
    pub train_size: Option<usize>,
    /// Test samples.
    pub test_size: Option<usize>,
    /// Epochs in every mode.
    pub epochs: usize,
}

/// The rows trained in this section (all of [`PAIRS`] but `lenet5 / mnist`).
pub fn plans(full: bool) -> Vec<Plan> {
    let plan = |model, dataset, train_size, test_size, epochs| Plan {
        model,
        dataset,
        train_size,
        test_size,
        epochs,
    };
    if full {
        // Real sizes: the whole small datasets at their recommended epochs; MNIST's secure
        // dense and small-CNN runs on 4,096 images, 1 epoch (hours on all 60,000).
        vec![
            plan("mlp", "mnist", Some(4_096), None, 1),
            plan("cnn-small", "mnist", Some(4_096), None, 1),
            plan("mlp", "breast-cancer", None, None, 30),
            plan("cnn-small", "digits", None, None, 30),
        ]
    } else {
        // Two shards of MNIST (a dense first layer costs ~10x LeNet-5's group work per
        // image), one epoch of the small datasets: ~30 s on an idle 2-core machine.
        vec![
            plan("mlp", "mnist", Some(32), Some(500), 1),
            plan("cnn-small", "mnist", Some(32), Some(500), 1),
            plan("mlp", "breast-cancer", None, None, 1),
            plan("cnn-small", "digits", Some(128), None, 1),
        ]
    }
}

/// One row, serialised as `architectures.<model>.<dataset>`.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Training samples.
    pub train_size: usize,
    /// Test samples.
    pub test_size: usize,
    /// Epochs.
    pub epochs: usize,
    /// Mini-batch (= shard) size.
    pub batch_size: usize,
    /// The declared first layer, in words.
    pub first_layer: String,
    /// Final test accuracy of plain training, a fraction.
    pub plain_accuracy: Option<f64>,
    /// ... of quantised training.
    pub quantized_accuracy: Option<f64>,
    /// ... of secure training.
    pub secure_accuracy: Option<f64>,
    /// Training images per second, plain.
    pub plain_images_per_second: Option<f64>,
    /// ... quantised.
    pub quantized_images_per_second: Option<f64>,
    /// ... secure.
    pub secure_images_per_second: Option<f64>,
    /// Secure seconds per epoch / plain seconds per epoch (how many times slower).
    pub secure_over_plain: Option<f64>,
    /// Whether secure training's final weights hash equals quantised training's.
    pub weights_identical: Option<bool>,
    /// SHA-256 of the secure run's final weights.
    pub secure_weights_sha256: Option<String>,
    /// The secure run's counters and timings.
    pub secure: Option<SecureExtra>,
    /// Where the secure run's time went.
    pub secure_breakdown: Option<Breakdown>,
    /// Where the row's figures come from.
    pub source: String,
}

impl Row {
    /// A row from the three modes' figures.
    pub fn from_runs(
        plain: &ModeFigures,
        quantized: &ModeFigures,
        secure: &ModeFigures,
        sizes: (usize, usize, usize, usize),
        first_layer: String,
        source: &str,
    ) -> Self {
        let (train_size, test_size, epochs, batch_size) = sizes;
        let ratio = match (secure.epoch_seconds, plain.epoch_seconds) {
            (Some(s), Some(p)) if p > 0.0 => Some(s / p),
            _ => None,
        };
        Self {
            train_size,
            test_size,
            epochs,
            batch_size,
            first_layer,
            plain_accuracy: plain.test_accuracy,
            quantized_accuracy: quantized.test_accuracy,
            secure_accuracy: secure.test_accuracy,
            plain_images_per_second: plain.images_per_second,
            quantized_images_per_second: quantized.images_per_second,
            secure_images_per_second: secure.images_per_second,
            secure_over_plain: ratio,
            weights_identical: match (&secure.weights_sha256, &quantized.weights_sha256) {
                (Some(s), Some(q)) => Some(s == q),
                _ => None,
            },
            secure_weights_sha256: secure.weights_sha256.clone(),
            secure: secure.secure,
            secure_breakdown: secure.breakdown,
            source: source.into(),
        }
    }
}

/// `architectures`: model → dataset → row.
pub type Architectures = BTreeMap<String, BTreeMap<String, Row>>;

/// `leakage.models`: model → dataset → what the server could rebuild of shard 0.
pub type ModelLeakage = BTreeMap<String, BTreeMap<String, ShardLeakage>>;

/// The declared first layer of `spec`, in words.
pub fn first_layer_words(spec: &ModelSpec) -> String {
    use cryptonn::nn::first_layer::FirstLayerSpec;
    match spec.first_layer() {
        Ok((FirstLayerSpec::Linear { inputs, outputs }, _)) => {
            format!("linear {inputs} -> {outputs}")
        }
        Ok((
            FirstLayerSpec::Conv {
                channels,
                height,
                width,
                filters,
                kernel,
                stride,
                padding,
                pool,
            },
            _,
        )) => {
            let pool = if pool > 1 {
                format!(" + avg-pool {pool}")
            } else {
                String::new()
            };
            format!(
                "conv {channels}x{height}x{width} -> {filters}, {kernel}x{kernel}, stride \
                 {stride}, padding {padding}{pool}"
            )
        }
        Err(e) => format!("not securable: {e}"),
    }
}

/// Trains every plan in the three modes; returns the rows and the secure runs' leakage.
pub fn run(
    plans: &[Plan],
    data_dir: &Path,
    secure: &SecureOptions,
) -> Result<(Architectures, ModelLeakage)> {
    let mut rows = Architectures::new();
    let mut leakage = ModelLeakage::new();
    for p in plans {
        let split = load_named(p.dataset, data_dir)
            .with_context(|| format!("loading {} from {}", p.dataset, data_dir.display()))?;
        let n = p
            .train_size
            .unwrap_or(split.train.len())
            .min(split.train.len());
        let m = p
            .test_size
            .unwrap_or(split.test.len())
            .min(split.test.len());
        let train = split.train.take(n, "training")?;
        let test = split.test.take(m, "test")?;
        let spec = ModelSpec::builtin(p.model, train.shape(), train.classes())?;
        let cfg = TrainConfig {
            epochs: p.epochs,
            schedule: BatchSchedule::FixedShards,
            ..TrainConfig::recommended(p.model, p.dataset)
        };
        let name = format!("{}-{}", p.model, p.dataset);
        crate::stats::section(
            &format!("Architecture {} on {}", p.model, p.dataset),
            &format!(
                "{} ({}), {n} training / {m} test samples, {} epochs, batch {}, lr {}: plain, \
                 quantized and secure.",
                p.model,
                first_layer_words(&spec),
                cfg.epochs,
                cfg.batch_size,
                cfg.sgd.lr
            ),
        );
        let mut run = RunSpec {
            spec: &spec,
            name: &name,
            extras: Extras {
                cross_domain: false,
                leakage: false,
            },
        };
        let plain = run_mode(TrainMode::Plain, &cfg, &run, &train, &test, secure)?;
        let quantized = run_mode(TrainMode::Quantized, &cfg, &run, &train, &test, secure)?;
        run.extras.leakage = true;
        let secure_run: ModeRun = run_mode(TrainMode::Secure, &cfg, &run, &train, &test, secure)?;
        let row = Row::from_runs(
            &plain.figures,
            &quantized.figures,
            &secure_run.figures,
            (n, m, cfg.epochs, cfg.batch_size),
            first_layer_words(&spec),
            "this section's runs",
        );
        println!(
            "{name}: accuracy plain {:.2} % / quantized {:.2} % / secure {:.2} %, secure {:.1} \
             img/s, weights identical: {:?}",
            100.0 * row.plain_accuracy.unwrap_or(f64::NAN),
            100.0 * row.quantized_accuracy.unwrap_or(f64::NAN),
            100.0 * row.secure_accuracy.unwrap_or(f64::NAN),
            row.secure_images_per_second.unwrap_or(f64::NAN),
            row.weights_identical
        );
        rows.entry(p.model.into())
            .or_default()
            .insert(p.dataset.into(), row);
        if let Some(l) = secure_run.leakage {
            leakage
                .entry(p.model.into())
                .or_default()
                .insert(p.dataset.into(), l);
        }
    }
    Ok((rows, leakage))
}
