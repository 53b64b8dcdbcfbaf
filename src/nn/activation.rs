//! Element-wise nonlinearities.
//!
//! | name | `f(x)` | `f'(x)` in terms of `y = f(x)` |
//! |---|---|---|
//! | ReLU | `max(x, 0)` | `1 if y > 0 else 0` |
//! | tanh | `tanh(x)` | `1 - y²` |
//! | sigmoid | `1 / (1 + e^{-x})` | `y (1 - y)` |
//!
//! The backward passes use the output `y`, so the pre-activation need not be kept.

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Zip};

/// A nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Activation {
    /// `max(x, 0)`.
    #[default]
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^{-x})`.
    Sigmoid,
}

impl Activation {
    /// `f(x)` for one value.
    #[must_use]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Self::Relu => x.max(0.0),
            Self::Tanh => x.tanh(),
            Self::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }

    /// `f'(x)` expressed through `y = f(x)`.
    #[must_use]
    pub fn derivative_from_output(self, y: f32) -> f32 {
        match self {
            Self::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Tanh => 1.0 - y * y,
            Self::Sigmoid => y * (1.0 - y),
        }
    }

    /// Applies `f` in place.
    pub fn forward_inplace(self, mut x: ArrayViewMutD<'_, f32>) {
        x.mapv_inplace(|v| self.apply(v));
    }

    /// `dx = dy ⊙ f'(x)`, given the forward output `y`.
    ///
    /// # Panics
    /// If `y` and `dy` differ in shape.
    #[must_use]
    pub fn backward(self, y: ArrayViewD<'_, f32>, dy: ArrayViewD<'_, f32>) -> ArrayD<f32> {
        Zip::from(&y)
            .and(&dy)
            .map_collect(|&y, &g| g * self.derivative_from_output(y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences() {
        for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            for x in [-2.0f64, -0.3, 0.4, 1.7] {
                let h = 1e-3;
                let fd = (f64::from(act.apply((x + h) as f32))
                    - f64::from(act.apply((x - h) as f32)))
                    / (2.0 * h);
                let an = act.derivative_from_output(act.apply(x as f32));
                assert!(
                    (fd - f64::from(an)).abs() < 1e-3,
                    "{act:?} at {x}: {fd} vs {an}"
                );
            }
        }
    }
}
