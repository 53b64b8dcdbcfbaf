//! `cryptonn`: the parties of CryptoNN as separate processes.
//!
//! ```sh
//! cryptonn certs --out pki --host authority.example.org --host 127.0.0.1
//! cryptonn authority token --tokens tokens --role server --name server-1 > server.token
//! cryptonn authority serve --listen 0.0.0.0:7443 --state state --tokens tokens \
//!     --tls-cert pki/authority.pem --tls-key pki/authority.key
//! cryptonn client encrypt --authority https://authority.example.org:7443 --ca pki/ca.pem \
//!     --token-file client.token --data data/ --out enc/ --train-size 2048
//! cryptonn server train --authority https://authority.example.org:7443 --ca pki/ca.pem \
//!     --token-file server.token --data enc/ --epochs 2
//! cryptonn server train … --serve 0.0.0.0:7444 --serve-tokens predict-tokens \
//!     --serve-tls-cert pki/trainer.pem --serve-tls-key pki/trainer.key
//! cryptonn client predict --authority https://authority.example.org:7443 --ca pki/ca.pem \
//!     --token-file client.token --server https://trainer.example.org:7444 \
//!     --server-ca pki/ca.pem --server-token-file predict.token digit.pgm
//! cryptonn server train … --save model.safetensors --checkpoint-every 1   # or --resume model.safetensors
//! cryptonn server serve --model model.safetensors --data enc/ --authority … --serve 0.0.0.0:7444 …
//! cryptonn inspect enc/mnist-train-….cnnenc
//! cryptonn inspect model.safetensors
//! ```
//!
//! Exit codes: 0 success, 1 runtime failure (the message names the file or peer at fault),
//! 2 usage error (clap).

mod authority_cmd;
mod client_cmd;
mod connect;
mod inspect;
mod predict_cmd;
mod query_image;
mod serve_predictions;
mod server_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// CryptoNN's parties — authority, data owner (client) and server — as separate processes
/// talking gRPC over TLS.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Command {
    /// The key authority: serve keys, provision tokens.
    #[command(subcommand)]
    Authority(authority_cmd::AuthorityCommand),
    /// The data owner: encrypt a training set under the authority's public keys; ask a server
    /// for a secure prediction.
    #[command(subcommand)]
    Client(client_cmd::ClientCommand),
    /// The server: train on an encrypted dataset with keys from the authority, then serve
    /// secure predictions.
    #[command(subcommand)]
    Server(server_cmd::ServerCommand),
    /// Make a private CA, the authority's certificate and client certificates (PEM).
    Certs(authority_cmd::CertsArgs),
    /// Describe a key, ciphertext, encrypted dataset, audit log, state file or saved model
    /// without revealing secrets (verifying it; non-zero exit if it fails).
    Inspect(inspect::InspectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Authority(c) => authority_cmd::run(c),
        Command::Client(c) => client_cmd::run(c),
        Command::Server(c) => server_cmd::run(c),
        Command::Certs(a) => authority_cmd::certs(a),
        Command::Inspect(a) => inspect::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
