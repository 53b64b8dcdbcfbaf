//! The data owner registers its encrypted dataset's FEBO commitments with the authority.
//!
//! The authority issues a FEBO key only for a commitment `g^r` that the owner of its domain
//! registered (see [`Authority::issue_febo_keys`](crate::coordinator::Authority::issue_febo_keys)):
//! otherwise a FEBO key request would be a Diffie–Hellman oracle `cmt ↦ cmt^s` on any element.
//! [`register_label_commitments`] registers, shard by shard, the commitments of every label
//! ciphertext of a dataset file: the commitment list the file itself holds, so the same call
//! serves a freshly encrypted file and one reused from a cache (registering twice is harmless).

use crate::coordinator::key_service::KeyService;
use crate::coordinator::messages::FeboCommitmentRegistration;
use crate::coordinator::secure_training::encrypted_dataset::EncryptedDataset;
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::fe::group::PrimeOrderGroup;

/// Registers the commitments of every FEBO label ciphertext of `data`, one request per shard
/// domain, through `owner` (the key service of the domains' owner, the data owner). Returns the
/// number of commitments newly registered.
///
/// # Errors
/// [`SecureTrainingError::Fe`] for an invalid element in the file; the authority's refusal
/// ([`CoordinatorError::NotPermitted`](crate::coordinator::CoordinatorError::NotPermitted) for
/// a party that does not own the domains) or a transport error.
pub fn register_label_commitments<G: PrimeOrderGroup, K: KeyService<G> + ?Sized>(
    data: &EncryptedDataset<G>,
    owner: &K,
) -> Result<usize, SecureTrainingError> {
    let header = data.header();
    let group = data.group();
    let mut total = 0;
    for (s, &domain) in header.domains.iter().enumerate() {
        let first = s * header.params.shard_size;
        let last = (first + header.params.shard_size).min(data.len());
        let mut commitments = Vec::with_capacity((last - first) * 10);
        for i in first..last {
            for c in data.label_ciphertexts(i)? {
                commitments.push(group.element_to_bytes(c.commitment()));
            }
        }
        if commitments.is_empty() {
            continue;
        }
        total += owner.register_febo_commitments(&FeboCommitmentRegistration {
            domain,
            commitments,
        })?;
    }
    Ok(total)
}
