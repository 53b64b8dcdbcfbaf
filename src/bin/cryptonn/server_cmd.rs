//! `cryptonn server …`: training over an encrypted dataset with keys from a remote authority,
//! then (with `--serve`) secure predictions with the trained model.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use cryptonn::coordinator::secure_prediction::SecurePredictor;
use cryptonn::coordinator::secure_training::{
    ConvGeometry, EncryptedDataset, FirstLayerGeometry, SecureTrainingError, SecureTrainingSession,
};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{default_data_dir, LabelPermutation, Mnist};
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::train::{train_with_backend, BatchSchedule, Mode};

use crate::connect::ConnectArgs;
use crate::serve_predictions::ServeOptions;
use cryptonn::cli::{print_final, write_json, Bars, TrainOptions};
use cryptonn::coordinator::secure_training::SecureSummary;

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Train LeNet-5 on an encrypted dataset (secure mode of examples/train_lenet, with the
    /// same options and JSON summary), asking the authority for fresh keys every step; with
    /// --serve, then serve secure predictions with the trained model until SIGTERM / Ctrl-C.
    Train(TrainArgs),
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The encrypted dataset: a .cnnenc file, or a directory holding exactly one.
    #[arg(long)]
    data: PathBuf,
    /// Directory holding the (public) MNIST test set, for the test accuracy.
    #[arg(long, default_value_os_t = default_data_dir())]
    mnist: PathBuf,
    /// Where the discrete-log table is cached.
    #[arg(long, default_value = "cache")]
    cache_dir: PathBuf,
    /// The server's name (must be the name its token was provisioned for).
    #[arg(long, default_value = "server")]
    name: String,
    /// The data owner's label permutation file, ONLY to measure the test accuracy in true
    /// classes. It hands the server π, so a deployment leaves it out: the server then trains
    /// without knowing what its classes mean and reports no test accuracy (the data owner
    /// maps predictions back with `client predict --labels`).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    #[command(flatten)]
    train: TrainOptions,
    #[command(flatten)]
    serve: ServeOptions,
}

pub fn run(c: ServerCommand) -> anyhow::Result<()> {
    match c {
        ServerCommand::Train(a) => train(&a),
    }
}

/// The dataset file: `path` itself, or the single `.cnnenc` file in the directory `path`.
fn dataset_file(path: &Path) -> anyhow::Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let mut found = Vec::new();
    for e in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "cnnenc") {
            found.push(p);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => anyhow::bail!(
            "{}: no encrypted dataset (.cnnenc) in this directory",
            path.display()
        ),
        n => anyhow::bail!(
            "{}: {n} encrypted datasets; name one with --data FILE",
            path.display()
        ),
    }
}

fn train(a: &TrainArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let mode = Mode::Secure;
    let cfg = a.train.config(mode);
    if cfg.schedule != BatchSchedule::FixedShards {
        anyhow::bail!("secure training needs --batches fixed-shards (one key domain per shard)");
    }
    a.train.init_threads()?;
    // Checked (and bound) before training, served after it.
    let serving = a.serve.prepare()?;
    let group = Ristretto255;
    let path = dataset_file(&a.data)?;
    let t_load = Instant::now();
    let data = EncryptedDataset::load(group, &path).map_err(|e| {
        // The library names the cause; the flag that repairs it is the data owner's.
        let hint = if matches!(e, SecureTrainingError::Corrupt { .. }) {
            " (the data owner writes it again with `cryptonn client encrypt --reencrypt`)"
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!("loading {}{hint}", path.display()))
    })?;
    let header = data.header();
    let params = header.params;
    let training_domains = header.domains.clone();
    let expected = a.train.encoding.encryption_params();
    if header.params != expected {
        anyhow::bail!(
            "{} was encrypted with {:?}; these options give {:?} (pass the client's --batch-size \
             and scales)",
            path.display(),
            header.params,
            expected
        );
    }
    if let Some(n) = a.train.encoding.train_size {
        if n != data.len() {
            anyhow::bail!(
                "{} holds {} images, --train-size says {n}",
                path.display(),
                data.len()
            );
        }
    }
    let ciphertext_bytes = data.ciphertext_bytes();
    println!(
        "server: encrypted dataset {} ({} images, {:.1} MB; load {:.1} s)",
        path.display(),
        data.len(),
        ciphertext_bytes as f64 / 1e6,
        t_load.elapsed().as_secs_f64()
    );
    let mnist = Mnist::load(&a.mnist)?;
    // Without π the server cannot tell which of its classes is which true digit, so it
    // evaluates nothing (an empty test set) rather than report a meaningless figure.
    let labels = match &a.labels {
        Some(p) => Some(LabelPermutation::read_file(p)?),
        None => None,
    };
    let test_size = if labels.is_some() {
        a.train.test_size
    } else {
        0
    };
    let test = mnist.test.take(test_size, "test")?;
    let keys = a.connect.connect(&a.name)?;
    let t_setup = Instant::now();
    data.verify_keys(&keys)
        .with_context(|| format!("checking {} against {}", path.display(), keys.peer()))?;
    let setup_seconds = t_setup.elapsed().as_secs_f64();
    let session =
        SecureTrainingSession::new(group, &a.cache_dir).dlog_half_width(a.train.dlog_half_width);
    let t_table = Instant::now();
    let table = session.dlog_table()?;
    println!(
        "discrete-log table: half-width {} ({:.1} s)",
        a.train.dlog_half_width,
        t_table.elapsed().as_secs_f64()
    );
    println!(
        "LeNet-5 on MNIST: mode {mode}, {} training / {} test images, {} epochs, batch {}, lr {}, \
         momentum {}, seed {}, {} threads, authority {}",
        data.len(),
        test.len(),
        cfg.epochs,
        cfg.batch_size,
        cfg.sgd.lr,
        cfg.sgd.momentum,
        cfg.seed,
        rayon::current_num_threads(),
        keys.peer()
    );
    let peer = keys.peer().to_string();
    let mut backend = session.server_with_dataset(
        keys,
        data,
        Arc::clone(&table),
        cfg.quant,
        FirstLayerGeometry::Conv(ConvGeometry::lenet5()),
    )?;
    let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let mut bars = Bars::new();
    // The evaluation permutation: π if given, else any (the test set is then empty).
    let eval_labels =
        labels.unwrap_or_else(|| LabelPermutation::identity(cryptonn::nn::data::CLASSES));
    let (model, mut report) =
        train_with_backend(&cfg, model, &mut backend, &test, &eval_labels, &mut bars)
            .with_context(|| format!("training with keys from {peer}"))?;
    if a.labels.is_none() {
        report.test_accuracy.clear();
        println!(
            "test accuracy: not measured (the server does not know the data owner's label \
             permutation; pass --labels FILE only in experiments)"
        );
    }
    let s = *backend.stats();
    println!(
        "secure: {} key requests ({} FEIP + {} FEBO keys) to {peer}, {} decryptions; group ops \
         {:.1} s, discrete logs {:.1} s, key service {:.1} s",
        s.key_requests,
        s.feip_keys,
        s.febo_keys,
        s.decryptions,
        s.fe_seconds,
        s.dlog_seconds,
        s.key_seconds
    );
    let extra = SecureSummary {
        group: group.id(),
        encrypt_seconds: 0.0,
        reused: true,
        ciphertext_bytes,
        stats: s,
        setup_seconds,
        audit_records: None,
        audit_file: peer,
    }
    .to_map();
    if let Some(path) = &a.train.json {
        write_json(path, &report, Some(&extra))?;
        println!("wrote {}", path.display());
    }
    print_final(&report, mode, start);
    if let Some(serving) = serving {
        drop(backend);
        let keys = a.connect.connect(&a.name)?;
        let predictor = SecurePredictor::new(model, cfg.quant, params, keys, table)
            .context("setting up secure prediction")?;
        serving.run(predictor, &a.connect.authority, training_domains)?;
    }
    Ok(())
}
