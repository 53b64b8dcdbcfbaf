//! Matrix products split over the rayon pool, bit-for-bit equal to `a.dot(&b)`.
//!
//! `C = A · B` with `A: [m, k]`, `B: [k, n]`. Each entry `C[i, j] = Σ_l A[i, l] · B[l, j]` is
//! computed by the GEMM kernel with an accumulation order that depends only on `k` (its blocks
//! of `k` and the order within each block), never on `m` or `n`. So cutting the output into
//! blocks of columns (or of rows) and multiplying each block on its own thread gives exactly
//! the entries of the whole product: [`par_dot`] is `a.dot(&b)` bit for bit, for any number
//! of threads. What it never splits is `k`, the summed dimension (that would change the
//! rounding).
//!
//! Small products (below [`PAR_MIN_WORK`] multiply-adds) and column-major operands (where
//! `dot` returns a column-major result) are left to `dot` itself.
//!
//! ```
//! use cryptonn::nn::gemm::par_dot;
//! use ndarray::Array2;
//! let a = Array2::from_shape_fn((64, 300), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 7.0);
//! let b = Array2::from_shape_fn((300, 500), |(i, j)| ((i * 5 + j) % 13) as f32 / 3.0);
//! assert_eq!(par_dot(a.view(), b.view()), a.dot(&b));
//! ```

use ndarray::{linalg::general_mat_mul, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Products with fewer multiply-adds (`m · n · k`) than this run on the calling thread.
pub const PAR_MIN_WORK: usize = 1 << 18;

/// Columns (or rows) of the output per task, at least.
const MIN_BLOCK: usize = 16;

/// `a · b`, computed in blocks of output columns (or rows, if there are more of them) on the
/// rayon pool; equal to `a.dot(&b)` bit for bit (see the [module docs](self)).
///
/// # Panics
/// If the inner dimensions differ (as `dot`).
#[must_use]
pub fn par_dot(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert_eq!(k, k2, "par_dot: inner dimensions {k} and {k2}");
    let threads = rayon::current_num_threads();
    let column_major = a.strides()[0] == 1 && b.strides()[0] == 1;
    let work = m.saturating_mul(n).saturating_mul(k);
    if threads < 2 || column_major || work < PAR_MIN_WORK || m.max(n) < 2 * MIN_BLOCK {
        return a.dot(&b);
    }
    let mut c = Array2::<f32>::zeros((m, n));
    // A few tasks per thread, so that uneven threads still balance.
    let (axis, len) = if n >= m { (Axis(1), n) } else { (Axis(0), m) };
    let block = len.div_ceil(4 * threads).max(MIN_BLOCK);
    if axis == Axis(1) {
        c.axis_chunks_iter_mut(Axis(1), block)
            .into_par_iter()
            .zip(b.axis_chunks_iter(Axis(1), block).into_par_iter())
            .for_each(|(mut cb, bb)| general_mat_mul(1.0, &a, &bb, 0.0, &mut cb));
    } else {
        c.axis_chunks_iter_mut(Axis(0), block)
            .into_par_iter()
            .zip(a.axis_chunks_iter(Axis(0), block).into_par_iter())
            .for_each(|(mut cb, ab)| general_mat_mul(1.0, &ab, &b, 0.0, &mut cb));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, cols), |_| rng.gen_range(-1.0f32..1.0))
    }

    /// Bit-identical to `dot` in pools of 1 to 5 threads, for wide, tall, transposed and
    /// odd-sized products, with `k` beyond one kernel block (256).
    #[test]
    fn blocks_equal_the_whole_product_bit_for_bit() {
        let shapes = [
            (16, 150, 800),
            (800, 150, 16),
            (6, 700, 1600),
            (97, 301, 131),
        ];
        for (s, &(m, k, n)) in shapes.iter().enumerate() {
            let a = random(m, k, s as u64);
            let b = random(k, n, 10 + s as u64);
            let want = a.dot(&b);
            let at = a.t().as_standard_layout().to_owned();
            for threads in 1..=5 {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| par_dot(a.view(), b.view()));
                assert!(got.is_standard_layout());
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{m}x{k}x{n} with {threads} threads");
                // A transposed view as the left operand (the backward passes' `wᵀ · dY`).
                let t = pool.install(|| par_dot(at.t(), b.view()));
                let want_t = at.t().dot(&b);
                assert!(t
                    .iter()
                    .zip(&want_t)
                    .all(|(x, y)| x.to_bits() == y.to_bits()));
            }
        }
    }
}
