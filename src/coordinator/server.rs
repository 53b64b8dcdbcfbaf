//! The server: holds plaintext weights, ciphertexts, public keys and function keys — never
//! plaintext inputs or master secret keys.
//!
//! Its only way to learn anything about encrypted data is to ask its [`KeyService`] for
//! function keys, which the authority's policy reviews and audits, and to decrypt what those
//! keys open: `W · X` ([`Server::secure_matmul`]) or `X Δ Y` element-wise
//! ([`Server::secure_elementwise`]). The bounded discrete log runs over a shared
//! [`BabyStepTable`] (build it once, e.g. with [`BabyStepTable::load_or_build`] and a cache
//! directory).
//!
//! # Example
//! ```
//! use std::sync::{Arc, Mutex};
//! use cryptonn::coordinator::{Authority, Client, DomainConfig, InProcessKeyService,
//!                             RequesterId, Server};
//! use cryptonn::fe::dlog::BabyStepTable;
//! use cryptonn::fe::feip::FeipParams;
//! use cryptonn::fe::group::ristretto::Ristretto255;
//! use ndarray::array;
//!
//! // The authority sets up a key domain for vectors of length 4 with |x|, |w| <= 100.
//! let authority = Arc::new(Mutex::new(Authority::new(Ristretto255)));
//! let domain = authority.lock().unwrap()
//!     .create_domain(DomainConfig::new(FeipParams::new(4, 100, 100)?))?;
//! let pk = authority.lock().unwrap().public_key(domain)?;
//!
//! // A client encrypts X (4 x 3, one sample per column).
//! let x = array![[1, 2, 3], [-4, 5, 6], [7, -8, 9], [10, 11, -12]];
//! let enc = Client::new(Ristretto255, pk)?.encrypt_matrix(&x)?;
//!
//! // The server multiplies its weights by the ciphertexts, with keys from the key service.
//! let keys = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("server"));
//! let server = Server::new(keys, Arc::new(BabyStepTable::new(Ristretto255, 1 << 12)?));
//! let w = array![[1, 1, 1, 1], [2, -1, 3, 5]];
//! assert_eq!(server.secure_matmul(&w, &enc)?, w.dot(&x));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use crate::coordinator::elementwise::{vartime_elementwise, FeboEncryptedMatrix};
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::key_service::KeyService;
use crate::coordinator::matmul::{vartime_matmul, EncryptedMatrix, FeipKeyBatch};
use crate::coordinator::messages::{
    DomainId, FeboKeyItem, FeboKeyRequest, FeipKeyRequest, KeyVectorData,
};
use crate::fe::dlog::BabyStepTable;
use crate::fe::encoding::FixedPoint;
use crate::fe::febo::FeboOp;
use crate::fe::group::PrimeOrderGroup;

/// Giant steps (in each direction) the default discrete-log range allows beyond the table.
pub const DEFAULT_GIANT_STEPS: u64 = 256;

/// The party that computes on ciphertexts.
pub struct Server<G: PrimeOrderGroup, K: KeyService<G>> {
    keys: K,
    table: Arc<BabyStepTable<G>>,
    dlog_bound: u64,
}

impl<G: PrimeOrderGroup, K: KeyService<G>> std::fmt::Debug for Server<G, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("requester", self.keys.requester())
            .field("dlog_bound", &self.dlog_bound)
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G>> Server<G, K> {
    /// A server that asks `keys` for function keys and solves discrete logs with `table`.
    /// The discrete-log range is `m + DEFAULT_GIANT_STEPS · (2m + 1)` for the table's half-width
    /// `m` (change it with [`with_dlog_bound`](Self::with_dlog_bound)).
    #[must_use]
    pub fn new(keys: K, table: Arc<BabyStepTable<G>>) -> Self {
        let m = table.half_width();
        let dlog_bound = m.saturating_add(DEFAULT_GIANT_STEPS.saturating_mul(2 * m + 1));
        Self {
            keys,
            table,
            dlog_bound,
        }
    }

    /// Sets the largest `|result|` the discrete-log search covers. Results beyond it are
    /// reported as [`CoordinatorError::ProductOutOfRange`].
    #[must_use]
    pub fn with_dlog_bound(mut self, bound: u64) -> Self {
        self.dlog_bound = bound;
        self
    }

    /// The discrete-log range.
    #[must_use]
    pub fn dlog_bound(&self) -> u64 {
        self.dlog_bound
    }

    /// The key service.
    #[must_use]
    pub fn key_service(&self) -> &K {
        &self.keys
    }

    /// Requests one function key per row of `w` in `domain` (rows sent dense or sparse,
    /// whichever is smaller). The batch can be reused for many encrypted matrices of the domain.
    ///
    /// # Errors
    /// [`CoordinatorError::Empty`] for a matrix without rows; the key service's errors
    /// (refusal with its reason, rotation, bounds).
    pub fn request_keys<'a, V: AsArray<'a, i64, Ix2>>(
        &self,
        domain: DomainId,
        w: V,
    ) -> Result<FeipKeyBatch<G>, CoordinatorError> {
        let w: ArrayView2<'_, i64> = w.into();
        if w.nrows() == 0 {
            return Err(CoordinatorError::Empty("weight matrix without rows"));
        }
        let vectors: Vec<KeyVectorData> = w
            .rows()
            .into_iter()
            .map(|row| KeyVectorData::from_dense_compact(&row.to_vec()))
            .collect();
        let request = FeipKeyRequest {
            domain,
            vectors: vectors.clone(),
        };
        let response = self.keys.feip_keys(&request)?;
        if response.domain != domain {
            return Err(CoordinatorError::DomainMismatch {
                expected: domain,
                got: response.domain,
            });
        }
        FeipKeyBatch::new(domain, response.params, vectors, response.keys)
    }

    /// `W · X` exactly, for plaintext `W ∈ Z^{k×n}` and encrypted `X ∈ Z^{n×m}`: requests the
    /// `k` keys, then decrypts the `k·m` inner products (see [`crate::coordinator::matmul`]).
    ///
    /// # Errors
    /// [`CoordinatorError::ShapeMismatch`] if `W` does not have `n` columns; the errors of
    /// [`request_keys`](Self::request_keys) (e.g. [`CoordinatorError::Fe`] with `KeyOutOfBound`
    /// for an entry of `W` above the domain's `Y`); those of
    /// [`secure_matmul_with_keys`](Self::secure_matmul_with_keys).
    pub fn secure_matmul<'a, V: AsArray<'a, i64, Ix2>>(
        &self,
        w: V,
        enc: &EncryptedMatrix<G>,
    ) -> Result<Array2<i64>, CoordinatorError> {
        let w: ArrayView2<'_, i64> = w.into();
        let n = enc.params().n();
        if w.ncols() != n {
            return Err(CoordinatorError::ShapeMismatch {
                what: "columns of W (vector length n)",
                expected: n,
                got: w.ncols(),
            });
        }
        let keys = self.request_keys(enc.domain(), w)?;
        self.secure_matmul_with_keys(&keys, enc)
    }

    /// `W · X` with keys obtained earlier by [`request_keys`](Self::request_keys).
    ///
    /// # Errors
    /// [`CoordinatorError::DomainMismatch`], [`CoordinatorError::ShapeMismatch`],
    /// [`CoordinatorError::ProductOutOfRange`], [`CoordinatorError::Dlog`].
    pub fn secure_matmul_with_keys(
        &self,
        keys: &FeipKeyBatch<G>,
        enc: &EncryptedMatrix<G>,
    ) -> Result<Array2<i64>, CoordinatorError> {
        vartime_matmul(keys, enc, &self.table, self.dlog_bound)
    }

    /// `W · X` for real `W`: `W` is encoded with `w_codec`, the product is computed exactly over
    /// the integers and decoded with both scales (`z / (S_w · S_x)`; `S_x = 1` if the client
    /// encrypted integers).
    ///
    /// # Errors
    /// [`CoordinatorError::Encoding`] for a NaN, infinite or out-of-range weight; otherwise as
    /// [`secure_matmul`](Self::secure_matmul).
    pub fn secure_matmul_f64<'a, V: AsArray<'a, f64, Ix2>>(
        &self,
        w: V,
        w_codec: &FixedPoint,
        enc: &EncryptedMatrix<G>,
    ) -> Result<Array2<f64>, CoordinatorError> {
        let w: ArrayView2<'_, f64> = w.into();
        let mut encoded = Array2::<i64>::zeros(w.dim());
        for (dst, &v) in encoded.iter_mut().zip(w.iter()) {
            *dst = w_codec.encode(v)?;
        }
        let z = self.secure_matmul(&encoded, enc)?;
        let x_codec = match enc.encoding() {
            Some(c) => *c,
            None => FixedPoint::new(1.0)?,
        };
        Ok(z.mapv(|v| w_codec.decode_product(v, &x_codec)))
    }

    /// `X Δ Y` entry by entry, for FEBO-encrypted `X` and plaintext operands `Y` of the same
    /// shape: one ciphertext-bound key per entry.
    ///
    /// # Errors
    /// [`CoordinatorError::ShapeMismatch`] if the shapes differ; the key service's errors
    /// (e.g. [`CoordinatorError::FeboDisabled`], an operand above the bound, division by zero);
    /// [`CoordinatorError::Fe`] with `InexactDivision` when a divisor does not divide its entry;
    /// [`CoordinatorError::ProductOutOfRange`].
    pub fn secure_elementwise<'a, V: AsArray<'a, i64, Ix2>>(
        &self,
        enc: &FeboEncryptedMatrix<G>,
        op: FeboOp,
        operands: V,
    ) -> Result<Array2<i64>, CoordinatorError> {
        let y: ArrayView2<'_, i64> = operands.into();
        if y.dim() != enc.shape() {
            return Err(CoordinatorError::ShapeMismatch {
                what: "operand entries",
                expected: enc.shape().0 * enc.shape().1,
                got: y.len(),
            });
        }
        let group = self.table.group();
        let items = enc
            .ciphertexts()
            .iter()
            .zip(y.iter())
            .map(|(ct, &operand)| FeboKeyItem {
                commitment: group.element_to_bytes(ct.commitment()),
                op,
                operand,
            })
            .collect();
        let request = FeboKeyRequest {
            domain: enc.domain(),
            items,
        };
        let response = self.keys.febo_keys(&request)?;
        vartime_elementwise(enc, &response, &self.table, self.dlog_bound)
    }
}
