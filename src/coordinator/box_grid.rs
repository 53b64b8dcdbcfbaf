//! Key vectors of the fused conv1 + 2x2 average-pool layer in their compact form: a grid of
//! coefficients over the 2x2 box sums of the padded image.
//!
//! Notation of [`geometry`](crate::coordinator::secure_training::geometry): the 28x28 image
//! sits in a 32x32 frame padded by 2; box `(u, v)` (`u, v < 31`) is the 2x2 block whose
//! top-left corner is `(u, v)`, and `box(u, v)` is the set of its real pixels. A grid of
//! `rows x cols` coefficients `c` with a `stride`, placed at an origin `(u₀, v₀)`, is the
//! pixel-space key vector
//!
//! ```text
//! y[p] = Σ_{r < rows, s < cols : p ∈ box(u₀ + stride·r, v₀ + stride·s)}  c[r·cols + s]     (p < 784)
//! ```
//!
//! - conv1's forward key for output `(f, i, j)` is the 5x5 grid of filter `f`'s weights, stride 1,
//!   at origin `(2i, 2j)`;
//! - its weight-gradient key for entry `(f, a, b)` is the 14x14 grid of the output gradient
//!   `dq[f]`, stride 2, at origin `(a, b)`.
//!
//! One grid serves every origin of its filter. A training step of 16 images thus asks for its
//! 2,400 weight-gradient keys with 18,816 coefficients and 2,400 origins instead of ~1.8 M pixel
//! entries. The authority expands every vector ([`BoxGridVector::pixel_terms`]) before its
//! policy, key derivation and audit log see it: they see the same `y`, and issue the same key,
//! as for the sparse pixel form.
//!
//! Coefficients are bounded by `|c| <= i64::MAX / 4`, so that the at most 4 boxes of a grid
//! that cover a pixel never overflow its entry.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use cryptonn::coordinator::box_grid::{BoxGrid, BoxGridVector, BoxOrigin};
//! use cryptonn::coordinator::{Authority, DomainConfig, FeipKeyRequest, KeyVectorData,
//!                             RequesterId};
//! use cryptonn::fe::feip::FeipParams;
//! use cryptonn::fe::group::ristretto::Ristretto255;
//!
//! // One conv1 filter (5x5 weights) placed for the pooled output (i, j) = (3, 4).
//! let filter = Arc::new(BoxGrid::new(5, 5, 1, (1..=25).collect())?);
//! let y = BoxGridVector::new(filter, BoxOrigin { u: 6, v: 8 })?;
//! let pixels = y.pixel_terms();
//! assert_eq!(pixels.len(), 36); // a 6x6 window of the image
//!
//! // The authority issues the same key for the grid as for its pixel form.
//! let mut authority = Authority::new(Ristretto255);
//! let domain = authority.create_domain(DomainConfig::new(FeipParams::new(784, 255, 4096)?))?;
//! let server = RequesterId::new("server-1");
//! let mut ask = |v| authority.issue_feip_keys(&server, &FeipKeyRequest { domain, vectors: vec![v] });
//! let by_grid = ask(KeyVectorData::BoxGrid(y))?;
//! let by_pixels = ask(KeyVectorData::Sparse(pixels))?;
//! assert_eq!(by_grid.keys, by_pixels.keys);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::coordinator::error::CoordinatorError;
use crate::coordinator::secure_training::geometry::real_pixel;
use crate::fe::error::FeError;
use crate::nn::data::IMAGE_PIXELS;
use crate::nn::first_layer::BOX_SIDE;

/// The largest `|coefficient|` of a grid.
pub const MAX_COEFFICIENT: i64 = i64::MAX / 4;

/// A `rows x cols` grid of coefficients over box sums, `stride` boxes apart (see the
/// [module docs](self)). Validated on construction and on deserialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBoxGrid", into = "RawBoxGrid")]
pub struct BoxGrid {
    rows: usize,
    cols: usize,
    stride: usize,
    coefficients: Vec<i64>,
}

#[derive(Serialize, Deserialize)]
struct RawBoxGrid {
    rows: usize,
    cols: usize,
    stride: usize,
    coefficients: Vec<i64>,
}

impl TryFrom<RawBoxGrid> for BoxGrid {
    type Error = CoordinatorError;
    fn try_from(r: RawBoxGrid) -> Result<Self, Self::Error> {
        Self::new(r.rows, r.cols, r.stride, r.coefficients)
    }
}

impl From<BoxGrid> for RawBoxGrid {
    fn from(g: BoxGrid) -> Self {
        Self {
            rows: g.rows,
            cols: g.cols,
            stride: g.stride,
            coefficients: g.coefficients,
        }
    }
}

impl BoxGrid {
    /// A grid of `coefficients` (row-major `rows x cols`), `stride` boxes apart.
    ///
    /// # Errors
    /// [`CoordinatorError::InvalidConfig`] if a dimension or the stride is zero or the grid is
    /// wider than the 31 boxes of a side; [`CoordinatorError::ShapeMismatch`] if there are not
    /// `rows · cols` coefficients; [`FeError::KeyOutOfBound`] (naming the coefficient) for
    /// `|c| > MAX_COEFFICIENT`.
    pub fn new(
        rows: usize,
        cols: usize,
        stride: usize,
        coefficients: Vec<i64>,
    ) -> Result<Self, CoordinatorError> {
        if rows == 0 || cols == 0 || stride == 0 {
            return Err(CoordinatorError::InvalidConfig(
                "a box grid needs rows, columns and a stride of at least 1",
            ));
        }
        let span = |n: usize| (n - 1).checked_mul(stride).filter(|&s| s < BOX_SIDE);
        if span(rows).is_none() || span(cols).is_none() {
            return Err(CoordinatorError::InvalidConfig(
                "a box grid spans more than the 31 boxes of a side",
            ));
        }
        if coefficients.len() != rows * cols {
            return Err(CoordinatorError::ShapeMismatch {
                what: "box grid coefficients (rows x cols)",
                expected: rows * cols,
                got: coefficients.len(),
            });
        }
        if let Some((index, &value)) = coefficients
            .iter()
            .enumerate()
            .find(|(_, c)| c.unsigned_abs() > MAX_COEFFICIENT.unsigned_abs())
        {
            return Err(FeError::KeyOutOfBound {
                index,
                value,
                bound: MAX_COEFFICIENT.unsigned_abs(),
            }
            .into());
        }
        Ok(Self {
            rows,
            cols,
            stride,
            coefficients,
        })
    }

    /// Rows of coefficients.
    #[must_use]
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns of coefficients.
    #[must_use]
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Boxes between neighbouring coefficients.
    #[must_use]
    pub fn stride(&self) -> usize {
        self.stride
    }
    /// The coefficients, row-major.
    #[must_use]
    pub fn coefficients(&self) -> &[i64] {
        &self.coefficients
    }

    /// Whether the grid placed at `origin` stays inside the 31x31 boxes.
    #[must_use]
    pub fn fits_at(&self, origin: BoxOrigin) -> bool {
        origin.u + (self.rows - 1) * self.stride < BOX_SIDE
            && origin.v + (self.cols - 1) * self.stride < BOX_SIDE
    }
}

/// The box `(u, v)` at which a grid's first coefficient sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BoxOrigin {
    /// Box row, `< 31`.
    pub u: usize,
    /// Box column, `< 31`.
    pub v: usize,
}

impl BoxOrigin {
    /// The box index `u · 31 + v` (the wire form).
    #[must_use]
    pub fn index(self) -> usize {
        self.u * BOX_SIDE + self.v
    }

    /// The origin of box index `u · 31 + v`, if `< 961`.
    #[must_use]
    pub fn from_index(index: usize) -> Option<Self> {
        (index < BOX_SIDE * BOX_SIDE).then_some(Self {
            u: index / BOX_SIDE,
            v: index % BOX_SIDE,
        })
    }
}

/// One key vector: a shared grid at one origin (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBoxGridVector", into = "RawBoxGridVector")]
pub struct BoxGridVector {
    grid: Arc<BoxGrid>,
    origin: BoxOrigin,
}

#[derive(Serialize, Deserialize)]
struct RawBoxGridVector {
    grid: BoxGrid,
    origin: BoxOrigin,
}

impl TryFrom<RawBoxGridVector> for BoxGridVector {
    type Error = CoordinatorError;
    fn try_from(r: RawBoxGridVector) -> Result<Self, Self::Error> {
        Self::new(Arc::new(r.grid), r.origin)
    }
}

impl From<BoxGridVector> for RawBoxGridVector {
    fn from(v: BoxGridVector) -> Self {
        Self {
            grid: Arc::unwrap_or_clone(v.grid),
            origin: v.origin,
        }
    }
}

impl BoxGridVector {
    /// `grid` placed at `origin`.
    ///
    /// # Errors
    /// [`CoordinatorError::InvalidConfig`] if the grid leaves the 31x31 boxes there.
    pub fn new(grid: Arc<BoxGrid>, origin: BoxOrigin) -> Result<Self, CoordinatorError> {
        if !grid.fits_at(origin) {
            return Err(CoordinatorError::InvalidConfig(
                "a box grid placed at this origin leaves the 31x31 boxes",
            ));
        }
        Ok(Self { grid, origin })
    }

    /// The shared grid.
    #[must_use]
    pub fn grid(&self) -> &Arc<BoxGrid> {
        &self.grid
    }

    /// Where the grid sits.
    #[must_use]
    pub fn origin(&self) -> BoxOrigin {
        self.origin
    }

    /// The pixel-space vector `y` of length 784 as its non-zero `(pixel, value)` entries,
    /// pixels increasing.
    #[must_use]
    pub fn pixel_terms(&self) -> Vec<(usize, i64)> {
        let g = &*self.grid;
        let mut y = [0i64; IMAGE_PIXELS];
        for r in 0..g.rows {
            for s in 0..g.cols {
                let c = g.coefficients[r * g.cols + s];
                if c == 0 {
                    continue;
                }
                let (u, v) = (self.origin.u + g.stride * r, self.origin.v + g.stride * s);
                for (du, dv) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    if let Some(p) = real_pixel(u + du, v + dv) {
                        // At most 4 boxes of a grid cover a pixel and |c| <= i64::MAX / 4.
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

    /// The number of pixel entries the expansion visits (`4 · rows · cols`), a bound on its
    /// cost and size.
    #[must_use]
    pub fn expansion_size(&self) -> usize {
        4 * self.grid.rows * self.grid.cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_box_expands_to_its_pixels() {
        let g = Arc::new(BoxGrid::new(1, 1, 1, vec![5]).unwrap());
        // Box (2, 2) is the real pixels (0,0), (0,1), (1,0), (1,1).
        let v = BoxGridVector::new(g.clone(), BoxOrigin { u: 2, v: 2 }).unwrap();
        assert_eq!(v.pixel_terms(), vec![(0, 5), (1, 5), (28, 5), (29, 5)]);
        // Box (0, 0) is padding only.
        let v = BoxGridVector::new(g, BoxOrigin { u: 0, v: 0 }).unwrap();
        assert!(v.pixel_terms().is_empty());
    }

    #[test]
    fn overlapping_boxes_add_up() {
        // Stride 1: boxes (2,2) and (2,3) share pixels 1 and 29.
        let g = Arc::new(BoxGrid::new(1, 2, 1, vec![1, 10]).unwrap());
        let v = BoxGridVector::new(g, BoxOrigin { u: 2, v: 2 }).unwrap();
        assert_eq!(
            v.pixel_terms(),
            vec![(0, 1), (1, 11), (2, 10), (28, 1), (29, 11), (30, 10)]
        );
    }

    #[test]
    fn bad_grids_are_refused() {
        assert!(BoxGrid::new(0, 1, 1, vec![]).is_err());
        assert!(BoxGrid::new(1, 1, 0, vec![1]).is_err());
        assert!(BoxGrid::new(2, 2, 1, vec![1; 3]).is_err());
        assert!(BoxGrid::new(17, 1, 2, vec![1; 17]).is_err()); // spans 33 boxes
        assert!(BoxGrid::new(1, 1, 1, vec![i64::MAX]).is_err());
        let g = Arc::new(BoxGrid::new(14, 14, 2, vec![1; 196]).unwrap());
        assert!(BoxGridVector::new(g.clone(), BoxOrigin { u: 4, v: 4 }).is_ok());
        assert!(BoxGridVector::new(g, BoxOrigin { u: 5, v: 0 }).is_err());
        assert!(BoxOrigin::from_index(961).is_none());
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let g = Arc::new(BoxGrid::new(2, 1, 3, vec![4, -2]).unwrap());
        let v = BoxGridVector::new(g, BoxOrigin { u: 7, v: 30 }).unwrap();
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<BoxGridVector>(&json).unwrap(), v);
        let bad = json.replace("\"v\":30", "\"v\":31");
        assert!(serde_json::from_str::<BoxGridVector>(&bad).is_err());
    }
}
