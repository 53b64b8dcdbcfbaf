//! Ristretto255: the prime-order group built on Curve25519 (the default, fast backend).
//!
//! Ristretto255 is a group of prime order
//! `q = 2^252 + 27742317777372353535851937790883648493` whose elements are encoded in 32 canonical
//! bytes (draft-irtf-cfrg-ristretto255). The best known attack (Pollard's rho) costs about
//! `√(πq/4) ≈ 2^{125.8}` group operations: **~126-bit security**. Arithmetic is curve25519-dalek
//! 5. At run time it picks its AVX-512 IFMA backend where the CPU has `avx512ifma` and
//! `avx512vl` (compiled in for x86-64 builds by `.cargo/config.toml`), else AVX2, else serial
//! 64-bit code. The backends give the same points; they differ in speed, and only for dalek's own
//! scalar multiplications (its point additions are serial code in every backend).
//!
//! Variable-time paths (`vartime_*`) only ever see public values: the small-exponent
//! multi-exponentiation is a signed-binary Straus ladder whose cost is `bits(max|e_i|)` doublings
//! plus about one addition per non-zero signed digit; the [`VartimeFixedBase`] table turns a
//! full-width exponentiation of a fixed element into ~64 additions.

use std::sync::OnceLock;

use curve25519_dalek::constants::{RISTRETTO_BASEPOINT_POINT, RISTRETTO_BASEPOINT_TABLE};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoBasepointTable, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, VartimeMultiscalarMul};
use rand_core::CryptoRngCore;
use subtle::{ConditionallyNegatable, ConditionallySelectable, ConstantTimeEq};

use crate::fe::error::GroupError;
use crate::fe::group::multiexp::{
    generic_multi_exp_wnaf, generic_odd_powers, OddPowerArray, VartimeManyUseBase,
    VartimeWnafMultiExp, Wnaf,
};
use crate::fe::group::{GroupId, GroupTypes, PrimeOrderGroup, StaticGroup};

mod comb;

/// The Ristretto255 group (a unit type: it has no parameters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ristretto255;

impl Ristretto255 {
    /// The group.
    #[must_use]
    pub fn new() -> Self {
        Ristretto255
    }
}

impl StaticGroup for Ristretto255 {
    fn instance() -> Self {
        Ristretto255
    }
}

/// A variable-time fixed-base table for one Ristretto point `P`: the powers `P_i = 16^i · P`
/// for `i = 0..=64`. A full-width exponent `e = Σ d_i 16^i` (signed digits `d_i ∈ [-8, 8)`) is
/// then evaluated with the bucket method: `Σ_{d=1}^{8} d · (Σ_{i : |d_i| = d} ±P_i)`, about
/// 64 + 16 additions and no doublings. Building costs 252 doublings (one exponentiation).
#[derive(Debug, Clone)]
pub struct VartimeFixedBase {
    powers: Vec<RistrettoPoint>,
}

/// Rows of the constant-time small-exponent generator table: `g^{d · 16^i}` for `d = 0..=8` and
/// `i = 0..=16` (16 digits cover every `u64`, the 17th row takes the final carry).
const SMALL_ROWS: usize = 17;

/// The small-exponent table of one base: `d · 16^i · base` for `d = 0..=8`, `i < SMALL_ROWS`.
type SmallTable = [[RistrettoPoint; 9]; SMALL_ROWS];

fn small_table(mut base: RistrettoPoint) -> SmallTable {
    let mut rows = [[RistrettoPoint::identity(); 9]; SMALL_ROWS];
    for row in rows.iter_mut() {
        for d in 1..9 {
            row[d] = row[d - 1] + base;
        }
        // base <- 16 · base
        base = row[8] + row[8];
    }
    rows
}

fn small_generator_table() -> &'static SmallTable {
    static TABLE: OnceLock<SmallTable> = OnceLock::new();
    TABLE.get_or_init(|| small_table(RISTRETTO_BASEPOINT_POINT))
}

/// `2^{-1} mod ℓ`.
fn half() -> &'static Scalar {
    static HALF: OnceLock<Scalar> = OnceLock::new();
    HALF.get_or_init(|| Scalar::from(2u8).invert())
}

/// The small-exponent table of `g/2 = 2^{-1} · g`.
fn small_half_generator_table() -> &'static SmallTable {
    static TABLE: OnceLock<SmallTable> = OnceLock::new();
    TABLE.get_or_init(|| small_table(RISTRETTO_BASEPOINT_POINT * half()))
}

/// `x · base` for a small signed `x`, from `base`'s [`SmallTable`], in time that depends only
/// on the public `bound` (see [`PrimeOrderGroup::exp_generator_i64`]).
fn small_exp(table: &SmallTable, x: i64, bound: u64) -> RistrettoPoint {
    let magnitude = x.unsigned_abs();
    let needed = 64 - bound.max(magnitude).leading_zeros() as usize;
    // One extra digit absorbs the final carry of the signed recoding.
    let digits = needed.div_ceil(4).clamp(1, SMALL_ROWS - 1);
    let recoded = signed_radix16(magnitude, digits);
    let mut acc = RistrettoPoint::identity();
    for (i, &d) in recoded.iter().enumerate().take(digits + 1) {
        let abs = d.unsigned_abs();
        let mut sel = RistrettoPoint::identity();
        for (k, entry) in table[i].iter().enumerate() {
            sel.conditional_assign(entry, (k as u8).ct_eq(&abs));
        }
        sel.conditional_negate(((d as u8) >> 7).into());
        acc += sel;
    }
    acc.conditional_negate(((x < 0) as u8).into());
    acc
}

/// Signed radix-16 digits of `a`: `a = Σ d_i 16^i`, `d_i ∈ [-8, 8)` except the last, which may
/// be 8. Branch-free in `a`.
fn signed_radix16(a: u64, digits: usize) -> [i8; SMALL_ROWS] {
    let mut out = [0i8; SMALL_ROWS];
    let mut carry = 0i64;
    for (i, d) in out.iter_mut().enumerate().take(digits) {
        let nib = ((a >> (4 * i)) & 0xF) as i64 + carry;
        carry = (nib + 8) >> 4;
        *d = (nib - (carry << 4)) as i8;
    }
    if digits < out.len() {
        out[digits] = carry as i8;
    }
    out
}

fn scalar_from_u64_signed(magnitude: u64, negative: bool) -> Scalar {
    let s = Scalar::from(magnitude);
    if negative {
        -s
    } else {
        s
    }
}

/// `acc += s · y` over 512-bit little-endian limbs (no overflow for fewer than 2^195 terms:
/// each product is below 2^317).
fn mac_wide(acc: &mut [u64; 8], s: &[u64; 4], y: u64) {
    let mut carry: u128 = 0;
    for (a, &l) in acc.iter_mut().zip(s) {
        let t = u128::from(*a) + u128::from(l) * u128::from(y) + carry;
        *a = t as u64;
        carry = t >> 64;
    }
    for a in acc.iter_mut().skip(4) {
        let t = u128::from(*a) + carry;
        *a = t as u64;
        carry = t >> 64;
    }
}

/// The 512-bit integer `acc` reduced mod `ℓ`.
fn scalar_from_wide(acc: &[u64; 8]) -> Scalar {
    let mut bytes = [0u8; 64];
    for (chunk, l) in bytes.chunks_exact_mut(8).zip(acc) {
        chunk.copy_from_slice(&l.to_le_bytes());
    }
    let s = Scalar::from_bytes_mod_order_wide(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    s
}

impl GroupTypes for Ristretto255 {
    type Scalar = Scalar;
    type Element = RistrettoPoint;
}

impl VartimeWnafMultiExp for Ristretto255 {
    type OddPowers = OddPowerArray<RistrettoPoint>;

    fn vartime_odd_powers(&self, base: &RistrettoPoint) -> Self::OddPowers {
        generic_odd_powers(self, base)
    }
    fn vartime_multi_exp_wnaf<T: AsRef<Self::OddPowers>>(
        &self,
        tables: &[T],
        terms: &[(usize, Wnaf)],
    ) -> RistrettoPoint {
        // Negative digits subtract: a point negation is free.
        generic_multi_exp_wnaf(self, tables, terms)
    }
}

/// Rows of the many-use table: 32 bytes plus the final carry.
const WIDE_ROWS: usize = 33;
/// Multiples per row: `1..=128`.
const WIDE_COLS: usize = 128;

/// A variable-time fixed-base table for a point used with very many exponents:
/// `d · 256^i · P` for `d = 1..=128`, `i < 33` (row-major). An exponent's 32 little-endian
/// bytes are recoded into signed radix-256 digits in `[-128, 128)`, and each non-zero digit
/// costs one addition (a subtraction for a negative one).
#[derive(Debug, Clone)]
pub struct WideFixedBase {
    multiples: Vec<RistrettoPoint>,
}

impl VartimeManyUseBase for Ristretto255 {
    type ManyUseTable = WideFixedBase;

    fn vartime_many_use_table(&self, base: &RistrettoPoint) -> WideFixedBase {
        let mut t = Vec::with_capacity(WIDE_ROWS * WIDE_COLS);
        let mut b = *base;
        for _ in 0..WIDE_ROWS {
            let mut m = b;
            t.push(m);
            for _ in 1..WIDE_COLS {
                m += b;
                t.push(m);
            }
            // b · 256 = (128 · b) · 2
            b = m + m;
        }
        WideFixedBase { multiples: t }
    }
    fn vartime_exp_many_use(&self, table: &WideFixedBase, e: &Scalar) -> RistrettoPoint {
        let bytes = e.as_bytes();
        let mut acc = RistrettoPoint::identity();
        let mut carry = 0i32;
        for i in 0..WIDE_ROWS {
            let v = i32::from(bytes.get(i).copied().unwrap_or(0)) + carry;
            carry = i32::from(v >= 128);
            let d = v - (carry << 8);
            if d == 0 {
                continue;
            }
            if let Some(p) = table
                .multiples
                .get(i * WIDE_COLS + d.unsigned_abs() as usize - 1)
            {
                if d > 0 {
                    acc += p;
                } else {
                    acc -= p;
                }
            }
        }
        acc
    }
}

impl PrimeOrderGroup for Ristretto255 {
    type PrecomputedBase = RistrettoBasepointTable;
    type VartimePrecomputedBase = VartimeFixedBase;

    fn id(&self) -> GroupId {
        GroupId::Ristretto255
    }
    fn security_bits(&self) -> u32 {
        126
    }
    fn element_len(&self) -> usize {
        32
    }
    fn scalar_len(&self) -> usize {
        32
    }

    fn identity(&self) -> RistrettoPoint {
        RistrettoPoint::identity()
    }
    fn generator(&self) -> RistrettoPoint {
        RISTRETTO_BASEPOINT_POINT
    }
    fn op(&self, a: &RistrettoPoint, b: &RistrettoPoint) -> RistrettoPoint {
        a + b
    }
    fn invert(&self, a: &RistrettoPoint) -> RistrettoPoint {
        -a
    }
    fn div(&self, a: &RistrettoPoint, b: &RistrettoPoint) -> RistrettoPoint {
        a - b
    }
    fn op_assign(&self, a: &mut RistrettoPoint, b: &RistrettoPoint) {
        *a += b;
    }
    fn div_assign(&self, a: &mut RistrettoPoint, b: &RistrettoPoint) {
        *a -= b;
    }

    fn exp(&self, base: &RistrettoPoint, e: &Scalar) -> RistrettoPoint {
        base * e
    }
    fn exp_generator(&self, e: &Scalar) -> RistrettoPoint {
        RISTRETTO_BASEPOINT_TABLE * e
    }
    fn exp_generator_i64(&self, x: i64, bound: u64) -> RistrettoPoint {
        small_exp(small_generator_table(), x, bound)
    }
    fn precompute_base(&self, base: &RistrettoPoint) -> RistrettoBasepointTable {
        RistrettoBasepointTable::create(base)
    }
    fn exp_precomputed(&self, table: &RistrettoBasepointTable, e: &Scalar) -> RistrettoPoint {
        table * e
    }

    fn vartime_exp(&self, base: &RistrettoPoint, e: &Scalar) -> RistrettoPoint {
        RistrettoPoint::vartime_multiscalar_mul([e], [base])
    }
    fn vartime_precompute_base(&self, base: &RistrettoPoint) -> VartimeFixedBase {
        let mut powers = Vec::with_capacity(65);
        let mut p = *base;
        for _ in 0..65 {
            powers.push(p);
            for _ in 0..4 {
                p = p + p;
            }
        }
        VartimeFixedBase { powers }
    }
    fn vartime_exp_precomputed(&self, table: &VartimeFixedBase, e: &Scalar) -> RistrettoPoint {
        // Signed radix-16 digits of e: 64 nibbles plus one digit for the final carry.
        let digits = e.as_bytes();
        let mut buckets = [RistrettoPoint::identity(); 8];
        let mut used = [false; 8];
        let mut carry = 0i16;
        for (i, p) in table.powers.iter().enumerate() {
            let byte = digits.get(i / 2).copied().unwrap_or(0);
            let nib = if i % 2 == 0 { byte & 0xF } else { byte >> 4 } as i16 + carry;
            carry = (nib + 8) >> 4;
            let d = nib - (carry << 4);
            if d == 0 {
                continue;
            }
            let idx = d.unsigned_abs() as usize - 1;
            let term = if d < 0 { -p } else { *p };
            if used[idx] {
                buckets[idx] += term;
            } else {
                buckets[idx] = term;
                used[idx] = true;
            }
        }
        // Σ_{d=1}^{8} d · B_d via running sums.
        let mut running = RistrettoPoint::identity();
        let mut total = RistrettoPoint::identity();
        for idx in (0..8).rev() {
            if used[idx] {
                running += buckets[idx];
            }
            total += running;
        }
        total
    }
    fn vartime_multi_exp_i64<'a, I>(&self, terms: I) -> RistrettoPoint
    where
        I: IntoIterator<Item = (&'a RistrettoPoint, i64)>,
    {
        let terms: Vec<(&RistrettoPoint, i64)> =
            terms.into_iter().filter(|(_, e)| *e != 0).collect();
        let bits = terms
            .iter()
            .map(|(_, e)| 64 - e.unsigned_abs().leading_zeros())
            .max()
            .unwrap_or(0);
        // Many terms with short exponents: one bucket per magnitude beats Straus when the
        // 2·2^bits bucket-reduction additions are small against ~bits/3 additions per term.
        if bits <= BUCKET_MAX_BITS && terms.len() * (bits as usize) > 6 << bits {
            vartime_bucket_sum(&terms, bits)
        } else {
            vartime_signed_binary_straus(terms)
        }
    }

    /// 64 uniform bytes reduced modulo `ℓ` (statistically uniform; the same draw as dalek's
    /// `Scalar::random`, so a seeded run gives the same scalars with any dalek version).
    fn random_scalar<R: CryptoRngCore + ?Sized>(&self, rng: &mut R) -> Scalar {
        let mut wide = zeroize::Zeroizing::new([0u8; 64]);
        rng.fill_bytes(&mut wide[..]);
        Scalar::from_bytes_mod_order_wide(&wide)
    }
    fn scalar_from_i64(&self, v: i64) -> Scalar {
        scalar_from_u64_signed(v.unsigned_abs(), v < 0)
    }
    /// Integer multiply-accumulate of the secret scalars' limbs by the public `y_i` (positive and
    /// negative `y_i` in two 512-bit sums), then two wide reductions: much faster than one
    /// scalar multiplication per term, and the same branches whatever the secret `s_i`.
    fn scalar_inner_product_i64<'a, I>(&self, terms: I) -> Scalar
    where
        I: IntoIterator<Item = (&'a Scalar, i64)>,
    {
        let mut pos = [0u64; 8];
        let mut neg = [0u64; 8];
        for (s, y) in terms {
            let b = s.as_bytes();
            let mut limbs = [0u64; 4];
            for (l, chunk) in limbs.iter_mut().zip(b.chunks_exact(8)) {
                let mut w = [0u8; 8];
                w.copy_from_slice(chunk);
                *l = u64::from_le_bytes(w);
            }
            mac_wide(
                if y < 0 { &mut neg } else { &mut pos },
                &limbs,
                y.unsigned_abs(),
            );
            zeroize::Zeroize::zeroize(&mut limbs);
        }
        let r = scalar_from_wide(&pos) - scalar_from_wide(&neg);
        zeroize::Zeroize::zeroize(&mut pos);
        zeroize::Zeroize::zeroize(&mut neg);
        r
    }
    fn scalar_add(&self, a: &Scalar, b: &Scalar) -> Scalar {
        a + b
    }
    fn scalar_sub(&self, a: &Scalar, b: &Scalar) -> Scalar {
        a - b
    }
    fn scalar_mul(&self, a: &Scalar, b: &Scalar) -> Scalar {
        a * b
    }
    fn scalar_neg(&self, a: &Scalar) -> Scalar {
        -a
    }
    fn scalar_invert(&self, a: &Scalar) -> Result<Scalar, GroupError> {
        if bool::from(a.ct_eq(&Scalar::ZERO)) {
            return Err(GroupError::NotInvertible);
        }
        Ok(a.invert())
    }

    fn element_to_bytes(&self, e: &RistrettoPoint) -> Vec<u8> {
        e.compress().to_bytes().to_vec()
    }
    fn element_from_bytes(&self, bytes: &[u8]) -> Result<RistrettoPoint, GroupError> {
        let c = CompressedRistretto::from_slice(bytes).map_err(|_| GroupError::InvalidLength {
            expected: 32,
            got: bytes.len(),
        })?;
        c.decompress().ok_or(GroupError::InvalidElement)
    }
    fn scalar_to_bytes(&self, s: &Scalar) -> Vec<u8> {
        s.to_bytes().to_vec()
    }
    fn scalar_from_bytes(&self, bytes: &[u8]) -> Result<Scalar, GroupError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| GroupError::InvalidLength {
            expected: 32,
            got: bytes.len(),
        })?;
        Option::from(Scalar::from_canonical_bytes(arr)).ok_or(GroupError::NonCanonicalScalar)
    }

    /// Short-lived signed-digit comb tables of the bases, amortised over the exponents, and
    /// the results encoded in one batch per exponent (see the `comb` module).
    fn exp_batch_encoded(
        &self,
        bases: &[RistrettoPoint],
        exps: &[Scalar],
        offsets: &[Vec<i64>],
        bound: u64,
    ) -> Vec<Vec<u8>> {
        comb::exp_batch_encoded(bases, exps, offsets, bound)
    }

    fn vartime_fingerprints(&self, elements: &[RistrettoPoint]) -> Vec<u64> {
        // compress(2P) is injective on a group of odd order, and the batch shares one inversion.
        RistrettoPoint::double_and_compress_batch(elements)
            .iter()
            .map(|c| fingerprint_of_compressed(c.as_bytes()))
            .collect()
    }
}

/// Non-adjacent form of `m`: digits in `{-1, 0, 1}`, least significant first, no two adjacent
/// non-zero digits (about `bits/3` non-zero digits).
fn naf(m: u64) -> Vec<i8> {
    let mut k = u128::from(m);
    let mut digits = Vec::with_capacity(66);
    while k > 0 {
        if k & 1 == 1 {
            if k & 3 == 1 {
                digits.push(1);
                k -= 1;
            } else {
                digits.push(-1);
                k += 1;
            }
        } else {
            digits.push(0);
        }
        k >>= 1;
    }
    digits
}

/// Largest exponent bit length for which [`vartime_bucket_sum`] is considered.
const BUCKET_MAX_BITS: u32 = 12;

/// `∏ b_i^{e_i}` with one bucket per magnitude: `B_v = ∏_{|e_i| = v} b_i^{sign(e_i)}`, then
/// `∏_v B_v^v` by running products. Cost: one addition per term plus `2·2^bits`.
fn vartime_bucket_sum(terms: &[(&RistrettoPoint, i64)], bits: u32) -> RistrettoPoint {
    let mut buckets: Vec<Option<RistrettoPoint>> = vec![None; 1 << bits];
    for (p, e) in terms {
        let term = if *e < 0 { -*p } else { **p };
        let slot = &mut buckets[e.unsigned_abs() as usize];
        *slot = Some(slot.map_or(term, |b| b + term));
    }
    let mut running: Option<RistrettoPoint> = None;
    let mut total: Option<RistrettoPoint> = None;
    for bucket in buckets.into_iter().skip(1).rev() {
        if let Some(b) = bucket {
            running = Some(running.map_or(b, |r| r + b));
        }
        if let Some(r) = running {
            total = Some(total.map_or(r, |t| t + r));
        }
    }
    total.unwrap_or_else(RistrettoPoint::identity)
}

/// `∏ b_i^{e_i}` for small signed exponents: Straus's method over NAF digits with one shared
/// doubling chain. Cost: `max_i bits(|e_i|)` doublings plus one addition per non-zero NAF digit
/// (about a third of the bits), independent of the width of the group order.
fn vartime_signed_binary_straus<'a, I>(terms: I) -> RistrettoPoint
where
    I: IntoIterator<Item = (&'a RistrettoPoint, i64)>,
{
    let terms: Vec<(RistrettoPoint, Vec<i8>)> = terms
        .into_iter()
        .filter(|(_, e)| *e != 0)
        .map(|(p, e)| (if e < 0 { -p } else { *p }, naf(e.unsigned_abs())))
        .collect();
    let len = terms.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
    let mut acc: Option<RistrettoPoint> = None;
    for bit in (0..len).rev() {
        if let Some(a) = acc.as_mut() {
            *a = *a + *a;
        }
        for (p, digits) in &terms {
            match digits.get(bit) {
                Some(1) => acc = Some(acc.map_or(*p, |a| a + p)),
                Some(-1) => acc = Some(acc.map_or(-p, |a| a - p)),
                _ => {}
            }
        }
    }
    acc.unwrap_or_else(RistrettoPoint::identity)
}

/// Bytes 8..16 of a canonical encoding (byte 0's low bit is always zero, so skip the start).
fn fingerprint_of_compressed(bytes: &[u8; 32]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[8..16]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limb-wise inner product equals one scalar product per term, for random secrets and
    /// extreme, zero and random signed coefficients.
    #[test]
    fn scalar_inner_product_matches_the_generic_sum() {
        use rand::{Rng, SeedableRng};
        let g = Ristretto255;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        for len in [0usize, 1, 2, 36, 784] {
            let s: Vec<Scalar> = (0..len).map(|_| g.random_scalar(&mut rng)).collect();
            let mut y: Vec<i64> = (0..len).map(|_| rng.gen_range(-70_000..70_000)).collect();
            if len >= 3 {
                y[0] = i64::MIN;
                y[1] = i64::MAX;
                y[2] = 0;
            }
            let mut want = Scalar::ZERO;
            for (si, &yi) in s.iter().zip(&y) {
                want += si * g.scalar_from_i64(yi);
            }
            let got = g.scalar_inner_product_i64(s.iter().zip(y.iter().copied()));
            assert_eq!(got, want, "len {len}");
        }
        let minus_one = -Scalar::ONE;
        let many = vec![minus_one; 1000];
        let got = g.scalar_inner_product_i64(many.iter().map(|s| (s, i64::MIN)));
        assert_eq!(
            got,
            Scalar::from(1000u64) * minus_one * g.scalar_from_i64(i64::MIN)
        );
    }
}
