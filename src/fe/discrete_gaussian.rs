//! The discrete Gaussian distribution over `ℤ`, sampled exactly, and a keyed PRF that drives it
//! so that the same `(key, input)` always gives the same sample.
//!
//! # The distribution
//! For `σ > 0`, the discrete Gaussian `N_ℤ(0, σ²)` gives each integer `x` the probability
//!
//! ```text
//! P[X = x] = exp(−x² / (2σ²)) / Σ_{y ∈ ℤ} exp(−y² / (2σ²))
//! ```
//!
//! Its mean is 0 and its variance is at most `σ²` (equal to it within `10⁻⁸` relative error for
//! `σ ≥ 1`). Adding it to an integer-valued query of sensitivity `Δ` gives the same Rényi
//! divergence bound as the continuous Gaussian mechanism, `D_α ≤ α·Δ²/(2σ²)` (Canonne, Kamath,
//! Steinke, *The Discrete Gaussian for Differential Privacy*, NeurIPS 2020, Proposition 5 /
//! Theorem 4), which is what [`crate::coordinator::accountant`] composes.
//!
//! # The sampler
//! [`DiscreteGaussian::sample`] implements Algorithms 1–3 of Canonne–Kamath–Steinke 2020 (arXiv
//! 2004.00010) with exact integer arithmetic: `σ = num/den` is a rational, every Bernoulli trial
//! `Bernoulli(a/b)` draws a uniform integer in `[0, b)`, so no floating point enters the
//! sampling.
//!
//! ```text
//! Bernoulli(exp(−γ)), γ = a/b ∈ [0,1]:  K ← 1; while Bernoulli(γ/K): K ← K+1;  return K odd
//! Bernoulli(exp(−γ)), γ > 1:            ⌊γ⌋ trials of Bernoulli(exp(−1)), all 1, then
//!                                       Bernoulli(exp(−(γ − ⌊γ⌋)))
//! DiscreteLaplace(t), t ∈ ℕ:           U ← [0,t); reject unless Bernoulli(exp(−U/t));
//!                                       V ← number of successes of Bernoulli(exp(−1)) before a failure;
//!                                       X = U + t·V; sign B ← Bernoulli(1/2); reject B = 1, X = 0;
//!                                       return (1 − 2B)·X
//! DiscreteGaussian(σ):                  t = ⌊σ⌋ + 1; Y ← DiscreteLaplace(t);
//!                                       accept Y with probability exp(−(|Y| − σ²/t)² / (2σ²))
//! ```
//!
//! With `σ² = n/d` the acceptance exponent is the rational `(|Y|·d·t − n)² / (2·n·d·t²)`. Its
//! numerator is computed in `u128` (the constructor refuses a `σ` whose denominator `2·n·d·t²`
//! would not fit); a candidate so far out that the numerator overflows (`|Y|·d·t ≥ 2⁶⁴`, that
//! is `|Y|` beyond `10⁶σ` for every `σ` allowed) has acceptance probability below `exp(−10¹¹)`
//! and is rejected, the only departure from exactness.
//!
//! # The keyed stream
//! [`NoiseKey::sample`] seeds a ChaCha20 stream with
//! `HKDF-SHA256(ikm = key, salt = "cryptonn noise v1", info = input)` and runs the sampler on
//! it: a pseudorandom function of `input`, so a party that does not hold the key cannot predict
//! the sample, and one that asks twice for the same input gets the same sample (repetition
//! cannot average the noise away).
//!
//! # Example
//! ```
//! use cryptonn::fe::discrete_gaussian::{DiscreteGaussian, NoiseKey};
//!
//! let dg = DiscreteGaussian::new(5, 2)?; // σ = 2.5
//! let key = NoiseKey::from_bytes([7; 32]);
//! let a = key.sample(&dg, b"sample 3, vector 0xabc");
//! assert_eq!(a, key.sample(&dg, b"sample 3, vector 0xabc")); // the same input, the same noise
//! assert_eq!(key.sample(&DiscreteGaussian::zero(), b"anything"), 0); // σ = 0: no noise
//! # Ok::<(), cryptonn::fe::error::FeError>(())
//! ```

use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::fe::error::FeError;

/// The largest standard deviation accepted: `σ ≤ 10⁶`.
pub const MAX_SIGMA: u64 = 1_000_000;
/// The largest denominator of `σ = num/den`.
pub const MAX_SIGMA_DENOMINATOR: u64 = 1_000_000;

/// The HKDF salt of the keyed noise stream.
const NOISE_SALT: &[u8] = b"cryptonn noise v1";

/// The discrete Gaussian `N_ℤ(0, σ²)` with a rational `σ = num/den` (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscreteGaussian {
    /// `σ = num/den` in lowest terms (`num = 0`: the point mass at 0).
    num: u64,
    den: u64,
}

impl DiscreteGaussian {
    /// `σ = num/den`.
    ///
    /// # Errors
    /// [`FeError::InvalidParameters`] for `den = 0`, `den > 10⁶`, `σ > 10⁶`, or a `σ` so large
    /// and finely divided that the sampler's exact arithmetic would not fit 128 bits
    /// (`2·num²·den²·(⌊σ⌋+1)² ≥ 2¹²⁸` after reduction; `σ` to `10⁻³` always fits).
    pub fn new(num: u64, den: u64) -> Result<Self, FeError> {
        if den == 0 || den > MAX_SIGMA_DENOMINATOR {
            return Err(FeError::InvalidParameters(
                "discrete Gaussian: sigma's denominator must be in 1..=10^6",
            ));
        }
        if num > MAX_SIGMA * den {
            return Err(FeError::InvalidParameters(
                "discrete Gaussian: sigma must be at most 10^6",
            ));
        }
        let g = gcd(num, den).max(1);
        let (num, den) = (num / g, den / g);
        let (n, d, t) = (
            u128::from(num) * u128::from(num),
            u128::from(den) * u128::from(den),
            u128::from(num / den) + 1,
        );
        if n.checked_mul(d)
            .and_then(|v| v.checked_mul(t * t))
            .and_then(|v| v.checked_mul(2))
            .is_none()
        {
            return Err(FeError::InvalidParameters(
                "discrete Gaussian: sigma's denominator is too fine for its size",
            ));
        }
        Ok(Self { num, den })
    }

    /// `σ = 0`: every sample is 0.
    #[must_use]
    pub fn zero() -> Self {
        Self { num: 0, den: 1 }
    }

    /// `σ` rounded to the nearest multiple of `10⁻³` (the resolution of `--noise-sigma`).
    ///
    /// # Errors
    /// [`FeError::InvalidParameters`] for a negative, NaN or infinite `sigma` or `σ > 10⁶`.
    pub fn from_f64_milli(sigma: f64) -> Result<Self, FeError> {
        if !sigma.is_finite() || sigma < 0.0 || sigma > MAX_SIGMA as f64 {
            return Err(FeError::InvalidParameters(
                "discrete Gaussian: sigma must be a finite number in [0, 10^6]",
            ));
        }
        // In range by the check above: 0 <= sigma·1000 <= 10^9.
        let milli = (sigma * 1000.0).round() as u64;
        Self::new(milli, 1000)
    }

    /// `σ` as a float (for accounting and display).
    #[must_use]
    pub fn sigma(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// `σ = (num, den)` in lowest terms.
    #[must_use]
    pub fn sigma_ratio(&self) -> (u64, u64) {
        (self.num, self.den)
    }

    /// Whether `σ = 0`.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.num == 0
    }

    /// One exact sample of `N_ℤ(0, σ²)` from `rng` (variable time: the noise is not secret
    /// from its recipient once added, and its timing depends only on the sample).
    #[must_use]
    pub fn sample<R: RngCore + ?Sized>(&self, rng: &mut R) -> i64 {
        if self.num == 0 {
            return 0;
        }
        let (num, den) = (u128::from(self.num), u128::from(self.den));
        // σ² = n/d; t = ⌊σ⌋ + 1.
        let (n, d) = (num * num, den * den);
        let t = num / den + 1;
        loop {
            let y = discrete_laplace(rng, t);
            let abs = u128::from(y.unsigned_abs());
            // γ = (|Y|·d·t − n)² / (2·n·d·t²)
            let Some(a) = abs.checked_mul(d).and_then(|v| v.checked_mul(t)) else {
                continue;
            };
            let diff = a.abs_diff(n);
            let Some(numer) = diff.checked_mul(diff) else {
                continue;
            };
            let denom = 2 * n * d * t * t;
            if bernoulli_exp_neg(rng, numer, denom) {
                return y;
            }
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `Bernoulli(a/b)` for `a <= b`, `b > 0`.
fn bernoulli<R: RngCore + ?Sized>(rng: &mut R, a: u128, b: u128) -> bool {
    rng.gen_range(0..b) < a
}

/// `Bernoulli(exp(−a/b))` for `a/b ∈ [0, 1]` (CKS Algorithm 1, first case).
fn bernoulli_exp_neg_small<R: RngCore + ?Sized>(rng: &mut R, a: u128, b: u128) -> bool {
    let mut k: u128 = 1;
    // Bernoulli(γ/k) = Bernoulli(a / (b·k)); b·k cannot overflow for the b used here (< 2^100)
    // before the loop ends with overwhelming probability; saturate to stay total.
    while bernoulli(rng, a, b.saturating_mul(k)) {
        k += 1;
    }
    k % 2 == 1
}

/// `Bernoulli(exp(−a/b))` for any `a/b ≥ 0`, `b > 0` (CKS Algorithm 1).
fn bernoulli_exp_neg<R: RngCore + ?Sized>(rng: &mut R, a: u128, b: u128) -> bool {
    let whole = a / b;
    let mut i: u128 = 0;
    while i < whole {
        if !bernoulli_exp_neg_small(rng, 1, 1) {
            return false;
        }
        i += 1;
    }
    bernoulli_exp_neg_small(rng, a % b, b)
}

/// `DiscreteLaplace(t)`: `P[X = x] ∝ exp(−|x|/t)` (CKS Algorithm 2).
fn discrete_laplace<R: RngCore + ?Sized>(rng: &mut R, t: u128) -> i64 {
    loop {
        let u = rng.gen_range(0..t);
        if !bernoulli_exp_neg_small(rng, u, t) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp_neg_small(rng, 1, 1) {
            v += 1;
        }
        let x = u + t * v;
        let negative = rng.gen::<bool>();
        if negative && x == 0 {
            continue;
        }
        // |x| beyond i64 has probability below exp(−2^63/t): treat as a rejection.
        let Ok(x) = i64::try_from(x) else {
            continue;
        };
        return if negative { -x } else { x };
    }
}

/// The secret key of the keyed noise stream (see the [module docs](self)), kept as its
/// HKDF-Extract output `PRK = HMAC-SHA256("cryptonn noise v1", key)` so that each sample costs
/// one HKDF-Expand. Zeroized on drop; `Debug` prints only the type name.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct NoiseKey([u8; 32]);

impl std::fmt::Debug for NoiseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoiseKey(..)")
    }
}

impl NoiseKey {
    /// A key from 32 secret bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut bytes = Zeroizing::new(bytes);
        let (prk, _) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(NOISE_SALT), &bytes[..]);
        bytes.zeroize();
        let mut out = [0u8; 32];
        out.copy_from_slice(&prk);
        Self(out)
    }

    /// A key derived from a seed and a label:
    /// `HKDF-SHA256(ikm = seed, salt = "cryptonn noise key v1", info = label)`.
    #[must_use]
    pub fn derive(seed: &[u8], label: &[u8]) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"cryptonn noise key v1"), seed);
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes are far below HKDF-SHA256's output limit, so `expand` cannot fail.
        if hk.expand(label, &mut out[..]).is_err() {
            unreachable!("HKDF-SHA256 output of 32 bytes");
        }
        Self::from_bytes(*out)
    }

    /// The ChaCha20 stream of `input`: seeded with `HKDF-SHA256(key, "cryptonn noise v1",
    /// input)`.
    #[must_use]
    pub fn stream(&self, input: &[u8]) -> ChaCha20Rng {
        let mut seed = Zeroizing::new([0u8; 32]);
        // A 32-byte PRK is HKDF-SHA256's own length and 32 output bytes are far below its
        // limit, so neither step can fail.
        let ok = hkdf::Hkdf::<sha2::Sha256>::from_prk(&self.0)
            .is_ok_and(|hk| hk.expand(input, &mut seed[..]).is_ok());
        if !ok {
            unreachable!("HKDF-SHA256 with a 32-byte PRK and 32 output bytes");
        }
        ChaCha20Rng::from_seed(*seed)
    }

    /// The sample of `dist` for `input`: the same `(key, input)` always gives the same value.
    #[must_use]
    pub fn sample(&self, dist: &DiscreteGaussian, input: &[u8]) -> i64 {
        if dist.is_zero() {
            return 0;
        }
        dist.sample(&mut self.stream(input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact mean and variance of `N_ℤ(0, σ²)` by summing its mass function in f64.
    fn exact_moments(sigma: f64) -> (f64, f64) {
        let range = (12.0 * sigma).ceil() as i64 + 2;
        let (mut z, mut m2) = (0.0, 0.0);
        for x in -range..=range {
            let p = (-((x * x) as f64) / (2.0 * sigma * sigma)).exp();
            z += p;
            m2 += p * (x * x) as f64;
        }
        (0.0, m2 / z)
    }

    fn moments(dg: &DiscreteGaussian, seed: u64, count: usize) -> (f64, f64) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let samples: Vec<f64> = (0..count).map(|_| dg.sample(&mut rng) as f64).collect();
        let mean = samples.iter().sum::<f64>() / count as f64;
        let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (count - 1) as f64;
        (mean, var)
    }

    #[test]
    fn mean_and_variance_match_the_mass_function() {
        // 200,000 samples: the standard error of the variance is σ²·√(2/N) ≈ 0.32 % of σ², of
        // the mean σ/√N ≈ 0.22 % of σ; the tolerances are about 5 standard errors.
        for (num, den, seed) in [
            (1u64, 2u64, 1u64),
            (1, 1, 2),
            (3, 1, 3),
            (25, 2, 4),
            (40, 1, 5),
        ] {
            let dg = DiscreteGaussian::new(num, den).unwrap();
            let sigma = dg.sigma();
            let (mean, var) = moments(&dg, seed, 200_000);
            let (_, exact_var) = exact_moments(sigma);
            assert!(
                mean.abs() < 0.011 * sigma.max(0.5),
                "σ = {sigma}: mean {mean}"
            );
            assert!(
                (var - exact_var).abs() < 0.016 * exact_var,
                "σ = {sigma}: variance {var}, exact {exact_var}"
            );
        }
    }

    #[test]
    fn variance_is_sigma_squared_for_sigma_at_least_one() {
        // The reference values the sampler is tested against: for σ ≥ 1 the exact variance of
        // N_ℤ(0, σ²) equals σ² to 1e-8 relative (CKS 2020, Fact 18).
        for sigma in [1.0, 3.0, 12.5] {
            let (_, v) = exact_moments(sigma);
            assert!(
                (v - sigma * sigma).abs() < 1e-6 * sigma * sigma,
                "{sigma}: {v}"
            );
        }
        // σ = 0.5 is well below σ² = 0.25: 0.2150…
        let (_, v) = exact_moments(0.5);
        assert!((v - 0.21502).abs() < 1e-4, "{v}");
    }

    #[test]
    fn small_values_follow_the_mass_function() {
        // σ = 1: P[0] = 1/Z ≈ 0.39894, P[±1] ≈ 0.24197, P[±2] ≈ 0.05399 (Z = Σ e^{−x²/2}).
        let dg = DiscreteGaussian::new(1, 1).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let n = 200_000;
        let mut counts = [0usize; 5];
        for _ in 0..n {
            let x = dg.sample(&mut rng);
            if x.abs() <= 2 {
                counts[(x + 2) as usize] += 1;
            }
        }
        let z: f64 = (-20i64..=20).map(|x| (-((x * x) as f64) / 2.0).exp()).sum();
        for (i, &c) in counts.iter().enumerate() {
            let x = i as f64 - 2.0;
            let p = (-(x * x) / 2.0).exp() / z;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            let got = c as f64 / n as f64;
            assert!((got - p).abs() < 5.0 * sd, "x = {x}: {got} vs {p}");
        }
        // Symmetry: P[1] and P[−1] agree within sampling error.
        let d = counts[3] as f64 - counts[1] as f64;
        assert!(
            d.abs() < 5.0 * (2.0 * counts[1] as f64).sqrt(),
            "{counts:?}"
        );
    }

    #[test]
    fn the_keyed_stream_is_deterministic_and_input_dependent() {
        let dg = DiscreteGaussian::new(100, 1).unwrap();
        let key = NoiseKey::from_bytes([3; 32]);
        let a: Vec<i64> = (0u32..64)
            .map(|i| key.sample(&dg, &i.to_le_bytes()))
            .collect();
        let b: Vec<i64> = (0u32..64)
            .map(|i| key.sample(&dg, &i.to_le_bytes()))
            .collect();
        assert_eq!(a, b);
        // σ = 100: 64 equal samples of distinct inputs would be a broken PRF.
        assert!(a.windows(2).any(|w| w[0] != w[1]));
        let other = NoiseKey::from_bytes([4; 32]);
        let c: Vec<i64> = (0u32..64)
            .map(|i| other.sample(&dg, &i.to_le_bytes()))
            .collect();
        assert_ne!(a, c);
        // Pinned: a change of the PRF or sampler changes every noisy training run.
        assert_eq!(&a[..4], &[-65, 80, -72, 11]);
    }

    #[test]
    fn bad_sigmas_are_refused() {
        assert!(DiscreteGaussian::new(1, 0).is_err());
        assert!(DiscreteGaussian::new(1_000_001, 1).is_err());
        assert!(DiscreteGaussian::new(999_999_999_999, 1_000_000).is_err());
        assert!(DiscreteGaussian::from_f64_milli(999_999.999).is_ok());
        assert!(DiscreteGaussian::new(1, 2_000_000).is_err());
        assert!(DiscreteGaussian::from_f64_milli(f64::NAN).is_err());
        assert!(DiscreteGaussian::from_f64_milli(-1.0).is_err());
        assert!(DiscreteGaussian::from_f64_milli(f64::INFINITY).is_err());
        assert_eq!(
            DiscreteGaussian::from_f64_milli(2.5).unwrap().sigma_ratio(),
            (5, 2)
        );
        assert!(DiscreteGaussian::from_f64_milli(0.0).unwrap().is_zero());
        assert!(format!("{:?}", NoiseKey::from_bytes([9; 32])) == "NoiseKey(..)");
    }
}
