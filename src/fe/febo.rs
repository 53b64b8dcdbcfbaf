//! FEBO: CryptoNN's element-wise functional encryption for basic operations, with
//! ciphertext-bound function keys.
//!
//! In a prime-order group `𝔾 = ⟨g⟩` of order `q` (any [`PrimeOrderGroup`]):
//!
//! ```text
//! Setup:            s ← Z_q,  msk = s,  mpk = h = g^s
//! Encrypt(mpk, x):  r ← Z_q,  cmt = g^r,  ct = h^r · g^x
//! KeyDer(msk, cmt, Δ, y), with cmt^s = h^r:
//!     +  : sk = cmt^s · g^{-y}        Decrypt: ct / sk          = g^{x + y}
//!     -  : sk = cmt^s · g^{y}         Decrypt: ct / sk          = g^{x - y}
//!     *  : sk = (cmt^s)^y             Decrypt: ct^y / sk        = g^{x · y}
//!     /  : sk = (cmt^s)^{y^{-1}}      Decrypt: ct^{y^{-1}} / sk = g^{x · y^{-1} mod q}
//! ```
//!
//! then the bounded discrete log. A key is bound to one commitment `cmt`, so it decrypts only
//! the ciphertext it was issued for. Division is defined only when `y | x`: then
//! `x · y^{-1} mod q` is the integer `x / y`; otherwise it is (with overwhelming probability) far
//! outside the bound and decryption fails with [`FeError::InexactDivision`]. It can never return
//! a wrong quotient: if `x·y^{-1} ≡ z (mod q)` with `|z| <= X`, then `x ≡ z·y` and both sides are
//! below `q/2` in absolute value, so `x = z·y`.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
//! use cryptonn::fe::febo::{Febo, FeboOp, FeboParams};
//! use cryptonn::fe::group::ristretto::Ristretto255;
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(1);
//! let febo = Febo::new(Ristretto255, FeboParams::new(1000, 100)?);
//! let (msk, mpk) = febo.setup(&mut rng);
//! let dlog = DlogSolver::new(
//!     Arc::new(BabyStepTable::new(Ristretto255, 1 << 10)?),
//!     febo.params().result_bound(),
//! )?;
//!
//! let ct = febo.encrypt(&mpk, -84, &mut rng)?;
//! for (op, y, want) in [(FeboOp::Add, 5, -79), (FeboOp::Sub, 5, -89), (FeboOp::Mul, -3, 252),
//!                       (FeboOp::Div, 7, -12)] {
//!     let key = febo.derive_key(&msk, ct.commitment(), op, y)?;
//!     assert_eq!(febo.vartime_decrypt(&ct, &key, &dlog)?, want);
//! }
//! // 84 is not divisible by 5: an error, never a wrong quotient.
//! let key = febo.derive_key(&msk, ct.commitment(), FeboOp::Div, 5)?;
//! assert!(febo.vartime_decrypt(&ct, &key, &dlog).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use rand_core::CryptoRngCore;
use zeroize::{Zeroize, Zeroizing};

use crate::fe::dlog::DlogSolver;
use crate::fe::error::{DlogError, FeError};
use crate::fe::group::PrimeOrderGroup;

/// The four FEBO operations `Δ ∈ {+, -, *, /}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeboOp {
    /// `x + y`.
    Add,
    /// `x - y`.
    Sub,
    /// `x · y`.
    Mul,
    /// `x / y`, defined only when `y` divides `x`.
    Div,
}

impl FeboOp {
    /// The byte written into serialised keys.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        match self {
            FeboOp::Add => 0,
            FeboOp::Sub => 1,
            FeboOp::Mul => 2,
            FeboOp::Div => 3,
        }
    }
    /// The operation for a serialised byte.
    #[must_use]
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(FeboOp::Add),
            1 => Some(FeboOp::Sub),
            2 => Some(FeboOp::Mul),
            3 => Some(FeboOp::Div),
            _ => None,
        }
    }
}

/// The public bounds of a FEBO instance: `|x| <= X` for plaintexts, `|y| <= Y` for operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeboParams {
    x_bound: u64,
    y_bound: u64,
}

impl FeboParams {
    /// Bounds `|x| <= x_bound`, `|y| <= y_bound`.
    ///
    /// # Errors
    /// [`FeError::InvalidParameters`] if a bound is 0 or `X·Y` (or `X+Y`) exceeds `2^62`.
    pub fn new(x_bound: u64, y_bound: u64) -> Result<Self, FeError> {
        if x_bound == 0 || y_bound == 0 {
            return Err(FeError::InvalidParameters("bounds X and Y must be >= 1"));
        }
        match x_bound.checked_mul(y_bound) {
            Some(v) if v <= 1 << 62 && x_bound + y_bound <= 1 << 62 => {
                Ok(Self { x_bound, y_bound })
            }
            _ => Err(FeError::InvalidParameters("X·Y must be <= 2^62")),
        }
    }
    /// The plaintext bound `X`.
    #[must_use]
    pub fn x_bound(&self) -> u64 {
        self.x_bound
    }
    /// The operand bound `Y`.
    #[must_use]
    pub fn y_bound(&self) -> u64 {
        self.y_bound
    }
    /// The largest `|result|` of any operation, `max(X + Y, X·Y)`: what a decryptor's
    /// [`DlogSolver`] must cover.
    #[must_use]
    pub fn result_bound(&self) -> u64 {
        (self.x_bound + self.y_bound).max(self.x_bound * self.y_bound)
    }
}

/// The FEBO master secret key `s`. Zeroized on drop; `Debug` prints only the type name.
pub struct FeboMasterSecretKey<G: PrimeOrderGroup> {
    s: G::Scalar,
}

impl<G: PrimeOrderGroup> Drop for FeboMasterSecretKey<G> {
    fn drop(&mut self) {
        self.s.zeroize();
    }
}

impl<G: PrimeOrderGroup> std::fmt::Debug for FeboMasterSecretKey<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeboMasterSecretKey { .. }")
    }
}

/// The FEBO public key `h = g^s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeboPublicKey<G: PrimeOrderGroup> {
    h: G::Element,
}

impl<G: PrimeOrderGroup> FeboPublicKey<G> {
    /// A public key from its element.
    #[must_use]
    pub fn from_element(h: G::Element) -> Self {
        Self { h }
    }
    /// `h = g^s`.
    #[must_use]
    pub fn element(&self) -> &G::Element {
        &self.h
    }
}

/// A FEBO ciphertext `(cmt = g^r, ct = h^r g^x)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeboCiphertext<G: PrimeOrderGroup> {
    cmt: G::Element,
    ct: G::Element,
}

impl<G: PrimeOrderGroup> FeboCiphertext<G> {
    /// A ciphertext from its parts.
    #[must_use]
    pub fn from_parts(cmt: G::Element, ct: G::Element) -> Self {
        Self { cmt, ct }
    }
    /// The commitment `cmt = g^r` (what a key is bound to).
    #[must_use]
    pub fn commitment(&self) -> &G::Element {
        &self.cmt
    }
    /// `ct = h^r g^x`.
    #[must_use]
    pub fn body(&self) -> &G::Element {
        &self.ct
    }
}

/// A ciphertext-bound FEBO function key: the operation, the public operand `y`, and the group
/// element `sk` (with its ciphertext it opens `x Δ y`). `Debug` shows the operation and
/// operand, never `sk`.
#[derive(Clone, PartialEq, Eq)]
pub struct FeboFunctionKey<G: PrimeOrderGroup> {
    op: FeboOp,
    y: i64,
    sk: G::Element,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for FeboFunctionKey<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeboFunctionKey")
            .field("op", &self.op)
            .field("y", &self.y)
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup> FeboFunctionKey<G> {
    /// A key from its parts (e.g. after deserialisation).
    #[must_use]
    pub fn from_parts(op: FeboOp, y: i64, sk: G::Element) -> Self {
        Self { op, y, sk }
    }
    /// The operation.
    #[must_use]
    pub fn op(&self) -> FeboOp {
        self.op
    }
    /// The operand `y`.
    #[must_use]
    pub fn operand(&self) -> i64 {
        self.y
    }
    /// The key element `sk`.
    #[must_use]
    pub fn element(&self) -> &G::Element {
        &self.sk
    }
}

/// A FEBO instance: a group and its bounds.
#[derive(Debug, Clone)]
pub struct Febo<G: PrimeOrderGroup> {
    group: G,
    params: FeboParams,
}

impl<G: PrimeOrderGroup> Febo<G> {
    /// A FEBO instance over `group`.
    #[must_use]
    pub fn new(group: G, params: FeboParams) -> Self {
        Self { group, params }
    }
    /// The group.
    #[must_use]
    pub fn group(&self) -> &G {
        &self.group
    }
    /// The bounds.
    #[must_use]
    pub fn params(&self) -> &FeboParams {
        &self.params
    }

    /// Setup: `s ← Z_q`, `h = g^s`.
    pub fn setup<R: CryptoRngCore + ?Sized>(
        &self,
        rng: &mut R,
    ) -> (FeboMasterSecretKey<G>, FeboPublicKey<G>) {
        let msk = self.setup_secret(rng);
        let pk = self.public_key_of(&msk);
        (msk, pk)
    }

    /// The secret half of [`setup`](Self::setup): the same draw from `rng`, no public key.
    pub fn setup_secret<R: CryptoRngCore + ?Sized>(&self, rng: &mut R) -> FeboMasterSecretKey<G> {
        FeboMasterSecretKey {
            s: self.group.random_scalar(rng),
        }
    }

    /// The public half of [`setup`](Self::setup): `h = g^s`.
    #[must_use]
    pub fn public_key_of(&self, msk: &FeboMasterSecretKey<G>) -> FeboPublicKey<G> {
        FeboPublicKey {
            h: self.group.exp_generator(&msk.s),
        }
    }

    /// Encrypt: `r ← Z_q`, `cmt = g^r`, `ct = h^r g^x`.
    ///
    /// # Errors
    /// [`FeError::PlaintextOutOfBound`] if `|x| > X`.
    pub fn encrypt<R: CryptoRngCore + ?Sized>(
        &self,
        mpk: &FeboPublicKey<G>,
        x: i64,
        rng: &mut R,
    ) -> Result<FeboCiphertext<G>, FeError> {
        if x.unsigned_abs() > self.params.x_bound {
            return Err(FeError::PlaintextOutOfBound {
                index: 0,
                value: x,
                bound: self.params.x_bound,
            });
        }
        let r = Zeroizing::new(self.group.random_scalar(rng));
        let cmt = self.group.exp_generator(&r);
        let ct = self.group.op(
            &self.group.exp(&mpk.h, &r),
            &self.group.exp_generator_i64(x, self.params.x_bound),
        );
        Ok(FeboCiphertext { cmt, ct })
    }

    /// Encrypts every value of `xs` under `mpk`, each with its own fresh `r`, and returns the
    /// ciphertexts in their canonical encoding `cmt ‖ ct` (`2 · element_len` bytes each, in
    /// order): one batch of fixed-base exponentiations of `(g, h)`
    /// ([`PrimeOrderGroup::exp_batch_encoded`]). Constant time in `r` and `x`.
    ///
    /// # Errors
    /// [`FeError::PlaintextOutOfBound`] if some `|x| > X` (nothing is encrypted then).
    pub fn encrypt_batch_encoded<R: CryptoRngCore + ?Sized>(
        &self,
        mpk: &FeboPublicKey<G>,
        xs: &[i64],
        rng: &mut R,
    ) -> Result<Vec<Vec<u8>>, FeError> {
        let bound = self.params.x_bound;
        if let Some((index, &value)) = xs
            .iter()
            .enumerate()
            .find(|(_, x)| x.unsigned_abs() > bound)
        {
            return Err(FeError::PlaintextOutOfBound {
                index,
                value,
                bound,
            });
        }
        let offsets: Zeroizing<Vec<Vec<i64>>> =
            Zeroizing::new(xs.iter().map(|&x| vec![0, x]).collect());
        let r: Zeroizing<Vec<G::Scalar>> = Zeroizing::new(
            (0..xs.len())
                .map(|_| self.group.random_scalar(rng))
                .collect(),
        );
        let bases = [self.group.generator(), mpk.h.clone()];
        Ok(self.group.exp_batch_encoded(&bases, &r, &offsets, bound))
    }

    /// KeyDer for operation `op` with operand `y`, bound to the commitment `cmt`.
    ///
    /// # Errors
    /// [`FeError::KeyOutOfBound`] if `|y| > Y`; [`FeError::DivisionByZero`] for `/` with `y = 0`.
    pub fn derive_key(
        &self,
        msk: &FeboMasterSecretKey<G>,
        cmt: &G::Element,
        op: FeboOp,
        y: i64,
    ) -> Result<FeboFunctionKey<G>, FeError> {
        if y.unsigned_abs() > self.params.y_bound {
            return Err(FeError::KeyOutOfBound {
                index: 0,
                value: y,
                bound: self.params.y_bound,
            });
        }
        let g = &self.group;
        let shared = g.exp(cmt, &msk.s); // cmt^s = h^r
        let sk = match op {
            FeboOp::Add => g.div(&shared, &g.vartime_exp_generator_i64(y)),
            FeboOp::Sub => g.op(&shared, &g.vartime_exp_generator_i64(y)),
            FeboOp::Mul => g.vartime_exp_i64(&shared, y),
            FeboOp::Div => {
                if y == 0 {
                    return Err(FeError::DivisionByZero);
                }
                let y_inv = g.scalar_invert(&g.scalar_from_i64(y))?;
                g.vartime_exp(&shared, &y_inv)
            }
        };
        Ok(FeboFunctionKey { op, y, sk })
    }

    /// `g^{x Δ y}` without the discrete log.
    ///
    /// # Errors
    /// [`FeError::KeyOutOfBound`] if the key's `|y| > Y`; [`FeError::DivisionByZero`].
    pub fn vartime_decrypt_element(
        &self,
        ct: &FeboCiphertext<G>,
        key: &FeboFunctionKey<G>,
    ) -> Result<G::Element, FeError> {
        let g = &self.group;
        let y = key.y;
        if y.unsigned_abs() > self.params.y_bound {
            return Err(FeError::KeyOutOfBound {
                index: 0,
                value: y,
                bound: self.params.y_bound,
            });
        }
        let num = match key.op {
            FeboOp::Add | FeboOp::Sub => ct.ct.clone(),
            FeboOp::Mul => g.vartime_exp_i64(&ct.ct, y),
            FeboOp::Div => {
                if y == 0 {
                    return Err(FeError::DivisionByZero);
                }
                let y_inv = g.scalar_invert(&g.scalar_from_i64(y))?;
                g.vartime_exp(&ct.ct, &y_inv)
            }
        };
        Ok(g.div(&num, &key.sk))
    }

    /// Decrypt: `x Δ y`.
    ///
    /// # Errors
    /// As [`vartime_decrypt_element`](Self::vartime_decrypt_element);
    /// [`FeError::InexactDivision`] for `/` when `y` does not divide `x`; [`FeError::Dlog`]
    /// when the result is outside the solver's bound (e.g. a key bound to another ciphertext).
    pub fn vartime_decrypt(
        &self,
        ct: &FeboCiphertext<G>,
        key: &FeboFunctionKey<G>,
        dlog: &DlogSolver<G>,
    ) -> Result<i64, FeError> {
        let e = self.vartime_decrypt_element(ct, key)?;
        match dlog.vartime_solve(&e) {
            Ok(z) => Ok(z),
            Err(DlogError::OutOfRange { .. }) if key.op == FeboOp::Div => {
                Err(FeError::InexactDivision)
            }
            Err(err) => Err(err.into()),
        }
    }
}
