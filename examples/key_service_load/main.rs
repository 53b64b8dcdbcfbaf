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
//! other than a policy refusal makes the run fail. `bench_report` runs the same test
//! (`cryptonn::coordinator::net::load`).

use anyhow::Context;
use clap::Parser;
use cryptonn::coordinator::net::load;

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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let f = load::run(&load::LoadConfig {
        requesters: args.requesters,
        seconds: args.seconds,
        batch: args.batch,
        dim: args.dim,
        fsync: !args.no_fsync,
    })?;
    println!(
        "{} keys in {} requests over {:.1} s: {:.0} keys/s, {:.0} requests/s; latency p50 {:.1} \
         ms, p99 {:.1} ms; {} policy refusals, 0 failures; loadavg {}",
        f.keys,
        f.requests,
        f.seconds,
        f.keys_per_second,
        f.requests as f64 / f.seconds,
        f.latency_p50_ms,
        f.latency_p99_ms,
        f.policy_refusals,
        f.loadavg
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&f)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
