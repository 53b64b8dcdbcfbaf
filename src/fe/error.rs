//! Error types of the functional-encryption core.

use thiserror::Error;

/// Why a real number could not be turned into a fixed-point integer.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// The scale is not a finite number greater than zero.
    #[error("fixed-point scale must be finite and > 0, got {0}")]
    InvalidScale(f64),
    /// The value is NaN.
    #[error("cannot encode NaN")]
    NotANumber,
    /// The value is +inf or -inf.
    #[error("cannot encode an infinite value ({0})")]
    Infinite(f64),
    /// `round(value * scale)` lies outside the allowed range `[-bound, bound]`.
    #[error("value {value} at scale {scale} encodes outside [-{bound}, {bound}]")]
    OutOfRange {
        /// The value that was to be encoded.
        value: f64,
        /// The scale in use.
        scale: f64,
        /// The largest magnitude allowed.
        bound: u64,
    },
}
