//! The connection options of every party that talks to the authority.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use cryptonn::coordinator::net::{RemoteConfig, RemoteKeyService, DEFAULT_MAX_MESSAGE_BYTES};
use cryptonn::coordinator::RequesterId;
use cryptonn::fe::group::ristretto::Ristretto255;

/// The group of the functional encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliGroup {
    /// Ristretto255 (~126-bit security, fast).
    Ristretto,
}

/// How to reach the authority.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The authority's URL, e.g. https://authority.example.org:7443.
    #[arg(long)]
    pub authority: String,
    /// The CA certificate (PEM) that signed the authority's certificate. Without it the
    /// connection is plaintext (allowed only for http:// URLs).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The name the authority's certificate is checked against [default: the URL's host].
    #[arg(long)]
    pub tls_name: Option<String>,
    /// Client certificate (PEM), for an authority that requires mutual TLS.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// File holding this party's bearer token [default: the CRYPTONN_TOKEN environment variable].
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Keep retrying this many seconds while the authority is unreachable.
    #[arg(long, default_value_t = 120)]
    pub retry_seconds: u64,
    /// Largest gRPC message sent or accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

impl ConnectArgs {
    /// The token: from `--token-file` or `CRYPTONN_TOKEN`.
    pub fn token(&self) -> anyhow::Result<String> {
        match &self.token_file {
            Some(p) => Ok(String::from_utf8(read(p)?)
                .with_context(|| format!("{} is not UTF-8", p.display()))?
                .trim()
                .to_string()),
            None => std::env::var("CRYPTONN_TOKEN")
                .context("no token: pass --token-file FILE or set CRYPTONN_TOKEN"),
        }
    }

    /// The client configuration.
    pub fn config(&self, name: &str) -> anyhow::Result<RemoteConfig> {
        let ca = self.ca.as_ref().map(read).transpose()?;
        if ca.is_none() && self.authority.starts_with("https://") {
            anyhow::bail!(
                "{} is https: pass --ca with the authority's CA certificate",
                self.authority
            );
        }
        if ca.is_some() && self.authority.starts_with("http://") {
            anyhow::bail!("--ca given but {} is plaintext http://", self.authority);
        }
        if let (Some(pem), Some(path)) = (&ca, &self.ca) {
            cryptonn::coordinator::net::check_ca_pem(pem)
                .map_err(|e| anyhow::anyhow!("--ca {}: {e}", path.display()))?;
        }
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        };
        Ok(RemoteConfig {
            url: self.authority.clone(),
            ca_pem: ca,
            tls_domain: self.tls_name.clone(),
            identity,
            token: self.token()?,
            requester: RequesterId::new(name),
            retry_for: Duration::from_secs(self.retry_seconds),
            max_message_bytes: self.max_message_bytes,
        })
    }

    /// A key-service client over Ristretto255.
    pub fn connect(&self, name: &str) -> anyhow::Result<RemoteKeyService<Ristretto255>> {
        RemoteKeyService::connect(Ristretto255, self.config(name)?)
            .with_context(|| format!("connecting to {}", self.authority))
    }
}
