//! Errors of secure training.

use std::path::PathBuf;

use thiserror::Error;

use crate::coordinator::error::CoordinatorError;
use crate::coordinator::messages::DomainId;
use crate::fe::error::FeError;
use crate::nn::error::NnError;

/// Why encrypting, loading or training on an encrypted dataset failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SecureTrainingError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a complete, intact encrypted dataset.
    #[error(
        "{path}: not a valid encrypted dataset: {reason} (delete it; the data owner encrypts it \
         again)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The files of a directory of dataset parts do not make up one dataset: a shard is
    /// missing or held twice, a part belongs to another encryption, or a lone part was given
    /// where the whole dataset is needed.
    #[error("{dir}: the dataset parts do not make up one dataset: {reason}")]
    Parts {
        /// The directory (or the lone part).
        dir: PathBuf,
        /// What is wrong, naming the files.
        reason: String,
    },
    /// The dataset was encrypted over another group.
    #[error("encrypted dataset is over group {found}, expected {expected}")]
    GroupMismatch {
        /// The group byte expected.
        expected: u8,
        /// The group byte found.
        found: u8,
    },
    /// The dataset's shard was encrypted under a public key the authority does not have for
    /// that domain (another authority, another key, or a wrong domain id).
    #[error(
        "shard {shard} was encrypted under another key than the authority's {domain} \
         (dataset of another authority or domain; the data owner must encrypt it again)"
    )]
    WrongKey {
        /// The shard.
        shard: usize,
        /// The domain the header names.
        domain: DomainId,
    },
    /// Parameters do not fit together.
    #[error("invalid parameters: {0}")]
    Parameters(String),
    /// A mini-batch is not exactly one shard of the encrypted dataset.
    #[error(
        "mini-batch does not lie within one shard (shard size {shard_size}); secure training \
         needs BatchSchedule::FixedShards with batch size = shard size"
    )]
    BatchSpansShards {
        /// The dataset's shard size.
        shard_size: usize,
    },
    /// A decrypted value lies outside the discrete-log range `|value| <= bound` (the search
    /// covers exactly the encoding's bound): either the model diverged, or the ciphertext is
    /// not what the data owner encrypted; `hint` names which.
    #[error(
        "{layer}: a decrypted value lies beyond the bound {bound} (no wrong value is \
         returned): {hint}"
    )]
    DlogOutOfRange {
        /// The layer and quantity.
        layer: &'static str,
        /// The bound.
        bound: u64,
        /// The cause, and what to change.
        hint: &'static str,
    },
    /// The key service or authority refused or failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// A functional-encryption operation failed (bounds, malformed ciphertext).
    #[error(transparent)]
    Fe(#[from] FeError),
    /// A quantisation bound or shape check of the integer first layer failed (the same checks
    /// as the quantised backend's).
    #[error(transparent)]
    Nn(NnError),
}

impl From<SecureTrainingError> for NnError {
    fn from(e: SecureTrainingError) -> Self {
        match e {
            // A bound check fails alike in both backends: keep its type.
            SecureTrainingError::Nn(inner) => inner,
            e => NnError::Backend(Box::new(e)),
        }
    }
}

impl From<NnError> for SecureTrainingError {
    fn from(e: NnError) -> Self {
        match e {
            NnError::Backend(b) => match b.downcast::<SecureTrainingError>() {
                Ok(inner) => *inner,
                Err(b) => SecureTrainingError::Nn(NnError::Backend(b)),
            },
            e => SecureTrainingError::Nn(e),
        }
    }
}
