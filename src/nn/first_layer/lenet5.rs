//! LeNet-5's first layer on MNIST (C = 1, 28x28 padded by 2 with black pixels, 6 filters of
//! 5x5, 2x2 average pooling folded in) with fixed sizes: the constants and kernels the secure
//! training and prediction code of the LeNet-5 path uses. The generic definitions are
//! [`FirstLayerSpec`](super::FirstLayerSpec) with [`FirstLayerSpec::lenet5`](super::FirstLayerSpec::lenet5);
//! the functions here compute exactly the same integers.

use crate::nn::data::{PixelNormalization, IMAGE_SIDE, PADDED_SIDE, PADDING};
use crate::nn::error::NnError;
use crate::nn::first_layer::QuantConfig;

/// Filters of conv1.
pub const FILTERS: usize = 6;
/// Kernel side of conv1.
pub const KERNEL: usize = 5;
/// Weights per filter, `5 · 5`.
pub const PATCH: usize = KERNEL * KERNEL;
/// Side of the box-sum image, `32 - 1`.
pub const BOX_SIDE: usize = PADDED_SIDE - 1;
/// Side of the pooled output, `(32 - 5 + 1) / 2 = (31 - 5) / 2 + 1 = 14` (a stride-2
/// convolution of the box-sum image).
pub const POOLED_SIDE: usize = (BOX_SIDE - KERNEL) / 2 + 1;
/// Outputs per image, `6 · 14 · 14 = 1,176`.
pub const OUTPUTS: usize = FILTERS * POOLED_SIDE * POOLED_SIDE;

/// `xq` for every pixel byte: `round(norm(byte) · S_x)`.
#[derive(Debug, Clone)]
pub struct PixelEncoding {
    table: [i64; 256],
}

impl PixelEncoding {
    /// The table for normalisation `norm` and scale `S_x`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] for a bad scale or normalisation, [`NnError::Encoding`] if an
    /// encoding exceeds 2^53.
    pub fn new(scale_x: f64, norm: &PixelNormalization) -> Result<Self, NnError> {
        norm.validate()?;
        let codec = QuantConfig::codec(scale_x)?;
        let mut table = [0i64; 256];
        for (p, t) in table.iter_mut().enumerate() {
            *t = codec
                .encode(norm.apply_f64(p as u8))
                .map_err(|source| NnError::Encoding {
                    what: "pixels",
                    source,
                    hint: "lower --scale-x",
                })?;
        }
        Ok(Self { table })
    }

    /// `xq` of pixel byte `p`.
    #[must_use]
    pub fn encode(&self, p: u8) -> i64 {
        self.table[usize::from(p)]
    }

    /// The largest `|xq|` over all bytes.
    #[must_use]
    pub fn max_abs(&self) -> i64 {
        self.table.iter().map(|v| v.abs()).max().unwrap_or(0)
    }

    /// The box sum `B` (31x31, row-major) of the encoded 28x28 image `pixels`, padded to 32x32
    /// with black pixels (`xq(0)`).
    ///
    /// # Panics
    /// If `pixels.len() != 784`.
    #[must_use]
    pub fn box_sum(&self, pixels: &[u8]) -> Vec<i64> {
        assert_eq!(pixels.len(), IMAGE_SIDE * IMAGE_SIDE);
        let mut xq = [self.table[0]; PADDED_SIDE * PADDED_SIDE];
        for (r, row) in pixels.chunks_exact(IMAGE_SIDE).enumerate() {
            let start = (r + PADDING) * PADDED_SIDE + PADDING;
            for (d, &p) in xq[start..start + IMAGE_SIDE].iter_mut().zip(row) {
                *d = self.table[usize::from(p)];
            }
        }
        box_sum(&xq)
    }
}

/// The 2x2 box sum `B[u, v] = x[u, v] + x[u+1, v] + x[u, v+1] + x[u+1, v+1]` of a 32x32 image.
///
/// # Panics
/// If `x.len() != 1024`.
#[must_use]
pub fn box_sum(x: &[i64]) -> Vec<i64> {
    assert_eq!(x.len(), PADDED_SIDE * PADDED_SIDE);
    let mut b = vec![0i64; BOX_SIDE * BOX_SIDE];
    for u in 0..BOX_SIDE {
        let r0 = &x[u * PADDED_SIDE..(u + 1) * PADDED_SIDE];
        let r1 = &x[(u + 1) * PADDED_SIDE..(u + 2) * PADDED_SIDE];
        for v in 0..BOX_SIDE {
            b[u * BOX_SIDE + v] = r0[v] + r1[v] + r0[v + 1] + r1[v + 1];
        }
    }
    b
}

/// `z[f, i, j] = Σ_{a,b} wq[f, a·5 + b] · B[2i + a, 2j + b]` for one image, written to
/// `out` (`[6, 14, 14]` row-major). The caller guarantees no `i64` overflow
/// (`25 · max|wq| · max|B| < 2^63`).
///
/// # Panics
/// If the slices have the wrong lengths.
pub fn pooled_conv(b: &[i64], wq: &[i64], out: &mut [i64]) {
    assert_eq!(b.len(), BOX_SIDE * BOX_SIDE);
    assert_eq!(wq.len(), FILTERS * PATCH);
    assert_eq!(out.len(), OUTPUTS);
    for (wf, zf) in wq
        .chunks_exact(PATCH)
        .zip(out.chunks_exact_mut(POOLED_SIDE * POOLED_SIDE))
    {
        for i in 0..POOLED_SIDE {
            for j in 0..POOLED_SIDE {
                let mut acc = 0i64;
                for a in 0..KERNEL {
                    let row = &b[(2 * i + a) * BOX_SIDE + 2 * j..][..KERNEL];
                    let wrow = &wf[a * KERNEL..(a + 1) * KERNEL];
                    for (&w, &x) in wrow.iter().zip(row) {
                        acc += w * x;
                    }
                }
                zf[i * POOLED_SIDE + j] = acc;
            }
        }
    }
}

/// Adds `G_n[f, a·5 + b] = Σ_{i,j} dq[f, i, j] · B[2i + a, 2j + b]` for one image onto `acc`
/// (`[6, 25]` row-major). The caller guarantees no `i64` overflow in the per-image sums
/// (`196 · max|dq| · max|B| < 2^63`).
///
/// # Panics
/// If the slices have the wrong lengths.
pub fn weight_gradient_accumulate(b: &[i64], dq: &[i64], acc: &mut [i128]) {
    assert_eq!(b.len(), BOX_SIDE * BOX_SIDE);
    assert_eq!(dq.len(), OUTPUTS);
    assert_eq!(acc.len(), FILTERS * PATCH);
    for (df, gf) in dq
        .chunks_exact(POOLED_SIDE * POOLED_SIDE)
        .zip(acc.chunks_exact_mut(PATCH))
    {
        let mut g = [0i64; PATCH];
        for i in 0..POOLED_SIDE {
            for j in 0..POOLED_SIDE {
                let d = df[i * POOLED_SIDE + j];
                if d == 0 {
                    continue;
                }
                for a in 0..KERNEL {
                    let row = &b[(2 * i + a) * BOX_SIDE + 2 * j..][..KERNEL];
                    for (gv, &x) in g[a * KERNEL..(a + 1) * KERNEL].iter_mut().zip(row) {
                        *gv += d * x;
                    }
                }
            }
        }
        for (a, v) in gf.iter_mut().zip(g) {
            *a += i128::from(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_sum_by_hand() {
        let mut x = vec![0i64; 1024];
        x[0] = 1;
        x[1] = 2;
        x[32] = 3;
        x[33] = 4;
        let b = box_sum(&x);
        assert_eq!(b[0], 10);
        assert_eq!(b[1], 2 + 4);
        assert_eq!(b[BOX_SIDE], 3 + 4);
        assert_eq!(b[BOX_SIDE + 1], 4);
        // Each pixel counts once per window containing it: 1, 2, 2 and 4 windows.
        assert_eq!(b.iter().sum::<i64>(), 1 + 2 * 2 + 3 * 2 + 4 * 4);
    }

    #[test]
    fn default_pixel_encoding_is_exact() {
        let enc = PixelEncoding::new(80.0, &PixelNormalization::default()).unwrap();
        for p in 0..=255u8 {
            assert_eq!(enc.encode(p), i64::from(p) - 33);
        }
        assert_eq!(enc.max_abs(), 222);
        let unit = PixelEncoding::new(255.0, &PixelNormalization::unit()).unwrap();
        assert!((0..=255u8).all(|p| unit.encode(p) == i64::from(p)));
    }
}
