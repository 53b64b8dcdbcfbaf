//! The networked parties on loopback: what the gRPC + TLS key service costs secure training,
//! and how many keys it serves under concurrent load.
//!
//! Training overhead: one `PersistentAuthority` (fsync'd audit log and journal) holds the shard
//! domains of an encrypted training subset. The same server code (the server side of a
//! `SecureTrainingSession`) trains on it twice per round,
//! with the same seed: once calling the authority in-process, once through
//! `RemoteKeyService` to the same authority served with TLS on 127.0.0.1. Rounds alternate the
//! two arms; the figure is the median step time of each arm, so the difference is the network
//! (protobuf, TLS, HTTP/2, loopback, the tokio hop) and nothing else. The final weights of every
//! run must be the same.
//!
//! Load: `examples/key_service_load` (32 requesters, batched length-36 key vectors).

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use cryptonn::coordinator::net::auth::{random_token, Role};
use cryptonn::coordinator::net::{LoopbackAuthority, RemoteKeyService, TokenTable};
use cryptonn::coordinator::secure_training::{
    encrypt_or_reuse, EncryptedDataset, EncryptionParams, FirstLayerGeometry, SecureTrainingSession,
};
use cryptonn::coordinator::{
    CoordinatorError, DomainId, DomainPublicKey, FeboKeyRequest, FeboKeyResponse, FeipKeyRequest,
    FeipKeyResponse, KeyService, PersistentAuthority, RequesterId, StateOptions,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{Dataset, LabelPermutation};
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::train::{train_with_backend, TrainConfig};
use serde::Serialize;

use crate::stats::median;
use cryptonn::coordinator::net::load::{LoadConfig, LoadFigures};

/// The `network` object.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkResults {
    /// Secure training with the key service in-process and over loopback.
    pub training: TrainingOverhead,
    /// The key service under concurrent load.
    pub key_service_load: LoadFigures,
}

/// Secure training's step time with the key service in-process and over loopback.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingOverhead {
    /// Training images.
    pub train_size: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Steps per run (one epoch).
    pub steps: usize,
    /// Runs of each arm (alternating).
    pub rounds: usize,
    /// Median milliseconds per step, key service in-process.
    pub in_process_step_ms: f64,
    /// Median milliseconds per step, key service over loopback gRPC + TLS.
    pub loopback_step_ms: f64,
    /// `(loopback − in-process) / in-process` step time, in percent.
    pub overhead_percent: f64,
    /// Median milliseconds per step waiting for keys, in-process.
    pub in_process_key_ms_per_step: f64,
    /// Median milliseconds per step waiting for keys, over loopback.
    pub loopback_key_ms_per_step: f64,
    /// The extra key wait over loopback as a percentage of the in-process step time (the
    /// network's share without the noise of the rest of the step).
    pub key_wait_overhead_percent: f64,
    /// Whether every run ended with the same weights.
    pub weights_identical: bool,
    /// Step times of every run, `[in-process, loopback]` per round.
    pub step_ms_per_round: Vec<[f64; 2]>,
}

/// Sizes of the section.
#[derive(Debug, Clone, Copy)]
pub struct NetworkPlan {
    /// Training images of the overhead runs.
    pub train_size: usize,
    /// Rounds (one run of each arm per round).
    pub rounds: usize,
    /// The load test.
    pub load: LoadConfig,
}

/// The authority called directly, as one process would: the same code path the gRPC service
/// runs, minus the network.
struct LocalAuthority {
    state: Arc<Mutex<PersistentAuthority<Ristretto255>>>,
    requester: RequesterId,
}

impl LocalAuthority {
    fn lock(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, PersistentAuthority<Ristretto255>>, CoordinatorError>
    {
        self.state
            .lock()
            .map_err(|_| CoordinatorError::AuthorityUnavailable)
    }
}

impl KeyService<Ristretto255> for LocalAuthority {
    fn requester(&self) -> &RequesterId {
        &self.requester
    }
    fn public_key(
        &self,
        domain: DomainId,
    ) -> Result<DomainPublicKey<Ristretto255>, CoordinatorError> {
        self.lock()?.public_key(domain)
    }
    fn feip_keys(
        &self,
        request: &FeipKeyRequest,
    ) -> Result<FeipKeyResponse<Ristretto255>, CoordinatorError> {
        self.lock()?.issue_feip_keys(&self.requester, request)
    }
    fn febo_keys(
        &self,
        request: &FeboKeyRequest,
    ) -> Result<FeboKeyResponse<Ristretto255>, CoordinatorError> {
        self.lock()?.issue_febo_keys(&self.requester, request)
    }
    fn register_febo_commitments(
        &self,
        registration: &cryptonn::coordinator::FeboCommitmentRegistration,
    ) -> Result<usize, CoordinatorError> {
        self.lock()?
            .register_febo_commitments(&self.requester, registration)
    }
}

/// One run's figures: (ms per step, key ms per step, weights hash).
fn train_once(
    cfg: &TrainConfig,
    dataset: &Path,
    keys: impl KeyService<Ristretto255>,
    table: &Arc<BabyStepTable<Ristretto255>>,
    test_set: &Dataset,
    labels: &LabelPermutation,
) -> Result<(f64, f64, String)> {
    // The server's side of a session: the file and any key service (in-process or remote).
    let dir = dataset.parent().unwrap_or(Path::new("."));
    let spec = ModelSpec::lenet5(cfg.lenet);
    let (first, _) = spec.first_layer()?;
    let mut backend = SecureTrainingSession::new(Ristretto255, dir).server(
        keys,
        dataset,
        Arc::clone(table),
        cfg.quant,
        FirstLayerGeometry::from_spec(&first)?,
    )?;
    let steps = backend.dataset().len().div_ceil(cfg.batch_size) * cfg.epochs;
    let model = Model::new(&spec, cfg.seed)?;
    let (_, report) = train_with_backend(cfg, model, &mut backend, test_set, labels, &mut ())?;
    let seconds: f64 = report.epoch_seconds.iter().sum();
    Ok((
        1e3 * seconds / steps as f64,
        1e3 * backend.stats().key_seconds / steps as f64,
        report.weights_sha256,
    ))
}

/// Runs the section: `plan.rounds` alternating rounds on the first `plan.train_size` images of
/// `train_set` (one epoch each), then the load test.
pub fn run(
    cfg: &TrainConfig,
    plan: &NetworkPlan,
    train_set: &Dataset,
    test_set: &Dataset,
    table: &Arc<BabyStepTable<Ristretto255>>,
    work_dir: &Path,
) -> Result<NetworkResults> {
    let cfg = TrainConfig { epochs: 1, ..*cfg };
    let train_set = train_set.take(plan.train_size.min(train_set.len()), "training")?;
    let dir = work_dir.join(format!("network-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut state =
        PersistentAuthority::open(Ristretto255, &dir.join("state"), StateOptions::default())?;
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    let mut pks = Vec::new();
    let access = cryptonn::coordinator::DomainAccess::new(
        RequesterId::new("owner"),
        RequesterId::new("server"),
    );
    for _ in 0..params.shards(train_set.len()) {
        let d = state.create_domain_for(params.domain_config()?, access.clone())?;
        pks.push(state.public_key(d)?);
    }
    let labels = LabelPermutation::from_seed(cfg.seed, cryptonn::nn::data::CLASSES);
    let (dataset, _) = encrypt_or_reuse(
        &Ristretto255,
        &dir,
        &train_set,
        &labels,
        &pks,
        &params,
        true,
        &|_| {},
    )?;
    let state = Arc::new(Mutex::new(state));
    // The data owner registers its label ciphertexts' FEBO commitments.
    let owner = LocalAuthority {
        state: Arc::clone(&state),
        requester: RequesterId::new("owner"),
    };
    cryptonn::coordinator::secure_training::register_label_commitments(
        &EncryptedDataset::load(Ristretto255, &dataset)?,
        &owner,
    )?;

    let token = random_token();
    let mut tokens = TokenTable::new();
    tokens
        .add(Role::Server, "server", &token)
        .map_err(anyhow::Error::msg)?;
    let authority = LoopbackAuthority::start(Arc::clone(&state), tokens)?;
    let remote_config = authority.remote_config(&token, RequesterId::new("server"));

    let rounds = plan.rounds.max(1);
    let bar = crate::stats::bar("network", 2 * rounds as u64);
    let mut per_round = Vec::new();
    let (mut step, mut key) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut hashes = Vec::new();
    for _ in 0..rounds {
        bar.set_message("in-process");
        let local = LocalAuthority {
            state: Arc::clone(&state),
            requester: RequesterId::new("server"),
        };
        let a = train_once(&cfg, &dataset, local, table, test_set, &labels)?;
        bar.inc(1);
        bar.set_message("loopback");
        let remote = RemoteKeyService::connect(Ristretto255, remote_config.clone())?;
        let b = train_once(&cfg, &dataset, remote, table, test_set, &labels)
            .context("training over loopback")?;
        bar.inc(1);
        per_round.push([a.0, b.0]);
        for (i, r) in [a, b].into_iter().enumerate() {
            step[i].push(r.0);
            key[i].push(r.1);
            hashes.push(r.2);
        }
    }
    bar.finish_and_clear();
    drop(authority);
    let _ = std::fs::remove_dir_all(&dir);
    let weights_identical = hashes.windows(2).all(|w| w[0] == w[1]);
    ensure!(
        weights_identical,
        "secure training gave different weights in-process and over loopback: {hashes:?}"
    );
    let (ip, lb) = (median(&step[0]), median(&step[1]));
    let (ipk, lbk) = (median(&key[0]), median(&key[1]));
    let training = TrainingOverhead {
        train_size: train_set.len(),
        batch_size: cfg.batch_size,
        steps: train_set.len().div_ceil(cfg.batch_size),
        rounds,
        in_process_step_ms: ip,
        loopback_step_ms: lb,
        overhead_percent: 100.0 * (lb - ip) / ip,
        in_process_key_ms_per_step: ipk,
        loopback_key_ms_per_step: lbk,
        key_wait_overhead_percent: 100.0 * (lbk - ipk) / ip,
        weights_identical,
        step_ms_per_round: per_round,
    };
    println!(
        "network: {} images, batch {}: {:.1} ms per step in-process, {:.1} ms over loopback \
         ({:+.1} %; key wait {:.1} -> {:.1} ms per step, {:+.1} % of the step)",
        training.train_size,
        training.batch_size,
        ip,
        lb,
        training.overhead_percent,
        ipk,
        lbk,
        training.key_wait_overhead_percent
    );
    let key_service_load = cryptonn::coordinator::net::load::run(&plan.load)?;
    println!(
        "network: key service load: {:.0} keys/s ({} requesters, batches of {} length-{} \
         vectors), p50 {:.1} ms, p99 {:.1} ms, {} policy refusals",
        key_service_load.keys_per_second,
        key_service_load.requesters,
        key_service_load.batch,
        key_service_load.dim,
        key_service_load.latency_p50_ms,
        key_service_load.latency_p99_ms,
        key_service_load.policy_refusals
    );
    Ok(NetworkResults {
        training,
        key_service_load,
    })
}
