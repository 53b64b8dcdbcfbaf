//! The Schnorr group of quadratic residues modulo an RFC 3526 safe prime (the paper-faithful
//! backend).
//!
//! For a safe prime `p = 2q + 1` (`q` prime), the quadratic residues modulo `p` form the subgroup
//! of `Z_p*` of prime order `q`. The generator is `g = 4 = 2²`, a quadratic residue `≠ 1`, hence of
//! order `q`. An integer `1 <= a < p` is in the group iff its Legendre symbol `(a | p)` is `1`,
//! which element decoding checks (with a Jacobi-symbol computation, far cheaper than `a^q`).
//!
//! | constructor | modulus | security (NIST SP 800-57) |
//! |---|---|---|
//! | [`ModpGroup::rfc3526_2048`] | RFC 3526 group 14 | ~112 bits |
//! | [`ModpGroup::rfc3526_3072`] | RFC 3526 group 15 | ~128 bits |
//!
//! The primes are `p = 2^L − 2^{L−64} − 1 + 2^64·(⌊2^{L−130}·π⌋ + c)` with `c = 124476` (2048)
//! and `c = 1690314` (3072), as RFC 3526 defines them; the constants below were produced from this
//! formula and checked prime (and `(p−1)/2` prime) by Miller–Rabin. Smaller moduli are refused:
//! the only way to a smaller group is [`ModpGroup::insecure_test_group`], for fast tests.
//!
//! # Arithmetic and timing
//! By default arithmetic is num-bigint, which is **not constant time**; with the cargo feature
//! `gmp` it is GMP through rug, and exponentiation by secrets uses `mpz_powm_sec`. The
//! generator has a fixed-base comb table (`g^{d·16^i}`), so `g^e` costs about `bits(q)/4`
//! modular multiplications instead of a square-and-multiply ladder (num-bigint build only; the
//! `gmp` build keeps `mpz_powm_sec` for secret exponents). Full-width exponentiations of other
//! fixed public elements use the same radix-16 bucket method as the Ristretto backend.

use std::sync::{Arc, OnceLock};

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::fe::error::GroupError;
use crate::fe::group::{GroupId, PrimeOrderGroup};

mod arith;
use arith::Nat;

/// RFC 3526 2048-bit MODP prime, hex (group 14).
const RFC3526_2048_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
);
/// RFC 3526 3072-bit MODP prime, hex (group 15).
const RFC3526_3072_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
);
/// A 256-bit safe prime (random, Miller–Rabin checked with `(p−1)/2`): **insecure**, tests only.
const INSECURE_TEST_256_HEX: &str =
    "CDEE4E1693839B378C4F6AEA9FDAF59DBC235495318935139B8421381A5C2113";

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    };
    hex.as_bytes()
        .chunks(2)
        .map(|pair| (nibble(pair[0]) << 4) | pair.get(1).map_or(0, |&c| nibble(c)))
        .collect()
}

/// An element of the group: an integer `1 <= a < p` with `(a | p) = 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModpElement(Nat);

/// A scalar modulo `q`, stored as its canonical big-endian bytes. Zeroized on drop; `Debug`
/// prints only the type name (scalars are master-key entries, function keys and encryption
/// randomness).
#[derive(Clone, Eq)]
pub struct ModpScalar {
    be: Vec<u8>,
}

impl std::fmt::Debug for ModpScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModpScalar(..)")
    }
}

impl Drop for ModpScalar {
    fn drop(&mut self) {
        self.be.zeroize();
    }
}

impl PartialEq for ModpScalar {
    fn eq(&self, other: &Self) -> bool {
        self.be.ct_eq(&other.be).into()
    }
}

impl Zeroize for ModpScalar {
    fn zeroize(&mut self) {
        self.be.zeroize();
    }
}

/// A variable-time fixed-base table: `base^{16^i}` for every radix-16 digit position of `q`.
#[derive(Clone, Debug)]
pub struct ModpFixedBase {
    powers: Vec<Nat>,
}

struct Inner {
    id: GroupId,
    security_bits: u32,
    p: Nat,
    q: Nat,
    g: Nat,
    p_len: usize,
    q_len: usize,
    /// Radix-16 digit positions of a scalar: `⌈bits(q) / 4⌉`.
    digits: usize,
    /// `comb[16·i + d] = g^{d·16^i}`, built on first use.
    comb: OnceLock<Vec<Nat>>,
}

/// The Schnorr group of quadratic residues modulo a safe prime `p = 2q + 1`, generator `4`.
///
/// Cloning is cheap (the parameters are shared).
#[derive(Clone)]
pub struct ModpGroup {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ModpGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModpGroup")
            .field("id", &self.inner.id)
            .field("p_bits", &arith::bits(&self.inner.p))
            .finish()
    }
}

impl PartialEq for ModpGroup {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id && self.inner.p == other.inner.p
    }
}

impl Eq for ModpGroup {}

impl ModpGroup {
    fn from_hex(id: GroupId, security_bits: u32, hex: &str) -> Self {
        let p = arith::from_be(&hex_to_bytes(hex));
        // q = (p - 1) / 2 = p >> 1 for odd p.
        let q_be = {
            let bytes = arith::to_be(&p, hex.len() / 2);
            let mut out = vec![0u8; bytes.len()];
            let mut carry = 0u8;
            for (o, b) in out.iter_mut().zip(&bytes) {
                *o = (b >> 1) | (carry << 7);
                carry = b & 1;
            }
            out
        };
        let q = arith::from_be(&q_be);
        let p_len = arith::bits(&p).div_ceil(8) as usize;
        let q_bits = arith::bits(&q);
        Self {
            inner: Arc::new(Inner {
                id,
                security_bits,
                g: arith::from_u64(4),
                p_len,
                q_len: q_bits.div_ceil(8) as usize,
                digits: q_bits.div_ceil(4) as usize,
                p,
                q,
                comb: OnceLock::new(),
            }),
        }
    }

    /// The RFC 3526 2048-bit MODP group (group 14): ~112-bit security.
    #[must_use]
    pub fn rfc3526_2048() -> Self {
        static G: OnceLock<ModpGroup> = OnceLock::new();
        G.get_or_init(|| Self::from_hex(GroupId::Modp2048, 112, RFC3526_2048_HEX))
            .clone()
    }

    /// The RFC 3526 3072-bit MODP group (group 15): ~128-bit security.
    #[must_use]
    pub fn rfc3526_3072() -> Self {
        static G: OnceLock<ModpGroup> = OnceLock::new();
        G.get_or_init(|| Self::from_hex(GroupId::Modp3072, 128, RFC3526_3072_HEX))
            .clone()
    }

    /// **INSECURE — for tests only.** A 256-bit safe-prime group (about 40-bit security against
    /// index calculus), so that the generic conformance tests run fast on this backend. It
    /// carries its own [`GroupId::ModpInsecureTest`], so nothing serialised under it can be read
    /// as a secure group's object.
    #[doc(hidden)]
    #[must_use]
    pub fn insecure_test_group() -> Self {
        static G: OnceLock<ModpGroup> = OnceLock::new();
        G.get_or_init(|| Self::from_hex(GroupId::ModpInsecureTest, 40, INSECURE_TEST_256_HEX))
            .clone()
    }

    /// The modulus `p`, big-endian.
    #[must_use]
    pub fn modulus_be(&self) -> Vec<u8> {
        arith::to_be(&self.inner.p, self.inner.p_len)
    }

    fn comb(&self) -> &[Nat] {
        self.inner.comb.get_or_init(|| {
            let p = &self.inner.p;
            let mut table = Vec::with_capacity(self.inner.digits * 16);
            let mut base = self.inner.g.clone();
            for _ in 0..self.inner.digits {
                let mut acc = arith::from_u64(1);
                for _ in 0..16 {
                    table.push(acc.clone());
                    acc = arith::mul_mod(&acc, &base, p);
                }
                base = acc;
            }
            table
        })
    }

    /// `g^e` through the comb table, `e` given as big-endian bytes.
    fn comb_exp_be(&self, be: &[u8]) -> Nat {
        let comb = self.comb();
        let p = &self.inner.p;
        let mut acc = arith::from_u64(1);
        for (i, nib) in nibbles_le(be).enumerate() {
            if nib != 0 {
                if let Some(t) = comb.get(16 * i + nib as usize) {
                    acc = arith::mul_mod(&acc, t, p);
                }
            }
        }
        acc
    }

    fn scalar_nat(&self, s: &ModpScalar) -> Nat {
        arith::from_be(&s.be)
    }

    fn scalar_from_nat(&self, v: &Nat) -> ModpScalar {
        ModpScalar {
            be: arith::to_be(v, self.inner.q_len),
        }
    }

    fn small_power(&self, magnitude: u64) -> Nat {
        self.comb_exp_be(&magnitude.to_be_bytes())
    }
}

/// Little-endian radix-16 digits of a big-endian byte string.
fn nibbles_le(be: &[u8]) -> impl Iterator<Item = u8> + '_ {
    be.iter().rev().flat_map(|b| [b & 0xF, b >> 4])
}

impl PrimeOrderGroup for ModpGroup {
    type Scalar = ModpScalar;
    type Element = ModpElement;
    type PrecomputedBase = ModpElement;
    type VartimePrecomputedBase = ModpFixedBase;

    fn id(&self) -> GroupId {
        self.inner.id
    }
    fn security_bits(&self) -> u32 {
        self.inner.security_bits
    }
    fn element_len(&self) -> usize {
        self.inner.p_len
    }
    fn scalar_len(&self) -> usize {
        self.inner.q_len
    }

    fn identity(&self) -> ModpElement {
        ModpElement(arith::from_u64(1))
    }
    fn generator(&self) -> ModpElement {
        ModpElement(self.inner.g.clone())
    }
    fn op(&self, a: &ModpElement, b: &ModpElement) -> ModpElement {
        ModpElement(arith::mul_mod(&a.0, &b.0, &self.inner.p))
    }
    fn invert(&self, a: &ModpElement) -> ModpElement {
        // Elements are units, so the inverse exists; fall back to a^{q-1} for totality.
        ModpElement(arith::inv_mod(&a.0, &self.inner.p).unwrap_or_else(|| {
            let e = arith::neg_mod(&arith::from_u64(1), &self.inner.q);
            arith::pow_mod(&a.0, &e, &self.inner.p)
        }))
    }

    fn exp(&self, base: &ModpElement, e: &ModpScalar) -> ModpElement {
        ModpElement(arith::pow_mod_secret(
            &base.0,
            &self.scalar_nat(e),
            &self.inner.p,
        ))
    }
    fn exp_generator(&self, e: &ModpScalar) -> ModpElement {
        #[cfg(feature = "gmp")]
        {
            self.exp(&self.generator(), e)
        }
        #[cfg(not(feature = "gmp"))]
        {
            ModpElement(self.comb_exp_be(&e.be))
        }
    }
    fn exp_generator_i64(&self, x: i64, bound: u64) -> ModpElement {
        // g^x = g^{x + c} · g^{-c} with c = bound + 2^62: the secret exponent x + c always has
        // the same limb length; the correction g^{-c} depends only on the public bound.
        let bound = bound.max(x.unsigned_abs());
        if bound >= 1 << 61 {
            return self.exp_generator(&self.scalar_from_i64(x));
        }
        let c = bound + (1 << 62);
        let shifted = (x + c as i64) as u64;
        let s = self.scalar_from_nat(&arith::from_u64(shifted));
        let main = self.exp_generator(&s);
        let correction = self.invert(&ModpElement(self.small_power(c)));
        self.op(&main, &correction)
    }
    fn precompute_base(&self, base: &ModpElement) -> ModpElement {
        // A per-base table costs megabytes at these sizes; keep the element.
        base.clone()
    }
    fn exp_precomputed(&self, table: &ModpElement, e: &ModpScalar) -> ModpElement {
        self.exp(table, e)
    }

    fn vartime_exp(&self, base: &ModpElement, e: &ModpScalar) -> ModpElement {
        ModpElement(arith::pow_mod(&base.0, &self.scalar_nat(e), &self.inner.p))
    }
    fn vartime_precompute_base(&self, base: &ModpElement) -> ModpFixedBase {
        let p = &self.inner.p;
        let mut powers = Vec::with_capacity(self.inner.digits);
        let mut b = base.0.clone();
        for _ in 0..self.inner.digits {
            powers.push(b.clone());
            for _ in 0..4 {
                b = arith::sqr_mod(&b, p);
            }
        }
        ModpFixedBase { powers }
    }
    fn vartime_exp_precomputed(&self, table: &ModpFixedBase, e: &ModpScalar) -> ModpElement {
        let p = &self.inner.p;
        // Buckets B_d = ∏_{i: digit_i = d} base^{16^i}; result = ∏_d B_d^d by running products.
        let mut buckets: Vec<Option<Nat>> = vec![None; 16];
        for (nib, power) in nibbles_le(&e.be).zip(&table.powers) {
            if nib != 0 {
                let slot = &mut buckets[nib as usize];
                *slot = Some(match slot.take() {
                    Some(acc) => arith::mul_mod(&acc, power, p),
                    None => power.clone(),
                });
            }
        }
        let mut running: Option<Nat> = None;
        let mut total: Option<Nat> = None;
        for bucket in buckets.into_iter().skip(1).rev() {
            if let Some(b) = bucket {
                running = Some(match running {
                    Some(r) => arith::mul_mod(&r, &b, p),
                    None => b,
                });
            }
            if let Some(r) = &running {
                total = Some(match total {
                    Some(t) => arith::mul_mod(&t, r, p),
                    None => r.clone(),
                });
            }
        }
        ModpElement(total.unwrap_or_else(|| arith::from_u64(1)))
    }
    fn vartime_exp_generator_i64(&self, e: i64) -> ModpElement {
        let pos = ModpElement(self.small_power(e.unsigned_abs()));
        if e < 0 {
            self.invert(&pos)
        } else {
            pos
        }
    }
    fn vartime_multi_exp_i64<'a, I>(&self, terms: I) -> ModpElement
    where
        I: IntoIterator<Item = (&'a ModpElement, i64)>,
    {
        let p = &self.inner.p;
        let terms: Vec<(&Nat, i64)> = terms
            .into_iter()
            .filter(|(_, e)| *e != 0)
            .map(|(b, e)| (&b.0, e))
            .collect();
        let top = terms
            .iter()
            .map(|(_, e)| 64 - e.unsigned_abs().leading_zeros())
            .max()
            .unwrap_or(0);
        // Straus with shared squarings; negative exponents go to a second accumulator, inverted
        // once at the end.
        let mut pos: Option<Nat> = None;
        let mut neg: Option<Nat> = None;
        for bit in (0..top).rev() {
            for acc in [&mut pos, &mut neg] {
                if let Some(a) = acc.as_mut() {
                    *a = arith::sqr_mod(a, p);
                }
            }
            for (b, e) in &terms {
                if (e.unsigned_abs() >> bit) & 1 == 1 {
                    let acc = if *e < 0 { &mut neg } else { &mut pos };
                    *acc = Some(match acc.take() {
                        Some(a) => arith::mul_mod(&a, b, p),
                        None => (*b).clone(),
                    });
                }
            }
        }
        let pos = ModpElement(pos.unwrap_or_else(|| arith::from_u64(1)));
        match neg {
            Some(n) => self.div(&pos, &ModpElement(n)),
            None => pos,
        }
    }

    fn random_scalar<R: CryptoRngCore + ?Sized>(&self, rng: &mut R) -> ModpScalar {
        // 128 extra bits make the bias of the reduction negligible (< 2^-128).
        let mut wide = vec![0u8; self.inner.q_len + 16];
        rng.fill_bytes(&mut wide);
        let v = arith::rem(&arith::from_be(&wide), &self.inner.q);
        wide.zeroize();
        self.scalar_from_nat(&v)
    }
    fn scalar_from_i64(&self, v: i64) -> ModpScalar {
        let m = arith::from_u64(v.unsigned_abs());
        let m = arith::rem(&m, &self.inner.q);
        if v < 0 {
            self.scalar_from_nat(&arith::neg_mod(&m, &self.inner.q))
        } else {
            self.scalar_from_nat(&m)
        }
    }
    fn scalar_add(&self, a: &ModpScalar, b: &ModpScalar) -> ModpScalar {
        let s = arith::add_mod(&self.scalar_nat(a), &self.scalar_nat(b), &self.inner.q);
        self.scalar_from_nat(&s)
    }
    fn scalar_mul(&self, a: &ModpScalar, b: &ModpScalar) -> ModpScalar {
        let s = arith::mul_mod(&self.scalar_nat(a), &self.scalar_nat(b), &self.inner.q);
        self.scalar_from_nat(&s)
    }
    fn scalar_neg(&self, a: &ModpScalar) -> ModpScalar {
        self.scalar_from_nat(&arith::neg_mod(&self.scalar_nat(a), &self.inner.q))
    }
    fn scalar_invert(&self, a: &ModpScalar) -> Result<ModpScalar, GroupError> {
        let v = self.scalar_nat(a);
        if arith::is_zero(&v) {
            return Err(GroupError::NotInvertible);
        }
        arith::inv_mod(&v, &self.inner.q)
            .map(|i| self.scalar_from_nat(&i))
            .ok_or(GroupError::NotInvertible)
    }

    fn element_to_bytes(&self, e: &ModpElement) -> Vec<u8> {
        arith::to_be(&e.0, self.inner.p_len)
    }
    fn element_from_bytes(&self, bytes: &[u8]) -> Result<ModpElement, GroupError> {
        if bytes.len() != self.inner.p_len {
            return Err(GroupError::InvalidLength {
                expected: self.inner.p_len,
                got: bytes.len(),
            });
        }
        let v = arith::from_be(bytes);
        if arith::is_zero(&v) || v >= self.inner.p || arith::jacobi(&v, &self.inner.p) != 1 {
            return Err(GroupError::InvalidElement);
        }
        Ok(ModpElement(v))
    }
    fn scalar_to_bytes(&self, s: &ModpScalar) -> Vec<u8> {
        s.be.clone()
    }
    fn scalar_from_bytes(&self, bytes: &[u8]) -> Result<ModpScalar, GroupError> {
        if bytes.len() != self.inner.q_len {
            return Err(GroupError::InvalidLength {
                expected: self.inner.q_len,
                got: bytes.len(),
            });
        }
        let v = arith::from_be(bytes);
        if v >= self.inner.q {
            return Err(GroupError::NonCanonicalScalar);
        }
        Ok(ModpScalar { be: bytes.to_vec() })
    }

    fn vartime_fingerprints(&self, elements: &[ModpElement]) -> Vec<u64> {
        // Elements are kept reduced in [1, p): the residue is already a normal form.
        elements.iter().map(|e| arith::low_u64(&e.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_groups_have_expected_sizes() {
        let g = ModpGroup::rfc3526_2048();
        assert_eq!(g.element_len(), 256);
        assert_eq!(g.scalar_len(), 256);
        assert_eq!(g.security_bits(), 112);
        let g3 = ModpGroup::rfc3526_3072();
        assert_eq!(g3.element_len(), 384);
        assert_eq!(g3.security_bits(), 128);
        // g = 4 has order q: g^q = 1 and g != 1.
        let q = g.inner.q.clone();
        assert!(arith::pow_mod(&g.inner.g, &q, &g.inner.p) == arith::from_u64(1));
        assert_eq!(arith::jacobi(&arith::from_u64(4), &g.inner.p), 1);
        // p mod 8 = 7, so 2 is a residue too and p - 1 (= -1) is not (p = 3 mod 4).
        assert_eq!(arith::jacobi(&arith::from_u64(2), &g.inner.p), 1);
        let minus_one = arith::neg_mod(&arith::from_u64(1), &g.inner.p);
        assert_eq!(arith::jacobi(&minus_one, &g.inner.p), -1);
        assert!(g
            .element_from_bytes(&g.element_to_bytes(&ModpElement(minus_one)))
            .is_err());
    }

    #[test]
    fn jacobi_matches_euler_criterion_on_test_group() {
        let g = ModpGroup::insecure_test_group();
        let p = &g.inner.p;
        for a in 1u64..200 {
            let v = arith::from_u64(a);
            let euler = arith::pow_mod(&v, &g.inner.q, p);
            let expected = if euler == arith::from_u64(1) { 1 } else { -1 };
            assert_eq!(arith::jacobi(&v, p), expected, "a = {a}");
        }
    }
}
