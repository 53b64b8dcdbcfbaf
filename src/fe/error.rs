//! Error types of the functional-encryption core.

use thiserror::Error;

/// Why a real number could not be turned into a fixed-point integer.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// The scale is not a normal floating-point number in
    /// [`MIN_SCALE`](crate::fe::encoding::MIN_SCALE)`..=`[`MAX_SCALE`](crate::fe::encoding::MAX_SCALE).
    #[error("fixed-point scale must be a normal number in 2^-16..=2^53, got {0:e}")]
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

/// Why a group operation, parameter set or encoding was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GroupError {
    /// An encoding has the wrong number of bytes.
    #[error("encoding has {got} bytes, expected {expected}")]
    InvalidLength {
        /// The length the group's canonical encoding has.
        expected: usize,
        /// The length that was given.
        got: usize,
    },
    /// The bytes do not encode an element of the group (not canonical, not on the curve, not in
    /// the prime-order subgroup, or the identity where it is not allowed).
    #[error("bytes do not encode a valid group element")]
    InvalidElement,
    /// The bytes do not encode a canonical scalar (an integer in `[0, q)`).
    #[error("bytes do not encode a canonical scalar modulo the group order")]
    NonCanonicalScalar,
    /// A parameter set below the 112-bit security floor was requested.
    #[error("parameter set offers about {bits}-bit security, below the {minimum}-bit floor")]
    InsecureParameters {
        /// The estimated security of the requested parameters.
        bits: u32,
        /// The floor the crate enforces.
        minimum: u32,
    },
    /// The scalar zero has no multiplicative inverse.
    #[error("the scalar zero is not invertible")]
    NotInvertible,
}

/// Why a bounded discrete logarithm could not be computed or its table not used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DlogError {
    /// The element is not `g^z` for any `|z| <= bound`.
    #[error("discrete logarithm not found within |z| <= {bound}")]
    OutOfRange {
        /// The bound the solver was asked to search.
        bound: u64,
    },
    /// The requested table or bound is unusable (zero, or too large for this implementation).
    #[error("invalid discrete-log parameters: {0}")]
    InvalidParameters(&'static str),
    /// A cached table file could not be read or written.
    #[error("discrete-log cache I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A cached table file is corrupt, truncated, from another version, or for another group.
    #[error("discrete-log cache file is invalid: {0}")]
    CorruptCache(&'static str),
}

/// Why a functional-encryption operation (FEIP or FEBO) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FeError {
    /// A vector has the wrong length for the scheme instance or key.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The length the instance expects.
        expected: usize,
        /// The length that was given.
        got: usize,
    },
    /// A plaintext entry exceeds the declared bound `X`: `|x_i| > X`.
    #[error("plaintext entry x[{index}] = {value} exceeds the bound |x| <= {bound}")]
    PlaintextOutOfBound {
        /// Position of the offending entry.
        index: usize,
        /// The offending value.
        value: i64,
        /// The declared bound `X`.
        bound: u64,
    },
    /// A key-vector entry exceeds the declared bound `Y`: `|y_i| > Y`.
    #[error("key-vector entry y[{index}] = {value} exceeds the bound |y| <= {bound}")]
    KeyOutOfBound {
        /// Position of the offending entry.
        index: usize,
        /// The offending value.
        value: i64,
        /// The declared bound `Y`.
        bound: u64,
    },
    /// A sparse vector names an index outside `0..n` or repeats/unorders indices.
    #[error("invalid sparse index {index} (indices must be strictly increasing and < {n})")]
    InvalidSparseIndex {
        /// The offending index.
        index: usize,
        /// The dimension of the instance.
        n: usize,
    },
    /// The scheme parameters are unusable (e.g. `n = 0`, or `n·X·Y` does not fit in an `i64`).
    #[error("invalid scheme parameters: {0}")]
    InvalidParameters(&'static str),
    /// A FEBO division was asked for the divisor zero.
    #[error("division by zero")]
    DivisionByZero,
    /// A FEBO division `x / y` whose result is not an integer within the discrete-log bound
    /// (the scheme only supports `y | x`).
    #[error("the quotient is not an integer within the discrete-log bound (y must divide x)")]
    InexactDivision,
    /// A value or operand of a FEBO operation that does not fit the scheme's declared bound.
    #[error("value {value} exceeds the bound {bound}")]
    ValueOutOfBound {
        /// The offending value.
        value: i64,
        /// The declared bound.
        bound: u64,
    },
    /// The decrypted value lies outside the discrete-log solver's range.
    #[error(transparent)]
    Dlog(#[from] DlogError),
    /// A group-level failure.
    #[error(transparent)]
    Group(#[from] GroupError),
}

/// Why bytes could not be decoded into a key or ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SerializationError {
    /// The input ended before the structure was complete.
    #[error("input truncated")]
    Truncated,
    /// The input does not start with the cryptonn magic bytes.
    #[error("bad magic bytes")]
    BadMagic,
    /// The format version is not one this build reads.
    #[error("unsupported format version {found} (this build reads {supported})")]
    UnsupportedVersion {
        /// The version found in the input.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The input is for another group than the one it is decoded with.
    #[error("group mismatch: input is for group id {found}, expected {expected}")]
    GroupMismatch {
        /// The expected group id.
        expected: u8,
        /// The group id found in the input.
        found: u8,
    },
    /// The input holds another kind of object (e.g. a ciphertext where a key was expected).
    #[error("object kind mismatch: found tag {found}, expected {expected}")]
    KindMismatch {
        /// The expected kind tag.
        expected: u8,
        /// The kind tag found.
        found: u8,
    },
    /// A length field is zero or implausibly large.
    #[error("invalid length field {0}")]
    InvalidLength(u64),
    /// The trailing CRC-32 does not match: the bytes were damaged.
    #[error("checksum mismatch (damaged bytes)")]
    ChecksumMismatch,
    /// A field holds a value outside its domain (e.g. an unknown FEBO operation).
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
    /// Bytes remain after the structure.
    #[error("{0} trailing bytes after the structure")]
    TrailingBytes(usize),
    /// A contained element or scalar encoding is invalid.
    #[error(transparent)]
    Group(#[from] GroupError),
}
