//! LeNet-5 as in the CryptoNN experiment, in either layer order.
//!
//! Input: a 28x28 MNIST image, padded to 32x32 and normalised
//! ([`crate::nn::data::PixelNormalization`]; padding with black pixels), shape `[n, 1, 32, 32]`.
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
//! The network is split in two for the training loop: the **first layer** (C1 + S2, up to the
//! `[n, 6, 14, 14]` map; in the 1998 order this is the *pre-activation* `P`) and the **trunk**
//! (everything after). The trunk always runs in float on the server.
//!
//! LeNet-5 is a declared model ([`ModelSpec::lenet5`], run by [`Model`]); this module holds
//! its architecture options.
//!
//! # Parameter order
//!
//! [`Model::parameters`] lists the tensors in this fixed order, each row-major (it names them
//! by position, `layers.0.*` for conv1 and `trunk.k.*` after it):
//! `conv1.weight [6,1,5,5]`, `conv1.bias [6]`, `conv2.weight [16,6,5,5]`, `conv2.bias [16]`,
//! `fc1.weight [120,400]`, `fc1.bias [120]`, `fc2.weight [84,120]`, `fc2.bias [84]`,
//! `fc3.weight [10,84]`, `fc3.bias [10]` — 61,706 values. [`Model::weights_sha256`] hashes
//! them as `f32` little-endian bytes in this order.

use crate::nn::activation::Activation;
use crate::nn::init::Init;
use crate::nn::model::Model;
#[cfg(doc)]
use crate::nn::model::ModelSpec;

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

/// LeNet-5 is a declared model now: [`Model::lenet5`] builds it from a [`LeNetConfig`]
/// ([`ModelSpec::lenet5`] is its declaration).
pub type LeNet5 = Model;
