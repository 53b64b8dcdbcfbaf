//! `cryptonn client …`: the data owner.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use cryptonn::coordinator::secure_training::encrypted_dataset::{cache_file_name, source_digest};
use cryptonn::coordinator::secure_training::{encrypt_or_reuse, EncryptionParams};
use cryptonn::coordinator::KeyService;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{default_data_dir, LabelPermutation, Mnist};

use crate::connect::ConnectArgs;
use cryptonn::cli::EncodingOptions;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Encrypt the first --train-size MNIST training images (and labels) shard by shard, under
    /// fresh per-shard key domains of the authority, into one dataset file in --out.
    Encrypt(EncryptArgs),
    /// Classify one image with a server's trained model without showing it the image in the
    /// clear: open a fresh query domain at the authority, encrypt the image under it, send it
    /// to the server (`server train --serve`) and map the class back through the label
    /// permutation of --seed.
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
    let labels = LabelPermutation::from_seed(a.encoding.seed, cryptonn::nn::data::CLASSES);
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
    println!(
        "{} {} ({:.1} s)",
        if reused { "reused" } else { "wrote" },
        path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
