//! The server's variable-time exponentiation kernels (public values only).
//!
//! - [`OddMultiples`]: per box element `B`, the odd multiples `B, B^3, …, B^{15}`, built once
//!   per image (8 group operations) and shared by every forward and gradient product.
//! - [`Wnaf`]: width-5 non-adjacent form of a small exponent (digits odd in `[-15, 15]`, at
//!   most one non-zero digit in any 5 consecutive positions), stored inline (no allocation).
//!   The forward coefficients (`wq`) are recoded once per step for all images; the gradient
//!   coefficients (`dq`) per image, as they are used.
//! - Accumulation is in place ([`PrimeOrderGroup::op_assign`]), so that large elements
//!   (160-byte Ristretto points) are not moved through return values.
//! - [`multi_exp`]: `∏ B_k^{c_k}` by Straus's interleaving over the shared tables: `bits(max|c|)`
//!   squarings plus about `bits/6` multiplications per term.
//! - [`Ct0Table`]: a fixed-base table for `ct0` with radix-256 signed digits over
//!   Ristretto255 (33 rows of 128 multiples: ~4,200 operations to build, then 33 additions per
//!   full-width exponent; used ~1,300 times per image), falling back to the group's own
//!   variable-time table elsewhere.
//!
//! Everything here is variable time and must only see public values: ciphertexts, key vectors,
//! function keys.

use crate::fe::group::{GroupId, PrimeOrderGroup};

/// Window width of the wNAF recoding.
const W: u32 = 5;
/// Odd multiples per element: `1, 3, …, 2^{W-1} − 1`.
const ODD: usize = 1 << (W - 2);

/// The odd multiples `B^1, B^3, …, B^{15}` of one element.
pub struct OddMultiples<G: PrimeOrderGroup> {
    table: [G::Element; ODD],
}

impl<G: PrimeOrderGroup> OddMultiples<G> {
    /// Builds the table of `b` (1 squaring and 7 multiplications).
    #[must_use]
    pub fn new(group: &G, b: &G::Element) -> Self {
        let sq = group.op(b, b);
        let mut table: [G::Element; ODD] = std::array::from_fn(|_| b.clone());
        for i in 1..ODD {
            table[i] = group.op(&table[i - 1], &sq);
        }
        Self { table }
    }
}

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
    /// The recoding of `c`.
    #[must_use]
    pub fn new(c: i64) -> Self {
        let mut k = i128::from(c);
        let mut out = Self::default();
        let modulus = 1i128 << W;
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

/// The wNAF recodings of one output's box coefficients: `(box, wnaf(c))`.
#[must_use]
pub fn recode(box_terms: &[(usize, i64)]) -> Vec<(usize, Wnaf)> {
    box_terms.iter().map(|&(b, c)| (b, Wnaf::new(c))).collect()
}

/// `acc ← acc · p^{±1}` in place, or `acc = p^{±1}` if it is still empty.
fn accumulate<G: PrimeOrderGroup>(
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

/// `∏ tables[k]^{c}` over `terms = (k, wnaf(c))` (zero exponents allowed).
#[must_use]
pub fn multi_exp<G: PrimeOrderGroup>(
    group: &G,
    tables: &[OddMultiples<G>],
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
            let d = w.digits[bit];
            if d == 0 {
                continue;
            }
            let p = &tables[*k].table[(d.unsigned_abs() / 2) as usize];
            accumulate(group, &mut acc, p, d > 0);
        }
    }
    acc.unwrap_or_else(|| group.identity())
}

/// Rows of the radix-256 table: 32 bytes plus the final carry.
const WIDE_ROWS: usize = 33;
/// Multiples per row: `1..=128`.
const WIDE_COLS: usize = 128;

/// A variable-time fixed-base table for one `ct0`.
pub enum Ct0Table<G: PrimeOrderGroup> {
    /// `d · 256^i · ct0` for `d = 1..=128`, `i < 33` (row-major), for 32-byte little-endian
    /// scalars (Ristretto255).
    Wide(Vec<G::Element>),
    /// The group's own table.
    Group(G::VartimePrecomputedBase),
}

impl<G: PrimeOrderGroup> Ct0Table<G> {
    /// Builds the table for `ct0`.
    #[must_use]
    pub fn new(group: &G, ct0: &G::Element) -> Self {
        if group.id() != GroupId::Ristretto255 || group.scalar_len() != 32 {
            return Self::Group(group.vartime_precompute_base(ct0));
        }
        let mut t = Vec::with_capacity(WIDE_ROWS * WIDE_COLS);
        let mut base = ct0.clone();
        for _ in 0..WIDE_ROWS {
            let mut m = base.clone();
            t.push(m.clone());
            for _ in 1..WIDE_COLS {
                m = group.op(&m, &base);
                t.push(m.clone());
            }
            // base · 256 = (128 · base)²
            base = group.op(&m, &m);
        }
        Self::Wide(t)
    }

    /// `ct0^e`.
    #[must_use]
    pub fn exp(&self, group: &G, e: &G::Scalar) -> G::Element {
        match self {
            Self::Group(t) => group.vartime_exp_precomputed(t, e),
            Self::Wide(t) => {
                let bytes = group.scalar_to_bytes(e);
                let mut acc: Option<G::Element> = None;
                let mut carry = 0i32;
                for i in 0..WIDE_ROWS {
                    let v = i32::from(bytes.get(i).copied().unwrap_or(0)) + carry;
                    carry = i32::from(v >= 128);
                    let d = v - (carry << 8);
                    if d == 0 {
                        continue;
                    }
                    let p = &t[i * WIDE_COLS + d.unsigned_abs() as usize - 1];
                    accumulate(group, &mut acc, p, d > 0);
                }
                acc.unwrap_or_else(|| group.identity())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fe::group::modp::ModpGroup;
    use crate::fe::group::ristretto::Ristretto255;
    use rand::{Rng, SeedableRng};

    fn check<G: PrimeOrderGroup>(g: G) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let bases: Vec<G::Element> = (0..20)
            .map(|i| g.vartime_exp_generator_i64(1000 + 7 * i))
            .collect();
        let tables: Vec<OddMultiples<G>> = bases.iter().map(|b| OddMultiples::new(&g, b)).collect();
        for _ in 0..20 {
            let coefs: Vec<i64> = (0..20).map(|_| rng.gen_range(-70_000..70_000)).collect();
            let terms: Vec<(usize, Wnaf)> = coefs
                .iter()
                .enumerate()
                .map(|(k, &c)| (k, Wnaf::new(c)))
                .collect();
            let want = g.vartime_multi_exp_i64(bases.iter().zip(coefs.iter().copied()));
            assert_eq!(multi_exp(&g, &tables, &terms), want);
        }
        let ct0 = g.vartime_exp_generator_i64(123_456);
        let t = Ct0Table::new(&g, &ct0);
        for _ in 0..20 {
            let e = g.random_scalar(&mut rng);
            assert_eq!(t.exp(&g, &e), g.vartime_exp(&ct0, &e));
        }
        let minus_one = g.scalar_from_i64(-1);
        assert_eq!(t.exp(&g, &minus_one), g.invert(&ct0));
        assert_eq!(t.exp(&g, &g.scalar_from_i64(0)), g.identity());
    }

    #[test]
    fn kernels_match_the_group() {
        check(Ristretto255);
        check(ModpGroup::insecure_test_group());
    }

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
            assert!(w.digits.iter().all(|d| d % 2 != 0 || *d == 0));
        }
    }
}
