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

#[cfg(feature = "cli")]
pub mod cli;
pub mod coordinator;
pub mod fe;
pub mod nn;
