//! Prime-order groups: the one abstraction FEIP, FEBO and the discrete-log solver are written over.
//!
//! A [`PrimeOrderGroup`] is a cyclic group `𝔾 = ⟨g⟩` of prime order `q`, written
//! multiplicatively as in the papers: `a · b` is [`op`](PrimeOrderGroup::op), `a^{-1}` is
//! [`invert`](PrimeOrderGroup::invert), `g^s` is [`exp`](PrimeOrderGroup::exp). Scalars are
//! integers modulo `q`. The decisional Diffie–Hellman assumption in `𝔾` is what FEIP and FEBO rest
//! on.
//!
//! Group values are *instances* (`&self` methods), because a backend may be parameterised (the
//! Z_p* backend carries its prime). Backends:
//!
//! | backend | type | security | notes |
//! |---|---|---|---|
//! | Ristretto255 | [`ristretto::Ristretto255`] | ~126 bits | default, fast (curve25519-dalek) |
//! | RFC 3526 MODP 2048 | [`modp::ModpGroup::rfc3526_2048`] | ~112 bits | paper-faithful |
//! | RFC 3526 MODP 3072 | [`modp::ModpGroup::rfc3526_3072`] | ~128 bits | paper-faithful |
//!
//! # Timing
//! Functions without a `vartime_` prefix run in time independent of their secret inputs (see
//! each backend's module docs for what that covers in each build: for the Z_p* backend with
//! the `gmp` feature only exponentiation, through `mpz_powm_sec`). `vartime_` functions leak
//! their exponents through timing and must only see public values — in this crate: key
//! vectors `y`, function keys held by the decryptor, and ciphertexts.
//!
//! # Encodings
//! Elements and scalars have canonical fixed-length byte encodings;
//! [`element_from_bytes`](PrimeOrderGroup::element_from_bytes) and
//! [`scalar_from_bytes`](PrimeOrderGroup::scalar_from_bytes) accept only canonical encodings of
//! valid values.

use std::fmt::Debug;

use rand_core::CryptoRngCore;
use zeroize::Zeroize;

use crate::fe::error::GroupError;

pub mod modp;
pub mod multiexp;
pub mod ristretto;

pub use multiexp::{VartimeManyUseBase, VartimeWnafMultiExp};

/// The minimum security level, in bits, that non-test constructors accept.
pub const MIN_SECURITY_BITS: u32 = 112;

/// A stable one-byte identifier of a group, written into serialised keys and ciphertexts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GroupId {
    /// Ristretto255.
    Ristretto255,
    /// The RFC 3526 2048-bit MODP group (Schnorr subgroup of quadratic residues).
    Modp2048,
    /// The RFC 3526 3072-bit MODP group (Schnorr subgroup of quadratic residues).
    Modp3072,
    /// An insecure small Z_p* group, for tests only.
    ModpInsecureTest,
}

impl GroupId {
    /// The byte written into serialised objects.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        match self {
            GroupId::Ristretto255 => 1,
            GroupId::Modp2048 => 2,
            GroupId::Modp3072 => 3,
            GroupId::ModpInsecureTest => 0xF0,
        }
    }
}

/// The types of a group: its scalars and its elements (the base of [`PrimeOrderGroup`] and of
/// the capability traits in [`multiexp`]).
pub trait GroupTypes {
    /// An integer modulo the group order `q`.
    type Scalar: Clone + Debug + PartialEq + Eq + Send + Sync + Zeroize;
    /// A group element.
    type Element: Clone + Debug + PartialEq + Eq + Send + Sync;
}

/// A cyclic group of prime order `q` with generator `g`, written multiplicatively.
///
/// Implementations must make every method total: no method panics on any input that has the
/// declared type. Decoding functions return [`GroupError`] for invalid bytes.
///
/// Every group also has the variable-time capabilities of [`multiexp`]
/// ([`VartimeWnafMultiExp`], [`VartimeManyUseBase`]), implemented by each backend, so that
/// generic code uses them without asking which group it runs on.
pub trait PrimeOrderGroup:
    GroupTypes
    + VartimeWnafMultiExp
    + VartimeManyUseBase
    + Clone
    + Debug
    + PartialEq
    + Eq
    + Send
    + Sync
    + 'static
{
    /// A constant-time fixed-base table for one element: costly to build, then
    /// [`exp_precomputed`](Self::exp_precomputed) is several times faster than
    /// [`exp`](Self::exp). Meant for long-lived public bases (the `h_i` of a public key).
    type PrecomputedBase: Send + Sync;
    /// A variable-time fixed-base table for one element: cheap to build, then
    /// [`vartime_exp_precomputed`](Self::vartime_exp_precomputed) is faster than
    /// [`vartime_exp`](Self::vartime_exp). Meant for a public element used with a handful of
    /// full-width exponents (a ciphertext's `ct0` meeting several function keys).
    type VartimePrecomputedBase: Send + Sync;

    /// The group's identifier, as written into serialised objects.
    fn id(&self) -> GroupId;
    /// Estimated classical security in bits.
    fn security_bits(&self) -> u32;
    /// Length in bytes of the canonical element encoding.
    fn element_len(&self) -> usize;
    /// Length in bytes of the canonical scalar encoding.
    fn scalar_len(&self) -> usize;

    /// The neutral element `1`.
    #[must_use]
    fn identity(&self) -> Self::Element;
    /// The generator `g`.
    #[must_use]
    fn generator(&self) -> Self::Element;
    /// The group law `a · b`.
    #[must_use]
    fn op(&self, a: &Self::Element, b: &Self::Element) -> Self::Element;
    /// The inverse `a^{-1}`.
    #[must_use]
    fn invert(&self, a: &Self::Element) -> Self::Element;
    /// `a · b^{-1}`.
    #[must_use]
    fn div(&self, a: &Self::Element, b: &Self::Element) -> Self::Element {
        self.op(a, &self.invert(b))
    }
    /// `a ← a · b`, in place (the same result as [`op`](Self::op); backends with large elements
    /// override it to avoid moving them).
    fn op_assign(&self, a: &mut Self::Element, b: &Self::Element) {
        *a = self.op(a, b);
    }
    /// `a ← a · b^{-1}`, in place (the same result as [`div`](Self::div)).
    fn div_assign(&self, a: &mut Self::Element, b: &Self::Element) {
        *a = self.div(a, b);
    }

    /// `base^e`, in time independent of `e`.
    #[must_use]
    fn exp(&self, base: &Self::Element, e: &Self::Scalar) -> Self::Element;
    /// `g^e` through a precomputed generator table, in time independent of `e`.
    #[must_use]
    fn exp_generator(&self, e: &Self::Scalar) -> Self::Element;
    /// `g^x` for a small signed `x` with `|x| <= bound`, in time that depends only on the public
    /// `bound` (not on `x`). Used to encode plaintexts. If `|x|` exceeds `bound` the result is
    /// still correct but the timing reveals it.
    #[must_use]
    fn exp_generator_i64(&self, x: i64, bound: u64) -> Self::Element;
    /// Builds a constant-time fixed-base table for `base`.
    #[must_use]
    fn precompute_base(&self, base: &Self::Element) -> Self::PrecomputedBase;
    /// `base^e` with a table from [`precompute_base`](Self::precompute_base), in time
    /// independent of `e`.
    #[must_use]
    fn exp_precomputed(&self, table: &Self::PrecomputedBase, e: &Self::Scalar) -> Self::Element;

    /// `base^e` in variable time, for a full-width public exponent.
    #[must_use]
    fn vartime_exp(&self, base: &Self::Element, e: &Self::Scalar) -> Self::Element;
    /// Builds a variable-time fixed-base table for the public element `base`.
    #[must_use]
    fn vartime_precompute_base(&self, base: &Self::Element) -> Self::VartimePrecomputedBase;
    /// `base^e` in variable time with a table from
    /// [`vartime_precompute_base`](Self::vartime_precompute_base).
    #[must_use]
    fn vartime_exp_precomputed(
        &self,
        table: &Self::VartimePrecomputedBase,
        e: &Self::Scalar,
    ) -> Self::Element;
    /// `base^e` for a small signed public exponent, in time that grows with `|e|`'s bit length.
    #[must_use]
    fn vartime_exp_i64(&self, base: &Self::Element, e: i64) -> Self::Element {
        self.vartime_multi_exp_i64([(base, e)])
    }
    /// `g^e` for a small signed public exponent.
    #[must_use]
    fn vartime_exp_generator_i64(&self, e: i64) -> Self::Element {
        self.vartime_exp_i64(&self.generator(), e)
    }
    /// `∏ b_i^{e_i}` for small signed public exponents: cost grows with the bit length of the
    /// largest `|e_i|`, not with the width of `q`. Zero exponents are skipped.
    #[must_use]
    fn vartime_multi_exp_i64<'a, I>(&self, terms: I) -> Self::Element
    where
        I: IntoIterator<Item = (&'a Self::Element, i64)>,
        Self::Element: 'a;

    /// A uniformly random scalar.
    #[must_use]
    fn random_scalar<R: CryptoRngCore + ?Sized>(&self, rng: &mut R) -> Self::Scalar;
    /// The scalar `v mod q` (negative `v` maps to `q - |v|`).
    #[must_use]
    fn scalar_from_i64(&self, v: i64) -> Self::Scalar;
    /// `a + b mod q`.
    #[must_use]
    fn scalar_add(&self, a: &Self::Scalar, b: &Self::Scalar) -> Self::Scalar;
    /// `a - b mod q`.
    #[must_use]
    fn scalar_sub(&self, a: &Self::Scalar, b: &Self::Scalar) -> Self::Scalar {
        self.scalar_add(a, &self.scalar_neg(b))
    }
    /// `a · b mod q`.
    #[must_use]
    fn scalar_mul(&self, a: &Self::Scalar, b: &Self::Scalar) -> Self::Scalar;
    /// `-a mod q`.
    #[must_use]
    fn scalar_neg(&self, a: &Self::Scalar) -> Self::Scalar;
    /// `a^{-1} mod q`.
    ///
    /// # Errors
    /// [`GroupError::NotInvertible`] for `a = 0`.
    fn scalar_invert(&self, a: &Self::Scalar) -> Result<Self::Scalar, GroupError>;
    /// `Σ y_i · s_i mod q` for small signed public `y_i` and secret `s_i`.
    #[must_use]
    fn scalar_inner_product_i64<'a, I>(&self, terms: I) -> Self::Scalar
    where
        I: IntoIterator<Item = (&'a Self::Scalar, i64)>,
        Self::Scalar: 'a,
    {
        let mut acc = self.scalar_from_i64(0);
        for (s, y) in terms {
            let prod = self.scalar_mul(s, &self.scalar_from_i64(y));
            acc = self.scalar_add(&acc, &prod);
        }
        acc
    }

    /// The canonical encoding of `e` ([`element_len`](Self::element_len) bytes).
    #[must_use]
    fn element_to_bytes(&self, e: &Self::Element) -> Vec<u8>;
    /// Decodes a canonical element encoding.
    ///
    /// # Errors
    /// [`GroupError::InvalidLength`] or [`GroupError::InvalidElement`].
    fn element_from_bytes(&self, bytes: &[u8]) -> Result<Self::Element, GroupError>;
    /// The canonical encoding of `s` ([`scalar_len`](Self::scalar_len) bytes).
    #[must_use]
    fn scalar_to_bytes(&self, s: &Self::Scalar) -> Vec<u8>;
    /// Decodes a canonical scalar encoding (an integer in `[0, q)`).
    ///
    /// # Errors
    /// [`GroupError::InvalidLength`] or [`GroupError::NonCanonicalScalar`].
    fn scalar_from_bytes(&self, bytes: &[u8]) -> Result<Self::Scalar, GroupError>;

    /// A batch of fixed-base exponentiations, encoded: for public bases `b_0 … b_{n−1}`,
    /// secret exponents `e_0 … e_{m−1}` and small secret offsets `x_{j,i}` with
    /// `|x_{j,i}| <= bound`, returns for every exponent `e_j` the canonical encodings of
    /// `b_0^{e_j} · g^{x_{j,0}}, …, b_{n−1}^{e_j} · g^{x_{j,n−1}}` concatenated
    /// (`n · element_len` bytes). A missing offset (a row of `offsets` shorter than `n`, or
    /// fewer rows than exponents) counts as 0; extra ones are ignored.
    ///
    /// Its time depends on `n`, `m` and `bound`, never on the exponents or the offsets. It
    /// serves encryption under one public key of a batch of vectors (FEIP with `b = (g, h_i)`,
    /// FEBO with `b = (g, h)`): a backend may build short-lived fixed-base tables of the bases,
    /// amortised over the batch, and encode all results together. The default is one
    /// [`exp`](Self::exp), one [`exp_generator_i64`](Self::exp_generator_i64) and one
    /// [`element_to_bytes`](Self::element_to_bytes) per entry, the exponents in parallel.
    #[must_use]
    fn exp_batch_encoded(
        &self,
        bases: &[Self::Element],
        exps: &[Self::Scalar],
        offsets: &[Vec<i64>],
        bound: u64,
    ) -> Vec<Vec<u8>> {
        use rayon::prelude::*;
        exps.par_iter()
            .enumerate()
            .map(|(j, e)| {
                let row = offsets.get(j).map_or(&[][..], Vec::as_slice);
                let mut out = Vec::with_capacity(bases.len() * self.element_len());
                for (i, b) in bases.iter().enumerate() {
                    let x = row.get(i).copied().unwrap_or(0);
                    let v = self.op(&self.exp(b, e), &self.exp_generator_i64(x, bound));
                    out.extend_from_slice(&self.element_to_bytes(&v));
                }
                out
            })
            .collect()
    }

    /// 64-bit fingerprints of many elements at once, for the discrete-log lookup.
    ///
    /// The fingerprint is a function of the element only (not of its internal representation),
    /// computed from a canonical normal form; normalising many elements together lets a backend
    /// share the expensive step (one batched field inversion for Ristretto). Fingerprints may
    /// collide: the discrete-log solver verifies every hit.
    #[must_use]
    fn vartime_fingerprints(&self, elements: &[Self::Element]) -> Vec<u64>;
}

/// A group with exactly one instance, which can therefore be recreated from nothing: lets keys
/// and ciphertexts over it implement serde's `Serialize`/`Deserialize` directly (see
/// [`crate::fe::serialize`]). Parameterised groups use the explicit
/// [`WireFormat`](crate::fe::serialize::WireFormat) methods instead.
pub trait StaticGroup: PrimeOrderGroup {
    /// The group.
    fn instance() -> Self;
}
