//! Secure training with every party in one process: an in-memory authority with fresh master
//! keys, the data owner's encryption (cached in a directory), and the server's secure first
//! layer, behind one call. These are the steps `examples/train_lenet.rs` runs in secure mode,
//! without its persistent authority seed and audit file; the Python binding's
//! `train(mode="secure")` calls this.
//!
//! The server's part sees only ciphertexts: [`SecureFirstLayer`] reads the encrypted dataset and
//! obtains every function key from an [`InProcessKeyService`] under the authority's policy.
//! With the same configuration, data and label permutation, the weights are bit-identical to
//! [`Mode::Quantized`](crate::nn::train::Mode::Quantized) training.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::coordinator::secure_training::{
    create_shard_domains, encrypt_or_reuse, register_label_commitments, EncryptedDataset,
    EncryptionParams, SecureFirstLayer, SecureStats, SecureTrainingError,
};
use crate::coordinator::{Authority, DomainAccess, InProcessKeyService, RequesterId};
use crate::fe::dlog::BabyStepTable;
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
/// commitments, and the server trains through [`SecureFirstLayer`].
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
    let t = Instant::now();
    let mut authority = Authority::new(group.clone());
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    let access = DomainAccess::new(RequesterId::new(DATA_OWNER), RequesterId::new(SERVER));
    let domains = create_shard_domains(&mut authority, train.len(), &params, &access)?;
    let pks = domains
        .iter()
        .map(|&d| authority.public_key(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SecureTrainingError::from)?;
    let authority = Arc::new(Mutex::new(authority));
    let setup_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (path, reused) = encrypt_or_reuse(
        &group,
        options.cache_dir,
        train,
        labels,
        &pks,
        &params,
        options.reencrypt,
        progress,
    )?;
    let encrypt_seconds = if reused {
        0.0
    } else {
        t.elapsed().as_secs_f64()
    };
    let data = EncryptedDataset::load(group.clone(), &path)?;
    let owner = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new(DATA_OWNER));
    register_label_commitments(&data, &owner)?;
    let ciphertext_bytes = data.ciphertext_bytes();

    let table = Arc::new(
        BabyStepTable::load_or_build(group, options.dlog_half_width, options.cache_dir)
            .map_err(|e| SecureTrainingError::from(crate::fe::error::FeError::from(e)))?,
    );
    let keys = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new(SERVER));
    let mut backend = SecureFirstLayer::new(data, keys, table, cfg.quant)?;
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
        setup_seconds,
        encrypt_seconds,
        reused,
        ciphertext_bytes,
        audit_records,
    };
    Ok((model, summary))
}
