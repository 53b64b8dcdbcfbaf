//! What one weight-gradient key request of secure training costs, in-process and over
//! loopback, with the key vectors as pixel-form sparse vectors and as placements (one grid
//! per filter).
//!
//! ```sh
//! cargo run --release --example key_request_cost                 # 16 images, 15 repetitions
//! cargo run --release --example key_request_cost -- --images 64 --reps 5
//! ```
//!
//! One step of secure training asks for `150 · images` weight-gradient keys (filter `f`,
//! offset `(a, b)`: the 14x14 output gradient `dq[f]` at stride 2). The program builds that
//! request from random `dq` (`|dq| <= --dq`, the order of magnitude training sees with
//! `S_grad = 2^12`), then times, as medians over `--reps`:
//! - the protobuf message: conversion, encoding, decoding and size;
//! - the authority's own work (`PersistentAuthority`, fsync'd audit log): validation, policy,
//!   derivation, audit;
//! - the whole call through `RemoteKeyService` to an authority served on 127.0.0.1 with TLS.
//!
//! The difference between the last two is what the network costs a training step.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use cryptonn::coordinator::net::auth::{random_token, Role};
use cryptonn::coordinator::net::convert::{feip_request_from_proto, feip_request_to_proto};
use cryptonn::coordinator::net::{proto, LoopbackAuthority, RemoteKeyService, TokenTable};
use cryptonn::coordinator::secure_training::geometry::{gradient_key_vectors, gradient_outputs};
use cryptonn::coordinator::secure_training::EncryptionParams;
use cryptonn::coordinator::{
    DomainId, FeipKeyRequest, KeyService, KeyVectorData, PersistentAuthority, RequesterId,
    StateOptions,
};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::PixelNormalization;
use cryptonn::nn::first_layer::{QuantConfig, OUTPUTS};
use prost::Message;
use rand::{Rng, SeedableRng};

/// Cost of one weight-gradient key request, in-process and over loopback.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Images per training step (150 keys each).
    #[arg(long, default_value_t = 16)]
    images: usize,
    /// Repetitions (medians are reported).
    #[arg(long, default_value_t = 15)]
    reps: usize,
    /// Largest |dq|.
    #[arg(long, default_value_t = 400)]
    dq: i64,
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// The request of `images` images' weight gradients in `domain`, as grids or pixel vectors.
fn request(
    domain: DomainId,
    images: usize,
    max_dq: i64,
    grid: bool,
) -> anyhow::Result<FeipKeyRequest> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut vectors = Vec::new();
    for _ in 0..images {
        let dq: Vec<i64> = (0..OUTPUTS)
            .map(|_| rng.gen_range(-max_dq..=max_dq))
            .collect();
        if grid {
            vectors.extend(gradient_key_vectors(&dq)?);
        } else {
            vectors.extend(
                gradient_outputs(&dq, 0)
                    .into_iter()
                    .map(|o| KeyVectorData::Sparse(o.pixel_terms)),
            );
        }
    }
    Ok(FeipKeyRequest { domain, vectors })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let reps = args.reps.max(1);
    let dir = std::env::temp_dir().join(format!("cryptonn-key-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let params = EncryptionParams::new(&QuantConfig::default(), PixelNormalization::default(), 16);
    let mut local =
        PersistentAuthority::open(Ristretto255, &dir.join("local"), StateOptions::default())?;
    let mut served =
        PersistentAuthority::open(Ristretto255, &dir.join("served"), StateOptions::default())?;
    let local_domain = local.create_domain(params.domain_config()?)?;
    let served_domain = served.create_domain(params.domain_config()?)?;

    let token = random_token();
    let mut tokens = TokenTable::new();
    tokens
        .add(Role::Server, "server-1", &token)
        .map_err(anyhow::Error::msg)?;
    let authority = LoopbackAuthority::start(Arc::new(Mutex::new(served)), tokens)?;
    let config = authority.remote_config(&token, RequesterId::new("server-1"));
    let remote = RemoteKeyService::connect(Ristretto255, config)?;
    remote.public_key(served_domain)?; // TLS handshake before the clock starts

    let who = RequesterId::new("server-1");
    println!(
        "{} weight-gradient keys ({} images), medians of {reps}; load average {}",
        150 * args.images,
        args.images,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("| form | protobuf | encode | decode + convert | authority | loopback call | network part |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for grid in [false, true] {
        let req_local = request(local_domain, args.images, args.dq, grid)?;
        let req_remote = request(served_domain, args.images, args.dq, grid)?;
        let (mut enc, mut dec, mut auth, mut call) = (vec![], vec![], vec![], vec![]);
        let mut bytes = 0;
        for _ in 0..reps {
            let t = Instant::now();
            let wire = feip_request_to_proto(&req_local).encode_to_vec();
            enc.push(t.elapsed());
            bytes = wire.len();
            let t = Instant::now();
            let back = feip_request_from_proto(proto::FeipKeyBatch::decode(wire.as_slice())?)?;
            dec.push(t.elapsed());
            let t = Instant::now();
            local.issue_feip_keys(&who, &back)?;
            auth.push(t.elapsed());
            let t = Instant::now();
            remote.feip_keys(&req_remote)?;
            call.push(t.elapsed());
        }
        let (a, c) = (median_ms(auth), median_ms(call));
        println!(
            "| {} | {:.2} MB | {:.1} ms | {:.1} ms | {a:.1} ms | {c:.1} ms | {:.1} ms |",
            if grid { "placement" } else { "pixel sparse" },
            bytes as f64 / 1e6,
            median_ms(enc),
            median_ms(dec),
            c - a
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
