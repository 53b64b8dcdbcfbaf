//! Placement key vectors: a compact form of the key vectors of a convolution (optionally
//! followed by an average pool) over a `C x H x W` input, as one shared grid of coefficients
//! placed at many origins.
//!
//! # The math
//! A [`PlacementFrame`] describes the input and its boxes: the real input `x` is `C x H x W`
//! (flat index `q = (c·H + h)·W + w`), conceptually padded by `padding` on each side; a box has
//! `pool x pool` positions `dilation` apart. Box `(c, u, v)` (`u < H + 2·padding −
//! (pool−1)·dilation`, likewise `v`) is the set of its *real* positions
//!
//! ```text
//! box(c, u, v) = { (c, u + s·di − padding, v + s·dj − padding) : di, dj < p }  ∩  input
//! ```
//!
//! with `p = pool`, `s = dilation`; its other positions lie in the padding. A
//! [`PlacementGrid`] is a `channels x rows x cols` array of coefficients `coef` with a grid
//! `stride`; placed at an origin `(c₀, u₀, v₀)` ([`Placement`]) it stands for the vector
//!
//! ```text
//! y[q] = Σ_{ch, r, t}  coef[ch][r][t] · [q ∈ box(c₀ + ch, u₀ + stride·r, v₀ + stride·t)]
//! ```
//!
//! of length `C·H·W`. For a convolution with `k x k` kernels, stride `s`, padding and a
//! `p x p` average pool of stride `p` folded in (box sums `B[c,u,v] = Σ_{di,dj<p} xpad[c, u +
//! s·di, v + s·dj]`, pooled outputs `z[f,i,j] = Σ_{c,a,b} w[f,c,a,b] · B[c, s·p·i + a, s·p·j +
//! b]`):
//!
//! - the **forward** key of output `(f, i, j)` is filter `f` (a `C x k x k` grid), stride 1, at
//!   origin `(0, s·p·i, s·p·j)`;
//! - the **weight-gradient** key of entry `(f, c, a, b)` is the output gradient `dz[f]` (a
//!   `1 x oh x ow` grid), stride `s·p`, at origin `(c, a, b)`.
//!
//! Then `z = <x, y> + xpad₀ · Σ coef · pad(box)` where `xpad₀` is the public padding value and
//! `pad(box) = p² − |box|` ([`Placement::padding_weight`]): the server adds this public term.
//!
//! One grid serves every origin: the forward keys of a filter share its `C·k·k` weights, the
//! gradient keys of a filter share `dz[f]`, so a request carries each grid once plus one origin
//! per key.
//!
//! # Validation
//! Everything a peer sends is checked on construction (and on deserialisation), before any
//! expansion: dimensions at least 1 and at most [`MAX_SIDE`], inputs of at most
//! [`MAX_INPUT_LEN`] entries, a box that fits in the padded input, a grid that fits in the
//! boxes at its origin, and coefficients small enough that the at most `min(rows, p) ·
//! min(cols, p)` cells covering one input position cannot overflow an `i64`. The expansion of a
//! request is capped ([`MAX_EXPANSION`],
//! [`FeipKeyRequest::check_expansion`](crate::coordinator::FeipKeyRequest::check_expansion)) so
//! that cheap origins cannot claim unbounded memory. Nothing here knows any dataset or model.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use cryptonn::coordinator::placement::{Placement, PlacementFrame, PlacementGrid, PlacementOrigin};
//!
//! // A 1 x 4 x 4 input padded by 1, boxes of 2 x 2 adjacent positions.
//! let frame = PlacementFrame::new(1, 4, 4, 1, 2, 1)?;
//! // A 1 x 1 grid at box (0, 1, 1): the real positions (0,0), (0,1), (1,0), (1,1).
//! let grid = Arc::new(PlacementGrid::new(frame, 1, 1, 1, 1, vec![3])?);
//! let y = Placement::new(grid, PlacementOrigin { channel: 0, row: 1, col: 1 })?;
//! assert_eq!(y.input_terms(), vec![(0, 3), (1, 3), (4, 3), (5, 3)]);
//! assert_eq!(y.padding_weight(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The largest channel count, height, width, padding, pool, dilation or grid stride.
pub const MAX_SIDE: usize = 1 << 16;

/// The largest input length `C·H·W`.
pub const MAX_INPUT_LEN: usize = 1 << 24;

/// The most input entries the placements of one request may expand to (`p²` per grid cell of
/// each vector): 2^25. A few bytes of origin expand to a whole grid, so this bounds the memory
/// one request can claim beyond its message size.
pub const MAX_EXPANSION: usize = 1 << 25;

/// Why a placement is malformed. Every variant is the sender's fault (`INVALID_ARGUMENT` on
/// the wire).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// A dimension is zero or above its limit.
    #[error("placement {what} is {got}, must be between {min} and {max}")]
    Dimension {
        /// Which dimension.
        what: &'static str,
        /// The value given.
        got: usize,
        /// The smallest allowed.
        min: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The box does not fit in the padded input.
    #[error(
        "a box of {pool} x {pool} positions {dilation} apart does not fit in the padded input"
    )]
    BoxTooLarge {
        /// The pool size `p`.
        pool: usize,
        /// The dilation `s`.
        dilation: usize,
    },
    /// The grid is larger than the boxes of the input.
    #[error("a placement grid spans more than the input's {limit} boxes along its {what}")]
    GridTooLarge {
        /// `channels`, `rows` or `cols`.
        what: &'static str,
        /// The boxes (or channels) there are.
        limit: usize,
    },
    /// The number of coefficients is not `channels · rows · cols`.
    #[error("a placement grid needs {expected} coefficients, got {got}")]
    CoefficientCount {
        /// `channels · rows · cols`.
        expected: usize,
        /// The number given.
        got: usize,
    },
    /// A coefficient could overflow an entry of the expanded vector.
    #[error("placement coefficient {index} is {value}, beyond the bound {bound}")]
    CoefficientOutOfBound {
        /// Its position (row-major `channel, row, col`).
        index: usize,
        /// Its value.
        value: i64,
        /// The grid's bound.
        bound: u64,
    },
    /// The grid leaves the input's boxes at this origin.
    #[error("a placement grid at origin ({channel}, {row}, {col}) leaves the input's boxes")]
    OriginOutOfRange {
        /// The origin's channel `c₀`.
        channel: usize,
        /// The origin's box row `u₀`.
        row: usize,
        /// The origin's box column `v₀`.
        col: usize,
    },
    /// A box index (wire form of an origin) beyond the frame's boxes.
    #[error("placement origin index {index} is beyond the frame's {boxes} boxes")]
    OriginIndex {
        /// The index given.
        index: u64,
        /// The number of boxes.
        boxes: usize,
    },
    /// A placement was sent without its frame.
    #[error("a placement without its frame")]
    MissingFrame,
    /// A grid was sent without any origin.
    #[error("a placement grid without origins")]
    NoOrigins,
    /// The request's placements expand to too many entries.
    #[error("the request's placements expand to more than {max} input entries; split it")]
    ExpansionTooLarge {
        /// [`MAX_EXPANSION`].
        max: usize,
    },
}

fn check_dim(what: &'static str, got: usize) -> Result<usize, PlacementError> {
    if (1..=MAX_SIDE).contains(&got) {
        Ok(got)
    } else {
        Err(PlacementError::Dimension {
            what,
            got,
            min: 1,
            max: MAX_SIDE,
        })
    }
}

/// The input a placement addresses and the shape of its boxes (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawFrame", into = "RawFrame")]
pub struct PlacementFrame {
    channels: usize,
    height: usize,
    width: usize,
    padding: usize,
    pool: usize,
    dilation: usize,
}

#[derive(Serialize, Deserialize)]
struct RawFrame {
    channels: usize,
    height: usize,
    width: usize,
    padding: usize,
    pool: usize,
    dilation: usize,
}

impl TryFrom<RawFrame> for PlacementFrame {
    type Error = PlacementError;
    fn try_from(r: RawFrame) -> Result<Self, Self::Error> {
        Self::new(r.channels, r.height, r.width, r.padding, r.pool, r.dilation)
    }
}

impl From<PlacementFrame> for RawFrame {
    fn from(f: PlacementFrame) -> Self {
        Self {
            channels: f.channels,
            height: f.height,
            width: f.width,
            padding: f.padding,
            pool: f.pool,
            dilation: f.dilation,
        }
    }
}

impl PlacementFrame {
    /// The real input `channels x height x width`, padded by `padding` on each side, with
    /// boxes of `pool x pool` positions `dilation` apart.
    ///
    /// # Errors
    /// [`PlacementError::Dimension`] for a zero or oversized dimension (padding may be zero),
    /// or an input of more than [`MAX_INPUT_LEN`] entries; [`PlacementError::BoxTooLarge`] if a
    /// box does not fit in the padded input.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        padding: usize,
        pool: usize,
        dilation: usize,
    ) -> Result<Self, PlacementError> {
        check_dim("channel count", channels)?;
        check_dim("height", height)?;
        check_dim("width", width)?;
        if padding > MAX_SIDE {
            return Err(PlacementError::Dimension {
                what: "padding",
                got: padding,
                min: 0,
                max: MAX_SIDE,
            });
        }
        check_dim("pool", pool)?;
        check_dim("dilation", dilation)?;
        let len = channels * height * width; // each <= 2^16: no overflow in u64/usize >= 48 bits
        if len > MAX_INPUT_LEN {
            return Err(PlacementError::Dimension {
                what: "input length",
                got: len,
                min: 1,
                max: MAX_INPUT_LEN,
            });
        }
        let span = (pool - 1) * dilation; // < 2^32
        if span >= height + 2 * padding || span >= width + 2 * padding {
            return Err(PlacementError::BoxTooLarge { pool, dilation });
        }
        Ok(Self {
            channels,
            height,
            width,
            padding,
            pool,
            dilation,
        })
    }

    /// Channels `C` of the real input.
    #[must_use]
    pub fn channels(&self) -> usize {
        self.channels
    }
    /// Height `H` of the real input.
    #[must_use]
    pub fn height(&self) -> usize {
        self.height
    }
    /// Width `W` of the real input.
    #[must_use]
    pub fn width(&self) -> usize {
        self.width
    }
    /// Padding on each side.
    #[must_use]
    pub fn padding(&self) -> usize {
        self.padding
    }
    /// Positions per box side, `p`.
    #[must_use]
    pub fn pool(&self) -> usize {
        self.pool
    }
    /// Distance between the positions of a box, `s`.
    #[must_use]
    pub fn dilation(&self) -> usize {
        self.dilation
    }
    /// The input length `C·H·W` (the key vectors' dimension `n`).
    #[must_use]
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// Box origins along a column: `H + 2·padding − (p−1)·s`.
    #[must_use]
    pub fn box_rows(&self) -> usize {
        self.height + 2 * self.padding - (self.pool - 1) * self.dilation
    }
    /// Box origins along a row: `W + 2·padding − (p−1)·s`.
    #[must_use]
    pub fn box_cols(&self) -> usize {
        self.width + 2 * self.padding - (self.pool - 1) * self.dilation
    }
    /// The number of boxes, `C · box_rows · box_cols`.
    #[must_use]
    pub fn box_count(&self) -> usize {
        self.channels * self.box_rows() * self.box_cols()
    }
    /// The index `(c·box_rows + u)·box_cols + v` of box `(c, u, v)` (the wire form of an
    /// origin); `None` outside the boxes.
    #[must_use]
    pub fn box_index(&self, channel: usize, row: usize, col: usize) -> Option<usize> {
        (channel < self.channels && row < self.box_rows() && col < self.box_cols())
            .then(|| (channel * self.box_rows() + row) * self.box_cols() + col)
    }
    /// The box `(c, u, v)` of an index from [`box_index`](Self::box_index).
    ///
    /// # Errors
    /// [`PlacementError::OriginIndex`] for an index beyond the boxes.
    pub fn box_at(&self, index: u64) -> Result<PlacementOrigin, PlacementError> {
        let boxes = self.box_count();
        let i = usize::try_from(index)
            .ok()
            .filter(|&i| i < boxes)
            .ok_or(PlacementError::OriginIndex { index, boxes })?;
        let (bc, br) = (self.box_cols(), self.box_rows());
        Ok(PlacementOrigin {
            channel: i / (br * bc),
            row: (i / bc) % br,
            col: i % bc,
        })
    }
    /// The flat input index of padded position `(c, pu, pv)`, if it is real (not padding).
    #[must_use]
    pub fn real_index(&self, channel: usize, pu: usize, pv: usize) -> Option<usize> {
        let h = pu.checked_sub(self.padding)?;
        let w = pv.checked_sub(self.padding)?;
        (channel < self.channels && h < self.height && w < self.width)
            .then(|| (channel * self.height + h) * self.width + w)
    }
    /// The real positions of box `(c, u, v)`, increasing (empty for a box of padding only or
    /// outside the boxes).
    #[must_use]
    pub fn box_members(&self, channel: usize, row: usize, col: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.pool * self.pool);
        for di in 0..self.pool {
            for dj in 0..self.pool {
                if let Some(q) = self.real_index(
                    channel,
                    row.saturating_add(self.dilation * di),
                    col.saturating_add(self.dilation * dj),
                ) {
                    out.push(q);
                }
            }
        }
        out
    }
    /// The padding positions of box `(c, u, v)`: `p² − |box(c, u, v)|`.
    #[must_use]
    pub fn pad_count(&self, channel: usize, row: usize, col: usize) -> usize {
        self.pool * self.pool - self.box_members(channel, row, col).len()
    }
    /// The real positions of each box, in box-index order (what a server multiplies the
    /// ciphertext components of).
    #[must_use]
    pub fn all_box_members(&self) -> Vec<Vec<usize>> {
        let (br, bc) = (self.box_rows(), self.box_cols());
        (0..self.box_count())
            .map(|i| self.box_members(i / (br * bc), (i / bc) % br, i % bc))
            .collect()
    }
    /// The real positions of box `(c, u, v)` along one axis: the offsets `d < p` whose
    /// position `u + s·d − padding` lies in `0..len`.
    fn axis_offsets(&self, start: usize, len: usize) -> impl Iterator<Item = (usize, usize)> {
        let (padding, dilation) = (self.padding, self.dilation);
        (0..self.pool).filter_map(move |d| {
            (start + dilation * d)
                .checked_sub(padding)
                .filter(|&x| x < len)
                .map(|x| (d, x))
        })
    }
}

/// The box `(c₀, u₀, v₀)` at which a grid's first cell sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlacementOrigin {
    /// The channel `c₀`.
    pub channel: usize,
    /// The box row `u₀`.
    pub row: usize,
    /// The box column `v₀`.
    pub col: usize,
}

/// A `channels x rows x cols` grid of coefficients over the boxes of a [`PlacementFrame`],
/// `stride` boxes apart (see the [module docs](self)). Validated on construction and on
/// deserialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawGrid", into = "RawGrid")]
pub struct PlacementGrid {
    frame: PlacementFrame,
    channels: usize,
    rows: usize,
    cols: usize,
    stride: usize,
    coefficients: Vec<i64>,
}

#[derive(Serialize, Deserialize)]
struct RawGrid {
    frame: PlacementFrame,
    channels: usize,
    rows: usize,
    cols: usize,
    stride: usize,
    coefficients: Vec<i64>,
}

impl TryFrom<RawGrid> for PlacementGrid {
    type Error = PlacementError;
    fn try_from(r: RawGrid) -> Result<Self, Self::Error> {
        Self::new(
            r.frame,
            r.channels,
            r.rows,
            r.cols,
            r.stride,
            r.coefficients,
        )
    }
}

impl From<PlacementGrid> for RawGrid {
    fn from(g: PlacementGrid) -> Self {
        Self {
            frame: g.frame,
            channels: g.channels,
            rows: g.rows,
            cols: g.cols,
            stride: g.stride,
            coefficients: g.coefficients,
        }
    }
}

impl PlacementGrid {
    /// A grid of `coefficients` (row-major `channels x rows x cols`) over the boxes of
    /// `frame`, `stride` boxes apart.
    ///
    /// # Errors
    /// [`PlacementError::Dimension`] for a zero or oversized dimension or stride;
    /// [`PlacementError::GridTooLarge`] if the grid spans more channels or boxes than the
    /// frame has; [`PlacementError::CoefficientCount`] for other than `channels·rows·cols`
    /// coefficients; [`PlacementError::CoefficientOutOfBound`] (naming the first) for a
    /// coefficient beyond [`coefficient_bound`](Self::coefficient_bound).
    pub fn new(
        frame: PlacementFrame,
        channels: usize,
        rows: usize,
        cols: usize,
        stride: usize,
        coefficients: Vec<i64>,
    ) -> Result<Self, PlacementError> {
        check_dim("grid channels", channels)?;
        check_dim("grid rows", rows)?;
        check_dim("grid columns", cols)?;
        check_dim("grid stride", stride)?;
        if channels > frame.channels {
            return Err(PlacementError::GridTooLarge {
                what: "channels",
                limit: frame.channels,
            });
        }
        // (n − 1)·stride < 2^32 and the box sides are < 2^18: no overflow.
        if (rows - 1) * stride >= frame.box_rows() {
            return Err(PlacementError::GridTooLarge {
                what: "rows",
                limit: frame.box_rows(),
            });
        }
        if (cols - 1) * stride >= frame.box_cols() {
            return Err(PlacementError::GridTooLarge {
                what: "columns",
                limit: frame.box_cols(),
            });
        }
        // channels <= C, rows, cols <= box sides: the product is at most C·(2^18)², no overflow
        // on 64-bit targets; checked anyway for smaller ones.
        let expected = channels
            .checked_mul(rows)
            .and_then(|n| n.checked_mul(cols))
            .unwrap_or(usize::MAX);
        if coefficients.len() != expected {
            return Err(PlacementError::CoefficientCount {
                expected,
                got: coefficients.len(),
            });
        }
        let bound = Self::bound_for(&frame, rows, cols);
        if let Some((index, &value)) = coefficients
            .iter()
            .enumerate()
            .find(|(_, c)| c.unsigned_abs() > bound)
        {
            return Err(PlacementError::CoefficientOutOfBound {
                index,
                value,
                bound,
            });
        }
        Ok(Self {
            frame,
            channels,
            rows,
            cols,
            stride,
            coefficients,
        })
    }

    /// `i64::MAX / (min(rows, p) · min(cols, p))`: along an axis, each box offset `d < p` and
    /// each grid row meet one input position at most once, so at most `min(rows, p) ·
    /// min(cols, p)` cells cover it.
    fn bound_for(frame: &PlacementFrame, rows: usize, cols: usize) -> u64 {
        let m = rows.min(frame.pool) * cols.min(frame.pool);
        i64::MAX.unsigned_abs() / m as u64
    }

    /// The largest `|coefficient|` this grid admits: `i64::MAX / m`, where `m` bounds how many
    /// of its cells cover one input position, so that no entry of an expansion overflows.
    #[must_use]
    pub fn coefficient_bound(&self) -> u64 {
        Self::bound_for(&self.frame, self.rows, self.cols)
    }

    /// The frame.
    #[must_use]
    pub fn frame(&self) -> &PlacementFrame {
        &self.frame
    }
    /// Channels of coefficients.
    #[must_use]
    pub fn channels(&self) -> usize {
        self.channels
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
    /// Boxes between neighbouring cells.
    #[must_use]
    pub fn stride(&self) -> usize {
        self.stride
    }
    /// The coefficients, row-major `channel, row, col`.
    #[must_use]
    pub fn coefficients(&self) -> &[i64] {
        &self.coefficients
    }
    /// Cells of the grid, `channels · rows · cols`.
    #[must_use]
    pub fn cells(&self) -> usize {
        self.coefficients.len()
    }
    /// Whether the grid placed at `origin` stays inside the frame's boxes.
    #[must_use]
    pub fn fits_at(&self, origin: PlacementOrigin) -> bool {
        let f = &self.frame;
        let end = |start: usize, span: usize, limit: usize| {
            start.checked_add(span).is_some_and(|e| e < limit)
        };
        end(origin.channel, self.channels - 1, f.channels)
            && end(origin.row, (self.rows - 1) * self.stride, f.box_rows())
            && end(origin.col, (self.cols - 1) * self.stride, f.box_cols())
    }
}

/// One key vector: a shared grid at one origin (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPlacement", into = "RawPlacement")]
pub struct Placement {
    grid: Arc<PlacementGrid>,
    origin: PlacementOrigin,
}

#[derive(Serialize, Deserialize)]
struct RawPlacement {
    grid: PlacementGrid,
    origin: PlacementOrigin,
}

impl TryFrom<RawPlacement> for Placement {
    type Error = PlacementError;
    fn try_from(r: RawPlacement) -> Result<Self, Self::Error> {
        Self::new(Arc::new(r.grid), r.origin)
    }
}

impl From<Placement> for RawPlacement {
    fn from(p: Placement) -> Self {
        Self {
            grid: Arc::unwrap_or_clone(p.grid),
            origin: p.origin,
        }
    }
}

impl Placement {
    /// `grid` placed at `origin`.
    ///
    /// # Errors
    /// [`PlacementError::OriginOutOfRange`] if the grid leaves the frame's boxes there.
    pub fn new(grid: Arc<PlacementGrid>, origin: PlacementOrigin) -> Result<Self, PlacementError> {
        if !grid.fits_at(origin) {
            return Err(PlacementError::OriginOutOfRange {
                channel: origin.channel,
                row: origin.row,
                col: origin.col,
            });
        }
        Ok(Self { grid, origin })
    }

    /// The shared grid.
    #[must_use]
    pub fn grid(&self) -> &Arc<PlacementGrid> {
        &self.grid
    }
    /// The frame of the grid.
    #[must_use]
    pub fn frame(&self) -> &PlacementFrame {
        &self.grid.frame
    }
    /// Where the grid sits.
    #[must_use]
    pub fn origin(&self) -> PlacementOrigin {
        self.origin
    }
    /// The dimension `n = C·H·W` of the vector.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.grid.frame.input_len()
    }

    /// The cells with a non-zero coefficient as `(channel, box row, box col, coefficient)`,
    /// in box-index order (distinct boxes).
    pub fn boxes(&self) -> impl Iterator<Item = (usize, usize, usize, i64)> + '_ {
        let g = &*self.grid;
        let o = self.origin;
        g.coefficients
            .iter()
            .enumerate()
            .filter(|(_, &c)| c != 0)
            .map(move |(k, &c)| {
                let (ch, r, t) = (k / (g.rows * g.cols), (k / g.cols) % g.rows, k % g.cols);
                (
                    o.channel + ch,
                    o.row + g.stride * r,
                    o.col + g.stride * t,
                    c,
                )
            })
    }

    /// The same vector over box sums: `(box index, coefficient)` for the boxes with at least
    /// one real position and a non-zero coefficient, box indices increasing. With the box
    /// sums `B` of the input, `<x, y> = Σ coefficient · B_real[box]`.
    #[must_use]
    pub fn box_terms(&self) -> Vec<(usize, i64)> {
        let f = &self.grid.frame;
        let (br, bc) = (f.box_rows(), f.box_cols());
        self.boxes()
            .filter(|&(c, u, v, _)| !f.box_members(c, u, v).is_empty())
            .map(|(c, u, v, w)| ((c * br + u) * bc + v, w))
            .collect()
    }

    /// `Σ coefficient · pad(box)` over the cells, `pad(box) = p² − |box|`: the public term is
    /// this times the padding value. Exact in `i128`.
    #[must_use]
    pub fn padding_weight(&self) -> i128 {
        let f = &self.grid.frame;
        self.boxes()
            .map(|(c, u, v, w)| i128::from(w) * f.pad_count(c, u, v) as i128)
            .sum()
    }

    /// The input entries the expansion visits (`p²` per cell), a bound on its cost and size.
    #[must_use]
    pub fn expansion_size(&self) -> usize {
        let p = self.grid.frame.pool;
        self.grid.cells().saturating_mul(p * p)
    }

    /// The vector `y` of length `C·H·W` as its non-zero `(index, value)` entries, indices
    /// increasing.
    #[must_use]
    pub fn input_terms(&self) -> Vec<(usize, i64)> {
        let f = self.grid.frame;
        let n = f.input_len();
        let visits = self.expansion_size();
        let add = |sink: &mut dyn FnMut(usize, i64)| {
            for (c, u, v, w) in self.boxes() {
                for (_, h) in f.axis_offsets(u, f.height) {
                    let row = (c * f.height + h) * f.width;
                    for (_, x) in f.axis_offsets(v, f.width) {
                        sink(row + x, w);
                    }
                }
            }
        };
        if n <= visits.saturating_mul(4) {
            // Dense accumulation: the grid covers a good part of the input.
            let mut y = vec![0i64; n];
            // At most `coefficient_bound`-many-fold overlaps: no overflow (see `PlacementGrid`).
            add(&mut |q, w| y[q] += w);
            y.into_iter().enumerate().filter(|&(_, v)| v != 0).collect()
        } else {
            let mut entries = Vec::with_capacity(visits.min(1 << 20));
            add(&mut |q, w| entries.push((q, w)));
            entries.sort_unstable_by_key(|&(q, _)| q);
            let mut out: Vec<(usize, i64)> = Vec::with_capacity(entries.len());
            for (q, w) in entries {
                match out.last_mut() {
                    Some(last) if last.0 == q => last.1 += w,
                    _ => out.push((q, w)),
                }
            }
            out.retain(|&(_, v)| v != 0);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The literal definition: for every input position and every cell, the indicator of
    /// membership.
    fn naive_expansion(p: &Placement) -> Vec<(usize, i64)> {
        let f = p.frame();
        let g = p.grid();
        let o = p.origin();
        let mut y = vec![0i64; f.input_len()];
        for c in 0..f.channels() {
            for h in 0..f.height() {
                for w in 0..f.width() {
                    let q = (c * f.height() + h) * f.width() + w;
                    for ch in 0..g.channels() {
                        for r in 0..g.rows() {
                            for t in 0..g.cols() {
                                let coef = g.coefficients()[(ch * g.rows() + r) * g.cols() + t];
                                let (bc, bu, bv) = (
                                    o.channel + ch,
                                    o.row + g.stride() * r,
                                    o.col + g.stride() * t,
                                );
                                let inside = c == bc
                                    && (0..f.pool())
                                        .any(|di| bu + f.dilation() * di == h + f.padding())
                                    && (0..f.pool())
                                        .any(|dj| bv + f.dilation() * dj == w + f.padding());
                                if inside {
                                    y[q] += coef;
                                }
                            }
                        }
                    }
                }
            }
        }
        y.into_iter().enumerate().filter(|&(_, v)| v != 0).collect()
    }

    /// A convolution with pooling, computed from its definition on an explicitly padded
    /// array (CONTRACTS' integer semantics): returns `z[f][i][j]` and `G[f][c][a][b]`.
    struct Conv {
        c: usize,
        h: usize,
        w: usize,
        k: usize,
        s: usize,
        pad: usize,
        p: usize,
    }

    impl Conv {
        fn frame(&self) -> PlacementFrame {
            PlacementFrame::new(self.c, self.h, self.w, self.pad, self.p, self.s).unwrap()
        }
        fn out_side(&self, side: usize) -> usize {
            ((side + 2 * self.pad - self.k) / self.s + 1) / self.p
        }
        fn padded(&self, x: &[i64], pv: i64) -> Vec<Vec<Vec<i64>>> {
            let (hp, wp) = (self.h + 2 * self.pad, self.w + 2 * self.pad);
            (0..self.c)
                .map(|c| {
                    (0..hp)
                        .map(|u| {
                            (0..wp)
                                .map(|v| {
                                    if u >= self.pad
                                        && v >= self.pad
                                        && u - self.pad < self.h
                                        && v - self.pad < self.w
                                    {
                                        x[(c * self.h + u - self.pad) * self.w + v - self.pad]
                                    } else {
                                        pv
                                    }
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect()
        }
        fn bsum(&self, xpad: &[Vec<Vec<i64>>], c: usize, u: usize, v: usize) -> i64 {
            let mut s = 0;
            for di in 0..self.p {
                for dj in 0..self.p {
                    s += xpad[c][u + self.s * di][v + self.s * dj];
                }
            }
            s
        }
    }

    fn dot(terms: &[(usize, i64)], x: &[i64]) -> i64 {
        terms.iter().map(|&(q, y)| y * x[q]).sum()
    }

    /// Forward and gradient placements of several geometries reproduce the convolution's
    /// outputs (with the public padding term), and expand as the literal definition says.
    #[test]
    fn conv_keys_match_the_definition() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let geometries = [
            Conv {
                c: 3,
                h: 7,
                w: 6,
                k: 3,
                s: 1,
                pad: 1,
                p: 2,
            },
            Conv {
                c: 3,
                h: 9,
                w: 9,
                k: 3,
                s: 2,
                pad: 0,
                p: 1,
            },
            Conv {
                c: 1,
                h: 8,
                w: 8,
                k: 3,
                s: 2,
                pad: 1,
                p: 2,
            },
            Conv {
                c: 2,
                h: 6,
                w: 5,
                k: 2,
                s: 1,
                pad: 0,
                p: 2,
            },
            Conv {
                c: 1,
                h: 8,
                w: 8,
                k: 3,
                s: 1,
                pad: 1,
                p: 1,
            },
            Conv {
                c: 2,
                h: 10,
                w: 9,
                k: 3,
                s: 2,
                pad: 1,
                p: 2,
            },
        ];
        for g in &geometries {
            let frame = g.frame();
            let (oh, ow) = (g.out_side(g.h), g.out_side(g.w));
            assert!(oh > 0 && ow > 0);
            let filters = 2;
            let x: Vec<i64> = (0..frame.input_len())
                .map(|_| rng.gen_range(-50..50))
                .collect();
            let pv = -7;
            let xpad = g.padded(&x, pv);
            let patch = g.c * g.k * g.k;
            let wq: Vec<i64> = (0..filters * patch).map(|_| rng.gen_range(-9..9)).collect();
            let dq: Vec<i64> = (0..filters * oh * ow)
                .map(|_| rng.gen_range(-9..9))
                .collect();
            let sp = g.s * g.p;
            for f in 0..filters {
                let grid = Arc::new(
                    PlacementGrid::new(
                        frame,
                        g.c,
                        g.k,
                        g.k,
                        1,
                        wq[f * patch..(f + 1) * patch].to_vec(),
                    )
                    .unwrap(),
                );
                for i in 0..oh {
                    for j in 0..ow {
                        let y = Placement::new(
                            Arc::clone(&grid),
                            PlacementOrigin {
                                channel: 0,
                                row: sp * i,
                                col: sp * j,
                            },
                        )
                        .unwrap();
                        let mut z = 0;
                        for c in 0..g.c {
                            for a in 0..g.k {
                                for b in 0..g.k {
                                    z += wq[f * patch + (c * g.k + a) * g.k + b]
                                        * g.bsum(&xpad, c, sp * i + a, sp * j + b);
                                }
                            }
                        }
                        let terms = y.input_terms();
                        assert_eq!(terms, naive_expansion(&y));
                        let pad_term = i128::from(pv) * y.padding_weight();
                        assert_eq!(i128::from(dot(&terms, &x)) + pad_term, i128::from(z));
                    }
                }
                let grid = Arc::new(
                    PlacementGrid::new(
                        frame,
                        1,
                        oh,
                        ow,
                        sp,
                        dq[f * oh * ow..(f + 1) * oh * ow].to_vec(),
                    )
                    .unwrap(),
                );
                for c in 0..g.c {
                    for a in 0..g.k {
                        for b in 0..g.k {
                            let y = Placement::new(
                                Arc::clone(&grid),
                                PlacementOrigin {
                                    channel: c,
                                    row: a,
                                    col: b,
                                },
                            )
                            .unwrap();
                            let mut gr = 0;
                            for i in 0..oh {
                                for j in 0..ow {
                                    gr += dq[(f * oh + i) * ow + j]
                                        * g.bsum(&xpad, c, sp * i + a, sp * j + b);
                                }
                            }
                            let terms = y.input_terms();
                            assert_eq!(terms, naive_expansion(&y));
                            // Box terms over real box sums give the same value.
                            let breal: i64 = y
                                .box_terms()
                                .iter()
                                .map(|&(k, w)| {
                                    let o = frame.box_at(k as u64).unwrap();
                                    w * frame
                                        .box_members(o.channel, o.row, o.col)
                                        .iter()
                                        .map(|&q| x[q])
                                        .sum::<i64>()
                                })
                                .sum();
                            assert_eq!(breal, dot(&terms, &x));
                            let pad_term = i128::from(pv) * y.padding_weight();
                            assert_eq!(i128::from(dot(&terms, &x)) + pad_term, i128::from(gr));
                        }
                    }
                }
            }
        }
    }

    /// Random grids, strides and origins in random frames expand as the literal definition
    /// says (both the dense and the sorting path).
    #[test]
    fn random_placements_match_the_naive_expansion() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        for _ in 0..300 {
            let frame = PlacementFrame::new(
                rng.gen_range(1..4),
                rng.gen_range(1..12),
                rng.gen_range(1..12),
                rng.gen_range(0..3),
                rng.gen_range(1..4),
                rng.gen_range(1..3),
            );
            let Ok(frame) = frame else { continue };
            let channels = rng.gen_range(1..=frame.channels());
            let stride = rng.gen_range(1..4);
            let rows = rng.gen_range(1..=(frame.box_rows() - 1) / stride + 1);
            let cols = rng.gen_range(1..=(frame.box_cols() - 1) / stride + 1);
            let coefs = (0..channels * rows * cols)
                .map(|_| {
                    if rng.gen_bool(0.2) {
                        0
                    } else {
                        rng.gen_range(-100..100)
                    }
                })
                .collect();
            let grid =
                Arc::new(PlacementGrid::new(frame, channels, rows, cols, stride, coefs).unwrap());
            let origin = PlacementOrigin {
                channel: rng.gen_range(0..=frame.channels() - channels),
                row: rng.gen_range(0..frame.box_rows() - (rows - 1) * stride),
                col: rng.gen_range(0..frame.box_cols() - (cols - 1) * stride),
            };
            let y = Placement::new(grid, origin).unwrap();
            assert_eq!(y.input_terms(), naive_expansion(&y));
            let index = frame
                .box_index(origin.channel, origin.row, origin.col)
                .unwrap();
            assert_eq!(frame.box_at(index as u64).unwrap(), origin);
        }
    }

    #[test]
    fn bad_frames_grids_and_origins_are_refused() {
        use PlacementError as E;
        assert!(matches!(
            PlacementFrame::new(0, 4, 4, 0, 1, 1),
            Err(E::Dimension { .. })
        ));
        assert!(matches!(
            PlacementFrame::new(1, 4, 4, 0, 0, 1),
            Err(E::Dimension { .. })
        ));
        assert!(matches!(
            PlacementFrame::new(1, 4, 4, 0, 2, 0),
            Err(E::Dimension { .. })
        ));
        assert!(matches!(
            PlacementFrame::new(1, 1 << 16, 1 << 16, 0, 1, 1),
            Err(E::Dimension {
                what: "input length",
                ..
            })
        ));
        assert!(matches!(
            PlacementFrame::new(1, 4, 4, usize::MAX, 1, 1),
            Err(E::Dimension { .. })
        ));
        assert!(matches!(
            PlacementFrame::new(1, 4, 4, 0, 3, 2),
            Err(E::BoxTooLarge { .. })
        ));
        assert!(PlacementFrame::new(1, 4, 4, 1, 3, 2).is_ok()); // span 4 < 6
        let f = PlacementFrame::new(2, 6, 6, 1, 2, 1).unwrap(); // 7 x 7 boxes per channel
        assert_eq!((f.box_rows(), f.box_cols(), f.box_count()), (7, 7, 98));
        assert!(matches!(
            PlacementGrid::new(f, 3, 1, 1, 1, vec![1; 3]),
            Err(E::GridTooLarge { .. })
        ));
        assert!(matches!(
            PlacementGrid::new(f, 1, 4, 1, 3, vec![1; 4]),
            Err(E::GridTooLarge { .. })
        ));
        assert!(PlacementGrid::new(f, 1, 4, 1, 2, vec![1; 3]).is_err());
        assert!(matches!(
            PlacementGrid::new(f, 1, 2, 2, 1, vec![1; 3]),
            Err(E::CoefficientCount {
                expected: 4,
                got: 3
            })
        ));
        assert!(matches!(
            PlacementGrid::new(f, 1, 1, 1, 0, vec![1]),
            Err(E::Dimension { .. })
        ));
        // Stride 1 with 2 x 2 boxes: 4 cells may cover one position.
        let g = PlacementGrid::new(f, 1, 2, 2, 1, vec![i64::MAX / 4; 4]).unwrap();
        assert_eq!(g.coefficient_bound(), (i64::MAX / 4) as u64);
        assert!(matches!(
            PlacementGrid::new(f, 1, 2, 2, 1, vec![0, i64::MAX / 4 + 1, 0, 0]),
            Err(E::CoefficientOutOfBound { index: 1, .. })
        ));
        // A single cell: any i64 but MIN.
        assert!(PlacementGrid::new(f, 1, 1, 1, 2, vec![i64::MAX]).is_ok());
        assert!(PlacementGrid::new(f, 1, 1, 1, 2, vec![i64::MIN]).is_err());
        let g = Arc::new(PlacementGrid::new(f, 1, 3, 3, 2, vec![1; 9]).unwrap());
        assert!(Placement::new(
            Arc::clone(&g),
            PlacementOrigin {
                channel: 1,
                row: 2,
                col: 2
            }
        )
        .is_ok());
        for (channel, row, col) in [(2, 0, 0), (0, 3, 0), (0, 0, 3)] {
            assert!(matches!(
                Placement::new(Arc::clone(&g), PlacementOrigin { channel, row, col }),
                Err(E::OriginOutOfRange { .. })
            ));
        }
        assert!(matches!(
            f.box_at(98),
            Err(E::OriginIndex {
                index: 98,
                boxes: 98
            })
        ));
        assert!(f.box_at(u64::MAX).is_err());
    }

    /// Extreme coefficients at their bound expand without overflow to the exact sums.
    #[test]
    fn coefficients_at_the_bound_do_not_overflow() {
        let f = PlacementFrame::new(1, 3, 3, 0, 2, 1).unwrap(); // 2 x 2 boxes
        let c = i64::MAX / 4;
        let g = Arc::new(PlacementGrid::new(f, 1, 2, 2, 1, vec![c, c, c, -c]).unwrap());
        let y = Placement::new(
            g,
            PlacementOrigin {
                channel: 0,
                row: 0,
                col: 0,
            },
        )
        .unwrap();
        let terms = y.input_terms();
        assert_eq!(terms.iter().find(|t| t.0 == 4), Some(&(4, 2 * c)));
        assert_eq!(terms, naive_expansion(&y));
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let f = PlacementFrame::new(3, 5, 5, 1, 2, 1).unwrap();
        let g = Arc::new(PlacementGrid::new(f, 2, 2, 1, 3, vec![4, -2, 0, 9]).unwrap());
        let v = Placement::new(
            g,
            PlacementOrigin {
                channel: 1,
                row: 2,
                col: 5,
            },
        )
        .unwrap();
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<Placement>(&json).unwrap(), v);
        for (from, to) in [
            ("\"col\":5", "\"col\":6"),
            ("\"pool\":2", "\"pool\":0"),
            ("[4,-2,0,9]", "[4,-2,0]"),
            ("\"channel\":1", "\"channel\":2"),
        ] {
            let bad = json.replace(from, to);
            assert_ne!(bad, json);
            assert!(
                serde_json::from_str::<Placement>(&bad).is_err(),
                "{from} -> {to}"
            );
        }
    }
}
