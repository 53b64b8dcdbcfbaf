//! Fixed-point encoding of real numbers as signed integers.
//!
//! Functional encryption computes over integers: FEIP decrypts `g^{<x, y>}` and a bounded discrete
//! logarithm returns the exact integer `<x, y>`. Real-valued pixels, weights and gradients are
//! therefore encoded with a scale `S > 0`:
//!
//! ```text
//! encode(v) = round(v · S)          (round half away from zero, computed in f64)
//! decode(z) = z / S
//! ```
//!
//! A product of two encodings carries the product of their scales: for `x̂ = encode_Sx(x)` and
//! `ŵ = encode_Sw(w)`, `<x̂, ŵ> / (Sx · Sw) ≈ <x, w>`. [`FixedPoint::decode_product`] divides by
//! both scales.
//!
//! The scale must be a normal `f64` in `2^-16 ..= 2^53` ([`MIN_SCALE`], [`MAX_SCALE`]): a
//! subnormal or tiny scale would encode every value as 0 and decode to infinity, a huge one
//! would put every non-zero value out of range.
//!
//! Every encoded integer must satisfy `|z| <= 2^53`, so that it is exact as an `f64` too; a
//! [`FixedPoint::with_bound`] codec enforces a tighter bound, such as the plaintext bound `X` of
//! FEIP. NaN, infinities and values beyond the bound are errors, never silently clamped.
//!
//! ```
//! use cryptonn::fe::encoding::FixedPoint;
//!
//! let pixels = FixedPoint::with_bound(255.0, 255)?;
//! assert_eq!(pixels.encode(0.5)?, 128);
//! assert_eq!(pixels.encode(-1.0)?, -255);
//! assert!(pixels.encode(1.01).is_err());
//! assert!(pixels.encode(f64::NAN).is_err());
//! assert_eq!(pixels.decode(255), 1.0);
//! # Ok::<(), cryptonn::fe::error::EncodingError>(())
//! ```

pub use crate::fe::error::EncodingError;

/// The largest magnitude an encoded integer may have: 2^53, the last integer up to which every
/// integer is exact in an `f64`.
pub const MAX_EXACT: u64 = 1 << 53;

/// The smallest scale a codec accepts: `2^-16`.
pub const MIN_SCALE: f64 = 1.0 / 65_536.0;
/// The largest scale a codec accepts: `2^53` ([`MAX_EXACT`]).
pub const MAX_SCALE: f64 = MAX_EXACT as f64;

/// A fixed-point codec: a scale and a bound on the magnitude of encoded integers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedPoint {
    scale: f64,
    bound: u64,
}

impl FixedPoint {
    /// A codec with scale `scale` and the widest bound, [`MAX_EXACT`].
    ///
    /// # Errors
    /// [`EncodingError::InvalidScale`] as for [`with_bound`](Self::with_bound).
    pub fn new(scale: f64) -> Result<Self, EncodingError> {
        Self::with_bound(scale, MAX_EXACT)
    }

    /// A codec with scale `scale` whose encodings must satisfy `|z| <= bound`.
    /// A `bound` above [`MAX_EXACT`] is lowered to it.
    ///
    /// # Errors
    /// [`EncodingError::InvalidScale`] if `scale` is not a normal number in
    /// [`MIN_SCALE`]`..=`[`MAX_SCALE`] (NaN, infinite, zero, negative, subnormal or absurd).
    pub fn with_bound(scale: f64, bound: u64) -> Result<Self, EncodingError> {
        if !(scale.is_normal() && (MIN_SCALE..=MAX_SCALE).contains(&scale)) {
            return Err(EncodingError::InvalidScale(scale));
        }
        Ok(Self {
            scale,
            bound: bound.min(MAX_EXACT),
        })
    }

    /// The scale `S`.
    #[must_use]
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The largest magnitude an encoding may have.
    #[must_use]
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// `round(value · S)`.
    ///
    /// # Errors
    /// [`EncodingError::NotANumber`], [`EncodingError::Infinite`], or
    /// [`EncodingError::OutOfRange`] when the result exceeds the bound.
    pub fn encode(&self, value: f64) -> Result<i64, EncodingError> {
        if value.is_nan() {
            return Err(EncodingError::NotANumber);
        }
        if value.is_infinite() {
            return Err(EncodingError::Infinite(value));
        }
        let scaled = (value * self.scale).round();
        // `bound <= 2^53`, so the comparison is exact and the cast below cannot overflow.
        if !scaled.is_finite() || scaled.abs() > self.bound as f64 {
            return Err(EncodingError::OutOfRange {
                value,
                scale: self.scale,
                bound: self.bound,
            });
        }
        Ok(scaled as i64)
    }

    /// [`encode`](Self::encode) for an `f32`, widened to `f64` first.
    ///
    /// # Errors
    /// As [`encode`](Self::encode).
    pub fn encode_f32(&self, value: f32) -> Result<i64, EncodingError> {
        self.encode(f64::from(value))
    }

    /// Encodes every value of a slice, or reports the first that fails.
    ///
    /// # Errors
    /// As [`encode`](Self::encode).
    pub fn encode_slice_f32(&self, values: &[f32]) -> Result<Vec<i64>, EncodingError> {
        values.iter().map(|&v| self.encode_f32(v)).collect()
    }

    /// `z / S`.
    #[must_use]
    pub fn decode(&self, z: i64) -> f64 {
        z as f64 / self.scale
    }

    /// Decodes a product of an encoding under `self` and one under `other`: `z / (S_self · S_other)`.
    #[must_use]
    pub fn decode_product(&self, z: i64, other: &FixedPoint) -> f64 {
        z as f64 / (self.scale * other.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_scales() {
        for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                FixedPoint::new(s),
                Err(EncodingError::InvalidScale(_))
            ));
        }
    }

    /// The hostile-client review, reproduction 8: a subnormal scale was accepted, then `encode(0.5) = 0` and
    /// `decode(1) = inf`.
    #[test]
    fn rejects_subnormal_and_absurd_scales() {
        for s in [
            f64::from_bits(1),
            f64::MIN_POSITIVE / 2.0,
            1e-300,
            MIN_SCALE / 2.0,
            1e300,
            MAX_SCALE * 2.0,
        ] {
            assert!(
                matches!(
                    FixedPoint::with_bound(s, 255),
                    Err(EncodingError::InvalidScale(_))
                ),
                "{s:e}"
            );
        }
        for s in [MIN_SCALE, 1.0, 255.0, MAX_SCALE] {
            let c = FixedPoint::with_bound(s, MAX_EXACT).unwrap();
            assert!(c.decode(1).is_finite());
        }
    }

    #[test]
    fn rounds_half_away_from_zero() {
        let c = FixedPoint::new(2.0).unwrap();
        assert_eq!(c.encode(0.25).unwrap(), 1);
        assert_eq!(c.encode(-0.25).unwrap(), -1);
        assert_eq!(c.encode(0.2).unwrap(), 0);
    }

    #[test]
    fn bound_is_inclusive() {
        let c = FixedPoint::with_bound(1.0, 10).unwrap();
        assert_eq!(c.encode(10.0).unwrap(), 10);
        assert_eq!(c.encode(-10.0).unwrap(), -10);
        assert!(matches!(
            c.encode(10.5),
            Err(EncodingError::OutOfRange { .. })
        ));
        assert!(matches!(
            c.encode(-11.0),
            Err(EncodingError::OutOfRange { .. })
        ));
    }

    #[test]
    fn rejects_non_finite_and_huge() {
        let c = FixedPoint::new(1e6).unwrap();
        assert_eq!(c.encode(f64::NAN), Err(EncodingError::NotANumber));
        assert!(matches!(
            c.encode(f64::NEG_INFINITY),
            Err(EncodingError::Infinite(_))
        ));
        assert!(matches!(
            c.encode(1e300),
            Err(EncodingError::OutOfRange { .. })
        ));
        assert!(c.encode_f32(f32::NAN).is_err());
    }

    #[test]
    fn decode_inverts_encode_up_to_rounding() {
        let c = FixedPoint::new(1024.0).unwrap();
        for v in [-3.5f64, -0.001, 0.0, 0.123, 7.0] {
            let back = c.decode(c.encode(v).unwrap());
            assert!((back - v).abs() <= 0.5 / 1024.0);
        }
        let w = FixedPoint::new(100.0).unwrap();
        assert_eq!(c.decode_product(1024 * 100 * 3, &w), 3.0);
    }
}
