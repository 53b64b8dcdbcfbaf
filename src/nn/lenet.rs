//! LeNet-5 as in the CryptoNN experiment, in either layer order.
//!
//! Input: a 28x28 MNIST image, padded to 32x32 and normalised
//! ([`crate::nn::data::PixelNormalization`]), shape `[n, 1, 32, 32]`.
//!
//! ```text
//! LeCun et al. 1998 (default)                      modern
//! C1  conv 6@5x5     [n, 6, 28, 28]                conv 6@5x5  → act → pool   [n, 6, 14, 14]
//! S2  avgpool 2x2    [n, 6, 14, 14]  → act
//! C3  conv 16@5x5    [n, 16, 10, 10]               conv 16@5x5 → act → pool   [n, 16, 5, 5]
//! S4  avgpool 2x2    [n, 16, 5, 5]   → act
//! F5  dense 400 → 120 → act
//! F6  dense 120 → 84  → act
//! out dense 84 → 10 → softmax
//! ```
//!
//! In the 1998 order each convolution and the average pooling after it are computed as one
//! stride-2 convolution of the 2x2 box mean ([`crate::nn::conv::avg_pooled_forward`]); the
//! first of them is the linear map that quantised and secure training evaluate in integers
//! ([`crate::nn::first_layer`]). The modern order pools with [`PoolKind`] (max by default).
//!
//! The network is split in two for the training loop: **stage 1** (C1 + S2, up to the
//! `[n, 6, 14, 14]` map; in the 1998 order this is the *pre-activation* `P`) and the **trunk**
//! (everything after). The trunk always runs in float on the server.
//!
//! # Parameter order
//!
//! [`LeNet5::parameters`] lists the tensors in this fixed order, each row-major:
//! `conv1.weight [6,1,5,5]`, `conv1.bias [6]`, `conv2.weight [16,6,5,5]`, `conv2.bias [16]`,
//! `fc1.weight [120,400]`, `fc1.bias [120]`, `fc2.weight [84,120]`, `fc2.bias [84]`,
//! `fc3.weight [10,84]`, `fc3.bias [10]` — 61,706 values. [`LeNet5::weights_sha256`] hashes
//! them as `f32` little-endian bytes in this order.

use ndarray::{Array2, Array4, ArrayView2, ArrayView4, Ix4};
use sha2::{Digest, Sha256};

use crate::nn::activation::Activation;
use crate::nn::conv::{avg_pooled_backward, avg_pooled_forward, Conv2d, Conv2dConfig, ConvGrads};
use crate::nn::data::{Dataset, PixelNormalization, CLASSES, PADDED_SIDE};
use crate::nn::init::{seeded_rng, Init, RngStream};
use crate::nn::linear::{Linear, LinearGrads};
use crate::nn::loss::softmax_rows_inplace;
use crate::nn::pool;

/// Where the nonlinearity sits relative to pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LayerOrder {
    /// conv → 2x2 average subsampling → nonlinearity (LeCun et al. 1998). Needed by quantised
    /// and secure training.
    #[default]
    LeCun1998,
    /// conv → nonlinearity → pool.
    Modern,
}

/// The pooling of the modern order (the 1998 order always averages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PoolKind {
    /// 2x2 max pooling.
    #[default]
    Max,
    /// 2x2 average pooling.
    Average,
}

/// Architecture choices of [`LeNet5`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeNetConfig {
    /// Layer order.
    pub order: LayerOrder,
    /// The nonlinearity after every hidden layer.
    pub activation: Activation,
    /// Pooling in the modern order.
    pub pool: PoolKind,
    /// Weight initialisation.
    pub init: Init,
}

impl Default for LeNetConfig {
    /// 1998 order, ReLU, He-uniform initialisation (max pooling if switched to modern order).
    fn default() -> Self {
        Self {
            order: LayerOrder::LeCun1998,
            activation: Activation::Relu,
            pool: PoolKind::Max,
            init: Init::HeUniform,
        }
    }
}

/// LeNet-5.
#[derive(Debug, Clone, PartialEq)]
pub struct LeNet5 {
    /// The architecture.
    pub config: LeNetConfig,
    /// C1, `1 → 6`, 5x5 (stride 2 over the box mean in the 1998 order).
    pub conv1: Conv2d,
    /// C3, `6 → 16`, 5x5 (stride 2 over the box mean in the 1998 order).
    pub conv2: Conv2d,
    /// F5, `400 → 120`.
    pub fc1: Linear,
    /// F6, `120 → 84`.
    pub fc2: Linear,
    /// Output, `84 → 10`.
    pub fc3: Linear,
}

/// Gradients of the trunk's parameters, summed over the samples seen.
#[derive(Debug, Clone, PartialEq)]
pub struct TrunkGrads {
    /// C3.
    pub conv2: ConvGrads,
    /// F5.
    pub fc1: LinearGrads,
    /// F6.
    pub fc2: LinearGrads,
    /// Output layer.
    pub fc3: LinearGrads,
}

/// Gradients of all parameters, summed over the samples seen.
#[derive(Debug, Clone, PartialEq)]
pub struct LeNetGrads {
    /// C1.
    pub conv1: ConvGrads,
    /// Everything after stage 1.
    pub trunk: TrunkGrads,
}

impl LeNetGrads {
    /// The tensors in [parameter order](self).
    #[must_use]
    pub fn tensors(&self) -> [&[f32]; 10] {
        let t = &self.trunk;
        [
            slice(&self.conv1.weight),
            slice(&self.conv1.bias),
            slice(&t.conv2.weight),
            slice(&t.conv2.bias),
            slice(&t.fc1.weight),
            slice(&t.fc1.bias),
            slice(&t.fc2.weight),
            slice(&t.fc2.bias),
            slice(&t.fc3.weight),
            slice(&t.fc3.bias),
        ]
    }

    fn tensors_mut(&mut self) -> [&mut [f32]; 10] {
        let t = &mut self.trunk;
        [
            slice_mut(&mut self.conv1.weight),
            slice_mut(&mut self.conv1.bias),
            slice_mut(&mut t.conv2.weight),
            slice_mut(&mut t.conv2.bias),
            slice_mut(&mut t.fc1.weight),
            slice_mut(&mut t.fc1.bias),
            slice_mut(&mut t.fc2.weight),
            slice_mut(&mut t.fc2.bias),
            slice_mut(&mut t.fc3.weight),
            slice_mut(&mut t.fc3.bias),
        ]
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: f32) {
        for t in self.tensors_mut() {
            t.iter_mut().for_each(|v| *v *= factor);
        }
    }
}

impl TrunkGrads {
    /// `self += other`, tensor by tensor.
    pub fn add_assign(&mut self, other: &TrunkGrads) {
        self.conv2.weight += &other.conv2.weight;
        self.conv2.bias += &other.conv2.bias;
        self.fc1.weight += &other.fc1.weight;
        self.fc1.bias += &other.fc1.bias;
        self.fc2.weight += &other.fc2.weight;
        self.fc2.bias += &other.fc2.bias;
        self.fc3.weight += &other.fc3.weight;
        self.fc3.bias += &other.fc3.bias;
    }
}

fn slice<D: ndarray::Dimension>(a: &ndarray::Array<f32, D>) -> &[f32] {
    a.as_slice().expect("parameters are contiguous")
}

fn slice_mut<D: ndarray::Dimension>(a: &mut ndarray::Array<f32, D>) -> &mut [f32] {
    a.as_slice_mut().expect("parameters are contiguous")
}

/// What stage 1's backward pass needs.
#[derive(Debug, Clone)]
pub struct Stage1Cache {
    /// im2col of the (box-mean) input.
    cols: Array2<f32>,
    /// Modern order only: conv1's activated output and the max-pool positions.
    modern: Option<(Array4<f32>, Option<Array4<u8>>)>,
    n: usize,
}

/// What the trunk's backward pass needs, and its output probabilities.
#[derive(Debug, Clone)]
pub struct TrunkCache {
    /// Trunk input after the nonlinearity (1998) or as given (modern), `[n, 6, 14, 14]`.
    h1: Array4<f32>,
    cols2: Array2<f32>,
    /// conv2 (+pool in 1998) after the nonlinearity.
    y2: Array4<f32>,
    arg2: Option<Array4<u8>>,
    a0: Array2<f32>,
    h3: Array2<f32>,
    h4: Array2<f32>,
    /// Softmax output, `[n, 10]`.
    pub probs: Array2<f32>,
}

impl LeNet5 {
    /// A network with weights drawn from `seed` (stream [`RngStream::Weights`], in parameter
    /// order) and zero biases.
    #[must_use]
    pub fn new(config: LeNetConfig, seed: u64) -> Self {
        let mut rng = seeded_rng(seed, RngStream::Weights);
        let stride = match config.order {
            LayerOrder::LeCun1998 => 2,
            LayerOrder::Modern => 1,
        };
        let conv = |in_channels, out_channels, rng: &mut _| {
            Conv2d::new(
                Conv2dConfig {
                    in_channels,
                    out_channels,
                    kernel: 5,
                    stride,
                    padding: 0,
                },
                config.init,
                rng,
            )
        };
        let conv1 = conv(1, 6, &mut rng);
        let conv2 = conv(6, 16, &mut rng);
        Self {
            config,
            conv1,
            conv2,
            fc1: Linear::new(400, 120, config.init, &mut rng),
            fc2: Linear::new(120, 84, config.init, &mut rng),
            fc3: Linear::new(84, CLASSES, config.init, &mut rng),
        }
    }

    /// The parameter tensors with their names, in [parameter order](self).
    #[must_use]
    pub fn parameters(&self) -> [(&'static str, &[f32]); 10] {
        [
            ("conv1.weight", slice(&self.conv1.weight)),
            ("conv1.bias", slice(&self.conv1.bias)),
            ("conv2.weight", slice(&self.conv2.weight)),
            ("conv2.bias", slice(&self.conv2.bias)),
            ("fc1.weight", slice(&self.fc1.weight)),
            ("fc1.bias", slice(&self.fc1.bias)),
            ("fc2.weight", slice(&self.fc2.weight)),
            ("fc2.bias", slice(&self.fc2.bias)),
            ("fc3.weight", slice(&self.fc3.weight)),
            ("fc3.bias", slice(&self.fc3.bias)),
        ]
    }

    /// Mutable parameter tensors in [parameter order](self).
    pub fn parameters_mut(&mut self) -> [&mut [f32]; 10] {
        [
            slice_mut(&mut self.conv1.weight),
            slice_mut(&mut self.conv1.bias),
            slice_mut(&mut self.conv2.weight),
            slice_mut(&mut self.conv2.bias),
            slice_mut(&mut self.fc1.weight),
            slice_mut(&mut self.fc1.bias),
            slice_mut(&mut self.fc2.weight),
            slice_mut(&mut self.fc2.bias),
            slice_mut(&mut self.fc3.weight),
            slice_mut(&mut self.fc3.bias),
        ]
    }

    /// All parameters as `f32` little-endian bytes, in [parameter order](self).
    #[must_use]
    pub fn parameter_bytes(&self) -> Vec<u8> {
        self.parameters()
            .iter()
            .flat_map(|(_, t)| t.iter().flat_map(|v| v.to_le_bytes()))
            .collect()
    }

    /// SHA-256 of [`parameter_bytes`](Self::parameter_bytes), lowercase hex.
    #[must_use]
    pub fn weights_sha256(&self) -> String {
        Sha256::digest(self.parameter_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The padded, normalised float input `[n, 1, 32, 32]` for examples `indices` of `data`.
    ///
    /// # Panics
    /// If an index is out of range.
    #[must_use]
    pub fn input(data: &Dataset, indices: &[usize], norm: &PixelNormalization) -> Array4<f32> {
        let side = PADDED_SIDE;
        let mut x = Array4::<f32>::zeros((indices.len(), 1, side, side));
        let xs = x.as_slice_mut().expect("fresh array is contiguous");
        for (out, &i) in xs.chunks_exact_mut(side * side).zip(indices) {
            data.write_padded_f32(i, out, norm);
        }
        x
    }

    fn act4(&self, mut x: Array4<f32>) -> Array4<f32> {
        self.config
            .activation
            .forward_inplace(x.view_mut().into_dyn());
        x
    }

    fn act4_backward(&self, y: &Array4<f32>, dy: ArrayView4<'_, f32>) -> Array4<f32> {
        self.config
            .activation
            .backward(y.view().into_dyn(), dy.into_dyn())
            .into_dimensionality::<Ix4>()
            .expect("same rank")
    }

    fn act2(&self, mut x: Array2<f32>) -> Array2<f32> {
        self.config
            .activation
            .forward_inplace(x.view_mut().into_dyn());
        x
    }

    fn act2_backward(&self, y: &Array2<f32>, dy: &Array2<f32>) -> Array2<f32> {
        self.config
            .activation
            .backward(y.view().into_dyn(), dy.view().into_dyn())
            .into_dimensionality()
            .expect("same rank")
    }

    fn pool(&self, y: ArrayView4<'_, f32>) -> (Array4<f32>, Option<Array4<u8>>) {
        match self.config.pool {
            PoolKind::Max => {
                let (p, arg) = pool::max_pool2x2(y);
                (p, Some(arg))
            }
            PoolKind::Average => (pool::avg_pool2x2(y), None),
        }
    }

    fn pool_backward(&self, dy: ArrayView4<'_, f32>, arg: Option<&Array4<u8>>) -> Array4<f32> {
        match arg {
            Some(arg) => pool::max_pool2x2_backward(dy, arg.view()),
            None => pool::avg_pool2x2_backward(dy),
        }
    }

    /// Stage 1 in float: `[n, 1, 32, 32] → [n, 6, 14, 14]`; in the 1998 order the output is the
    /// pre-activation `P = avgpool(conv1(x)) + bias`, in the modern order `pool(act(conv1(x)))`.
    ///
    /// # Panics
    /// If `x` is not `[n, 1, 32, 32]`.
    #[must_use]
    pub fn stage1_forward(&self, x: ArrayView4<'_, f32>) -> (Array4<f32>, Stage1Cache) {
        assert_eq!(
            &x.shape()[1..],
            &[1, PADDED_SIDE, PADDED_SIDE],
            "LeNet input"
        );
        let n = x.shape()[0];
        match self.config.order {
            LayerOrder::LeCun1998 => {
                let (p, cols) = avg_pooled_forward(&self.conv1, x);
                (
                    p,
                    Stage1Cache {
                        cols,
                        modern: None,
                        n,
                    },
                )
            }
            LayerOrder::Modern => {
                let (c, cols) = self.conv1.forward(x);
                let y = self.act4(c);
                let (p, arg) = self.pool(y.view());
                (
                    p,
                    Stage1Cache {
                        cols,
                        modern: Some((y, arg)),
                        n,
                    },
                )
            }
        }
    }

    /// Stage 1's parameter gradients from `ds1 = dL/d(stage-1 output)`.
    #[must_use]
    pub fn stage1_backward(&self, cache: &Stage1Cache, ds1: ArrayView4<'_, f32>) -> ConvGrads {
        let shape = [cache.n, 1, PADDED_SIDE, PADDED_SIDE];
        match &cache.modern {
            None => avg_pooled_backward(&self.conv1, cache.cols.view(), ds1, shape, false).0,
            Some((y, arg)) => {
                let dy = self.pool_backward(ds1, arg.as_ref());
                let dc = self.act4_backward(y, dy.view());
                self.conv1
                    .backward(cache.cols.view(), dc.view(), shape, false)
                    .0
            }
        }
    }

    /// The trunk: stage-1 output `[n, 6, 14, 14]` to softmax probabilities (in the cache).
    ///
    /// # Panics
    /// If `s1` is not `[n, 6, 14, 14]`.
    #[must_use]
    pub fn trunk_forward(&self, s1: Array4<f32>) -> TrunkCache {
        assert_eq!(&s1.shape()[1..], &[6, 14, 14], "stage-1 output");
        let n = s1.shape()[0];
        let (h1, cols2, y2, arg2, pooled) = match self.config.order {
            LayerOrder::LeCun1998 => {
                let h1 = self.act4(s1);
                let (p2, cols2) = avg_pooled_forward(&self.conv2, h1.view());
                let y2 = self.act4(p2);
                let pooled = y2.clone();
                (h1, cols2, y2, None, pooled)
            }
            LayerOrder::Modern => {
                let (c2, cols2) = self.conv2.forward(s1.view());
                let y2 = self.act4(c2);
                let (pooled, arg) = self.pool(y2.view());
                (s1, cols2, y2, arg, pooled)
            }
        };
        let a0 = pooled
            .into_shape_with_order((n, 400))
            .expect("contiguous [n, 16, 5, 5]");
        let h3 = self.act2(self.fc1.forward(a0.view()));
        let h4 = self.act2(self.fc2.forward(h3.view()));
        let mut probs = self.fc3.forward(h4.view());
        softmax_rows_inplace(probs.view_mut());
        TrunkCache {
            h1,
            cols2,
            y2,
            arg2,
            a0,
            h3,
            h4,
            probs,
        }
    }

    /// The trunk's backward pass from `dlogits = dL/d(logits)`, `[n, 10]`. Returns the trunk's
    /// gradients and `dL/d(stage-1 output)`.
    #[must_use]
    pub fn trunk_backward(
        &self,
        cache: &TrunkCache,
        dlogits: ArrayView2<'_, f32>,
    ) -> (TrunkGrads, Array4<f32>) {
        let n = cache.a0.nrows();
        let (fc3, dh4) = self.fc3.backward(cache.h4.view(), dlogits, true);
        let dz4 = self.act2_backward(&cache.h4, &dh4.expect("requested"));
        let (fc2, dh3) = self.fc2.backward(cache.h3.view(), dz4.view(), true);
        let dz3 = self.act2_backward(&cache.h3, &dh3.expect("requested"));
        let (fc1, da0) = self.fc1.backward(cache.a0.view(), dz3.view(), true);
        let dpooled = da0
            .expect("requested")
            .into_shape_with_order((n, 16, 5, 5))
            .expect("contiguous");
        let (conv2, ds1) = match self.config.order {
            LayerOrder::LeCun1998 => {
                let dp2 = self.act4_backward(&cache.y2, dpooled.view());
                let (g, dh1) = avg_pooled_backward(
                    &self.conv2,
                    cache.cols2.view(),
                    dp2.view(),
                    [n, 6, 14, 14],
                    true,
                );
                let ds1 = self.act4_backward(&cache.h1, dh1.expect("requested").view());
                (g, ds1)
            }
            LayerOrder::Modern => {
                let dy2 = self.pool_backward(dpooled.view(), cache.arg2.as_ref());
                let dc2 = self.act4_backward(&cache.y2, dy2.view());
                let (g, dh1) =
                    self.conv2
                        .backward(cache.cols2.view(), dc2.view(), [n, 6, 14, 14], true);
                (g, dh1.expect("requested"))
            }
        };
        (
            TrunkGrads {
                conv2,
                fc1,
                fc2,
                fc3,
            },
            ds1,
        )
    }

    /// Softmax probabilities `[n, 10]` for a float input `[n, 1, 32, 32]`.
    #[must_use]
    pub fn predict_proba(&self, x: ArrayView4<'_, f32>) -> Array2<f32> {
        let (s1, _) = self.stage1_forward(x);
        self.trunk_forward(s1).probs
    }
}
