//! The scaling section: LeNet-5 training images/s at 1, 2, 4, … threads up to the machine's
//! core count (and the core count itself if it is not a power of two), each run in its own
//! rayon pool, with the final weights compared across thread counts (`scaling.*` in
//! report.json).
//!
//! The data owner encrypts the training subset once (in the global pool); every secure run
//! then trains from that file, with a fresh backend, through the same in-process authority
//! and the library's [`SecureTrainingSession`]. Plain training runs beside it at each thread
//! count. Training is bit-for-bit deterministic for any thread count, so every run must end
//! with the same `weights_sha256`: `weights_identical` says whether it did.

use std::sync::Arc;

use anyhow::{Context, Result};
use cryptonn::coordinator::secure_training::{
    DatasetSamples, EncryptionParams, FirstLayerGeometry, SecureTrainingSession,
};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{Dataset, LabelPermutation};
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::train::{train, train_with_backend, Mode, TrainConfig};
use serde::Serialize;

use crate::training::SecureOptions;

/// One thread count's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingRun {
    /// rayon threads of the run's pool.
    pub threads: usize,
    /// Secure training images per second.
    pub secure_images_per_second: f64,
    /// Secure training seconds (all epochs, evaluation excluded).
    pub secure_seconds: f64,
    /// Seconds the server waited for the key service.
    pub secure_key_seconds: f64,
    /// `secure_key_seconds` / `secure_seconds`.
    pub secure_key_share: f64,
    /// SHA-256 of the secure run's final weights.
    pub secure_weights_sha256: String,
    /// Plain training images per second.
    pub plain_images_per_second: f64,
    /// SHA-256 of the plain run's final weights.
    pub plain_weights_sha256: String,
}

/// `scaling` in report.json.
#[derive(Debug, Clone, Serialize)]
pub struct Scaling {
    /// Training images (the first N).
    pub train_size: usize,
    /// Epochs of every run.
    pub epochs: usize,
    /// Cores the machine reports.
    pub cores: usize,
    /// The largest thread count measured.
    pub max_threads: usize,
    /// One entry per thread count, ascending.
    pub runs: Vec<ScalingRun>,
    /// Secure images/s at `max_threads` over images/s at 1 thread.
    pub secure_speedup: Option<f64>,
    /// Plain images/s at `max_threads` over images/s at 1 thread.
    pub plain_speedup: Option<f64>,
    /// Whether every secure run ended with the same weights, and every plain run too.
    pub weights_identical: bool,
}

/// 1, 2, 4, … up to `cores`, and `cores` itself.
pub fn thread_counts(cores: usize) -> Vec<usize> {
    let cores = cores.max(1);
    let mut t: Vec<usize> = std::iter::successors(Some(1usize), |&n| n.checked_mul(2))
        .take_while(|&n| n <= cores)
        .collect();
    if t.last() != Some(&cores) {
        t.push(cores);
    }
    t
}

/// Trains LeNet-5 (`spec`) on `train_set` at every thread count of `threads`, secure and
/// plain, `cfg.epochs` epochs each (test set `test_set`).
pub fn run(
    cfg: &TrainConfig,
    spec: &ModelSpec,
    train_set: &Dataset,
    test_set: &Dataset,
    opts: &SecureOptions,
    threads: &[usize],
) -> Result<Scaling> {
    let group = Ristretto255;
    let session = SecureTrainingSession::new(group, &opts.work_dir)
        .dlog_half_width(opts.dlog_half_width)
        .reencrypt(true);
    std::fs::create_dir_all(&opts.work_dir)
        .with_context(|| format!("creating {}", opts.work_dir.display()))?;
    let local = session.local_authority()?;
    let labels = LabelPermutation::from_seed(cfg.seed, train_set.classes());
    let samples = DatasetSamples::new(train_set, &labels, cfg.quant.scale_x)?;
    let (first, _) = spec.first_layer()?;
    let layout = samples.layout(matches!(
        first,
        cryptonn::nn::first_layer::FirstLayerSpec::Linear { .. }
    ))?;
    let params =
        EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size).with_layout(layout);
    let bar = crate::stats::bar("scaling: encrypting", train_set.len() as u64);
    let input = session.encrypt(
        &local.authority,
        "scaling-train",
        &samples,
        &params,
        &|done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let secure_cfg = TrainConfig {
        mode: Mode::Secure,
        ..*cfg
    };
    let plain_cfg = TrainConfig {
        mode: Mode::Plain,
        ..*cfg
    };
    let mut runs = Vec::new();
    for &t in threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .context("building a rayon pool")?;
        let bar = crate::stats::bar(&format!("scaling: {t} thread(s)"), 1);
        let (secure, plain) = pool.install(|| -> Result<_> {
            let mut backend = session.server(
                session.in_process_keys(&local.authority),
                &input.path,
                Arc::clone(&opts.table),
                cfg.quant,
                FirstLayerGeometry::from_spec(&first)?,
            )?;
            let model = Model::new(spec, cfg.seed)?;
            let (_, secure) =
                train_with_backend(&secure_cfg, model, &mut backend, test_set, &labels, &mut ())?;
            let key_seconds = backend.stats().key_seconds;
            let (_, plain) = train(&plain_cfg, spec, train_set, test_set, &mut ())?;
            Ok(((secure, key_seconds), plain))
        })?;
        bar.finish_and_clear();
        let ((secure, key_seconds), plain) = (secure, plain);
        let seconds: f64 = secure.epoch_seconds.iter().sum();
        let run = ScalingRun {
            threads: t,
            secure_images_per_second: secure.images_per_second,
            secure_seconds: seconds,
            secure_key_seconds: key_seconds,
            secure_key_share: if seconds > 0.0 {
                key_seconds / seconds
            } else {
                0.0
            },
            secure_weights_sha256: secure.weights_sha256,
            plain_images_per_second: plain.images_per_second,
            plain_weights_sha256: plain.weights_sha256,
        };
        println!(
            "scaling: {t} thread(s): secure {:.1} img/s (keys {:.1} % of {:.1} s), plain {:.0} \
             img/s, weights {}",
            run.secure_images_per_second,
            100.0 * run.secure_key_share,
            run.secure_seconds,
            run.plain_images_per_second,
            &run.secure_weights_sha256[..12]
        );
        runs.push(run);
    }
    drop(local.authority);
    std::fs::remove_file(&local.audit_file)
        .with_context(|| format!("removing {}", local.audit_file.display()))?;
    std::fs::remove_file(&input.path)
        .with_context(|| format!("removing {}", input.path.display()))?;
    let same = |f: fn(&ScalingRun) -> &str| runs.windows(2).all(|w| f(&w[0]) == f(&w[1]));
    let weights_identical =
        same(|r| r.secure_weights_sha256.as_str()) && same(|r| r.plain_weights_sha256.as_str());
    let speedup = |f: fn(&ScalingRun) -> f64| match (runs.first(), runs.last()) {
        (Some(a), Some(b)) if runs.len() > 1 && f(a) > 0.0 => Some(f(b) / f(a)),
        _ => None,
    };
    Ok(Scaling {
        train_size: train_set.len(),
        epochs: cfg.epochs,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        max_threads: threads.iter().copied().max().unwrap_or(1),
        secure_speedup: speedup(|r| r.secure_images_per_second),
        plain_speedup: speedup(|r| r.plain_images_per_second),
        runs,
        weights_identical,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptonn::fe::dlog::BabyStepTable;
    use cryptonn::nn::data::{default_data_dir, Mnist};
    use cryptonn::nn::train::BatchSchedule;

    /// Secure and plain training in pools of 1, 2 and 3 threads end with the same weights
    /// (two shards of 16 images, one epoch).
    #[test]
    #[allow(clippy::unwrap_used)]
    fn weights_are_identical_at_every_thread_count() {
        let mnist = Mnist::load(&default_data_dir()).unwrap();
        let train_set = mnist.train.take(32, "training").unwrap();
        let test_set = mnist.test.take(50, "test").unwrap();
        let work_dir =
            std::env::temp_dir().join(format!("cryptonn-scaling-{}", std::process::id()));
        let opts = SecureOptions {
            table: Arc::new(BabyStepTable::new(Ristretto255, 1 << 16).unwrap()),
            work_dir: work_dir.clone(),
            dlog_half_width: 1 << 16,
        };
        let cfg = TrainConfig {
            epochs: 1,
            schedule: BatchSchedule::FixedShards,
            ..TrainConfig::default()
        };
        let spec = ModelSpec::lenet5(cfg.lenet);
        let s = run(&cfg, &spec, &train_set, &test_set, &opts, &[1, 2, 3]).unwrap();
        std::fs::remove_dir_all(&work_dir).ok();
        let mut authority = work_dir.into_os_string();
        authority.push("-authority");
        std::fs::remove_dir_all(authority).ok();
        assert_eq!(s.runs.len(), 3);
        assert!(s.weights_identical, "{:?}", s.runs);
        assert_eq!(s.max_threads, 3);
        assert!(s.secure_speedup.is_some());
        assert_eq!(s.runs[0].secure_weights_sha256.len(), 64);
    }

    #[test]
    fn thread_counts_double_up_to_the_cores() {
        assert_eq!(thread_counts(1), vec![1]);
        assert_eq!(thread_counts(2), vec![1, 2]);
        assert_eq!(thread_counts(6), vec![1, 2, 4, 6]);
        assert_eq!(thread_counts(16), vec![1, 2, 4, 8, 16]);
    }
}
