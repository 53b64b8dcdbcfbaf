//! Functional encryption: the cryptographic core of cryptonn.
//!
//! - [`encoding`]: fixed-point encoding of real numbers as bounded integers.
//! - [`error`]: the error types of this module.

pub mod encoding;
pub mod error;
