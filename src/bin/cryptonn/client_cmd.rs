//! `cryptonn client …`: the data owner.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use cryptonn::coordinator::net::RemoteKeyService;
use cryptonn::coordinator::persistent::SEED_FILE;
use cryptonn::coordinator::secure_training::encrypted_dataset::{
    cache_file_name, named_cache_file, read_header, samples_digest, source_digest,
};
use cryptonn::coordinator::secure_training::{
    encrypt_or_reuse, encrypt_samples_or_reuse, register_label_commitments, DatasetSamples,
    EncryptedDataset, EncryptionParams,
};
use cryptonn::coordinator::{DomainId, KeyService, RequesterId};
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
    #[command(flatten)]
    encoding: EncodingOptions,
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
    check_out_and_labels(a)?;
    if a.dataset == "mnist" && !dense {
        return encrypt_mnist(a, &train, start);
    }
    let group = Ristretto255;
    let (labels, created) = LabelPermutation::load_or_create(&a.labels, train.classes())?;
    println!(
        "client: label permutation {} {}",
        if created { "drawn into" } else { "read from" },
        a.labels.display()
    );
    let quant = a.encoding.quant();
    let samples = DatasetSamples::new(&train, &labels, quant.scale_x)?;
    let params = a
        .encoding
        .encryption_params()
        .with_layout(samples.layout(dense)?);
    let trainer = RequesterId::new(a.trainer.as_str());
    let keys = a.connect.connect("client")?;
    let shards = u32::try_from(params.shards(train.len())).context("too many shards")?;
    let name = format!("{}-train", a.dataset);
    let digest = samples_digest(group.id().to_byte(), &samples, &params);
    let existing = a.out.join(named_cache_file(
        &name,
        group.id().to_byte(),
        train.len(),
        params.shard_size,
        &digest,
    ));
    let create = |feip: FeipParams, febo: Option<FeboParams>| {
        keys.create_domains(feip, febo, shards, true, std::slice::from_ref(&trainer))
            .with_context(|| format!("creating {shards} domains at {}", keys.peer()))
    };
    let (domains, feature_domains) = match read_header(&existing) {
        Ok(h) if !a.reencrypt && h.source_digest == digest && h.params == params => {
            (h.domains, h.feature_domains)
        }
        _ => (
            create(params.feip_params()?, Some(params.febo_params()?))?,
            if dense {
                create(params.feature_feip_params()?, None)?
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
        "client: {} {} samples for {} in {} shards{} from {}",
        train.len(),
        a.dataset,
        spec.name,
        shards,
        if dense { " (and feature-major)" } else { "" },
        keys.peer()
    );
    let (path, reused) = encrypt_samples_or_reuse(
        &group,
        &a.out,
        &name,
        &samples,
        &pks,
        &feature_pks,
        &params,
        a.reencrypt,
        &|_| {},
    )
    .with_context(|| format!("encrypting into {}", a.out.display()))?;
    finish(&keys, &trainer, &path, reused, start)
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
    let group = Ristretto255;
    let params: EncryptionParams = a.encoding.encryption_params();
    let (labels, created) = LabelPermutation::load_or_create(&a.labels, CLASSES)?;
    println!(
        "client: label permutation {} {}",
        if created { "drawn into" } else { "read from" },
        a.labels.display()
    );
    let trainer = RequesterId::new(a.trainer.as_str());
    let keys = a.connect.connect("client")?;
    let shards = u32::try_from(params.shards(train.len())).context("too many shards")?;
    // Reuse a dataset already in --out whose domains are still served (same data, parameters).
    let digest = source_digest(group.id().to_byte(), train, &labels, &params);
    let existing = a.out.join(cache_file_name(
        group.id().to_byte(),
        train.len(),
        params.shard_size,
        &digest,
    ));
    let domains =
        match cryptonn::coordinator::secure_training::encrypted_dataset::read_header(&existing) {
            Ok(h) if !a.reencrypt && h.source_digest == digest && h.params == params => h.domains,
            _ => keys
                .create_domains(
                    params.feip_params()?,
                    Some(params.febo_params()?),
                    shards,
                    true,
                    std::slice::from_ref(&trainer),
                )
                .with_context(|| format!("creating {shards} shard domains at {}", keys.peer()))?,
        };
    let pks = domains
        .iter()
        .map(|&d| keys.public_key(d))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("fetching public keys from {}", keys.peer()))?;
    println!(
        "client: {} images in {} shards (domains {}..={}) from {}",
        train.len(),
        shards,
        domains.first().map_or(0, |d| d.0),
        domains.last().map_or(0, |d| d.0),
        keys.peer()
    );
    let (path, reused) = encrypt_or_reuse(
        &group,
        &a.out,
        train,
        &labels,
        &pks,
        &params,
        a.reencrypt,
        &|_| {},
    )
    .with_context(|| format!("encrypting into {}", a.out.display()))?;
    finish(&keys, &trainer, &path, reused, start)
}

/// Reads the written dataset back and registers its label commitments at the authority.
fn finish(
    keys: &RemoteKeyService<Ristretto255>,
    trainer: &RequesterId,
    path: &Path,
    reused: bool,
    start: Instant,
) -> anyhow::Result<()> {
    let data = EncryptedDataset::load(Ristretto255, path)
        .with_context(|| format!("reading back {}", path.display()))?;
    let registered = register_label_commitments(&data, keys)
        .with_context(|| format!("registering FEBO commitments at {}", keys.peer()))?;
    println!(
        "{} {} ({:.1} s); {registered} new FEBO commitments registered for {trainer}",
        if reused { "reused" } else { "wrote" },
        path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
