//! The load test itself, shared by `examples/key_service_load` and `examples/bench_report`:
//! an authority (TLS, bearer tokens, fsync'd state in a temporary directory) on 127.0.0.1 and
//! `requesters` server threads, each with its own connection, token and key domain (`n = dim`,
//! per-batch policy), asking for batches of `batch` random dense key vectors for `seconds`.

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cryptonn::coordinator::net::auth::{random_token, Role};
use cryptonn::coordinator::net::{LoopbackAuthority, RemoteKeyService, TokenTable};
use cryptonn::coordinator::{
    CoordinatorError, DomainConfig, FeipKeyRequest, KeyService, KeyVectorData, PersistentAuthority,
    PolicyConfig, RequesterId, StateOptions,
};
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;
use rand::{Rng, SeedableRng};
use serde::Serialize;

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
/// Setup failures and the first failed request.
pub fn run(cfg: &LoadConfig) -> anyhow::Result<LoadFigures> {
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
            .map_err(anyhow::Error::msg)?;
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
            std::thread::spawn(move || -> anyhow::Result<Outcome> {
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
                        Err(e) => return Err(e).context("key request failed"),
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
        let o = h
            .join()
            .map_err(|_| anyhow::anyhow!("a requester panicked"))??;
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
