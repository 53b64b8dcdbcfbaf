//! FE microbenchmarks for one group backend: FEIP Setup / Encrypt / KeyDer / Decrypt at
//! n = 25 and 785, one ciphertext meeting 6 keys, the discrete-log table (build, load), and the
//! paper's 100x10 · 10x100 secure product through the authority / client / server roles.
//!
//! Inputs follow the LeNet first layer: |x_i| <= 255 (pixels), |y_i| <= 127 (weights).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use cryptonn::coordinator::{
    Authority, Client, DomainConfig, InProcessKeyService, PolicyConfig, RequesterId, Server,
};
use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
use cryptonn::fe::feip::{Feip, FeipParams, KeyVector};
use cryptonn::fe::group::PrimeOrderGroup;
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;

use crate::stats::{bar, time_fast, time_reps, Sample};

const X_BOUND: u64 = 255;
const Y_BOUND: u64 = 127;

/// How much to measure for one group.
#[derive(Debug, Clone, Copy)]
pub struct FePlan {
    /// Repetitions of the fast operations (n = 25, keys, decryption).
    pub reps_small: usize,
    /// Repetitions of the slow operations (Setup and Encrypt at n = 785).
    pub reps_large: usize,
    /// Repetitions of the table build (each a full rebuild).
    pub reps_table: usize,
    /// Baby-step half-width `m` of the discrete-log table (covers `|z| <= m`).
    pub table_half_width: u64,
    /// Samples (rows of X) of the paper's product: 100 is the paper's size.
    pub product_samples: usize,
    /// Repetitions of the paper's product.
    pub reps_product: usize,
    /// Also time the product's decryption on one thread (the paper's "serial").
    pub product_serial: bool,
}

/// Every figure of one group; the contract keys are the `Option<f64>` fields named in the
/// issue, the `Sample`s keep the spread.
#[derive(Debug, Clone, Serialize)]
pub struct FeResults {
    /// Group name (`ristretto`, `modp2048`).
    pub group: String,
    /// Estimated security level in bits.
    pub security_bits: u32,
    /// Median µs of one decryption at n = 25 (key + ciphertext → discrete log), one thread.
    pub decrypt_len25_us: Option<f64>,
    /// Median µs per inner product when one ciphertext (n = 25) meets 6 keys: ct0 table +
    /// batched discrete log, total / 6.
    pub decrypt_len25_amortized_us: Option<f64>,
    /// Median ms of one encryption at n = 785 with the public key prepared once, as a client
    /// encrypts (`encrypt_prepared`); `details.encrypt_unprepared_len785_ms` has the cold path.
    pub encrypt_len785_ms: Option<f64>,
    /// Median ms of one encryption at n = 784 on all threads, public key not prepared
    /// (`Feip::encrypt`, what the authors' prototype does: 2.40 s on modp2048).
    pub encrypt_len784_all_threads_ms: Option<f64>,
    /// Median ms of one encryption at n = 784 on all threads with the public key prepared
    /// once (`Feip::encrypt_prepared`, the client's path).
    pub encrypt_prepared_len784_all_threads_ms: Option<f64>,
    /// Median ms to prepare the public key at n = 784 on all threads (once per key).
    pub prepare_public_key_len784_all_threads_ms: Option<f64>,
    /// Median µs of one decryption at n = 25 called from outside rayon's pool, so that a
    /// backend may use a second thread (the authors' prototype: 3.7 ms on modp2048).
    pub decrypt_len25_all_threads_us: Option<f64>,
    /// Median seconds to build the baby-step table of `dlog_table_half_width`.
    pub dlog_table_build_s: Option<f64>,
    /// Median seconds to load that table from its cache file.
    pub dlog_table_load_s: Option<f64>,
    /// Median seconds of the paper's product (100x10 · 10x100: encrypt + keys + decrypt),
    /// `None` when only a reduced product was measured.
    pub paper_product_s: Option<f64>,
    /// Baby-step half-width the table figures are for.
    pub dlog_table_half_width: u64,
    /// Table size on disk in MB.
    pub dlog_table_file_mb: f64,
    /// The product actually measured (samples x 10 · 10 x 100) and its phases.
    pub paper_product: ProductResult,
    /// Spread of every timed operation (unit in the name).
    pub details: std::collections::BTreeMap<String, Sample>,
}

/// The paper's secure product, as measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProductResult {
    /// Rows of X (the paper: 100).
    pub samples: usize,
    /// Inner products computed (samples · 100).
    pub inner_products: usize,
    /// Median seconds of the client's encryption.
    pub encrypt_s: f64,
    /// Median seconds of the 100 key derivations (through the key service).
    pub keys_s: f64,
    /// Median seconds of all decryptions (rayon, all threads).
    pub decrypt_s: f64,
    /// Median seconds of encrypt + keys + decrypt.
    pub total_s: f64,
    /// Seconds of the decryptions on one thread (one run), if measured.
    pub decrypt_serial_s: Option<f64>,
}

fn vector(rng: &mut ChaCha20Rng, n: usize, bound: u64) -> Vec<i64> {
    let b = bound as i64;
    (0..n).map(|_| rng.gen_range(-b..=b)).collect()
}

/// Runs the whole plan for `group`, printing each figure as it lands.
pub fn run<G: PrimeOrderGroup>(
    name: &str,
    group: G,
    plan: &FePlan,
    cache_dir: &Path,
) -> Result<FeResults> {
    let mut details = std::collections::BTreeMap::new();
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    // Table build + load; n = 25: 6 timed operations; n = 785: 3 slow + 3 fast; the product.
    let steps =
        2 * plan.reps_table + 10 * plan.reps_small + 6 * plan.reps_large + plan.reps_product;
    let pb = bar(name, steps as u64);

    // Discrete-log table: fresh builds, then loads of the file the last build wrote.
    pb.set_message(format!("dlog table build, m = {}", plan.table_half_width));
    let (build, table) = time_reps(plan.reps_table, 1.0, &pb, || {
        Ok(BabyStepTable::new(group.clone(), plan.table_half_width)?)
    })?;
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let path = cache_dir.join(BabyStepTable::cache_file_name(
        &group,
        plan.table_half_width,
    ));
    table.save(&path)?;
    drop(table);
    let file_mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
    pb.set_message("dlog table load");
    let (load, table) = time_reps(plan.reps_table, 1.0, &pb, || {
        Ok(BabyStepTable::load(
            group.clone(),
            plan.table_half_width,
            &path,
        )?)
    })?;
    details.insert("dlog_table_build_s".into(), build);
    details.insert("dlog_table_load_s".into(), load);
    let table = Arc::new(table);
    let dlog = DlogSolver::new(Arc::clone(&table), 785 * X_BOUND * Y_BOUND)?;

    // FEIP at n = 25 and 785 on one thread (the figures are per operation).
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    for n in [25usize, 785] {
        let feip = Feip::new(group.clone(), FeipParams::new(n, X_BOUND, Y_BOUND)?);
        let x = vector(&mut rng, n, X_BOUND);
        let y = vector(&mut rng, n, Y_BOUND);
        let want: i64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        let reps_heavy = if n == 25 {
            plan.reps_small
        } else {
            plan.reps_large
        };
        pb.set_message(format!("setup n={n}"));
        let (setup, (msk, mpk)) = single.install(|| {
            time_fast(reps_heavy, 1e3, &pb, || {
                let mut r = ChaCha20Rng::seed_from_u64(7);
                Ok(feip.setup(&mut r))
            })
        })?;
        details.insert(format!("setup_len{n}_ms"), setup);
        // `single.install` wraps whole timing loops: entering a pool costs a thread wake-up
        // (about 0.1 ms on this VM), which must not be counted in each repetition.
        pb.set_message(format!("encrypt n={n}"));
        let (enc_plain, _) = single.install(|| {
            time_fast(reps_heavy, 1e3, &pb, || {
                Ok(feip.encrypt(&mpk, &x, &mut rng)?)
            })
        })?;
        details.insert(format!("encrypt_unprepared_len{n}_ms"), enc_plain);
        // What a client pays per vector: its public key is prepared (fixed-base tables) once.
        let prepared = feip.prepare_public_key(&mpk)?;
        let (enc, ct) = single.install(|| {
            time_fast(reps_heavy, 1e3, &pb, || {
                Ok(feip.encrypt_prepared(&prepared, &x, &mut rng)?)
            })
        })?;
        drop(prepared);
        details.insert(format!("encrypt_len{n}_ms"), enc);
        pb.set_message(format!("keyder n={n}"));
        let (kd, key) = time_fast(plan.reps_small, 1e6, &pb, || Ok(feip.derive_key(&msk, &y)?))?;
        details.insert(format!("keyder_len{n}_us"), kd);
        pb.set_message(format!("decrypt n={n}"));
        let (dec, got) = single.install(|| {
            time_fast(plan.reps_small, 1e6, &pb, || {
                Ok(feip.vartime_decrypt(&ct, &key, &y, &dlog)?)
            })
        })?;
        ensure!(
            got == want,
            "{name}: decryption gave {got}, expected {want}"
        );
        details.insert(format!("decrypt_len{n}_us"), dec);

        // One ciphertext meets 6 keys (conv1's 6 filters): ct0 table + one batched dlog.
        let ys: Vec<Vec<i64>> = (0..6).map(|_| vector(&mut rng, n, Y_BOUND)).collect();
        let keys = ys
            .iter()
            .map(|y| feip.derive_key(&msk, y))
            .collect::<Result<Vec<_>, _>>()?;
        pb.set_message(format!("decrypt, 6 keys, n={n}"));
        let pairs: Vec<_> = keys
            .iter()
            .zip(&ys)
            .map(|(k, y)| (k, KeyVector::Dense(y)))
            .collect();
        let (six, outs) = single.install(|| {
            time_fast(plan.reps_small, 1e6 / 6.0, &pb, || {
                let prep = feip.prepare_ciphertext(&ct)?;
                Ok(feip.vartime_decrypt_many(&prep, &pairs, &dlog))
            })
        })?;
        for (out, yk) in outs.into_iter().zip(&ys) {
            let want: i64 = x.iter().zip(yk).map(|(a, b)| a * b).sum();
            ensure!(out? == want, "{name}: batched decryption is wrong");
        }
        details.insert(format!("decrypt_len{n}_amortized_us"), six);
    }

    // The Z_p* floors at the sizes the authors' prototype was measured at, on all threads
    // (called from this thread, outside rayon's pool).
    let floors = all_thread_floors(&group, plan, &dlog, &mut rng, &pb)?;
    details.extend(floors);

    pb.set_message(format!(
        "paper product, {} x 10 · 10 x 100",
        plan.product_samples
    ));
    let product = paper_product(&group, Arc::clone(&table), plan, &pb)?;
    pb.finish_and_clear();

    let med = |k: &str| details.get(k).map(|s| s.median);
    let res = FeResults {
        group: name.to_string(),
        security_bits: group.security_bits(),
        decrypt_len25_us: med("decrypt_len25_us"),
        decrypt_len25_amortized_us: med("decrypt_len25_amortized_us"),
        encrypt_len785_ms: med("encrypt_len785_ms"),
        encrypt_len784_all_threads_ms: med("encrypt_len784_all_threads_ms"),
        encrypt_prepared_len784_all_threads_ms: med("encrypt_prepared_len784_all_threads_ms"),
        prepare_public_key_len784_all_threads_ms: med("prepare_public_key_len784_all_threads_ms"),
        decrypt_len25_all_threads_us: med("decrypt_len25_all_threads_us"),
        dlog_table_build_s: med("dlog_table_build_s"),
        dlog_table_load_s: med("dlog_table_load_s"),
        paper_product_s: (product.samples == 100).then_some(product.total_s),
        dlog_table_half_width: plan.table_half_width,
        dlog_table_file_mb: file_mb,
        paper_product: product,
        details,
    };
    print_summary(&res);
    Ok(res)
}

/// Encrypt at n = 784 (cold and prepared key, plus the preparation) and decrypt at n = 25,
/// on all threads.
fn all_thread_floors<G: PrimeOrderGroup>(
    group: &G,
    plan: &FePlan,
    dlog: &DlogSolver<G>,
    rng: &mut ChaCha20Rng,
    pb: &indicatif::ProgressBar,
) -> Result<Vec<(String, Sample)>> {
    let mut out = Vec::new();
    let n = 784;
    let feip = Feip::new(group.clone(), FeipParams::new(n, X_BOUND, Y_BOUND)?);
    let (_, mpk) = feip.setup(rng);
    let x = vector(rng, n, X_BOUND);
    pb.set_message("encrypt n=784, all threads");
    let (enc, _) = time_fast(
        plan.reps_large,
        1e3,
        pb,
        || Ok(feip.encrypt(&mpk, &x, rng)?),
    )?;
    out.push(("encrypt_len784_all_threads_ms".into(), enc));
    pb.set_message("prepare public key n=784, all threads");
    let (prep, prepared) = time_fast(plan.reps_large, 1e3, pb, || {
        Ok(feip.prepare_public_key(&mpk)?)
    })?;
    out.push(("prepare_public_key_len784_all_threads_ms".into(), prep));
    pb.set_message("encrypt (prepared) n=784, all threads");
    let (encp, _) = time_fast(plan.reps_large, 1e3, pb, || {
        Ok(feip.encrypt_prepared(&prepared, &x, rng)?)
    })?;
    out.push(("encrypt_prepared_len784_all_threads_ms".into(), encp));

    let n = 25;
    let feip = Feip::new(group.clone(), FeipParams::new(n, X_BOUND, Y_BOUND)?);
    let (msk, mpk) = feip.setup(rng);
    let x = vector(rng, n, X_BOUND);
    let y = vector(rng, n, Y_BOUND);
    let want: i64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
    let ct = feip.encrypt(&mpk, &x, rng)?;
    let key = feip.derive_key(&msk, &y)?;
    pb.set_message("decrypt n=25, all threads");
    let (dec, got) = time_fast(plan.reps_small, 1e6, pb, || {
        Ok(feip.vartime_decrypt(&ct, &key, &y, dlog)?)
    })?;
    ensure!(got == want, "decryption gave {got}, expected {want}");
    out.push(("decrypt_len25_all_threads_us".into(), dec));
    Ok(out)
}

fn print_summary(r: &FeResults) {
    let f = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.3}"));
    println!(
        "{}: all threads: encrypt n=784 {} ms (prepared key {} ms, preparing it {} ms), \
         decrypt n=25 {} µs",
        r.group,
        f(r.encrypt_len784_all_threads_ms),
        f(r.encrypt_prepared_len784_all_threads_ms),
        f(r.prepare_public_key_len784_all_threads_ms),
        f(r.decrypt_len25_all_threads_us),
    );
    println!(
        "{}: decrypt n=25 {} µs | amortised (6 keys) {} µs/product | encrypt n=785 {} ms | \
         table m={} build {} s, load {} s | product ({} x 10 · 10 x 100) {:.3} s \
         (encrypt {:.3}, keys {:.3}, decrypt {:.3}{})",
        r.group,
        f(r.decrypt_len25_us),
        f(r.decrypt_len25_amortized_us),
        f(r.encrypt_len785_ms),
        r.dlog_table_half_width,
        f(r.dlog_table_build_s),
        f(r.dlog_table_load_s),
        r.paper_product.samples,
        r.paper_product.total_s,
        r.paper_product.encrypt_s,
        r.paper_product.keys_s,
        r.paper_product.decrypt_s,
        r.paper_product
            .decrypt_serial_s
            .map(|s| format!(", serial decrypt {s:.3}"))
            .unwrap_or_default()
    );
}

/// X (samples x 10, values 1..100) · Y (10 x 100) through the roles, as the paper measures it:
/// client encryption of the samples, one key per column of Y, decryption of every product.
fn paper_product<G: PrimeOrderGroup>(
    group: &G,
    table: Arc<BabyStepTable<G>>,
    plan: &FePlan,
    pb: &indicatif::ProgressBar,
) -> Result<ProductResult> {
    const LEN: usize = 10;
    const OUTPUTS: usize = 100;
    const MAX: i64 = 100;
    let mut rng = ChaCha20Rng::seed_from_u64(2019);
    let x = Array2::from_shape_fn((plan.product_samples, LEN), |_| rng.gen_range(1..=MAX));
    let y = Array2::from_shape_fn((LEN, OUTPUTS), |_| rng.gen_range(1..=MAX));
    let (xt, yt) = (x.t(), y.t());
    let want = yt.dot(&xt);

    let authority = Arc::new(Mutex::new(Authority::new(group.clone())));
    // 100 keys of length 10 have full rank: the paper's benchmark needs the permissive policy.
    let config = DomainConfig::new(FeipParams::new(LEN, MAX as u64, MAX as u64)?)
        .with_policy(PolicyConfig::permissive());
    let lock = || {
        authority
            .lock()
            .map_err(|_| anyhow::anyhow!("authority lock poisoned"))
    };
    let domain = lock()?.create_domain(config)?;
    let pk = lock()?.public_key(domain)?;
    let mut client = Client::new(group.clone(), pk)?;
    let keys = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("bench"));
    let server = Server::new(keys, table).with_dlog_bound((LEN as u64) * 100 * 100);

    let (mut enc_t, mut key_t, mut dec_t, mut tot_t) = (vec![], vec![], vec![], vec![]);
    let mut last = None;
    for _ in 0..plan.reps_product.max(1) {
        let t = Instant::now();
        let enc = client.encrypt_matrix(xt)?;
        let e = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let batch = server.request_keys(enc.domain(), yt)?;
        let k = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let product = server.secure_matmul_with_keys(&batch, &enc)?;
        let d = t.elapsed().as_secs_f64();
        ensure!(product == want, "secure product differs from X·Y");
        enc_t.push(e);
        key_t.push(k);
        dec_t.push(d);
        tot_t.push(e + k + d);
        last = Some((batch, enc));
        pb.inc(1);
    }
    let decrypt_serial_s = match (&last, plan.product_serial) {
        (Some((batch, enc)), true) => {
            pb.set_message("paper product, serial decryption");
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
            let t = Instant::now();
            let p = pool.install(|| server.secure_matmul_with_keys(batch, enc))?;
            ensure!(p == want, "serial product differs");
            Some(t.elapsed().as_secs_f64())
        }
        _ => None,
    };
    let m = |v: &[f64]| crate::stats::median(v);
    Ok(ProductResult {
        samples: plan.product_samples,
        inner_products: plan.product_samples * OUTPUTS,
        encrypt_s: m(&enc_t),
        keys_s: m(&key_t),
        decrypt_s: m(&dec_t),
        total_s: m(&tot_t),
        decrypt_serial_s,
    })
}
