//! The key service over the network: gRPC (tonic + prost) with TLS (rustls, `ring` provider).
//!
//! ```text
//!  client ──(client token)── GetPublicKey, CreateDomains, ───┐
//!                            RegisterFeboCommitments         │
//!  server ──(server token)── GetPublicKey, IssueFeipKeys, ───┼──▶ AuthorityService ─▶ PersistentAuthority
//!                            IssueFeboKeys                   │      (policy, audit, journal)
//!  operator ─(operator token)─ GetPublicKey, CreateDomains, ──┘
//!                              ReadAuditLog, ListDomains (no function keys)
//! ```
//!
//! - [`proto`]: the messages and service generated from `proto/cryptonn.proto` (by a pure-Rust
//!   protobuf compiler at build time: no system `protoc`). Keys and public keys travel as the
//!   crate's [wire format](crate::fe::serialize) inside `bytes` fields.
//! - [`auth`]: roles and the operator-provisioned bearer tokens that carry them.
//! - [`convert`]: messages ↔ protobuf, and errors ↔ gRPC status. A policy refusal becomes
//!   `FAILED_PRECONDITION` with the reason in the message and, as JSON, in the status details,
//!   so that a [`RemoteKeyService`] returns the same [`CoordinatorError::Refused`] as the
//!   in-process service.
//! - [`service`]: the authority's gRPC server, [`serve`].
//! - [`remote`]: [`RemoteKeyService`], a blocking [`KeyService`] over a private tokio runtime
//!   that retries with backoff while the authority is unreachable (e.g. restarting).
//! - [`tls`]: certificate loading and generation (rcgen) for TLS and mutual TLS.
//! - [`loopback`]: [`LoopbackAuthority`], an authority served on 127.0.0.1 for experiments,
//!   benchmarks and tests.
//! - [`load`]: a load test of the key service on loopback (concurrent requesters, keys per
//!   second, latency percentiles), run by `examples/key_service_load` and `bench_report`.
//! - [`prediction`]: secure prediction over the network, served by the server process
//!   ([`PredictionService`], [`serve_predictions`]) and called by clients
//!   ([`RemotePredictor`]); `proto/prediction.proto`.
//!
//! # Security
//! Every RPC needs a bearer token (`authorization: Bearer …`); the token fixes the caller's
//! role and the name under which its requests are audited — the channel, not the request,
//! says who asks. Tokens are compared by their SHA-256 in constant time. Clients may only
//! fetch public keys, create the domains their data is encrypted under (naming the server(s)
//! allowed to use them) and register the FEBO commitments of their ciphertexts; only the servers
//! a domain names get its function keys, FEBO keys only for registered commitments (anything
//! else is `PERMISSION_DENIED`); only the operator reads the audit log, and it gets no function
//! keys. Tokens are secrets and must only travel over TLS: plaintext is refused unless both the
//! listening address and the client's URL are loopback, and a tokens file that group or others
//! may read is refused. With a client CA the authority also requires a client certificate
//! (mutual TLS). Decoding is bounded: every message is limited to
//! [`DEFAULT_MAX_MESSAGE_BYTES`] unless configured otherwise, and every payload is validated
//! as in-process requests are (bounds, dimensions, canonical encodings).
//!
//! [`KeyService`]: crate::coordinator::KeyService
//! [`CoordinatorError::Refused`]: crate::coordinator::CoordinatorError::Refused

pub mod auth;
mod channel;
pub mod codec;
pub mod convert;
pub mod gate;
pub mod load;
pub mod loopback;
pub mod prediction;
pub mod remote;
pub mod service;
pub mod tls;

/// The protobuf messages and the gRPC services of `proto/cryptonn.proto` and
/// `proto/prediction.proto` (generated).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod proto {
    tonic::include_proto!("cryptonn.v1");
}

pub use auth::{Caller, Role, TokenTable};
pub use channel::check_ca_pem;
pub use channel::DEFAULT_MAX_MESSAGE_BYTES;
pub use loopback::{LoopbackAuthority, LoopbackError};
pub use prediction::{
    open_remote_noisy_query_domain, open_remote_query_domain, serve_predictions, PredictionError,
    PredictionService, QueryInfo, RemotePrediction, RemotePredictor, PREDICTION_MAX_MESSAGE_BYTES,
};
pub use remote::{RemoteConfig, RemoteKeyService};
pub use service::{serve, AuthorityService, Listener, ServeConfig, ServeError, ServerTls};
pub use tls::{generate_pki, Pki};
