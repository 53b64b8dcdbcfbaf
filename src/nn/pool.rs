//! 2x2 pooling with stride 2 (average and max) and the 2x2 box mean with stride 1.
//!
//! For `x: [n, C, H, W]` with even `H`, `W`:
//!
//! ```text
//! avg_pool2x2(x)[i, j] = (x[2i, 2j] + x[2i+1, 2j] + x[2i, 2j+1] + x[2i+1, 2j+1]) / 4
//! max_pool2x2(x)[i, j] = max of the same four
//! ```
//!
//! Backward: the average spreads `dy/4` over the window; the max sends `dy` to the first
//! maximal element of the window (row-major order).
//!
//! The box mean (stride 1) `A[u, v] = (x[u, v] + x[u+1, v] + x[u, v+1] + x[u+1, v+1]) / 4` has
//! shape `[n, C, H-1, W-1]`; its adjoint adds `dA[u, v] / 4` onto the four pixels. It turns
//! "convolution then 2x2 average pooling" into a single stride-2 convolution
//! (see [`crate::nn::conv::avg_pooled_forward`]).

use ndarray::{Array4, ArrayView4};

/// Hyper-parameters of [`AvgPool2d`](avg_pool) and [`MaxPool2d`](max_pool): a `kernel x kernel`
/// window moved by `stride` (no padding).
///
/// ```text
/// output side = (side - kernel) / stride + 1
/// avg: y[i, j] = (1 / kernel²) Σ_{a, b < kernel} x[stride·i + a, stride·j + b]
/// max: y[i, j] = max of the same window (backward: dy to the first maximum, row-major)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pool2dConfig {
    /// Window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
}

impl Default for Pool2dConfig {
    /// 2x2 windows with stride 2.
    fn default() -> Self {
        Self {
            kernel: 2,
            stride: 2,
        }
    }
}

impl Pool2dConfig {
    /// Output side for an input side, or `None` if the window does not fit.
    #[must_use]
    pub fn output_side(&self, side: usize) -> Option<usize> {
        if self.stride == 0 || self.kernel == 0 {
            return None;
        }
        side.checked_sub(self.kernel).map(|d| d / self.stride + 1)
    }

    fn is_2x2(&self) -> bool {
        self.kernel == 2 && self.stride == 2
    }
}

/// Average pooling `[n, C, H, W] → [n, C, OH, OW]` (see [`Pool2dConfig`]).
///
/// # Panics
/// If the window does not fit.
#[must_use]
pub fn avg_pool(x: ArrayView4<'_, f32>, cfg: Pool2dConfig) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    if cfg.is_2x2() && h % 2 == 0 && w % 2 == 0 {
        return avg_pool2x2(x);
    }
    let (oh, ow) = (
        cfg.output_side(h).expect("pool window fits"),
        cfg.output_side(w).expect("pool window fits"),
    );
    let inv = 1.0 / (cfg.kernel * cfg.kernel) as f32;
    Array4::from_shape_fn((n, c, oh, ow), |(m, ch, i, j)| {
        let mut t = 0.0f32;
        for a in 0..cfg.kernel {
            for b in 0..cfg.kernel {
                t += x[[m, ch, cfg.stride * i + a, cfg.stride * j + b]];
            }
        }
        t * inv
    })
}

/// Backward of [`avg_pool`]: each window receives `dy / kernel²`. `input` is `(H, W)`.
#[must_use]
pub fn avg_pool_backward(
    dy: ArrayView4<'_, f32>,
    cfg: Pool2dConfig,
    input: (usize, usize),
) -> Array4<f32> {
    let (n, c, oh, ow) = dy.dim();
    if cfg.is_2x2() && input == (2 * oh, 2 * ow) {
        return avg_pool2x2_backward(dy);
    }
    let inv = 1.0 / (cfg.kernel * cfg.kernel) as f32;
    let mut dx = Array4::<f32>::zeros((n, c, input.0, input.1));
    for ((m, ch, i, j), &g) in dy.indexed_iter() {
        for a in 0..cfg.kernel {
            for b in 0..cfg.kernel {
                dx[[m, ch, cfg.stride * i + a, cfg.stride * j + b]] += g * inv;
            }
        }
    }
    dx
}

/// Max pooling `[n, C, H, W] → [n, C, OH, OW]`; returns the output and, per output, the flat
/// index `u·W + v` within its plane of the first maximum (for the backward pass).
///
/// # Panics
/// If the window does not fit.
#[must_use]
pub fn max_pool(x: ArrayView4<'_, f32>, cfg: Pool2dConfig) -> (Array4<f32>, Array4<u32>) {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = (
        cfg.output_side(h).expect("pool window fits"),
        cfg.output_side(w).expect("pool window fits"),
    );
    let mut y = Array4::<f32>::zeros((n, c, oh, ow));
    let mut arg = Array4::<u32>::zeros((n, c, oh, ow));
    for m in 0..n {
        for ch in 0..c {
            for i in 0..oh {
                for j in 0..ow {
                    let (mut bu, mut bv) = (cfg.stride * i, cfg.stride * j);
                    for a in 0..cfg.kernel {
                        for b in 0..cfg.kernel {
                            let (u, v) = (cfg.stride * i + a, cfg.stride * j + b);
                            if x[[m, ch, u, v]] > x[[m, ch, bu, bv]] {
                                (bu, bv) = (u, v);
                            }
                        }
                    }
                    y[[m, ch, i, j]] = x[[m, ch, bu, bv]];
                    arg[[m, ch, i, j]] = (bu * w + bv) as u32;
                }
            }
        }
    }
    (y, arg)
}

/// Backward of [`max_pool`]: `dy` goes to the recorded maximum (summed where windows
/// overlap). `input` is `(H, W)`.
#[must_use]
pub fn max_pool_backward(
    dy: ArrayView4<'_, f32>,
    arg: ArrayView4<'_, u32>,
    input: (usize, usize),
) -> Array4<f32> {
    let (n, c, _, _) = dy.dim();
    let w = input.1;
    let mut dx = Array4::<f32>::zeros((n, c, input.0, input.1));
    for ((m, ch, i, j), &g) in dy.indexed_iter() {
        let k = arg[[m, ch, i, j]] as usize;
        dx[[m, ch, k / w, k % w]] += g;
    }
    dx
}

/// The dilated `p x p` box mean with stride 1 and dilation `s`,
/// `A[u, v] = (1/p²) Σ_{di, dj < p} x[u + s·di, v + s·dj]`,
/// `[n, C, H, W] → [n, C, H - s(p-1), W - s(p-1)]` (for `p = 2`, `s = 1` exactly
/// [`box_mean2x2`]). A convolution of stride `s` followed by a `p x p` average pool of stride
/// `p` equals a convolution of stride `s·p` of `A`.
#[must_use]
pub fn box_mean(x: ArrayView4<'_, f32>, p: usize, s: usize) -> Array4<f32> {
    if p == 2 && s == 1 {
        return box_mean2x2(x);
    }
    let (n, c, h, w) = x.dim();
    let shrink = s * (p - 1);
    let inv = 1.0 / (p * p) as f32;
    Array4::from_shape_fn((n, c, h - shrink, w - shrink), |(m, ch, u, v)| {
        let mut t = 0.0f32;
        for di in 0..p {
            for dj in 0..p {
                t += x[[m, ch, u + s * di, v + s * dj]];
            }
        }
        t * inv
    })
}

/// The adjoint of [`box_mean`]; `input` is `(H, W)`.
#[must_use]
pub fn box_mean_backward(
    da: ArrayView4<'_, f32>,
    p: usize,
    s: usize,
    input: (usize, usize),
) -> Array4<f32> {
    if p == 2 && s == 1 {
        return box_mean2x2_backward(da);
    }
    let (n, c, _, _) = da.dim();
    let inv = 1.0 / (p * p) as f32;
    let mut dx = Array4::<f32>::zeros((n, c, input.0, input.1));
    for ((m, ch, u, v), &g) in da.indexed_iter() {
        for di in 0..p {
            for dj in 0..p {
                dx[[m, ch, u + s * di, v + s * dj]] += g * inv;
            }
        }
    }
    dx
}

/// Applies `f(window, out_index)` to every 2x2 window (stride 2) of every plane of `x`, where
/// `window = [x[2i, 2j], x[2i, 2j+1], x[2i+1, 2j], x[2i+1, 2j+1]]` (row-major in the window).
fn for_each_window(x: ArrayView4<'_, f32>, mut f: impl FnMut([f32; 4], usize)) {
    let (n, c, h, w) = x.dim();
    assert!(h % 2 == 0 && w % 2 == 0, "2x2 pooling needs even sides");
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let (oh, ow) = (h / 2, w / 2);
    for (p, plane) in xs.chunks_exact(h * w).enumerate().take(n * c) {
        for i in 0..oh {
            let r0 = &plane[2 * i * w..][..w];
            let r1 = &plane[(2 * i + 1) * w..][..w];
            for j in 0..ow {
                f(
                    [r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]],
                    (p * oh + i) * ow + j,
                );
            }
        }
    }
}

/// 2x2 average pooling with stride 2.
///
/// # Panics
/// If `H` or `W` is odd.
#[must_use]
pub fn avg_pool2x2(x: ArrayView4<'_, f32>) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let mut y = Array4::<f32>::zeros((n, c, h / 2, w / 2));
    let ys = y.as_slice_mut().expect("fresh array is contiguous");
    for_each_window(x, |v, o| ys[o] = 0.25 * ((v[0] + v[2]) + (v[1] + v[3])));
    y
}

/// Backward of [`avg_pool2x2`]: `dx[2i + a, 2j + b] = dy[i, j] / 4`.
#[must_use]
pub fn avg_pool2x2_backward(dy: ArrayView4<'_, f32>) -> Array4<f32> {
    let (n, c, h, w) = dy.dim();
    Array4::from_shape_fn((n, c, 2 * h, 2 * w), |(m, ch, u, v)| {
        0.25 * dy[[m, ch, u / 2, v / 2]]
    })
}

/// 2x2 max pooling with stride 2. Returns the output and, per output element, the offset
/// (0..4, row-major in the window) of the first maximum, for the backward pass.
///
/// # Panics
/// If `H` or `W` is odd.
#[must_use]
pub fn max_pool2x2(x: ArrayView4<'_, f32>) -> (Array4<f32>, Array4<u8>) {
    let (n, c, h, w) = x.dim();
    let mut y = Array4::<f32>::zeros((n, c, h / 2, w / 2));
    let mut arg = Array4::<u8>::zeros((n, c, h / 2, w / 2));
    let ys = y.as_slice_mut().expect("fresh array is contiguous");
    let args = arg.as_slice_mut().expect("fresh array is contiguous");
    for_each_window(x, |v, o| {
        let mut at = 0u8;
        for k in 1..4u8 {
            if v[usize::from(k)] > v[usize::from(at)] {
                at = k;
            }
        }
        ys[o] = v[usize::from(at)];
        args[o] = at;
    });
    (y, arg)
}

/// Backward of [`max_pool2x2`].
#[must_use]
pub fn max_pool2x2_backward(dy: ArrayView4<'_, f32>, arg: ArrayView4<'_, u8>) -> Array4<f32> {
    let (n, c, h, w) = dy.dim();
    let (ow, iw) = (w, 2 * w);
    let dy = dy.as_standard_layout();
    let arg = arg.as_standard_layout();
    let dys = dy.as_slice().expect("standard layout");
    let args = arg.as_slice().expect("standard layout");
    let mut dx = Array4::<f32>::zeros((n, c, 2 * h, 2 * w));
    let xs = dx.as_slice_mut().expect("fresh array is contiguous");
    for (o, (&g, &k)) in dys.iter().zip(args).enumerate() {
        let (p, rest) = (o / (h * ow), o % (h * ow));
        let (i, j) = (rest / ow, rest % ow);
        let (a, b) = (usize::from(k / 2), usize::from(k % 2));
        xs[p * 4 * h * ow + (2 * i + a) * iw + 2 * j + b] = g;
    }
    dx
}

/// The 2x2 box mean with stride 1, `[n, C, H, W] → [n, C, H-1, W-1]`.
#[must_use]
pub fn box_mean2x2(x: ArrayView4<'_, f32>) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let mut out = Array4::<f32>::zeros((n, c, h - 1, w - 1));
    let os = out.as_slice_mut().expect("fresh array is contiguous");
    for (plane, dst) in xs
        .chunks_exact(h * w)
        .zip(os.chunks_exact_mut((h - 1) * (w - 1)))
    {
        for u in 0..h - 1 {
            let r0 = &plane[u * w..(u + 1) * w];
            let r1 = &plane[(u + 1) * w..(u + 2) * w];
            for (v, d) in dst[u * (w - 1)..(u + 1) * (w - 1)].iter_mut().enumerate() {
                *d = 0.25 * ((r0[v] + r1[v]) + (r0[v + 1] + r1[v + 1]));
            }
        }
    }
    out
}

/// The adjoint of [`box_mean2x2`], `[n, C, H-1, W-1] → [n, C, H, W]`.
#[must_use]
pub fn box_mean2x2_backward(da: ArrayView4<'_, f32>) -> Array4<f32> {
    let (n, c, hm, wm) = da.dim();
    let (h, w) = (hm + 1, wm + 1);
    let da = da.as_standard_layout();
    let ds = da.as_slice().expect("standard layout");
    let mut dx = Array4::<f32>::zeros((n, c, h, w));
    let xs = dx.as_slice_mut().expect("fresh array is contiguous");
    for (src, plane) in ds.chunks_exact(hm * wm).zip(xs.chunks_exact_mut(h * w)) {
        for u in 0..hm {
            for v in 0..wm {
                let g = 0.25 * src[u * wm + v];
                plane[u * w + v] += g;
                plane[u * w + v + 1] += g;
                plane[(u + 1) * w + v] += g;
                plane[(u + 1) * w + v + 1] += g;
            }
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    fn ramp(shape: (usize, usize, usize, usize)) -> Array4<f32> {
        let len = shape.0 * shape.1 * shape.2 * shape.3;
        Array::from_iter((0..len).map(|i| ((i * 37) % 11) as f32 - 5.0))
            .into_shape_with_order(shape)
            .unwrap()
    }

    #[test]
    fn pooling_values_by_hand() {
        let x = Array::from_iter([1.0f32, 2.0, 5.0, -1.0, 3.0, 4.0, 0.0, 0.0])
            .into_shape_with_order((1, 1, 2, 4))
            .unwrap();
        assert_eq!(
            avg_pool2x2(x.view()).into_raw_vec_and_offset().0,
            vec![2.5, 1.0]
        );
        let (m, arg) = max_pool2x2(x.view());
        assert_eq!(m.into_raw_vec_and_offset().0, vec![4.0, 5.0]);
        assert_eq!(arg.into_raw_vec_and_offset().0, vec![3, 0]);
        let b = box_mean2x2(x.view());
        assert_eq!(b.into_raw_vec_and_offset().0, vec![2.5, 2.75, 1.0]);
    }

    #[test]
    fn generic_pools_match_the_2x2_ones_and_are_adjoints() {
        let x = ramp((2, 3, 7, 5));
        let cfg = Pool2dConfig {
            kernel: 3,
            stride: 2,
        };
        let y = avg_pool(x.view(), cfg);
        assert_eq!(y.dim(), (2, 3, 3, 2));
        let dy = ramp((2, 3, 3, 2)).mapv(|v| v * 0.25 - 0.5);
        let lhs = (&y * &dy).sum();
        let rhs = (&x * &avg_pool_backward(dy.view(), cfg, (7, 5))).sum();
        assert!((lhs - rhs).abs() < 1e-3);
        let (m, arg) = max_pool(x.view(), cfg);
        let lhs = (&m * &dy).sum();
        let rhs = (&x * &max_pool_backward(dy.view(), arg.view(), (7, 5))).sum();
        assert!((lhs - rhs).abs() < 1e-3);
        // 2x2 / stride 2 agrees with the specialised functions.
        let x = ramp((1, 2, 6, 4));
        let (m1, _) = max_pool(x.view(), Pool2dConfig::default());
        assert_eq!(m1, max_pool2x2(x.view()).0);
        let b = box_mean(x.view(), 3, 2);
        assert_eq!(b.dim(), (1, 2, 2, 0));
        let b = box_mean(x.view(), 2, 2);
        assert_eq!(b.dim(), (1, 2, 4, 2));
        let z = ramp((1, 2, 4, 2));
        let lhs = (&b * &z).sum();
        let rhs = (&x * &box_mean_backward(z.view(), 2, 2, (6, 4))).sum();
        assert!((lhs - rhs).abs() < 1e-3);
    }

    #[test]
    fn backward_passes_are_adjoints() {
        // <f(x), y> = <x, f*(y)> for the linear maps; the max pool's backward is the adjoint of
        // the linear selection it made.
        let x = ramp((2, 3, 6, 4));
        let y = ramp((2, 3, 3, 2)).mapv(|v| v * 0.5 + 1.0);
        let lhs = (&avg_pool2x2(x.view()) * &y).sum();
        let rhs = (&x * &avg_pool2x2_backward(y.view())).sum();
        assert!((lhs - rhs).abs() < 1e-4);
        let (m, arg) = max_pool2x2(x.view());
        let lhs = (&m * &y).sum();
        let rhs = (&x * &max_pool2x2_backward(y.view(), arg.view())).sum();
        assert!((lhs - rhs).abs() < 1e-4);
        let z = ramp((2, 3, 5, 3));
        let lhs = (&box_mean2x2(x.view()) * &z).sum();
        let rhs = (&x * &box_mean2x2_backward(z.view())).sum();
        assert!((lhs - rhs).abs() < 1e-4);
    }
}
