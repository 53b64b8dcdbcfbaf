//! Variable-time multi-exponentiation kernels: capability traits and the group-independent
//! pieces (public values only).
//!
//! In the spirit of curve25519-dalek's `VartimeMultiscalarMul` /
//! `VartimePrecomputedMultiscalarMul` and zkcrypto's `WnafGroup`, each capability is a small
//! trait that every backend implements; [`PrimeOrderGroup`] requires them, so generic code
//! reaches them without naming a backend (and never asks which group it runs on).
//!
//! - [`Wnaf`]: width-5 non-adjacent form of a small exponent (digits odd in `[-15, 15]`, at
//!   most one non-zero digit in any 5 consecutive positions), stored inline (no allocation).
//!   [`recode`] recodes a list of `(base index, coefficient)` terms.
//! - [`VartimeWnafMultiExp`]: per base `B`, the odd powers `B, B^3, …, B^{15}`
//!   ([`vartime_odd_powers`](VartimeWnafMultiExp::vartime_odd_powers), 8 group operations),
//!   then `∏ B_k^{c_k}` by Straus's interleaving over the shared tables
//!   ([`vartime_multi_exp_wnaf`](VartimeWnafMultiExp::vartime_multi_exp_wnaf)): `bits(max|c|)`
//!   squarings plus about `bits/6` products per term. Accumulation is in place
//!   ([`PrimeOrderGroup::op_assign`]), so that large elements are not moved through return
//!   values.
//! - [`VartimeManyUseBase`]: a fixed-base table for one public element that meets very many
//!   full-width exponents (a ciphertext's `ct0` meeting every function key of a training step):
//!   costlier to build than [`PrimeOrderGroup::VartimePrecomputedBase`], cheaper per use.
//!   Ristretto255 uses radix-256 signed digits (33 rows of 128 multiples: ~4,200 additions to
//!   build, then 33 additions per exponent); Z_p* its radix-16 bucket table.
//!
//! [`OddMultiples`], [`multi_exp`] and [`Ct0Table`] are thin generic wrappers under the names
//! the secure-training code has always called.

use crate::fe::group::{GroupTypes, PrimeOrderGroup};

/// Window width of the wNAF recoding.
pub const WNAF_WIDTH: u32 = 5;
/// Odd powers per base: `1, 3, …, 2^{W-1} − 1`.
pub const ODD_POWERS: usize = 1 << (WNAF_WIDTH - 2);

/// Most digits of the recoding of an `i64` (65 suffice: `|c| <= 2^63`).
const MAX_DIGITS: usize = 66;

/// A width-5 NAF, least significant digit first (inline: no allocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wnaf {
    digits: [i8; MAX_DIGITS],
    len: u8,
}

impl Default for Wnaf {
    fn default() -> Self {
        Self {
            digits: [0; MAX_DIGITS],
            len: 0,
        }
    }
}

impl Wnaf {
    /// The recoding of `c` (variable time: `c` is public).
    #[must_use]
    pub fn new(c: i64) -> Self {
        let mut k = i128::from(c);
        let mut out = Self::default();
        let modulus = 1i128 << WNAF_WIDTH;
        let mut len = 0usize;
        while k != 0 {
            if k & 1 == 1 {
                let mut d = k.rem_euclid(modulus);
                if d >= modulus / 2 {
                    d -= modulus;
                }
                out.digits[len] = d as i8;
                k -= d;
            }
            len += 1;
            k >>= 1;
        }
        out.len = len as u8;
        out
    }

    /// The digits, least significant first.
    #[must_use]
    pub fn digits(&self) -> &[i8] {
        &self.digits[..usize::from(self.len)]
    }

    /// The digit at position `i` (0 beyond the length).
    #[must_use]
    pub fn digit(&self, i: usize) -> i8 {
        self.digits().get(i).copied().unwrap_or(0)
    }

    /// Number of digits.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the exponent is zero.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The wNAF recodings of `(base index, coefficient)` terms: `(index, wnaf(c))`.
#[must_use]
pub fn recode(terms: &[(usize, i64)]) -> Vec<(usize, Wnaf)> {
    terms.iter().map(|&(b, c)| (b, Wnaf::new(c))).collect()
}

/// Straus multi-exponentiation with small signed public exponents over prepared bases
/// (variable time).
pub trait VartimeWnafMultiExp: GroupTypes {
    /// The odd powers `B, B^3, …, B^{15}` of one base.
    type OddPowers: Send + Sync;

    /// Builds the odd powers of `base` (1 squaring and 7 products).
    #[must_use]
    fn vartime_odd_powers(&self, base: &Self::Element) -> Self::OddPowers;

    /// `∏ tables[k]^{c}` over `terms = (k, wnaf(c))` (zero exponents allowed). A `k` outside
    /// `tables` is skipped.
    #[must_use]
    fn vartime_multi_exp_wnaf<T: AsRef<Self::OddPowers>>(
        &self,
        tables: &[T],
        terms: &[(usize, Wnaf)],
    ) -> Self::Element;
}

/// A variable-time fixed-base table for a public element used with very many full-width
/// exponents.
pub trait VartimeManyUseBase: GroupTypes {
    /// The table.
    type ManyUseTable: Send + Sync;

    /// Builds the table of `base`.
    #[must_use]
    fn vartime_many_use_table(&self, base: &Self::Element) -> Self::ManyUseTable;

    /// `base^e` from its table.
    #[must_use]
    fn vartime_exp_many_use(&self, table: &Self::ManyUseTable, e: &Self::Scalar) -> Self::Element;
}

/// The odd powers of one base as an array (the representation both backends use).
pub struct OddPowerArray<E>(pub(crate) [E; ODD_POWERS]);

impl<E> AsRef<OddPowerArray<E>> for OddPowerArray<E> {
    fn as_ref(&self) -> &Self {
        self
    }
}

/// [`VartimeWnafMultiExp::vartime_odd_powers`] written once over the group law.
pub(crate) fn generic_odd_powers<G: PrimeOrderGroup>(
    group: &G,
    b: &G::Element,
) -> OddPowerArray<G::Element> {
    let sq = group.op(b, b);
    let mut table: [G::Element; ODD_POWERS] = std::array::from_fn(|_| b.clone());
    for i in 1..ODD_POWERS {
        table[i] = group.op(&table[i - 1], &sq);
    }
    OddPowerArray(table)
}

/// `acc ← acc · p^{±1}` in place, or `acc = p^{±1}` if it is still empty.
pub(crate) fn accumulate<G: PrimeOrderGroup>(
    group: &G,
    acc: &mut Option<G::Element>,
    p: &G::Element,
    positive: bool,
) {
    match (acc.as_mut(), positive) {
        (Some(a), true) => group.op_assign(a, p),
        (Some(a), false) => group.div_assign(a, p),
        (None, true) => *acc = Some(p.clone()),
        (None, false) => *acc = Some(group.invert(p)),
    }
}

/// [`VartimeWnafMultiExp::vartime_multi_exp_wnaf`] written once over the group law: negative
/// digits divide (cheap for Ristretto, where inversion is a negation).
pub(crate) fn generic_multi_exp_wnaf<G: PrimeOrderGroup, T: AsRef<OddPowerArray<G::Element>>>(
    group: &G,
    tables: &[T],
    terms: &[(usize, Wnaf)],
) -> G::Element {
    let len = terms.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
    let mut acc: Option<G::Element> = None;
    for bit in (0..len).rev() {
        if let Some(a) = acc.as_mut() {
            let sq = group.op(a, a);
            *a = sq;
        }
        for (k, w) in terms {
            let d = w.digit(bit);
            let Some(t) = tables.get(*k).filter(|_| d != 0) else {
                continue;
            };
            let p = &t.as_ref().0[usize::from(d.unsigned_abs() / 2)];
            accumulate(group, &mut acc, p, d > 0);
        }
    }
    acc.unwrap_or_else(|| group.identity())
}

/// The odd powers of one base (a name kept for the secure-training code).
pub struct OddMultiples<G: PrimeOrderGroup>(G::OddPowers);

impl<G: PrimeOrderGroup> AsRef<G::OddPowers> for OddMultiples<G> {
    fn as_ref(&self) -> &G::OddPowers {
        &self.0
    }
}

impl<G: PrimeOrderGroup> OddMultiples<G> {
    /// Builds the table of `b`.
    #[must_use]
    pub fn new(group: &G, b: &G::Element) -> Self {
        Self(group.vartime_odd_powers(b))
    }
}

/// `∏ tables[k]^{c}` over `terms = (k, wnaf(c))`: [`VartimeWnafMultiExp::vartime_multi_exp_wnaf`]
/// over [`OddMultiples`].
#[must_use]
pub fn multi_exp<G: PrimeOrderGroup>(
    group: &G,
    tables: &[OddMultiples<G>],
    terms: &[(usize, Wnaf)],
) -> G::Element {
    group.vartime_multi_exp_wnaf(tables, terms)
}

/// A ciphertext's `ct0` prepared for many function keys: [`VartimeManyUseBase`].
pub struct Ct0Table<G: PrimeOrderGroup>(G::ManyUseTable);

impl<G: PrimeOrderGroup> Ct0Table<G> {
    /// Builds the table for `ct0`.
    #[must_use]
    pub fn new(group: &G, ct0: &G::Element) -> Self {
        Self(group.vartime_many_use_table(ct0))
    }

    /// `ct0^e`.
    #[must_use]
    pub fn exp(&self, group: &G, e: &G::Scalar) -> G::Element {
        group.vartime_exp_many_use(&self.0, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wnaf_digits_reconstruct() {
        for c in [
            -70_001i64,
            -16,
            -1,
            0,
            1,
            15,
            16,
            17,
            4095,
            1 << 40,
            i64::MIN,
            i64::MAX,
        ] {
            let w = Wnaf::new(c);
            let v: i128 = w
                .digits()
                .iter()
                .rev()
                .fold(0, |a, &d| 2 * a + i128::from(d));
            assert_eq!(v, i128::from(c));
            assert!(w.digits().iter().all(|d| d % 2 != 0 || *d == 0));
            assert!(w.digits().iter().all(|d| d.unsigned_abs() < 16));
            // Non-adjacent: at most one non-zero digit in any 5 consecutive positions.
            for win in w.digits().windows(5) {
                assert!(win.iter().filter(|&&d| d != 0).count() <= 1, "{c}");
            }
            assert_eq!(w.digit(w.len() + 3), 0);
        }
    }
}
