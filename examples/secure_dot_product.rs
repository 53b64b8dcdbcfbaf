//! Secure matrix product, the CryptoNN paper's benchmark: X (100x10, values 1..100) times
//! Y (10x100), i.e. 10,000 inner products of length 10.
//!
//! The client encrypts its 100 samples (the rows of X, i.e. the columns of Xᵀ) under FEIP; the
//! server holds Y in the clear, gets one function key per column of Y from the authority, and
//! decrypts every inner product: it computes Yᵀ · Xᵀ = (X · Y)ᵀ without seeing X.
//!
//! Paper (Python/Charm): 3.0 s encrypt, 0.56 s keys, 93 min serial decrypt ("7.7 s parallel").
//!
//! ```sh
//! cargo run --release --example secure_dot_product             # Ristretto255 + modp2048
//! cargo run --release --example secure_dot_product -- --fast   # Ristretto255 only
//! ```
//!
//! The discrete-log table (|z| <= 2^17) is cached in `target/cryptonn-cache/`.
//!
//! Note on what the server learns here: 100 keys for vectors of length 10 span the whole space,
//! so this server could recover X entirely. The domain therefore runs under the permissive
//! policy; the default policy would refuse the 6th independent key (rank cap n/2).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{ensure, Result};
use cryptonn::coordinator::{
    Authority, Client, DomainConfig, InProcessKeyService, PolicyConfig, RequesterId, Server,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const SAMPLES: usize = 100; // rows of X
const LEN: usize = 10; // inner-product length
const OUTPUTS: usize = 100; // columns of Y
const MAX_VALUE: i64 = 100;
/// Baby-step half-width: covers |<x, y>| <= 10 · 100 · 100 = 100,000 without giant steps.
const TABLE_HALF_WIDTH: u64 = 1 << 17;

/// CPU time of this process (all threads, user + system) in seconds, from `/proc/self/stat`
/// (clock ticks of 10 ms); `None` where that file does not exist.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

struct Timings {
    cpu: Option<f64>,
    setup: f64,
    encrypt: f64,
    keys: f64,
    decrypt: f64,
    decrypt_serial: Option<f64>,
}

fn run<G: PrimeOrderGroup>(group: G, serial_too: bool) -> Result<Timings> {
    let mut rng = ChaCha20Rng::seed_from_u64(2019);
    let x = Array2::from_shape_fn((SAMPLES, LEN), |_| rng.gen_range(1..=MAX_VALUE));
    let y = Array2::from_shape_fn((LEN, OUTPUTS), |_| rng.gen_range(1..=MAX_VALUE));

    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cryptonn-cache");
    let t = Instant::now();
    let table = Arc::new(BabyStepTable::load_or_build(
        group.clone(),
        TABLE_HALF_WIDTH,
        &cache,
    )?);
    let authority = Arc::new(Mutex::new(Authority::new(group.clone())));
    let config = DomainConfig::new(FeipParams::new(LEN, MAX_VALUE as u64, MAX_VALUE as u64)?)
        .with_policy(PolicyConfig::permissive());
    let domain = authority
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .create_domain(config)?;
    let pk = authority
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .public_key(domain)?;
    let mut client = Client::new(group.clone(), pk)?;
    let keys = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("server"));
    let server = Server::new(keys, table);
    let setup = t.elapsed().as_secs_f64();

    // Client: encrypt the 100 samples (columns of Xᵀ).
    let xt = x.t();
    let cpu0 = process_cpu_seconds();
    let t = Instant::now();
    let enc = client.encrypt_matrix(xt)?;
    let encrypt = t.elapsed().as_secs_f64();

    // Server: one key per column of Y (rows of Yᵀ).
    let yt = y.t();
    let t = Instant::now();
    let batch = server.request_keys(enc.domain(), yt)?;
    let keys_time = t.elapsed().as_secs_f64();

    // Server: decrypt all 10,000 inner products.
    let t = Instant::now();
    let product = server.secure_matmul_with_keys(&batch, &enc)?;
    let decrypt = t.elapsed().as_secs_f64();
    let cpu = cpu0.zip(process_cpu_seconds()).map(|(a, b)| b - a);
    ensure!(product == yt.dot(&xt), "secure product differs from X·Y");

    let decrypt_serial = if serial_too {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
        let t = Instant::now();
        let serial = pool.install(|| server.secure_matmul_with_keys(&batch, &enc))?;
        ensure!(serial == product, "serial and parallel results differ");
        Some(t.elapsed().as_secs_f64())
    } else {
        None
    };
    Ok(Timings {
        cpu,
        setup,
        encrypt,
        keys: keys_time,
        decrypt,
        decrypt_serial,
    })
}

fn report(name: &str, t: &Timings) {
    println!(
        "{name:<14} encrypt {:>8.4} s | keys {:>8.4} s | decrypt {:>8.4} s | total {:>8.4} s{}   (CPU time of the total, all threads: {}; setup + dlog table {:.2} s)",
        t.encrypt,
        t.keys,
        t.decrypt,
        t.encrypt + t.keys + t.decrypt,
        t.decrypt_serial
            .map(|s| format!(" | serial decrypt {s:.4} s"))
            .unwrap_or_default(),
        t.cpu
            .map(|c| format!("{c:.2} s"))
            .unwrap_or_else(|| "n/a".into()),
        t.setup,
    );
}

fn main() -> Result<()> {
    let fast = std::env::args().any(|a| a == "--fast");
    println!(
        "X ({SAMPLES}x{LEN}, values 1..{MAX_VALUE}) · Y ({LEN}x{OUTPUTS}): {} inner products of length {LEN}, {} threads",
        SAMPLES * OUTPUTS,
        rayon::current_num_threads()
    );
    println!(
        "paper (Python/Charm): encrypt 3.0 s | keys 0.56 s | decrypt 93 min serial, 7.7 s parallel"
    );
    // The machine may be shared: print its load so the wall-clock figures can be read in context.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average: {}", load.trim());
    }
    // Warm-up run (first-use tables), then the measured one.
    run(Ristretto255, false)?;
    let r = run(Ristretto255, true)?;
    report("Ristretto255", &r);
    if !fast {
        let m = run(ModpGroup::rfc3526_2048(), true)?;
        report("modp2048", &m);
    }
    println!("results checked equal to the plaintext product X·Y");
    Ok(())
}
