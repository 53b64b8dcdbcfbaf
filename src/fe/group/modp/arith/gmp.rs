//! The Z_p* arithmetic through GMP (rug), for the `gmp` feature: canonical residues, products
//! reduced by `mpz_mod`, and `mpz_powm_sec` for every secret exponent. GMP's multiplication and
//! reduction are not documented as constant time; only `mpz_powm_sec` is.

use rug::integer::Order;
use rug::Integer;

/// A residue modulo `p`, canonical (`0 <= a < p`).
pub type Elem = Integer;

/// The arithmetic modulo one safe prime `p = 2q + 1`.
pub struct Field {
    p: Integer,
    /// `q = (p − 1) / 2`, the order of the subgroup the group's elements live in.
    q: Integer,
    p_len: usize,
}

/// The generator's precomputation: `g` and the public correction `g^{-2^65}` of the shifted
/// small exponents.
pub struct FixedBase {
    g: Integer,
    g_shift_inv: Integer,
}

/// A prepared base: GMP's `mpz_powm_sec` takes no table, so this is the base itself.
pub struct BaseComb {
    base: Integer,
}

impl Field {
    /// The field of the odd safe prime `p` (big-endian).
    pub fn new(p_be: &[u8]) -> Option<Self> {
        let p = Integer::from_digits(p_be, Order::Msf);
        (p > 2 && p.is_odd()).then_some(Self {
            q: Integer::from(&p >> 1),
            p,
            p_len: p_be.len(),
        })
    }

    /// `mpz_powm_sec`, whose time depends on the exponent's limb count only (`e > 0`).
    fn powm_sec(&self, base: &Elem, e: &Integer) -> Elem {
        base.clone().secure_pow_mod(e, &self.p)
    }

    /// `1`.
    pub fn one(&self) -> Elem {
        Integer::from(1)
    }

    /// `a · b`.
    pub fn mul(&self, a: &Elem, b: &Elem) -> Elem {
        let mut r = Integer::from(a * b);
        r %= &self.p;
        r
    }

    /// `a ← a · b`.
    pub fn mul_assign(&self, a: &mut Elem, b: &Elem) {
        *a *= b;
        *a %= &self.p;
    }

    /// `a²`.
    pub fn sqr(&self, a: &Elem) -> Elem {
        let mut r = Integer::from(a.square_ref());
        r %= &self.p;
        r
    }

    /// The element with value `v` (big-endian), if `v < p`.
    pub fn decode(&self, bytes: &[u8]) -> Option<Elem> {
        let v = Integer::from_digits(bytes, Order::Msf);
        (v < self.p).then_some(v)
    }

    /// The element `v`.
    pub fn small(&self, v: u64) -> Elem {
        Integer::from(v) % &self.p
    }

    /// The canonical value, big-endian, `p_len` bytes.
    pub fn to_be(&self, a: &Elem) -> Vec<u8> {
        let raw: Vec<u8> = a.to_digits(Order::Msf);
        let mut out = vec![0u8; self.p_len.saturating_sub(raw.len())];
        out.extend_from_slice(&raw);
        out
    }

    /// The low 64 bits of the canonical value.
    pub fn low_u64(&self, a: &Elem) -> u64 {
        a.to_u64_wrapping()
    }

    /// Whether `a` is a quadratic residue (Jacobi symbol 1).
    pub fn is_residue(&self, a: &Elem) -> bool {
        a.jacobi(&self.p) == 1
    }

    /// `a^{-1}` (GMP's `mpz_invert`, variable time; 0 for 0).
    pub fn invert_vartime(&self, a: &Elem) -> Elem {
        a.clone().invert(&self.p).unwrap_or_default()
    }

    /// `a^{-1}`: GMP has no constant-time inversion; this is [`invert_vartime`](Self::invert_vartime).
    pub fn invert(&self, a: &Elem) -> Elem {
        self.invert_vartime(a)
    }

    /// `base^e` for a secret exponent `e < q` (big-endian) and a base of order `q`:
    /// `mpz_powm_sec` with the exponent `e + q`, which is positive and has the same limb count
    /// as `q` for every `e` (so neither a zero nor a short exponent shows in the time).
    pub fn pow_ct(&self, base: &Elem, e: &[u8]) -> Elem {
        let e = Integer::from_digits(e, Order::Msf) + &self.q;
        self.powm_sec(base, &e)
    }

    /// `base^e` for a public exponent (big-endian).
    pub fn pow_vartime(&self, base: &Elem, e: &[u8]) -> Elem {
        let e = Integer::from_digits(e, Order::Msf);
        base.clone().pow_mod(&e, &self.p).unwrap_or_default()
    }

    /// The generator's precomputation (public work).
    pub fn fixed_base(&self, g: &Elem, _exp_len: usize) -> FixedBase {
        let g_inv = self.invert_vartime(g);
        FixedBase {
            g_shift_inv: self.pow_vartime(&g_inv, &(1u128 << 65).to_be_bytes()),
            g: g.clone(),
        }
    }

    /// `base^e` for a public exponent: GMP's `mpz_powm` is faster on one thread than this
    /// build's products would be on two, so this is [`pow_vartime`](Self::pow_vartime).
    pub fn pow_vartime_split(&self, base: &Elem, e: &[u8]) -> Elem {
        self.pow_vartime(base, e)
    }

    /// The prepared form of a public base (the base itself in this build).
    pub fn base_comb(&self, base: &Elem, _exp_len: usize) -> BaseComb {
        BaseComb { base: base.clone() }
    }

    /// `b^e` for a secret exponent: `mpz_powm_sec`, as [`pow_ct`](Self::pow_ct).
    pub fn pow_comb(&self, comb: &BaseComb, e: &[u8]) -> Elem {
        self.pow_ct(&comb.base, e)
    }

    /// `g^e` for a secret exponent: `mpz_powm_sec`.
    pub fn pow_fixed(&self, table: &FixedBase, e: &[u8]) -> Elem {
        self.pow_ct(&table.g, e)
    }

    /// `g^x` for a signed `x`: `g^{x + 2^65}` by `mpz_powm_sec` (the exponent lies in
    /// `(2^64, 2^66)`, two limbs for every `x`: a shift of `2^64` would leave negative `x` one
    /// limb, which the dudect test saw), times the public `g^{-2^65}`. `bound` is not needed.
    pub fn pow_fixed_i64(&self, table: &FixedBase, x: i64, _bound: u64) -> Elem {
        let e = Integer::from(i128::from(x) + (1i128 << 65));
        self.mul(&self.powm_sec(&table.g, &e), &table.g_shift_inv)
    }
}
