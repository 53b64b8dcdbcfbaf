//! The messages of noisy key domains: the data owner's registration of its ciphertexts' `ct0`
//! under sample ids, the server's request for ciphertext-bound noisy keys, and the canonical
//! input of the noise PRF.

use serde::{Deserialize, Serialize};

use crate::coordinator::messages::{DomainId, FeipKeyRequest};
use crate::fe::feip::FeipParams;
use crate::fe::group::PrimeOrderGroup;
use crate::fe::noisy_key::NoisyKey;

/// The data owner's registration of ciphertexts in a noisy domain: each `ct0` (canonical
/// encoding) with the id of the sample it encrypts. The authority serves noisy keys only for
/// registered `ct0` values and charges each release to the registered sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoisyCiphertextRegistration {
    /// The key domain the ciphertexts were encrypted under.
    pub domain: DomainId,
    /// `(ct0, sample id)` pairs.
    pub ciphertexts: Vec<(Vec<u8>, u64)>,
}

/// One ciphertext of a [`NoisyKeyRequest`]: its `ct0` (never the `ct_i`) and the key vectors
/// (indices into the request's vectors) it needs keys for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoisyKeyItem {
    /// The canonical encoding of `ct0 = g^r`.
    pub ct0: Vec<u8>,
    /// Indices into [`NoisyKeyRequest::keys`]`.vectors`.
    pub vectors: Vec<u32>,
}

/// A request for noisy keys `K = ct0^{<s,y>} · g^{−e}` (see [`crate::fe::noisy_key`]): the key
/// vectors once, and per ciphertext the vectors it meets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoisyKeyRequest {
    /// The domain and the key vectors (validated as a plain FEIP request).
    pub keys: FeipKeyRequest,
    /// The ciphertexts.
    pub ciphertexts: Vec<NoisyKeyItem>,
}

/// The noisy keys of a [`NoisyKeyRequest`]: per ciphertext, one key per listed vector, in order.
#[derive(Debug, Clone)]
pub struct NoisyKeyResponse<G: PrimeOrderGroup> {
    /// The key domain.
    pub domain: DomainId,
    /// The domain's FEIP parameters.
    pub params: FeipParams,
    /// `keys[c][k]` for ciphertext `c` and its `k`-th vector.
    pub keys: Vec<Vec<NoisyKey<G>>>,
}

/// SHA-256 of a registered `ct0`'s canonical encoding, under the label
/// `"cryptonn/noisy-ct0/v1"`: what the authority keeps of a registered ciphertext.
#[must_use]
pub fn ct0_digest(ct0: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"cryptonn/noisy-ct0/v1");
    h.update(ct0);
    h.finalize().into()
}

/// The input of the noise PRF for sample `sample` and the key vector `y` (sparse terms):
/// `sample (u64 LE) ‖ SHA-256("cryptonn/noise-y/v1" ‖ (index u64 LE ‖ value i64 LE) for each
/// non-zero entry by increasing index)`. Dense, sparse and placement requests for the same `y`
/// give the same input, and so does anyone who forms `y` from the same weights (the quantised
/// reference run), so both draw the same noise.
#[must_use]
pub fn noise_input(sample: u64, terms: &[(usize, i64)]) -> [u8; 40] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"cryptonn/noise-y/v1");
    for &(i, v) in terms {
        if v != 0 {
            h.update((i as u64).to_le_bytes());
            h.update(v.to_le_bytes());
        }
    }
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&sample.to_le_bytes());
    out[8..].copy_from_slice(&h.finalize());
    out
}
