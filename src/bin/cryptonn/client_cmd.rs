//! `cryptonn client …`: the data owner.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use cryptonn::coordinator::persistent::SEED_FILE;
use cryptonn::coordinator::secure_training::encrypted_dataset::{cache_file_name, source_digest};
use cryptonn::coordinator::secure_training::{
    encrypt_or_reuse, register_label_commitments, EncryptedDataset, EncryptionParams,
};
use cryptonn::coordinator::{KeyService, RequesterId};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{default_data_dir, LabelPermutation, Mnist, CLASSES};

use crate::connect::ConnectArgs;
use cryptonn::cli::EncodingOptions;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Encrypt the first --train-size MNIST training images (and labels) shard by shard, under
    /// fresh per-shard key domains of the authority, into one dataset file in --out.
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
    /// Directory holding the MNIST IDX files.
    #[arg(long, default_value_os_t = default_data_dir())]
    data: PathBuf,
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
    let group = Ristretto255;
    let train_size = a.encoding.train_size.unwrap_or(2048);
    let mnist = Mnist::load(&a.data)?;
    let train = mnist.train.take(train_size, "training")?;
    let params: EncryptionParams = a.encoding.encryption_params();
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
    let digest = source_digest(group.id().to_byte(), &train, &labels, &params);
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
        &train,
        &labels,
        &pks,
        &params,
        a.reencrypt,
        &|_| {},
    )
    .with_context(|| format!("encrypting into {}", a.out.display()))?;
    let data = EncryptedDataset::load(group, &path)
        .with_context(|| format!("reading back {}", path.display()))?;
    let registered = register_label_commitments(&data, &keys)
        .with_context(|| format!("registering FEBO commitments at {}", keys.peer()))?;
    println!(
        "{} {} ({:.1} s); {registered} new FEBO commitments registered for {trainer}",
        if reused { "reused" } else { "wrote" },
        path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
