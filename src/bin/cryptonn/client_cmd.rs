//! `cryptonn client …`: the data owner.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use cryptonn::coordinator::net::RemoteKeyService;
use cryptonn::coordinator::persistent::SEED_FILE;
use cryptonn::coordinator::secure_training::encrypted_dataset::{
    part_file_name, read_header, samples_digest,
};
use cryptonn::coordinator::secure_training::{
    encrypt_part_or_reuse, register_label_commitments, register_noisy_ciphertexts, DatasetSamples,
    EncodedSamples, EncryptedDataset, EncryptionParams, MnistSamples,
};
use cryptonn::coordinator::{DomainId, KeyService, NoiseConfig, RequesterId};
use cryptonn::fe::febo::FeboParams;
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{default_data_dir, load_named, Dataset, LabelPermutation, CLASSES};
use cryptonn::nn::first_layer::FirstLayerSpec;
use cryptonn::nn::model::ModelSpec;

use crate::connect::ConnectArgs;
use cryptonn::cli::EncodingOptions;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Encrypt the first --train-size training samples (and labels) of --dataset shard by
    /// shard, under fresh per-shard key domains of the authority, into one dataset file in
    /// --out, laid out for --model's first layer (a dense first layer adds feature-major
    /// ciphertexts under per-shard feature domains).
    Encrypt(EncryptArgs),
    /// Classify one image with a server's trained model without showing it the image in the
    /// clear: open a fresh query domain at the authority, encrypt the image under it, send it
    /// to the server (`server train --serve`) and map the class back through the data owner's
    /// label permutation (--labels).
    Predict(crate::predict_cmd::PredictArgs),
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Directory holding the datasets (MNIST's IDX files, breast_cancer.csv, digits.csv.gz).
    #[arg(long, default_value_os_t = default_data_dir())]
    data: PathBuf,
    /// The dataset: mnist, breast-cancer or digits.
    #[arg(long, default_value = "mnist")]
    dataset: String,
    /// The model the server will train: a built-in name (lenet5, mlp, cnn-small) or a model
    /// file (TOML or JSON). Its first layer decides the layout of the ciphertexts.
    #[arg(long, default_value = "lenet5")]
    model: String,
    /// Directory to write the encrypted dataset to.
    #[arg(long)]
    out: PathBuf,
    /// Encrypt again even if --out holds a dataset for the same data, parameters and keys.
    #[arg(long)]
    reencrypt: bool,
    /// The data owner's secret label permutation π: read from FILE, or drawn from the OS RNG
    /// and written there (mode 0600) if FILE does not exist. Keep it apart from --out (which
    /// goes to the server); `client predict --labels` needs it to map classes back.
    #[arg(long, value_name = "FILE")]
    labels: PathBuf,
    /// The name of the server allowed to train on this data (the name its token was
    /// provisioned for): the only party the shard domains will issue keys to.
    #[arg(long, value_name = "NAME", default_value = "server")]
    trainer: String,
    /// Encrypt only the shards A..B (B exclusive; shard k holds samples k·S .. (k+1)·S of
    /// --train-size, S = --batch-size) into one self-describing part file in --out, under fresh
    /// domains for these shards: one process (or Kubernetes pod, docs/k8s/encrypt-job.yaml)
    /// per range; `server train --data DIR` joins the parts. --labels must then exist already
    /// (all parts share one label permutation).
    #[arg(long, value_name = "A..B", value_parser = parse_shards)]
    shards: Option<Range<usize>>,
    /// Make the shard domains noisy (docs/noisy-keys.md): the authority adds discrete
    /// Gaussian noise of this standard deviation (in encoded units, to 1/1000) to every
    /// first-layer value the trainer decrypts, charges each release to the image's privacy
    /// ledger, and issues no exact keys for these domains; the trainer needs `server train
    /// --noisy-keys`. Encrypts afresh under new domains. Convolutional first layers only.
    /// 0: exact keys.
    #[arg(long, default_value_t = 0.0, value_parser = cryptonn::cli::noise_sigma)]
    noise_sigma: f64,
    #[command(flatten)]
    encoding: EncodingOptions,
}

/// `A..B` with `A < B`.
fn parse_shards(s: &str) -> Result<Range<usize>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?} is not a range A..B"))?;
    let a: usize = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: usize = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if a >= b {
        return Err(format!("{a}..{b} is empty (B is exclusive)"));
    }
    Ok(a..b)
}

pub fn run(c: ClientCommand) -> anyhow::Result<()> {
    match c {
        ClientCommand::Encrypt(a) => encrypt(&a),
        ClientCommand::Predict(a) => crate::predict_cmd::predict(&a),
    }
}

fn encrypt(a: &EncryptArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let split = load_named(&a.dataset, &a.data)?;
    let train_size = a.encoding.train_size.unwrap_or(2048).min(split.train.len());
    let train = split.train.take(train_size, "training")?;
    let spec = ModelSpec::resolve(&a.model, train.shape(), train.classes())?;
    if spec.input != train.shape() || spec.classes != train.classes() {
        anyhow::bail!(
            "--model {} takes inputs {} with {} classes; --dataset {} has {} with {}",
            a.model,
            spec.input,
            spec.classes,
            a.dataset,
            train.shape(),
            train.classes()
        );
    }
    let (first, _) = spec.first_layer()?;
    let dense = matches!(first, FirstLayerSpec::Linear { .. });
    if dense && cryptonn::cli::noise_of(a.noise_sigma).is_some() {
        anyhow::bail!(
            "--noise-sigma: {} has a dense first layer, whose gradient reads feature-major              ciphertexts that each hold a whole shard (no per-image ct0 to bind the noise and              the ledger to); use a convolutional model",
            spec.name
        );
    }
    check_out_and_labels(a)?;
    if a.dataset == "mnist" && !dense {
        return encrypt_mnist(a, &train, start);
    }
    let labels = owner_labels(a, train.classes())?;
    let quant = a.encoding.quant();
    let samples = DatasetSamples::new(&train, &labels, quant.scale_x)?;
    let params = a
        .encoding
        .encryption_params()
        .with_layout(samples.layout(dense)?);
    let what = format!(
        "{} {} samples for {}{}",
        train.len(),
        a.dataset,
        spec.name,
        if dense { " (and feature-major)" } else { "" }
    );
    let name = format!("{}-train", a.dataset);
    encrypt_shards(a, &samples, &params, &name, dense, &what, start)
}

/// The data owner's label permutation: read from --labels, or drawn and written there if the
/// file does not exist (never with --shards: the parts must share one permutation).
fn owner_labels(a: &EncryptArgs, classes: usize) -> anyhow::Result<LabelPermutation> {
    let (labels, created) = if a.shards.is_some() {
        let labels = LabelPermutation::read_file(&a.labels).with_context(|| {
            format!(
                "--shards: reading the label permutation {} (every part must use the same one: \
                 create it first, e.g. with one `client encrypt` without --shards, and give \
                 each process a copy)",
                a.labels.display()
            )
        })?;
        (labels, false)
    } else {
        LabelPermutation::load_or_create(&a.labels, classes)?
    };
    if labels.classes() != classes {
        anyhow::bail!(
            "--labels {} permutes {} classes, the dataset has {classes}",
            a.labels.display(),
            labels.classes()
        );
    }
    println!(
        "client: label permutation {} {}",
        if created { "drawn into" } else { "read from" },
        a.labels.display()
    );
    Ok(labels)
}

/// Creates the key domains of the shards to encrypt (all, or --shards A..B) at the authority,
/// bound to --trainer (or reuses those of a current file in --out), encrypts them into one
/// file (a part for --shards) and registers its label commitments.
fn encrypt_shards(
    a: &EncryptArgs,
    source: &dyn EncodedSamples,
    params: &EncryptionParams,
    name: &str,
    dense: bool,
    what: &str,
    start: Instant,
) -> anyhow::Result<()> {
    let group = Ristretto255;
    let total = params.shards(source.len());
    let range = match &a.shards {
        Some(r) if r.end > total => anyhow::bail!(
            "--shards {}..{}: {} samples in shards of --batch-size {} make {total} shards \
             (0..{total})",
            r.start,
            r.end,
            source.len(),
            params.shard_size
        ),
        Some(r) => r.clone(),
        None => 0..total,
    };
    let count = u32::try_from(range.len()).context("too many shards")?;
    let trainer = RequesterId::new(a.trainer.as_str());
    let keys = a.connect.connect("client")?;
    let digest = samples_digest(group.id().to_byte(), source, params);
    let existing = a.out.join(part_file_name(
        name,
        group.id().to_byte(),
        source.len(),
        params.shard_size,
        &digest,
        range.clone(),
    ));
    let noise = cryptonn::cli::noise_of(a.noise_sigma)
        .map(|sigma| params.noise_config(sigma))
        .transpose()?;
    let create = |feip: FeipParams, febo: Option<FeboParams>, noise: Option<NoiseConfig>| {
        keys.create_domains_with_noise(
            feip,
            febo,
            count,
            true,
            std::slice::from_ref(&trainer),
            noise,
        )
        .with_context(|| format!("creating {count} domains at {}", keys.peer()))
    };
    // Reuse a file already in --out whose domains are still served (same data, parameters
    // and shard range).
    let (domains, feature_domains) = match read_header(&existing) {
        Ok(h)
            if !a.reencrypt
                && noise.is_none()
                && h.source_digest == digest
                && h.params == *params
                && h.part.map_or(0, |p| p.first_shard) == range.start =>
        {
            (h.domains, h.feature_domains)
        }
        _ => (
            create(params.feip_params()?, Some(params.febo_params()?), noise)?,
            if dense {
                create(params.feature_feip_params()?, None, None)?
            } else {
                Vec::new()
            },
        ),
    };
    let fetch = |ds: &[DomainId]| {
        ds.iter()
            .map(|&d| keys.public_key(d))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("fetching public keys from {}", keys.peer()))
    };
    let (pks, feature_pks) = (fetch(&domains)?, fetch(&feature_domains)?);
    println!(
        "client: {what}: shards {}..{} of {total} (domains {}..={}) from {}",
        range.start,
        range.end,
        domains.first().map_or(0, |d| d.0),
        domains.last().map_or(0, |d| d.0),
        keys.peer()
    );
    let t = Instant::now();
    let (path, reused) = encrypt_part_or_reuse(
        &group,
        &a.out,
        name,
        source,
        &pks,
        &feature_pks,
        params,
        range.clone(),
        a.reencrypt || noise.is_some(),
        &|_| {},
    )
    .with_context(|| format!("encrypting into {}", a.out.display()))?;
    if !reused {
        let seconds = t.elapsed().as_secs_f64();
        let images =
            (range.end * params.shard_size).min(source.len()) - range.start * params.shard_size;
        println!(
            "client: encrypted {images} samples in {seconds:.1} s ({:.1} samples/s)",
            images as f64 / seconds.max(1e-9)
        );
    }
    finish(&keys, &trainer, &path, reused, noise.is_some(), start)
}

/// Refuses a label file inside --out (handed to the server) and an --out holding a seed.
fn check_out_and_labels(a: &EncryptArgs) -> anyhow::Result<()> {
    if let (Ok(out), Some(parent)) = (
        std::fs::create_dir_all(&a.out).and_then(|()| a.out.canonicalize()),
        a.labels.parent(),
    ) {
        let dir = if parent.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            parent
        };
        if dir.canonicalize().is_ok_and(|d| d.starts_with(&out)) {
            anyhow::bail!(
                "--labels {} lies inside --out {}, which is handed to the server; keep the \
                 label permutation elsewhere",
                a.labels.display(),
                a.out.display()
            );
        }
    }
    if a.out.join(SEED_FILE).exists() {
        anyhow::bail!(
            "--out {} holds an authority's master seed ({SEED_FILE}): the encrypted dataset goes \
             to the server, so write it to a directory of its own",
            a.out.display()
        );
    }
    Ok(())
}

/// The MNIST layout for a convolutional first layer (the format `server train` has always
/// read; the same file as `train_lenet` encrypts).
fn encrypt_mnist(a: &EncryptArgs, train: &Dataset, start: Instant) -> anyhow::Result<()> {
    let params: EncryptionParams = a.encoding.encryption_params();
    let labels = owner_labels(a, CLASSES)?;
    let samples = MnistSamples::new(train, &labels, &params)?;
    let what = format!("{} images", train.len());
    encrypt_shards(a, &samples, &params, "mnist-train", false, &what, start)
}

/// Reads the written dataset back and registers its label commitments at the authority.
fn finish(
    keys: &RemoteKeyService<Ristretto255>,
    trainer: &RequesterId,
    path: &Path,
    reused: bool,
    noisy: bool,
    start: Instant,
) -> anyhow::Result<()> {
    let data = EncryptedDataset::load_part(Ristretto255, path)
        .with_context(|| format!("reading back {}", path.display()))?;
    let registered = register_label_commitments(&data, keys)
        .with_context(|| format!("registering FEBO commitments at {}", keys.peer()))?;
    if noisy {
        let n = register_noisy_ciphertexts(&data, keys)
            .with_context(|| format!("registering noisy ciphertexts at {}", keys.peer()))?;
        println!("client: {n} ciphertexts registered in noisy domains for {trainer}");
    }
    println!(
        "{} {} ({:.1} s); {registered} new FEBO commitments registered for {trainer}",
        if reused { "reused" } else { "wrote" },
        path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
