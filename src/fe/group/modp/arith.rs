//! Multi-precision arithmetic for the Z_p* backend.
//!
//! - [`Field`]: residues modulo `p`. By default, this crate's Montgomery kernels over 64-bit
//!   limbs ([`mont`]), constant time outside the `vartime` functions; with the `gmp` feature,
//!   GMP through rug ([`gmp`](self)), whose secret exponentiations use `mpz_powm_sec`.
//! - [`ScalarField`]: integers modulo `q` through crypto-bigint's constant-time `BoxedUint`, in
//!   both builds.
//!
//! Both `Field`s expose the same functions, so the group above is written once.

#[cfg(feature = "gmp")]
mod gmp;
#[cfg(not(feature = "gmp"))]
mod mont;
mod scalar;

#[cfg(feature = "gmp")]
pub use gmp::{BaseComb, Elem, Field, FixedBase};
#[cfg(not(feature = "gmp"))]
pub use mont::{BaseComb, Elem, Field, FixedBase};
pub use scalar::ScalarField;
