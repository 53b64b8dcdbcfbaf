//! `cryptonn client predict`: one secure prediction over the network.
//!
//! 1. `GetQueryParams` from the server: the pixel encoding its model was trained with.
//! 2. A fresh query domain at the authority (`CreateDomains`, client token) and its public key.
//! 3. The image, encoded and encrypted under that key, to the server's `Predict`.
//! 4. The class the server answers is in the permuted label space of training; the client maps
//!    it back with `π⁻¹` of `--seed` (the seed given to `client encrypt`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{ArgGroup, Args};
use cryptonn::coordinator::net::{
    open_remote_noisy_query_domain, RemoteConfig, RemotePredictor, PREDICTION_MAX_MESSAGE_BYTES,
};
use cryptonn::coordinator::secure_prediction::EncryptedQuery;
use cryptonn::coordinator::RequesterId;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{default_data_dir, LabelPermutation, Mnist};

use crate::connect::ConnectArgs;
use crate::query_image::read_image;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("input").required(true).args(["image", "mnist_test"])))]
pub struct PredictArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The prediction server's URL (`server train --serve`), e.g.
    /// https://trainer.example.org:7444.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The CA certificate (PEM) that signed the server's certificate (required for https://).
    #[arg(long, value_name = "FILE")]
    server_ca: Option<PathBuf>,
    /// The name the server's certificate is checked against [default: the URL's host].
    #[arg(long, value_name = "NAME")]
    server_tls_name: Option<String>,
    /// File holding this client's token for the prediction server [default: the
    /// CRYPTONN_SERVER_TOKEN environment variable].
    #[arg(long, value_name = "FILE")]
    server_token_file: Option<PathBuf>,
    /// The image: a 28x28 PGM file (binary P5 or ASCII P2, maxval 255) or a raw file of 784
    /// bytes (row-major, 0 background, 255 ink, as in MNIST).
    image: Option<PathBuf>,
    /// Instead of IMAGE: image INDEX (0-based) of the MNIST test set in --data; the true label
    /// is then printed too.
    #[arg(long, value_name = "INDEX")]
    mnist_test: Option<usize>,
    /// Directory holding the MNIST IDX files (for --mnist-test).
    #[arg(long, default_value_os_t = default_data_dir())]
    data: PathBuf,
    /// The data owner's label permutation file (the --labels of `client encrypt`), to map the
    /// server's class back to a true label. It never leaves this machine.
    #[arg(long, value_name = "FILE")]
    labels: PathBuf,
    /// The prediction server's name at the authority (the name its token was provisioned
    /// for): the only party the query domain will issue keys to.
    #[arg(long, value_name = "NAME", default_value = "server")]
    server_name: String,
    /// Write a JSON summary (class, probabilities, domain, seconds, …) to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write the encrypted query, exactly the bytes sent to the server, to this file
    /// (`cryptonn inspect FILE` describes it).
    #[arg(long, value_name = "FILE")]
    save_query: Option<PathBuf>,
    /// Open the query domain noisy (docs/noisy-keys.md): the server classifies the image from
    /// its first-layer values blurred by discrete Gaussian noise of this standard deviation
    /// (in encoded units, to 1/1000), and the authority charges the query's releases to its
    /// privacy ledger. 0: exact values.
    #[arg(long, default_value_t = 0.0, value_parser = cryptonn::cli::noise_sigma)]
    noise_sigma: f64,
}

impl PredictArgs {
    fn server_config(&self) -> anyhow::Result<RemoteConfig> {
        let ca = self
            .server_ca
            .as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .transpose()?;
        if ca.is_none() && self.server.starts_with("https://") {
            anyhow::bail!(
                "{} is https: pass --server-ca with the server's CA certificate",
                self.server
            );
        }
        if ca.is_some() && self.server.starts_with("http://") {
            anyhow::bail!("--server-ca given but {} is plaintext http://", self.server);
        }
        let token = match &self.server_token_file {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_string(),
            None => std::env::var("CRYPTONN_SERVER_TOKEN").context(
                "no token for the prediction server: pass --server-token-file FILE or set \
                 CRYPTONN_SERVER_TOKEN",
            )?,
        };
        let mut config = RemoteConfig::new(&self.server, token, ca);
        config.tls_domain = self.server_tls_name.clone();
        config.retry_for = std::time::Duration::from_secs(self.connect.retry_seconds);
        config.max_message_bytes = PREDICTION_MAX_MESSAGE_BYTES;
        Ok(config)
    }

    /// The pixels, a description of where they come from, and the true label if known.
    fn image(&self) -> anyhow::Result<(Vec<u8>, String, Option<u8>)> {
        if let Some(i) = self.mnist_test {
            let mnist = Mnist::load(&self.data)?;
            let n = mnist.test.len();
            if i >= n {
                anyhow::bail!(
                    "--mnist-test {i}: the test set in {} has {n} images",
                    self.data.display()
                );
            }
            let test = mnist.test.take(i + 1, "test")?;
            return Ok((
                test.image(i).to_vec(),
                format!("MNIST test image {i}"),
                Some(test.label(i)),
            ));
        }
        let path = self.image.as_ref().context("pass IMAGE or --mnist-test")?;
        Ok((read_image(path)?, path.display().to_string(), None))
    }
}

pub fn predict(a: &PredictArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let group = Ristretto255;
    let (image, source, label) = a.image()?;
    let labels = LabelPermutation::read_file(&a.labels)?;

    let server = RemotePredictor::connect(group, a.server_config()?)?;
    let info = server
        .query_info()
        .with_context(|| format!("asking {} for its query parameters", a.server))?;
    if info.authority != a.connect.authority {
        eprintln!(
            "note: the server takes its keys from {}; this client opens its query domain at {} \
             (they must be the same authority)",
            info.authority, a.connect.authority
        );
    }

    let t = Instant::now();
    let authority = a.connect.connect("client")?;
    let sigma = cryptonn::cli::noise_of(a.noise_sigma);
    let pk = open_remote_noisy_query_domain(
        &authority,
        &info.params,
        &RequesterId::new(a.server_name.as_str()),
        sigma,
    )
    .with_context(|| format!("opening a query domain at {}", authority.peer()))?;
    let domain_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let query = EncryptedQuery::encrypt(&group, &pk, &info.params, &image, &mut rand_core::OsRng)
        .with_context(|| format!("encrypting {source}"))?;
    let encoded = query.to_bytes(&group);
    let query_bytes = encoded.len();
    let encrypt_seconds = t.elapsed().as_secs_f64();
    if let Some(path) = &a.save_query {
        std::fs::write(path, &encoded).with_context(|| format!("writing {}", path.display()))?;
    }

    if sigma.is_some() {
        query
            .register_noisy(&group, &authority)
            .with_context(|| format!("registering the query at {}", authority.peer()))?;
    }

    let t = Instant::now();
    let answer = if sigma.is_some() {
        server.predict_noisy(&query)
    } else {
        server.predict(&query)
    }
    .with_context(|| format!("secure prediction of {source}"))?;
    let rpc_seconds = t.elapsed().as_secs_f64();
    let seconds = start.elapsed().as_secs_f64();

    // Back to true labels: class c was trained as π(c).
    let trained = &answer.prediction;
    let class = labels.invert(trained.class);
    let probabilities: Vec<f32> = (0..10u8)
        .map(|c| trained.probabilities[usize::from(labels.apply(c))])
        .collect();
    println!(
        "client: {source} as query {} ({} bytes) to {} (model {})",
        answer.domain,
        query_bytes,
        a.server,
        &info.weights_sha256[..info.weights_sha256.len().min(16)]
    );
    println!(
        "class {class} (p = {:.4}){}; total {seconds:.3} s: query domain {domain_seconds:.3} s, \
         encryption {encrypt_seconds:.3} s, prediction {rpc_seconds:.3} s (server \
         {:.3} s, of which keys {:.3} s)",
        probabilities[usize::from(class)],
        label.map_or(String::new(), |l| format!(", true label {l}")),
        answer.server_seconds,
        answer.key_seconds
    );
    if let Some(path) = &a.json {
        let value = serde_json::json!({
            "class": class,
            "probabilities": probabilities,
            "trained_class": trained.class,
            "label": label,
            "image": source,
            "domain": answer.domain.0,
            "seconds": seconds,
            "domain_seconds": domain_seconds,
            "encrypt_seconds": encrypt_seconds,
            "predict_seconds": rpc_seconds,
            "server_seconds": answer.server_seconds,
            "key_seconds": answer.key_seconds,
            "query_bytes": query_bytes,
            "server": a.server,
            "authority": a.connect.authority,
            "weights_sha256": info.weights_sha256,
            "noise_sigma": a.noise_sigma,
        });
        let text = serde_json::to_string_pretty(&value)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
