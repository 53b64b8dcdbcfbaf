//! Seeded random number streams and weight initialisation.
//!
//! Every random choice of a run derives from one `u64` seed through ChaCha8 with a separate
//! stream per purpose ([`RngStream`]), so that, e.g., changing the number of epochs does not
//! change the initial weights.
//!
//! Weights are drawn uniformly from `[-a, a]` with
//!
//! ```text
//! He (Kaiming) uniform:   a = sqrt(6 / fan_in)              suits ReLU
//! Glorot (Xavier) uniform: a = sqrt(6 / (fan_in + fan_out))  suits tanh and sigmoid
//! ```
//!
//! where, for a convolution, `fan_in = in_channels · k²` and `fan_out = out_channels · k²`.
//! Biases start at zero.

use ndarray::{Array, Dimension};
use rand::distributions::{Distribution, Uniform};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The independent random streams of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RngStream {
    /// Initial weights.
    Weights,
    /// The data owner's label permutation.
    LabelPermutation,
    /// The shuffle of the training set before epoch `e` (0-based).
    Shuffle(u32),
}

impl RngStream {
    fn id(self) -> u64 {
        match self {
            Self::Weights => 1,
            Self::LabelPermutation => 2,
            Self::Shuffle(e) => (1 << 32) | u64::from(e),
        }
    }
}

/// A ChaCha8 generator for `stream` of the run seeded with `seed`.
#[must_use]
pub fn seeded_rng(seed: u64, stream: RngStream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream.id());
    rng
}

/// A weight initialisation scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Init {
    /// `U(-sqrt(6 / fan_in), +sqrt(6 / fan_in))`.
    #[default]
    HeUniform,
    /// `U(-sqrt(6 / (fan_in + fan_out)), +sqrt(6 / (fan_in + fan_out)))`.
    GlorotUniform,
}

impl Init {
    /// The half-width `a` of the uniform distribution.
    #[must_use]
    pub fn limit(self, fan_in: usize, fan_out: usize) -> f32 {
        match self {
            Self::HeUniform => (6.0 / fan_in as f32).sqrt(),
            Self::GlorotUniform => (6.0 / (fan_in + fan_out) as f32).sqrt(),
        }
    }

    /// An array of `shape` drawn from this scheme, in row-major order from `rng`.
    #[must_use]
    pub fn sample<D: Dimension, R: rand::Rng>(
        self,
        shape: D,
        fan_in: usize,
        fan_out: usize,
        rng: &mut R,
    ) -> Array<f32, D> {
        let a = self.limit(fan_in, fan_out);
        let dist = Uniform::new_inclusive(-a, a);
        Array::from_shape_simple_fn(shape, || dist.sample(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_independent_and_reproducible() {
        let a: u64 = seeded_rng(1, RngStream::Weights).gen();
        let b: u64 = seeded_rng(1, RngStream::Weights).gen();
        let c: u64 = seeded_rng(1, RngStream::Shuffle(0)).gen();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn samples_lie_within_the_limit() {
        let mut rng = seeded_rng(3, RngStream::Weights);
        let w = Init::HeUniform.sample(ndarray::Ix2(6, 25), 25, 150, &mut rng);
        let a = Init::HeUniform.limit(25, 150);
        assert!((a - (6.0f32 / 25.0).sqrt()).abs() < 1e-7);
        assert!(w.iter().all(|v| v.abs() <= a));
        assert!(w.iter().any(|v| v.abs() > a / 2.0));
    }
}
