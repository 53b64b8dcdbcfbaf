//! Leakage analysis: what a server can reconstruct from the function keys it holds and the inner
//! products it decrypted — measured, not argued.
//!
//! A server holding keys for `y_1 … y_k` and the values `b_j = <y_j, x>` knows that `x` lies in
//! the affine subspace `{x : Y x = b}`. Linear algebra alone then gives:
//!
//! - **exactly determined coordinates**: `x_i` is determined iff the unit vector `e_i` lies in
//!   the row space of `Y` (then `e_i = Σ c_j y_j` and `x_i = Σ c_j b_j`; the server could even
//!   derive the key for `e_i` itself). In reduced row echelon form, these are the pivot columns
//!   whose row is zero in every free column. The computation runs over a random 60-bit prime
//!   field (see the soundness argument in the `linalg` module); since `|x_i| < p/2`, the centred
//!   residue is the exact integer `x_i`.
//! - **a best estimate of the rest**: the minimum-norm solution `x̂ = Y⁺ b`, the projection of
//!   `x` onto the row space (classical Gram–Schmidt with re-orthogonalisation, in `f64`), with
//!   the determined coordinates replaced by their exact values.
//!
//! [`Reconstruction::recovered_fraction`] is the share of determined coordinates;
//! [`Reconstruction::relative_error`] is `||x̂ − x|| / ||x||` against ground truth. Once
//! `rank(Y) = n` every coordinate is determined and the input is recovered exactly.
//!
//! This is the *linear* attack. It is a lower bound on leakage: a server may also use that `x`
//! is a small integer vector (lattice methods can then pin down `x` from fewer than `n`
//! equations) or priors on the data (natural images).
//!
//! # Example
//! ```
//! use cryptonn::coordinator::{leakage::reconstruct, KeyVectorData};
//! use ndarray::array;
//!
//! // Keys for x0 + x1 and x0 - x1 (rank 2 on the first two coordinates), x2 untouched.
//! let keys = [KeyVectorData::Dense(vec![1, 1, 0]), KeyVectorData::Dense(vec![1, -1, 0])];
//! let x = [5i64, -3, 9];
//! let values = array![[2], [8]]; // <y_j, x>, one column per input
//! let rec = &reconstruct(3, &keys, values.view())?[0];
//! assert_eq!(rec.exact(), &[Some(5), Some(-3), None]);
//! assert!((rec.recovered_fraction() - 2.0 / 3.0).abs() < 1e-12);
//! # Ok::<(), cryptonn::coordinator::CoordinatorError>(())
//! ```

use ndarray::ArrayView2;
use rand_core::OsRng;
use rayon::prelude::*;

use crate::coordinator::error::CoordinatorError;
use crate::coordinator::linalg::{EchelonBasis, Insertion, PrimeField};
use crate::coordinator::messages::{KeyVectorData, SparseKeyVector};

/// Columns per parallel work unit in the `f64` projections.
const F64_CHUNK: usize = 256;

/// What linear algebra recovers of one input `x ∈ Z^n`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconstruction {
    rank: usize,
    exact: Vec<Option<i64>>,
    estimate: Vec<f64>,
}

impl Reconstruction {
    /// The rank of the key vectors.
    #[must_use]
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// `Some(x_i)` for each coordinate the observations determine, `None` for the others.
    #[must_use]
    pub fn exact(&self) -> &[Option<i64>] {
        &self.exact
    }
    /// The best estimate `x̂`: exact values where determined, the minimum-norm solution
    /// elsewhere.
    #[must_use]
    pub fn estimate(&self) -> &[f64] {
        &self.estimate
    }
    /// How many coordinates are determined.
    #[must_use]
    pub fn recovered_count(&self) -> usize {
        self.exact.iter().filter(|v| v.is_some()).count()
    }
    /// The share of coordinates determined exactly, in `[0, 1]`.
    #[must_use]
    pub fn recovered_fraction(&self) -> f64 {
        if self.exact.is_empty() {
            return 0.0;
        }
        self.recovered_count() as f64 / self.exact.len() as f64
    }
    /// `||x̂ − x|| / ||x||` against the true input (`||x̂||` if `x = 0`).
    ///
    /// # Panics
    /// Never; a `truth` of another length is compared on the common prefix.
    #[must_use]
    pub fn relative_error(&self, truth: &[i64]) -> f64 {
        let (mut err, mut norm) = (0.0f64, 0.0f64);
        for (&e, &t) in self.estimate.iter().zip(truth) {
            let t = t as f64;
            err += (e - t) * (e - t);
            norm += t * t;
        }
        if norm == 0.0 {
            err.sqrt()
        } else {
            (err / norm).sqrt()
        }
    }
    /// True if every coordinate is determined.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.exact.iter().all(Option::is_some)
    }
}

/// Reconstructs inputs `x ∈ Z^n` from key vectors `keys` (`k` of them) and the observed inner
/// products `values` (`k × m`: entry `(j, c)` is `<keys[j], x_c>`, the layout of
/// [`Server::secure_matmul`](crate::coordinator::Server::secure_matmul)'s output). Returns one
/// [`Reconstruction`] per input column.
///
/// Cost: `O(k · r · n)` for the exact part and `O(r² · n)` for the estimate (`r` the rank),
/// parallel with rayon; about a second for `n = k` near a thousand.
///
/// # Errors
/// [`CoordinatorError::ShapeMismatch`] if `values` does not have one row per key;
/// [`CoordinatorError::Fe`] for a malformed key vector; [`CoordinatorError::InconsistentObservations`]
/// if no `x` satisfies all observations.
pub fn reconstruct(
    n: usize,
    keys: &[KeyVectorData],
    values: ArrayView2<'_, i64>,
) -> Result<Vec<Reconstruction>, CoordinatorError> {
    if values.nrows() != keys.len() {
        return Err(CoordinatorError::ShapeMismatch {
            what: "observed values per key",
            expected: keys.len(),
            got: values.nrows(),
        });
    }
    let m = values.ncols();
    let vectors = keys
        .iter()
        .map(|k| SparseKeyVector::from_data(k, n, u64::MAX))
        .collect::<Result<Vec<_>, _>>()?;

    // Exact part: echelon form of [Y | B] over F_p.
    let field = PrimeField::random(&mut OsRng);
    let mut basis = EchelonBasis::new(field, n, m);
    let mut independent = Vec::new();
    for (j, v) in vectors.iter().enumerate() {
        let b: Vec<i64> = values.row(j).to_vec();
        let row = basis.row_from_sparse(v.terms(), &b);
        match basis.insert(row) {
            Insertion::Independent => independent.push(j),
            Insertion::Dependent => {}
            Insertion::Inconsistent => return Err(CoordinatorError::InconsistentObservations),
        }
    }
    let rank = basis.rank();
    let field = *basis.field();
    let (rows, pivots) = basis.into_reduced();
    let mut is_pivot = vec![false; n];
    for &p in &pivots {
        is_pivot[p] = true;
    }
    let mut exact = vec![vec![None; n]; m];
    for (row, &p) in rows.iter().zip(&pivots) {
        let determined = row[..n]
            .iter()
            .enumerate()
            .all(|(c, &a)| a == 0 || is_pivot[c]);
        if determined {
            for (col, x) in exact.iter_mut().enumerate() {
                x[p] = Some(field.centered(row[n + col]));
            }
        }
    }

    // Estimate: minimum-norm solution on the independent rows (skipped when nothing is free).
    let all_determined = exact.iter().all(|x| x.iter().all(Option::is_some));
    let mut estimates = if all_determined || rank == 0 {
        vec![vec![0.0; n]; m]
    } else {
        min_norm_solutions(n, &vectors, &independent, values)
    };
    for (est, ex) in estimates.iter_mut().zip(&exact) {
        for (e, x) in est.iter_mut().zip(ex) {
            if let Some(v) = x {
                *e = *v as f64;
            }
        }
    }
    Ok(exact
        .into_iter()
        .zip(estimates)
        .map(|(exact, estimate)| Reconstruction {
            rank,
            exact,
            estimate,
        })
        .collect())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `x̂_c = Y⁺ b_c` for each column `c`, from the rows `independent` of `Y`: classical
/// Gram–Schmidt, twice (CGS2), carrying the right-hand sides along so that `<q_j, x> = β_j`.
fn min_norm_solutions(
    n: usize,
    vectors: &[SparseKeyVector],
    independent: &[usize],
    values: ArrayView2<'_, i64>,
) -> Vec<Vec<f64>> {
    let m = values.ncols();
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(independent.len());
    let mut beta: Vec<Vec<f64>> = Vec::with_capacity(independent.len());
    for &j in independent {
        let mut a = vec![0.0f64; n];
        for &(i, v) in vectors[j].terms() {
            a[i] = v as f64;
        }
        let mut b: Vec<f64> = values.row(j).iter().map(|&v| v as f64).collect();
        let norm0 = dot(&a, &a).sqrt();
        for _ in 0..2 {
            let coeffs: Vec<f64> = q.par_iter().map(|qj| dot(qj, &a)).collect();
            a.par_chunks_mut(F64_CHUNK)
                .enumerate()
                .for_each(|(ci, chunk)| {
                    let off = ci * F64_CHUNK;
                    for (qj, &c) in q.iter().zip(&coeffs) {
                        for (x, &qv) in chunk.iter_mut().zip(&qj[off..]) {
                            *x -= c * qv;
                        }
                    }
                });
            for (bj, &c) in beta.iter().zip(&coeffs) {
                for (x, &bv) in b.iter_mut().zip(bj) {
                    *x -= c * bv;
                }
            }
        }
        let norm = dot(&a, &a).sqrt();
        if norm <= 1e-10 * norm0 {
            continue; // numerically dependent: contributes nothing new
        }
        a.iter_mut().for_each(|x| *x /= norm);
        b.iter_mut().for_each(|x| *x /= norm);
        q.push(a);
        beta.push(b);
    }
    (0..m)
        .into_par_iter()
        .map(|c| {
            let mut x = vec![0.0f64; n];
            for (qj, bj) in q.iter().zip(&beta) {
                let s = bj[c];
                for (xi, &qv) in x.iter_mut().zip(qj) {
                    *xi += s * qv;
                }
            }
            x
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    #[test]
    fn contradictory_observations_are_an_error() {
        let keys = [
            KeyVectorData::Dense(vec![1, 1]),
            KeyVectorData::Dense(vec![2, 2]),
        ];
        // <(1,1), x> = 3 and <(2,2), x> = 7 cannot both hold.
        assert!(matches!(
            reconstruct(2, &keys, array![[3], [7]].view()),
            Err(CoordinatorError::InconsistentObservations)
        ));
        assert!(matches!(
            reconstruct(2, &keys, array![[3]].view()),
            Err(CoordinatorError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn no_keys_no_knowledge_and_min_norm_estimate() {
        let none = reconstruct(3, &[], Array2::<i64>::zeros((0, 1)).view()).unwrap();
        assert_eq!(none[0].rank(), 0);
        assert_eq!(none[0].recovered_fraction(), 0.0);
        assert_eq!(none[0].estimate(), &[0.0, 0.0, 0.0]);
        assert_eq!(none[0].relative_error(&[3, 4, 0]), 1.0);
        // One key (1, 1, 0) with <y, x> = 8: the min-norm estimate is (4, 4, 0).
        let one = reconstruct(
            3,
            &[KeyVectorData::Dense(vec![1, 1, 0])],
            array![[8]].view(),
        )
        .unwrap();
        for (e, want) in one[0].estimate().iter().zip([4.0, 4.0, 0.0]) {
            assert!((e - want).abs() < 1e-12);
        }
        assert_eq!(one[0].recovered_count(), 0);
    }

    #[test]
    fn large_negative_values_are_recovered_exactly() {
        let x = [-(1i64 << 40), 1 << 35, -7];
        let keys = [
            KeyVectorData::Dense(vec![1, 0, 0]),
            KeyVectorData::Dense(vec![0, 1, 1]),
            KeyVectorData::Dense(vec![0, 1, -1]),
        ];
        let b = array![[x[0]], [x[1] + x[2]], [x[1] - x[2]]];
        let rec = &reconstruct(3, &keys, b.view()).unwrap()[0];
        assert_eq!(rec.exact(), &[Some(x[0]), Some(x[1]), Some(x[2])]);
        assert_eq!(rec.relative_error(&x), 0.0);
    }
}
