//! The first layer in exact integer arithmetic — a [`FirstLayerSpec`]: a dense layer, or a
//! convolution of any geometry with an optional average pooling folded in — and the
//! [`FirstLayerBackend`] trait through which training reaches the training data.
//!
//! The first layer is the one linear map secure training evaluates over FEIP ciphertexts. The
//! quantised training mode ([`QuantizedFirstLayer`]) carries out exactly this integer arithmetic
//! on plaintext, so that secure training can be checked against it bit for bit.
//!
//! # Encoding
//!
//! `xq = round(X · S_x)` per feature, where `X` is the normalised input
//! ([`InputEncoding`](crate::nn::data::InputEncoding); MNIST: `X = (p - 33) / 80`, so at
//! `S_x = 80`, `xq = p - 33` exactly), `wq = round(w · S_w)` for the float weights `w`. The
//! biases stay on the server in float and never enter the integer arithmetic.
//!
//! # Linear (`inputs → outputs`, weights `[outputs, inputs]`)
//!
//! ```text
//! z[o]      = Σ_q wq[o, q] · xq[q]                                    (exact i64)
//! P[o]      = z[o] / (S_x · S_w) + bias[o]                             (f64, then f32)
//! G[o, q]   = Σ_{n ∈ batch} dq_n[o] · xq_n[q],  dq = round(dP · S_g)   (exact; i128 → i64)
//! dW[o, q]  = G[o, q] / (S_x · S_g)
//! ```
//!
//! # Convolution with folded average pooling (`C x H x W`, `F` filters `k x k`, stride `s`,
//! padding `pad`, pool `p`; weights `[F, C·k·k]`)
//!
//! `xpad` is `xq` padded by `pad` on each side with the public value `padding_xq` (the encoding
//! of a raw 0: MNIST's black pixel, -33; a standardised feature's mean, 0). With the (dilated)
//! box sum `B[c, u, v] = Σ_{di, dj < p} xpad[c, u + s·di, v + s·dj]`:
//!
//! ```text
//! oh = ((H + 2·pad - k) / s + 1) / p   (floor; likewise ow)
//! z[f, i, j]  = Σ_{c, a, b < k} wq[f, c·k·k + a·k + b] · B[c, s·p·i + a, s·p·j + b]
//! P[f, i, j]  = z[f, i, j] / (p² · S_x · S_w) + bias[f]
//! G[f, c·k·k + a·k + b] = Σ_n Σ_{i, j} dq_n[f, i, j] · B_n[c, s·p·i + a, s·p·j + b]
//! dW = G / (p² · S_x · S_g)
//! ```
//!
//! In exact arithmetic `P = avgpool_{p x p, stride p}(conv(X, w)) + bias`: each `z` is an inner
//! product of `wq[f]` with a window of `B` (what one FEIP decryption yields). With `p = 1` it is
//! a plain convolution. LeNet-5 ([`FirstLayerSpec::lenet5`]) is `C = 1`, `H = W = 28`, `k = 5`,
//! `s = 1`, `pad = 2`, `p = 2`: the fixed-size kernels of [`lenet5`] compute the same integers.
//!
//! Outputs are flat per sample: `[outputs]` for a linear layer, `[F, oh, ow]` row-major for a
//! convolution ([`FirstLayerSpec::outputs_per_sample`]). `G` sums over the batch like every
//! other layer's gradient; the training loop divides it by the batch size. Because `G` is exact,
//! the order of summation does not matter.
//!
//! # Output error
//!
//! The server encodes its softmax output `p` as `pq = round(p · S_p)` per class; the backend
//! returns `eq = pq - yq` with `yq = onehot(π(y)) · S_p` for `classes` classes (`π` the data
//! owner's [`LabelPermutation`]). The loss gradient at the logits is `eq / S_p`. In secure
//! training `yq` stays encrypted and `eq` comes from FEBO; the server can read the permuted
//! label off `pq - eq` (CryptoNN's known leakage: the mapping hides only what a class means).
//!
//! # Bounds
//!
//! Every `z` and `G` is checked against [`QuantConfig::forward_bound`] and
//! [`QuantConfig::gradient_bound`] ([`NnError::BoundExceeded`] naming the quantity and the scale
//! to lower), and the worst case per sample against `i64` overflow before it is computed.

pub mod lenet5;

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use crate::fe::encoding::FixedPoint;
use crate::nn::data::{Dataset, InputEncoding, InputShape, LabelPermutation};
use crate::nn::error::{check_shape, NnError};

pub use lenet5::{
    box_sum, pooled_conv, weight_gradient_accumulate, PixelEncoding, BOX_SIDE, FILTERS, KERNEL,
    OUTPUTS, PATCH, POOLED_SIDE,
};

/// The geometry of the first (linear) layer; see the module docs for the integer semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstLayerSpec {
    /// A dense layer on a flat input (an image is read row-major per channel).
    Linear {
        /// Input features.
        inputs: usize,
        /// Outputs.
        outputs: usize,
    },
    /// A convolution, optionally followed by a `pool x pool` average pooling with stride
    /// `pool` folded into the same linear map.
    Conv {
        /// Input channels `C`.
        channels: usize,
        /// Input rows `H` (real, before padding).
        height: usize,
        /// Input columns `W`.
        width: usize,
        /// Filters `F`.
        filters: usize,
        /// Kernel side `k`.
        kernel: usize,
        /// Stride `s`.
        stride: usize,
        /// Padding on every side (filled with the encoding's padding value).
        padding: usize,
        /// Average-pooling side `p` (1: none).
        pool: usize,
    },
}

impl FirstLayerSpec {
    /// LeNet-5's conv1 + S2 on MNIST: 1x28x28, 6 filters of 5x5, stride 1, padding 2, pool 2.
    #[must_use]
    pub fn lenet5() -> Self {
        Self::Conv {
            channels: 1,
            height: 28,
            width: 28,
            filters: FILTERS,
            kernel: KERNEL,
            stride: 1,
            padding: 2,
            pool: 2,
        }
    }

    /// Checks that every size is positive and the output is not empty.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] naming the problem.
    pub fn validate(&self) -> Result<(), NnError> {
        let bad = |m: String| Err(NnError::InvalidConfig(format!("first layer {self:?}: {m}")));
        match *self {
            Self::Linear { inputs, outputs } => {
                if inputs == 0 || outputs == 0 {
                    return bad("sizes must be positive".into());
                }
            }
            Self::Conv {
                channels,
                height,
                width,
                filters,
                kernel,
                stride,
                pool,
                ..
            } => {
                if [channels, height, width, filters, kernel, stride, pool].contains(&0) {
                    return bad("sizes, stride and pool must be positive".into());
                }
                let (oh, ow) = self.conv_sides();
                if oh == 0 || ow == 0 {
                    return bad("the kernel and pooling do not fit the padded input".into());
                }
            }
        }
        Ok(())
    }

    /// `(oh, ow)` of a convolution (0 if the kernel does not fit), `(1, outputs)` for a linear
    /// layer.
    #[must_use]
    pub fn conv_sides(&self) -> (usize, usize) {
        match *self {
            Self::Linear { outputs, .. } => (1, outputs),
            Self::Conv {
                height,
                width,
                kernel,
                stride,
                padding,
                pool,
                ..
            } => {
                let side = |n: usize| match (n + 2 * padding).checked_sub(kernel) {
                    Some(d) if stride > 0 && pool > 0 => (d / stride + 1) / pool,
                    _ => 0,
                };
                (side(height), side(width))
            }
        }
    }

    /// Sides `(H_B, W_B)` of the box-sum image `B` of a convolution, `H + 2·pad - s·(p-1)`.
    #[must_use]
    pub fn box_sides(&self) -> (usize, usize) {
        match *self {
            Self::Linear { inputs, .. } => (1, inputs),
            Self::Conv {
                height,
                width,
                stride,
                padding,
                pool,
                ..
            } => {
                let shrink = stride * pool.saturating_sub(1);
                (
                    (height + 2 * padding).saturating_sub(shrink),
                    (width + 2 * padding).saturating_sub(shrink),
                )
            }
        }
    }

    /// The input shape this layer reads.
    #[must_use]
    pub fn input_shape(&self) -> InputShape {
        match *self {
            Self::Linear { inputs, .. } => InputShape::Flat(inputs),
            Self::Conv {
                channels,
                height,
                width,
                ..
            } => InputShape::Image {
                channels,
                height,
                width,
            },
        }
    }

    /// Values per input sample.
    #[must_use]
    pub fn input_len(&self) -> usize {
        self.input_shape().len()
    }

    /// `(rows, cols)` of the weights: `(filters, C·k·k)` or `(outputs, inputs)`.
    #[must_use]
    pub fn weight_shape(&self) -> (usize, usize) {
        match *self {
            Self::Linear { inputs, outputs } => (outputs, inputs),
            Self::Conv {
                channels,
                filters,
                kernel,
                ..
            } => (filters, channels * kernel * kernel),
        }
    }

    /// The output shape per sample: `[outputs]` or `[F, oh, ow]`.
    #[must_use]
    pub fn output_shape(&self) -> Vec<usize> {
        match *self {
            Self::Linear { outputs, .. } => vec![outputs],
            Self::Conv { filters, .. } => {
                let (oh, ow) = self.conv_sides();
                vec![filters, oh, ow]
            }
        }
    }

    /// Outputs per sample.
    #[must_use]
    pub fn outputs_per_sample(&self) -> usize {
        self.output_shape().iter().product()
    }

    /// The pool factor `p²` that enters the decode divisors (1 for a linear layer).
    #[must_use]
    pub fn pool_factor(&self) -> f64 {
        match *self {
            Self::Linear { .. } => 1.0,
            Self::Conv { pool, .. } => (pool * pool) as f64,
        }
    }

    /// The weight row (filter or output) of flat output `o`.
    #[must_use]
    pub fn row_of_output(&self, o: usize) -> usize {
        match *self {
            Self::Linear { .. } => o,
            Self::Conv { .. } => {
                let (oh, ow) = self.conv_sides();
                o / (oh * ow).max(1)
            }
        }
    }

    /// Terms of one output's inner product with the box sum (`C·k·k`, or `inputs`).
    #[must_use]
    pub fn forward_fan_in(&self) -> usize {
        self.weight_shape().1
    }

    /// Terms per sample of one weight gradient entry (`oh·ow`, or 1).
    #[must_use]
    pub fn gradient_fan_in(&self) -> usize {
        let (oh, ow) = self.conv_sides();
        match self {
            Self::Linear { .. } => 1,
            Self::Conv { .. } => oh * ow,
        }
    }

    /// The operand of one sample's inner products: the box sum `B` (`[C, H_B, W_B]`
    /// row-major) of a convolution, `xq` itself for a linear layer.
    ///
    /// # Panics
    /// If `xq.len() != input_len()`.
    #[must_use]
    pub fn operand(&self, xq: &[i64], padding_xq: i64) -> Vec<i64> {
        assert_eq!(xq.len(), self.input_len(), "first-layer input length");
        match *self {
            Self::Linear { .. } => xq.to_vec(),
            Self::Conv {
                channels,
                height,
                width,
                stride,
                padding,
                pool,
                ..
            } => {
                let (hp, wp) = (height + 2 * padding, width + 2 * padding);
                let mut xpad = vec![padding_xq; channels * hp * wp];
                for c in 0..channels {
                    for r in 0..height {
                        let src = &xq[(c * height + r) * width..][..width];
                        xpad[(c * hp + r + padding) * wp + padding..][..width].copy_from_slice(src);
                    }
                }
                if pool == 1 {
                    return xpad;
                }
                let (hb, wb) = self.box_sides();
                let mut b = vec![0i64; channels * hb * wb];
                for c in 0..channels {
                    let plane = &xpad[c * hp * wp..(c + 1) * hp * wp];
                    for u in 0..hb {
                        let dst = &mut b[(c * hb + u) * wb..][..wb];
                        for di in 0..pool {
                            for dj in 0..pool {
                                let src = &plane[(u + stride * di) * wp + stride * dj..][..wb];
                                for (d, &x) in dst.iter_mut().zip(src) {
                                    *d += x;
                                }
                            }
                        }
                    }
                }
                b
            }
        }
    }

    /// `z` of one sample (`outputs_per_sample()` values) from its [`operand`](Self::operand)
    /// and the encoded weights (row-major `weight_shape()`). The caller guarantees no `i64`
    /// overflow (`forward_fan_in · max|wq| · max|operand| < 2^63`).
    ///
    /// # Panics
    /// If the slices have the wrong lengths.
    pub fn forward_sample(&self, operand: &[i64], wq: &[i64], out: &mut [i64]) {
        let (rows, cols) = self.weight_shape();
        assert_eq!(wq.len(), rows * cols);
        assert_eq!(out.len(), self.outputs_per_sample());
        match *self {
            Self::Linear { .. } => {
                for (o, w) in out.iter_mut().zip(wq.chunks_exact(cols)) {
                    *o = w.iter().zip(operand).map(|(&a, &b)| a * b).sum();
                }
            }
            Self::Conv {
                channels,
                kernel: k,
                stride,
                pool,
                ..
            } => {
                let (hb, wb) = self.box_sides();
                let (oh, ow) = self.conv_sides();
                let step = stride * pool;
                for (wf, zf) in wq.chunks_exact(cols).zip(out.chunks_exact_mut(oh * ow)) {
                    for i in 0..oh {
                        for j in 0..ow {
                            let mut acc = 0i64;
                            for c in 0..channels {
                                for a in 0..k {
                                    let row =
                                        &operand[(c * hb + step * i + a) * wb + step * j..][..k];
                                    let wrow = &wf[(c * k + a) * k..][..k];
                                    for (&w, &x) in wrow.iter().zip(row) {
                                        acc += w * x;
                                    }
                                }
                            }
                            zf[i * ow + j] = acc;
                        }
                    }
                }
            }
        }
    }

    /// Adds one sample's `G_n` (row-major `weight_shape()`) onto `acc`, from its operand and
    /// its encoded output gradient `dq` (`outputs_per_sample()` values). The caller guarantees
    /// no `i64` overflow per sample (`gradient_fan_in · max|dq| · max|operand| < 2^63`).
    ///
    /// # Panics
    /// If the slices have the wrong lengths.
    pub fn gradient_sample(&self, operand: &[i64], dq: &[i64], acc: &mut [i128]) {
        let (rows, cols) = self.weight_shape();
        assert_eq!(acc.len(), rows * cols);
        assert_eq!(dq.len(), self.outputs_per_sample());
        match *self {
            Self::Linear { .. } => {
                for (&d, g) in dq.iter().zip(acc.chunks_exact_mut(cols)) {
                    if d == 0 {
                        continue;
                    }
                    for (gv, &x) in g.iter_mut().zip(operand) {
                        *gv += i128::from(d * x);
                    }
                }
            }
            Self::Conv {
                channels,
                kernel: k,
                stride,
                pool,
                ..
            } => {
                let (hb, wb) = self.box_sides();
                let (oh, ow) = self.conv_sides();
                let step = stride * pool;
                let mut g = vec![0i64; cols];
                for (df, gf) in dq.chunks_exact(oh * ow).zip(acc.chunks_exact_mut(cols)) {
                    g.fill(0);
                    for i in 0..oh {
                        for j in 0..ow {
                            let d = df[i * ow + j];
                            if d == 0 {
                                continue;
                            }
                            for c in 0..channels {
                                for a in 0..k {
                                    let row =
                                        &operand[(c * hb + step * i + a) * wb + step * j..][..k];
                                    for (gv, &x) in g[(c * k + a) * k..][..k].iter_mut().zip(row) {
                                        *gv += d * x;
                                    }
                                }
                            }
                        }
                    }
                    for (a, &v) in gf.iter_mut().zip(&g) {
                        *a += i128::from(v);
                    }
                }
            }
        }
    }
}

/// Fixed-point scales and integer bounds of the quantised (and secure) first layer.
///
/// Defaults (LeNet-5 on MNIST) and why:
///
/// | field | default | reason |
/// |---|---|---|
/// | `scale_x` | 80 | the normalisation's divisor: `xq = p - 33` exactly, no rounding |
/// | `scale_w` | 128 | keeps `|z| <= 2^22` for `max|w| <= 1.48`; weight resolution 1/128 |
/// | `scale_grad` | 2^12 | resolution 2.4e-4 on `dP`, whose entries are mostly 1e-4..1e-1 |
/// | `scale_p` | 2^12 | resolution 2.4e-4 on softmax outputs; `|eq| <= 4096` |
/// | `forward_bound` | 2^22 | bound on `|z|` |
/// | `gradient_bound` | 2^30 | bound on `|G|`, a sum of `batch · 196` products |
///
/// Measured over two full epochs of LeNet-5 with the default training configuration (batch 16,
/// seed 1): `max|z| ≈ 664,000 ≈ 2^19.3` (bound 2^22), `max|wq| = 115`, `max|dq| = 6,493`,
/// `max|G| ≈ 21.4 million ≈ 2^24.3` (bound 2^30; `G` grows about linearly with the batch size).
/// Other built-in models declare their own scales ([`crate::nn::model::ModelSpec`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantConfig {
    /// `S_x`, the scale of normalised inputs.
    pub scale_x: f64,
    /// `S_w`, the scale of the first layer's weights.
    pub scale_w: f64,
    /// `S_g`, the scale of the gradient at the first layer's (pooled) output.
    pub scale_grad: f64,
    /// `S_p`, the scale of softmax outputs and one-hot labels.
    pub scale_p: f64,
    /// Largest allowed `|z|`.
    pub forward_bound: u64,
    /// Largest allowed `|G|`.
    pub gradient_bound: u64,
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self {
            scale_x: 80.0,
            scale_w: 128.0,
            scale_grad: 4096.0,
            scale_p: 4096.0,
            forward_bound: 1 << 22,
            gradient_bound: 1 << 30,
        }
    }
}

impl QuantConfig {
    /// Checks that every scale is finite and positive (and `S_p` an integer, so that one-hot
    /// labels encode exactly) and the bounds non-zero.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] naming the bad field.
    pub fn validate(&self) -> Result<(), NnError> {
        for (name, s) in [
            ("scale_x", self.scale_x),
            ("scale_w", self.scale_w),
            ("scale_grad", self.scale_grad),
            ("scale_p", self.scale_p),
        ] {
            if !(s.is_finite() && s > 0.0) {
                return Err(NnError::InvalidConfig(format!(
                    "{name} must be finite and > 0, got {s}"
                )));
            }
        }
        if self.scale_p.fract() != 0.0 {
            return Err(NnError::InvalidConfig(format!(
                "scale_p must be an integer, got {}",
                self.scale_p
            )));
        }
        if self.forward_bound == 0 || self.gradient_bound == 0 {
            return Err(NnError::InvalidConfig("integer bounds must be > 0".into()));
        }
        Ok(())
    }

    pub(crate) fn codec(scale: f64) -> Result<FixedPoint, NnError> {
        FixedPoint::new(scale).map_err(|e| NnError::InvalidConfig(e.to_string()))
    }

    /// `wq = round(w · S_w)` for the first layer's weights (any shape; the backend checks it
    /// against its [`FirstLayerSpec::weight_shape`]).
    ///
    /// # Errors
    /// [`NnError::Encoding`] for a NaN or infinite weight or one beyond 2^53 / `S_w`.
    pub fn encode_weights(&self, w: ArrayView2<'_, f32>) -> Result<Array2<i64>, NnError> {
        let codec = Self::codec(self.scale_w)?;
        let mut out = Array2::zeros(w.raw_dim());
        for (o, &v) in out.iter_mut().zip(w.iter()) {
            *o = codec.encode_f32(v).map_err(|source| NnError::Encoding {
                what: "first-layer weights",
                source,
                hint: "training diverged (lower --lr) or --scale-w is too large",
            })?;
        }
        Ok(out)
    }

    /// `P = z / (p² · S_x · S_w) + bias[row]`, `[n, outputs_per_sample]` (see the module docs).
    ///
    /// # Errors
    /// [`NnError::Shape`] if `z` is not `[n, outputs_per_sample]` or `bias` not `[rows]`.
    pub fn decode_forward(
        &self,
        spec: &FirstLayerSpec,
        z: ArrayView2<'_, i64>,
        bias: &[f32],
    ) -> Result<Array2<f32>, NnError> {
        check_shape(
            "first-layer forward z",
            &[z.nrows(), spec.outputs_per_sample()],
            z.shape(),
        )?;
        check_shape("first-layer bias", &[spec.weight_shape().0], &[bias.len()])?;
        let denom = spec.pool_factor() * self.scale_x * self.scale_w;
        let rows: Vec<usize> = (0..spec.outputs_per_sample())
            .map(|o| spec.row_of_output(o))
            .collect();
        let mut p = Array2::<f32>::zeros(z.raw_dim());
        for (mut prow, zrow) in p.rows_mut().into_iter().zip(z.rows()) {
            for ((o, &zv), &r) in prow.iter_mut().zip(zrow.iter()).zip(&rows) {
                *o = (zv as f64 / denom) as f32 + bias[r];
            }
        }
        Ok(p)
    }

    /// `dq = round(dP · S_g)`, `[n, outputs_per_sample]`.
    ///
    /// # Errors
    /// [`NnError::Encoding`] on NaN, infinities, or magnitudes beyond 2^53 / `S_g`.
    pub fn encode_output_gradient(&self, dp: ArrayView2<'_, f32>) -> Result<Array2<i64>, NnError> {
        let codec = Self::codec(self.scale_grad)?;
        let mut out = Array2::zeros(dp.raw_dim());
        for (o, &v) in out.iter_mut().zip(dp.iter()) {
            *o = codec.encode_f32(v).map_err(|source| NnError::Encoding {
                what: "first-layer output gradient",
                source,
                hint: "training diverged (lower --lr) or --scale-grad is too large",
            })?;
        }
        Ok(out)
    }

    /// `dW = G / (p² · S_x · S_g)`, `weight_shape`.
    #[must_use]
    pub fn decode_weight_gradient(
        &self,
        spec: &FirstLayerSpec,
        g: ArrayView2<'_, i64>,
    ) -> Array2<f32> {
        let denom = spec.pool_factor() * self.scale_x * self.scale_grad;
        g.mapv(|v| (v as f64 / denom) as f32)
    }

    /// `pq = round(p · S_p)`, `[n, classes]`.
    ///
    /// # Errors
    /// [`NnError::Encoding`] if a probability is NaN or outside `[0, 1]`.
    pub fn encode_probabilities(&self, p: ArrayView2<'_, f32>) -> Result<Array2<i64>, NnError> {
        let codec = FixedPoint::with_bound(self.scale_p, self.scale_p as u64)
            .map_err(|e| NnError::InvalidConfig(e.to_string()))?;
        let mut out = Array2::zeros(p.raw_dim());
        for (o, &v) in out.iter_mut().zip(p.iter()) {
            if v < 0.0 {
                return Err(NnError::InvalidConfig(format!("negative probability {v}")));
            }
            *o = codec.encode_f32(v).map_err(|source| NnError::Encoding {
                what: "softmax output",
                source,
                hint: "the model produced NaN; lower --lr",
            })?;
        }
        Ok(out)
    }

    /// Loss gradient at the logits, `eq / S_p`, `[n, classes]`.
    #[must_use]
    pub fn decode_output_error(&self, eq: ArrayView2<'_, i64>) -> Array2<f32> {
        eq.mapv(|v| (v as f64 / self.scale_p) as f32)
    }

    /// `yq`, the encoded one-hot value `round(1 · S_p)`.
    #[must_use]
    pub fn one_hot_value(&self) -> i64 {
        self.scale_p.round() as i64
    }
}

/// Errors unless `|value| <= bound`.
///
/// # Errors
/// [`NnError::BoundExceeded`] naming `layer` and carrying `hint`.
pub fn check_bound(
    layer: &'static str,
    value: i128,
    bound: u64,
    hint: &'static str,
) -> Result<(), NnError> {
    if value.unsigned_abs() <= u128::from(bound) {
        Ok(())
    } else {
        Err(NnError::BoundExceeded {
            layer,
            value,
            bound,
            hint,
        })
    }
}

/// The data side of training for the first layer: whoever holds the training samples and
/// labels — in plaintext ([`QuantizedFirstLayer`]) or as ciphertexts (secure training).
///
/// The training loop identifies a mini-batch by sample indices and, per step, calls
/// [`forward`](Self::forward), then [`output_error`](Self::output_error), then
/// [`weight_gradient`](Self::weight_gradient) with the same indices. All quantities are the
/// exact integers defined in the module docs, so two correct backends return identical
/// values and training with either gives bit-identical weights.
///
/// ```
/// use cryptonn::nn::data::{Dataset, LabelPermutation};
/// use cryptonn::nn::first_layer::{FirstLayerBackend, FirstLayerSpec, QuantConfig, QuantizedFirstLayer};
/// use ndarray::Array2;
///
/// // Two blank MNIST images labelled 3 and 5.
/// let data = Dataset::new(vec![0; 2 * 784], vec![3, 5])?;
/// let q = QuantConfig::default();
/// let labels = LabelPermutation::identity(10);
/// let spec = FirstLayerSpec::lenet5();
/// let mut backend = QuantizedFirstLayer::new(&data, labels, q, spec)?;
///
/// // Every filter weight 1/128 (wq = 1): z = Σ B over a 5x5 window = 25 · 4 · (0 - 33).
/// let wq = Array2::from_elem((6, 25), 1i64);
/// let z = backend.forward(&[0, 1], wq.view())?;
/// assert_eq!(z.dim(), (2, 6 * 14 * 14));
/// assert_eq!(z[[1, 2 * 196 + 7 * 14 + 7]], -3300);
///
/// // A uniform softmax output of 0.1 per class: eq = pq - onehot · S_p.
/// let pq = Array2::from_elem((1, 10), 410i64);
/// let eq = backend.output_error(&[1], pq.view())?;
/// assert_eq!(eq[[0, 5]], 410 - 4096);
/// assert_eq!(eq[[0, 4]], 410);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait FirstLayerBackend {
    /// Number of training examples.
    fn len(&self) -> usize;

    /// The training mode this backend implements, as recorded in
    /// [`TrainReport::mode`](crate::nn::train::TrainReport::mode): `"quantized"`, `"secure"`.
    fn mode(&self) -> &'static str;

    /// Whether there are no training examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first layer's geometry.
    fn spec(&self) -> &FirstLayerSpec;

    /// The scales and bounds the data was encoded with.
    fn quant_config(&self) -> &QuantConfig;

    /// Number of classes of the labels.
    fn classes(&self) -> usize;

    /// `z: [batch.len(), outputs_per_sample]` for the encoded weights `wq: weight_shape`.
    ///
    /// # Errors
    /// [`NnError::IndexOutOfRange`], [`NnError::Shape`], [`NnError::BoundExceeded`] when a
    /// `|z|` exceeds the forward bound, or [`NnError::Backend`] for backend failures.
    fn forward(&mut self, batch: &[usize], wq: ArrayView2<'_, i64>)
        -> Result<Array2<i64>, NnError>;

    /// `eq = pq - yq: [batch.len(), classes]` for the encoded softmax outputs
    /// `pq: [batch.len(), classes]`.
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    fn output_error(
        &mut self,
        batch: &[usize],
        pq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError>;

    /// `G: weight_shape` summed over the batch, for the encoded gradients
    /// `dq: [batch.len(), outputs_per_sample]`.
    ///
    /// # Errors
    /// As [`forward`](Self::forward), with the gradient bound.
    fn weight_gradient(
        &mut self,
        batch: &[usize],
        dq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError>;
}

/// The largest `|v|`, widened so that `i64::MIN` has no overflow (0 for no values).
pub(crate) fn max_abs<'b>(values: impl IntoIterator<Item = &'b i64>) -> i128 {
    values
        .into_iter()
        .map(|v| i128::from(v.unsigned_abs()))
        .max()
        .unwrap_or(0)
}

/// Encodes samples of a dataset (`xq`) and builds their first-layer operands, with a byte
/// lookup table for byte datasets under a uniform encoding (MNIST).
#[derive(Debug, Clone)]
pub struct SampleEncoder<'a> {
    data: &'a Dataset,
    scale_x: f64,
    padding_xq: i64,
    table: Option<Box<[i64; 256]>>,
}

impl<'a> SampleEncoder<'a> {
    /// An encoder of `data` at scale `scale_x`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] or [`NnError::Encoding`] for an unusable scale or encoding.
    pub fn new(data: &'a Dataset, scale_x: f64) -> Result<Self, NnError> {
        data.encoding().validate(data.shape().len())?;
        let padding_xq = data.encoding().padding_xq(scale_x)?;
        let table = match (data.bytes(0).is_some() || data.is_empty(), data.encoding()) {
            (true, InputEncoding::Uniform(norm)) => {
                let enc = PixelEncoding::new(scale_x, norm)?;
                Some(Box::new(std::array::from_fn(|p| enc.encode(p as u8))))
            }
            _ => None,
        };
        Ok(Self {
            data,
            scale_x,
            padding_xq,
            table,
        })
    }

    /// The public `xq` of the padding.
    #[must_use]
    pub fn padding_xq(&self) -> i64 {
        self.padding_xq
    }

    /// `xq` of sample `i`.
    ///
    /// # Errors
    /// As [`Dataset::encode_sample`].
    pub fn encode(&self, i: usize) -> Result<Vec<i64>, NnError> {
        match (
            &self.table,
            self.data.bytes(i.min(self.data.len().saturating_sub(1))),
        ) {
            (Some(t), Some(b)) if i < self.data.len() => {
                Ok(b.iter().map(|&p| t[usize::from(p)]).collect())
            }
            _ => self.data.encode_sample(i, self.scale_x),
        }
    }
}

/// The quantised-mode backend: holds the training set in plaintext and computes the integer
/// first layer directly (in parallel over the samples of a batch; exact, so deterministic).
#[derive(Debug, Clone)]
pub struct QuantizedFirstLayer<'a> {
    data: &'a Dataset,
    labels: LabelPermutation,
    config: QuantConfig,
    spec: FirstLayerSpec,
    encoder: SampleEncoder<'a>,
}

impl<'a> QuantizedFirstLayer<'a> {
    /// A backend over `data` (encoded by its [`InputEncoding`] at `config.scale_x`), whose
    /// labels are presented through `labels`, for the first layer `spec`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] or [`NnError::Encoding`] for unusable scales, a `spec` whose
    /// input is not the dataset's shape, or a permutation of another number of classes.
    pub fn new(
        data: &'a Dataset,
        labels: LabelPermutation,
        config: QuantConfig,
        spec: FirstLayerSpec,
    ) -> Result<Self, NnError> {
        config.validate()?;
        spec.validate()?;
        check_input(&spec, data)?;
        if labels.classes() != data.classes() {
            return Err(NnError::InvalidConfig(format!(
                "a label permutation of {} classes for a dataset of {}",
                labels.classes(),
                data.classes()
            )));
        }
        Ok(Self {
            data,
            labels,
            config,
            spec,
            encoder: SampleEncoder::new(data, config.scale_x)?,
        })
    }

    fn check_indices(&self, batch: &[usize]) -> Result<(), NnError> {
        match batch.iter().find(|&&i| i >= self.data.len()) {
            Some(&index) => Err(NnError::IndexOutOfRange {
                index,
                len: self.data.len(),
            }),
            None => Ok(()),
        }
    }

    /// The operand of sample `i` (see [`FirstLayerSpec::operand`]).
    fn operand(&self, i: usize) -> Result<Vec<i64>, NnError> {
        Ok(self
            .spec
            .operand(&self.encoder.encode(i)?, self.encoder.padding_xq()))
    }
}

/// Errors unless `spec` reads inputs of `data`'s shape.
pub(crate) fn check_input(spec: &FirstLayerSpec, data: &Dataset) -> Result<(), NnError> {
    let ok = match spec {
        FirstLayerSpec::Linear { inputs, .. } => *inputs == data.shape().len(),
        FirstLayerSpec::Conv { .. } => spec.input_shape() == data.shape(),
    };
    if ok {
        Ok(())
    } else {
        Err(NnError::InvalidConfig(format!(
            "the first layer reads a {} but the dataset holds a {}",
            spec.input_shape(),
            data.shape()
        )))
    }
}

impl FirstLayerBackend for QuantizedFirstLayer<'_> {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn mode(&self) -> &'static str {
        "quantized"
    }

    fn spec(&self) -> &FirstLayerSpec {
        &self.spec
    }

    fn quant_config(&self) -> &QuantConfig {
        &self.config
    }

    fn classes(&self) -> usize {
        self.data.classes()
    }

    fn forward(
        &mut self,
        batch: &[usize],
        wq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        self.check_indices(batch)?;
        let (rows, cols) = self.spec.weight_shape();
        check_shape("first-layer weights wq", &[rows, cols], wq.shape())?;
        let wmax = max_abs(wq.iter());
        let wq = wq.as_standard_layout();
        let wq = wq
            .as_slice()
            .ok_or_else(|| NnError::InvalidConfig("layout".into()))?;
        let outs = self.spec.outputs_per_sample();
        let mut z = Array2::<i64>::zeros((batch.len(), outs));
        let this = &*self;
        z.as_slice_mut()
            .ok_or_else(|| NnError::InvalidConfig("layout".into()))?
            .par_chunks_exact_mut(outs.max(1))
            .zip(batch.par_iter())
            .try_for_each(|(out, &i)| {
                let b = this.operand(i)?;
                // No i64 overflow is possible below this bound (checked, not assumed).
                check_bound(
                    "first-layer forward z (worst case)",
                    this.spec.forward_fan_in() as i128 * wmax * max_abs(b.iter()),
                    i64::MAX as u64,
                    "lower --scale-w or --scale-x",
                )?;
                this.spec.forward_sample(&b, wq, out);
                Ok::<(), NnError>(())
            })?;
        check_bound(
            "first-layer forward z",
            max_abs(z.iter()),
            self.config.forward_bound,
            "lower --scale-w (or --scale-x), or raise the forward bound",
        )?;
        Ok(z)
    }

    fn output_error(
        &mut self,
        batch: &[usize],
        pq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        self.check_indices(batch)?;
        check_shape(
            "encoded softmax output pq",
            &[batch.len(), self.data.classes()],
            pq.shape(),
        )?;
        let one = self.config.one_hot_value();
        let mut eq = pq.to_owned();
        for (mut row, &i) in eq.axis_iter_mut(Axis(0)).zip(batch) {
            row[usize::from(self.labels.apply(self.data.label(i)))] -= one;
        }
        Ok(eq)
    }

    fn weight_gradient(
        &mut self,
        batch: &[usize],
        dq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        self.check_indices(batch)?;
        let outs = self.spec.outputs_per_sample();
        check_shape(
            "first-layer output gradient dq",
            &[batch.len(), outs],
            dq.shape(),
        )?;
        let dmax = max_abs(dq.iter());
        let dq = dq.as_standard_layout();
        let dq = dq
            .as_slice()
            .ok_or_else(|| NnError::InvalidConfig("layout".into()))?;
        let (rows, cols) = self.spec.weight_shape();
        let this = &*self;
        // Chunks of samples accumulate into one i128 buffer each; the sums are exact, so the
        // result does not depend on how rayon splits the work.
        const SAMPLES_PER_TASK: usize = 8;
        let g = dq
            .par_chunks(outs.max(1) * SAMPLES_PER_TASK)
            .zip(batch.par_chunks(SAMPLES_PER_TASK))
            .map(|(d, idx)| {
                let mut acc = vec![0i128; rows * cols];
                for (dn, &i) in d.chunks_exact(outs.max(1)).zip(idx) {
                    let b = this.operand(i)?;
                    check_bound(
                        "first-layer weight gradient G (worst case per sample)",
                        this.spec.gradient_fan_in() as i128 * dmax * max_abs(b.iter()),
                        i64::MAX as u64,
                        "lower --scale-grad or --scale-x",
                    )?;
                    this.spec.gradient_sample(&b, dn, &mut acc);
                }
                Ok(acc)
            })
            .try_reduce(
                || vec![0i128; rows * cols],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    Ok::<_, NnError>(a)
                },
            )?;
        let mut out = Array2::<i64>::zeros((rows, cols));
        for (o, &v) in out.iter_mut().zip(&g) {
            check_bound(
                "first-layer weight gradient G",
                v,
                self.config.gradient_bound.min(i64::MAX as u64),
                "lower --scale-grad (or --scale-x), or raise the gradient bound",
            )?;
            *o = v as i64;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::data::PixelNormalization;

    #[test]
    fn validate_rejects_bad_scales() {
        let bad = QuantConfig {
            scale_w: f64::NAN,
            ..QuantConfig::default()
        };
        assert!(matches!(bad.validate(), Err(NnError::InvalidConfig(_))));
        let bad = QuantConfig {
            scale_p: 10.5,
            ..QuantConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(QuantConfig::default().validate().is_ok());
    }

    #[test]
    fn lenet5_geometry() {
        let s = FirstLayerSpec::lenet5();
        assert_eq!(s.conv_sides(), (POOLED_SIDE, POOLED_SIDE));
        assert_eq!(s.box_sides(), (BOX_SIDE, BOX_SIDE));
        assert_eq!(s.weight_shape(), (FILTERS, PATCH));
        assert_eq!(s.outputs_per_sample(), OUTPUTS);
        assert_eq!(s.pool_factor(), 4.0);
        assert_eq!(s.row_of_output(195), 0);
        assert_eq!(s.row_of_output(196), 1);
    }

    /// The generic kernels give the fixed-size LeNet-5 kernels' integers.
    #[test]
    fn generic_kernels_match_the_lenet5_kernels() {
        let s = FirstLayerSpec::lenet5();
        let enc = PixelEncoding::new(80.0, &PixelNormalization::default()).unwrap();
        let pixels: Vec<u8> = (0..784).map(|i| ((i * 37 + 11) % 256) as u8).collect();
        let xq: Vec<i64> = pixels.iter().map(|&p| enc.encode(p)).collect();
        let b = s.operand(&xq, enc.encode(0));
        assert_eq!(b, enc.box_sum(&pixels));
        let wq: Vec<i64> = (0..150).map(|i| (i as i64 * 7) % 23 - 11).collect();
        let (mut z1, mut z2) = (vec![0; OUTPUTS], vec![0; OUTPUTS]);
        s.forward_sample(&b, &wq, &mut z1);
        pooled_conv(&b, &wq, &mut z2);
        assert_eq!(z1, z2);
        let dq: Vec<i64> = (0..OUTPUTS).map(|i| (i as i64 * 13) % 41 - 20).collect();
        let (mut g1, mut g2) = (vec![0i128; 150], vec![0i128; 150]);
        s.gradient_sample(&b, &dq, &mut g1);
        weight_gradient_accumulate(&b, &dq, &mut g2);
        assert_eq!(g1, g2);
    }

    /// The definition in the module docs, evaluated naively for a strided, multi-channel,
    /// padded convolution with a 3x3 pool.
    #[test]
    fn conv_kernels_match_the_definition() {
        let (c, h, w, f, k, s, pad, p) = (2, 11, 10, 3, 3, 2, 1, 3);
        let spec = FirstLayerSpec::Conv {
            channels: c,
            height: h,
            width: w,
            filters: f,
            kernel: k,
            stride: s,
            padding: pad,
            pool: p,
        };
        spec.validate().unwrap();
        let xq: Vec<i64> = (0..c * h * w).map(|i| (i as i64 * 29) % 17 - 8).collect();
        let padv = -5i64;
        let xpad = |ch: usize, u: usize, v: usize| -> i64 {
            let (u, v) = (u as isize - pad as isize, v as isize - pad as isize);
            if u < 0 || v < 0 || u >= h as isize || v >= w as isize {
                padv
            } else {
                xq[(ch * h + u as usize) * w + v as usize]
            }
        };
        let bsum = |ch: usize, u: usize, v: usize| -> i64 {
            let mut t = 0;
            for di in 0..p {
                for dj in 0..p {
                    t += xpad(ch, u + s * di, v + s * dj);
                }
            }
            t
        };
        let (oh, ow) = spec.conv_sides();
        assert_eq!(
            (oh, ow),
            (((h + 2 - 3) / 2 + 1) / 3, ((w + 2 - 3) / 2 + 1) / 3)
        );
        let wq: Vec<i64> = (0..f * c * k * k).map(|i| (i as i64 * 5) % 9 - 4).collect();
        let b = spec.operand(&xq, padv);
        let mut z = vec![0; spec.outputs_per_sample()];
        spec.forward_sample(&b, &wq, &mut z);
        let dq: Vec<i64> = (0..z.len()).map(|i| (i as i64 * 3) % 7 - 3).collect();
        let mut g = vec![0i128; f * c * k * k];
        spec.gradient_sample(&b, &dq, &mut g);
        for ff in 0..f {
            for i in 0..oh {
                for j in 0..ow {
                    let mut want = 0;
                    for ch in 0..c {
                        for a in 0..k {
                            for bb in 0..k {
                                want += wq[ff * c * k * k + ch * k * k + a * k + bb]
                                    * bsum(ch, s * p * i + a, s * p * j + bb);
                            }
                        }
                    }
                    assert_eq!(z[(ff * oh + i) * ow + j], want);
                }
            }
            for ch in 0..c {
                for a in 0..k {
                    for bb in 0..k {
                        let mut want = 0i128;
                        for i in 0..oh {
                            for j in 0..ow {
                                want += i128::from(
                                    dq[(ff * oh + i) * ow + j]
                                        * bsum(ch, s * p * i + a, s * p * j + bb),
                                );
                            }
                        }
                        assert_eq!(g[ff * c * k * k + ch * k * k + a * k + bb], want);
                    }
                }
            }
        }
    }

    #[test]
    fn linear_kernels_match_the_definition() {
        let spec = FirstLayerSpec::Linear {
            inputs: 5,
            outputs: 3,
        };
        let xq = [3i64, -1, 4, 1, -5];
        let wq: Vec<i64> = (0..15).map(|i| i as i64 - 7).collect();
        let mut z = vec![0; 3];
        spec.forward_sample(&spec.operand(&xq, 0), &wq, &mut z);
        for o in 0..3 {
            assert_eq!(z[o], (0..5).map(|q| wq[o * 5 + q] * xq[q]).sum::<i64>());
        }
        let dq = [2i64, 0, -3];
        let mut g = vec![0i128; 15];
        spec.gradient_sample(&xq, &dq, &mut g);
        for o in 0..3 {
            for q in 0..5 {
                assert_eq!(g[o * 5 + q], i128::from(dq[o] * xq[q]));
            }
        }
    }
}
