//! Flattening: `[n, C, H, W] → [n, C·H·W]` (row-major per sample), and back for the gradient.
//!
//! ```text
//! y[m, (c·H + u)·W + v] = x[m, c, u, v]          dx = reshape(dy, [n, C, H, W])
//! ```
//!
//! It has no parameters; [`FlattenConfig`] exists for symmetry with the other layers.

use ndarray::{ArrayD, IxDyn};

/// Flatten has nothing to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlattenConfig;

/// `[n, ...] → [n, prod(...)]`.
#[must_use]
pub fn flatten(x: ArrayD<f32>) -> ArrayD<f32> {
    let n = x.shape().first().copied().unwrap_or(0);
    let len = x.len().checked_div(n).unwrap_or(0);
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[n, len]))
        .expect("a standard-layout array reshapes")
}

/// The backward pass: `dy: [n, prod(shape[1..])]` back to `shape`.
///
/// # Panics
/// If the lengths differ.
#[must_use]
pub fn unflatten(dy: ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    dy.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .expect("the gradient has the input's length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_round_trips_and_its_gradient_is_the_identity() {
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 2, 2]), |i| {
            (i[0] * 100 + i[1] * 10 + i[2] * 2 + i[3]) as f32
        });
        let y = flatten(x.clone());
        assert_eq!(y.shape(), &[2, 12]);
        assert_eq!(y[[1, 5]], x[[1, 1, 0, 1]]);
        // The loss L = Σ y ⊙ R has dL/dx = unflatten(R): checked against finite differences
        // trivially (L is linear), so compare directly.
        let r = ArrayD::from_shape_fn(IxDyn(&[2, 12]), |i| (i[0] + 2 * i[1]) as f32);
        let dx = unflatten(r.clone(), x.shape());
        let h = 0.5f32;
        let mut xp = x.clone();
        xp[[1, 2, 1, 0]] += h;
        let fd = ((&flatten(xp) * &r).sum() - (&y * &r).sum()) / h;
        assert_eq!(fd, dx[[1, 2, 1, 0]]);
    }
}
