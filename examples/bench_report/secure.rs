//! Secure training for the report, of any declared model, built by the library's one session
//! object ([`SecureTrainingSession`]): an in-process authority (its seed and audit log in its
//! own directory), the data owner's encryption of the training subset (always fresh, so that
//! encryption is measured), the server's secure first layer behind a key service that records
//! what the server receives, and training through [`train_with_backend`] — plus the timings of
//! each part, and what the server could rebuild of the first shard from its keys
//! ([`shard_leakage`]).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use cryptonn::coordinator::secure_training::{
    shard_leakage, DatasetSamples, EncryptedDataset, EncryptionParams, FirstLayerGeometry,
    RecordingKeyService, SecureStats, SecureTrainingSession, ShardLeakage,
};
use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{Dataset, LabelPermutation};
use cryptonn::nn::first_layer::FirstLayerSpec;
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::train::{train_with_backend, TrainConfig, TrainObserver, TrainReport};
use serde::Serialize;

use crate::cross_domain::{CrossDomain, SamplingKeyService};
use crate::training::SecureOptions;

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

/// What a secure run leaves behind.
pub struct SecureRun {
    /// The trained model.
    pub model: Model,
    /// The training summary.
    pub report: TrainReport,
    /// Counters and timings.
    pub extra: SecureExtra,
    /// Where the time went.
    pub breakdown: Breakdown,
    /// The cross-shard key attempts, if asked for.
    pub cross: Option<CrossDomain>,
    /// What the server could rebuild of the first shard, if asked for.
    pub leakage: Option<ShardLeakage>,
}

/// What [`run`] measures besides training.
#[derive(Debug, Clone, Copy)]
pub struct Extras {
    /// Try sampled keys on other shards ([`crate::cross_domain`]).
    pub cross_domain: bool,
    /// Rebuild the first shard from the keys the server received ([`shard_leakage`]).
    pub leakage: bool,
}

/// Trains `spec` over Ristretto255 ciphertexts of `train_set` through a
/// [`SecureTrainingSession`]; `cfg.schedule` must be fixed shards. The encrypted dataset
/// (`<name>-train`) is written to `opts.work_dir` and removed afterwards, as is the audit file;
/// `table` is the server's discrete-log table.
#[allow(clippy::too_many_arguments)]
pub fn run(
    cfg: &TrainConfig,
    spec: &ModelSpec,
    name: &str,
    train_set: &Dataset,
    test_set: &Dataset,
    opts: &SecureOptions,
    table: &Arc<BabyStepTable<Ristretto255>>,
    extras: Extras,
    observer: &mut dyn TrainObserver,
) -> Result<SecureRun> {
    let group = Ristretto255;
    let (first, _) = spec.first_layer()?;
    let session = SecureTrainingSession::new(group, &opts.work_dir)
        .dlog_half_width(opts.dlog_half_width)
        .reencrypt(true);
    std::fs::create_dir_all(&opts.work_dir)
        .with_context(|| format!("creating {}", opts.work_dir.display()))?;
    // Every issued key is audited, to a file (millions of keys in a full run), so that the
    // authority's memory stays flat. The file is removed after the run.
    let local = session.local_authority()?;
    let labels = LabelPermutation::from_seed(cfg.seed, train_set.classes());
    let samples = DatasetSamples::new(train_set, &labels, cfg.quant.scale_x)?;
    let layout = samples.layout(matches!(first, FirstLayerSpec::Linear { .. }))?;
    let params =
        EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size).with_layout(layout);
    let bar = crate::stats::bar("encrypting", train_set.len() as u64);
    let input = session.encrypt(
        &local.authority,
        &format!("{name}-train"),
        &samples,
        &params,
        &|done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let (encrypt_seconds, authority_setup_seconds) = (input.encrypt_seconds, input.setup_seconds);

    let t = Instant::now();
    let data = EncryptedDataset::load(group, &input.path)?;
    let ciphertext_bytes = data.ciphertext_bytes();
    let h = data.header();
    let watched = h
        .domains
        .first()
        .into_iter()
        .chain(h.feature_domains.first())
        .copied()
        .collect();
    let keys = RecordingKeyService::watching(
        SamplingKeyService::new(session.in_process_keys(&local.authority)),
        watched,
    );
    let mut backend = session.server_with_dataset(
        keys,
        data,
        Arc::clone(table),
        cfg.quant,
        FirstLayerGeometry::from_spec(&first)?,
    )?;
    let server_setup_seconds = t.elapsed().as_secs_f64();
    println!(
        "secure {name}: {} shard domains ({authority_setup_seconds:.1} s), {} samples encrypted \
         in {encrypt_seconds:.1} s ({:.1} MB), server setup {server_setup_seconds:.1} s",
        input.domains.len(),
        train_set.len(),
        ciphertext_bytes as f64 / 1e6
    );
    let model = Model::new(spec, cfg.seed)?;
    let (model, report) =
        train_with_backend(cfg, model, &mut backend, test_set, &labels, observer)?;
    let s = *backend.stats();
    let dlog = DlogSolver::new(Arc::clone(table), 2 * cfg.quant.gradient_bound)?;

    // Do the keys collected over the run open other shards?
    let cross = if extras.cross_domain {
        let bar = crate::stats::bar("cross-shard", 1);
        bar.set_message("trying sampled keys on other shards");
        let cross = crate::cross_domain::measure(
            &backend.key_service().inner().samples(),
            s.feip_keys,
            CROSS_DOMAIN_KEYS,
            backend.dataset(),
            params.feip_params()?,
            &dlog,
            &samples,
        )?;
        bar.finish_and_clear();
        println!(
            "secure: {} sampled keys of {} tried on other shards: {} of {} decryptions in range, \
             {} correct (own shard, control: {} of {} correct)",
            cross.keys_tried,
            cross.keys_received,
            cross.other_shard_in_range,
            cross.other_shard_attempts,
            cross.other_shard_correct,
            cross.own_shard_correct,
            cross.own_shard_attempts
        );
        Some(cross)
    } else {
        None
    };
    let leakage = if extras.leakage {
        let bar = crate::stats::bar("rebuilding shard 0", 1);
        let t = Instant::now();
        let l = shard_leakage(
            backend.dataset(),
            backend.geometry(),
            &backend.key_service().requests(),
            0,
            &samples,
            &dlog,
        )?;
        bar.finish_and_clear();
        let f = |v: &cryptonn::coordinator::secure_training::ViewLeakage| {
            format!(
                "{} keys, rank {}/{}, {:.1} % exact, relative error {:.3}",
                v.keys_issued,
                v.rank,
                v.rank_of,
                100.0 * v.exact_fraction,
                v.relative_error
            )
        };
        println!(
            "leakage {name}, shard 0 ({} samples, {:.1} s): forward {}; gradient {}; whole run {}",
            l.samples,
            t.elapsed().as_secs_f64(),
            f(&l.forward_one_step),
            f(&l.gradient_one_step),
            f(&l.whole_run)
        );
        Some(l)
    } else {
        None
    };
    drop(backend);
    let audit_records = local
        .authority
        .lock()
        .map_err(|_| anyhow::anyhow!("authority lock poisoned"))?
        .audit_log()
        .len();
    drop(local.authority);
    let audit_file_bytes = std::fs::metadata(&local.audit_file).map_or(0, |m| m.len());
    std::fs::remove_file(&local.audit_file)
        .with_context(|| format!("removing {}", local.audit_file.display()))?;
    std::fs::remove_file(&input.path)
        .with_context(|| format!("removing {}", input.path.display()))?;

    let training: f64 = report.epoch_seconds.iter().sum();
    let extra = SecureExtra {
        group: "ristretto",
        encrypt_seconds,
        ciphertext_bytes,
        stats: s,
        authority_setup_seconds,
        server_setup_seconds,
        dlog_table_half_width: table.half_width(),
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
    Ok(SecureRun {
        model,
        report,
        extra,
        breakdown,
        cross,
        leakage,
    })
}
