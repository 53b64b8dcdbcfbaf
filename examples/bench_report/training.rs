//! One declared model in each mode on the same subset, seed and epochs, one library entry point
//! per mode ([`cryptonn::nn::train::train`] for plain and quantised, the session for secure):
//! the training section (LeNet-5) and every row of the architectures section.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use cryptonn::coordinator::secure_training::ShardLeakage;
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::Dataset;
use cryptonn::nn::model::ModelSpec;
use cryptonn::nn::train::{
    train, BatchProgress, EpochStats, Mode, TrainConfig, TrainObserver, TrainReport,
};
use indicatif::ProgressBar;
use ndarray::Array2;
use serde::Serialize;

use crate::machine::{peak_rss_mb, reset_peak_rss};
use crate::secure::{Breakdown, Extras, SecureExtra};

/// The three ways the report trains LeNet-5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainMode {
    /// Everything in float.
    Plain,
    /// The first layer in exact integers on plaintext data.
    Quantized,
    /// The first layer over FEIP/FEBO ciphertexts.
    Secure,
}

impl TrainMode {
    /// The name used in the report's keys.
    pub fn key(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Quantized => "quantized",
            Self::Secure => "secure",
        }
    }
}

/// One mode's figures, serialised as `training.<mode>`.
#[derive(Debug, Clone, Serialize)]
pub struct ModeFigures {
    /// Mean training wall seconds per epoch (test evaluation excluded).
    pub epoch_seconds: Option<f64>,
    /// Final test accuracy, a fraction.
    pub test_accuracy: Option<f64>,
    /// Training images per second over the run.
    pub images_per_second: Option<f64>,
    /// Training seconds of each epoch.
    pub epoch_seconds_each: Vec<f64>,
    /// Test accuracy after each epoch, fractions.
    pub test_accuracy_per_epoch: Vec<f64>,
    /// Peak resident memory of this section in MB (VmHWM, reset before the section when the
    /// kernel allows; otherwise the process peak so far).
    pub peak_rss_mb: Option<f64>,
    /// Whether `peak_rss_mb` is this section's own peak.
    pub peak_rss_is_per_section: bool,
    /// SHA-256 of the final weights.
    pub weights_sha256: Option<String>,
    /// Wall seconds of the whole section (setup, training, evaluation).
    pub wall_seconds: Option<f64>,
    /// Why a figure is missing, if one is.
    pub note: Option<String>,
    /// Secure mode only: encryption, key and decryption counters and timings.
    #[serde(flatten)]
    pub secure: Option<SecureExtra>,
    /// Secure mode only: where the time goes.
    pub breakdown: Option<Breakdown>,
}

impl ModeFigures {
    fn from_report(r: &TrainReport, peak: Option<f64>, per_section: bool, wall: f64) -> Self {
        let n = r.epoch_seconds.len().max(1) as f64;
        Self {
            epoch_seconds: Some(r.epoch_seconds.iter().sum::<f64>() / n),
            test_accuracy: r.test_accuracy.last().copied(),
            images_per_second: Some(r.images_per_second),
            epoch_seconds_each: r.epoch_seconds.clone(),
            test_accuracy_per_epoch: r.test_accuracy.clone(),
            peak_rss_mb: peak,
            peak_rss_is_per_section: per_section,
            weights_sha256: Some(r.weights_sha256.clone()),
            wall_seconds: Some(wall),
            note: None,
            secure: None,
            breakdown: None,
        }
    }
}

/// What a mode's run leaves behind besides its figures.
#[derive(Debug)]
pub struct ModeRun {
    /// The figures.
    pub figures: ModeFigures,
    /// The first layer's final weights (LeNet-5: conv1's `[6, 25]`, for the leakage section).
    pub conv1_weight: Option<Array2<f32>>,
    /// Secure mode only: the cross-shard key attempts.
    pub cross_domain: Option<crate::cross_domain::CrossDomain>,
    /// Secure mode only: what the server could rebuild of the first shard.
    pub leakage: Option<ShardLeakage>,
}

/// Where secure training keeps its files.
#[derive(Clone)]
pub struct SecureOptions {
    /// The server's discrete-log table (half-width `dlog_half_width`).
    pub table: Arc<BabyStepTable<Ristretto255>>,
    /// Scratch directory of the encrypted dataset (removed after the run).
    pub work_dir: std::path::PathBuf,
    /// Baby-step half-width of the server's table.
    pub dlog_half_width: u64,
}

/// One run of [`run_mode`]: the model, the name of its encrypted cache file and its progress
/// label, and what a secure run measures besides training.
pub struct RunSpec<'a> {
    /// The model.
    pub spec: &'a ModelSpec,
    /// A short name (`lenet5-mnist`): progress bars and the encrypted dataset's file name.
    pub name: &'a str,
    /// Secure mode only: cross-shard attempts and shard reconstruction.
    pub extras: Extras,
}

/// Trains `run.spec` in `mode` with `cfg` (its `mode` field is overridden) on `train_set`,
/// evaluating on `test_set` after each epoch, with a progress bar per epoch: [`train`] for
/// plain and quantised mode, [`crate::secure::run`] (the library's
/// [`SecureTrainingSession`](cryptonn::coordinator::secure_training::SecureTrainingSession))
/// for secure mode.
pub fn run_mode(
    mode: TrainMode,
    cfg: &TrainConfig,
    run: &RunSpec<'_>,
    train_set: &Dataset,
    test_set: &Dataset,
    secure: &SecureOptions,
) -> Result<ModeRun> {
    let lib_mode = match mode {
        TrainMode::Plain => Mode::Plain,
        TrainMode::Quantized => Mode::Quantized,
        TrainMode::Secure => Mode::Secure,
    };
    let cfg = TrainConfig {
        mode: lib_mode,
        ..*cfg
    };
    let per_section = reset_peak_rss();
    let start = Instant::now();
    let mut bars = Bars::new(format!("{} {}", run.name, mode.key()));
    let (model, report, extra) = if mode == TrainMode::Secure {
        let out = crate::secure::run(
            &cfg,
            run.spec,
            run.name,
            train_set,
            test_set,
            secure,
            &secure.table,
            run.extras,
            &mut bars,
        )?;
        let extra = (out.extra, out.breakdown, out.cross, out.leakage);
        (out.model, out.report, Some(extra))
    } else {
        let (model, report) = train(&cfg, run.spec, train_set, test_set, &mut bars)?;
        (model, report, None)
    };
    let wall = start.elapsed().as_secs_f64();
    let mut figures = ModeFigures::from_report(&report, peak_rss_mb(), per_section, wall);
    let (mut cross_domain, mut leakage) = (None, None);
    if let Some((extra, breakdown, cross, leak)) = extra {
        figures.secure = Some(extra);
        figures.breakdown = Some(breakdown);
        cross_domain = cross;
        leakage = leak;
    }
    Ok(ModeRun {
        figures,
        conv1_weight: Some(model.first_weight().to_owned()),
        cross_domain,
        leakage,
    })
}

/// indicatif bars, one per epoch, and a line per finished epoch.
struct Bars {
    mode: String,
    bar: Option<ProgressBar>,
    epoch_start: Instant,
}

impl Bars {
    fn new(mode: String) -> Self {
        Self {
            mode,
            bar: None,
            epoch_start: Instant::now(),
        }
    }
}

impl TrainObserver for Bars {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, images: usize) {
        let bar = crate::stats::bar(
            &format!("{} {}/{epochs}", self.mode, epoch + 1),
            images as u64,
        );
        self.bar = Some(bar);
        self.epoch_start = Instant::now();
    }

    fn batch_finished(&mut self, p: &BatchProgress) {
        if let Some(bar) = &self.bar {
            let rate = p.images_done as f64 / self.epoch_start.elapsed().as_secs_f64();
            bar.set_position(p.images_done as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:5.2}% {rate:6.0} img/s",
                p.mean_loss,
                100.0 * p.accuracy
            ));
        }
    }

    fn epoch_finished(&mut self, s: &EpochStats) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "{} epoch {}: train loss {:.4}, test acc {:.2} %, {:.2} s ({:.0} img/s)",
            self.mode,
            s.epoch + 1,
            s.train_loss,
            100.0 * s.test_accuracy,
            s.seconds,
            s.images as f64 / s.seconds
        );
    }
}
