//! LeNet-5's first layer (conv1 fused with its 2x2 average pooling) in integer arithmetic, and
//! the [`FirstLayerBackend`] trait through which training reaches the training data.
//!
//! Under LeCun et al. (1998)'s layer order, C1 (6 filters of 5x5) and S2 (2x2 average pooling)
//! form one linear map with 6·14·14 = 1,176 outputs per image. This module states it over the
//! integers, which is how secure training evaluates it under functional encryption. The
//! quantised training mode ([`QuantizedFirstLayer`]) carries out exactly this integer
//! arithmetic on plaintext, so that secure training can be checked against it bit for bit.
//!
//! # Forward
//!
//! Scales `S_x`, `S_w` ([`QuantConfig`]); `X` is the padded, normalised 32x32 image
//! ([`PixelNormalization`]: `X = (p - 33) / 80` for a pixel byte `p` by default, padding with
//! black pixels), `w: [6, 5, 5]` the float filters, `bias: [6]` the float biases (they stay on
//! the server and never enter the integer arithmetic).
//!
//! ```text
//! xq[u, v]    = round(X[u, v] · S_x)                                   u, v ∈ 0..32
//! B[u, v]     = xq[u, v] + xq[u+1, v] + xq[u, v+1] + xq[u+1, v+1]      u, v ∈ 0..31  (box sum)
//! wq[f, a, b] = round(w[f, a, b] · S_w)
//! z[f, i, j]  = Σ_{a, b < 5} wq[f, a, b] · B[2i + a, 2j + b]           i, j ∈ 0..14  (exact i64)
//! P[f, i, j]  = z[f, i, j] / (4 · S_x · S_w) + bias[f]                 (f64, then f32)
//! ```
//!
//! In exact arithmetic `P = avgpool₂ₓ₂(conv(X, w)) + bias`: each `z` is an inner product of
//! `wq[f]` with a 25-element window of `B`, which is what one FEIP decryption yields.
//!
//! # Backward
//!
//! With `dP: [6, 14, 14]` the float gradient of an image's loss with respect to `P`, and
//! scale `S_g`:
//!
//! ```text
//! dq[f, i, j] = round(dP[f, i, j] · S_g)
//! G[f, a, b]  = Σ_{n ∈ batch} Σ_{i, j} dq_n[f, i, j] · B_n[2i + a, 2j + b]   (exact; i128 → i64)
//! dW[f, a, b] = G[f, a, b] / (4 · S_x · S_g)                                  (f64, then f32)
//! dbias[f]    = Σ_n Σ_{i, j} dP_n[f, i, j]                                     (float, server)
//! ```
//!
//! Like every other layer's, `dW` is a sum over the batch; the training loop divides it by the
//! batch size. Because `G` is exact, the order of summation does not matter.
//!
//! # Output error
//!
//! The server encodes its softmax output `p` as `pq = round(p · S_p)` per class; the backend
//! returns `eq = pq - yq` with `yq = onehot(π(y)) · S_p` (`π` the data owner's
//! [`LabelPermutation`]). The loss gradient at the logits is `eq / S_p` (per sample). In secure
//! training `yq` stays encrypted and `eq` comes from FEBO; note that the server can read the
//! permuted label off `pq - eq`, and does so to report the training loss — this is part of
//! CryptoNN's known leakage (the label mapping hides only what each class means).
//!
//! # Bounds and default scales
//!
//! `S_x = 80` (equal to the normalisation's divisor) makes `xq = p - 33` exactly, an integer in
//! `-33..=222`, so `-132 <= B <= 888` and `|z| <= 25 · 888 · max|wq| = 22,200 · S_w · max|w|`.
//! With the default `S_w = 128` and the default forward bound `2^22` (e.g. a 2^11-entry
//! baby-step table solves a discrete logarithm in at most 2^11 giant steps), every `z` is within
//! the bound whenever `max|w| <= 2^22 / (22,200 · 128) ≈ 1.48`; LeNet-5's conv1 weights start
//! below `sqrt(6/25) ≈ 0.49` (He uniform) and stay well under 1.48 in training (measured
//! figures on [`QuantConfig`]). Each value is checked all the same: a `z` or `G` above its bound
//! is [`NnError::BoundExceeded`] naming the layer and the scale to lower. The output error obeys
//! `|eq| <= S_p`. `S_g` and the gradient bound are discussed on [`QuantConfig`].

use ndarray::{Array2, Array4, ArrayView2, ArrayView4, Axis, Zip};
use rayon::prelude::*;

use crate::fe::encoding::FixedPoint;
use crate::nn::data::{
    Dataset, LabelPermutation, PixelNormalization, CLASSES, IMAGE_SIDE, PADDED_SIDE, PADDING,
};
use crate::nn::error::{check_shape, NnError};

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

/// Fixed-point scales and integer bounds of the quantised (and secure) first layer.
///
/// Defaults and why:
///
/// | field | default | reason |
/// |---|---|---|
/// | `scale_x` | 80 | the normalisation's divisor: `xq = p - 33` exactly, no rounding |
/// | `scale_w` | 128 | keeps `|z| <= 2^22` for `max|w| <= 1.48` (module docs); weight resolution 1/128 |
/// | `scale_grad` | 2^12 | resolution 2.4e-4 on `dP`, whose entries are mostly 1e-4..1e-1 |
/// | `scale_p` | 2^12 | resolution 2.4e-4 on softmax outputs; `|eq| <= 4096` |
/// | `forward_bound` | 2^22 | bound on `|z|` |
/// | `gradient_bound` | 2^30 | bound on `|G|`, a sum of `batch · 196` products |
///
/// Measured over two full epochs with the default training configuration (batch 16, seed 1):
/// `max|z| ≈ 664,000 ≈ 2^19.3` (bound 2^22), `max|wq| = 115`, `max|dq| = 6,493`,
/// `max|G| ≈ 21.4 million ≈ 2^24.3` (bound 2^30; `G` grows about linearly with the batch size).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantConfig {
    /// `S_x`, the scale of normalised pixels.
    pub scale_x: f64,
    /// `S_w`, the scale of conv1's weights.
    pub scale_w: f64,
    /// `S_g`, the scale of the gradient at the pooled conv1 output.
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

    fn codec(scale: f64) -> Result<FixedPoint, NnError> {
        FixedPoint::new(scale).map_err(|e| NnError::InvalidConfig(e.to_string()))
    }

    /// `wq = round(w · S_w)` for conv1's weights `[6, 25]`.
    ///
    /// # Errors
    /// [`NnError::Encoding`] for a NaN or infinite weight or one beyond 2^53 / `S_w`.
    pub fn encode_weights(&self, w: ArrayView2<'_, f32>) -> Result<Array2<i64>, NnError> {
        check_shape("conv1 weights", &[FILTERS, PATCH], w.shape())?;
        let codec = Self::codec(self.scale_w)?;
        let mut out = Array2::zeros(w.raw_dim());
        for (o, &v) in out.iter_mut().zip(w.iter()) {
            *o = codec.encode_f32(v).map_err(|source| NnError::Encoding {
                what: "conv1 weights",
                source,
                hint: "training diverged (lower --lr) or --scale-w is too large",
            })?;
        }
        Ok(out)
    }

    /// `P = z / (4 · S_x · S_w) + bias[f]`, `[n, 6, 14, 14]`.
    ///
    /// # Errors
    /// [`NnError::Shape`] if `z` is not `[n, 6, 14, 14]` or `bias` not `[6]`.
    pub fn decode_forward(
        &self,
        z: ArrayView4<'_, i64>,
        bias: &[f32],
    ) -> Result<Array4<f32>, NnError> {
        let n = z.shape()[0];
        check_shape(
            "conv1 forward z",
            &[n, FILTERS, POOLED_SIDE, POOLED_SIDE],
            z.shape(),
        )?;
        check_shape("conv1 bias", &[FILTERS], &[bias.len()])?;
        let denom = 4.0 * self.scale_x * self.scale_w;
        let mut p = Array4::<f32>::zeros(z.raw_dim());
        Zip::indexed(&mut p)
            .and(&z)
            .for_each(|(_, f, _, _), o, &zv| *o = (zv as f64 / denom) as f32 + bias[f]);
        Ok(p)
    }

    /// `dq = round(dP · S_g)`, `[n, 6, 14, 14]`.
    ///
    /// # Errors
    /// [`NnError::Encoding`] on NaN, infinities, or magnitudes beyond 2^53 / `S_g`.
    pub fn encode_output_gradient(&self, dp: ArrayView4<'_, f32>) -> Result<Array4<i64>, NnError> {
        let codec = Self::codec(self.scale_grad)?;
        let mut out = Array4::zeros(dp.raw_dim());
        for (o, &v) in out.iter_mut().zip(dp.iter()) {
            *o = codec.encode_f32(v).map_err(|source| NnError::Encoding {
                what: "conv1 output gradient",
                source,
                hint: "training diverged (lower --lr) or --scale-grad is too large",
            })?;
        }
        Ok(out)
    }

    /// `dW = G / (4 · S_x · S_g)`, `[6, 25]`.
    #[must_use]
    pub fn decode_weight_gradient(&self, g: ArrayView2<'_, i64>) -> Array2<f32> {
        let denom = 4.0 * self.scale_x * self.scale_grad;
        g.mapv(|v| (v as f64 / denom) as f32)
    }

    /// `pq = round(p · S_p)`, `[n, 10]`.
    ///
    /// # Errors
    /// [`NnError::Encoding`] if a probability is NaN or outside `[0, 1]`.
    pub fn encode_probabilities(&self, p: ArrayView2<'_, f32>) -> Result<Array2<i64>, NnError> {
        check_shape("softmax output", &[p.nrows(), CLASSES], p.shape())?;
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

    /// Loss gradient at the logits, `eq / S_p`, `[n, 10]`.
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

/// The data side of training for the first layer: whoever holds the training images and
/// labels — in plaintext ([`QuantizedFirstLayer`]) or as ciphertexts (secure training).
///
/// The training loop identifies a mini-batch by sample indices and, per step, calls
/// [`forward`](Self::forward), then [`output_error`](Self::output_error), then
/// [`weight_gradient`](Self::weight_gradient) with the same indices. All quantities are the
/// exact integers defined in the module docs, so two correct backends return identical
/// values and training with either gives bit-identical weights.
///
/// ```
/// use cryptonn::nn::data::{Dataset, LabelPermutation, PixelNormalization};
/// use cryptonn::nn::first_layer::{FirstLayerBackend, QuantConfig, QuantizedFirstLayer};
/// use ndarray::Array2;
///
/// // Two blank images labelled 3 and 5.
/// let data = Dataset::new(vec![0; 2 * 784], vec![3, 5])?;
/// let q = QuantConfig::default();
/// let labels = LabelPermutation::identity();
/// let mut backend = QuantizedFirstLayer::new(&data, labels, q, PixelNormalization::default())?;
///
/// // Every filter weight 1/128 (wq = 1): z = Σ B over a 5x5 window = 25 · 4 · (0 - 33).
/// let wq = Array2::from_elem((6, 25), 1i64);
/// let z = backend.forward(&[0, 1], wq.view())?;
/// assert_eq!(z.dim(), (2, 6, 14, 14));
/// assert_eq!(z[[1, 2, 7, 7]], -3300);
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

    /// The scales and bounds the data was encoded with.
    fn quant_config(&self) -> &QuantConfig;

    /// The pixel normalisation the data was encoded with.
    fn normalization(&self) -> PixelNormalization;

    /// `z: [batch.len(), 6, 14, 14]` for the encoded weights `wq: [6, 25]`.
    ///
    /// # Errors
    /// [`NnError::IndexOutOfRange`], [`NnError::Shape`], [`NnError::BoundExceeded`] when a
    /// `|z|` exceeds the forward bound, or [`NnError::Backend`] for backend failures.
    fn forward(&mut self, batch: &[usize], wq: ArrayView2<'_, i64>)
        -> Result<Array4<i64>, NnError>;

    /// `eq = pq - yq: [batch.len(), 10]` for the encoded softmax outputs `pq: [batch.len(), 10]`.
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    fn output_error(
        &mut self,
        batch: &[usize],
        pq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError>;

    /// `G: [6, 25]` summed over the batch, for the encoded gradients `dq: [batch.len(), 6, 14, 14]`.
    ///
    /// # Errors
    /// As [`forward`](Self::forward), with the gradient bound.
    fn weight_gradient(
        &mut self,
        batch: &[usize],
        dq: ArrayView4<'_, i64>,
    ) -> Result<Array2<i64>, NnError>;
}

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

/// The quantised-mode backend: holds the training set in plaintext and computes the integer
/// first layer directly (in parallel over the images of a batch; exact, so deterministic).
#[derive(Debug, Clone)]
pub struct QuantizedFirstLayer<'a> {
    data: &'a Dataset,
    labels: LabelPermutation,
    config: QuantConfig,
    norm: PixelNormalization,
    pixels: PixelEncoding,
}

impl<'a> QuantizedFirstLayer<'a> {
    /// A backend over `data`, whose pixels are normalised by `norm` and encoded at
    /// `config.scale_x`, and whose labels are presented through `labels`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] or [`NnError::Encoding`] for unusable scales.
    pub fn new(
        data: &'a Dataset,
        labels: LabelPermutation,
        config: QuantConfig,
        norm: PixelNormalization,
    ) -> Result<Self, NnError> {
        config.validate()?;
        Ok(Self {
            data,
            labels,
            pixels: PixelEncoding::new(config.scale_x, &norm)?,
            norm,
            config,
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

    /// Largest `|B|` for this pixel encoding.
    fn max_box(&self) -> i128 {
        4 * i128::from(self.pixels.max_abs())
    }
}

/// The largest `|v|`, widened so that `i64::MIN` has no overflow (0 for no values).
pub(crate) fn max_abs<'b>(values: impl IntoIterator<Item = &'b i64>) -> i128 {
    values
        .into_iter()
        .map(|v| i128::from(v.unsigned_abs()))
        .max()
        .unwrap_or(0)
}

impl FirstLayerBackend for QuantizedFirstLayer<'_> {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn mode(&self) -> &'static str {
        "quantized"
    }

    fn quant_config(&self) -> &QuantConfig {
        &self.config
    }

    fn normalization(&self) -> PixelNormalization {
        self.norm
    }

    fn forward(
        &mut self,
        batch: &[usize],
        wq: ArrayView2<'_, i64>,
    ) -> Result<Array4<i64>, NnError> {
        self.check_indices(batch)?;
        check_shape("conv1 weights wq", &[FILTERS, PATCH], wq.shape())?;
        // No i64 overflow is possible below this bound (checked, not assumed).
        check_bound(
            "conv1 forward z (worst case)",
            PATCH as i128 * max_abs(wq.iter()) * self.max_box(),
            i64::MAX as u64,
            "lower --scale-w or --scale-x",
        )?;
        let wq = wq.as_standard_layout();
        let wq = wq.as_slice().expect("standard layout");
        let mut z = Array4::<i64>::zeros((batch.len(), FILTERS, POOLED_SIDE, POOLED_SIDE));
        z.as_slice_mut()
            .expect("fresh array is contiguous")
            .par_chunks_exact_mut(OUTPUTS)
            .zip(batch.par_iter())
            .for_each(|(out, &i)| pooled_conv(&self.pixels.box_sum(self.data.image(i)), wq, out));
        let worst = max_abs(z.iter());
        check_bound(
            "conv1 forward z",
            worst,
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
            &[batch.len(), CLASSES],
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
        dq: ArrayView4<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        self.check_indices(batch)?;
        check_shape(
            "conv1 output gradient dq",
            &[batch.len(), FILTERS, POOLED_SIDE, POOLED_SIDE],
            dq.shape(),
        )?;
        check_bound(
            "conv1 weight gradient G (worst case per image)",
            (POOLED_SIDE * POOLED_SIDE) as i128 * max_abs(dq.iter()) * self.max_box(),
            i64::MAX as u64,
            "lower --scale-grad or --scale-x",
        )?;
        let dq = dq.as_standard_layout();
        let dq = dq.as_slice().expect("standard layout");
        let g = dq
            .par_chunks_exact(OUTPUTS)
            .zip(batch.par_iter())
            .map(|(d, &i)| {
                let mut acc = vec![0i128; FILTERS * PATCH];
                weight_gradient_accumulate(&self.pixels.box_sum(self.data.image(i)), d, &mut acc);
                acc
            })
            .reduce(
                || vec![0i128; FILTERS * PATCH],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        let mut out = Array2::<i64>::zeros((FILTERS, PATCH));
        for (o, &v) in out.iter_mut().zip(&g) {
            check_bound(
                "conv1 weight gradient G",
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
}
