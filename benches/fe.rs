//! Benchmarks of the functional-encryption core: FEIP Setup / Encrypt / KeyDer / Decrypt for
//! n = 25 and n = 785 on Ristretto255 and n = 25 and n = 784 on the RFC 3526 2048-bit group
//! (784: the figure the authors' Python prototype is compared at), the group operations they
//! are made of, and the discrete-log table (build, cache load, lookups).
//!
//! ```sh
//! cargo bench --bench fe                       # everything
//! cargo bench --bench fe -- ristretto          # one backend
//! cargo bench --bench fe -- group/              # the group operations decryption is made of
//! cargo bench --bench fe -- 'feip/modp2048/(encrypt|encrypt_prepared|decrypt)/'   # Z_p* floors
//! cargo bench --bench fe -- 'shard/'            # one shard of the data owner's encryption
//! ```
//! Inputs follow the LeNet first layer: |x_i| <= 255 (pixels), |y_i| <= 127 (weights).

#![allow(clippy::unwrap_used, missing_docs)] // benchmark harness: panics are failures

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
use cryptonn::fe::feip::{Feip, FeipParams, KeyVector};
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::multiexp::{multi_exp, recode, Ct0Table, OddMultiples};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const X_BOUND: u64 = 255;
const Y_BOUND: u64 = 127;

fn vectors(rng: &mut ChaCha20Rng, n: usize) -> (Vec<i64>, Vec<i64>) {
    let x = (0..n)
        .map(|_| rng.gen_range(-(X_BOUND as i64)..=X_BOUND as i64))
        .collect();
    let y = (0..n)
        .map(|_| rng.gen_range(-(Y_BOUND as i64)..=Y_BOUND as i64))
        .collect();
    (x, y)
}

fn feip_suite<G: PrimeOrderGroup>(
    c: &mut Criterion,
    name: &str,
    group: G,
    sizes: &[usize],
    dlog: &DlogSolver<G>,
    heavy: bool,
) {
    let mut bg = c.benchmark_group(format!("feip/{name}"));
    if heavy {
        bg.sample_size(10);
        bg.measurement_time(Duration::from_secs(3));
    }
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    for &n in sizes {
        let feip = Feip::new(group.clone(), FeipParams::new(n, X_BOUND, Y_BOUND).unwrap());
        let (x, y) = vectors(&mut rng, n);
        bg.bench_function(BenchmarkId::new("setup", n), |b| {
            b.iter(|| black_box(feip.setup(&mut rng)))
        });
        let (msk, mpk) = feip.setup(&mut rng);
        bg.bench_function(BenchmarkId::new("encrypt", n), |b| {
            b.iter(|| black_box(feip.encrypt(&mpk, &x, &mut rng).unwrap()))
        });
        // The client's path: the public key is prepared once (fixed-base tables of every h_i),
        // then each vector is encrypted against the tables.
        bg.bench_function(BenchmarkId::new("prepare_public_key", n), |b| {
            b.iter(|| black_box(feip.prepare_public_key(&mpk).unwrap()))
        });
        let prepared_pk = feip.prepare_public_key(&mpk).unwrap();
        bg.bench_function(BenchmarkId::new("encrypt_prepared", n), |b| {
            b.iter(|| black_box(feip.encrypt_prepared(&prepared_pk, &x, &mut rng).unwrap()))
        });
        bg.bench_function(BenchmarkId::new("keyder", n), |b| {
            b.iter(|| black_box(feip.derive_key(&msk, &y).unwrap()))
        });
        let ct = feip.encrypt(&mpk, &x, &mut rng).unwrap();
        let key = feip.derive_key(&msk, &y).unwrap();
        let want: i64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert_eq!(feip.vartime_decrypt(&ct, &key, &y, dlog).unwrap(), want);
        bg.bench_function(BenchmarkId::new("decrypt", n), |b| {
            b.iter(|| black_box(feip.vartime_decrypt(&ct, &key, &y, dlog).unwrap()))
        });
        // One ciphertext meets 6 keys (6 output channels of a convolution): per-ciphertext
        // precomputation + one batched discrete log. Reported time is for all 6.
        let ys: Vec<Vec<i64>> = (0..6).map(|_| vectors(&mut rng, n).1).collect();
        let keys: Vec<_> = ys
            .iter()
            .map(|y| feip.derive_key(&msk, y).unwrap())
            .collect();
        bg.bench_function(BenchmarkId::new("decrypt_6_keys_total", n), |b| {
            b.iter(|| {
                let prep = feip.prepare_ciphertext(&ct).unwrap();
                let pairs: Vec<_> = keys
                    .iter()
                    .zip(&ys)
                    .map(|(k, y)| (k, KeyVector::Dense(y)))
                    .collect();
                let out = feip.vartime_decrypt_many(&prep, &pairs, dlog);
                black_box(out)
            })
        });
    }
    bg.finish();
}

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cache")
}

fn bench_ristretto(c: &mut Criterion) {
    // Covers |<x,y>| <= 785·255·127 ≈ 2^24.6 with a 2^22 table and a few giant steps.
    let table =
        Arc::new(BabyStepTable::load_or_build(Ristretto255, 1 << 22, &cache_dir()).unwrap());
    let dlog = DlogSolver::new(table, 785 * X_BOUND * Y_BOUND).unwrap();
    feip_suite(c, "ristretto255", Ristretto255, &[25, 785], &dlog, false);
}

fn bench_modp2048(c: &mut Criterion) {
    let g = ModpGroup::rfc3526_2048();
    let table = Arc::new(BabyStepTable::load_or_build(g.clone(), 1 << 16, &cache_dir()).unwrap());
    let dlog = DlogSolver::new(table, 785 * X_BOUND * Y_BOUND).unwrap();
    feip_suite(c, "modp2048", g, &[25, 784], &dlog, true);
}

/// The group operations encryption and decryption are made of: one product, the
/// constant-time exponentiations (`exp` for `h_i^r`, `exp_generator` for `g^r`,
/// `exp_generator_i64` for `g^{x_i}`), the inversion, one variable-time full-width
/// exponentiation, the ct0 table build and a table exponentiation, and the 25-term
/// small-exponent multi-exponentiation. They explain the `encrypt` and `decrypt_6_keys_total`
/// figures (README, "FE core").
fn group_ops<G: PrimeOrderGroup>(c: &mut Criterion, name: &str, g: G, heavy: bool) {
    let mut bg = c.benchmark_group(format!("group/{name}"));
    if heavy {
        bg.sample_size(20);
    }
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let a = g.exp_generator(&g.random_scalar(&mut rng));
    let b = g.exp_generator(&g.random_scalar(&mut rng));
    let e = g.random_scalar(&mut rng);
    bg.bench_function("op", |bch| bch.iter(|| black_box(g.op(&a, &b))));
    bg.bench_function("invert", |bch| bch.iter(|| black_box(g.invert(&a))));
    bg.bench_function("exp", |bch| bch.iter(|| black_box(g.exp(&a, &e))));
    bg.bench_function("exp_generator", |bch| {
        bch.iter(|| black_box(g.exp_generator(&e)))
    });
    bg.bench_function("exp_generator_i64/255", |bch| {
        bch.iter(|| black_box(g.exp_generator_i64(black_box(-200), X_BOUND)))
    });
    bg.bench_function("precompute_base", |bch| {
        bch.iter(|| black_box(g.precompute_base(&a)))
    });
    let prepared = g.precompute_base(&a);
    bg.bench_function("exp_precomputed", |bch| {
        bch.iter(|| black_box(g.exp_precomputed(&prepared, &e)))
    });
    // Called from the bench's main thread, i.e. outside rayon's pool: on modp2048 this is the
    // two-thread split; `vartime_exp_one_thread` is the same call inside a one-thread pool.
    bg.bench_function("vartime_exp", |bch| {
        bch.iter(|| black_box(g.vartime_exp(&a, &e)))
    });
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    bg.bench_function("vartime_exp_one_thread", |bch| {
        single.install(|| bch.iter(|| black_box(g.vartime_exp(&a, &e))))
    });
    bg.bench_function("vartime_precompute_base", |bch| {
        bch.iter(|| black_box(g.vartime_precompute_base(&a)))
    });
    let table = g.vartime_precompute_base(&a);
    bg.bench_function("vartime_exp_precomputed", |bch| {
        bch.iter(|| black_box(g.vartime_exp_precomputed(&table, &e)))
    });
    let points: Vec<_> = (0..25)
        .map(|_| g.exp_generator(&g.random_scalar(&mut rng)))
        .collect();
    let (_, y) = vectors(&mut rng, 25);
    bg.bench_function("vartime_multi_exp_i64/25", |bch| {
        bch.iter(|| black_box(g.vartime_multi_exp_i64(points.iter().zip(y.iter().copied()))))
    });
    // The secure first layer's kernels (fe::group::multiexp): odd powers per base, the
    // wNAF multi-exponentiation over them, and the ct0 table meeting many function keys.
    bg.bench_function("odd_multiples", |bch| {
        bch.iter(|| black_box(OddMultiples::new(&g, &a)))
    });
    let tables: Vec<OddMultiples<G>> = points.iter().map(|p| OddMultiples::new(&g, p)).collect();
    let terms: Vec<(usize, i64)> = y.iter().copied().enumerate().collect();
    let recoded = recode(&terms);
    bg.bench_function("multi_exp_wnaf/25", |bch| {
        bch.iter(|| black_box(multi_exp(&g, &tables, &recoded)))
    });
    bg.bench_function("ct0_table_build", |bch| {
        bch.iter(|| black_box(Ct0Table::new(&g, &a)))
    });
    let ct0 = Ct0Table::new(&g, &a);
    bg.bench_function("ct0_table_exp", |bch| {
        bch.iter(|| black_box(ct0.exp(&g, &e)))
    });
    bg.finish();
}

/// One shard of the data owner's encryption: 16 vectors of 785 under one public key, as
/// encoded bytes. `per_vector`: one `encrypt` (variable-base `h_i^r`) and one encoding per
/// element, the path before the batch API; `batch`: `encrypt_batch_encoded` (short-lived comb
/// tables of the `h_i` amortised over the 16 vectors, halves encoded in one batch per vector).
///
/// ```sh
/// cargo bench --bench fe -- 'shard/'
/// ```
fn bench_shard(c: &mut Criterion) {
    let mut bg = c.benchmark_group("shard/ristretto255");
    bg.sample_size(10);
    bg.measurement_time(Duration::from_secs(10));
    let g = Ristretto255;
    let (n, vectors_per_shard) = (785, 16);
    let feip = Feip::new(g, FeipParams::new(n, X_BOUND, Y_BOUND).unwrap());
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let (_, mpk) = feip.setup(&mut rng);
    let xs: Vec<Vec<i64>> = (0..vectors_per_shard)
        .map(|_| vectors(&mut rng, n).0)
        .collect();
    bg.bench_function(BenchmarkId::new("per_vector", vectors_per_shard), |b| {
        b.iter(|| {
            let out: Vec<Vec<u8>> = xs
                .iter()
                .map(|x| {
                    let ct = feip.encrypt(&mpk, x, &mut rng).unwrap();
                    let mut bytes = g.element_to_bytes(ct.ct0());
                    for e in ct.components() {
                        bytes.extend_from_slice(&g.element_to_bytes(e));
                    }
                    bytes
                })
                .collect();
            black_box(out)
        })
    });
    bg.bench_function(BenchmarkId::new("batch", vectors_per_shard), |b| {
        b.iter(|| black_box(feip.encrypt_batch_encoded(&mpk, &xs, &mut rng).unwrap()))
    });
    bg.finish();
}

fn bench_group_ops(c: &mut Criterion) {
    group_ops(c, "ristretto255", Ristretto255, false);
    group_ops(c, "modp2048", ModpGroup::rfc3526_2048(), true);
}

fn bench_dlog(c: &mut Criterion) {
    let mut bg = c.benchmark_group("dlog/ristretto255");
    bg.sample_size(10);
    bg.measurement_time(Duration::from_secs(10));
    let half = 1u64 << 22;
    bg.bench_function("table_build_2^22", |b| {
        b.iter(|| black_box(BabyStepTable::new(Ristretto255, half).unwrap()))
    });
    let path = cache_dir().join(BabyStepTable::cache_file_name(&Ristretto255, half));
    BabyStepTable::new(Ristretto255, half)
        .unwrap()
        .save(&path)
        .unwrap();
    bg.bench_function("table_load_2^22", |b| {
        b.iter(|| black_box(BabyStepTable::load(Ristretto255, half, &path).unwrap()))
    });
    bg.finish();

    let mut bg = c.benchmark_group("dlog/ristretto255");
    let table = Arc::new(BabyStepTable::load(Ristretto255, half, &path).unwrap());
    let solver = DlogSolver::new(table, 1 << 26).unwrap();
    let g = Ristretto255;
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let small: Vec<_> = (0..64)
        .map(|_| g.vartime_exp_generator_i64(rng.gen_range(-(1i64 << 22)..(1 << 22))))
        .collect();
    let far: Vec<_> = (0..64)
        .map(|_| g.vartime_exp_generator_i64(rng.gen_range(-(1i64 << 26)..(1 << 26))))
        .collect();
    bg.bench_function("lookup_one_|z|<=2^22", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % small.len();
            black_box(solver.vartime_solve(&small[i]).unwrap())
        })
    });
    bg.bench_function("lookup_batch64_|z|<=2^22", |b| {
        b.iter(|| black_box(solver.vartime_solve_batch(&small)))
    });
    bg.bench_function("lookup_batch64_|z|<=2^26_giant_steps", |b| {
        b.iter_batched(
            || far.clone(),
            |v| black_box(solver.vartime_solve_batch(&v)),
            BatchSize::SmallInput,
        )
    });
    bg.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_ristretto, bench_shard, bench_group_ops, bench_dlog, bench_modp2048
}
criterion_main!(benches);
