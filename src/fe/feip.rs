//! FEIP: inner-product functional encryption from DDH (Abdalla, Bourse, De Caro, Pointcheval,
//! PKC 2015), with signed bounded inputs.
//!
//! In a prime-order group `𝔾 = ⟨g⟩` of order `q` (any [`PrimeOrderGroup`]):
//!
//! ```text
//! Setup(n):          s ← Z_q^n,  msk = s,  mpk = (h_i = g^{s_i})_{i<n}
//! Encrypt(mpk, x):   r ← Z_q,    ct0 = g^r,  ct_i = h_i^r · g^{x_i}
//! KeyDer(msk, y):    sk_y = <y, s> mod q
//! Decrypt(ct, sk_y, y):
//!                    ∏ ct_i^{y_i} / ct0^{sk_y} = g^{r<s,y> + <x,y>} / g^{r<s,y>} = g^{<x,y>}
//!                    then <x,y> = dlog_g(·), found by the bounded solver of [`crate::fe::dlog`].
//! ```
//!
//! Inputs are signed integers with declared bounds `|x_i| <= X` (checked by
//! [`Feip::encrypt`]) and `|y_i| <= Y` (checked by [`Feip::derive_key`] and at decryption), so
//! `|<x,y>| <= n·X·Y` and the discrete log is bounded.
//!
//! # Security and timing
//! The scheme is selectively IND-CPA secure under DDH in `𝔾`; a function key `sk_y` reveals
//! `<x, y>` and nothing else about `x`. Setup, encryption and key derivation handle secrets
//! (`s`, `r`, `x`) in constant time. Decryption (`vartime_*`) touches only public values — the
//! ciphertext, the key vector `y`, the function key, and the result it is meant to reveal — and
//! runs in variable time for speed:
//! - `∏ ct_i^{y_i}` is a small-exponent multi-exponentiation whose cost follows the bit length
//!   of `y`, not of `q`;
//! - when one ciphertext meets many keys, [`Feip::prepare_ciphertext`] builds a fixed-base table
//!   for `ct0` once, and [`Feip::vartime_decrypt_many`] solves all discrete logs in one batch.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
//! use cryptonn::fe::feip::{Feip, FeipParams};
//! use cryptonn::fe::group::ristretto::Ristretto255;
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(7);
//! let feip = Feip::new(Ristretto255, FeipParams::new(4, 255, 127)?);
//! let (msk, mpk) = feip.setup(&mut rng);
//!
//! let x = [12, -255, 0, 77];
//! let ct = feip.encrypt(&mpk, &x, &mut rng)?;
//! let y = [3, 1, -127, 2];
//! let key = feip.derive_key(&msk, &y)?;
//!
//! // The decryptor's bounded discrete log: a table shared by all decryptions.
//! let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 10)?);
//! let dlog = DlogSolver::new(table, feip.params().inner_product_bound())?;
//! assert_eq!(feip.vartime_decrypt(&ct, &key, &y, &dlog)?, 12 * 3 - 255 + 77 * 2);
//!
//! // Out-of-bound inputs are refused with typed errors.
//! assert!(feip.encrypt(&mpk, &[256, 0, 0, 0], &mut rng).is_err());
//! assert!(feip.derive_key(&msk, &[0, 0, 128, 0]).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use rand_core::CryptoRngCore;
use rayon::prelude::*;
use zeroize::{Zeroize, Zeroizing};

use crate::fe::dlog::DlogSolver;
use crate::fe::error::FeError;
use crate::fe::group::PrimeOrderGroup;

/// Largest supported vector length.
pub const MAX_DIMENSION: usize = 1 << 24;

/// Vectors at least this long are encrypted in parallel.
const PARALLEL_ENCRYPT_MIN: usize = 64;

/// The public parameters of a FEIP instance: the length `n` and the bounds `X`, `Y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeipParams {
    n: usize,
    x_bound: u64,
    y_bound: u64,
}

impl FeipParams {
    /// Parameters for vectors of length `n` with `|x_i| <= x_bound`, `|y_i| <= y_bound`.
    ///
    /// # Errors
    /// [`FeError::InvalidParameters`] if `n` is 0 or above [`MAX_DIMENSION`], a bound is 0, or
    /// `n·X·Y` exceeds `2^62` (the decrypted inner product must fit an `i64` comfortably).
    pub fn new(n: usize, x_bound: u64, y_bound: u64) -> Result<Self, FeError> {
        if n == 0 || n > MAX_DIMENSION {
            return Err(FeError::InvalidParameters("n must be in 1..=2^24"));
        }
        if x_bound == 0 || y_bound == 0 {
            return Err(FeError::InvalidParameters("bounds X and Y must be >= 1"));
        }
        match (n as u64)
            .checked_mul(x_bound)
            .and_then(|v| v.checked_mul(y_bound))
        {
            Some(v) if v <= 1 << 62 => Ok(Self {
                n,
                x_bound,
                y_bound,
            }),
            _ => Err(FeError::InvalidParameters("n·X·Y must be <= 2^62")),
        }
    }

    /// The vector length `n`.
    #[must_use]
    pub fn n(&self) -> usize {
        self.n
    }
    /// The plaintext bound `X`.
    #[must_use]
    pub fn x_bound(&self) -> u64 {
        self.x_bound
    }
    /// The key-vector bound `Y`.
    #[must_use]
    pub fn y_bound(&self) -> u64 {
        self.y_bound
    }
    /// `n·X·Y`, the largest `|<x, y>|`: the bound a decryptor's [`DlogSolver`] must cover.
    #[must_use]
    pub fn inner_product_bound(&self) -> u64 {
        self.n as u64 * self.x_bound * self.y_bound
    }
    /// `k·X·Y`: the largest `|<x, y>|` when `y` has at most `k` non-zero entries.
    #[must_use]
    pub fn sparse_inner_product_bound(&self, k: usize) -> u64 {
        (k.min(self.n) as u64) * self.x_bound * self.y_bound
    }
}

/// The master secret key `s ∈ Z_q^n`. Zeroized on drop; `Debug` prints only the type name.
pub struct MasterSecretKey<G: PrimeOrderGroup> {
    s: Vec<G::Scalar>,
}

impl<G: PrimeOrderGroup> MasterSecretKey<G> {
    /// The dimension `n`.
    #[must_use]
    pub fn len(&self) -> usize {
        self.s.len()
    }
    /// Always false (a key has `n >= 1` entries).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.s.is_empty()
    }
}

impl<G: PrimeOrderGroup> Drop for MasterSecretKey<G> {
    fn drop(&mut self) {
        for s in self.s.iter_mut() {
            s.zeroize();
        }
    }
}

impl<G: PrimeOrderGroup> std::fmt::Debug for MasterSecretKey<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecretKey { .. }")
    }
}

/// The master public key `(h_i = g^{s_i})_{i<n}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterPublicKey<G: PrimeOrderGroup> {
    h: Vec<G::Element>,
}

impl<G: PrimeOrderGroup> MasterPublicKey<G> {
    /// A public key from its elements (e.g. after deserialisation).
    #[must_use]
    pub fn from_elements(h: Vec<G::Element>) -> Self {
        Self { h }
    }
    /// The elements `h_i`.
    #[must_use]
    pub fn elements(&self) -> &[G::Element] {
        &self.h
    }
    /// The dimension `n`.
    #[must_use]
    pub fn len(&self) -> usize {
        self.h.len()
    }
    /// True if the key has no elements.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }
}

/// A public key with a constant-time fixed-base table per `h_i`, for fast repeated encryption.
pub struct PreparedPublicKey<G: PrimeOrderGroup> {
    tables: Vec<G::PrecomputedBase>,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for PreparedPublicKey<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedPublicKey")
            .field("n", &self.tables.len())
            .finish()
    }
}

/// A FEIP ciphertext `(ct0 = g^r, (ct_i = h_i^r g^{x_i})_{i<n})`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphertext<G: PrimeOrderGroup> {
    ct0: G::Element,
    ct: Vec<G::Element>,
}

impl<G: PrimeOrderGroup> Ciphertext<G> {
    /// A ciphertext from its parts (e.g. after deserialisation or a homomorphic operation).
    #[must_use]
    pub fn from_parts(ct0: G::Element, ct: Vec<G::Element>) -> Self {
        Self { ct0, ct }
    }
    /// `ct0 = g^r`.
    #[must_use]
    pub fn ct0(&self) -> &G::Element {
        &self.ct0
    }
    /// The components `ct_i = h_i^r g^{x_i}`.
    #[must_use]
    pub fn components(&self) -> &[G::Element] {
        &self.ct
    }
    /// The dimension `n`.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ct.len()
    }
    /// True if the ciphertext has no components.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ct.is_empty()
    }
}

/// A ciphertext with a variable-time fixed-base table for `ct0`, for decrypting it under many
/// function keys (built by [`Feip::prepare_ciphertext`]).
pub struct PreparedCiphertext<'a, G: PrimeOrderGroup> {
    ct: &'a Ciphertext<G>,
    ct0_table: G::VartimePrecomputedBase,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for PreparedCiphertext<'_, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCiphertext")
            .field("ct", self.ct)
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup> PreparedCiphertext<'_, G> {
    /// The underlying ciphertext.
    #[must_use]
    pub fn ciphertext(&self) -> &Ciphertext<G> {
        self.ct
    }
}

/// A function key `sk_y = <y, s> mod q` (the key vector `y` itself is public and kept by the
/// caller). Zeroized on drop; `Debug` prints only the type name.
#[derive(Clone, PartialEq, Eq)]
pub struct FunctionKey<G: PrimeOrderGroup> {
    sk: G::Scalar,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for FunctionKey<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FunctionKey { .. }")
    }
}

impl<G: PrimeOrderGroup> Drop for FunctionKey<G> {
    fn drop(&mut self) {
        self.sk.zeroize();
    }
}

impl<G: PrimeOrderGroup> FunctionKey<G> {
    /// A function key from its scalar (e.g. after deserialisation).
    #[must_use]
    pub fn from_scalar(sk: G::Scalar) -> Self {
        Self { sk }
    }
    /// The scalar `sk_y`.
    #[must_use]
    pub fn scalar(&self) -> &G::Scalar {
        &self.sk
    }
}

/// A FEIP instance: a group and the public parameters `(n, X, Y)`.
#[derive(Debug, Clone)]
pub struct Feip<G: PrimeOrderGroup> {
    group: G,
    params: FeipParams,
}

fn check_bound(v: &[i64], bound: u64, plaintext: bool) -> Result<(), FeError> {
    for (index, &value) in v.iter().enumerate() {
        if value.unsigned_abs() > bound {
            return Err(if plaintext {
                FeError::PlaintextOutOfBound {
                    index,
                    value,
                    bound,
                }
            } else {
                FeError::KeyOutOfBound {
                    index,
                    value,
                    bound,
                }
            });
        }
    }
    Ok(())
}

impl<G: PrimeOrderGroup> Feip<G> {
    /// A FEIP instance over `group` with parameters `params`.
    #[must_use]
    pub fn new(group: G, params: FeipParams) -> Self {
        Self { group, params }
    }

    /// The group.
    #[must_use]
    pub fn group(&self) -> &G {
        &self.group
    }

    /// The parameters `(n, X, Y)`.
    #[must_use]
    pub fn params(&self) -> &FeipParams {
        &self.params
    }

    fn check_len(&self, got: usize) -> Result<(), FeError> {
        if got != self.params.n {
            return Err(FeError::DimensionMismatch {
                expected: self.params.n,
                got,
            });
        }
        Ok(())
    }

    /// Checks a key vector: length `n` and `|y_i| <= Y`.
    fn check_key_vector(&self, y: &[i64]) -> Result<(), FeError> {
        self.check_len(y.len())?;
        check_bound(y, self.params.y_bound, false)
    }

    /// Checks sparse terms: strictly increasing indices `< n` and `|y_i| <= Y`.
    fn check_sparse(&self, terms: &[(usize, i64)]) -> Result<(), FeError> {
        let n = self.params.n;
        let mut prev: Option<usize> = None;
        for &(index, value) in terms {
            if index >= n || prev.is_some_and(|p| index <= p) {
                return Err(FeError::InvalidSparseIndex { index, n });
            }
            if value.unsigned_abs() > self.params.y_bound {
                return Err(FeError::KeyOutOfBound {
                    index,
                    value,
                    bound: self.params.y_bound,
                });
            }
            prev = Some(index);
        }
        Ok(())
    }

    /// Setup: `s ← Z_q^n`, `h_i = g^{s_i}`.
    pub fn setup<R: CryptoRngCore + ?Sized>(
        &self,
        rng: &mut R,
    ) -> (MasterSecretKey<G>, MasterPublicKey<G>) {
        let msk = self.setup_secret(rng);
        let mpk = self.public_key_of(&msk);
        (msk, mpk)
    }

    /// The secret half of [`setup`](Self::setup): the same `n` draws from `rng`, no public key.
    /// For an issuer that keeps only a seed and derives the key again when it needs it.
    pub fn setup_secret<R: CryptoRngCore + ?Sized>(&self, rng: &mut R) -> MasterSecretKey<G> {
        MasterSecretKey {
            s: (0..self.params.n)
                .map(|_| self.group.random_scalar(rng))
                .collect(),
        }
    }

    /// The public half of [`setup`](Self::setup): `h_i = g^{s_i}` (`n` constant-time fixed-base
    /// exponentiations, in parallel).
    #[must_use]
    pub fn public_key_of(&self, msk: &MasterSecretKey<G>) -> MasterPublicKey<G> {
        MasterPublicKey {
            h: msk
                .s
                .par_iter()
                .map(|si| self.group.exp_generator(si))
                .collect(),
        }
    }

    /// Builds constant-time fixed-base tables for every `h_i` (one-off cost, then
    /// [`encrypt_prepared`](Self::encrypt_prepared) is several times faster).
    ///
    /// # Errors
    /// [`FeError::DimensionMismatch`] if the key's length is not `n`.
    pub fn prepare_public_key(
        &self,
        mpk: &MasterPublicKey<G>,
    ) -> Result<PreparedPublicKey<G>, FeError> {
        self.check_len(mpk.len())?;
        let tables = mpk
            .h
            .par_iter()
            .map(|h| self.group.precompute_base(h))
            .collect();
        Ok(PreparedPublicKey { tables })
    }

    fn encrypt_with<F, R>(
        &self,
        x: &[i64],
        rng: &mut R,
        h_pow_r: F,
    ) -> Result<Ciphertext<G>, FeError>
    where
        F: Fn(usize, &G::Scalar) -> G::Element + Sync,
        R: CryptoRngCore + ?Sized,
    {
        self.check_len(x.len())?;
        check_bound(x, self.params.x_bound, true)?;
        let r = Zeroizing::new(self.group.random_scalar(rng));
        let ct0 = self.group.exp_generator(&r);
        let xb = self.params.x_bound;
        let component = |(i, &xi): (usize, &i64)| {
            self.group
                .op(&h_pow_r(i, &r), &self.group.exp_generator_i64(xi, xb))
        };
        let ct = if x.len() >= PARALLEL_ENCRYPT_MIN {
            x.par_iter().enumerate().map(component).collect()
        } else {
            x.iter().enumerate().map(component).collect()
        };
        Ok(Ciphertext { ct0, ct })
    }

    /// Encrypt: `r ← Z_q`, `ct0 = g^r`, `ct_i = h_i^r · g^{x_i}`.
    ///
    /// # Errors
    /// [`FeError::DimensionMismatch`] if `x` or `mpk` does not have length `n`;
    /// [`FeError::PlaintextOutOfBound`] if some `|x_i| > X`.
    pub fn encrypt<R: CryptoRngCore + ?Sized>(
        &self,
        mpk: &MasterPublicKey<G>,
        x: &[i64],
        rng: &mut R,
    ) -> Result<Ciphertext<G>, FeError> {
        self.check_len(mpk.len())?;
        self.encrypt_with(x, rng, |i, r| self.group.exp(&mpk.h[i], r))
    }

    /// [`encrypt`](Self::encrypt) with a prepared public key.
    ///
    /// # Errors
    /// As [`encrypt`](Self::encrypt).
    pub fn encrypt_prepared<R: CryptoRngCore + ?Sized>(
        &self,
        mpk: &PreparedPublicKey<G>,
        x: &[i64],
        rng: &mut R,
    ) -> Result<Ciphertext<G>, FeError> {
        self.check_len(mpk.tables.len())?;
        self.encrypt_with(x, rng, |i, r| self.group.exp_precomputed(&mpk.tables[i], r))
    }

    /// Encrypts every vector of `xs` under `mpk`, each with its own fresh `r`, and returns the
    /// ciphertexts in their canonical encoding `ct0 ‖ ct_0 ‖ … ‖ ct_{n−1}` (`(1 + n) ·
    /// element_len` bytes each, in the order of `xs`).
    ///
    /// The same ciphertexts as [`encrypt`](Self::encrypt) (in distribution), computed as one
    /// batch of fixed-base exponentiations of the public bases `(g, h_0, …, h_{n−1})` to the
    /// secret `r_j` ([`PrimeOrderGroup::exp_batch_encoded`]): a backend amortises short-lived
    /// tables of the bases over the batch, which pays from about ten vectors on (the data
    /// owner's shard of samples under the shard's own key). Constant time in `r` and `x`.
    ///
    /// # Errors
    /// [`FeError::DimensionMismatch`] if `mpk` or some vector does not have length `n`;
    /// [`FeError::PlaintextOutOfBound`] if some `|x_i| > X` (nothing is encrypted then).
    pub fn encrypt_batch_encoded<R: CryptoRngCore + ?Sized>(
        &self,
        mpk: &MasterPublicKey<G>,
        xs: &[Vec<i64>],
        rng: &mut R,
    ) -> Result<Vec<Vec<u8>>, FeError> {
        self.check_len(mpk.len())?;
        let mut offsets = Zeroizing::new(Vec::with_capacity(xs.len()));
        for x in xs {
            self.check_len(x.len())?;
            check_bound(x, self.params.x_bound, true)?;
            let mut row = Vec::with_capacity(1 + x.len());
            row.push(0);
            row.extend_from_slice(x);
            offsets.push(row);
        }
        let mut bases = Vec::with_capacity(1 + mpk.len());
        bases.push(self.group.generator());
        bases.extend_from_slice(&mpk.h);
        let r: Zeroizing<Vec<G::Scalar>> = Zeroizing::new(
            (0..xs.len())
                .map(|_| self.group.random_scalar(rng))
                .collect(),
        );
        Ok(self
            .group
            .exp_batch_encoded(&bases, &r, &offsets, self.params.x_bound))
    }

    /// KeyDer: `sk_y = <y, s> mod q`.
    ///
    /// # Errors
    /// [`FeError::DimensionMismatch`] if `y` does not have length `n`;
    /// [`FeError::KeyOutOfBound`] if some `|y_i| > Y`.
    pub fn derive_key(
        &self,
        msk: &MasterSecretKey<G>,
        y: &[i64],
    ) -> Result<FunctionKey<G>, FeError> {
        self.check_len(msk.len())?;
        self.check_key_vector(y)?;
        let sk = self
            .group
            .scalar_inner_product_i64(msk.s.iter().zip(y.iter().copied()));
        Ok(FunctionKey { sk })
    }

    /// KeyDer for a sparse key vector given as `(index, y_index)` pairs with strictly increasing
    /// indices (absent entries are zero).
    ///
    /// # Errors
    /// [`FeError::InvalidSparseIndex`] for an index `>= n` or out of order;
    /// [`FeError::KeyOutOfBound`] if some `|y_i| > Y`.
    pub fn derive_key_sparse(
        &self,
        msk: &MasterSecretKey<G>,
        terms: &[(usize, i64)],
    ) -> Result<FunctionKey<G>, FeError> {
        self.check_len(msk.len())?;
        self.check_sparse(terms)?;
        let sk = self
            .group
            .scalar_inner_product_i64(terms.iter().map(|&(i, y)| (&msk.s[i], y)));
        Ok(FunctionKey { sk })
    }

    /// `g^{<x, y>} = ∏ ct_i^{y_i} / ct0^{sk_y}` without the discrete log (for callers that
    /// batch many discrete logs themselves).
    ///
    /// # Errors
    /// [`FeError::DimensionMismatch`], [`FeError::KeyOutOfBound`].
    pub fn vartime_decrypt_element(
        &self,
        ct: &Ciphertext<G>,
        key: &FunctionKey<G>,
        y: &[i64],
    ) -> Result<G::Element, FeError> {
        self.check_len(ct.len())?;
        self.check_key_vector(y)?;
        let num = self
            .group
            .vartime_multi_exp_i64(ct.ct.iter().zip(y.iter().copied()));
        // num · ct0^{−sk}: the negated key costs nothing, an inversion (Z_p*) ~100 products.
        let neg_sk = Zeroizing::new(self.group.scalar_neg(&key.sk));
        Ok(self
            .group
            .op(&num, &self.group.vartime_exp(&ct.ct0, &neg_sk)))
    }

    /// Decrypt: `<x, y>` from `ct`, `sk_y` and `y`.
    ///
    /// # Errors
    /// [`FeError::DimensionMismatch`], [`FeError::KeyOutOfBound`]; [`FeError::Dlog`] if the
    /// result is outside the solver's bound (e.g. a key that does not match `y`).
    pub fn vartime_decrypt(
        &self,
        ct: &Ciphertext<G>,
        key: &FunctionKey<G>,
        y: &[i64],
        dlog: &DlogSolver<G>,
    ) -> Result<i64, FeError> {
        let e = self.vartime_decrypt_element(ct, key, y)?;
        Ok(dlog.vartime_solve(&e)?)
    }

    /// `g^{<x, y>}` for a sparse key vector (see [`derive_key_sparse`](Self::derive_key_sparse)):
    /// the multi-exponentiation touches only the listed components.
    ///
    /// # Errors
    /// [`FeError::DimensionMismatch`], [`FeError::InvalidSparseIndex`],
    /// [`FeError::KeyOutOfBound`].
    pub fn vartime_decrypt_sparse_element(
        &self,
        ct: &Ciphertext<G>,
        key: &FunctionKey<G>,
        terms: &[(usize, i64)],
    ) -> Result<G::Element, FeError> {
        self.check_len(ct.len())?;
        self.check_sparse(terms)?;
        let num = self
            .group
            .vartime_multi_exp_i64(terms.iter().map(|&(i, y)| (&ct.ct[i], y)));
        // num · ct0^{−sk}: the negated key costs nothing, an inversion (Z_p*) ~100 products.
        let neg_sk = Zeroizing::new(self.group.scalar_neg(&key.sk));
        Ok(self
            .group
            .op(&num, &self.group.vartime_exp(&ct.ct0, &neg_sk)))
    }

    /// Decrypt for a sparse key vector.
    ///
    /// # Errors
    /// As [`vartime_decrypt_sparse_element`](Self::vartime_decrypt_sparse_element), plus
    /// [`FeError::Dlog`].
    pub fn vartime_decrypt_sparse(
        &self,
        ct: &Ciphertext<G>,
        key: &FunctionKey<G>,
        terms: &[(usize, i64)],
        dlog: &DlogSolver<G>,
    ) -> Result<i64, FeError> {
        let e = self.vartime_decrypt_sparse_element(ct, key, terms)?;
        Ok(dlog.vartime_solve(&e)?)
    }

    /// Builds the per-ciphertext precomputation (a fixed-base table for `ct0`) reused by every
    /// key that meets this ciphertext.
    ///
    /// # Errors
    /// [`FeError::DimensionMismatch`] if the ciphertext does not have length `n`.
    pub fn prepare_ciphertext<'a>(
        &self,
        ct: &'a Ciphertext<G>,
    ) -> Result<PreparedCiphertext<'a, G>, FeError> {
        self.check_len(ct.len())?;
        Ok(PreparedCiphertext {
            ct,
            ct0_table: self.group.vartime_precompute_base(&ct.ct0),
        })
    }

    /// `g^{<x, y>}` from a prepared ciphertext, for a dense (`len = n`) or sparse key vector.
    ///
    /// # Errors
    /// As [`vartime_decrypt_element`](Self::vartime_decrypt_element) /
    /// [`vartime_decrypt_sparse_element`](Self::vartime_decrypt_sparse_element).
    pub fn vartime_decrypt_prepared_element(
        &self,
        prepared: &PreparedCiphertext<'_, G>,
        key: &FunctionKey<G>,
        y: KeyVector<'_>,
    ) -> Result<G::Element, FeError> {
        let ct = prepared.ct;
        let num = match y {
            KeyVector::Dense(y) => {
                self.check_key_vector(y)?;
                self.group
                    .vartime_multi_exp_i64(ct.ct.iter().zip(y.iter().copied()))
            }
            KeyVector::Sparse(terms) => {
                self.check_sparse(terms)?;
                self.group
                    .vartime_multi_exp_i64(terms.iter().map(|&(i, y)| (&ct.ct[i], y)))
            }
        };
        let neg_sk = Zeroizing::new(self.group.scalar_neg(&key.sk));
        let den_inv = self
            .group
            .vartime_exp_precomputed(&prepared.ct0_table, &neg_sk);
        Ok(self.group.op(&num, &den_inv))
    }

    /// Decrypts one prepared ciphertext under many keys (in parallel with rayon for `n >= 256`), solving all
    /// discrete logs in one batch. The `i`-th result belongs to `keys[i]`.
    #[must_use]
    pub fn vartime_decrypt_many(
        &self,
        prepared: &PreparedCiphertext<'_, G>,
        keys: &[(&FunctionKey<G>, KeyVector<'_>)],
        dlog: &DlogSolver<G>,
    ) -> Vec<Result<i64, FeError>> {
        let one = |(k, y): &(&FunctionKey<G>, KeyVector<'_>)| {
            self.vartime_decrypt_prepared_element(prepared, k, *y)
        };
        // Parallelism pays only for long vectors; short ones stay on the calling thread.
        let elems: Vec<Result<G::Element, FeError>> = if self.params.n >= PARALLEL_ENCRYPT_MIN * 4 {
            keys.par_iter().map(one).collect()
        } else {
            keys.iter().map(one).collect()
        };
        let ok: Vec<G::Element> = elems
            .iter()
            .filter_map(|e| e.as_ref().ok().cloned())
            .collect();
        let mut solved = dlog.vartime_solve_batch(&ok).into_iter();
        elems
            .into_iter()
            .map(|e| match e {
                Ok(_) => match solved.next() {
                    Some(r) => r.map_err(FeError::from),
                    None => Err(FeError::InvalidParameters("internal: batch size mismatch")),
                },
                Err(err) => Err(err),
            })
            .collect()
    }
}

/// Homomorphic aggregation of ciphertext components.
///
/// For index sets `S_0, …, S_{m-1} ⊆ [0, n)`, the product `∏_{i∈S_v} ct_i = (∏ h_i)^r · g^{Σ x_i}`
/// is a component of a valid ciphertext of `x'_v = Σ_{i∈S_v} x_i` under the *aggregated* master
/// key `s'_v = Σ_{i∈S_v} s_i` (public key `h'_v = ∏_{i∈S_v} h_i`), with the same `ct0`. So a server
/// can, e.g., multiply 4 neighbouring pixels' components (a fused 2×2 sum-pooling) and decrypt
/// `<x', y'>` with a key the authority derives from the aggregated master key — which equals the
/// ordinary key for the expanded vector `y_i = Σ_{v : i ∈ S_v} y'_v`.
impl<G: PrimeOrderGroup> Feip<G> {
    fn check_sets(&self, sets: &[Vec<usize>]) -> Result<usize, FeError> {
        if sets.is_empty() {
            return Err(FeError::InvalidParameters("no aggregation sets"));
        }
        let mut largest = 0;
        for set in sets {
            if set.is_empty() {
                return Err(FeError::InvalidParameters("empty aggregation set"));
            }
            if let Some(&index) = set.iter().find(|&&i| i >= self.params.n) {
                return Err(FeError::InvalidSparseIndex {
                    index,
                    n: self.params.n,
                });
            }
            largest = largest.max(set.len());
        }
        Ok(largest)
    }

    /// The FEIP instance of the aggregated scheme: `m = sets.len()` coordinates, plaintext
    /// bound `max|S_v| · X`, same `Y`.
    ///
    /// # Errors
    /// [`FeError::InvalidParameters`] for no or empty sets or too large bounds;
    /// [`FeError::InvalidSparseIndex`] for an index `>= n`.
    pub fn aggregated(&self, sets: &[Vec<usize>]) -> Result<Feip<G>, FeError> {
        let largest = self.check_sets(sets)? as u64;
        let x_bound = self
            .params
            .x_bound
            .checked_mul(largest)
            .ok_or(FeError::InvalidParameters("aggregated bound overflows"))?;
        Ok(Feip::new(
            self.group.clone(),
            FeipParams::new(sets.len(), x_bound, self.params.y_bound)?,
        ))
    }

    /// `(ct0, (∏_{i∈S_v} ct_i)_v)`: a ciphertext of the aggregated plaintext.
    ///
    /// # Errors
    /// As [`aggregated`](Self::aggregated), and [`FeError::DimensionMismatch`].
    pub fn aggregate_ciphertext(
        &self,
        ct: &Ciphertext<G>,
        sets: &[Vec<usize>],
    ) -> Result<Ciphertext<G>, FeError> {
        self.check_len(ct.len())?;
        self.check_sets(sets)?;
        let agg = sets
            .iter()
            .map(|set| {
                set.iter().fold(self.group.identity(), |acc, &i| {
                    self.group.op(&acc, &ct.ct[i])
                })
            })
            .collect();
        Ok(Ciphertext {
            ct0: ct.ct0.clone(),
            ct: agg,
        })
    }

    /// `(∏_{i∈S_v} h_i)_v`: the aggregated public key.
    ///
    /// # Errors
    /// As [`aggregate_ciphertext`](Self::aggregate_ciphertext).
    pub fn aggregate_public_key(
        &self,
        mpk: &MasterPublicKey<G>,
        sets: &[Vec<usize>],
    ) -> Result<MasterPublicKey<G>, FeError> {
        self.check_len(mpk.len())?;
        self.check_sets(sets)?;
        let h = sets
            .iter()
            .map(|set| {
                set.iter().fold(self.group.identity(), |acc, &i| {
                    self.group.op(&acc, &mpk.h[i])
                })
            })
            .collect();
        Ok(MasterPublicKey { h })
    }

    /// `(Σ_{i∈S_v} s_i)_v`: the aggregated master secret key (authority side).
    ///
    /// # Errors
    /// As [`aggregate_ciphertext`](Self::aggregate_ciphertext).
    pub fn aggregate_secret_key(
        &self,
        msk: &MasterSecretKey<G>,
        sets: &[Vec<usize>],
    ) -> Result<MasterSecretKey<G>, FeError> {
        self.check_len(msk.len())?;
        self.check_sets(sets)?;
        let s = sets
            .iter()
            .map(|set| {
                set.iter().fold(self.group.scalar_from_i64(0), |acc, &i| {
                    self.group.scalar_add(&acc, &msk.s[i])
                })
            })
            .collect();
        Ok(MasterSecretKey { s })
    }
}

/// A key vector `y`: dense (length `n`) or sparse (`(index, value)` pairs, strictly increasing
/// indices, absent entries zero).
#[derive(Debug, Clone, Copy)]
pub enum KeyVector<'a> {
    /// All `n` entries.
    Dense(&'a [i64]),
    /// Only the non-zero entries.
    Sparse(&'a [(usize, i64)]),
}
