//! Softmax cross-entropy.
//!
//! For logits `z: [n, K]` and labels `y_m ∈ 0..K`:
//!
//! ```text
//! p[m, k] = e^{z[m,k] - max_k z[m,k]} / Σ_k' e^{z[m,k'] - max_k z[m,k]}
//! L       = Σ_m -ln p[m, y_m]                       (summed; the loop takes the batch mean)
//! dL/dz   = p - onehot(y)
//! ```

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

/// Replaces each row of logits by its softmax, in place (max-subtracted for stability).
pub fn softmax_rows_inplace(mut z: ArrayViewMut2<'_, f32>) {
    for mut row in z.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
}

/// `-ln p[y]` for one row of probabilities (clamped below at `1e-12` so that a confident wrong
/// prediction gives a large finite loss). A NaN probability gives NaN (never hidden by the
/// clamp).
#[must_use]
pub fn cross_entropy(p: &[f32], label: usize) -> f32 {
    let q = p[label];
    if q.is_nan() {
        return f32::NAN;
    }
    -q.max(1e-12).ln()
}

/// The softmax cross-entropy gradient `p - onehot(y)`, `[n, K]`.
///
/// # Panics
/// If `labels.len() != n` or a label is `>= K`.
#[must_use]
pub fn softmax_cross_entropy_grad(p: ArrayView2<'_, f32>, labels: &[u8]) -> Array2<f32> {
    assert_eq!(p.nrows(), labels.len());
    let mut g = p.to_owned();
    for (mut row, &y) in g.rows_mut().into_iter().zip(labels) {
        row[usize::from(y)] -= 1.0;
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn gradient_matches_finite_differences() {
        let z = array![[0.3f32, -1.2, 2.0], [0.0, 0.5, -0.5]];
        let labels = [2u8, 0];
        let loss = |z: &Array2<f32>| -> f64 {
            let mut p = z.clone();
            softmax_rows_inplace(p.view_mut());
            p.rows()
                .into_iter()
                .zip(labels)
                .map(|(r, y)| f64::from(cross_entropy(r.as_slice().unwrap(), usize::from(y))))
                .sum()
        };
        let mut p = z.clone();
        softmax_rows_inplace(p.view_mut());
        assert!((p.row(0).sum() - 1.0).abs() < 1e-6);
        let g = softmax_cross_entropy_grad(p.view(), &labels);
        for ((i, j), &an) in g.indexed_iter() {
            let h = 1e-2f32;
            let mut zp = z.clone();
            zp[[i, j]] += h;
            let mut zm = z.clone();
            zm[[i, j]] -= h;
            let fd = (loss(&zp) - loss(&zm)) / (2.0 * f64::from(h));
            assert!((fd - f64::from(an)).abs() < 1e-3, "({i},{j}): {fd} vs {an}");
        }
    }

    #[test]
    fn softmax_is_stable_for_large_logits() {
        let mut z = array![[1000.0f32, 1000.0, -1000.0]];
        softmax_rows_inplace(z.view_mut());
        assert!((z[[0, 0]] - 0.5).abs() < 1e-6 && z[[0, 2]] == 0.0);
        assert!(cross_entropy(&[0.0, 1.0], 0).is_finite());
        assert!(cross_entropy(&[f32::NAN, 1.0], 0).is_nan());
    }
}
