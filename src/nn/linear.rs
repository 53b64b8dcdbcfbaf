//! Fully connected (dense) layers.
//!
//! For `x: [n, in]`, `w: [out, in]`, `b: [out]`:
//!
//! ```text
//! y  = x · wᵀ + b           [n, out]
//! dW = dyᵀ · x              [out, in]   (summed over the n samples)
//! db = Σ_n dy               [out]
//! dx = dy · w               [n, in]
//! ```

use ndarray::{Array1, Array2, ArrayView2, Axis, Ix2};

use crate::nn::gemm::par_dot;
use crate::nn::init::Init;

/// Hyper-parameters of a [`Linear`] layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinearConfig {
    /// Inputs `in`.
    pub inputs: usize,
    /// Outputs `out`.
    pub outputs: usize,
}

impl Default for LinearConfig {
    /// LeNet-5's output layer, 84 → 10.
    fn default() -> Self {
        Self {
            inputs: 84,
            outputs: 10,
        }
    }
}

/// Gradients of a dense layer's parameters, summed over the samples seen.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearGrads {
    /// `dL/dw`, `[out, in]`.
    pub weight: Array2<f32>,
    /// `dL/db`, `[out]`.
    pub bias: Array1<f32>,
}

/// A dense layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// Weights, `[out, in]`.
    pub weight: Array2<f32>,
    /// Biases, `[out]`.
    pub bias: Array1<f32>,
}

impl Linear {
    /// A layer `inputs → outputs` with weights from `init` and zero biases.
    #[must_use]
    pub fn new<R: rand::Rng>(inputs: usize, outputs: usize, init: Init, rng: &mut R) -> Self {
        Self {
            weight: init.sample(Ix2(outputs, inputs), inputs, outputs, rng),
            bias: Array1::zeros(outputs),
        }
    }

    /// A layer of `config` with weights from `init` and zero biases.
    #[must_use]
    pub fn from_config<R: rand::Rng>(config: LinearConfig, init: Init, rng: &mut R) -> Self {
        Self::new(config.inputs, config.outputs, init, rng)
    }

    /// `y = x · wᵀ + b`.
    ///
    /// # Panics
    /// If `x` has the wrong number of columns.
    #[must_use]
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut y = par_dot(x, self.weight.t());
        y += &self.bias;
        y
    }

    /// Parameter gradients and, if `need_input_grad`, `dx`.
    #[must_use]
    pub fn backward(
        &self,
        x: ArrayView2<'_, f32>,
        dy: ArrayView2<'_, f32>,
        need_input_grad: bool,
    ) -> (LinearGrads, Option<Array2<f32>>) {
        let grads = LinearGrads {
            weight: par_dot(dy.t(), x),
            bias: dy.sum_axis(Axis(0)),
        };
        (
            grads,
            need_input_grad.then(|| par_dot(dy, self.weight.view())),
        )
    }
}
