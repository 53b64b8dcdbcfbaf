//! Error types of the coordinator: what a party is told when a request cannot be served.

use thiserror::Error;

use crate::coordinator::messages::DomainId;
pub use crate::coordinator::policy::PolicyRefusal;
use crate::fe::error::{DlogError, EncodingError, FeError};

/// Why a coordinator operation (key request, encryption, secure product) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// No key domain with this id exists.
    #[error("unknown key domain {0}")]
    UnknownDomain(DomainId),
    /// The domain was rotated: its master secret key no longer issues function keys. Clients
    /// must re-encrypt under the successor domain's public key, and the server must request
    /// keys there.
    #[error("key domain {retired} was rotated; re-encrypt under its successor {successor}")]
    DomainRotated {
        /// The domain that no longer issues keys.
        retired: DomainId,
        /// The fresh domain that replaced it.
        successor: DomainId,
    },
    /// The domain blurs its values ([`Authority::make_noisy`](crate::coordinator::Authority::make_noisy)):
    /// it issues only ciphertext-bound noisy keys, never plain function keys (which would
    /// reveal the noise).
    #[error("key domain {0} is noisy: it issues only ciphertext-bound noisy keys")]
    NoisyDomain(DomainId),
    /// Noisy keys were asked of a domain that does not blur its values.
    #[error("key domain {0} is not noisy")]
    NotNoisy(DomainId),
    /// A noisy key was asked for a ciphertext (`ct0`) its data owner did not register.
    #[error(
        "noisy key request item {index}: the ciphertext is not registered in key domain {domain}"
    )]
    UnregisteredCiphertext {
        /// The domain.
        domain: DomainId,
        /// Position of the item in the request.
        index: usize,
    },
    /// The request would take a sample's privacy loss beyond the configured budget; no key of
    /// the batch was issued and nothing was charged.
    #[error(
        "privacy budget exhausted in key domain {domain}: sample {sample} would reach \
         epsilon {epsilon:.3} ({granularity}, delta {delta:e}), the budget is {budget}"
    )]
    PrivacyBudgetExceeded {
        /// The domain.
        domain: DomainId,
        /// The first sample beyond the budget.
        sample: u64,
        /// Its epsilon after the refused request.
        epsilon: f64,
        /// The budget's epsilon.
        budget: f64,
        /// The budget's delta.
        delta: f64,
        /// The budget's granularity.
        granularity: crate::coordinator::accountant::Granularity,
    },
    /// The key service does not offer this request (e.g. noisy keys over a transport that does
    /// not carry them yet).
    #[error("the key service does not support {0}")]
    Unsupported(&'static str),
    /// The domain was closed by the operator (its master secret key is erased).
    #[error("key domain {0} is closed")]
    DomainClosed(DomainId),
    /// The policy refused the request. No key of the batch was issued.
    #[error("key request refused (vector {index} of the batch, domain {domain}): {reason}")]
    Refused {
        /// The domain the request was for.
        domain: DomainId,
        /// Position of the refused vector in the request's batch.
        index: usize,
        /// Why.
        reason: PolicyRefusal,
    },
    /// The requester is not one the domain was bound to at its creation (see
    /// [`DomainAccess`](crate::coordinator::DomainAccess)); over gRPC this is
    /// `PERMISSION_DENIED`.
    #[error("{requester} may not {action} in key domain {domain}")]
    NotPermitted {
        /// The domain.
        domain: DomainId,
        /// Who asked.
        requester: crate::coordinator::messages::RequesterId,
        /// What it asked for ("request function keys", "register FEBO commitments").
        action: &'static str,
    },
    /// A FEBO key was asked for a commitment that the domain's data owner did not register:
    /// FEBO keys are issued only for ciphertexts the data owner produced in that domain.
    #[error(
        "FEBO key request item {index}: the commitment is not registered in key domain {domain}"
    )]
    UnregisteredCommitment {
        /// The domain.
        domain: DomainId,
        /// Position of the item in the request.
        index: usize,
    },
    /// The domain has no FEBO key (it was created without FEBO parameters).
    #[error("key domain {0} has no FEBO key")]
    FeboDisabled(DomainId),
    /// Keys and ciphertexts belong to different domains.
    #[error("domain mismatch: expected {expected}, got {got}")]
    DomainMismatch {
        /// The domain of the ciphertexts.
        expected: DomainId,
        /// The domain of the keys or parameters.
        got: DomainId,
    },
    /// Two shapes that must agree do not.
    #[error("shape mismatch ({what}): expected {expected}, got {got}")]
    ShapeMismatch {
        /// Which dimension.
        what: &'static str,
        /// The size required.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// A request carries no key vector, or a matrix has no entries.
    #[error("empty input: {0}")]
    Empty(&'static str),
    /// A decrypted product lies outside the range the server's discrete-log solver searches.
    #[error("product at ({row}, {column}) lies outside the discrete-log range |z| <= {bound}")]
    ProductOutOfRange {
        /// Row of the output entry.
        row: usize,
        /// Column of the output entry.
        column: usize,
        /// The bound searched.
        bound: u64,
    },
    /// A FEBO key or result concerns another element than the one it was applied to.
    #[error("invalid FEBO element request at index {index}: {reason}")]
    InvalidFeboRequest {
        /// Position in the request.
        index: usize,
        /// Why.
        reason: &'static str,
    },
    /// The authority behind an in-process key service panicked while holding its lock.
    #[error("the authority is unavailable (its lock is poisoned)")]
    AuthorityUnavailable,
    /// A networked key service failed: the authority could not be reached (after the client's
    /// retries), refused the credentials, or answered with an error that has no typed form
    /// here. `code` is the gRPC status code's name.
    #[error("key service {peer}: {code}: {message}")]
    Remote {
        /// The authority's address.
        peer: String,
        /// The gRPC status code, e.g. `Unauthenticated`, `PermissionDenied`, `Unavailable`.
        code: String,
        /// The authority's (or the transport's) message.
        message: String,
    },
    /// A policy or analysis configuration is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The observations given to the leakage analysis contradict each other (no `x` satisfies
    /// them all).
    #[error("inconsistent observations: no input satisfies all inner products")]
    InconsistentObservations,
    /// The audit log could not record a key; the key was not handed out.
    #[error(transparent)]
    Audit(#[from] crate::coordinator::audit::AuditError),
    /// A malformed placement key vector (frame, grid, origin, expansion cap).
    #[error(transparent)]
    Placement(#[from] crate::coordinator::placement::PlacementError),
    /// A functional-encryption failure (bounds, dimensions, encodings).
    #[error(transparent)]
    Fe(#[from] FeError),
    /// A fixed-point encoding failure (NaN, infinity, out of range).
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// A discrete-log configuration failure.
    #[error(transparent)]
    Dlog(#[from] DlogError),
}
