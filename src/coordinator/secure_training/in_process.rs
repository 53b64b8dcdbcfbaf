//! Secure training with every party in one process: an in-memory authority with fresh master
//! keys, the data owner's encryption (cached in a directory), and the server's secure first
//! layer, behind one call, built with the [`SecureTrainingSession`] every driver uses, but
//! without a persistent authority seed and audit file; the Python binding's
//! `train(mode="secure")` calls this.
//!
//! The server's part sees only ciphertexts: [`SecureFirstLayer`](crate::coordinator::secure_training::SecureFirstLayer) reads the encrypted dataset and
//! obtains every function key from an [`InProcessKeyService`] under the authority's policy.
//! With the same configuration, data and label permutation, the weights are bit-identical to
//! [`Mode::Quantized`](crate::nn::train::Mode::Quantized) training.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::coordinator::secure_training::{
    ConvGeometry, EncryptionParams, FirstLayerGeometry, MnistSamples, SecureStats,
    SecureTrainingError, SecureTrainingSession,
};
use crate::coordinator::{Authority, SharedAuthority};
use crate::fe::group::PrimeOrderGroup;
use crate::nn::data::{Dataset, LabelPermutation};
use crate::nn::error::NnError;
use crate::nn::lenet::LeNet5;
use crate::nn::train::{
    train_with_backend, BatchSchedule, TrainConfig, TrainObserver, TrainReport,
};

/// The data owner's name at the in-process authority.
pub const DATA_OWNER: &str = "data-owner";
/// The server's name at the in-process authority.
pub const SERVER: &str = "server";

/// Where and how an in-process secure run keeps its files.
#[derive(Debug, Clone, Copy)]
pub struct InProcessOptions<'a> {
    /// The encrypted dataset and the discrete-log table are cached here (no secret is
    /// written: the authority's master keys stay in memory).
    pub cache_dir: &'a Path,
    /// The discrete-log table's half-width.
    pub dlog_half_width: u64,
    /// Encrypt even if a matching encrypted dataset is cached.
    pub reencrypt: bool,
}

/// What an in-process secure run measured, besides the [`TrainReport`].
#[derive(Debug, Clone)]
pub struct InProcessSummary {
    /// The training report (mode `"secure"`).
    pub report: TrainReport,
    /// The server's counters and timings.
    pub stats: SecureStats,
    /// Seconds the authority took to create the shard domains.
    pub setup_seconds: f64,
    /// Seconds the data owner took to encrypt (0 if the cached file was reused).
    pub encrypt_seconds: f64,
    /// Whether a cached encrypted dataset was reused.
    pub reused: bool,
    /// Bytes of ciphertext.
    pub ciphertext_bytes: usize,
    /// Audit records the authority kept (one per issued key).
    pub audit_records: usize,
}

/// Trains LeNet-5 (`cfg.lenet`, `cfg.seed`) from ciphertexts: the authority creates one key
/// domain per shard (bound to the data owner and the server), the data owner encrypts `train`
/// with its label permutation `labels` (or reuses the cached file), registers its label
/// commitments, and the server trains through [`SecureFirstLayer`](crate::coordinator::secure_training::SecureFirstLayer).
///
/// # Errors
/// [`NnError::InvalidConfig`] unless `cfg.schedule` is
/// [`BatchSchedule::FixedShards`]; [`NnError::Backend`] holding the
/// [`SecureTrainingError`] of any step (a refused key, a damaged cache file, a value outside the
/// discrete-log range); the errors of [`train_with_backend`].
#[allow(clippy::too_many_arguments)]
pub fn train_secure_in_process<G: PrimeOrderGroup>(
    group: G,
    cfg: &TrainConfig,
    train: &Dataset,
    test: &Dataset,
    labels: &LabelPermutation,
    options: &InProcessOptions<'_>,
    progress: &(dyn Fn(usize) + Sync),
    observer: &mut dyn TrainObserver,
) -> Result<(LeNet5, InProcessSummary), NnError> {
    if cfg.schedule != BatchSchedule::FixedShards {
        return Err(NnError::InvalidConfig(
            "secure training needs BatchSchedule::FixedShards (one key domain per shard)".into(),
        ));
    }
    let session = SecureTrainingSession::new(group.clone(), options.cache_dir)
        .dlog_half_width(options.dlog_half_width)
        .reencrypt(options.reencrypt);
    let authority: SharedAuthority<G> = Arc::new(Mutex::new(Authority::new(group)));
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    let source = MnistSamples::new(train, labels, &params)?;
    let input = session.encrypt(&authority, "mnist-train", &source, &params, progress)?;
    let table = session.dlog_table()?;
    let mut backend = session.server(
        session.in_process_keys(&authority),
        &input.path,
        table,
        cfg.quant,
        FirstLayerGeometry::Conv(ConvGeometry::lenet5()),
    )?;
    let ciphertext_bytes = backend.dataset().ciphertext_bytes();
    let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let (model, report) = train_with_backend(cfg, model, &mut backend, test, labels, observer)?;
    let audit_records = authority
        .lock()
        .map_err(|_| {
            SecureTrainingError::from(crate::coordinator::CoordinatorError::AuthorityUnavailable)
        })?
        .audit_log()
        .len();
    let summary = InProcessSummary {
        report,
        stats: *backend.stats(),
        setup_seconds: input.setup_seconds,
        encrypt_seconds: input.encrypt_seconds,
        reused: input.reused,
        ciphertext_bytes,
        audit_records,
    };
    Ok((model, summary))
}
