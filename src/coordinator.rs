//! The three parties of CryptoNN — authority, clients and server — the key service between
//! them, and what a server can learn.
//!
//! ```text
//!              public key                      function keys (policy, audit)
//!  Authority ─────────────▶ Client     Server ◀────────────────────────────── Authority
//!   (msk)                  encrypts X ───────▶ W·X = dlog(∏ ct^w / ct0^sk)     (KeyService)
//! ```
//!
//! - [`Authority`] ([`authority`]): Setup of independent key domains, key derivation, the
//!   [`AuditLog`] ([`audit`]) and a pluggable [`KeyPolicy`] ([`policy`]) whose default refuses
//!   low-weight key vectors and caps the rank of the issued vectors (refuse or rotate).
//! - [`Client`] ([`client`]): encodes and encrypts; sees only a [`DomainPublicKey`].
//! - [`Server`] ([`server`]): holds ciphertexts, public keys and function keys; computes
//!   [`secure matrix products`](matmul) and [`element-wise operations`](elementwise).
//! - [`KeyService`] ([`key_service`]): how the server reaches the authority;
//!   [`InProcessKeyService`] is the embedded default.
//! - [`decrypt`]: the server's one decryption path (`∏ b^t / ct0^sk`, then the bounded
//!   discrete log), shared by [`Server`] and secure training and prediction.
//! - [`placement`]: the compact key form of a convolution with pooling (a grid of coefficients
//!   over the boxes of a `C x H x W` input, placed at many origins), validated and expanded by
//!   the authority.
//! - [`leakage`]: reconstructs as much of an input as the keys a server holds determine.
//! - [`persistent`]: an authority whose domains, policy state and audit log survive a restart.
//! - `net` (feature `net`, on by default): the key service over gRPC + TLS, and its client.
//! - [`secure_training`]: LeNet-5's first layer trained over encrypted MNIST (per-shard key
//!   domains, the encrypted dataset, the secure first-layer backend).
//! - [`secure_prediction`]: a client's encrypted image classified by the trained model (a key
//!   domain per query).
//!
//! The protocol modules (authority, policy, audit, persistence, messages, placements, client,
//! server, key service and its transport) import neither [`crate::nn`] nor the training and
//! prediction modules, and name no dataset or model (see `docs/architecture.md`).
//!
//! Messages ([`messages`]) are plain data and never carry a master secret key. There is no path
//! from an [`EncryptedMatrix`] to plaintext other than function keys issued by the authority.

pub mod accountant;
pub mod audit;
pub mod authority;
pub mod client;
pub mod decrypt;
pub mod elementwise;
pub mod error;
pub mod key_service;
pub mod leakage;
mod linalg;
pub mod matmul;
pub mod messages;
#[cfg(feature = "net")]
pub mod net;
pub mod persistent;
pub mod placement;
pub mod policy;
pub mod secure_prediction;
pub mod secure_training;
pub mod server;

pub use audit::{
    read_audit_file, AuditConfig, AuditError, AuditFileOptions, AuditFileReader, AuditFileSink,
    AuditLog, AuditOutcome, AuditRecord, AuditSink, AuditedKey,
};
pub use authority::{Authority, DomainConfig, NoiseConfig};
pub use client::Client;
pub use elementwise::FeboEncryptedMatrix;
pub use error::{CoordinatorError, PolicyRefusal};
pub use key_service::{InProcessKeyService, KeyService, SharedAuthority};
pub use leakage::{reconstruct, Reconstruction};
pub use matmul::{EncryptedMatrix, FeipKeyBatch};
pub use messages::{
    DomainAccess, DomainId, DomainPublicKey, DomainStatus, FeboCommitmentRegistration, FeboKeyItem,
    FeboKeyRequest, FeboKeyResponse, FeipKeyRequest, FeipKeyResponse, KeyVectorData,
    NoisyCiphertextRegistration, NoisyKeyItem, NoisyKeyRequest, NoisyKeyResponse, RequesterId,
    SparseKeyVector,
};
pub use persistent::{
    PendingDomains, PersistentAuthority, PreparedDomains, RestoreReport, StateError, StateOptions,
};
pub use placement::{Placement, PlacementError, PlacementFrame, PlacementGrid, PlacementOrigin};
pub use policy::{DefaultPolicy, KeyPolicy, PolicyConfig, RankCap, RankCapAction, Verdict};
pub use server::Server;
