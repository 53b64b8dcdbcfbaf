//! The linear maps of a first layer in input space: a convolution of any kernel, stride,
//! padding and channel count with an optional folded average pool ([`ConvGeometry`]), and a
//! dense layer ([`LinearGeometry`]).
//!
//! # Convolution with a folded pool
//!
//! The real input is `C x H x W` (feature `q = c·H·W + r·W + t`), padded by `P` on each side
//! with the public value `c₀` (the encoding of the padding, `xpad`). A convolution with `F`
//! filters of `k x k`, stride `s`, followed by a `p x p` average pool of stride `p` (`p = 1`:
//! no pool) is one linear map over the *box sums*
//!
//! ```text
//! B[c,u,v]   = Σ_{di,dj < p} xpad[c, u + s·di, v + s·dj]                       (a dilated p x p box)
//! z[f,i,j]   = Σ_{c, a,b < k} wq[f, c·k² + a·k + b] · B[c, s·p·i + a, s·p·j + b]
//! G[f,c·k²+a·k+b] = Σ_{i,j} dq[f,i,j] · B[c, s·p·i + a, s·p·j + b]            (per sample)
//! oh = ((H + 2P − k)/s + 1)/p,  ow likewise  (floor)
//! ```
//!
//! A box holds `|box(c,u,v)|` real features and `p² − |box|` padding positions, so every output
//! is `<xq, y> + c₀ · Σ coef · (p² − |box|)`: a key vector `y` over the real input (what the
//! authority derives a key for, what the policy and the audit log see), the same map over the
//! boxes (what the server multiplies: one ciphertext component per box, the product of the
//! components of its members) and a public padding term.
//!
//! LeNet-5's conv1 is `C = 1`, `28 x 28`, `k = 5`, `s = 1`, `P = 2` (black pixels), `p = 2`:
//! 961 boxes of at most 4 pixels, 25-term forward and 196-term gradient products.
//!
//! # Dense layer
//! `z[o] = Σ_q wq[o,q] · xq[q]`: the key vector is row `o` of `wq` and the "boxes" are the
//! features themselves; there is no padding.
//!
//! Every map is checked against a naive dense evaluation on the padded input in the tests.

use std::sync::Arc;

use crate::coordinator::error::CoordinatorError;
use crate::coordinator::messages::KeyVectorData;
use crate::coordinator::placement::{Placement, PlacementFrame, PlacementGrid, PlacementOrigin};
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::nn::data::{IMAGE_SIDE, PADDING};
use crate::nn::first_layer::{FirstLayerSpec, BOX_SIDE, FILTERS, KERNEL, PATCH};

/// Number of LeNet-5 box sums, `31 · 31`.
pub const BOXES: usize = BOX_SIDE * BOX_SIDE;

/// LeNet-5's weight-gradient entries per image, `6 · 25`.
pub const GRADIENT_OUTPUTS: usize = FILTERS * PATCH;

/// Largest real input a geometry accepts (features are indexed by `u32`).
pub const MAX_INPUT_LEN: usize = 1 << 24;

/// The real pixel of LeNet-5's 28x28 image at padded position `(pu, pv)`, if it is not
/// padding.
#[must_use]
pub fn real_pixel(pu: usize, pv: usize) -> Option<usize> {
    let r = pu.checked_sub(PADDING)?;
    let c = pv.checked_sub(PADDING)?;
    (r < IMAGE_SIDE && c < IMAGE_SIDE).then_some(r * IMAGE_SIDE + c)
}

/// One linear output of the first layer: `value = <xq, pixel_terms> + padding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearOutput {
    /// The input-space key vector `y` (sparse, indices strictly increasing, values non-zero).
    pub pixel_terms: Vec<(usize, i64)>,
    /// The same map over boxes: `(box index, coefficient)` for boxes with at least one real
    /// feature and a non-zero coefficient, by increasing box index.
    pub box_terms: Vec<(usize, i64)>,
    /// The public padding contribution `c₀ · Σ coefficient · (p² − |box|)`.
    pub padding: i64,
}

impl LinearOutput {
    /// Whether the output is the constant `padding` (no key needed).
    #[must_use]
    pub fn is_constant(&self) -> bool {
        self.pixel_terms.is_empty()
    }
}

fn geometry_error(reason: String) -> SecureTrainingError {
    SecureTrainingError::Parameters(format!("first-layer geometry: {reason}"))
}

fn overflow(what: &str) -> SecureTrainingError {
    geometry_error(format!(
        "{what} overflows 64 bits (the model diverged: values beyond the encoding's bound)"
    ))
}

/// A convolution (any channels, kernel, stride, padding) with a folded `p x p` average pool
/// over a `C x H x W` input (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvGeometry {
    channels: usize,
    height: usize,
    width: usize,
    filters: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    pool: usize,
    out_h: usize,
    out_w: usize,
    box_rows: usize,
    box_cols: usize,
    /// Members of box `b`: `members[starts[b]..starts[b + 1]]` (increasing feature indices).
    starts: Arc<[u32]>,
    members: Arc<[u32]>,
}

impl ConvGeometry {
    /// The geometry of `filters` filters of `kernel x kernel` with `stride` and `padding` over a
    /// `channels x height x width` input, followed by a `pool x pool` average pool of stride
    /// `pool` (`pool = 1`: none).
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for a zero dimension, a kernel larger than the
    /// padded input, an empty output, or an input above [`MAX_INPUT_LEN`] features.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        filters: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        pool: usize,
    ) -> Result<Self, SecureTrainingError> {
        if [channels, height, width, filters, kernel, stride, pool].contains(&0) {
            return Err(geometry_error(
                "channels, height, width, filters, kernel, stride and pool must be >= 1".into(),
            ));
        }
        let input_len = channels
            .checked_mul(height)
            .and_then(|v| v.checked_mul(width))
            .filter(|&v| v <= MAX_INPUT_LEN)
            .ok_or_else(|| geometry_error(format!("input above {MAX_INPUT_LEN} features")))?;
        if padding > MAX_INPUT_LEN || kernel > MAX_INPUT_LEN || stride > MAX_INPUT_LEN {
            return Err(geometry_error("absurd kernel, stride or padding".into()));
        }
        let (hp, wp) = (height + 2 * padding, width + 2 * padding);
        if kernel > hp || kernel > wp {
            return Err(geometry_error(format!(
                "kernel {kernel} larger than the padded input {hp}x{wp}"
            )));
        }
        let out_h = ((hp - kernel) / stride + 1) / pool;
        let out_w = ((wp - kernel) / stride + 1) / pool;
        if out_h == 0 || out_w == 0 {
            return Err(geometry_error(format!(
                "the {pool}x{pool} pool leaves no output of the {}x{} convolution",
                (hp - kernel) / stride + 1,
                (wp - kernel) / stride + 1
            )));
        }
        let box_rows = stride * pool * (out_h - 1) + kernel;
        let box_cols = stride * pool * (out_w - 1) + kernel;
        let boxes = channels * box_rows * box_cols;
        if boxes > 4 * MAX_INPUT_LEN {
            return Err(geometry_error(format!("{boxes} boxes: too many")));
        }
        let mut starts = Vec::with_capacity(boxes + 1);
        let mut members = Vec::with_capacity(boxes * pool * pool);
        starts.push(0u32);
        for c in 0..channels {
            for u in 0..box_rows {
                for v in 0..box_cols {
                    for di in 0..pool {
                        let Some(r) = (u + stride * di).checked_sub(padding) else {
                            continue;
                        };
                        if r >= height {
                            continue;
                        }
                        for dj in 0..pool {
                            let Some(t) = (v + stride * dj).checked_sub(padding) else {
                                continue;
                            };
                            if t < width {
                                members.push(((c * height + r) * width + t) as u32);
                            }
                        }
                    }
                    starts.push(members.len() as u32);
                }
            }
        }
        debug_assert!(members.len() <= input_len * pool * pool);
        Ok(Self {
            channels,
            height,
            width,
            filters,
            kernel,
            stride,
            padding,
            pool,
            out_h,
            out_w,
            box_rows,
            box_cols,
            starts: starts.into(),
            members: members.into(),
        })
    }

    /// LeNet-5's conv1 + 2x2 average pool: `1 x 28 x 28`, 6 filters of 5x5, stride 1,
    /// padding 2, pool 2.
    #[must_use]
    pub fn lenet5() -> Self {
        match Self::new(1, IMAGE_SIDE, IMAGE_SIDE, FILTERS, KERNEL, 1, PADDING, 2) {
            Ok(g) => g,
            // The constants above form a valid geometry (pinned by a test).
            Err(_) => unreachable!("LeNet-5's geometry is valid"),
        }
    }

    /// The real input `[C, H, W]`.
    #[must_use]
    pub fn input_shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }
    /// Real input features `C·H·W`.
    #[must_use]
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// Weights per filter, `C·k²`.
    #[must_use]
    pub fn patch(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }
    /// Filters `F`.
    #[must_use]
    pub fn filters(&self) -> usize {
        self.filters
    }
    /// The output grid `(oh, ow)` after pooling.
    #[must_use]
    pub fn output_side(&self) -> (usize, usize) {
        (self.out_h, self.out_w)
    }
    /// Outputs per sample, `F·oh·ow`.
    #[must_use]
    pub fn outputs(&self) -> usize {
        self.filters * self.out_h * self.out_w
    }
    /// Weight-gradient entries, `F·C·k²`.
    #[must_use]
    pub fn gradient_outputs_len(&self) -> usize {
        self.filters * self.patch()
    }
    /// Pool side `p` (1: none).
    #[must_use]
    pub fn pool(&self) -> usize {
        self.pool
    }
    /// Number of boxes `C · rows · cols` (some may hold only padding).
    #[must_use]
    pub fn boxes(&self) -> usize {
        self.channels * self.box_rows * self.box_cols
    }
    /// `(rows, cols)` of the box grid of one channel.
    #[must_use]
    pub fn box_grid_side(&self) -> (usize, usize) {
        (self.box_rows, self.box_cols)
    }
    /// The index of box `(c, u, v)`.
    #[must_use]
    pub fn box_index(&self, c: usize, u: usize, v: usize) -> usize {
        (c * self.box_rows + u) * self.box_cols + v
    }
    /// The real features of box `index`, increasing.
    #[must_use]
    pub fn box_members(&self, index: usize) -> &[u32] {
        let (a, b) = (self.starts[index] as usize, self.starts[index + 1] as usize);
        &self.members[a..b]
    }
    /// Padding positions of box `index`: `p² − |box|`.
    #[must_use]
    pub fn pad_count(&self, index: usize) -> i64 {
        (self.pool * self.pool - self.box_members(index).len()) as i64
    }
    /// The members of every box (index order), for the server's box products.
    #[must_use]
    pub fn all_box_members(&self) -> Vec<Vec<usize>> {
        (0..self.boxes())
            .map(|b| self.box_members(b).iter().map(|&m| m as usize).collect())
            .collect()
    }
    /// Whether this is LeNet-5's geometry (for which the compact box-grid key form exists).
    #[must_use]
    pub fn is_lenet5(&self) -> bool {
        (
            self.channels,
            self.height,
            self.width,
            self.filters,
            self.kernel,
            self.stride,
            self.padding,
            self.pool,
        ) == (1, IMAGE_SIDE, IMAGE_SIDE, FILTERS, KERNEL, 1, PADDING, 2)
    }

    /// The forward outputs `z[f,i,j]` (row-major `f, i, j`) for the encoded weights
    /// `wq: [F · C·k²]` (row-major `f, c, a, b`) and padding value `pad`.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for a wrong length or a coefficient sum beyond 64
    /// bits.
    pub fn forward_outputs(
        &self,
        wq: &[i64],
        pad: i64,
    ) -> Result<Vec<LinearOutput>, SecureTrainingError> {
        check_len(
            "first-layer weights wq",
            self.gradient_outputs_len(),
            wq.len(),
        )?;
        let (k, sp, patch) = (self.kernel, self.stride * self.pool, self.patch());
        let mut b = Builder::new(self);
        let mut out = Vec::with_capacity(self.outputs());
        for wf in wq.chunks_exact(patch) {
            for i in 0..self.out_h {
                for j in 0..self.out_w {
                    let boxes = (0..self.channels).flat_map(|c| {
                        (0..k).flat_map(move |a| {
                            (0..k).map(move |bb| {
                                (
                                    self.box_index(c, sp * i + a, sp * j + bb),
                                    wf[(c * k + a) * k + bb],
                                )
                            })
                        })
                    });
                    out.push(b.build(boxes, pad)?);
                }
            }
        }
        Ok(out)
    }

    /// One sample's weight-gradient entries `G[f, c·k² + a·k + b]` (row-major) for its encoded
    /// output gradient `dq: [F · oh · ow]` and padding value `pad`.
    ///
    /// # Errors
    /// As [`forward_outputs`](Self::forward_outputs).
    pub fn gradient_outputs(
        &self,
        dq: &[i64],
        pad: i64,
    ) -> Result<Vec<LinearOutput>, SecureTrainingError> {
        check_len("first-layer output gradient dq", self.outputs(), dq.len())?;
        let (k, sp) = (self.kernel, self.stride * self.pool);
        let (oh, ow) = (self.out_h, self.out_w);
        let mut b = Builder::new(self);
        let mut out = Vec::with_capacity(self.gradient_outputs_len());
        for df in dq.chunks_exact(oh * ow) {
            for c in 0..self.channels {
                for a in 0..k {
                    for bb in 0..k {
                        let boxes = (0..oh).flat_map(|i| {
                            (0..ow).map(move |j| {
                                (self.box_index(c, sp * i + a, sp * j + bb), df[i * ow + j])
                            })
                        });
                        out.push(b.build(boxes, pad)?);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl ConvGeometry {
    /// The placement frame ([`crate::coordinator::placement`]): the real `C x H x W` input,
    /// its padding, and boxes of `p x p` positions `s` apart.
    ///
    /// # Errors
    /// [`CoordinatorError::Placement`] if the frame exceeds the protocol's limits.
    pub fn placement_frame(&self) -> Result<PlacementFrame, CoordinatorError> {
        Ok(PlacementFrame::new(
            self.channels,
            self.height,
            self.width,
            self.padding,
            self.pool,
            self.stride,
        )?)
    }

    /// The key vectors of [`forward_outputs`](Self::forward_outputs), in its order, as
    /// placements: filter `f`'s `C x k x k` weights with stride 1 at origin `(0, s·p·i, s·p·j)`,
    /// one shared grid per filter.
    ///
    /// # Errors
    /// [`CoordinatorError`] for a wrong length or a weight beyond the grid bound.
    pub fn forward_key_vectors(&self, wq: &[i64]) -> Result<Vec<KeyVectorData>, CoordinatorError> {
        check_key_len(
            "first-layer weights wq",
            self.gradient_outputs_len(),
            wq.len(),
        )?;
        let frame = self.placement_frame()?;
        let (k, sp) = (self.kernel, self.stride * self.pool);
        let mut out = Vec::with_capacity(self.outputs());
        for f in wq.chunks_exact(self.patch()) {
            let grid = Arc::new(PlacementGrid::new(
                frame,
                self.channels,
                k,
                k,
                1,
                f.to_vec(),
            )?);
            for i in 0..self.out_h {
                for j in 0..self.out_w {
                    let origin = PlacementOrigin {
                        channel: 0,
                        row: sp * i,
                        col: sp * j,
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

    /// The key vectors of one sample's [`gradient_outputs`](Self::gradient_outputs), in its
    /// order, as placements: the output gradient `dq[f]` (`1 x oh x ow`) with stride `s·p` at
    /// origin `(c, a, b)`, one shared grid per filter.
    ///
    /// # Errors
    /// [`CoordinatorError`] for a wrong length or an entry beyond the grid bound.
    pub fn gradient_key_vectors(&self, dq: &[i64]) -> Result<Vec<KeyVectorData>, CoordinatorError> {
        check_key_len("first-layer output gradient dq", self.outputs(), dq.len())?;
        let frame = self.placement_frame()?;
        let (k, sp) = (self.kernel, self.stride * self.pool);
        let (oh, ow) = (self.out_h, self.out_w);
        let mut out = Vec::with_capacity(self.gradient_outputs_len());
        for df in dq.chunks_exact(oh * ow) {
            let grid = Arc::new(PlacementGrid::new(frame, 1, oh, ow, sp, df.to_vec())?);
            for c in 0..self.channels {
                for a in 0..k {
                    for b in 0..k {
                        out.push(KeyVectorData::Placement(Placement::new(
                            Arc::clone(&grid),
                            PlacementOrigin {
                                channel: c,
                                row: a,
                                col: b,
                            },
                        )?));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A dense first layer `z[o] = Σ_q wq[o,q] · xq[q]` (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearGeometry {
    inputs: usize,
    outputs: usize,
}

impl LinearGeometry {
    /// A dense layer of `inputs -> outputs`.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for a zero size or more than [`MAX_INPUT_LEN`]
    /// inputs.
    pub fn new(inputs: usize, outputs: usize) -> Result<Self, SecureTrainingError> {
        if inputs == 0 || outputs == 0 || inputs > MAX_INPUT_LEN || outputs > MAX_INPUT_LEN {
            return Err(geometry_error(format!(
                "a dense layer needs 1..={MAX_INPUT_LEN} inputs and outputs, got {inputs} -> {outputs}"
            )));
        }
        Ok(Self { inputs, outputs })
    }
    /// Input features.
    #[must_use]
    pub fn inputs(&self) -> usize {
        self.inputs
    }
    /// Outputs per sample.
    #[must_use]
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The forward outputs `z[o]` for `wq: [outputs · inputs]` (row-major): each output's key
    /// vector is its row; the "boxes" are the features; there is no padding.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for a wrong length.
    pub fn forward_outputs(&self, wq: &[i64]) -> Result<Vec<LinearOutput>, SecureTrainingError> {
        check_len(
            "first-layer weights wq",
            self.inputs * self.outputs,
            wq.len(),
        )?;
        Ok(wq
            .chunks_exact(self.inputs)
            .map(|row| {
                let terms: Vec<(usize, i64)> = row
                    .iter()
                    .enumerate()
                    .filter(|(_, &w)| w != 0)
                    .map(|(q, &w)| (q, w))
                    .collect();
                LinearOutput {
                    box_terms: terms.clone(),
                    pixel_terms: terms,
                    padding: 0,
                }
            })
            .collect())
    }
}

/// The secure first layer's geometry: a convolution (with a folded pool) or a dense layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstLayerGeometry {
    /// A convolution over boxes.
    Conv(ConvGeometry),
    /// A dense layer.
    Linear(LinearGeometry),
}

impl FirstLayerGeometry {
    /// The geometry of a declared first layer.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for an unusable geometry.
    pub fn from_spec(spec: &FirstLayerSpec) -> Result<Self, SecureTrainingError> {
        Ok(match *spec {
            FirstLayerSpec::Linear { inputs, outputs } => {
                Self::Linear(LinearGeometry::new(inputs, outputs)?)
            }
            FirstLayerSpec::Conv {
                channels,
                height,
                width,
                filters,
                kernel,
                stride,
                padding,
                pool,
            } => Self::Conv(ConvGeometry::new(
                channels, height, width, filters, kernel, stride, padding, pool,
            )?),
        })
    }

    /// The declared first layer this geometry computes.
    #[must_use]
    pub fn spec(&self) -> FirstLayerSpec {
        match self {
            Self::Conv(g) => FirstLayerSpec::Conv {
                channels: g.channels,
                height: g.height,
                width: g.width,
                filters: g.filters,
                kernel: g.kernel,
                stride: g.stride,
                padding: g.padding,
                pool: g.pool,
            },
            Self::Linear(g) => FirstLayerSpec::Linear {
                inputs: g.inputs,
                outputs: g.outputs,
            },
        }
    }

    /// Real input features.
    #[must_use]
    pub fn input_len(&self) -> usize {
        match self {
            Self::Conv(g) => g.input_len(),
            Self::Linear(g) => g.inputs(),
        }
    }
    /// Outputs per sample.
    #[must_use]
    pub fn outputs(&self) -> usize {
        match self {
            Self::Conv(g) => g.outputs(),
            Self::Linear(g) => g.outputs(),
        }
    }
    /// Weights `(rows, columns)`: `(F, C·k²)` or `(outputs, inputs)`.
    #[must_use]
    pub fn weight_shape(&self) -> (usize, usize) {
        match self {
            Self::Conv(g) => (g.filters(), g.patch()),
            Self::Linear(g) => (g.outputs(), g.inputs()),
        }
    }
    /// Weights in total.
    #[must_use]
    pub fn weight_len(&self) -> usize {
        let (r, c) = self.weight_shape();
        r * c
    }
    /// How many real features one box holds at most (`p²`; 1 for a dense layer).
    #[must_use]
    pub fn box_size(&self) -> usize {
        match self {
            Self::Conv(g) => g.pool() * g.pool(),
            Self::Linear(_) => 1,
        }
    }
    /// The members of every box (the features of a dense layer, one per box).
    #[must_use]
    pub fn all_box_members(&self) -> Vec<Vec<usize>> {
        match self {
            Self::Conv(g) => g.all_box_members(),
            Self::Linear(g) => (0..g.inputs()).map(|q| vec![q]).collect(),
        }
    }
}

/// Accumulates `(box, coefficient)` pairs into a [`LinearOutput`].
struct Builder<'g> {
    geometry: &'g ConvGeometry,
    dense: Vec<i128>,
    touched: Vec<usize>,
}

impl<'g> Builder<'g> {
    fn new(geometry: &'g ConvGeometry) -> Self {
        Self {
            geometry,
            dense: vec![0; geometry.input_len()],
            touched: Vec::new(),
        }
    }

    fn build(
        &mut self,
        boxes: impl Iterator<Item = (usize, i64)>,
        pad: i64,
    ) -> Result<LinearOutput, SecureTrainingError> {
        let g = self.geometry;
        let mut box_terms = Vec::new();
        let mut padding = 0i128;
        for (index, w) in boxes {
            if w == 0 {
                continue;
            }
            let members = g.box_members(index);
            padding = padding.saturating_add(
                i128::from(pad)
                    .saturating_mul(i128::from(w))
                    .saturating_mul(i128::from(g.pad_count(index))),
            );
            if members.is_empty() {
                continue;
            }
            box_terms.push((index, w));
            for &p in members {
                let p = p as usize;
                if self.dense[p] == 0 {
                    self.touched.push(p);
                }
                self.dense[p] += i128::from(w);
            }
        }
        self.touched.sort_unstable();
        let mut pixel_terms = Vec::with_capacity(self.touched.len());
        let mut result = Ok(());
        for &p in &self.touched {
            let v = std::mem::take(&mut self.dense[p]);
            if v != 0 {
                match i64::try_from(v) {
                    Ok(v) => pixel_terms.push((p, v)),
                    Err(_) => result = Err(overflow("a key-vector entry")),
                }
            }
        }
        self.touched.clear();
        result?;
        box_terms.sort_unstable_by_key(|t| t.0);
        Ok(LinearOutput {
            pixel_terms,
            box_terms,
            padding: i64::try_from(padding).map_err(|_| overflow("the padding term"))?,
        })
    }
}

/// LeNet-5's 1,176 forward outputs ([`ConvGeometry::lenet5`]).
///
/// # Panics
/// If `wq.len() != 150` or a coefficient sum overflows (callers check bounds first).
#[must_use]
pub fn forward_outputs(wq: &[i64], pad: i64) -> Vec<LinearOutput> {
    match ConvGeometry::lenet5().forward_outputs(wq, pad) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// LeNet-5's 150 weight-gradient entries of one image ([`ConvGeometry::lenet5`]).
///
/// # Panics
/// If `dq.len() != 1176` or a coefficient sum overflows (callers check bounds first).
#[must_use]
pub fn gradient_outputs(dq: &[i64], pad: i64) -> Vec<LinearOutput> {
    match ConvGeometry::lenet5().gradient_outputs(dq, pad) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// The placement frame of conv1 + 2x2 average pooling: the 1 x 28 x 28 image padded by 2,
/// boxes of 2 x 2 adjacent pixels ([`crate::coordinator::placement`]).
///
/// # Errors
/// Never in practice (the constants are valid); [`CoordinatorError::Placement`] otherwise.
pub fn placement_frame() -> Result<PlacementFrame, CoordinatorError> {
    ConvGeometry::lenet5().placement_frame()
}

/// LeNet-5's forward key vectors ([`ConvGeometry::forward_key_vectors`]).
///
/// # Errors
/// [`CoordinatorError`] for `wq.len() != 150` or a weight beyond the grid bound.
pub fn forward_key_vectors(wq: &[i64]) -> Result<Vec<KeyVectorData>, CoordinatorError> {
    ConvGeometry::lenet5().forward_key_vectors(wq)
}

/// LeNet-5's weight-gradient key vectors of one image
/// ([`ConvGeometry::gradient_key_vectors`]).
///
/// # Errors
/// [`CoordinatorError`] for `dq.len() != 1176` or an entry beyond the grid bound.
pub fn gradient_key_vectors(dq: &[i64]) -> Result<Vec<KeyVectorData>, CoordinatorError> {
    ConvGeometry::lenet5().gradient_key_vectors(dq)
}

fn check_key_len(what: &'static str, expected: usize, got: usize) -> Result<(), CoordinatorError> {
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

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), SecureTrainingError> {
    check_key_len(what, expected, got).map_err(SecureTrainingError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::data::{PixelNormalization, IMAGE_PIXELS};
    use crate::nn::first_layer::{pooled_conv, weight_gradient_accumulate, PixelEncoding, OUTPUTS};
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
            let lenet = ConvGeometry::lenet5();
            let breal =
                |k: usize| -> i64 { lenet.box_members(k).iter().map(|&p| xq[p as usize]).sum() };
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
        let g = ConvGeometry::lenet5();
        assert!(g.is_lenet5());
        assert_eq!(g.boxes(), BOXES);
        assert_eq!(g.outputs(), OUTPUTS);
        assert_eq!(g.gradient_outputs_len(), GRADIENT_OUTPUTS);
        assert!(g.box_members(g.box_index(0, 0, 0)).is_empty());
        assert_eq!(g.box_members(g.box_index(0, 1, 1)), &[0]);
        assert_eq!(g.box_members(g.box_index(0, 15, 15)).len(), 4);
        assert_eq!(g.pad_count(g.box_index(0, 30, 30)), 4);
    }

    /// A naive dense reference: pad the input, convolve, sum-pool (the forward `z`), and
    /// back-propagate `dq` through the pool and the convolution (the weight gradient `G`).
    struct Naive {
        c: usize,
        h: usize,
        w: usize,
        f: usize,
        k: usize,
        s: usize,
        pad: usize,
        p: usize,
    }

    impl Naive {
        fn padded(&self, xq: &[i64], c0: i64) -> Vec<i64> {
            let (hp, wp) = (self.h + 2 * self.pad, self.w + 2 * self.pad);
            let mut x = vec![c0; self.c * hp * wp];
            for c in 0..self.c {
                for r in 0..self.h {
                    for t in 0..self.w {
                        x[(c * hp + r + self.pad) * wp + t + self.pad] =
                            xq[(c * self.h + r) * self.w + t];
                    }
                }
            }
            x
        }

        fn conv_side(&self) -> (usize, usize) {
            let (hp, wp) = (self.h + 2 * self.pad, self.w + 2 * self.pad);
            ((hp - self.k) / self.s + 1, (wp - self.k) / self.s + 1)
        }

        fn forward(&self, xq: &[i64], c0: i64, wq: &[i64]) -> Vec<i64> {
            let x = self.padded(xq, c0);
            let (hp, wp) = (self.h + 2 * self.pad, self.w + 2 * self.pad);
            let (ch, cw) = self.conv_side();
            let (oh, ow) = (ch / self.p, cw / self.p);
            let k = self.k;
            let mut z = vec![0i64; self.f * oh * ow];
            for f in 0..self.f {
                for ci in 0..oh * self.p {
                    for cj in 0..ow * self.p {
                        let mut conv = 0i64;
                        for c in 0..self.c {
                            for a in 0..k {
                                for b in 0..k {
                                    conv += wq[f * self.c * k * k + (c * k + a) * k + b]
                                        * x[(c * hp + self.s * ci + a) * wp + self.s * cj + b];
                                }
                            }
                        }
                        z[(f * oh + ci / self.p) * ow + cj / self.p] += conv;
                    }
                }
            }
            z
        }

        fn gradient(&self, xq: &[i64], c0: i64, dq: &[i64]) -> Vec<i64> {
            let x = self.padded(xq, c0);
            let (hp, wp) = (self.h + 2 * self.pad, self.w + 2 * self.pad);
            let (ch, cw) = self.conv_side();
            let (oh, ow) = (ch / self.p, cw / self.p);
            let k = self.k;
            let mut g = vec![0i64; self.f * self.c * k * k];
            for f in 0..self.f {
                for ci in 0..oh * self.p {
                    for cj in 0..ow * self.p {
                        // The sum pool passes its output gradient to each member.
                        let d = dq[(f * oh + ci / self.p) * ow + cj / self.p];
                        for c in 0..self.c {
                            for a in 0..k {
                                for b in 0..k {
                                    g[f * self.c * k * k + (c * k + a) * k + b] +=
                                        d * x[(c * hp + self.s * ci + a) * wp + self.s * cj + b];
                                }
                            }
                        }
                    }
                }
            }
            g
        }
    }

    fn random_vec(rng: &mut rand_chacha::ChaCha8Rng, n: usize, lim: i64, zeros: f64) -> Vec<i64> {
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
    fn any_geometry_matches_the_naive_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(18);
        // (C, H, W, F, k, s, padding, pool): LeNet-5, cnn-small on MNIST and digits, strided,
        // dilated boxes (s > 1 with a pool), rectangular inputs, no padding, odd leftovers.
        let cases = [
            (1, 28, 28, 6, 5, 1, 2, 2),
            (1, 28, 28, 4, 3, 1, 1, 2),
            (1, 8, 8, 8, 3, 1, 1, 2),
            (3, 7, 6, 2, 3, 2, 1, 1),
            (2, 9, 11, 3, 2, 3, 0, 2),
            (1, 10, 9, 2, 3, 2, 2, 3),
            (2, 5, 5, 1, 5, 1, 0, 1),
            (1, 6, 6, 2, 1, 1, 0, 2),
        ];
        for &(c, h, w, f, k, s, pad, p) in &cases {
            let g = ConvGeometry::new(c, h, w, f, k, s, pad, p).unwrap();
            let naive = Naive {
                c,
                h,
                w,
                f,
                k,
                s,
                pad,
                p,
            };
            let (ch, cw) = naive.conv_side();
            assert_eq!(
                g.output_side(),
                (ch / p, cw / p),
                "{c}x{h}x{w} k{k} s{s} P{pad} p{p}"
            );
            // Every real feature lies in some box iff the pooled outputs can reach it; no
            // member is out of range and members increase.
            for b in 0..g.boxes() {
                let m = g.box_members(b);
                assert!(m.windows(2).all(|x| x[0] < x[1]));
                assert!(m.iter().all(|&q| (q as usize) < c * h * w));
                assert!(g.pad_count(b) >= 0);
            }
            for round in 0..3 {
                let c0 = [-33, 0, 7][round];
                let xq = random_vec(&mut rng, c * h * w, 300, 0.1);
                let wq = random_vec(&mut rng, f * c * k * k, 128, 0.2);
                let dq = random_vec(&mut rng, g.outputs(), 5000, 0.3);
                let eval = |o: &LinearOutput| -> i64 {
                    o.pixel_terms.iter().map(|&(q, y)| xq[q] * y).sum::<i64>() + o.padding
                };
                let via_boxes = |o: &LinearOutput| -> i64 {
                    o.box_terms
                        .iter()
                        .map(|&(b, y)| {
                            y * g
                                .box_members(b)
                                .iter()
                                .map(|&q| xq[q as usize])
                                .sum::<i64>()
                        })
                        .sum::<i64>()
                        + o.padding
                };
                let fw = g.forward_outputs(&wq, c0).unwrap();
                let want = naive.forward(&xq, c0, &wq);
                assert_eq!(fw.len(), want.len());
                for (o, &z) in fw.iter().zip(&want) {
                    assert_eq!(eval(o), z, "forward {c}x{h}x{w} k{k} s{s} P{pad} p{p}");
                    assert_eq!(via_boxes(o), z);
                    assert!(o.pixel_terms.windows(2).all(|x| x[0].0 < x[1].0));
                    assert!(o.pixel_terms.iter().all(|&(_, y)| y != 0));
                }
                // The placement key vectors expand to the same input-space vectors.
                let keys = g.forward_key_vectors(&wq).unwrap();
                assert_eq!(keys.len(), fw.len());
                for (k, o) in keys.iter().zip(&fw) {
                    assert_eq!(pixel_terms(k), o.pixel_terms);
                }
                let gr = g.gradient_outputs(&dq, c0).unwrap();
                let keys = g.gradient_key_vectors(&dq).unwrap();
                assert_eq!(keys.len(), gr.len());
                for (k, o) in keys.iter().zip(&gr) {
                    assert_eq!(pixel_terms(k), o.pixel_terms);
                }
                let want = naive.gradient(&xq, c0, &dq);
                assert_eq!(gr.len(), want.len());
                for (o, &v) in gr.iter().zip(&want) {
                    assert_eq!(eval(o), v, "gradient {c}x{h}x{w} k{k} s{s} P{pad} p{p}");
                    assert_eq!(via_boxes(o), v);
                }
            }
        }
    }

    #[test]
    fn a_dense_layer_is_its_rows() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let g = LinearGeometry::new(30, 4).unwrap();
        let wq = random_vec(&mut rng, 120, 100, 0.3);
        let xq = random_vec(&mut rng, 30, 1000, 0.0);
        let outs = g.forward_outputs(&wq).unwrap();
        for (o, row) in outs.iter().zip(wq.chunks_exact(30)) {
            let z: i64 = row.iter().zip(&xq).map(|(w, x)| w * x).sum();
            assert_eq!(
                o.pixel_terms.iter().map(|&(q, y)| y * xq[q]).sum::<i64>(),
                z
            );
            assert_eq!(o.box_terms, o.pixel_terms);
            assert_eq!(o.padding, 0);
        }
        assert!(g.forward_outputs(&wq[1..]).is_err());
        assert!(LinearGeometry::new(0, 3).is_err());
    }

    #[test]
    fn unusable_geometries_are_errors() {
        assert!(ConvGeometry::new(0, 8, 8, 2, 3, 1, 1, 1).is_err());
        assert!(ConvGeometry::new(1, 8, 8, 2, 3, 0, 1, 1).is_err());
        // Kernel larger than the padded input.
        assert!(ConvGeometry::new(1, 2, 2, 2, 5, 1, 1, 1).is_err());
        // A pool larger than the convolution's output.
        assert!(ConvGeometry::new(1, 4, 4, 2, 3, 1, 0, 3).is_err());
        // Absurd sizes are refused, not allocated.
        assert!(ConvGeometry::new(usize::MAX, 2, 2, 1, 1, 1, 0, 1).is_err());
        assert!(ConvGeometry::new(1, 1 << 20, 1 << 20, 1, 1, 1, 0, 1).is_err());
        let g = ConvGeometry::new(1, 8, 8, 2, 3, 1, 1, 2).unwrap();
        assert!(g.forward_outputs(&[1; 17], 0).is_err());
        assert!(g.gradient_outputs(&[1; 3], 0).is_err());
        // Coefficients whose sums leave 64 bits are an error naming the divergence.
        let err = g
            .forward_outputs(&[i64::MAX; 18], 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("diverged"), "{err}");
    }
}
