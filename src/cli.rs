//! The command-line options, progress bars and JSON summary shared by the drivers
//! (`cryptonn server train`, `cryptonn client encrypt`, `examples/train_lenet.rs`,
//! `examples/train.rs`), so that the same flags mean the same thing and the summaries have the
//! same keys. Behind the `cli` feature (clap).
#![allow(missing_docs)] // clap's derive documents the options through their doc comments.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::coordinator::secure_training::EncryptionParams;
use crate::nn::activation::Activation;
use crate::nn::data::PixelNormalization;
use crate::nn::first_layer::QuantConfig;
use crate::nn::lenet::{LayerOrder, LeNetConfig, PoolKind};
use crate::nn::model::{Model, ModelSpec};
use crate::nn::optim::{LrSchedule, SgdConfig};
use crate::nn::saved_model::{Checkpointer, DatasetInfo, SavedModel, SavedModelError};
use crate::nn::train::{
    BatchProgress, BatchSchedule, EpochStats, Mode, TrainConfig, TrainObserver, TrainReport,
    TrainStart,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliBatches {
    /// Reshuffle all indices each epoch.
    Shuffled,
    /// Fixed shards, shard order and order within shards shuffled each epoch.
    FixedShards,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliOrder {
    /// conv -> 2x2 average subsampling -> nonlinearity (LeCun et al. 1998).
    Lecun1998,
    /// conv -> nonlinearity -> pool.
    Modern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliActivation {
    Relu,
    Tanh,
    Sigmoid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliSchedule {
    /// Constant learning rate.
    Constant,
    /// Cosine annealing to 0 over the run.
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliPool {
    Max,
    Average,
}

/// What fixes the encryption of a training set: the data owner and the server must agree.
#[derive(Debug, Clone, Args)]
pub struct EncodingOptions {
    /// Training examples (the first N of the 60,000) [default: 2048 in secure mode, else 10000].
    #[arg(long)]
    pub train_size: Option<usize>,
    /// Mini-batch size (= shard size: one key domain per shard in secure mode).
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Seed of the weights and the shuffles (not of the label permutation, which the data
    /// owner draws from the OS RNG: see --labels).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fixed-point scale of normalised pixels (quantised and secure mode).
    #[arg(long, default_value_t = QuantConfig::default().scale_x)]
    pub scale_x: f64,
    /// Fixed-point scale of conv1's weights (quantised and secure mode).
    #[arg(long, default_value_t = QuantConfig::default().scale_w)]
    pub scale_w: f64,
    /// Fixed-point scale of conv1's output gradient (quantised and secure mode).
    #[arg(long, default_value_t = QuantConfig::default().scale_grad)]
    pub scale_grad: f64,
    /// Fixed-point scale of softmax outputs and one-hot labels (quantised and secure mode).
    #[arg(long, default_value_t = QuantConfig::default().scale_p)]
    pub scale_p: f64,
    /// Largest allowed |z| of conv1's integer forward pass.
    #[arg(long, default_value_t = QuantConfig::default().forward_bound)]
    pub forward_bound: u64,
    /// Largest allowed |G| of conv1's integer weight gradient.
    #[arg(long, default_value_t = QuantConfig::default().gradient_bound)]
    pub gradient_bound: u64,
}

impl EncodingOptions {
    /// The fixed-point configuration.
    pub fn quant(&self) -> QuantConfig {
        QuantConfig {
            scale_x: self.scale_x,
            scale_w: self.scale_w,
            scale_grad: self.scale_grad,
            scale_p: self.scale_p,
            forward_bound: self.forward_bound,
            gradient_bound: self.gradient_bound,
        }
    }

    /// The encryption parameters of secure mode.
    #[allow(dead_code)]
    pub fn encryption_params(&self) -> EncryptionParams {
        EncryptionParams::new(
            &self.quant(),
            PixelNormalization::default(),
            self.batch_size,
        )
    }
}

/// The options of a training run (besides the encoding).
#[derive(Debug, Clone, Args)]
pub struct TrainOptions {
    #[command(flatten)]
    pub encoding: EncodingOptions,
    /// Passes over the training set (at least 1).
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pub epochs: usize,
    /// How epochs are cut into batches [default: fixed-shards in quantized and secure mode].
    #[arg(long, value_enum)]
    pub batches: Option<CliBatches>,
    /// Test examples (the first N of the 10,000; at least 1).
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
    pub test_size: usize,
    /// SGD learning rate.
    #[arg(long, default_value_t = SgdConfig::default().lr)]
    pub lr: f32,
    /// SGD momentum (0 for plain SGD).
    #[arg(long, default_value_t = SgdConfig::default().momentum)]
    pub momentum: f32,
    /// Learning-rate schedule over the run.
    #[arg(long, value_enum, default_value = "cosine")]
    pub schedule: CliSchedule,
    /// rayon threads (0: one per core). The result does not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Write a JSON summary of the run to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Layer order.
    #[arg(long, value_enum, default_value = "lecun1998")]
    pub layer_order: CliOrder,
    /// Nonlinearity.
    #[arg(long, value_enum, default_value = "relu")]
    pub activation: CliActivation,
    /// Pooling in the modern layer order.
    #[arg(long, value_enum, default_value = "max")]
    pub pool: CliPool,
    /// Samples per parallel task (fixes the reduction order).
    #[arg(long, default_value_t = TrainConfig::default().chunk_size)]
    pub chunk_size: usize,
    /// Half-width of the baby-step table of the discrete logs (secure mode).
    #[arg(long, default_value_t = 1 << 20)]
    pub dlog_half_width: u64,
    #[command(flatten)]
    pub persist: PersistOptions,
    /// Standard deviation of the discrete Gaussian noise the authority adds to every decrypted
    /// first-layer value (secure mode; quantised mode adds the same noise, drawn from --seed),
    /// in units of the encoded values, to 1/1000. 0: exact values, today's behaviour.
    #[arg(long, default_value_t = 0.0, value_parser = noise_sigma)]
    pub noise_sigma: f64,
    /// A privacy budget for noisy training (needs --noise-sigma > 0): the largest ε, at
    /// δ = 1e-5, that any training image may reach (per image, or per pixel with
    /// --noise-budget-granularity pixel; see docs/noisy-keys.md). The authority refuses a key
    /// request that would go beyond it (`PrivacyBudgetExceeded`, nothing issued) and the run
    /// stops with that error. Unset: no budget, ε is only reported.
    #[arg(long, value_parser = epsilon_budget)]
    pub noise_epsilon_budget: Option<f64>,
    /// What --noise-epsilon-budget protects: the whole image, or one pixel.
    #[arg(long, value_enum, default_value_t = BudgetGranularity::Image)]
    pub noise_budget_granularity: BudgetGranularity,
}

/// The neighbouring relation of `--noise-epsilon-budget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BudgetGranularity {
    /// The whole image changes within the encoding's box.
    Image,
    /// One pixel changes within its range.
    Pixel,
}

/// `--noise-epsilon-budget` without `--noise-sigma`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("--noise-epsilon-budget needs noise: set --noise-sigma > 0")]
pub struct BudgetWithoutNoise;

/// Saving, checkpointing and resuming a run (`cryptonn::nn::saved_model`).
#[derive(Debug, Clone, Default, Args)]
pub struct PersistOptions {
    /// Save the trained model to this file (safetensors: float32 weights named per layer;
    /// metadata: model spec, fixed-point scales, input encoding, seed, epoch, weights SHA-256,
    /// and the momentum buffers for --resume). Written atomically at the end of the run.
    #[arg(long, value_name = "PATH")]
    pub save: Option<PathBuf>,
    /// Also save to --save after every N epochs (each checkpoint atomically replaces the last).
    #[arg(long, value_name = "N", requires = "save", value_parser = at_least_one)]
    pub checkpoint_every: Option<usize>,
    /// Continue the run saved in this checkpoint (weights, momentum, learning-rate schedule
    /// position, RNG streams); every other option must be the interrupted run's, which is
    /// checked. In secure mode the encrypted dataset cache and the key domains are reused and
    /// the authority's audit log is continued.
    #[arg(long, value_name = "PATH")]
    pub resume: Option<PathBuf>,
}

impl PersistOptions {
    /// Where the run starts: `fresh()`, or the checkpoint of --resume, verified and checked
    /// against the run's configuration, model and training set. Prints what it resumes.
    ///
    /// # Errors
    /// The checkpoint's load and resume errors; `fresh`'s errors.
    pub fn start(
        &self,
        cfg: &TrainConfig,
        spec: &ModelSpec,
        dataset: &DatasetInfo,
        fresh: impl FnOnce() -> Result<Model, crate::nn::NnError>,
    ) -> Result<TrainStart, PersistError> {
        let Some(path) = &self.resume else {
            return Ok(TrainStart::fresh(fresh()?));
        };
        let saved = SavedModel::load(path)?;
        println!(
            "resuming {} after epoch {} of {} (step {} of {}, weights sha256 {})",
            path.display(),
            saved.epochs_done(),
            saved.config().epochs,
            saved.steps_done(),
            saved.total_steps(),
            saved.weights_sha256()
        );
        Ok(saved.resume(cfg, spec, dataset)?)
    }

    /// `inner`, saving to --save after the last epoch (and every --checkpoint-every epochs).
    pub fn observer<'a>(
        &self,
        inner: &'a mut dyn TrainObserver,
        dataset: DatasetInfo,
    ) -> Box<dyn TrainObserver + 'a> {
        match &self.save {
            Some(path) => Box::new(Checkpointer::new(
                inner,
                path,
                self.checkpoint_every,
                dataset,
            )),
            None => Box::new(inner),
        }
    }

    /// Prints where the model was saved (after a run with --save).
    pub fn report_saved(&self, report: &TrainReport) {
        if let Some(path) = &self.save {
            println!(
                "saved model {} (weights sha256 {})",
                path.display(),
                report.weights_sha256
            );
        }
    }
}

/// Why a run could not start from --resume.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The checkpoint cannot be read or does not fit the run.
    #[error(transparent)]
    SavedModel(#[from] SavedModelError),
    /// A fresh model could not be built.
    #[error(transparent)]
    Model(#[from] crate::nn::NnError),
}

impl TrainOptions {
    /// The training size: the option, else 2,048 in secure mode and 10,000 otherwise.
    #[allow(dead_code)]
    pub fn train_size(&self, mode: Mode) -> usize {
        self.encoding
            .train_size
            .unwrap_or(if mode == Mode::Secure { 2048 } else { 10_000 })
    }

    /// The training configuration for `mode`.
    pub fn config(&self, mode: Mode) -> TrainConfig {
        let schedule = match self.batches {
            Some(CliBatches::Shuffled) => BatchSchedule::Shuffled,
            Some(CliBatches::FixedShards) => BatchSchedule::FixedShards,
            None if mode == Mode::Plain => BatchSchedule::Shuffled,
            None => BatchSchedule::FixedShards,
        };
        TrainConfig {
            mode,
            epochs: self.epochs,
            batch_size: self.encoding.batch_size,
            chunk_size: self.chunk_size,
            sgd: SgdConfig {
                lr: self.lr,
                momentum: self.momentum,
                schedule: match self.schedule {
                    CliSchedule::Constant => LrSchedule::Constant,
                    CliSchedule::Cosine => LrSchedule::Cosine,
                },
            },
            seed: self.encoding.seed,
            normalization: PixelNormalization::default(),
            lenet: LeNetConfig {
                order: match self.layer_order {
                    CliOrder::Lecun1998 => LayerOrder::LeCun1998,
                    CliOrder::Modern => LayerOrder::Modern,
                },
                activation: match self.activation {
                    CliActivation::Relu => Activation::Relu,
                    CliActivation::Tanh => Activation::Tanh,
                    CliActivation::Sigmoid => Activation::Sigmoid,
                },
                pool: match self.pool {
                    CliPool::Max => PoolKind::Max,
                    CliPool::Average => PoolKind::Average,
                },
                ..LeNetConfig::default()
            },
            quant: self.encoding.quant(),
            schedule,
        }
    }

    /// The budget of `--noise-epsilon-budget` (at `δ = 10⁻⁵`), `None` if unset.
    ///
    /// # Errors
    /// [`BudgetWithoutNoise`] for a budget without `--noise-sigma`.
    pub fn noise_budget(
        &self,
    ) -> Result<Option<crate::coordinator::accountant::PrivacyBudget>, BudgetWithoutNoise> {
        use crate::coordinator::accountant::{PrivacyBudget, DEFAULT_DELTA};
        let Some(epsilon) = self.noise_epsilon_budget else {
            return Ok(None);
        };
        if self.noise().is_none() {
            return Err(BudgetWithoutNoise);
        }
        Ok(Some(PrivacyBudget {
            epsilon,
            delta: DEFAULT_DELTA,
            granularity: self.noise_budget_granularity.into(),
        }))
    }

    /// The noise of `--noise-sigma` (`None` for 0).
    #[must_use]
    pub fn noise(&self) -> Option<crate::fe::discrete_gaussian::DiscreteGaussian> {
        noise_of(self.noise_sigma)
    }

    /// Builds the global rayon pool with `--threads`.
    ///
    /// # Errors
    /// If the global pool was already built.
    pub fn init_threads(&self) -> Result<(), rayon::ThreadPoolBuildError> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build_global()
    }
}

/// indicatif progress bars, one per epoch.
pub struct Bars {
    bar: Option<ProgressBar>,
    epoch_start: Instant,
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    pub fn new() -> Self {
        Self {
            bar: None,
            epoch_start: Instant::now(),
        }
    }
}

impl TrainObserver for Bars {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, images: usize) {
        let bar = ProgressBar::new(images as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30.cyan/blue}] {pos:>6}/{len} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
        self.bar = Some(bar);
        self.epoch_start = Instant::now();
    }

    fn batch_finished(&mut self, p: &BatchProgress) {
        if let Some(bar) = &self.bar {
            let rate = p.images_done as f64 / self.epoch_start.elapsed().as_secs_f64();
            bar.set_position(p.images_done as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:5.2}% {:6.0} img/s",
                p.mean_loss,
                100.0 * p.accuracy,
                rate
            ));
        }
    }

    fn epoch_finished(&mut self, s: &EpochStats) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "epoch {}: train loss {:.4}, train acc {:.2} %, test acc {:.2} %, {:.1} s ({:.0} img/s), eval {:.1} s",
            s.epoch + 1,
            s.train_loss,
            100.0 * s.train_accuracy,
            100.0 * s.test_accuracy,
            s.seconds,
            s.images as f64 / s.seconds,
            s.eval_seconds
        );
    }
}

/// Writes the run summary: the [`TrainReport`] and `extra` keys, pretty JSON.
///
/// # Errors
/// I/O errors creating or writing `path`.
pub fn write_json(
    path: &Path,
    report: &TrainReport,
    extra: Option<&serde_json::Map<String, serde_json::Value>>,
) -> std::io::Result<()> {
    let mut value = serde_json::to_value(report).map_err(std::io::Error::other)?;
    if let (Some(obj), Some(extra)) = (value.as_object_mut(), extra) {
        obj.extend(extra.clone());
    }
    let file = std::fs::File::create(path)?;
    serde_json::to_writer_pretty(std::io::BufWriter::new(file), &value)
        .map_err(std::io::Error::other)
}

/// Prints the closing lines of a run.
pub fn print_final(report: &TrainReport, mode: Mode, start: Instant) {
    println!("weights sha256 {}", report.weights_sha256);
    if report.test_accuracy.is_empty() {
        println!(
            "final test accuracy not measured ({mode}, {} epochs, {} training images, {:.0} \
             img/s); total wall time {:.1} s",
            report.epochs,
            report.train_size,
            report.images_per_second,
            start.elapsed().as_secs_f64()
        );
        return;
    }
    println!(
        "final test accuracy {:.2} % ({mode}, {} epochs, {} training images, {:.0} img/s); total wall time {:.1} s",
        100.0 * report.test_accuracy.last().copied().unwrap_or(0.0),
        report.epochs,
        report.train_size,
        report.images_per_second,
        start.elapsed().as_secs_f64()
    );
}

/// The discrete Gaussian of a `--noise-sigma` value (`None` for 0 or an invalid value, which
/// [`noise_sigma`] refuses at parsing).
#[must_use]
pub fn noise_of(sigma: f64) -> Option<crate::fe::discrete_gaussian::DiscreteGaussian> {
    crate::fe::discrete_gaussian::DiscreteGaussian::from_f64_milli(sigma)
        .ok()
        .filter(|d| !d.is_zero())
}

impl From<BudgetGranularity> for crate::coordinator::accountant::Granularity {
    fn from(g: BudgetGranularity) -> Self {
        match g {
            BudgetGranularity::Image => Self::Image,
            BudgetGranularity::Pixel => Self::Pixel,
        }
    }
}

/// Parses `--noise-sigma`: a finite `σ` in `[0, 10⁶]`, to `10⁻³`.
///
/// # Errors
/// A message for anything else.
pub fn noise_sigma(s: &str) -> Result<f64, String> {
    let v = s.parse::<f64>().map_err(|e| e.to_string())?;
    crate::fe::discrete_gaussian::DiscreteGaussian::from_f64_milli(v)
        .map(|_| v)
        .map_err(|e| e.to_string())
}

/// Parses a privacy budget's `ε`: a positive, finite number (`--noise-epsilon-budget`).
///
/// # Errors
/// A message for anything else.
pub fn epsilon_budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("{v} is not a positive, finite epsilon")),
        Err(e) => Err(e.to_string()),
    }
}

/// A count that must be at least 1 (0 epochs or 0 test images would print an accuracy that
/// measures nothing).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
