//! `cryptonn server train … --serve ADDR`: after training, serve secure predictions with the
//! trained model until SIGTERM or Ctrl-C; `cryptonn server serve --model PATH --serve ADDR`:
//! the same with a saved model.
//!
//! Everything that can fail before serving (the tokens file, the TLS material, binding the
//! address) is checked before training starts, so that a typo does not cost a training run.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use cryptonn::coordinator::net::prediction::QueryRecord;
use cryptonn::coordinator::net::service::Listener;
use cryptonn::coordinator::net::{
    serve_predictions, PredictionService, RemoteKeyService, ServeConfig, ServerTls, TokenTable,
    PREDICTION_MAX_MESSAGE_BYTES,
};
use cryptonn::coordinator::secure_prediction::SecurePredictor;
use cryptonn::coordinator::DomainId;
use cryptonn::fe::group::ristretto::Ristretto255;

/// How long in-flight queries may finish after SIGTERM / Ctrl-C.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The prediction service's options of `server train`.
#[derive(Debug, Clone, Args)]
pub struct ServeOptions {
    /// Serve secure predictions on this address until SIGTERM or Ctrl-C: `server train` after
    /// training (and writing --json) with the trained model, `server serve` with the saved
    /// one (port 0: any free port; the bound address is printed as `serving predictions on
    /// ADDR`).
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<SocketAddr>,
    /// Tokens file of the parties allowed to ask for predictions (`client NAME TOKEN` lines, as
    /// written by `cryptonn authority token --role client`); required with --serve.
    #[arg(long, requires = "serve", value_name = "FILE")]
    pub serve_tokens: Option<PathBuf>,
    /// TLS certificate chain (PEM) of the prediction service.
    #[arg(long, requires_all = ["serve", "serve_tls_key"], value_name = "FILE")]
    pub serve_tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "serve_tls_cert", value_name = "FILE")]
    pub serve_tls_key: Option<PathBuf>,
    /// Serve predictions without TLS. Tokens then travel in the clear: loopback experiments
    /// only.
    #[arg(long, requires = "serve", conflicts_with = "serve_tls_cert")]
    pub serve_plaintext: bool,
    /// Largest gRPC message of the prediction service, in bytes (a query is about 25 KB).
    #[arg(long, default_value_t = PREDICTION_MAX_MESSAGE_BYTES, value_name = "BYTES")]
    pub serve_max_message_bytes: usize,
}

/// The checked options and the bound socket, ready to serve once the model is trained.
pub struct Prepared {
    listener: Listener,
    addr: SocketAddr,
    tokens: TokenTable,
    config: ServeConfig,
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

impl ServeOptions {
    /// Reads the tokens and TLS material and binds the address (None without --serve).
    pub fn prepare(&self) -> anyhow::Result<Option<Prepared>> {
        let Some(addr) = self.serve else {
            return Ok(None);
        };
        let tls = match (&self.serve_tls_cert, &self.serve_tls_key) {
            (Some(c), Some(k)) => Some(ServerTls {
                cert_pem: read(c)?,
                key_pem: read(k)?,
                client_ca_pem: None,
            }),
            _ if self.serve_plaintext => None,
            _ => anyhow::bail!(
                "--serve needs --serve-tls-cert and --serve-tls-key (or --serve-plaintext for \
                 loopback tests)"
            ),
        };
        let path = self
            .serve_tokens
            .as_ref()
            .context("--serve needs --serve-tokens FILE (the clients allowed to predict)")?;
        let tokens = TokenTable::from_file(path)?;
        if tokens.is_empty() {
            anyhow::bail!(
                "{}: no token provisioned; every prediction would be refused",
                path.display()
            );
        }
        let listener = Listener::bind(addr)?;
        let addr = listener.local_addr()?;
        Ok(Some(Prepared {
            listener,
            addr,
            tokens,
            config: ServeConfig {
                tls,
                max_message_bytes: self.serve_max_message_bytes,
            },
        }))
    }
}

fn log_query(r: &QueryRecord) {
    match &r.outcome {
        Ok(class) => println!(
            "prediction: {} -> class {class} (trained label space), {:.3} s (keys {:.3} s)",
            r.domain, r.server_seconds, r.key_seconds
        ),
        Err(e) => println!(
            "prediction: {} failed after {:.3} s: {e}",
            r.domain, r.server_seconds
        ),
    }
    let _ = std::io::stdout().flush();
}

impl Prepared {
    /// Serves `predictor` until SIGTERM or Ctrl-C. `authority` is published to clients;
    /// queries naming one of `training_domains` are refused.
    pub fn run(
        self,
        predictor: SecurePredictor<Ristretto255, RemoteKeyService<Ristretto255>>,
        authority: &str,
        training_domains: Vec<DomainId>,
    ) -> anyhow::Result<()> {
        let sha = predictor.model().weights_sha256();
        let tokens = self.tokens.len();
        let service = PredictionService::start(
            predictor,
            Arc::new(self.tokens),
            authority,
            Some(Box::new(log_query)),
        )?
        .refuse_domains(training_domains);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        let mode = if self.config.tls.is_some() {
            "TLS"
        } else {
            "PLAINTEXT (loopback only)"
        };
        runtime.block_on(async move {
            // Handlers first: a signal right after the address is printed must stop cleanly.
            let shutdown = shutdown_signal()?;
            println!("server: model {sha}; {tokens} prediction tokens; {mode}");
            // Tests and scripts read the bound address from this line.
            println!("serving predictions on {}", self.addr);
            std::io::stdout()
                .flush()
                .context("writing to standard output")?;
            let signalled = Arc::new(tokio::sync::Notify::new());
            let notify = Arc::clone(&signalled);
            let shutdown = async move {
                shutdown.await;
                eprintln!("server: shutting down");
                notify.notify_one();
            };
            let serving = serve_predictions(service, self.listener, self.config, shutdown);
            tokio::pin!(serving);
            // Graceful shutdown waits for open connections; idle clients may keep theirs.
            tokio::select! {
                r = &mut serving => r?,
                () = async {
                    signalled.notified().await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } => eprintln!(
                    "server: connections still open {} s after the signal; closing them",
                    SHUTDOWN_GRACE.as_secs()
                ),
            }
            anyhow::Ok(())
        })
    }
}

/// A future that completes at SIGTERM or SIGINT (Ctrl-C); the handlers are installed now.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// A future that completes at Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
