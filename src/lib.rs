//! # cryptonn
//!
//! Train neural networks on data whose owners never reveal it, with functional encryption.
//! This crate implements CryptoNN (Xu, Joshi, Li; ICDCS 2019):
//!
//! - [`fe`]: the cryptography — prime-order groups, inner-product functional encryption (FEIP,
//!   Abdalla–Bourse–De Caro–Pointcheval, PKC 2015), CryptoNN's element-wise scheme (FEBO), the
//!   bounded discrete logarithm that ends every decryption, and fixed-point encoding.
//! - [`nn`]: a from-scratch LeNet-5 on `ndarray` + `rayon`: layers, loss, optimiser, training loop.
//! - [`coordinator`]: the three parties — authority, clients and server — and the key service
//!   between them.
//! - [`report_schema`]: the contract of the benchmark report's `report.json` (a driver's
//!   concern, kept here so that the report example and its test share it).

#[cfg(feature = "cli")]
pub mod cli;
/// The crate's version (the Python package `cryptonn` is kept at the same version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod coordinator;
pub mod fe;
pub mod nn;
pub mod report_schema;
