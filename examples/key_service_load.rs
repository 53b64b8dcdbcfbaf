//! Load test of the networked key service on loopback.
//!
//! ```sh
//! cargo run --release --example key_service_load                    # 32 requesters, 30 s
//! cargo run --release --example key_service_load -- --seconds 10 --batch 256 --json load.json
//! ```
//!
//! Starts an authority (TLS, bearer tokens, state with fsync'd journal and audit log in a
//! temporary directory) on 127.0.0.1, then `--requesters` server threads, each with its own
//! connection, token and key domain (`n = --dim`, per-batch policy), ask for batches of
//! `--batch` random dense key vectors for `--seconds` seconds (bounded to 300). Prints the
//! throughput in function keys per second and the p50/p99 latency of one request; any failure
//! other than a policy refusal makes the run fail.

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use cryptonn::coordinator::net::auth::{random_token, Role};
use cryptonn::coordinator::net::service::Listener;
use cryptonn::coordinator::net::{
    generate_pki, serve, RemoteConfig, RemoteKeyService, ServeConfig, ServerTls, TokenTable,
};
use cryptonn::coordinator::{
    CoordinatorError, DomainConfig, FeipKeyRequest, KeyService, KeyVectorData, PersistentAuthority,
    PolicyConfig, RequesterId, StateOptions,
};
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;
use rand::{Rng, SeedableRng};

/// Load test of the gRPC key service: concurrent requesters asking for batched FEIP keys.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Concurrent requesters (each its own connection, token and domain).
    #[arg(long, default_value_t = 32)]
    requesters: usize,
    /// Seconds to run (at most 300).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Key vectors per request.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Length of the key vectors.
    #[arg(long, default_value_t = 36)]
    dim: usize,
    /// Do not fsync the audit log and journal (faster; not what a deployment should run).
    #[arg(long)]
    no_fsync: bool,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

struct Outcome {
    latencies: Vec<Duration>,
    keys: u64,
    refusals: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seconds = args.seconds.clamp(1, 300);
    let dir = std::env::temp_dir().join(format!("cryptonn-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = generate_pki(&["localhost".into()], &[])?;
    let mut state = PersistentAuthority::open(
        Ristretto255,
        &dir.join("state"),
        StateOptions {
            fsync: !args.no_fsync,
            ..StateOptions::default()
        },
    )?;
    let params = FeipParams::new(args.dim, 1 << 16, 1 << 16)?;
    let mut tokens = TokenTable::new();
    let mut requesters = Vec::new();
    for i in 0..args.requesters {
        let token = random_token();
        let name = format!("server-{i}");
        tokens
            .add(Role::Server, &name, &token)
            .map_err(anyhow::Error::msg)?;
        let domain = state
            .create_domain(DomainConfig::new(params).with_policy(PolicyConfig::per_batch()))?;
        requesters.push((name, token, domain));
    }
    let listener = Listener::bind("127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.spawn(serve(
        Arc::new(Mutex::new(state)),
        Arc::new(tokens),
        listener,
        ServeConfig {
            tls: Some(ServerTls {
                cert_pem: pki.server.cert_pem.clone().into_bytes(),
                key_pem: pki.server.key_pem.clone().into_bytes(),
                client_ca_pem: None,
            }),
            ..ServeConfig::default()
        },
        std::future::pending(),
    ));
    println!(
        "authority on {addr} (TLS, fsync {}); {} requesters x batches of {} keys of length {} for \
         {seconds} s",
        !args.no_fsync, args.requesters, args.batch, args.dim
    );
    let barrier = Arc::new(Barrier::new(args.requesters + 1));
    let handles: Vec<_> = requesters
        .into_iter()
        .enumerate()
        .map(|(i, (name, token, domain))| {
            let mut config = RemoteConfig::new(
                format!("https://{addr}"),
                token,
                Some(pki.ca_cert_pem.clone().into_bytes()),
            );
            config.tls_domain = Some("localhost".into());
            config.requester = RequesterId::new(name);
            config.retry_for = Duration::ZERO;
            let barrier = Arc::clone(&barrier);
            let (batch, dim) = (args.batch, args.dim);
            std::thread::spawn(move || -> anyhow::Result<Outcome> {
                let service = RemoteKeyService::connect(Ristretto255, config)?;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
                // Connect (TLS handshake) before the clock starts.
                service.public_key(domain)?;
                barrier.wait();
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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{keys} keys in {} requests over {wall:.1} s: {:.0} keys/s, {:.0} requests/s; latency \
         p50 {:.1} ms, p99 {:.1} ms; {refusals} policy refusals, 0 failures; loadavg {}",
        latencies.len(),
        keys as f64 / wall,
        latencies.len() as f64 / wall,
        pct(0.50),
        pct(0.99),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(path) = &args.json {
        let v = serde_json::json!({
            "requesters": args.requesters,
            "batch": args.batch,
            "dim": args.dim,
            "fsync": !args.no_fsync,
            "seconds": wall,
            "keys": keys,
            "requests": latencies.len(),
            "keys_per_second": keys as f64 / wall,
            "latency_p50_ms": pct(0.50),
            "latency_p99_ms": pct(0.99),
            "policy_refusals": refusals,
            "loadavg": load.trim(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
