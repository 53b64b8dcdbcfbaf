//! Element-wise operations through FEBO: `x_ij Δ y_ij` for `Δ ∈ {+, −, ×, ÷}`, where the server
//! holds the operands `y` in the clear and `x` only as FEBO ciphertexts.
//!
//! Each entry `x_ij` is its own FEBO ciphertext `(cmt = g^r, ct = h^r g^{x_ij})`. The server
//! requests one ciphertext-bound key per entry (the request carries the commitment, the
//! operation and the operand) and decrypts `g^{x Δ y}`, then solves the discrete logs in
//! batches. A key is bound to one commitment, so it opens nothing else.
//!
//! [`FeboEncryptedMatrix`] follows the same boundary as
//! [`EncryptedMatrix`](crate::coordinator::EncryptedMatrix): private fields, no plaintext path.

use std::sync::Arc;

use ndarray::Array2;
use rayon::prelude::*;

use crate::coordinator::error::CoordinatorError;
use crate::coordinator::messages::{DomainId, FeboCommitmentRegistration, FeboKeyResponse};
use crate::fe::dlog::{BabyStepTable, DlogSolver};
use crate::fe::error::FeError;
use crate::fe::febo::{Febo, FeboCiphertext, FeboOp, FeboParams};
use crate::fe::group::PrimeOrderGroup;

/// Entries decrypted together in one batched discrete log.
const CHUNK: usize = 64;

/// A matrix encrypted entry by entry with FEBO (row-major).
#[derive(Debug, Clone)]
pub struct FeboEncryptedMatrix<G: PrimeOrderGroup> {
    domain: DomainId,
    params: FeboParams,
    shape: (usize, usize),
    cells: Vec<FeboCiphertext<G>>,
}

impl<G: PrimeOrderGroup> FeboEncryptedMatrix<G> {
    /// A matrix from per-entry ciphertexts in row-major order.
    ///
    /// # Errors
    /// [`CoordinatorError::Empty`] for an empty shape; [`CoordinatorError::ShapeMismatch`] if
    /// the number of ciphertexts is not `rows · cols`.
    pub fn from_ciphertexts(
        domain: DomainId,
        params: FeboParams,
        shape: (usize, usize),
        cells: Vec<FeboCiphertext<G>>,
    ) -> Result<Self, CoordinatorError> {
        if shape.0 == 0 || shape.1 == 0 {
            return Err(CoordinatorError::Empty("FEBO matrix without entries"));
        }
        if cells.len() != shape.0 * shape.1 {
            return Err(CoordinatorError::ShapeMismatch {
                what: "FEBO ciphertexts per entry",
                expected: shape.0 * shape.1,
                got: cells.len(),
            });
        }
        Ok(Self {
            domain,
            params,
            shape,
            cells,
        })
    }
    /// The key domain.
    #[must_use]
    pub fn domain(&self) -> DomainId {
        self.domain
    }
    /// The FEBO bounds.
    #[must_use]
    pub fn params(&self) -> &FeboParams {
        &self.params
    }
    /// `(rows, cols)`.
    #[must_use]
    pub fn shape(&self) -> (usize, usize) {
        self.shape
    }
    /// The ciphertexts, row-major.
    #[must_use]
    pub fn ciphertexts(&self) -> &[FeboCiphertext<G>] {
        &self.cells
    }
    /// The registration of these ciphertexts' commitments that the data owner sends to the
    /// authority
    /// ([`KeyService::register_febo_commitments`](crate::coordinator::KeyService::register_febo_commitments))
    /// before a server may get FEBO keys for them.
    #[must_use]
    pub fn registration(&self, group: &G) -> FeboCommitmentRegistration {
        FeboCommitmentRegistration {
            domain: self.domain,
            commitments: self
                .cells
                .iter()
                .map(|c| group.element_to_bytes(c.commitment()))
                .collect(),
        }
    }
}

/// Decrypts `x_ij Δ y_ij` for every entry with the keys of `response` (one per entry, row-major).
///
/// # Errors
/// [`CoordinatorError::DomainMismatch`], [`CoordinatorError::ShapeMismatch`];
/// [`CoordinatorError::Fe`] with [`FeError::InexactDivision`] when a divisor does not divide its
/// entry; [`CoordinatorError::ProductOutOfRange`] when a result lies outside the searched range.
pub fn vartime_elementwise<G: PrimeOrderGroup>(
    enc: &FeboEncryptedMatrix<G>,
    response: &FeboKeyResponse<G>,
    table: &Arc<BabyStepTable<G>>,
    dlog_bound: u64,
) -> Result<Array2<i64>, CoordinatorError> {
    if response.domain != enc.domain {
        return Err(CoordinatorError::DomainMismatch {
            expected: enc.domain,
            got: response.domain,
        });
    }
    if response.keys.len() != enc.cells.len() {
        return Err(CoordinatorError::ShapeMismatch {
            what: "FEBO keys per entry",
            expected: enc.cells.len(),
            got: response.keys.len(),
        });
    }
    let bound = response.params.result_bound().min(dlog_bound).max(1);
    let solver = DlogSolver::new(Arc::clone(table), bound)?;
    let febo = Febo::new(table.group().clone(), response.params);
    let cols = enc.shape.1;
    let values: Vec<Vec<i64>> = enc
        .cells
        .par_chunks(CHUNK)
        .zip(response.keys.par_chunks(CHUNK))
        .enumerate()
        .map(|(chunk, (cts, keys))| {
            let elems = cts
                .iter()
                .zip(keys)
                .map(|(ct, key)| febo.vartime_decrypt_element(ct, key))
                .collect::<Result<Vec<_>, FeError>>()?;
            solver
                .vartime_solve_batch(&elems)
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    r.map_err(|_| {
                        let at = chunk * CHUNK + i;
                        if keys[i].op() == FeboOp::Div {
                            CoordinatorError::Fe(FeError::InexactDivision)
                        } else {
                            CoordinatorError::ProductOutOfRange {
                                row: at / cols,
                                column: at % cols,
                                bound,
                            }
                        }
                    })
                })
                .collect::<Result<Vec<i64>, _>>()
        })
        .collect::<Result<_, _>>()?;
    let flat = values.concat();
    Array2::from_shape_vec(enc.shape, flat).map_err(|_| CoordinatorError::ShapeMismatch {
        what: "FEBO result size",
        expected: enc.cells.len(),
        got: 0,
    })
}
