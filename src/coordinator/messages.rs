//! The plain-data messages exchanged between the roles: identifiers, key-vector requests and
//! the responses that carry public keys and function keys.
//!
//! No message carries a master secret key. Requests are serde-serialisable as they stand (a
//! networked key service sends them as they are); responses carry group elements and scalars,
//! which a transport encodes with the group's canonical byte encodings.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::coordinator::placement::{Placement, PlacementError, MAX_EXPANSION};
use crate::fe::error::FeError;
use crate::fe::febo::{FeboFunctionKey, FeboOp, FeboParams, FeboPublicKey};
use crate::fe::feip::{FeipParams, FunctionKey, KeyVector, MasterPublicKey};
use crate::fe::group::PrimeOrderGroup;

mod noisy;

pub use noisy::{
    ct0_digest, noise_input, NoisyCiphertextRegistration, NoisyKeyItem, NoisyKeyRequest,
    NoisyKeyResponse,
};

/// The identifier of a key domain: one FEIP (and optionally FEBO) master key pair with its own
/// bounds, policy state and audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DomainId(pub u64);

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain-{}", self.0)
    }
}

/// Who asks for keys (a server's name), as recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequesterId(pub String);

impl RequesterId {
    /// A requester id from a name.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
}

impl fmt::Display for RequesterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key vector `y` as sent in a request: dense (all `n` entries), sparse (`(index, value)`
/// pairs with strictly increasing indices, absent entries zero), or a [`Placement`]: a grid of
/// coefficients over the boxes of a `C x H x W` input (`n = C·H·W`), placed at one origin.
/// Convolution keys have a few dozen non-zeros out of ~1000 entries, so sparse is their compact
/// input form; a placement shares its coefficients between all the keys of one filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyVectorData {
    /// All `n` entries.
    Dense(Vec<i64>),
    /// The non-zero entries as `(index, value)`, indices strictly increasing.
    Sparse(Vec<(usize, i64)>),
    /// A shared grid at one origin; stands for the vector [`Placement::input_terms`].
    Placement(Placement),
}

impl KeyVectorData {
    /// The dense or sparse form of `y`, whichever is smaller.
    #[must_use]
    pub fn from_dense_compact(y: &[i64]) -> Self {
        let nnz = y.iter().filter(|&&v| v != 0).count();
        if 2 * nnz < y.len() {
            Self::Sparse(
                y.iter()
                    .enumerate()
                    .filter(|(_, &v)| v != 0)
                    .map(|(i, &v)| (i, v))
                    .collect(),
            )
        } else {
            Self::Dense(y.to_vec())
        }
    }

    /// The borrowed form used by [`crate::fe::feip`]; `None` for a placement, which has to be
    /// expanded first ([`into_expanded`](Self::into_expanded)).
    #[must_use]
    pub fn as_key_vector(&self) -> Option<KeyVector<'_>> {
        match self {
            Self::Dense(y) => Some(KeyVector::Dense(y)),
            Self::Sparse(t) => Some(KeyVector::Sparse(t)),
            Self::Placement(_) => None,
        }
    }

    /// The same vector in input form: a placement expanded to its sparse terms, dense and
    /// sparse vectors as they are.
    #[must_use]
    pub fn into_expanded(self) -> Self {
        match self {
            Self::Placement(p) => Self::Sparse(p.input_terms()),
            other => other,
        }
    }
}

/// A validated key vector in canonical sparse form: indices strictly increasing and `< n`,
/// values non-zero and within the domain's bound `Y`. This is what policies and the audit log
/// see; dense and sparse requests for the same `y` give the same `SparseKeyVector`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SparseKeyVector {
    n: usize,
    terms: Vec<(usize, i64)>,
}

impl SparseKeyVector {
    /// Validates `data` against the dimension `n` and bound `y_bound`.
    ///
    /// # Errors
    /// [`FeError::DimensionMismatch`] for a dense vector of the wrong length or a placement
    /// whose input length `C·H·W` is not `n`, [`FeError::InvalidSparseIndex`] for an index
    /// `>= n` or out of order,
    /// [`FeError::KeyOutOfBound`] for an entry with `|y_i| > y_bound`.
    pub fn from_data(data: &KeyVectorData, n: usize, y_bound: u64) -> Result<Self, FeError> {
        let check = |index: usize, value: i64| {
            if value.unsigned_abs() > y_bound {
                Err(FeError::KeyOutOfBound {
                    index,
                    value,
                    bound: y_bound,
                })
            } else {
                Ok(())
            }
        };
        let terms = match data {
            KeyVectorData::Dense(y) => {
                if y.len() != n {
                    return Err(FeError::DimensionMismatch {
                        expected: n,
                        got: y.len(),
                    });
                }
                let mut terms = Vec::new();
                for (i, &v) in y.iter().enumerate() {
                    check(i, v)?;
                    if v != 0 {
                        terms.push((i, v));
                    }
                }
                terms
            }
            KeyVectorData::Sparse(t) => {
                let mut prev: Option<usize> = None;
                let mut terms = Vec::with_capacity(t.len());
                for &(i, v) in t {
                    if i >= n || prev.is_some_and(|p| i <= p) {
                        return Err(FeError::InvalidSparseIndex { index: i, n });
                    }
                    prev = Some(i);
                    check(i, v)?;
                    if v != 0 {
                        terms.push((i, v));
                    }
                }
                terms
            }
            KeyVectorData::Placement(p) => {
                if p.dim() != n {
                    return Err(FeError::DimensionMismatch {
                        expected: n,
                        got: p.dim(),
                    });
                }
                let terms = p.input_terms();
                for &(i, v) in &terms {
                    check(i, v)?;
                }
                terms
            }
        };
        Ok(Self { n, terms })
    }

    /// The dimension `n`.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.n
    }
    /// The non-zero entries `(index, value)`, indices strictly increasing.
    #[must_use]
    pub fn terms(&self) -> &[(usize, i64)] {
        &self.terms
    }
    /// The number of non-zero entries.
    #[must_use]
    pub fn nnz(&self) -> usize {
        self.terms.len()
    }
    /// The dense vector.
    #[must_use]
    pub fn to_dense(&self) -> Vec<i64> {
        let mut y = vec![0; self.n];
        for &(i, v) in &self.terms {
            y[i] = v;
        }
        y
    }
    /// SHA-256 of the canonical encoding
    /// `"cryptonn/keyvec/v1" ‖ n ‖ (index ‖ value)*` (integers as 8-byte little-endian).
    #[must_use]
    pub fn sha256(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"cryptonn/keyvec/v1");
        h.update((self.n as u64).to_le_bytes());
        // The same bytes, handed to the hash 64 terms at a time (one call per 8-byte integer
        // costs as much as the compression itself).
        let mut buf = [0u8; 64 * 16];
        for chunk in self.terms.chunks(64) {
            for (slot, &(i, v)) in buf.chunks_exact_mut(16).zip(chunk) {
                slot[..8].copy_from_slice(&(i as u64).to_le_bytes());
                slot[8..].copy_from_slice(&v.to_le_bytes());
            }
            h.update(&buf[..16 * chunk.len()]);
        }
        h.finalize().into()
    }
}

/// A batch of FEIP function-key requests for one domain (one key per vector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeipKeyRequest {
    /// The key domain.
    pub domain: DomainId,
    /// The key vectors `y`, one key each.
    pub vectors: Vec<KeyVectorData>,
}

impl FeipKeyRequest {
    /// Checks that the request's placements expand to at most [`MAX_EXPANSION`] input
    /// entries in all (`p²` per grid cell of each), before anything is expanded.
    ///
    /// # Errors
    /// [`PlacementError::ExpansionTooLarge`] beyond it.
    pub fn check_expansion(&self) -> Result<(), PlacementError> {
        let mut total = 0usize;
        for v in &self.vectors {
            if let KeyVectorData::Placement(p) = v {
                total = total.saturating_add(p.expansion_size());
                if total > MAX_EXPANSION {
                    return Err(PlacementError::ExpansionTooLarge { max: MAX_EXPANSION });
                }
            }
        }
        Ok(())
    }
}

/// The function keys for a [`FeipKeyRequest`], in the order of its vectors.
#[derive(Debug, Clone)]
pub struct FeipKeyResponse<G: PrimeOrderGroup> {
    /// The key domain.
    pub domain: DomainId,
    /// The domain's FEIP parameters (so the decryptor knows the bounds).
    pub params: FeipParams,
    /// `sk_y` for each requested `y`.
    pub keys: Vec<FunctionKey<G>>,
}

/// Serde for [`FeboOp`] as its one-byte code.
mod febo_op_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::fe::febo::FeboOp;

    pub(super) fn serialize<S: Serializer>(op: &FeboOp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(op.to_byte())
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FeboOp, D::Error> {
        let b = u8::deserialize(d)?;
        FeboOp::from_byte(b).ok_or_else(|| serde::de::Error::custom("unknown FEBO operation"))
    }
}

/// One ciphertext-bound FEBO key request: the ciphertext's commitment (canonical bytes), the
/// operation and its public operand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeboKeyItem {
    /// The canonical encoding of the ciphertext's commitment `g^r`.
    pub commitment: Vec<u8>,
    /// The operation.
    #[serde(with = "febo_op_serde")]
    pub op: FeboOp,
    /// The public operand `y`.
    pub operand: i64,
}

/// A batch of FEBO key requests for one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeboKeyRequest {
    /// The key domain.
    pub domain: DomainId,
    /// One key per item.
    pub items: Vec<FeboKeyItem>,
}

/// The FEBO keys for a [`FeboKeyRequest`], in order.
#[derive(Debug, Clone)]
pub struct FeboKeyResponse<G: PrimeOrderGroup> {
    /// The key domain.
    pub domain: DomainId,
    /// The domain's FEBO bounds.
    pub params: FeboParams,
    /// One key per requested item.
    pub keys: Vec<FeboFunctionKey<G>>,
}

/// Everything public about a key domain: what a client needs to encrypt.
#[derive(Debug, Clone)]
pub struct DomainPublicKey<G: PrimeOrderGroup> {
    /// The domain.
    pub domain: DomainId,
    /// FEIP parameters `(n, X, Y)`.
    pub feip_params: FeipParams,
    /// The FEIP master public key.
    pub feip: MasterPublicKey<G>,
    /// FEBO bounds and public key, if the domain has FEBO.
    pub febo: Option<(FeboParams, FeboPublicKey<G>)>,
}

impl<G: PrimeOrderGroup> DomainPublicKey<G> {
    /// SHA-256 of the key's canonical encoding: a domain-separation tag, the group, the
    /// domain id, the FEIP parameters and elements, and the FEBO bounds and element if any.
    /// The authority keeps this digest of every domain (32 bytes, instead of the `n`
    /// elements), and an encrypted dataset records it per shard.
    #[must_use]
    pub fn sha256(&self, group: &G) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"cryptonn/shard-public-key/v1");
        h.update([group.id().to_byte()]);
        h.update(self.domain.0.to_le_bytes());
        let p = self.feip_params;
        for v in [p.n() as u64, p.x_bound(), p.y_bound()] {
            h.update(v.to_le_bytes());
        }
        for e in self.feip.elements() {
            h.update(group.element_to_bytes(e));
        }
        if let Some((fp, fk)) = &self.febo {
            h.update([1]);
            h.update(fp.x_bound().to_le_bytes());
            h.update(fp.y_bound().to_le_bytes());
            h.update(group.element_to_bytes(fk.element()));
        } else {
            h.update([0]);
        }
        h.finalize().into()
    }
}

/// The state of a key domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainStatus {
    /// Issues keys.
    Active,
    /// Replaced by `successor`; issues no more keys.
    Rotated {
        /// The fresh domain.
        successor: DomainId,
    },
    /// Closed by the operator; its master secret key is erased.
    Closed,
}

/// Who may use a key domain, fixed when it is created: the **owner** (the data owner or
/// prediction client that created it; the only party that may register FEBO commitments) and
/// the **requesters** (the servers allowed to ask for its function keys, e.g. the data owner's
/// trainer or a prediction client's prediction server). Any other party gets
/// [`CoordinatorError::NotPermitted`](crate::coordinator::CoordinatorError::NotPermitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainAccess {
    /// The party that created the domain.
    pub owner: RequesterId,
    /// The parties allowed to request function keys.
    pub requesters: Vec<RequesterId>,
}

impl DomainAccess {
    /// A domain created by `owner` whose keys only `requester` may ask for.
    #[must_use]
    pub fn new(owner: RequesterId, requester: RequesterId) -> Self {
        Self {
            owner,
            requesters: vec![requester],
        }
    }

    /// Whether `requester` may ask for function keys.
    #[must_use]
    pub fn admits(&self, requester: &RequesterId) -> bool {
        self.requesters.contains(requester)
    }
}

/// The data owner's registration of the FEBO ciphertexts it produced in one domain: the
/// canonical encodings of their commitments `g^r`. The authority issues FEBO keys only for
/// registered commitments (so a FEBO key request is not a Diffie–Hellman oracle on arbitrary
/// elements such as `cmt · g^t`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeboCommitmentRegistration {
    /// The key domain the ciphertexts were encrypted under.
    pub domain: DomainId,
    /// The canonical encodings of the commitments.
    pub commitments: Vec<Vec<u8>>,
}

/// SHA-256 of a FEBO commitment's canonical encoding, under the label
/// `"cryptonn/febo-commitment/v1"`: what the authority journals of a registered commitment
/// (its registry in memory keeps the first 16 bytes).
#[must_use]
pub fn commitment_digest(commitment: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"cryptonn/febo-commitment/v1");
    h.update(commitment);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::coordinator::placement::{PlacementFrame, PlacementGrid, PlacementOrigin};

    /// The buffered hash is the documented encoding, integer by integer (audit records of
    /// earlier runs keep their meaning), for lengths around the 64-term buffer.
    #[test]
    fn key_vector_hash_is_the_canonical_encoding() {
        use sha2::{Digest, Sha256};
        for len in [1usize, 63, 64, 65, 200] {
            // Never zero (500 is not a multiple of 7): every entry is a term.
            let y: Vec<i64> = (0..len).map(|i| i as i64 * 7 - 500).collect();
            let v = SparseKeyVector::from_data(&KeyVectorData::Dense(y.clone()), y.len(), 1 << 20)
                .unwrap();
            let mut h = Sha256::new();
            h.update(b"cryptonn/keyvec/v1");
            h.update((y.len() as u64).to_le_bytes());
            for (i, &x) in y.iter().enumerate() {
                h.update((i as u64).to_le_bytes());
                h.update(x.to_le_bytes());
            }
            let want: [u8; 32] = h.finalize().into();
            assert_eq!(v.sha256(), want, "{len}");
        }
    }

    fn placement(frame: PlacementFrame, coefs: Vec<i64>, side: usize) -> Placement {
        let g = Arc::new(PlacementGrid::new(frame, 1, side, side, 2, coefs).unwrap());
        let origin = PlacementOrigin {
            channel: 0,
            row: 0,
            col: 0,
        };
        Placement::new(g, origin).unwrap()
    }

    #[test]
    fn expansion_is_capped_per_request() {
        let frame = PlacementFrame::new(1, 64, 64, 0, 2, 1).unwrap();
        let y = placement(frame, vec![1; 1024], 32);
        assert_eq!(y.expansion_size(), 4096);
        let mut request = FeipKeyRequest {
            domain: DomainId(1),
            vectors: vec![KeyVectorData::Placement(y.clone()); MAX_EXPANSION / 4096],
        };
        assert!(request.check_expansion().is_ok());
        request.vectors.push(KeyVectorData::Placement(y));
        assert!(matches!(
            request.check_expansion(),
            Err(PlacementError::ExpansionTooLarge { .. })
        ));
    }

    /// A placement is checked against the domain's `n` and bound like any other vector, and
    /// its canonical form is its expansion's.
    #[test]
    fn placements_validate_against_the_domain() {
        let frame = PlacementFrame::new(2, 5, 5, 1, 2, 1).unwrap(); // n = 50
        let y = placement(frame, vec![3, -1, 0, 2, 5, 1, -4, 2, 7], 3);
        let data = KeyVectorData::Placement(y.clone());
        let canonical = SparseKeyVector::from_data(&data, 50, 100).unwrap();
        let expanded = KeyVectorData::Sparse(y.input_terms());
        assert_eq!(
            canonical,
            SparseKeyVector::from_data(&expanded, 50, 100).unwrap()
        );
        assert_eq!(data.clone().into_expanded(), expanded);
        assert!(data.as_key_vector().is_none());
        assert!(matches!(
            SparseKeyVector::from_data(&data, 49, 100),
            Err(FeError::DimensionMismatch {
                expected: 49,
                got: 50
            })
        ));
        // The boxes are disjoint (stride 2 = pool), so the entries are the coefficients, up to 7.
        assert!(matches!(
            SparseKeyVector::from_data(&data, 50, 6),
            Err(FeError::KeyOutOfBound { .. })
        ));
    }
}
