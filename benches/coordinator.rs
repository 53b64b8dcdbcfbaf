//! Benchmarks of the coordinator: the secure matrix product of the CryptoNN paper (X 100x10 ·
//! Y 10x100, values 1..100) split into encrypt / keys / decrypt on Ristretto255, a size sweep
//! of the decryption (k keys x m ciphertexts of length n), and the leakage analysis at MNIST
//! size.
//!
//! ```sh
//! cargo bench --bench coordinator
//! cargo bench --bench coordinator -- paper      # the paper's case only
//! ```
//! The discrete-log table is cached in `target/cryptonn-cache/`.

#![allow(clippy::unwrap_used, missing_docs)] // benchmark harness: panics are failures

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cryptonn::coordinator::leakage::reconstruct;
use cryptonn::coordinator::{
    Authority, Client, DomainConfig, DomainId, InProcessKeyService, KeyVectorData, PolicyConfig,
    RequesterId, Server, SharedAuthority,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type R = Ristretto255;

struct World {
    auth: SharedAuthority<R>,
    domain: DomainId,
    client: Client<R>,
    server: Server<R, InProcessKeyService<R>>,
}

fn world(n: usize, bound: u64) -> World {
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cryptonn-cache");
    let table = Arc::new(BabyStepTable::load_or_build(Ristretto255, 1 << 17, &cache).unwrap());
    let auth = Arc::new(Mutex::new(Authority::new(Ristretto255)));
    let cfg = DomainConfig::new(FeipParams::new(n, bound, bound).unwrap())
        .with_policy(PolicyConfig::permissive());
    let domain = auth.lock().unwrap().create_domain(cfg).unwrap();
    let pk = auth.lock().unwrap().public_key(domain).unwrap();
    let client = Client::new(Ristretto255, pk).unwrap();
    let keys = InProcessKeyService::new(Arc::clone(&auth), RequesterId::new("bench"));
    World {
        auth,
        domain,
        client,
        server: Server::new(keys, table),
    }
}

fn paper(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2019);
    let x = Array2::from_shape_fn((100, 10), |_| rng.gen_range(1..=100i64));
    let y = Array2::from_shape_fn((10, 100), |_| rng.gen_range(1..=100i64));
    let (xt, yt) = (x.t().to_owned(), y.t().to_owned());
    let mut w = world(10, 100);
    let mut g = c.benchmark_group("paper_100x10_times_10x100");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("encrypt", |b| {
        b.iter(|| w.client.encrypt_matrix(&xt).unwrap())
    });
    g.bench_function("keys", |b| {
        b.iter(|| w.server.request_keys(w.domain, &yt).unwrap())
    });
    let enc = w.client.encrypt_matrix(&xt).unwrap();
    let batch = w.server.request_keys(w.domain, &yt).unwrap();
    g.bench_function("decrypt", |b| {
        b.iter(|| w.server.secure_matmul_with_keys(&batch, &enc).unwrap())
    });
    g.bench_function("total", |b| {
        b.iter(|| {
            let enc = w.client.encrypt_matrix(&xt).unwrap();
            w.server.secure_matmul(&yt, &enc).unwrap()
        })
    });
    g.finish();
    drop(w.auth);
}

fn decrypt_sweep(c: &mut Criterion) {
    let mut g = c.benchmark_group("secure_matmul_decrypt");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for &(k, n, m) in &[(16, 25, 16), (64, 25, 16), (16, 784, 4), (64, 128, 16)] {
        let mut rng = ChaCha20Rng::seed_from_u64(k as u64 * 1000 + n as u64);
        let mut w = world(n, 255);
        let x = Array2::from_shape_fn((n, m), |_| rng.gen_range(0..=255i64));
        let wt = Array2::from_shape_fn((k, n), |_| rng.gen_range(-127..=127i64));
        let enc = w.client.encrypt_matrix(&x).unwrap();
        let batch = w.server.request_keys(w.domain, &wt).unwrap();
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("k{k}_n{n}_m{m}")),
            &(),
            |b, _| b.iter(|| w.server.secure_matmul_with_keys(&batch, &enc).unwrap()),
        );
    }
    g.finish();
}

fn leakage(c: &mut Criterion) {
    let n = 784;
    let mut rng = ChaCha20Rng::seed_from_u64(784);
    let x = Array2::from_shape_fn((n, 1), |_| rng.gen_range(0..=255i64));
    let mut g = c.benchmark_group("leakage_reconstruct_n784");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for &k in &[392usize, 784] {
        let w = Array2::from_shape_fn((k, n), |_| rng.gen_range(-127..=127i64));
        let y = w.dot(&x);
        let keys: Vec<KeyVectorData> = w
            .rows()
            .into_iter()
            .map(|r| KeyVectorData::Dense(r.to_vec()))
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(format!("k{k}")), &(), |b, _| {
            b.iter(|| reconstruct(n, &keys, y.view()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, paper, decrypt_sweep, leakage);
criterion_main!(benches);
