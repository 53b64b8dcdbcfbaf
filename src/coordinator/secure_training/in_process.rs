//! Secure training with every party in one process: an in-memory authority with fresh master
//! keys, the data owner's encryption (cached in a directory), and the server's secure first
//! layer, behind one call, built with the [`SecureTrainingSession`] every driver uses, but
//! without a persistent authority seed and audit file; the Python binding's
//! `train(mode="secure")` calls this. Any declared model ([`ModelSpec`]) on any dataset
//! ([`Dataset`] under its declared encoding) runs as `examples/train.rs` runs it, and
//! [`run_summary`](crate::coordinator::secure_training::run_summary) gives the same JSON
//! summary.
//!
//! The server's part sees only ciphertexts: [`SecureFirstLayer`](crate::coordinator::secure_training::SecureFirstLayer) reads the encrypted dataset and
//! obtains every function key from an [`InProcessKeyService`] under the authority's policy.
//! With the same configuration, data and label permutation, the weights are bit-identical to
//! [`Mode::Quantized`](crate::nn::train::Mode::Quantized) training.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::coordinator::secure_training::{
    DatasetSamples, EncryptionParams, FirstLayerGeometry, SecureSummary, SecureTrainingError,
    SecureTrainingSession,
};
use crate::coordinator::{Authority, SharedAuthority};
use crate::fe::group::PrimeOrderGroup;
use crate::nn::data::{Dataset, LabelPermutation};
use crate::nn::error::NnError;
use crate::nn::first_layer::FirstLayerSpec;
use crate::nn::model::{Model, ModelSpec};
use crate::nn::train::{
    train_with_backend, BatchSchedule, TrainConfig, TrainObserver, TrainReport,
};

/// The data owner's name at the in-process authority.
pub const DATA_OWNER: &str = "data-owner";
/// The server's name at the in-process authority.
pub const SERVER: &str = "server";
/// The `audit_file` of an in-process run's summary: the audit log stays in memory.
pub const IN_MEMORY_AUDIT: &str = "(in memory)";

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

/// What an in-process secure run measured: the [`TrainReport`] and the secure keys of the
/// summary.
#[derive(Debug, Clone)]
pub struct InProcessSummary {
    /// The training report (mode `"secure"`).
    pub report: TrainReport,
    /// The group, the data owner's and the server's counters and timings, and the audit
    /// records the authority kept (one per issued key); `audit_file` is [`IN_MEMORY_AUDIT`].
    pub secure: SecureSummary,
}

/// Trains the declared model `spec` (weights from `cfg.seed`) from ciphertexts of `train`, as
/// `examples/train.rs --mode secure` does: the authority creates the key domains (bound to the
/// data owner and the server), the data owner encrypts `train` under its declared encoding with
/// its label permutation `labels` (feature-major as well when the first layer is dense), or
/// reuses the file cached as `<dataset>-train`, registers its label commitments, and the server
/// trains through [`SecureFirstLayer`](crate::coordinator::secure_training::SecureFirstLayer).
/// With the same arguments the weights are bit-identical to
/// [`Mode::Quantized`](crate::nn::train::Mode::Quantized) training.
///
/// # Errors
/// [`NnError::InvalidConfig`] unless `cfg.schedule` is [`BatchSchedule::FixedShards`];
/// [`NnError::Model`] for a spec that is invalid or does not fit the data;
/// [`NnError::Backend`] holding the [`SecureTrainingError`] of any step (a refused key, a
/// damaged cache file, a value outside the discrete-log range); the errors of
/// [`train_with_backend`].
#[allow(clippy::too_many_arguments)]
pub fn train_secure_in_process<G: PrimeOrderGroup>(
    group: G,
    cfg: &TrainConfig,
    spec: &ModelSpec,
    dataset: &str,
    train: &Dataset,
    test: &Dataset,
    labels: &LabelPermutation,
    options: &InProcessOptions<'_>,
    progress: &(dyn Fn(usize) + Sync),
    observer: &mut dyn TrainObserver,
) -> Result<(Model, InProcessSummary), NnError> {
    if cfg.schedule != BatchSchedule::FixedShards {
        return Err(NnError::InvalidConfig(
            "secure training needs BatchSchedule::FixedShards (one key domain per shard)".into(),
        ));
    }
    let (first, _) = spec.first_layer()?;
    let session = SecureTrainingSession::new(group.clone(), options.cache_dir)
        .dlog_half_width(options.dlog_half_width)
        .reencrypt(options.reencrypt);
    let authority: SharedAuthority<G> = Arc::new(Mutex::new(Authority::new(group.clone())));
    let samples = DatasetSamples::new(train, labels, cfg.quant.scale_x)?;
    let layout = samples.layout(matches!(first, FirstLayerSpec::Linear { .. }))?;
    let params =
        EncryptionParams::new(&cfg.quant, Default::default(), cfg.batch_size).with_layout(layout);
    let name = format!("{dataset}-train");
    let input = session.encrypt(&authority, &name, &samples, &params, progress)?;
    let table = session.dlog_table()?;
    let mut backend = session.server(
        session.in_process_keys(&authority),
        &input.path,
        table,
        cfg.quant,
        FirstLayerGeometry::from_spec(&first)?,
    )?;
    let ciphertext_bytes = backend.dataset().ciphertext_bytes();
    let model = Model::new(spec, cfg.seed)?;
    let (model, mut report) = train_with_backend(cfg, model, &mut backend, test, labels, observer)?;
    report.encrypt_images_per_second = input.images_per_second(train.len());
    let audit_records = authority
        .lock()
        .map_err(|_| {
            SecureTrainingError::from(crate::coordinator::CoordinatorError::AuthorityUnavailable)
        })?
        .audit_log()
        .len();
    let secure = SecureSummary {
        group: group.id(),
        encrypt_seconds: input.encrypt_seconds,
        reused: input.reused,
        ciphertext_bytes,
        stats: *backend.stats(),
        setup_seconds: input.setup_seconds,
        audit_records: Some(audit_records),
        audit_file: IN_MEMORY_AUDIT.into(),
    };
    Ok((model, InProcessSummary { report, secure }))
}
