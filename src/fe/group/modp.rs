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
//! - **Default build.** Elements are residues in Montgomery form over 64-bit limbs (4, 32 or 48
//!   of them), multiplied by this crate's constant-time Montgomery kernels; scalars modulo `q`
//!   use crypto-bigint's constant-time `BoxedUint`.
//!   - Secret exponents (`h_i^r`, `cmt^s`): [`exp`](PrimeOrderGroup::exp) is a fixed-window
//!     ladder (5-bit windows, a product for every window, zero digits included; every table
//!     read scans the whole table).
//!   - The generator has a comb table, `g^{d·32^k}` for every 5-bit window `k`, built on first
//!     use: [`exp_generator`](PrimeOrderGroup::exp_generator) (`g^{s_i}`, `g^r`) is one product
//!     and one full row scan per window, about `bits(q)/5` products.
//!     [`exp_generator_i64`](PrimeOrderGroup::exp_generator_i64) (`g^{x_i}`) takes as many
//!     windows as the public bound has, and scans a `g^{-1}` row beside each `g` row, so the
//!     sign of `x` is a masked select.
//!   - [`invert`](PrimeOrderGroup::invert) is crypto-bigint's constant-time safegcd inversion.
//!   - A prepared base ([`precompute_base`](PrimeOrderGroup::precompute_base), e.g. each
//!     `h_i` of a client's prepared public key) is a Lim–Lee comb ([`ModpPreparedBase`]):
//!     with `h = 4` teeth spaced `a = ⌈bits/4⌉` apart and `v = 4` sub-tables,
//!     `b^e = ∏_{t<c} (∏_{u<v} T_u[d_{u,t}])^{2^t}`, `c = ⌈a/4⌉`, so
//!     [`exp_precomputed`](PrimeOrderGroup::exp_precomputed) (`h_i^r`) takes `c − 1 ≈ 127`
//!     squarings and `4c ≈ 512` products (each factor a full scan of a 16-entry sub-table)
//!     instead of 2047 squarings and 440 products. The comb costs one squaring chain to build
//!     and 64 elements (16 KB) per base; the shape was chosen by measurement
//!     (docs/benchmarks.md).
//! - **AVX-512 IFMA** (default build, x86-64 CPUs with `avx512f` and `avx512ifma`, checked at
//!   run time): [`exp`](PrimeOrderGroup::exp) and [`vartime_exp`](PrimeOrderGroup::vartime_exp)
//!   run in 52-bit limbs on the vector units (`arith::mont::ifma`: almost Montgomery
//!   multiplication, no final subtraction, the same windows and full table scans), about 3.4x
//!   faster per exponentiation; the one-thread form replaces the two-thread split there.
//!   Products, tables and combs stay on the 64-bit kernels.
//! - **`gmp` feature.** GMP through rug: secret exponents use `mpz_powm_sec` (with `e + q`, so
//!   the limb count is fixed), other products are GMP's (not documented as constant time),
//!   inversion is `mpz_invert` (variable time). The dudect test (tests/modp_timing.rs) finds no
//!   difference for `exp` and `exp_generator` in this build, but does for `exp_generator_i64`
//!   (`|t| ≈ 22` for `x = 0` against random `|x| <= 255`): use the default build where the
//!   plaintexts must not leak through timing.
//! - **Both.** The `vartime_` functions (sliding windows, Straus, the radix-16 bucket table)
//!   leak their exponents through timing.
//!
//! # Decryption and the function key
//! Decryption computes `∏ ct_i^{y_i} · ct0^{−sk_y}`. The ciphertext and `y` are public; the
//! function key `sk_y` is held by the decryptor, and
//! [`vartime_exp`](PrimeOrderGroup::vartime_exp) leaks it through timing. That is accepted:
//! `sk_y` gives its holder exactly `<x, y>` for every ciphertext under the master key, which is
//! what the decryptor computes anyway and what the decryption result reveals; a timing
//! observer who recovers `sk_y` learns the same function of the same ciphertexts, nothing about
//! the master secret `s` or other key vectors. A deployment that must hide `<x, y>` from
//! co-located observers of the server should not run the server beside them. Secret exponents
//! of the data owner and the authority (`r`, `s_i`, `x_i`) never reach a `vartime_` function.
//!
//! In the default build, `vartime_exp` called from outside rayon's pool (one decryption at a
//! time) splits a full-width exponent over two threads: one walks the squaring chain
//! `ct0^{8^k}`, the other multiplies the powers with non-zero radix-8 digits into buckets,
//! combined at the end (`∏_d B_d^d`, 14 products). Its latency is about that of the 2047
//! squarings alone; the squaring chain itself is inherently sequential. Inside the pool (many
//! decryptions in parallel) it stays the one-thread sliding window, which does fewer products.

use std::sync::{Arc, OnceLock};

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::fe::error::GroupError;
use crate::fe::group::multiexp::{
    generic_odd_powers, OddPowerArray, VartimeManyUseBase, VartimeWnafMultiExp, Wnaf,
};
use crate::fe::group::{GroupId, GroupTypes, PrimeOrderGroup};

mod arith;
use arith::{BaseComb, Elem, Field, FixedBase, ScalarField};

/// Exponents of at least this many bytes are split over two threads by
/// [`vartime_exp`](PrimeOrderGroup::vartime_exp) when called from outside rayon's pool.
const SPLIT_MIN_EXP_BYTES: usize = 64;

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

/// An element of the group: an integer `1 <= a < p` with `(a | p) = 1` (kept in the
/// arithmetic's internal form: Montgomery form by default, the residue itself with `gmp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModpElement(Elem);

/// A scalar modulo `q`, stored as its canonical big-endian bytes. Zeroized on drop; its `Debug`
/// shows no bytes.
#[derive(Clone, Eq)]
pub struct ModpScalar {
    be: Vec<u8>,
}

impl std::fmt::Debug for ModpScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModpScalar(<redacted>)")
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

impl Drop for ModpScalar {
    fn drop(&mut self) {
        self.be.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for ModpScalar {}

/// A variable-time fixed-base table: `base^{16^i}` for every radix-16 digit position of `q`.
#[derive(Clone, Debug)]
pub struct ModpFixedBase {
    powers: Vec<Elem>,
}

/// A public base prepared for repeated constant-time exponentiation
/// ([`precompute_base`](PrimeOrderGroup::precompute_base)): in the default build a Lim–Lee comb
/// of 4 teeth and 4 sub-tables (64 elements, 16 KB at 2048 bits), so that each
/// [`exp_precomputed`](PrimeOrderGroup::exp_precomputed) takes about `bits(q)/16` squarings
/// and `bits(q)/4` products instead of `bits(q)` squarings; with `gmp`, the base itself.
pub struct ModpPreparedBase(BaseComb);

impl std::fmt::Debug for ModpPreparedBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModpPreparedBase(..)")
    }
}

struct Inner {
    id: GroupId,
    security_bits: u32,
    p_be: Vec<u8>,
    field: Field,
    scalars: ScalarField,
    g: Elem,
    p_bits: u64,
    p_len: usize,
    q_len: usize,
    /// Radix-16 digit positions of a scalar: `⌈bits(q) / 4⌉`.
    digits: usize,
    /// The generator's fixed-base table, built on first use.
    comb: OnceLock<FixedBase>,
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
            .field("p_bits", &self.inner.p_bits)
            .finish()
    }
}

impl PartialEq for ModpGroup {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id && self.inner.p_be == other.inner.p_be
    }
}

impl Eq for ModpGroup {}

/// Bit length of a big-endian byte string.
fn bit_len(be: &[u8]) -> u64 {
    be.iter().position(|&b| b != 0).map_or(0, |i| {
        8 * (be.len() - i) as u64 - u64::from(be[i].leading_zeros())
    })
}

/// Little-endian radix-16 digits of a big-endian byte string.
fn nibbles_le(be: &[u8]) -> impl Iterator<Item = u8> + '_ {
    be.iter().rev().flat_map(|b| [b & 0xF, b >> 4])
}

impl ModpGroup {
    /// The group of the hard-coded safe prime `hex`. The three constants below are valid odd
    /// primes of at most 3072 bits, which `Field::new` and `ScalarField::new` accept.
    fn from_hex(id: GroupId, security_bits: u32, hex: &str) -> Option<Self> {
        let p_be = hex_to_bytes(hex);
        // q = (p − 1) / 2 = p >> 1 for odd p, in the same number of bytes.
        let mut q_be = vec![0u8; p_be.len()];
        let mut carry = 0u8;
        for (o, b) in q_be.iter_mut().zip(&p_be) {
            *o = (b >> 1) | (carry << 7);
            carry = b & 1;
        }
        let q_bits = bit_len(&q_be);
        let q_len = q_bits.div_ceil(8) as usize;
        let q_be = q_be[q_be.len() - q_len..].to_vec();
        let field = Field::new(&p_be)?;
        Some(Self {
            inner: Arc::new(Inner {
                id,
                security_bits,
                g: field.small(4),
                p_bits: bit_len(&p_be),
                p_len: p_be.len(),
                q_len,
                digits: q_bits.div_ceil(4) as usize,
                scalars: ScalarField::new(&q_be)?,
                field,
                p_be,
                comb: OnceLock::new(),
            }),
        })
    }

    fn constant(cell: &'static OnceLock<ModpGroup>, id: GroupId, bits: u32, hex: &str) -> Self {
        cell.get_or_init(|| {
            // The constants are fixed and valid: construction cannot fail (a unit test checks
            // all three).
            Self::from_hex(id, bits, hex)
                .unwrap_or_else(|| unreachable!("invalid RFC 3526 constant"))
        })
        .clone()
    }

    /// The RFC 3526 2048-bit MODP group (group 14): ~112-bit security.
    #[must_use]
    pub fn rfc3526_2048() -> Self {
        static G: OnceLock<ModpGroup> = OnceLock::new();
        Self::constant(&G, GroupId::Modp2048, 112, RFC3526_2048_HEX)
    }

    /// The RFC 3526 3072-bit MODP group (group 15): ~128-bit security.
    #[must_use]
    pub fn rfc3526_3072() -> Self {
        static G: OnceLock<ModpGroup> = OnceLock::new();
        Self::constant(&G, GroupId::Modp3072, 128, RFC3526_3072_HEX)
    }

    /// **INSECURE — for tests only.** A 256-bit safe-prime group (about 40-bit security against
    /// index calculus), so that the generic conformance tests run fast on this backend. It
    /// carries its own [`GroupId::ModpInsecureTest`], so nothing serialised under it can be read
    /// as a secure group's object.
    #[doc(hidden)]
    #[must_use]
    pub fn insecure_test_group() -> Self {
        static G: OnceLock<ModpGroup> = OnceLock::new();
        Self::constant(&G, GroupId::ModpInsecureTest, 40, INSECURE_TEST_256_HEX)
    }

    /// The modulus `p`, big-endian.
    #[must_use]
    pub fn modulus_be(&self) -> Vec<u8> {
        self.inner.p_be.clone()
    }

    fn comb(&self) -> &FixedBase {
        self.inner
            .comb
            .get_or_init(|| self.inner.field.fixed_base(&self.inner.g, self.inner.q_len))
    }

    fn field(&self) -> &Field {
        &self.inner.field
    }

    fn scalar(&self, be: Vec<u8>) -> ModpScalar {
        ModpScalar { be }
    }
}

impl GroupTypes for ModpGroup {
    type Scalar = ModpScalar;
    type Element = ModpElement;
}

impl VartimeWnafMultiExp for ModpGroup {
    type OddPowers = OddPowerArray<ModpElement>;

    fn vartime_odd_powers(&self, base: &ModpElement) -> Self::OddPowers {
        generic_odd_powers(self, base)
    }
    fn vartime_multi_exp_wnaf<T: AsRef<Self::OddPowers>>(
        &self,
        tables: &[T],
        terms: &[(usize, Wnaf)],
    ) -> ModpElement {
        // Straus over the odd powers; negative digits go to a second accumulator, inverted once
        // at the end (an inversion costs ~100 products here).
        let f = self.field();
        let len = terms.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
        let mut pos: Option<Elem> = None;
        let mut neg: Option<Elem> = None;
        for bit in (0..len).rev() {
            for acc in [&mut pos, &mut neg] {
                if let Some(a) = acc.as_mut() {
                    *a = f.sqr(a);
                }
            }
            for (k, w) in terms {
                let d = w.digit(bit);
                let Some(t) = tables.get(*k).filter(|_| d != 0) else {
                    continue;
                };
                let p = &t.as_ref().0[usize::from(d.unsigned_abs() / 2)].0;
                let acc = if d > 0 { &mut pos } else { &mut neg };
                match acc.as_mut() {
                    Some(a) => f.mul_assign(a, p),
                    None => *acc = Some(p.clone()),
                }
            }
        }
        let pos = pos.unwrap_or_else(|| f.one());
        ModpElement(match neg {
            Some(n) => f.mul(&pos, &f.invert_vartime(&n)),
            None => pos,
        })
    }
}

impl VartimeManyUseBase for ModpGroup {
    type ManyUseTable = ModpFixedBase;

    fn vartime_many_use_table(&self, base: &ModpElement) -> ModpFixedBase {
        self.vartime_precompute_base(base)
    }
    fn vartime_exp_many_use(&self, table: &ModpFixedBase, e: &ModpScalar) -> ModpElement {
        self.vartime_exp_precomputed(table, e)
    }
}

impl PrimeOrderGroup for ModpGroup {
    type PrecomputedBase = ModpPreparedBase;
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
        ModpElement(self.field().one())
    }
    fn generator(&self) -> ModpElement {
        ModpElement(self.inner.g.clone())
    }
    fn op(&self, a: &ModpElement, b: &ModpElement) -> ModpElement {
        ModpElement(self.field().mul(&a.0, &b.0))
    }
    fn op_assign(&self, a: &mut ModpElement, b: &ModpElement) {
        self.field().mul_assign(&mut a.0, &b.0);
    }
    fn invert(&self, a: &ModpElement) -> ModpElement {
        ModpElement(self.field().invert(&a.0))
    }

    fn exp(&self, base: &ModpElement, e: &ModpScalar) -> ModpElement {
        ModpElement(self.field().pow_ct(&base.0, &e.be))
    }
    fn exp_generator(&self, e: &ModpScalar) -> ModpElement {
        ModpElement(self.field().pow_fixed(self.comb(), &e.be))
    }
    fn exp_generator_i64(&self, x: i64, bound: u64) -> ModpElement {
        ModpElement(self.field().pow_fixed_i64(self.comb(), x, bound))
    }
    fn precompute_base(&self, base: &ModpElement) -> ModpPreparedBase {
        ModpPreparedBase(self.field().base_comb(&base.0, self.inner.q_len))
    }
    fn exp_precomputed(&self, table: &ModpPreparedBase, e: &ModpScalar) -> ModpElement {
        ModpElement(self.field().pow_comb(&table.0, &e.be))
    }

    fn vartime_exp(&self, base: &ModpElement, e: &ModpScalar) -> ModpElement {
        // Called from outside rayon's pool (one decryption at a time), a full-width exponent
        // is split over two threads: the squaring chain on one, the products on the other.
        // Inside the pool (many decryptions in parallel) every thread is busy, and the
        // single-threaded sliding window does fewer products.
        if rayon::current_thread_index().is_none()
            && rayon::current_num_threads() > 1
            && e.be.len() >= SPLIT_MIN_EXP_BYTES
        {
            ModpElement(self.field().pow_vartime_split(&base.0, &e.be))
        } else {
            ModpElement(self.field().pow_vartime(&base.0, &e.be))
        }
    }
    fn vartime_precompute_base(&self, base: &ModpElement) -> ModpFixedBase {
        let f = self.field();
        let mut powers = Vec::with_capacity(self.inner.digits);
        let mut b = base.0.clone();
        for _ in 0..self.inner.digits {
            powers.push(b.clone());
            for _ in 0..4 {
                b = f.sqr(&b);
            }
        }
        ModpFixedBase { powers }
    }
    fn vartime_exp_precomputed(&self, table: &ModpFixedBase, e: &ModpScalar) -> ModpElement {
        let f = self.field();
        // Buckets B_d = ∏_{i: digit_i = d} base^{16^i}; result = ∏_d B_d^d by running products.
        let mut buckets: Vec<Option<Elem>> = vec![None; 16];
        for (nib, power) in nibbles_le(&e.be).zip(&table.powers) {
            if nib != 0 {
                let slot = &mut buckets[nib as usize];
                match slot.as_mut() {
                    Some(acc) => f.mul_assign(acc, power),
                    None => *slot = Some(power.clone()),
                }
            }
        }
        let mut running: Option<Elem> = None;
        let mut total: Option<Elem> = None;
        for bucket in buckets.into_iter().skip(1).rev() {
            if let Some(b) = bucket {
                match running.as_mut() {
                    Some(r) => f.mul_assign(r, &b),
                    None => running = Some(b),
                }
            }
            if let Some(r) = &running {
                match total.as_mut() {
                    Some(t) => f.mul_assign(t, r),
                    None => total = Some(r.clone()),
                }
            }
        }
        ModpElement(total.unwrap_or_else(|| f.one()))
    }
    fn vartime_exp_generator_i64(&self, e: i64) -> ModpElement {
        // The comb is fast for small exponents; its timing reveals only the bit length of |e|.
        self.exp_generator_i64(e, 0)
    }
    fn vartime_multi_exp_i64<'a, I>(&self, terms: I) -> ModpElement
    where
        I: IntoIterator<Item = (&'a ModpElement, i64)>,
    {
        let f = self.field();
        let terms: Vec<(&Elem, i64)> = terms
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
        let mut pos: Option<Elem> = None;
        let mut neg: Option<Elem> = None;
        for bit in (0..top).rev() {
            for acc in [&mut pos, &mut neg] {
                if let Some(a) = acc.as_mut() {
                    *a = f.sqr(a);
                }
            }
            for (b, e) in &terms {
                if (e.unsigned_abs() >> bit) & 1 == 1 {
                    let acc = if *e < 0 { &mut neg } else { &mut pos };
                    match acc.as_mut() {
                        Some(a) => f.mul_assign(a, b),
                        None => *acc = Some((*b).clone()),
                    }
                }
            }
        }
        let pos = pos.unwrap_or_else(|| f.one());
        ModpElement(match neg {
            Some(n) => f.mul(&pos, &f.invert_vartime(&n)),
            None => pos,
        })
    }

    fn random_scalar<R: CryptoRngCore + ?Sized>(&self, rng: &mut R) -> ModpScalar {
        // 128 extra bits make the bias of the reduction negligible (< 2^-128).
        let mut wide = vec![0u8; self.inner.q_len + 16];
        rng.fill_bytes(&mut wide);
        let s = self.scalar(self.inner.scalars.reduce(&wide));
        wide.zeroize();
        s
    }
    fn scalar_from_i64(&self, v: i64) -> ModpScalar {
        self.scalar(self.inner.scalars.of_i64(v))
    }
    fn scalar_add(&self, a: &ModpScalar, b: &ModpScalar) -> ModpScalar {
        self.scalar(self.inner.scalars.add(&a.be, &b.be))
    }
    fn scalar_sub(&self, a: &ModpScalar, b: &ModpScalar) -> ModpScalar {
        self.scalar(self.inner.scalars.sub(&a.be, &b.be))
    }
    fn scalar_mul(&self, a: &ModpScalar, b: &ModpScalar) -> ModpScalar {
        self.scalar(self.inner.scalars.mul(&a.be, &b.be))
    }
    fn scalar_neg(&self, a: &ModpScalar) -> ModpScalar {
        self.scalar(self.inner.scalars.neg(&a.be))
    }
    fn scalar_invert(&self, a: &ModpScalar) -> Result<ModpScalar, GroupError> {
        self.inner
            .scalars
            .invert(&a.be)
            .map(|be| self.scalar(be))
            .ok_or(GroupError::NotInvertible)
    }
    fn scalar_inner_product_i64<'a, I>(&self, terms: I) -> ModpScalar
    where
        I: IntoIterator<Item = (&'a ModpScalar, i64)>,
    {
        let terms = terms.into_iter().map(|(s, y)| (s.be.as_slice(), y));
        self.scalar(self.inner.scalars.inner_product_i64(terms))
    }

    fn element_to_bytes(&self, e: &ModpElement) -> Vec<u8> {
        self.field().to_be(&e.0)
    }
    fn element_from_bytes(&self, bytes: &[u8]) -> Result<ModpElement, GroupError> {
        if bytes.len() != self.inner.p_len {
            return Err(GroupError::InvalidLength {
                expected: self.inner.p_len,
                got: bytes.len(),
            });
        }
        if bytes.iter().all(|&b| b == 0) {
            return Err(GroupError::InvalidElement);
        }
        let f = self.field();
        match f.decode(bytes) {
            Some(v) if f.is_residue(&v) => Ok(ModpElement(v)),
            _ => Err(GroupError::InvalidElement),
        }
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
        if !self.inner.scalars.is_canonical(bytes) {
            return Err(GroupError::NonCanonicalScalar);
        }
        Ok(self.scalar(bytes.to_vec()))
    }

    fn vartime_fingerprints(&self, elements: &[ModpElement]) -> Vec<u64> {
        // The low 64 bits of the canonical residue (a normal form, independent of the
        // arithmetic's internal representation, so cached discrete-log tables stay valid).
        elements
            .iter()
            .map(|e| self.field().low_u64(&e.0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;

    fn big(be: &[u8]) -> BigUint {
        BigUint::from_bytes_be(be)
    }

    #[test]
    fn standard_groups_have_expected_sizes() {
        let g = ModpGroup::rfc3526_2048();
        assert_eq!(g.element_len(), 256);
        assert_eq!(g.scalar_len(), 256);
        assert_eq!(g.security_bits(), 112);
        let g3 = ModpGroup::rfc3526_3072();
        assert_eq!(g3.element_len(), 384);
        assert_eq!(g3.security_bits(), 128);
        let t = ModpGroup::insecure_test_group();
        assert_eq!(t.element_len(), 32);
        // g = 4 has order q: g^q = 1 and g != 1.
        let p = big(&g.modulus_be());
        let q: BigUint = &p >> 1;
        assert_eq!(BigUint::from(4u8).modpow(&q, &p), BigUint::from(1u8));
        let f = g.field();
        assert!(f.is_residue(&f.small(4)));
        // p mod 8 = 7, so 2 is a residue too and p − 1 (= −1) is not (p = 3 mod 4).
        assert!(f.is_residue(&f.small(2)));
        let minus_one = (&p - 1u8).to_bytes_be();
        assert!(g.element_from_bytes(&minus_one).is_err());
        assert!(g.element_from_bytes(&g.modulus_be()).is_err());
        assert!(g.element_from_bytes(&[0u8; 256]).is_err());
    }

    #[test]
    fn residue_test_matches_euler_criterion_on_test_group() {
        let g = ModpGroup::insecure_test_group();
        let p = big(&g.modulus_be());
        let q: BigUint = &p >> 1;
        let f = g.field();
        for a in 1u64..200 {
            let euler = BigUint::from(a).modpow(&q, &p) == BigUint::from(1u8);
            assert_eq!(f.is_residue(&f.small(a)), euler, "a = {a}");
        }
    }

    /// Every exponentiation path against num-bigint's `modpow`, on all three moduli.
    #[test]
    fn exponentiations_match_a_reference() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for g in [
            ModpGroup::insecure_test_group(),
            ModpGroup::rfc3526_2048(),
            ModpGroup::rfc3526_3072(),
        ] {
            let p = big(&g.modulus_be());
            let q: BigUint = &p >> 1;
            let val = |e: &ModpElement| big(&g.element_to_bytes(e));
            let base = g.exp_generator(&g.random_scalar(&mut rng));
            let prepared = g.precompute_base(&base);
            for s in [
                g.random_scalar(&mut rng),
                g.scalar_from_i64(0),
                g.scalar_from_i64(1),
                g.scalar_from_i64(-1),
            ] {
                let e = big(&g.scalar_to_bytes(&s));
                let want = val(&base).modpow(&e, &p);
                assert_eq!(val(&g.exp(&base, &s)), want);
                assert_eq!(val(&g.exp_precomputed(&prepared, &s)), want);
                assert_eq!(val(&g.vartime_exp(&base, &s)), want);
                let t = g.vartime_precompute_base(&base);
                assert_eq!(val(&g.vartime_exp_precomputed(&t, &s)), want);
                assert_eq!(val(&g.exp_generator(&s)), BigUint::from(4u8).modpow(&e, &p));
            }
            for x in [
                0i64,
                1,
                -1,
                255,
                -255,
                70_000,
                i64::MAX,
                i64::MIN,
                -(1 << 40),
            ] {
                let e = if x < 0 {
                    &q - BigUint::from(x.unsigned_abs())
                } else {
                    BigUint::from(x as u64)
                };
                let want = BigUint::from(4u8).modpow(&e, &p);
                assert_eq!(val(&g.exp_generator_i64(x, 255)), want, "x = {x}");
                assert_eq!(val(&g.vartime_exp_generator_i64(x)), want, "x = {x}");
            }
            let inv = g.invert(&base);
            assert_eq!(g.op(&inv, &base), g.identity());
            assert_eq!(val(&inv), val(&base).modpow(&(&q - 1u8), &p));
        }
    }

    #[test]
    fn scalar_arithmetic_matches_a_reference() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        for g in [ModpGroup::insecure_test_group(), ModpGroup::rfc3526_2048()] {
            let q: BigUint = big(&g.modulus_be()) >> 1;
            let v = |s: &ModpScalar| big(&g.scalar_to_bytes(s));
            let a = g.random_scalar(&mut rng);
            let b = g.random_scalar(&mut rng);
            assert!(v(&a) < q);
            assert_eq!(v(&g.scalar_add(&a, &b)), (v(&a) + v(&b)) % &q);
            assert_eq!(v(&g.scalar_sub(&a, &b)), (&q + v(&a) - v(&b)) % &q);
            assert_eq!(v(&g.scalar_mul(&a, &b)), (v(&a) * v(&b)) % &q);
            assert_eq!(v(&g.scalar_neg(&a)), (&q - v(&a)) % &q);
            let inv = g.scalar_invert(&a).unwrap();
            assert_eq!((v(&inv) * v(&a)) % &q, BigUint::from(1u8));
            assert!(g.scalar_invert(&g.scalar_from_i64(0)).is_err());
            let ys = [3i64, -7, 0, i64::MAX, i64::MIN];
            let ss: Vec<ModpScalar> = ys.iter().map(|_| g.random_scalar(&mut rng)).collect();
            let got = g.scalar_inner_product_i64(ss.iter().zip(ys));
            let mut want = g.scalar_from_i64(0);
            for (s, y) in ss.iter().zip(ys) {
                want = g.scalar_add(&want, &g.scalar_mul(s, &g.scalar_from_i64(y)));
            }
            assert_eq!(got, want);
            let q_be = {
                let mut b = q.to_bytes_be();
                while b.len() < g.scalar_len() {
                    b.insert(0, 0);
                }
                b
            };
            assert_eq!(
                g.scalar_from_bytes(&q_be),
                Err(GroupError::NonCanonicalScalar)
            );
        }
    }

    #[test]
    fn scalar_debug_is_redacted() {
        let g = ModpGroup::insecure_test_group();
        let s = g.scalar_from_i64(0x1234_5678);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("12") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
