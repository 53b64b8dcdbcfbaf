//! A Rényi-DP accountant for the noisy values a key domain releases: per sample, over every
//! noisy inner product of every request (forward and gradient values, all epochs alike).
//!
//! # The mechanism
//! A noisy key for the ciphertext of sample `x` and the key vector `y` releases
//! `<x, y> + e` with `e ~ N_ℤ(0, σ²)` ([`crate::fe::noisy_key`],
//! [`crate::fe::discrete_gaussian`]). For two neighbouring inputs `x, x'` with
//! `|<x − x', y>| ≤ Δ(y)`, the discrete Gaussian mechanism satisfies Rényi-DP of every order
//! `α > 1` with
//!
//! ```text
//! RDP_α = α · Δ(y)² / (2σ²)                   (Canonne–Kamath–Steinke 2020, Prop. 5; Mironov 2017)
//! ```
//!
//! and RDP composes additively over releases (Mironov 2017, Prop. 1), also adaptively chosen
//! ones (each `y` is a function of earlier outputs). So the loss of sample `x` after releases
//! `y_1, …, y_m` is `RDP_α = α · S` with `S = Σ_k Δ(y_k)² / (2σ_k²)`, and the conversion to
//! `(ε, δ)`-DP (Mironov 2017, Prop. 3)
//!
//! ```text
//! ε(δ) = min over α of  α · S + ln(1/δ) / (α − 1)
//! ```
//!
//! is evaluated on a fixed grid of 193 orders `α = 1 + 10^{k/16}`, `k = −96..=96` (the exact
//! minimiser `α* = 1 + √(ln(1/δ)/S)` lies within a factor `10^{1/32}` of a grid point for every
//! `S` in `[10⁻⁹, 10¹²]`, so the grid value exceeds the optimum `S + 2√(S ln(1/δ))` by well under
//! 1 %). A release with `σ = 0` has `S = ∞`: `ε = ∞`.
//!
//! # The sensitivity model
//! The authority knows no dataset: each domain declares the **range** `R` of every coordinate
//! (each `x_j` lies in an interval of width `R`, e.g. the encoding's `[lo, hi]`; by default
//! `R = 2X`, the FEIP bound). Two granularities of neighbouring inputs are tracked side by side:
//!
//! - **per pixel** (one coordinate `x_j` changes anywhere within its range, the others stay):
//!   `Δ(y) = R · max_j |y_j|`;
//! - **per image** (the whole input changes anywhere within the encoding's box):
//!   `Δ(y) = sup |<x − x', y>| = R · Σ_j |y_j| = R · ‖y‖₁`. This is exact, not merely an
//!   upper bound: the supremum over the box is attained at the corner `x − x' = R · sign(y)`.
//!
//! Repeated requests for the same `(ciphertext, y)` get the same noise and release nothing new,
//! but the accountant charges every release (it keeps no record of past vectors): the figures
//! are upper bounds.
//!
//! # Budget
//! With a [`PrivacyBudget`], a request whose releases would take some sample beyond `ε` at `δ`
//! (at the budget's granularity) is refused as a whole, before any key is derived.
//!
//! # Example
//! ```
//! use cryptonn::coordinator::accountant::{epsilon_for, gaussian_rdp_unit};
//!
//! // One Gaussian release with σ = 1, Δ = 1 at δ = 1e-5: the optimum is
//! // S + 2·√(S·ln(1/δ)) with S = 1/2, about 5.298.
//! let eps = epsilon_for(gaussian_rdp_unit(1.0, 1.0), 1e-5);
//! assert!((eps - 5.2985).abs() < 0.01);
//! ```

use std::collections::HashMap;

/// `δ` at which the report quotes `ε` (`10⁻⁵`).
pub const DEFAULT_DELTA: f64 = 1e-5;

/// The grid of Rényi orders `α = 1 + 10^{k/16}`, `k = −96..=96`.
fn alphas() -> impl Iterator<Item = f64> {
    (-96..=96).map(|k: i32| 1.0 + 10f64.powf(f64::from(k) / 16.0))
}

/// `Δ² / (2σ²)`: the Rényi divergence of order `α` of one Gaussian release divided by `α`
/// (`∞` for `σ = 0` and `Δ > 0`; `0` for `Δ = 0`).
#[must_use]
pub fn gaussian_rdp_unit(sensitivity: f64, sigma: f64) -> f64 {
    if sensitivity == 0.0 {
        0.0
    } else if sigma == 0.0 {
        f64::INFINITY
    } else {
        sensitivity * sensitivity / (2.0 * sigma * sigma)
    }
}

/// `ε(δ) = min_α α·S + ln(1/δ)/(α − 1)` over the grid of the [module docs](self), for the
/// composed RDP slope `S` (`RDP_α = α·S`). `S = 0` gives `0`; `S = ∞` gives `∞`.
#[must_use]
pub fn epsilon_for(rdp_unit: f64, delta: f64) -> f64 {
    if rdp_unit == 0.0 {
        return 0.0;
    }
    if !rdp_unit.is_finite() || delta <= 0.0 {
        return f64::INFINITY;
    }
    let l = (1.0 / delta).ln();
    alphas()
        .map(|a| a * rdp_unit + l / (a - 1.0))
        .fold(f64::INFINITY, f64::min)
}

/// Which neighbouring inputs `ε` protects (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Granularity {
    /// One coordinate changes within its range: `Δ = R · max |y_j|`.
    Pixel,
    /// The whole input changes within the encoding's box: `Δ = R · ‖y‖₁`.
    Image,
}

impl Granularity {
    /// Its name in files and messages: `"pixel"` or `"image"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Pixel => "pixel",
            Granularity::Image => "image",
        }
    }

    /// The granularity [`name`](Self::name)d `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pixel" => Some(Granularity::Pixel),
            "image" => Some(Granularity::Image),
            _ => None,
        }
    }
}

impl std::fmt::Display for Granularity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Granularity::Pixel => "per pixel",
            Granularity::Image => "per image",
        })
    }
}

/// The sensitivities of one key vector `y` with coordinate range `R`:
/// `(R · max |y_j|, R · ‖y‖₁)` (per pixel, per image).
#[must_use]
pub fn sensitivities(terms: &[(usize, i64)], range: u64) -> (f64, f64) {
    let r = range as f64;
    let max = terms
        .iter()
        .map(|&(_, y)| y.unsigned_abs())
        .max()
        .unwrap_or(0) as f64;
    let l1 = terms
        .iter()
        .map(|&(_, y)| y.unsigned_abs() as f64)
        .sum::<f64>();
    (r * max, r * l1)
}

/// A limit on every sample's loss: `ε` at `δ` for the chosen granularity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacyBudget {
    /// The largest `ε` any sample may reach.
    pub epsilon: f64,
    /// The `δ` of the conversion.
    pub delta: f64,
    /// The neighbouring relation the budget protects.
    pub granularity: Granularity,
}

/// One sample's composed loss: the RDP slopes `S` per pixel and per image, and the number of
/// noisy values released.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampleLoss {
    /// `Σ Δ_pixel² / (2σ²)`.
    pub pixel: f64,
    /// `Σ Δ_image² / (2σ²)`.
    pub image: f64,
    /// Noisy values released.
    pub releases: u64,
}

impl SampleLoss {
    /// The slope at `granularity`.
    #[must_use]
    pub fn slope(&self, granularity: Granularity) -> f64 {
        match granularity {
            Granularity::Pixel => self.pixel,
            Granularity::Image => self.image,
        }
    }
    /// `ε(δ)` at `granularity`.
    #[must_use]
    pub fn epsilon(&self, granularity: Granularity, delta: f64) -> f64 {
        epsilon_for(self.slope(granularity), delta)
    }
}

/// One release to charge: the sample and the loss it adds (`releases` counts them).
pub type Charge = (u64, SampleLoss);

/// The per-sample Rényi-DP ledger (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct PrivacyAccountant {
    losses: HashMap<u64, SampleLoss>,
    budget: Option<PrivacyBudget>,
}

/// Why a batch of releases was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetExceeded {
    /// The first sample that would exceed the budget.
    pub sample: u64,
    /// Its `ε` after the batch.
    pub epsilon: f64,
    /// The budget.
    pub budget: PrivacyBudget,
}

impl PrivacyAccountant {
    /// An empty ledger with an optional budget.
    #[must_use]
    pub fn new(budget: Option<PrivacyBudget>) -> Self {
        Self {
            losses: HashMap::new(),
            budget,
        }
    }

    /// The budget.
    #[must_use]
    pub fn budget(&self) -> Option<PrivacyBudget> {
        self.budget
    }

    /// Sets or removes the budget.
    pub fn set_budget(&mut self, budget: Option<PrivacyBudget>) {
        self.budget = budget;
    }

    /// The composed loss of `sample` (zero if it released nothing).
    #[must_use]
    pub fn loss(&self, sample: u64) -> SampleLoss {
        self.losses.get(&sample).copied().unwrap_or_default()
    }

    /// The largest `ε(δ)` over all samples at `granularity` (0 with no release).
    #[must_use]
    pub fn max_epsilon(&self, granularity: Granularity, delta: f64) -> f64 {
        let slope = self
            .losses
            .values()
            .map(|l| l.slope(granularity))
            .fold(0.0, f64::max);
        epsilon_for(slope, delta)
    }

    /// Samples with at least one release.
    #[must_use]
    pub fn samples(&self) -> usize {
        self.losses.len()
    }

    /// Adds `charges` to the ledger if no sample would exceed the budget; otherwise changes
    /// nothing.
    ///
    /// # Errors
    /// [`BudgetExceeded`] naming the first sample beyond the budget.
    pub fn charge(&mut self, charges: &[Charge]) -> Result<(), BudgetExceeded> {
        let pending = self.prepare(charges)?;
        self.commit(pending);
        Ok(())
    }

    /// The ledger entries `charges` would lead to, checked against the budget, without
    /// changing the ledger ([`commit`](Self::commit) applies them).
    ///
    /// # Errors
    /// [`BudgetExceeded`] naming the first sample beyond the budget.
    pub fn prepare(&self, charges: &[Charge]) -> Result<PendingCharges, BudgetExceeded> {
        let mut pending: HashMap<u64, SampleLoss> = HashMap::new();
        for &(sample, add) in charges {
            let e = pending.entry(sample).or_insert_with(|| self.loss(sample));
            e.pixel += add.pixel;
            e.image += add.image;
            e.releases += add.releases;
        }
        if let Some(budget) = self.budget {
            let mut over: Vec<(u64, f64)> = pending
                .iter()
                .map(|(&s, l)| (s, l.epsilon(budget.granularity, budget.delta)))
                .filter(|&(_, eps)| eps.is_nan() || eps > budget.epsilon)
                .collect();
            over.sort_by_key(|&(s, _)| s);
            if let Some(&(sample, epsilon)) = over.first() {
                return Err(BudgetExceeded {
                    sample,
                    epsilon,
                    budget,
                });
            }
        }
        Ok(PendingCharges(pending))
    }

    /// Applies entries from [`prepare`](Self::prepare) (made against the current ledger).
    pub fn commit(&mut self, pending: PendingCharges) {
        self.losses.extend(pending.0);
    }

    /// Sets `sample`'s composed loss to `loss` (a persisted authority restoring its ledger).
    pub(crate) fn restore(&mut self, sample: u64, loss: SampleLoss) {
        self.losses.insert(sample, loss);
    }
}

/// Ledger entries checked against the budget, not yet applied.
#[derive(Debug)]
pub struct PendingCharges(HashMap<u64, SampleLoss>);

#[cfg(test)]
mod tests {
    use super::*;

    /// The optimum of the RDP → (ε, δ) conversion for the slope `s`: `s + 2√(s ln(1/δ))`.
    fn optimum(s: f64, delta: f64) -> f64 {
        s + 2.0 * (s * (1.0 / delta).ln()).sqrt()
    }

    #[test]
    fn one_release_matches_the_closed_form() {
        // σ = 1, Δ = 1, δ = 1e-5: S = 1/2, α* = 1 + √(2 ln 1e5) ≈ 4.393, ε* ≈ 5.2985.
        let s = gaussian_rdp_unit(1.0, 1.0);
        assert_eq!(s, 0.5);
        let eps = epsilon_for(s, 1e-5);
        assert!((optimum(s, 1e-5) - 5.298_47).abs() < 1e-4);
        assert!(eps >= optimum(s, 1e-5) - 1e-12, "{eps}");
        assert!(eps < optimum(s, 1e-5) * 1.002, "{eps}");
    }

    #[test]
    fn the_grid_is_close_to_the_optimum_over_a_wide_range() {
        for s in [1e-9, 1e-6, 1e-3, 0.1, 1.0, 30.0, 1e4, 1e8, 1e12] {
            for delta in [1e-5, 1e-8] {
                let (got, want) = (epsilon_for(s, delta), optimum(s, delta));
                assert!(
                    got >= want * (1.0 - 1e-12) && got <= want * 1.01,
                    "{s} {delta}"
                );
            }
        }
    }

    #[test]
    fn composition_is_additive_and_sensitivity_follows_the_model() {
        // k releases of σ, Δ equal one release of σ/√k.
        let one = epsilon_for(gaussian_rdp_unit(1.0, 4.0 / 10f64.sqrt()), 1e-5);
        let ten = epsilon_for(10.0 * gaussian_rdp_unit(1.0, 4.0), 1e-5);
        assert!((one - ten).abs() < 1e-9);
        // y = (3, −4, 0, 1) with range 255: per pixel 255·4, per image 255·8.
        assert_eq!(
            sensitivities(&[(0, 3), (1, -4), (5, 1)], 255),
            (1020.0, 2040.0)
        );
        assert_eq!(epsilon_for(0.0, 1e-5), 0.0);
        assert_eq!(gaussian_rdp_unit(3.0, 0.0), f64::INFINITY);
        assert_eq!(epsilon_for(f64::INFINITY, 1e-5), f64::INFINITY);
    }

    #[test]
    fn the_budget_refuses_a_whole_batch() {
        let budget = PrivacyBudget {
            epsilon: 10.0,
            delta: 1e-5,
            granularity: Granularity::Image,
        };
        let mut acc = PrivacyAccountant::new(Some(budget));
        let unit = |s: f64| SampleLoss {
            pixel: s / 4.0,
            image: s,
            releases: 1,
        };
        // S = 1 gives ε ≈ 7.79; S = 2 gives ε ≈ 11.6.
        acc.charge(&[(1, unit(0.5)), (2, unit(0.5)), (1, unit(0.5))])
            .unwrap();
        assert_eq!(acc.loss(1).releases, 2);
        let before = acc.loss(1);
        let err = acc.charge(&[(2, unit(0.1)), (1, unit(1.0))]).unwrap_err();
        assert_eq!(err.sample, 1);
        assert!(err.epsilon > 10.0);
        // Nothing of the refused batch was charged.
        assert_eq!(acc.loss(1), before);
        assert_eq!(acc.loss(2).releases, 1);
        // Per pixel the same releases are cheaper.
        assert!(
            acc.loss(1).epsilon(Granularity::Pixel, 1e-5)
                < acc.loss(1).epsilon(Granularity::Image, 1e-5)
        );
        assert!((acc.max_epsilon(Granularity::Image, 1e-5) - epsilon_for(1.0, 1e-5)).abs() < 1e-12);
    }
}
