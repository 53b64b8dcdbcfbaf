//! Functional encryption: the cryptographic core of cryptonn.
//!
//! - [`group`]: the [`PrimeOrderGroup`](group::PrimeOrderGroup) trait and its backends
//!   (Ristretto255; the RFC 3526 Schnorr groups of Z_p*).
//! - [`feip`]: inner-product functional encryption (Abdalla–Bourse–De Caro–Pointcheval, DDH).
//! - [`febo`]: CryptoNN's element-wise scheme with ciphertext-bound keys for `+ - * /`.
//! - [`discrete_gaussian`]: the exact discrete Gaussian sampler and its keyed PRF stream.
//! - [`noisy_key`]: ciphertext-bound noisy FEIP keys (decryption gives `<x, y> + e`).
//! - [`dlog`]: the bounded discrete logarithm that ends every decryption.
//! - [`serialize`]: the versioned binary format of keys and ciphertexts (and serde).
//! - [`encoding`]: fixed-point encoding of real numbers as bounded integers.
//! - [`error`]: the error types of this module.

pub mod discrete_gaussian;
pub mod dlog;
pub mod encoding;
pub mod error;
pub mod febo;
pub mod feip;
pub mod group;
pub mod noisy_key;
pub mod serialize;
