//! 2-D convolution by im2col + GEMM, and the convolution fused with 2x2 average pooling.
//!
//! # Convolution
//!
//! For an input `x: [n, C, H, W]`, weights `w: [F, C·k·k]` (row `f` is filter `f` flattened as
//! `[C, k, k]`), bias `b: [F]`, stride `s` and zero padding `p`:
//!
//! ```text
//! y[n, f, i, j] = b[f] + Σ_{c, a, b'} w[f, (c·k + a)·k + b'] · x[n, c, s·i + a - p, s·j + b' - p]
//! output side   = (H + 2p - k) / s + 1
//! ```
//!
//! im2col lays the receptive fields of the whole chunk side by side, `cols: [C·k·k, n·OH·OW]`
//! (column `m·OH·OW + i·OW + j` is sample `m`'s field at `(i, j)`), so the forward pass is one
//! GEMM `w · cols` and the backward pass two:
//!
//! ```text
//! dW   = dY · colsᵀ                      dY: [F, n·OH·OW]
//! db   = Σ over samples and positions of dY
//! dX   = col2im(wᵀ · dY)                 (col2im adds each column back onto its field)
//! ```
//!
//! # Convolution followed by 2x2 average pooling ([`avg_pooled_forward`])
//!
//! With no nonlinearity in between (LeCun et al. 1998's C1 → S2), `avgpool₂ₓ₂(conv(x))` is one
//! linear map: with the 2x2 box mean `A[u, v] = (x[u, v] + x[u+1, v] + x[u, v+1] + x[u+1, v+1]) / 4`,
//!
//! ```text
//! avgpool(conv(x))[f, i, j] = b[f] + Σ_{c,a,b'} w[f, c, a, b'] · A[c, 2i + a, 2j + b']
//! ```
//!
//! i.e. a stride-2 convolution of `A` with the same weights. It needs a quarter of the
//! multiply-adds of convolution then pooling; for the first layer it is also exactly the
//! computation the quantised and secure modes carry out in integers (see
//! [`crate::nn::first_layer`]).

use ndarray::{Array1, Array2, Array4, ArrayView2, ArrayView4, Axis, Ix2};

use crate::nn::gemm::par_dot;
use crate::nn::init::Init;
use crate::nn::pool;

/// Hyper-parameters of a [`Conv2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Input channels `C`.
    pub in_channels: usize,
    /// Output channels (filters) `F`.
    pub out_channels: usize,
    /// Kernel side `k`.
    pub kernel: usize,
    /// Stride `s`.
    pub stride: usize,
    /// Zero padding `p` on every side.
    pub padding: usize,
}

impl Default for Conv2dConfig {
    /// LeNet-5's C1: 1 → 6 channels, 5x5, stride 1, no padding.
    fn default() -> Self {
        Self {
            in_channels: 1,
            out_channels: 6,
            kernel: 5,
            stride: 1,
            padding: 0,
        }
    }
}

impl Conv2dConfig {
    /// Length of a flattened filter, `C·k·k`.
    #[must_use]
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    /// Output side for an input side, `(side + 2p - k) / s + 1`, or `None` if the kernel does
    /// not fit.
    #[must_use]
    pub fn output_side(&self, side: usize) -> Option<usize> {
        (side + 2 * self.padding)
            .checked_sub(self.kernel)
            .map(|d| d / self.stride + 1)
    }
}

/// Gradients of a convolution's parameters, summed over the samples seen.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvGrads {
    /// `dL/dw`, `[F, C·k·k]`.
    pub weight: Array2<f32>,
    /// `dL/db`, `[F]`.
    pub bias: Array1<f32>,
}

/// A 2-D convolution layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    /// The configuration.
    pub config: Conv2dConfig,
    /// Filters, `[F, C·k·k]`.
    pub weight: Array2<f32>,
    /// Biases, `[F]`.
    pub bias: Array1<f32>,
}

impl Conv2d {
    /// A layer with weights from `init` (drawn from `rng`) and zero biases.
    #[must_use]
    pub fn new<R: rand::Rng>(config: Conv2dConfig, init: Init, rng: &mut R) -> Self {
        let fan_in = config.patch_len();
        let fan_out = config.out_channels * config.kernel * config.kernel;
        Self {
            config,
            weight: init.sample(Ix2(config.out_channels, fan_in), fan_in, fan_out, rng),
            bias: Array1::zeros(config.out_channels),
        }
    }

    /// Forward pass over a chunk `x: [n, C, H, W]`. Returns `y: [n, F, OH, OW]` and the im2col
    /// matrix, which the backward pass needs.
    ///
    /// # Panics
    /// If `x` has the wrong number of channels or is smaller than the kernel.
    #[must_use]
    pub fn forward(&self, x: ArrayView4<'_, f32>) -> (Array4<f32>, Array2<f32>) {
        let c = &self.config;
        assert_eq!(x.shape()[1], c.in_channels, "conv input channels");
        let cols = im2col(x, c.kernel, c.stride, c.padding);
        let oh = c
            .output_side(x.shape()[2])
            .expect("kernel larger than input");
        let ow = c
            .output_side(x.shape()[3])
            .expect("kernel larger than input");
        let y = gemm_to_nchw(&self.weight, &cols, &self.bias, x.shape()[0], oh, ow);
        (y, cols)
    }

    /// Backward pass. `cols` is the forward pass's im2col matrix, `dy: [n, F, OH, OW]` the
    /// upstream gradient and `input_shape` the shape of the forward input. Returns the parameter
    /// gradients and, if `need_input_grad`, `dL/dx`.
    #[must_use]
    pub fn backward(
        &self,
        cols: ArrayView2<'_, f32>,
        dy: ArrayView4<'_, f32>,
        input_shape: [usize; 4],
        need_input_grad: bool,
    ) -> (ConvGrads, Option<Array4<f32>>) {
        let c = &self.config;
        let dy_mat = nchw_to_mat(dy);
        let grads = ConvGrads {
            weight: par_dot(dy_mat.view(), cols.t()),
            bias: dy_mat.sum_axis(Axis(1)),
        };
        let dx = need_input_grad.then(|| {
            let dcols = par_dot(self.weight.t(), dy_mat.view());
            col2im(dcols.view(), input_shape, c.kernel, c.stride, c.padding)
        });
        (grads, dx)
    }
}

/// Forward pass of a convolution followed by 2x2 average pooling, computed as the stride-2
/// convolution `conv` of the 2x2 box mean of `x: [n, C, H, W]` (see the module docs).
/// `conv.config` must have stride 2 and no padding; its weights are those of the stride-1
/// convolution being pooled. Returns the pooled output `[n, F, (H-k+1)/2, (W-k+1)/2]` and the
/// im2col matrix of the box mean.
///
/// # Panics
/// If the configuration is not stride 2 without padding, or `H - k + 1` or `W - k + 1` is odd.
#[must_use]
pub fn avg_pooled_forward(conv: &Conv2d, x: ArrayView4<'_, f32>) -> (Array4<f32>, Array2<f32>) {
    let c = &conv.config;
    assert!(
        c.stride == 2 && c.padding == 0,
        "fused conv + avg pool needs stride 2, padding 0"
    );
    assert!(
        (x.shape()[2] + 1 - c.kernel).is_multiple_of(2)
            && (x.shape()[3] + 1 - c.kernel).is_multiple_of(2),
        "convolution output must have even sides to pool 2x2"
    );
    let mean = pool::box_mean2x2(x);
    conv.forward(mean.view())
}

/// Backward pass of [`avg_pooled_forward`]; see [`Conv2d::backward`]. `input_shape` is the shape
/// of `x`.
#[must_use]
pub fn avg_pooled_backward(
    conv: &Conv2d,
    cols: ArrayView2<'_, f32>,
    dy: ArrayView4<'_, f32>,
    input_shape: [usize; 4],
    need_input_grad: bool,
) -> (ConvGrads, Option<Array4<f32>>) {
    let [n, c, h, w] = input_shape;
    let (grads, dmean) = conv.backward(cols, dy, [n, c, h - 1, w - 1], need_input_grad);
    (grads, dmean.map(|d| pool::box_mean2x2_backward(d.view())))
}

/// `w · cols + b`, reshaped from `[F, n·OH·OW]` to `[n, F, OH, OW]`.
fn gemm_to_nchw(
    w: &Array2<f32>,
    cols: &Array2<f32>,
    bias: &Array1<f32>,
    n: usize,
    oh: usize,
    ow: usize,
) -> Array4<f32> {
    let f = w.nrows();
    let l = oh * ow;
    let y_mat = par_dot(w.view(), cols.view());
    let mut y = Array4::<f32>::zeros((n, f, oh, ow));
    let yv = y.as_slice_mut().expect("fresh array is contiguous");
    let ym = y_mat.as_slice().expect("GEMM output is contiguous");
    for (fi, &b) in bias.iter().enumerate() {
        let row = &ym[fi * n * l..(fi + 1) * n * l];
        for m in 0..n {
            let dst = &mut yv[(m * f + fi) * l..(m * f + fi + 1) * l];
            for (d, &s) in dst.iter_mut().zip(&row[m * l..(m + 1) * l]) {
                *d = s + b;
            }
        }
    }
    y
}

/// `[n, F, OH, OW]` to `[F, n·OH·OW]` (the layout of `w · cols`).
#[must_use]
pub fn nchw_to_mat(y: ArrayView4<'_, f32>) -> Array2<f32> {
    let (n, f, oh, ow) = y.dim();
    let l = oh * ow;
    let y = y.as_standard_layout();
    let ys = y.as_slice().expect("standard layout");
    let mut out = Array2::<f32>::zeros((f, n * l));
    let os = out.as_slice_mut().expect("fresh array is contiguous");
    for fi in 0..f {
        for m in 0..n {
            os[(fi * n + m) * l..(fi * n + m + 1) * l]
                .copy_from_slice(&ys[(m * f + fi) * l..(m * f + fi + 1) * l]);
        }
    }
    out
}

/// The im2col matrix `[C·k·k, n·OH·OW]` of `x: [n, C, H, W]` (see the module docs).
///
/// # Panics
/// If the kernel does not fit or `stride == 0`.
#[must_use]
pub fn im2col(x: ArrayView4<'_, f32>, k: usize, stride: usize, pad: usize) -> Array2<f32> {
    assert!(stride > 0, "stride must be positive");
    let (n, c, h, w) = x.dim();
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (w + 2 * pad - k) / stride + 1;
    let l = oh * ow;
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let mut cols = Array2::<f32>::zeros((c * k * k, n * l));
    let cs = cols.as_slice_mut().expect("fresh array is contiguous");
    let row_len = n * l;
    for ci in 0..c {
        for a in 0..k {
            for b in 0..k {
                let row = &mut cs[((ci * k + a) * k + b) * row_len..][..row_len];
                for m in 0..n {
                    let img = &xs[(m * c + ci) * h * w..][..h * w];
                    for i in 0..oh {
                        let dst = &mut row[m * l + i * ow..][..ow];
                        if pad == 0 {
                            // No padding: every index is in range.
                            let src = &img[(i * stride + a) * w + b..];
                            if stride == 1 {
                                dst.copy_from_slice(&src[..ow]);
                            } else {
                                for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
                                    *d = *s;
                                }
                            }
                            continue;
                        }
                        let u = (i * stride + a) as isize - pad as isize;
                        if u < 0 || u >= h as isize {
                            continue; // zero padding: already zero
                        }
                        let src = &img[u as usize * w..][..w];
                        for (j, d) in dst.iter_mut().enumerate() {
                            let v = (j * stride + b) as isize - pad as isize;
                            if v >= 0 && v < w as isize {
                                *d = src[v as usize];
                            }
                        }
                    }
                }
            }
        }
    }
    cols
}

/// The adjoint of [`im2col`]: adds every column of `cols` back onto its receptive field of an
/// array of shape `shape = [n, C, H, W]`.
///
/// # Panics
/// If `cols` does not have the shape [`im2col`] would produce.
#[must_use]
pub fn col2im(
    cols: ArrayView2<'_, f32>,
    shape: [usize; 4],
    k: usize,
    stride: usize,
    pad: usize,
) -> Array4<f32> {
    let [n, c, h, w] = shape;
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (w + 2 * pad - k) / stride + 1;
    let l = oh * ow;
    assert_eq!(cols.dim(), (c * k * k, n * l), "col2im: cols shape");
    let cols = cols.as_standard_layout();
    let cs = cols.as_slice().expect("standard layout");
    let mut x = Array4::<f32>::zeros((n, c, h, w));
    let xs = x.as_slice_mut().expect("fresh array is contiguous");
    let row_len = n * l;
    for ci in 0..c {
        for a in 0..k {
            for b in 0..k {
                let row = &cs[((ci * k + a) * k + b) * row_len..][..row_len];
                for m in 0..n {
                    let img = &mut xs[(m * c + ci) * h * w..][..h * w];
                    for i in 0..oh {
                        let src = &row[m * l + i * ow..][..ow];
                        if pad == 0 {
                            let dst = &mut img[(i * stride + a) * w + b..];
                            if stride == 1 {
                                for (d, s) in dst[..ow].iter_mut().zip(src) {
                                    *d += *s;
                                }
                            } else {
                                for (d, s) in dst.iter_mut().step_by(stride).zip(src) {
                                    *d += *s;
                                }
                            }
                            continue;
                        }
                        let u = (i * stride + a) as isize - pad as isize;
                        if u < 0 || u >= h as isize {
                            continue;
                        }
                        let dst = &mut img[u as usize * w..][..w];
                        for (j, &s) in src.iter().enumerate() {
                            let v = (j * stride + b) as isize - pad as isize;
                            if v >= 0 && v < w as isize {
                                dst[v as usize] += s;
                            }
                        }
                    }
                }
            }
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::init::{seeded_rng, RngStream};
    use ndarray::Array;

    /// The definition in the module docs, evaluated directly.
    fn naive_conv(conv: &Conv2d, x: &Array4<f32>) -> Array4<f32> {
        let c = conv.config;
        let (n, ch, h, w) = x.dim();
        let oh = c.output_side(h).unwrap();
        let ow = c.output_side(w).unwrap();
        let mut y = Array4::zeros((n, c.out_channels, oh, ow));
        for m in 0..n {
            for f in 0..c.out_channels {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut acc = conv.bias[f];
                        for ci in 0..ch {
                            for a in 0..c.kernel {
                                for b in 0..c.kernel {
                                    let u = (c.stride * i + a) as isize - c.padding as isize;
                                    let v = (c.stride * j + b) as isize - c.padding as isize;
                                    if u >= 0 && v >= 0 && (u as usize) < h && (v as usize) < w {
                                        acc += conv.weight[[f, (ci * c.kernel + a) * c.kernel + b]]
                                            * x[[m, ci, u as usize, v as usize]];
                                    }
                                }
                            }
                        }
                        y[[m, f, i, j]] = acc;
                    }
                }
            }
        }
        y
    }

    fn max_diff(a: &Array4<f32>, b: &Array4<f32>) -> f32 {
        assert_eq!(a.dim(), b.dim());
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn random(shape: [usize; 4], seed: u64) -> Array4<f32> {
        let mut rng = seeded_rng(seed, RngStream::Weights);
        Init::HeUniform.sample(ndarray::Dim(shape), 1, 0, &mut rng)
    }

    #[test]
    fn im2col_gemm_matches_naive_convolution() {
        for (stride, padding) in [(1, 0), (2, 0), (1, 2), (2, 1)] {
            let config = Conv2dConfig {
                in_channels: 3,
                out_channels: 4,
                kernel: 3,
                stride,
                padding,
            };
            let mut rng = seeded_rng(1, RngStream::Weights);
            let mut conv = Conv2d::new(config, Init::HeUniform, &mut rng);
            conv.bias = Array::linspace(-0.5, 0.5, 4);
            let x = random([2, 3, 9, 8], 2);
            let (y, _) = conv.forward(x.view());
            let want = naive_conv(&conv, &x);
            assert_eq!(y.dim(), want.dim());
            assert!(
                max_diff(&y, &want) < 1e-5,
                "stride {stride} padding {padding}"
            );
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> = <x, col2im(c)> for any x, c.
        let x = random([2, 2, 7, 6], 3);
        let cols = im2col(x.view(), 3, 2, 1);
        let c = {
            let mut rng = seeded_rng(4, RngStream::Weights);
            Init::HeUniform.sample(cols.raw_dim(), 1, 0, &mut rng)
        };
        let lhs: f32 = (&cols * &c).sum();
        let rhs: f32 = (&x * &col2im(c.view(), [2, 2, 7, 6], 3, 2, 1)).sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
    }

    #[test]
    fn avg_pooled_conv_equals_conv_then_avgpool() {
        let mut rng = seeded_rng(5, RngStream::Weights);
        let config = Conv2dConfig {
            in_channels: 2,
            out_channels: 3,
            kernel: 5,
            stride: 1,
            padding: 0,
        };
        let mut plain = Conv2d::new(config, Init::HeUniform, &mut rng);
        plain.bias = Array::linspace(-1.0, 1.0, 3);
        let fused = Conv2d {
            config: Conv2dConfig {
                stride: 2,
                ..config
            },
            ..plain.clone()
        };
        let x = random([3, 2, 14, 14], 6);
        let (y, _) = avg_pooled_forward(&fused, x.view());
        let (c, _) = plain.forward(x.view());
        let want = pool::avg_pool2x2(c.view());
        assert_eq!(y.dim(), (3, 3, 5, 5));
        assert!(max_diff(&y, &want) < 1e-5);
    }
}
