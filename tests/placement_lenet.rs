//! LeNet-5's first layer (conv1: 6 filters of 5x5 over the 1 x 28 x 28 image, padding 2, stride
//! 1, then a 2x2 average pool) as generic placements: every forward and weight-gradient key
//! expands to exactly the pixel vector the box grid it replaces gave, so the keys the authority
//! issues, and thus the weights of secure training, do not change.
//!
//! `legacy_box_grid_terms` is the expansion of the former `coordinator::box_grid` module
//! (`BoxGridVector::pixel_terms` at commit bf1db56), copied verbatim apart from names.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::Arc;

use cryptonn::coordinator::placement::{Placement, PlacementFrame, PlacementGrid, PlacementOrigin};
use rand::{Rng, SeedableRng};

const IMAGE_SIDE: usize = 28;
const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
const PADDING: usize = 2;
const BOX_SIDE: usize = 31;
const FILTERS: usize = 6;
const KERNEL: usize = 5;
const POOLED_SIDE: usize = 14;

/// The real pixel at padded position `(pu, pv)` (former `geometry::real_pixel`).
fn real_pixel(pu: usize, pv: usize) -> Option<usize> {
    let r = pu.checked_sub(PADDING)?;
    let c = pv.checked_sub(PADDING)?;
    (r < IMAGE_SIDE && c < IMAGE_SIDE).then_some(r * IMAGE_SIDE + c)
}

/// The former box grid's expansion: `rows x cols` coefficients, `stride` boxes apart, at box
/// `(u0, v0)` of the 31x31 boxes of the 32x32 padded image.
fn legacy_box_grid_terms(
    rows: usize,
    cols: usize,
    stride: usize,
    coefficients: &[i64],
    (u0, v0): (usize, usize),
) -> Vec<(usize, i64)> {
    assert!(u0 + (rows - 1) * stride < BOX_SIDE && v0 + (cols - 1) * stride < BOX_SIDE);
    let mut y = [0i64; IMAGE_PIXELS];
    for r in 0..rows {
        for s in 0..cols {
            let c = coefficients[r * cols + s];
            if c == 0 {
                continue;
            }
            let (u, v) = (u0 + stride * r, v0 + stride * s);
            for (du, dv) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                if let Some(p) = real_pixel(u + du, v + dv) {
                    y[p] += c;
                }
            }
        }
    }
    y.iter()
        .enumerate()
        .filter(|(_, &v)| v != 0)
        .map(|(p, &v)| (p, v))
        .collect()
}

fn lenet_frame() -> PlacementFrame {
    // C = 1, H = W = 28, padding 2, pool p = 2, dilation = conv stride s = 1.
    PlacementFrame::new(1, IMAGE_SIDE, IMAGE_SIDE, PADDING, 2, 1).unwrap()
}

fn random(rng: &mut rand_chacha::ChaCha8Rng, n: usize, zeros: f64, lim: i64) -> Vec<i64> {
    (0..n)
        .map(|_| {
            if rng.gen_bool(zeros) {
                0
            } else {
                rng.gen_range(-lim..=lim)
            }
        })
        .collect()
}

#[test]
fn lenet_frame_has_the_box_grid_boxes() {
    let f = lenet_frame();
    assert_eq!((f.box_rows(), f.box_cols(), f.box_count()), (31, 31, 961));
    assert_eq!(f.input_len(), IMAGE_PIXELS);
    for u in 0..BOX_SIDE {
        for v in 0..BOX_SIDE {
            // Box index u · 31 + v, as the box grid's origins were numbered.
            assert_eq!(f.box_index(0, u, v), Some(u * BOX_SIDE + v));
            let legacy: Vec<usize> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                .iter()
                .filter_map(|&(du, dv)| real_pixel(u + du, v + dv))
                .collect();
            assert_eq!(f.box_members(0, u, v), legacy);
            assert_eq!(f.pad_count(0, u, v), 4 - legacy.len());
        }
    }
}

/// All 1,176 forward keys `(f, i, j)`: filter `f`'s 1 x 5 x 5 grid, stride 1, origin
/// `(0, 2i, 2j)`; all 150 gradient keys `(f, a, b)`: `dq[f]` (1 x 14 x 14), stride 2, origin
/// `(0, a, b)`. Random sparse weights and gradients, including extreme ones.
#[test]
fn every_lenet_key_expands_as_the_box_grid_did() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    let frame = lenet_frame();
    let patch = KERNEL * KERNEL;
    let side = POOLED_SIDE;
    for round in 0..4 {
        let lim = if round == 3 { i64::MAX / 4 } else { 5000 };
        let wq = random(&mut rng, FILTERS * patch, 0.2, lim);
        let dq = random(&mut rng, FILTERS * side * side, 0.3, lim);
        for f in 0..FILTERS {
            let w = &wq[f * patch..(f + 1) * patch];
            let grid =
                Arc::new(PlacementGrid::new(frame, 1, KERNEL, KERNEL, 1, w.to_vec()).unwrap());
            for i in 0..side {
                for j in 0..side {
                    let origin = PlacementOrigin {
                        channel: 0,
                        row: 2 * i,
                        col: 2 * j,
                    };
                    let y = Placement::new(Arc::clone(&grid), origin).unwrap();
                    assert_eq!(
                        y.input_terms(),
                        legacy_box_grid_terms(KERNEL, KERNEL, 1, w, (2 * i, 2 * j)),
                        "forward key ({f}, {i}, {j})"
                    );
                    assert_eq!(y.expansion_size(), 4 * patch);
                }
            }
            let d = &dq[f * side * side..(f + 1) * side * side];
            let grid = Arc::new(PlacementGrid::new(frame, 1, side, side, 2, d.to_vec()).unwrap());
            for a in 0..KERNEL {
                for b in 0..KERNEL {
                    let origin = PlacementOrigin {
                        channel: 0,
                        row: a,
                        col: b,
                    };
                    let y = Placement::new(Arc::clone(&grid), origin).unwrap();
                    assert_eq!(
                        y.input_terms(),
                        legacy_box_grid_terms(side, side, 2, d, (a, b)),
                        "gradient key ({f}, {a}, {b})"
                    );
                }
            }
        }
    }
}

/// For LeNet's grids the placement refuses what the box grid refused: coefficients beyond
/// `i64::MAX / 4`, grids wider than the 31 boxes, origins that leave them. (A single cell covers
/// each pixel at most once, so it may take any `i64` but `MIN`.)
#[test]
fn lenet_bounds_are_the_box_grid_bounds() {
    let frame = lenet_frame();
    assert!(PlacementGrid::new(frame, 1, 1, 1, 1, vec![i64::MAX]).is_ok()); // one cell: no overlap
    assert!(PlacementGrid::new(frame, 1, 5, 5, 1, vec![i64::MAX / 4 + 1; 25]).is_err());
    assert!(PlacementGrid::new(frame, 1, 14, 14, 2, vec![i64::MAX / 4 + 1; 196]).is_err());
    assert!(PlacementGrid::new(frame, 1, 17, 1, 2, vec![1; 17]).is_err()); // spans 33 boxes
    let g = Arc::new(PlacementGrid::new(frame, 1, 14, 14, 2, vec![1; 196]).unwrap());
    let at = |row, col| {
        Placement::new(
            Arc::clone(&g),
            PlacementOrigin {
                channel: 0,
                row,
                col,
            },
        )
    };
    assert!(at(4, 4).is_ok());
    assert!(at(5, 0).is_err());
    assert!(frame.box_at(961).is_err());
}
