//! Secure matrix products: `W · X` where the server holds `W` in the clear and `X` only as FEIP
//! ciphertexts.
//!
//! A client encrypts `X ∈ Z^{n×m}` column by column: column `j` (one sample) becomes the FEIP
//! ciphertext `(g^{r_j}, (h_i^{r_j} g^{X_ij})_i)` with fresh `r_j` ([`EncryptedMatrix`]). The
//! server asks for one function key per row `w_k` of `W ∈ Z^{k×n}` ([`FeipKeyBatch`]) and
//! decrypts
//!
//! ```text
//! (W · X)_{kj} = <w_k, X_{·j}> = dlog_g( ∏_i ct_{ij}^{w_ki} / ct0_j^{sk_{w_k}} )
//! ```
//!
//! exactly, as integers, through the server's one decryption path
//! ([`decrypt`](crate::coordinator::decrypt), shared with secure training). Cost: one fixed-base
//! table per ciphertext (`ct0_j`, reused by all `k` keys), one small-exponent
//! multi-exponentiation over the non-zeros of `w_k` and one table exponentiation per entry, and
//! one batched discrete log per column. The work runs in parallel over columns and keys; the
//! results are exact integers, so they do not depend on the number of threads.
//!
//! **Ranges.** Each entry satisfies `|(W·X)_{kj}| <= ||w_k||_1 · X_bound`. The discrete-log
//! search covers `min(max_k ||w_k||_1 · X_bound, dlog_bound)`; an entry outside it gives
//! [`CoordinatorError::ProductOutOfRange`], never a wrong value.
//!
//! # The plaintext boundary
//! [`EncryptedMatrix`] has private fields and no accessor or constructor that takes or returns
//! plaintext: it is made only by [`Client::encrypt_matrix`](crate::coordinator::Client) (from a
//! public key and plaintext the client owns) or from ciphertexts. Server code that holds one can
//! learn `X` only through function keys the authority's policy admitted. `tests/ui/` holds
//! compile-fail tests of this boundary.

mod wire;

use std::sync::Arc;

pub use wire::{peek_group_byte, MATRIX_FORMAT_VERSION, MATRIX_MAGIC};

use ndarray::Array2;
use rayon::prelude::*;

use crate::coordinator::decrypt::{
    vartime_decrypt_columns, DecryptTimes, DecryptionColumn, PreparedComponents,
};
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::messages::{DomainId, KeyVectorData, SparseKeyVector};
use crate::fe::dlog::{BabyStepTable, DlogSolver};
use crate::fe::encoding::FixedPoint;
use crate::fe::error::DlogError;
use crate::fe::feip::{Ciphertext, FeipParams, FunctionKey};
use crate::fe::group::PrimeOrderGroup;

/// A matrix `X ∈ Z^{n×m}` encrypted column by column under one key domain.
///
/// There is deliberately no way to read plaintext out of it: the fields are private and the only
/// accessors return public data (domain, parameters, shape, ciphertexts).
///
/// ```compile_fail
/// # use cryptonn::coordinator::EncryptedMatrix;
/// # use cryptonn::fe::group::ristretto::Ristretto255;
/// fn peek(enc: &EncryptedMatrix<Ristretto255>) -> Vec<i64> {
///     enc.plaintext() // no such method
/// }
/// ```
#[derive(Debug, Clone)]
pub struct EncryptedMatrix<G: PrimeOrderGroup> {
    domain: DomainId,
    params: FeipParams,
    encoding: Option<FixedPoint>,
    columns: Vec<Ciphertext<G>>,
}

impl<G: PrimeOrderGroup> EncryptedMatrix<G> {
    /// An encrypted matrix from ciphertexts (e.g. received from a client over a network), one
    /// per column. `encoding` is the fixed-point codec the client used, if any.
    ///
    /// # Errors
    /// [`CoordinatorError::Empty`] without ciphertexts; [`CoordinatorError::ShapeMismatch`] if a
    /// ciphertext does not have `n` components.
    pub fn from_ciphertexts(
        domain: DomainId,
        params: FeipParams,
        columns: Vec<Ciphertext<G>>,
        encoding: Option<FixedPoint>,
    ) -> Result<Self, CoordinatorError> {
        if columns.is_empty() {
            return Err(CoordinatorError::Empty("encrypted matrix without columns"));
        }
        if let Some(c) = columns.iter().find(|c| c.len() != params.n()) {
            return Err(CoordinatorError::ShapeMismatch {
                what: "ciphertext length",
                expected: params.n(),
                got: c.len(),
            });
        }
        Ok(Self {
            domain,
            params,
            encoding,
            columns,
        })
    }

    /// The key domain the columns are encrypted under.
    #[must_use]
    pub fn domain(&self) -> DomainId {
        self.domain
    }
    /// The domain's FEIP parameters `(n, X, Y)`.
    #[must_use]
    pub fn params(&self) -> &FeipParams {
        &self.params
    }
    /// The shape `(n, m)` of the encrypted matrix.
    #[must_use]
    pub fn shape(&self) -> (usize, usize) {
        (self.params.n(), self.columns.len())
    }
    /// The fixed-point codec of the plaintext entries, if the client encoded reals.
    #[must_use]
    pub fn encoding(&self) -> Option<&FixedPoint> {
        self.encoding.as_ref()
    }
    /// The ciphertexts, one per column.
    #[must_use]
    pub fn ciphertexts(&self) -> &[Ciphertext<G>] {
        &self.columns
    }
}

/// Function keys for the rows of a weight matrix `W`: the key vectors (public) and their keys.
#[derive(Debug, Clone)]
pub struct FeipKeyBatch<G: PrimeOrderGroup> {
    domain: DomainId,
    params: FeipParams,
    vectors: Vec<KeyVectorData>,
    terms: Vec<Vec<(usize, i64)>>,
    l1_norms: Vec<u64>,
    keys: Vec<FunctionKey<G>>,
}

impl<G: PrimeOrderGroup> FeipKeyBatch<G> {
    /// A batch from key vectors (placements are kept expanded to input form) and the keys
    /// issued for them, in the same order.
    ///
    /// # Errors
    /// [`CoordinatorError::ShapeMismatch`] if the counts differ; [`CoordinatorError::Empty`]
    /// without keys; [`CoordinatorError::Fe`] for a vector that is not of length `n` (wrong
    /// dense length, sparse index `>= n` or out of order, placement of another input length).
    pub fn new(
        domain: DomainId,
        params: FeipParams,
        vectors: Vec<KeyVectorData>,
        keys: Vec<FunctionKey<G>>,
    ) -> Result<Self, CoordinatorError> {
        let vectors: Vec<KeyVectorData> = vectors
            .into_iter()
            .map(KeyVectorData::into_expanded)
            .collect();
        if vectors.len() != keys.len() {
            return Err(CoordinatorError::ShapeMismatch {
                what: "keys per key vector",
                expected: vectors.len(),
                got: keys.len(),
            });
        }
        if keys.is_empty() {
            return Err(CoordinatorError::Empty("key batch without keys"));
        }
        let terms = vectors
            .iter()
            .map(|v| {
                Ok(SparseKeyVector::from_data(v, params.n(), u64::MAX)?
                    .terms()
                    .to_vec())
            })
            .collect::<Result<Vec<_>, CoordinatorError>>()?;
        let l1_norms = terms
            .iter()
            .map(|t| t.iter().map(|(_, a)| a.unsigned_abs()).sum())
            .collect();
        Ok(Self {
            domain,
            params,
            vectors,
            terms,
            l1_norms,
            keys,
        })
    }
    /// The key domain.
    #[must_use]
    pub fn domain(&self) -> DomainId {
        self.domain
    }
    /// The number of keys (rows of `W`).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// Always false (a batch has at least one key).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    /// The key vectors, in order.
    #[must_use]
    pub fn vectors(&self) -> &[KeyVectorData] {
        &self.vectors
    }
}

/// Decrypts `W · X` from the keys for the rows of `W` and the encrypted `X` (see the
/// [module docs](self)). `dlog_bound` caps the discrete-log search.
///
/// # Errors
/// [`CoordinatorError::DomainMismatch`] if keys and ciphertexts belong to different domains;
/// [`CoordinatorError::ShapeMismatch`] if their dimensions differ;
/// [`CoordinatorError::ProductOutOfRange`] for an entry outside the searched range;
/// [`CoordinatorError::Dlog`] if the bound needs more giant steps than the table allows.
pub fn vartime_matmul<G: PrimeOrderGroup>(
    keys: &FeipKeyBatch<G>,
    enc: &EncryptedMatrix<G>,
    table: &Arc<BabyStepTable<G>>,
    dlog_bound: u64,
) -> Result<Array2<i64>, CoordinatorError> {
    if keys.domain != enc.domain {
        return Err(CoordinatorError::DomainMismatch {
            expected: enc.domain,
            got: keys.domain,
        });
    }
    if keys.params.n() != enc.params.n() {
        return Err(CoordinatorError::ShapeMismatch {
            what: "key-vector length vs ciphertext length",
            expected: enc.params.n(),
            got: keys.params.n(),
        });
    }
    let params = keys.params;
    let worst = keys
        .l1_norms
        .iter()
        .map(|&l1| l1.saturating_mul(params.x_bound()))
        .max()
        .unwrap_or(0);
    let bound = worst.min(dlog_bound).max(1);
    let solver = DlogSolver::new(Arc::clone(table), bound)?;
    let group = table.group();
    let prepared: Vec<PreparedComponents<'_, G>> = enc
        .columns
        .par_iter()
        .map(|ct| PreparedComponents::new(group, ct))
        .collect();
    let columns: Vec<DecryptionColumn<'_, G, [(usize, i64)], _>> = prepared
        .iter()
        .map(|p| {
            let pairs = keys.terms.iter().map(|t| &t[..]).zip(&keys.keys).collect();
            (p, pairs)
        })
        .collect();
    let solved = vartime_decrypt_columns(
        group,
        &columns,
        std::slice::from_ref(&solver),
        &mut DecryptTimes::default(),
    );
    let k = keys.len();
    let mut out = Array2::<i64>::zeros((k, solved.len()));
    for (column, values) in solved.into_iter().enumerate() {
        for (row, v) in values.into_iter().enumerate() {
            out[(row, column)] = v.map_err(|e| match e {
                DlogError::OutOfRange { bound } => {
                    CoordinatorError::ProductOutOfRange { row, column, bound }
                }
                other => other.into(),
            })?;
        }
    }
    Ok(out)
}
