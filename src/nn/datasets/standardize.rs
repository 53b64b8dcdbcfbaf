//! The declared feature encoding of table datasets: public per-feature standardisation, then
//! fixed point.
//!
//! The data owner fits, on the **training** split only, a mean `μ_f` and a population standard
//! deviation `σ_f` for every feature `f` (computed in `f64`):
//!
//! ```text
//! μ_f = (1/n) Σ_i x_if        σ_f = sqrt((1/n) Σ_i (x_if - μ_f)²),  replaced by 1 when it is 0
//! z_f(x) = (x - μ_f) / σ_f                                   (f64)
//! normalize(f, x) = z_f(x) as f32                            (plain training)
//! encode(f, x, S_x) = round(z_f(x) · S_x)                    (round half away from zero, f64)
//! ```
//!
//! A feature that is constant on the training split (`σ_f = 0`, e.g. a digits corner pixel that
//! is always 0) is only centred: `σ_f` is replaced by 1, as scikit-learn's `StandardScaler` does,
//! so it maps to `x - μ_f` (0 on the training split) rather than dividing by zero.
//!
//! `μ` and `σ` are public parameters of the encoding (they are published with the model and are
//! part of what the server may know); the values `x` are the data owner's secret.
//!
//! # Encodable range
//!
//! The encoding declares a bound `|z| <= max_abs_z` (default [`DEFAULT_MAX_ABS_Z`] = 64; the
//! shipped breast-cancer data reach `|z| ≈ 13.8` and the digits `|z| ≈ 53.7` under per-feature
//! standardisation fitted on their training splits). A value outside it, a NaN or an infinity is a
//! [`DatasetError`] naming the feature, never a clamp or a wrap. The encoded integer is
//! moreover at most `2^53` in magnitude, so it is exact in `f64`.
//!
//! ```
//! use cryptonn::nn::datasets::{Standardization, Table};
//!
//! // Two examples, two features: feature 0 is {1, 3}, feature 1 is constant 5.
//! let t = Table { features: 2, classes: 2, values: vec![1.0, 5.0, 3.0, 5.0],
//!                 labels: vec![0, 1], image_shape: None };
//! let s = Standardization::fit(&t)?;
//! assert_eq!((s.mean()[0], s.std()[0]), (2.0, 1.0));
//! assert_eq!(s.std()[1], 1.0); // constant: centred only
//! assert_eq!(s.normalize(0, 3.0), 1.0);
//! assert_eq!(s.encode(0, 3.0, 16.0)?, 16);
//! assert_eq!(s.encode(1, 4.5, 16.0)?, -8);
//! assert!(s.encode(0, 200.0, 16.0).is_err()); // z = 198 > 64
//! assert!(s.encode(0, f32::NAN, 16.0).is_err());
//! # Ok::<(), cryptonn::nn::DataError>(())
//! ```

use serde::{Deserialize, Serialize};

use super::error::DatasetError;
use super::Table;
use crate::nn::error::DataError;

/// The default declared bound on `|z|`.
pub const DEFAULT_MAX_ABS_Z: f64 = 64.0;

/// The largest magnitude of an encoded integer: 2^53, exact in `f64`.
pub const MAX_ENCODED: u64 = 1 << 53;

/// Public per-feature standardisation `z = (x - mean) / std`, fitted on a training split, with a
/// declared encodable range `|z| <= max_abs_z` (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StandardizationParts")]
pub struct Standardization {
    mean: Vec<f64>,
    std: Vec<f64>,
    max_abs_z: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    names: Vec<String>,
}

/// The serialised form, validated into a [`Standardization`].
#[derive(Deserialize)]
struct StandardizationParts {
    mean: Vec<f64>,
    std: Vec<f64>,
    max_abs_z: f64,
    #[serde(default)]
    names: Vec<String>,
}

impl TryFrom<StandardizationParts> for Standardization {
    type Error = DataError;

    fn try_from(p: StandardizationParts) -> Result<Self, DataError> {
        Self::from_parts(p.mean, p.std, p.max_abs_z)?.with_feature_names(p.names)
    }
}

fn invalid(reason: String) -> DataError {
    DatasetError::InvalidParameter(reason).into()
}

impl Standardization {
    /// Fits per-feature means and population standard deviations on `train` (the training
    /// split), with the default range [`DEFAULT_MAX_ABS_Z`]. A zero deviation becomes 1.
    ///
    /// # Errors
    /// [`DatasetError::InconsistentTable`] if `train` is inconsistent or empty.
    pub fn fit(train: &Table) -> Result<Self, DataError> {
        let n = check_fittable(train)?;
        let f = train.features;
        let mut mean = vec![0f64; f];
        for row in train.values.chunks_exact(f) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; f];
        for row in train.values.chunks_exact(f) {
            for ((v, &m), &x) in var.iter_mut().zip(&mean).zip(row) {
                let d = f64::from(x) - m;
                *v += d * d;
            }
        }
        let std = var.iter().map(|v| deviation(v / n)).collect();
        Self::from_parts(mean, std, DEFAULT_MAX_ABS_Z)
    }

    /// Fits one mean and one population standard deviation over all values of `train` and uses
    /// them for every feature (for images, where every pixel should be treated alike and the
    /// zero padding of a convolution then means "the average pixel"). A zero deviation becomes 1.
    ///
    /// # Errors
    /// As [`fit`](Self::fit).
    pub fn fit_uniform(train: &Table) -> Result<Self, DataError> {
        let n = check_fittable(train)? * train.features as f64;
        let mean = train.values.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = train
            .values
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let f = train.features;
        Self::from_parts(vec![mean; f], vec![deviation(var); f], DEFAULT_MAX_ABS_Z)
    }

    /// An encoding from published parameters.
    ///
    /// # Errors
    /// [`DatasetError::InvalidParameter`] unless `mean` and `std` have the same, non-zero
    /// length, every mean is finite, every deviation finite and positive, and `max_abs_z` finite
    /// and positive.
    pub fn from_parts(mean: Vec<f64>, std: Vec<f64>, max_abs_z: f64) -> Result<Self, DataError> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(invalid(format!(
                "{} means and {} deviations (need the same non-zero number)",
                mean.len(),
                std.len()
            )));
        }
        if let Some(f) = mean.iter().position(|m| !m.is_finite()) {
            return Err(invalid(format!("the mean of feature {f} is {}", mean[f])));
        }
        if let Some(f) = std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(invalid(format!(
                "the deviation of feature {f} is {}, not finite and positive",
                std[f]
            )));
        }
        let s = Self {
            mean,
            std,
            max_abs_z: 1.0,
            names: Vec::new(),
        };
        s.with_max_abs_z(max_abs_z)
    }

    /// Declares the encodable range `|z| <= max_abs_z`.
    ///
    /// # Errors
    /// [`DatasetError::InvalidParameter`] unless `max_abs_z` is finite and positive.
    pub fn with_max_abs_z(mut self, max_abs_z: f64) -> Result<Self, DataError> {
        if !(max_abs_z.is_finite() && max_abs_z > 0.0) {
            return Err(invalid(format!(
                "the encodable range |z| <= {max_abs_z} must be finite and positive"
            )));
        }
        self.max_abs_z = max_abs_z;
        Ok(self)
    }

    /// Names the features in error messages (e.g.
    /// [`breast_cancer::FEATURE_NAMES`](super::breast_cancer::FEATURE_NAMES)); an empty list
    /// removes the names.
    ///
    /// # Errors
    /// [`DatasetError::InvalidParameter`] unless there is one name per feature (or none).
    pub fn with_feature_names<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Result<Self, DataError> {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if !names.is_empty() && names.len() != self.features() {
            return Err(invalid(format!(
                "{} feature names for {} features",
                names.len(),
                self.features()
            )));
        }
        self.names = names;
        Ok(self)
    }

    /// Number of features.
    #[must_use]
    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// The means `μ_f`.
    #[must_use]
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The deviations `σ_f` (1 for a feature constant on the training split).
    #[must_use]
    pub fn std(&self) -> &[f64] {
        &self.std
    }

    /// The declared bound on `|z|`.
    #[must_use]
    pub fn max_abs_z(&self) -> f64 {
        self.max_abs_z
    }

    /// `(raw - μ_f) / σ_f` in `f64`, unchecked (NaN in, NaN out).
    ///
    /// # Panics
    /// If `feature >= features()`.
    #[must_use]
    pub fn normalize_f64(&self, feature: usize, raw: f32) -> f64 {
        (f64::from(raw) - self.mean[feature]) / self.std[feature]
    }

    /// `(raw - μ_f) / σ_f`, computed in `f64` and rounded to `f32` (the plain network's input),
    /// unchecked. Use [`normalize_row`](Self::normalize_row) for checked input.
    ///
    /// # Panics
    /// If `feature >= features()`.
    #[must_use]
    pub fn normalize(&self, feature: usize, raw: f32) -> f32 {
        self.normalize_f64(feature, raw) as f32
    }

    /// `z_f(raw)`, checked: the feature exists, `raw` is finite and `|z| <= max_abs_z`.
    fn checked_z(&self, feature: usize, raw: f32, scale: f64) -> Result<f64, DatasetError> {
        if feature >= self.features() {
            return Err(DatasetError::FeatureIndex {
                feature,
                features: self.features(),
            });
        }
        if !raw.is_finite() {
            return Err(DatasetError::FeatureNotFinite {
                feature,
                name: self.names.get(feature).cloned(),
                value: raw,
            });
        }
        let z = self.normalize_f64(feature, raw);
        if z.is_nan() || z.abs() > self.max_abs_z {
            return Err(self.out_of_range(feature, raw, z, scale));
        }
        Ok(z)
    }

    fn out_of_range(&self, feature: usize, raw: f32, z: f64, scale: f64) -> DatasetError {
        DatasetError::FeatureOutOfRange {
            feature,
            name: self.names.get(feature).cloned(),
            value: raw,
            z,
            max_abs_z: self.max_abs_z,
            scale,
        }
    }

    /// The fixed-point encoding `round(z_f(raw) · scale_x)` of one feature value.
    ///
    /// # Errors
    /// [`DatasetError::InvalidParameter`] unless `scale_x` is finite and positive;
    /// [`DatasetError::FeatureIndex`]; [`DatasetError::FeatureNotFinite`] for NaN or an infinity;
    /// [`DatasetError::FeatureOutOfRange`] if `|z| > max_abs_z` or the integer would exceed
    /// [`MAX_ENCODED`]. All name the feature.
    pub fn encode(&self, feature: usize, raw: f32, scale_x: f64) -> Result<i64, DataError> {
        check_scale(scale_x)?;
        let z = self.checked_z(feature, raw, scale_x)?;
        let xq = (z * scale_x).round();
        // MAX_ENCODED = 2^53 is exact in f64, so the comparison is exact and the cast cannot
        // overflow.
        if xq.is_nan() || xq.abs() > MAX_ENCODED as f64 {
            return Err(self.out_of_range(feature, raw, z, scale_x).into());
        }
        Ok(xq as i64)
    }

    /// [`encode`](Self::encode) for every feature of one example.
    ///
    /// # Errors
    /// [`DatasetError::InconsistentTable`] if `row.len() != features()`, or the first error of
    /// [`encode`](Self::encode).
    pub fn encode_row(&self, row: &[f32], scale_x: f64) -> Result<Vec<i64>, DataError> {
        self.check_row(row)?;
        row.iter()
            .enumerate()
            .map(|(f, &x)| self.encode(f, x, scale_x))
            .collect()
    }

    /// [`normalize`](Self::normalize) for every feature of one example, with the checks of
    /// [`encode`](Self::encode): plain training refuses exactly the inputs the quantised and
    /// secure modes refuse.
    ///
    /// # Errors
    /// As [`encode_row`](Self::encode_row).
    pub fn normalize_row(&self, row: &[f32]) -> Result<Vec<f32>, DataError> {
        self.check_row(row)?;
        row.iter()
            .enumerate()
            .map(|(f, &x)| Ok(self.checked_z(f, x, 1.0)? as f32))
            .collect()
    }

    /// The table with every value standardised ([`normalize_row`](Self::normalize_row) on each
    /// row); labels and shape are kept.
    ///
    /// # Errors
    /// [`DatasetError::InconsistentTable`] if the table is inconsistent or its feature count
    /// differs, or the first error of [`normalize_row`](Self::normalize_row).
    pub fn normalize_table(&self, table: &Table) -> Result<Table, DataError> {
        table.validate()?;
        let mut values = Vec::with_capacity(table.values.len());
        for row in table.values.chunks_exact(table.features.max(1)) {
            values.extend(self.normalize_row(row)?);
        }
        Ok(Table {
            values,
            ..table.clone()
        })
    }

    fn check_row(&self, row: &[f32]) -> Result<(), DatasetError> {
        if row.len() == self.features() {
            Ok(())
        } else {
            Err(DatasetError::InconsistentTable(format!(
                "a row of {} values for an encoding of {} features",
                row.len(),
                self.features()
            )))
        }
    }
}

/// The deviation of a variance; a constant feature (variance 0) is only centred.
fn deviation(var: f64) -> f64 {
    let s = var.sqrt();
    if s > 0.0 {
        s
    } else {
        1.0
    }
}

fn check_fittable(train: &Table) -> Result<f64, DataError> {
    train.validate()?;
    if train.is_empty() || train.features == 0 {
        return Err(DatasetError::InconsistentTable(
            "cannot fit a standardisation on an empty training split".into(),
        )
        .into());
    }
    Ok(train.len() as f64)
}

fn check_scale(scale_x: f64) -> Result<(), DatasetError> {
    if scale_x.is_finite() && scale_x > 0.0 {
        Ok(())
    } else {
        Err(DatasetError::InvalidParameter(format!(
            "the scale S_x = {scale_x} must be finite and positive"
        )))
    }
}
