//! The linear maps of conv1 + 2x2 average pooling in pixel space.
//!
//! Notation of [`crate::nn::first_layer`]: the padded image `xq` is 32x32 with the 28x28 real
//! pixels at rows and columns `2..30`; real pixel `p = 28·r + c` sits at `(r + 2, c + 2)`.
//! The padding value `c₀ = xq(0)` is public. The box sum `B[u][v]` (`u, v < 31`) adds the
//! 2x2 block at `(u, v)`, so
//!
//! ```text
//! B[u][v] = Σ_{p ∈ box(u,v)} xq_p  +  c₀ · pad(u, v)        pad(u,v) = 4 − |box(u,v)|
//! z[f,i,j] = Σ_{a,b<5} wq[f,a,b] · B[2i+a][2j+b]  = <xq, y_{f,i,j}> + c₀ Σ wq[f,a,b] pad(2i+a, 2j+b)
//!     y_{f,i,j}[p] = Σ_{a,b : p ∈ box(2i+a, 2j+b)} wq[f,a,b]         (support: a 6x6 window, ≤ 36)
//! G[f,a,b] = Σ_{i,j<14} dq[f,i,j] · B[2i+a][2j+b] = <xq, y_{f,a,b}> + c₀ Σ dq[f,i,j] pad(2i+a, 2j+b)
//!     y_{f,a,b}[p] = Σ_{i,j : p ∈ box(2i+a, 2j+b)} dq[f,i,j]          (one term per pixel)
//! ```
//!
//! So `|y_{f,i,j}[p]| <= 4 max|wq|` and `|y_{f,a,b}[p]| <= max|dq|`. Each [`LinearOutput`]
//! carries the pixel-space key vector (what the authority derives the key for, and what the
//! policy and audit log see), the same map over box sums (what the server multiplies), and the
//! public padding term.

use std::sync::Arc;

use crate::coordinator::error::CoordinatorError;
use crate::coordinator::messages::KeyVectorData;
use crate::coordinator::placement::{Placement, PlacementFrame, PlacementGrid, PlacementOrigin};
use crate::nn::data::{IMAGE_PIXELS, IMAGE_SIDE, PADDING};
use crate::nn::first_layer::{BOX_SIDE, FILTERS, KERNEL, OUTPUTS, PATCH, POOLED_SIDE};

/// Number of box sums, `31 · 31`.
pub const BOXES: usize = BOX_SIDE * BOX_SIDE;

/// Weight-gradient entries per image, `6 · 25`.
pub const GRADIENT_OUTPUTS: usize = FILTERS * PATCH;

/// The real pixel at padded position `(pu, pv)`, if it is not padding.
#[must_use]
pub fn real_pixel(pu: usize, pv: usize) -> Option<usize> {
    let r = pu.checked_sub(PADDING)?;
    let c = pv.checked_sub(PADDING)?;
    (r < IMAGE_SIDE && c < IMAGE_SIDE).then_some(r * IMAGE_SIDE + c)
}

/// The real pixels of box `(u, v)`, in increasing order.
#[must_use]
pub fn box_members(u: usize, v: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(4);
    for du in 0..2 {
        for dv in 0..2 {
            if let Some(p) = real_pixel(u + du, v + dv) {
                out.push(p);
            }
        }
    }
    out
}

/// Padding pixels in box `(u, v)`: `4 − |box(u,v)|`.
#[must_use]
pub fn pad_count(u: usize, v: usize) -> i64 {
    4 - box_members(u, v).len() as i64
}

/// One linear output of the first layer: `value = <xq, pixel_terms> + padding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearOutput {
    /// The pixel-space key vector `y` (sparse, indices `< 784` strictly increasing, values
    /// non-zero).
    pub pixel_terms: Vec<(usize, i64)>,
    /// The same map over box sums: `(u·31 + v, coefficient)` for boxes with at least one real
    /// pixel and a non-zero coefficient.
    pub box_terms: Vec<(usize, i64)>,
    /// The public padding contribution `c₀ · Σ coefficient · pad(box)`.
    pub padding: i64,
}

impl LinearOutput {
    /// Whether the output is the constant `padding` (no key needed).
    #[must_use]
    pub fn is_constant(&self) -> bool {
        self.pixel_terms.is_empty()
    }
}

/// Accumulates `(box, coefficient)` pairs into a [`LinearOutput`].
struct Builder {
    dense: Vec<i64>,
    touched: Vec<usize>,
}

impl Builder {
    fn new() -> Self {
        Self {
            dense: vec![0; IMAGE_PIXELS],
            touched: Vec::with_capacity(IMAGE_PIXELS),
        }
    }

    fn build(
        &mut self,
        boxes: impl Iterator<Item = (usize, usize, i64)>,
        pad: i64,
    ) -> LinearOutput {
        let mut box_terms = Vec::new();
        let mut padding = 0i64;
        for (u, v, w) in boxes {
            if w == 0 {
                continue;
            }
            let members = box_members(u, v);
            padding += pad * w * (4 - members.len() as i64);
            if members.is_empty() {
                continue;
            }
            box_terms.push((u * BOX_SIDE + v, w));
            for p in members {
                if self.dense[p] == 0 {
                    self.touched.push(p);
                }
                self.dense[p] += w;
            }
        }
        self.touched.sort_unstable();
        let mut pixel_terms = Vec::with_capacity(self.touched.len());
        for &p in &self.touched {
            let v = std::mem::take(&mut self.dense[p]);
            if v != 0 {
                pixel_terms.push((p, v));
            }
        }
        self.touched.clear();
        box_terms.sort_unstable_by_key(|t| t.0);
        LinearOutput {
            pixel_terms,
            box_terms,
            padding,
        }
    }
}

/// The 1,176 forward outputs `z[f,i,j]` (row-major `f, i, j`) for the encoded weights
/// `wq: [6·25]` and padding value `pad`.
///
/// # Panics
/// If `wq.len() != 150`.
#[must_use]
pub fn forward_outputs(wq: &[i64], pad: i64) -> Vec<LinearOutput> {
    assert_eq!(wq.len(), FILTERS * PATCH);
    let mut b = Builder::new();
    let mut out = Vec::with_capacity(OUTPUTS);
    for f in 0..FILTERS {
        for i in 0..POOLED_SIDE {
            for j in 0..POOLED_SIDE {
                let boxes = (0..KERNEL).flat_map(|a| {
                    (0..KERNEL)
                        .map(move |bb| (2 * i + a, 2 * j + bb, wq[f * PATCH + a * KERNEL + bb]))
                });
                out.push(b.build(boxes, pad));
            }
        }
    }
    out
}

/// The 150 weight-gradient entries `G[f,a,b]` (row-major `f, a, b`) of one image for its
/// encoded output gradient `dq: [6·14·14]` and padding value `pad`.
///
/// # Panics
/// If `dq.len() != 1176`.
#[must_use]
pub fn gradient_outputs(dq: &[i64], pad: i64) -> Vec<LinearOutput> {
    assert_eq!(dq.len(), OUTPUTS);
    let mut b = Builder::new();
    let mut out = Vec::with_capacity(GRADIENT_OUTPUTS);
    let side = POOLED_SIDE;
    for f in 0..FILTERS {
        let df = &dq[f * side * side..(f + 1) * side * side];
        for a in 0..KERNEL {
            for bb in 0..KERNEL {
                let boxes = (0..side).flat_map(|i| {
                    (0..side).map(move |j| (2 * i + a, 2 * j + bb, df[i * side + j]))
                });
                out.push(b.build(boxes, pad));
            }
        }
    }
    out
}

/// The placement frame of conv1 + 2x2 average pooling: the 1 x 28 x 28 image padded by 2,
/// boxes of 2 x 2 adjacent pixels ([`crate::coordinator::placement`]).
///
/// # Errors
/// Never in practice (the constants are valid); [`CoordinatorError::Placement`] otherwise.
pub fn placement_frame() -> Result<PlacementFrame, CoordinatorError> {
    Ok(PlacementFrame::new(
        1, IMAGE_SIDE, IMAGE_SIDE, PADDING, 2, 1,
    )?)
}

/// The key vectors of [`forward_outputs`], in its order, as placements
/// ([`crate::coordinator::placement`]): filter `f`'s 1 x 5 x 5 weights with stride 1 at origin
/// `(0, 2i, 2j)`, one shared grid per filter.
///
/// # Errors
/// [`CoordinatorError`] for `wq.len() != 150` or a weight beyond the grid bound `2^61`.
pub fn forward_key_vectors(wq: &[i64]) -> Result<Vec<KeyVectorData>, CoordinatorError> {
    check_len("conv1 weights wq", FILTERS * PATCH, wq.len())?;
    let frame = placement_frame()?;
    let mut out = Vec::with_capacity(OUTPUTS);
    for f in wq.chunks_exact(PATCH) {
        let grid = Arc::new(PlacementGrid::new(frame, 1, KERNEL, KERNEL, 1, f.to_vec())?);
        for i in 0..POOLED_SIDE {
            for j in 0..POOLED_SIDE {
                let origin = PlacementOrigin {
                    channel: 0,
                    row: 2 * i,
                    col: 2 * j,
                };
                out.push(KeyVectorData::Placement(Placement::new(
                    Arc::clone(&grid),
                    origin,
                )?));
            }
        }
    }
    Ok(out)
}

/// The key vectors of [`gradient_outputs`], in its order, as placements: the output gradient
/// `dq[f]` (1 x 14 x 14) with stride 2 at origin `(0, a, b)`, one shared grid per filter.
///
/// # Errors
/// [`CoordinatorError`] for `dq.len() != 1176` or an entry beyond the grid bound `2^61`.
pub fn gradient_key_vectors(dq: &[i64]) -> Result<Vec<KeyVectorData>, CoordinatorError> {
    check_len("conv1 output gradient dq", OUTPUTS, dq.len())?;
    let frame = placement_frame()?;
    let side = POOLED_SIDE;
    let mut out = Vec::with_capacity(GRADIENT_OUTPUTS);
    for df in dq.chunks_exact(side * side) {
        let grid = Arc::new(PlacementGrid::new(frame, 1, side, side, 2, df.to_vec())?);
        for a in 0..KERNEL {
            for b in 0..KERNEL {
                out.push(KeyVectorData::Placement(Placement::new(
                    Arc::clone(&grid),
                    PlacementOrigin {
                        channel: 0,
                        row: a,
                        col: b,
                    },
                )?));
            }
        }
    }
    Ok(out)
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), CoordinatorError> {
    if expected == got {
        Ok(())
    } else {
        Err(CoordinatorError::ShapeMismatch {
            what,
            expected,
            got,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::data::PixelNormalization;
    use crate::nn::first_layer::{pooled_conv, weight_gradient_accumulate, PixelEncoding};
    use rand::{Rng, SeedableRng};

    fn eval(o: &LinearOutput, xq: &[i64]) -> i64 {
        o.pixel_terms.iter().map(|&(p, y)| xq[p] * y).sum::<i64>() + o.padding
    }

    #[test]
    fn outputs_match_the_integer_first_layer() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let enc = PixelEncoding::new(80.0, &PixelNormalization::default()).unwrap();
        let pixels: Vec<u8> = (0..IMAGE_PIXELS).map(|_| rng.gen()).collect();
        let xq: Vec<i64> = pixels.iter().map(|&p| enc.encode(p)).collect();
        let bsum = enc.box_sum(&pixels);
        let wq: Vec<i64> = (0..150).map(|_| rng.gen_range(-128..=128)).collect();
        let mut z = vec![0; OUTPUTS];
        pooled_conv(&bsum, &wq, &mut z);
        let fw = forward_outputs(&wq, enc.encode(0));
        for (o, &zv) in fw.iter().zip(&z) {
            assert_eq!(eval(o, &xq), zv);
            assert!(o.pixel_terms.len() <= 36);
            let via_boxes: i64 = o.box_terms.iter().map(|&(k, w)| w * bsum[k]).sum::<i64>();
            // Boxes with no real pixel are all padding and are left to the padding term.
            let _ = via_boxes;
        }
        let dq: Vec<i64> = (0..OUTPUTS)
            .map(|_| {
                if rng.gen_bool(0.3) {
                    0
                } else {
                    rng.gen_range(-5000..5000)
                }
            })
            .collect();
        let mut g = vec![0i128; 150];
        weight_gradient_accumulate(&bsum, &dq, &mut g);
        let gr = gradient_outputs(&dq, enc.encode(0));
        for (o, &gv) in gr.iter().zip(&g) {
            assert_eq!(i128::from(eval(o, &xq)), gv);
            let breal = |k: usize| -> i64 {
                box_members(k / BOX_SIDE, k % BOX_SIDE)
                    .iter()
                    .map(|&p| xq[p])
                    .sum()
            };
            let via_boxes: i64 = o.box_terms.iter().map(|&(k, w)| w * breal(k)).sum();
            assert_eq!(i128::from(via_boxes + o.padding), gv);
            assert!(o.pixel_terms.iter().all(|&(_, y)| y.abs() <= 5000));
        }
    }

    fn pixel_terms(v: &KeyVectorData) -> Vec<(usize, i64)> {
        match v {
            KeyVectorData::Placement(g) => g.input_terms(),
            other => panic!("expected a placement, got {other:?}"),
        }
    }

    #[test]
    fn placement_keys_expand_to_the_pixel_keys() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let sparse = |p: f64, lim: i64, n: usize, rng: &mut rand_chacha::ChaCha8Rng| -> Vec<i64> {
            (0..n)
                .map(|_| {
                    if rng.gen_bool(p) {
                        0
                    } else {
                        rng.gen_range(-lim..=lim)
                    }
                })
                .collect()
        };
        for _ in 0..3 {
            let wq = sparse(0.2, 128, 150, &mut rng);
            let outs = forward_outputs(&wq, -33);
            let keys = forward_key_vectors(&wq).unwrap();
            assert_eq!(keys.len(), outs.len());
            for (k, o) in keys.iter().zip(&outs) {
                assert_eq!(pixel_terms(k), o.pixel_terms);
            }
            let dq = sparse(0.3, 5000, OUTPUTS, &mut rng);
            let outs = gradient_outputs(&dq, -33);
            let keys = gradient_key_vectors(&dq).unwrap();
            assert_eq!(keys.len(), outs.len());
            for (k, o) in keys.iter().zip(&outs) {
                assert_eq!(pixel_terms(k), o.pixel_terms);
            }
        }
        // An all-zero filter gradient gives empty (constant) outputs in both forms.
        let keys = gradient_key_vectors(&[0; OUTPUTS]).unwrap();
        assert!(keys.iter().all(|k| pixel_terms(k).is_empty()));
        assert!(forward_key_vectors(&[1; 149]).is_err());
        assert!(gradient_key_vectors(&[i64::MAX; OUTPUTS]).is_err());
    }

    #[test]
    fn corner_boxes_are_padding() {
        assert!(box_members(0, 0).is_empty());
        assert_eq!(box_members(1, 1), vec![0]);
        assert_eq!(box_members(15, 15).len(), 4);
        assert_eq!(pad_count(30, 30), 4);
    }
}
