//! What a server learns in secure training, measured.
//!
//! ```sh
//! cargo run --example leakage_report                          # LeNet-5, 64 MNIST images, 4 shards
//! cargo run --example leakage_report -- --model mlp           # any built-in model
//! cargo run --example leakage_report -- --model cnn-small --dataset digits --images 128
//! ```
//!
//! A short secure training run on Ristretto255, built by `SecureTrainingSession`, through a
//! key service that records every function key the server receives
//! (`secure_training::RecordingKeyService`). Then:
//!
//! (a) **Cross-domain.** Every recorded sample-major FEIP key of shard domain `A` (a sample of
//!     them, plus random linear combinations — what a server could derive) is tried on samples
//!     of every other shard `B`: a success is a decryption whose discrete log lies within the
//!     bound the server would use. Same-shard decryptions are the positive control.
//! (b) **Reconstruction.** What the server can rebuild of shard 0's samples from the keys it
//!     received there — the first forward request, the first weight-gradient request, every
//!     key of the run — by `cryptonn::coordinator::leakage::reconstruct`
//!     (`secure_training::shard_leakage`): the rank, the share of inputs determined exactly,
//!     and the relative error against the truth (which only this measurement program, playing
//!     the data owner, knows).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use cryptonn::coordinator::secure_training::{
    shard_leakage, DatasetSamples, EncodedSamples, EncryptionParams, FirstLayerGeometry,
    RecordingKeyService, SecureTrainingSession, ViewLeakage,
};
use cryptonn::coordinator::{DomainId, SparseKeyVector};
use cryptonn::fe::dlog::DlogSolver;
use cryptonn::fe::feip::{Feip, FunctionKey, KeyVector};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{default_data_dir, load_named, LabelPermutation};
use cryptonn::nn::first_layer::FirstLayerSpec;
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::train::{train_with_backend, BatchSchedule, Mode, TrainConfig};
use rand::{Rng, SeedableRng};

type G = Ristretto255;
/// A key vector (sparse) with its function key.
type Attempt = (Vec<(usize, i64)>, FunctionKey<G>);

/// What a server learns in secure training, measured.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// A built-in model: lenet5, mlp, cnn-small.
    #[arg(long, default_value = "lenet5")]
    model: String,
    /// The dataset: mnist, breast-cancer, digits.
    #[arg(long, default_value = "mnist")]
    dataset: String,
    /// Training samples (the first N of the training split).
    #[arg(long, default_value_t = 64)]
    images: usize,
    /// Samples per shard (= mini-batch).
    #[arg(long, default_value_t = 16)]
    shard: usize,
    /// Where the encrypted dataset and the discrete-log table are kept.
    #[arg(long, default_value = "cache")]
    cache_dir: PathBuf,
    /// Directory holding the datasets [default: $CRYPTONN_DATA_DIR, else the repository's data/].
    #[arg(long)]
    data: Option<PathBuf>,
}

fn view(name: &str, v: &ViewLeakage) {
    println!(
        "    {name:<20} {:>6} keys, rank {} of {}; {:.1} % of inputs exact; mean relative error \
         {:.2e}",
        v.keys_issued,
        v.rank,
        v.rank_of,
        100.0 * v.exact_fraction,
        v.relative_error
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = args.data.clone().unwrap_or_else(|| {
        std::env::var_os("CRYPTONN_DATA_DIR").map_or_else(default_data_dir, PathBuf::from)
    });
    let split = load_named(&args.dataset, &dir)?;
    let train = split
        .train
        .take(args.images.min(split.train.len()), "training")?;
    let test = split.test.take(200.min(split.test.len()), "test")?;
    let spec = ModelSpec::builtin(&args.model, train.shape(), train.classes())?;
    let (first, _) = spec.first_layer()?;
    let cfg = TrainConfig {
        mode: Mode::Secure,
        epochs: 1,
        batch_size: args.shard,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::recommended(&args.model, &args.dataset)
    };
    let group = Ristretto255;
    let session = SecureTrainingSession::new(group, &args.cache_dir).reencrypt(true);
    let local = session.local_authority()?;
    let labels = LabelPermutation::from_seed(cfg.seed, train.classes());
    let samples = DatasetSamples::new(&train, &labels, cfg.quant.scale_x)?;
    let layout = samples.layout(matches!(first, FirstLayerSpec::Linear { .. }))?;
    let params =
        EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size).with_layout(layout);
    let name = format!("leakage-{}-{}", args.model, args.dataset);
    let input = session.encrypt(&local.authority, &name, &samples, &params, &|_| {})?;
    let domains = input.domains.clone();
    let table = session.dlog_table()?;
    let mut backend = session.server(
        RecordingKeyService::new(session.in_process_keys(&local.authority)),
        &input.path,
        table.clone(),
        cfg.quant,
        FirstLayerGeometry::from_spec(&first)?,
    )?;
    let model = Model::new(&spec, cfg.seed)?;
    let (_, report) = train_with_backend(&cfg, model, &mut backend, &test, &labels, &mut ())?;
    println!(
        "secure run: {} on {}, {} samples, {} shards of {}, 1 epoch, test acc {:.1} %",
        args.model,
        args.dataset,
        train.len(),
        domains.len(),
        cfg.batch_size,
        100.0 * report.test_accuracy[0]
    );

    // (a) cross-domain decryption attempts, with the sample-major keys.
    let recorded: Vec<_> = backend
        .key_service()
        .requests()
        .into_iter()
        .filter(|r| domains.contains(&r.domain))
        .collect();
    let total_keys: usize = recorded.iter().map(|r| r.keys.len()).sum();
    let n = backend.geometry().input_len();
    let feip = Feip::new(group, params.feip_params()?);
    // The widest bound the server ever uses: the gradient bound plus any padding term.
    let bound = cfg.quant.gradient_bound * 2;
    let dlog = DlogSolver::new(table.clone(), bound)?;
    let ds = backend.dataset();
    let shard_of = |d: DomainId| domains.iter().position(|&x| x == d);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (mut cross_tries, mut cross_hits, mut own_tries, mut own_hits) =
        (0usize, 0usize, 0usize, 0usize);
    for r in &recorded {
        let a = shard_of(r.domain).context("unknown domain")?;
        // A sample of keys and one random combination of them.
        let picks: Vec<usize> = (0..8).map(|_| rng.gen_range(0..r.keys.len())).collect();
        let mut tries: Vec<Attempt> = Vec::new();
        let mut dense = vec![0i64; n];
        let mut sk = group.scalar_from_i64(0);
        for &k in &picks {
            let terms = SparseKeyVector::from_data(&r.vectors[k], n, u64::MAX)?
                .terms()
                .to_vec();
            // Σ c_k y_k with key Σ c_k sk_k: a key the server can derive itself.
            let c: i64 = rng.gen_range(-3..=3);
            for &(p, v) in &terms {
                dense[p] += c * v;
            }
            sk = group.scalar_add(
                &sk,
                &group.scalar_mul(&group.scalar_from_i64(c), r.keys[k].scalar()),
            );
            tries.push((terms, r.keys[k].clone()));
        }
        let combo: Vec<(usize, i64)> = dense
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(p, &v)| (p, v))
            .collect();
        if !combo.is_empty() {
            tries.push((combo, FunctionKey::from_scalar(sk)));
        }
        for b in 0..domains.len() {
            let first = b * cfg.batch_size;
            let last = (first + 7).min(ds.len() - 1);
            for img in [first, last] {
                let ct = ds.image_ciphertext(img)?;
                let prepared = feip.prepare_ciphertext(&ct)?;
                let batch: Vec<(&FunctionKey<G>, KeyVector<'_>)> = tries
                    .iter()
                    .map(|(t, k)| (k, KeyVector::Sparse(t)))
                    .collect();
                let hits = feip
                    .vartime_decrypt_many(&prepared, &batch, &dlog)
                    .iter()
                    .filter(|r| r.is_ok())
                    .count();
                if b == a {
                    own_tries += batch.len();
                    own_hits += hits;
                } else {
                    cross_tries += batch.len();
                    cross_hits += hits;
                }
            }
        }
    }
    println!(
        "\n(a) sample-major keys collected over the run: {total_keys} FEIP keys in {} requests",
        recorded.len()
    );
    println!("    same shard (control):   {own_hits}/{own_tries} decryptions succeed");
    println!("    other shards:           {cross_hits}/{cross_tries} decryptions succeed (|value| <= {bound})");

    // (b) what the server can rebuild of shard 0 from the keys it received there.
    let l = shard_leakage(
        backend.dataset(),
        backend.geometry(),
        &backend.key_service().requests(),
        0,
        &samples as &dyn EncodedSamples,
        &dlog,
    )?;
    println!(
        "\n(b) shard 0: {} samples x {} features ({} real decryptions checked):",
        l.samples, l.features, l.decryptions_checked
    );
    view("forward, one step", &l.forward_one_step);
    view("gradient, one step", &l.gradient_one_step);
    view("whole run", &l.whole_run);
    drop(backend);
    std::fs::remove_file(&input.path).ok();
    Ok(())
}
