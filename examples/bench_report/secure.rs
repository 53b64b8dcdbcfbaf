//! Secure training for the report: the roles of a secure run composed from the library's
//! secure-training parts ([`cryptonn::coordinator::secure_training`]) — the authority creates
//! one key domain per mini-batch shard, the data owner encrypts the training subset once (a
//! fresh authority key every run, so encryption is always measured), the server trains through
//! [`SecureFirstLayer`] and [`train_with_backend`] — plus the timings of each part.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use cryptonn::coordinator::secure_training::{
    create_shard_domains, encrypt_or_reuse, EncryptedDataset, EncryptionParams, SecureFirstLayer,
    SecureStats,
};
use cryptonn::coordinator::{
    AuditConfig, AuditFileOptions, AuditFileSink, AuditLog, Authority, InProcessKeyService,
    RequesterId,
};
use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{Dataset, LabelPermutation};
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::train::{train_with_backend, TrainConfig, TrainObserver, TrainReport};
use rand_core::{OsRng, RngCore};
use serde::Serialize;

use crate::cross_domain::{CrossDomain, SamplingKeyService};

/// Sampled keys tried on other shards after the run.
const CROSS_DOMAIN_KEYS: usize = 256;

/// The secure run's own figures (the JSON keys of `train_lenet --mode secure`), serialised
/// under `training.secure`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SecureExtra {
    /// Group of the run.
    pub group: &'static str,
    /// Seconds the data owner spent encrypting the training subset (FEIP images, FEBO labels).
    pub encrypt_seconds: f64,
    /// Bytes of ciphertext of the training subset.
    pub ciphertext_bytes: usize,
    /// The server's counters and timings (`key_requests`, `feip_keys`, `febo_keys`,
    /// `decryptions`, `dlog_seconds`, `fe_seconds`, `key_seconds`), flattened into this object.
    #[serde(flatten)]
    pub stats: SecureStats,
    /// Seconds the authority took to create the shard domains.
    pub authority_setup_seconds: f64,
    /// Seconds to load the dlog table (built on first use) and the encrypted dataset.
    pub server_setup_seconds: f64,
    /// Baby-step half-width of the server's discrete-log table.
    pub dlog_table_half_width: u64,
    /// Audit records the authority wrote (one per issued key).
    pub audit_records: usize,
    /// Size of the audit file.
    pub audit_file_bytes: u64,
}

/// Where secure time goes, in seconds: encryption (once, by the data owner) and the training
/// time split into key derivation, group operations, discrete logs and the rest (the plaintext
/// layers, the optimiser and bookkeeping).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Breakdown {
    /// Data owner's encryption.
    pub encryption_s: f64,
    /// Key service: key derivation, policy, audit.
    pub key_derivation_s: f64,
    /// Group operations of decryption, discrete logs excluded.
    pub group_operations_s: f64,
    /// Discrete logs.
    pub discrete_log_s: f64,
    /// Everything else in training: the plaintext layers (conv2, fc1-3, softmax, backward),
    /// SGD, encoding.
    pub plaintext_layers_s: f64,
}

impl Breakdown {
    /// (component, seconds) for tables and plots.
    pub fn parts(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("encryption (data owner, once)", self.encryption_s),
            ("key derivation (authority)", self.key_derivation_s),
            ("group operations (server)", self.group_operations_s),
            ("discrete log (server)", self.discrete_log_s),
            ("plaintext layers (server)", self.plaintext_layers_s),
        ]
    }
}

/// Trains LeNet-5 over Ristretto255 ciphertexts of `train_set`; `cfg.schedule` must be fixed
/// shards. The encrypted dataset is written to `work_dir` and removed afterwards; the dlog
/// table is cached in `cache_dir`.
pub fn run(
    cfg: &TrainConfig,
    train_set: &Dataset,
    test_set: &Dataset,
    cache_dir: &Path,
    work_dir: &Path,
    half_width: u64,
    observer: &mut dyn TrainObserver,
) -> Result<(LeNet5, TrainReport, SecureExtra, Breakdown, CrossDomain)> {
    let group = Ristretto255;
    let t = Instant::now();
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    // Every issued key is audited, to a file (millions of keys in a full run), so that the
    // authority's memory stays flat. The file is removed after the run.
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let audit_path = work_dir.join("audit.cnnaudit");
    let sink = AuditFileSink::create(&audit_path, AuditFileOptions::default())
        .with_context(|| format!("creating {}", audit_path.display()))?;
    let mut authority = Authority::from_seed(group, seed)
        .with_audit_log(AuditLog::with_sink(AuditConfig::default(), Box::new(sink)));
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    let domains = create_shard_domains(&mut authority, train_set.len(), &params)?;
    let pks = domains
        .iter()
        .map(|&d| authority.public_key(d))
        .collect::<Result<Vec<_>, _>>()?;
    let authority = Arc::new(Mutex::new(authority));
    let authority_setup_seconds = t.elapsed().as_secs_f64();

    let labels = LabelPermutation::from_seed(cfg.seed, cryptonn::nn::data::CLASSES);
    let bar = crate::stats::bar("encrypting", train_set.len() as u64);
    let t = Instant::now();
    let (path, _reused) = encrypt_or_reuse(
        &group,
        work_dir,
        train_set,
        &labels,
        &pks,
        &params,
        true,
        &|done| bar.set_position(done as u64),
    )?;
    let encrypt_seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let t = Instant::now();
    let data = EncryptedDataset::load(group, &path)?;
    let ciphertext_bytes = data.ciphertext_bytes();
    let table = Arc::new(BabyStepTable::load_or_build(group, half_width, cache_dir)?);
    let server_setup_seconds = t.elapsed().as_secs_f64();
    println!(
        "secure: {} shard domains ({authority_setup_seconds:.1} s), {} images encrypted in \
         {encrypt_seconds:.1} s ({:.1} MB), server setup {server_setup_seconds:.1} s",
        domains.len(),
        data.len(),
        ciphertext_bytes as f64 / 1e6
    );
    let keys = SamplingKeyService::new(InProcessKeyService::new(
        Arc::clone(&authority),
        RequesterId::new("server"),
    ));
    let mut backend = SecureFirstLayer::new(data, keys, Arc::clone(&table), cfg.quant)?;
    let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let (model, report) =
        train_with_backend(cfg, model, &mut backend, test_set, &labels, observer)?;
    let s = *backend.stats();

    // Do the keys collected over the run open other shards?
    let bar = crate::stats::bar("cross-shard", 1);
    bar.set_message("trying sampled keys on other shards");
    let dlog = DlogSolver::new(Arc::clone(&table), 2 * cfg.quant.gradient_bound)?;
    let cross = crate::cross_domain::measure(
        &backend.key_service().samples(),
        s.feip_keys,
        CROSS_DOMAIN_KEYS,
        backend.dataset(),
        params.feip_params()?,
        &dlog,
        train_set,
        &params.pixel_encoding()?,
    )?;
    bar.finish_and_clear();
    println!(
        "secure: {} sampled keys of {} tried on other shards: {} of {} decryptions in range, {} \
         correct (own shard, control: {} of {} correct)",
        cross.keys_tried,
        cross.keys_received,
        cross.other_shard_in_range,
        cross.other_shard_attempts,
        cross.other_shard_correct,
        cross.own_shard_correct,
        cross.own_shard_attempts
    );
    drop(backend);
    let audit_records = authority
        .lock()
        .map_err(|_| anyhow::anyhow!("authority lock poisoned"))?
        .audit_log()
        .len();
    let audit_file_bytes = std::fs::metadata(&audit_path).map_or(0, |m| m.len());
    std::fs::remove_file(&audit_path)
        .with_context(|| format!("removing {}", audit_path.display()))?;
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;

    let training: f64 = report.epoch_seconds.iter().sum();
    let extra = SecureExtra {
        group: "ristretto",
        encrypt_seconds,
        ciphertext_bytes,
        stats: s,
        authority_setup_seconds,
        server_setup_seconds,
        dlog_table_half_width: half_width,
        audit_records,
        audit_file_bytes,
    };
    let breakdown = Breakdown {
        encryption_s: encrypt_seconds,
        key_derivation_s: s.key_seconds,
        group_operations_s: s.fe_seconds,
        discrete_log_s: s.dlog_seconds,
        plaintext_layers_s: (training - s.key_seconds - s.fe_seconds - s.dlog_seconds).max(0.0),
    };
    Ok((model, report, extra, breakdown, cross))
}
