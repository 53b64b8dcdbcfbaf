//! A load test of the networked key service, run by `examples/key_service_load` and
//! `examples/bench_report`: an authority (TLS, bearer tokens, fsync'd state in a temporary
//! directory) on 127.0.0.1 and `requesters` server threads, each with its own connection,
//! token and key domain (`n = dim`, per-batch policy), asking for batches of `batch` random
//! dense key vectors for `seconds`. Throughput is `keys / wall seconds` of the measured window
//! (after every TLS handshake); latencies are per request.

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::coordinator::authority::DomainConfig;
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::key_service::KeyService;
use crate::coordinator::messages::{FeipKeyRequest, KeyVectorData, RequesterId};
use crate::coordinator::net::auth::{random_token, Role, TokenTable};
use crate::coordinator::net::loopback::{LoopbackAuthority, LoopbackError};
use crate::coordinator::net::remote::RemoteKeyService;
use crate::coordinator::persistent::{PersistentAuthority, StateError, StateOptions};
use crate::coordinator::policy::PolicyConfig;
use crate::fe::error::FeError;
use crate::fe::feip::FeipParams;
use crate::fe::group::ristretto::Ristretto255;

/// Why a load test failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The authority's state could not be opened.
    #[error("authority state: {0}")]
    State(#[from] StateError),
    /// The loopback authority could not start.
    #[error("loopback authority: {0}")]
    Loopback(#[from] LoopbackError),
    /// The key vectors' parameters are unusable (`dim`).
    #[error("parameters: {0}")]
    Fe(#[from] FeError),
    /// A token could not be added.
    #[error("tokens: {0}")]
    Token(String),
    /// A domain could not be created, a requester could not connect, or a key request failed
    /// (anything but a policy refusal).
    #[error("key service: {0}")]
    KeyService(#[from] CoordinatorError),
    /// A requester thread panicked.
    #[error("a requester thread panicked")]
    Panicked,
}

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// Concurrent requesters.
    pub requesters: usize,
    /// Seconds to run (clamped to 1..=300).
    pub seconds: u64,
    /// Key vectors per request.
    pub batch: usize,
    /// Length of the key vectors.
    pub dim: usize,
    /// fsync the audit log and the journal.
    pub fsync: bool,
}

/// The figures of one run (the JSON keys of `key_service_load --json`).
#[derive(Debug, Clone, Serialize)]
pub struct LoadFigures {
    /// Concurrent requesters.
    pub requesters: usize,
    /// Key vectors per request.
    pub batch: usize,
    /// Length of the key vectors.
    pub dim: usize,
    /// Whether the state was fsync'd.
    pub fsync: bool,
    /// Wall seconds of the measured window.
    pub seconds: f64,
    /// Function keys received.
    pub keys: u64,
    /// Requests answered.
    pub requests: usize,
    /// Keys per second.
    pub keys_per_second: f64,
    /// Median latency of one request.
    pub latency_p50_ms: f64,
    /// 99th percentile latency.
    pub latency_p99_ms: f64,
    /// Requests the policy refused (the only failures allowed).
    pub policy_refusals: u64,
    /// /proc/loadavg at the end.
    pub loadavg: String,
}

struct Outcome {
    latencies: Vec<Duration>,
    keys: u64,
    refusals: u64,
}

/// Runs the load test; any failure other than a policy refusal is an error.
///
/// # Errors
/// [`LoadError`]: setup failures and the first failed request.
pub fn run(cfg: &LoadConfig) -> Result<LoadFigures, LoadError> {
    let seconds = cfg.seconds.clamp(1, 300);
    let dir = std::env::temp_dir().join(format!("cryptonn-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut state = PersistentAuthority::open(
        Ristretto255,
        &dir.join("state"),
        StateOptions {
            fsync: cfg.fsync,
            ..StateOptions::default()
        },
    )?;
    let params = FeipParams::new(cfg.dim, 1 << 16, 1 << 16)?;
    let mut tokens = TokenTable::new();
    let mut requesters = Vec::new();
    for i in 0..cfg.requesters {
        let token = random_token();
        let name = format!("server-{i}");
        tokens
            .add(Role::Server, &name, &token)
            .map_err(LoadError::Token)?;
        let domain = state
            .create_domain(DomainConfig::new(params).with_policy(PolicyConfig::per_batch()))?;
        requesters.push((name, token, domain));
    }
    let authority = LoopbackAuthority::start(Arc::new(Mutex::new(state)), tokens)?;
    let addr = authority.addr();
    println!(
        "authority on {addr} (TLS, fsync {}); {} requesters x batches of {} keys of length {} for \
         {seconds} s",
        cfg.fsync, cfg.requesters, cfg.batch, cfg.dim
    );
    let barrier = Arc::new(Barrier::new(cfg.requesters + 1));
    let handles: Vec<_> = requesters
        .into_iter()
        .enumerate()
        .map(|(i, (name, token, domain))| {
            let config = authority.remote_config(&token, RequesterId::new(name));
            let barrier = Arc::clone(&barrier);
            let (batch, dim) = (cfg.batch, cfg.dim);
            std::thread::spawn(move || -> Result<Outcome, LoadError> {
                let service = RemoteKeyService::connect(Ristretto255, config)?;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
                // Connect (TLS handshake) before the clock starts.
                let connected = service.public_key(domain);
                barrier.wait();
                connected?;
                let end = Instant::now() + Duration::from_secs(seconds);
                let mut out = Outcome {
                    latencies: Vec::new(),
                    keys: 0,
                    refusals: 0,
                };
                while Instant::now() < end {
                    let vectors = (0..batch)
                        .map(|_| {
                            KeyVectorData::Dense(
                                (0..dim).map(|_| rng.gen_range(-1000..=1000)).collect(),
                            )
                        })
                        .collect();
                    let t = Instant::now();
                    match service.feip_keys(&FeipKeyRequest { domain, vectors }) {
                        Ok(r) => out.keys += r.keys.len() as u64,
                        Err(CoordinatorError::Refused { .. }) => out.refusals += 1,
                        Err(e) => return Err(e.into()),
                    }
                    out.latencies.push(t.elapsed());
                }
                Ok(out)
            })
        })
        .collect();
    barrier.wait();
    let t0 = Instant::now();
    let mut latencies = Vec::new();
    let (mut keys, mut refusals) = (0u64, 0u64);
    for h in handles {
        let o = h.join().map_err(|_| LoadError::Panicked)??;
        latencies.extend(o.latencies);
        keys += o.keys;
        refusals += o.refusals;
    }
    let wall = t0.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(LoadFigures {
        requesters: cfg.requesters,
        batch: cfg.batch,
        dim: cfg.dim,
        fsync: cfg.fsync,
        seconds: wall,
        keys,
        requests: latencies.len(),
        keys_per_second: keys as f64 / wall,
        latency_p50_ms: pct(0.50),
        latency_p99_ms: pct(0.99),
        policy_refusals: refusals,
        loadavg,
    })
}
