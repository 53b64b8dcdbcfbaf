//! Exponentiation modulo `p` on AVX-512 IFMA (52-bit multiply-accumulate), where the CPU has it.
//!
//! # Representation
//! A residue is held as `L = 8·V` limbs of 52 bits (`V` vectors of eight 64-bit lanes), in
//! Montgomery form for `R' = 2^{52·L}`: `a·R' mod p`, not necessarily below `p` but below `2p`.
//! `V = 1, 5, 8` for the 256-, 2048- and 3072-bit moduli (`R' = 2^416, 2^2080, 2^3328`), so
//! `4p < R'` in each case.
//!
//! # Almost Montgomery multiplication (Gueron–Krasnov, "Software implementation of modular
//! exponentiation, using advanced vector instructions architectures", WAIFI 2012)
//! For `a, b < 2p`, `amm(a, b) = (a·b + U·p) / R'` with `U < R'` chosen limb by limb so that the
//! division is exact: for each limb `a_i`, the accumulator gains `a_i·b` and `u_i·p`, with
//! `u_i = −(acc_0 · p^{−1}) mod 2^52`, so its lowest limb becomes a multiple of `2^52` and is
//! shifted out (its carry added to the next). The low and high 52-bit halves of each product
//! come from `vpmadd52luq` / `vpmadd52huq`; a lane collects at most `4·L` halves below `2^52`
//! (below `2^60`), so nothing overflows before the final carry propagation. The result is
//! `< a·b/R' + p < (4p/R') · p + p < 2p`: no final subtraction is needed, so every product runs
//! the same instructions whatever the values (constant time). Only the conversion back to the
//! 64-bit form subtracts `p` once, by a mask.
//!
//! # Conversions
//! In: the 64-bit Montgomery form `a·R` (`R = 2^{64·N}`) is repacked into 52-bit limbs and
//! multiplied by `K_in = 2^{2·52·L − 64·N} mod p`: `amm(a·R, K_in) = a·R'`. Out:
//! `amm(a·R', R mod p) = a·R`, reduced below `p` and repacked.
//!
//! The instructions are reached through `pulp`'s run-time-checked token types, so this crate
//! keeps `unsafe_code` forbidden; the whole exponentiation runs inside the token's
//! `vectorize`, which compiles it with the target features enabled.

use std::arch::x86_64::__m512i;

use super::{sliding_windows, window_be, Elem, Limbs, CT_WINDOW, MAX_LIMBS, VT_WINDOW};

pulp::simd_type! {
    /// AVX-512F with IFMA: a token that exists only when the CPU has both.
    pub struct Ifma {
        pub avx512f: "avx512f",
        pub avx512ifma: "avx512ifma",
    }
}

const MASK52: u64 = (1 << 52) - 1;
/// Most 52-bit limbs of a supported modulus (3072 bits: `V = 8`).
const MAX_L: usize = 64;

/// The IFMA form of the field modulo `p` (see the module docs).
pub struct IfmaField {
    token: Ifma,
    /// 64-bit limbs of the field's 64-bit form: 4, 32 or 48.
    n: usize,
    /// Vectors per residue: 1, 5 or 8.
    v: usize,
    p: [u64; MAX_L],
    /// `−p^{−1} mod 2^52`.
    k0: u64,
    /// `2^{2·52·L − 64·N} mod p`, 52-bit limbs.
    k_in: [u64; MAX_L],
    /// `R mod p = 2^{64·N} mod p`, 52-bit limbs.
    r64: [u64; MAX_L],
}

/// One exponentiation, as the job that `vectorize` compiles with the target features: its
/// `call` is inlined there (a closure is not reliably), and with it every product.
struct Pow<'a, const V: usize, const L: usize> {
    f: &'a IfmaField,
    base: &'a Elem,
    e: &'a [u8],
    /// Constant time (`pow_ct`) or variable time (`pow_vartime`).
    ct: bool,
}

impl<const V: usize, const L: usize> pulp::NullaryFnOnce for Pow<'_, V, L> {
    type Output = Elem;

    #[inline(always)]
    fn call(self) -> Elem {
        if self.ct {
            self.f.pow_ct_k::<V, L>(self.base, self.e)
        } else {
            self.f.pow_vartime_k::<V, L>(self.base, self.e)
        }
    }
}

/// `V` vectors from the first `8·V` limbs of `x`.
#[inline(always)]
fn load<const V: usize>(x: &[u64], zero: __m512i) -> [__m512i; V] {
    let mut out = [zero; V];
    for (k, o) in out.iter_mut().enumerate() {
        let mut lanes = [0u64; 8];
        lanes.copy_from_slice(&x[8 * k..8 * k + 8]);
        *o = pulp::cast(lanes);
    }
    out
}

/// The 52-bit limbs of a value given as 64-bit limbs (the first `n64` of them).
fn repack_52(x: &[u64], n64: usize) -> [u64; MAX_L] {
    let mut out = [0u64; MAX_L];
    for (k, o) in out.iter_mut().enumerate() {
        let bit = 52 * k;
        let (w, s) = (bit / 64, bit % 64);
        if w >= n64 {
            break;
        }
        let mut v = x[w] >> s;
        if s > 12 && w + 1 < n64 {
            v |= x[w + 1] << (64 - s);
        }
        *o = v & MASK52;
    }
    out
}

/// The 64-bit limbs of a value given as `l` 52-bit limbs (fits in `n64` limbs).
fn repack_64(x: &[u64], l: usize, n64: usize) -> Limbs {
    let mut out = [0u64; MAX_LIMBS];
    for (k, &limb) in x.iter().enumerate().take(l) {
        let bit = 52 * k;
        let (w, s) = (bit / 64, bit % 64);
        if w < n64 {
            out[w] |= limb << s;
        }
        if s > 12 && w + 1 < n64 {
            out[w + 1] |= limb >> (64 - s);
        }
    }
    out
}

impl IfmaField {
    /// The IFMA form of the field of `p` (`n` 64-bit limbs: 4, 32 or 48), if this CPU has
    /// AVX-512F and IFMA. From the 64-bit form: `n0 = −p^{−1} mod 2^64`, `r = R mod p`, and
    /// `r_times_two_pow(k) = R·2^k mod p` (all as 64-bit limbs).
    pub fn new(
        p: &Limbs,
        n: usize,
        n0: u64,
        r: &Limbs,
        r_times_two_pow: impl FnOnce(usize) -> Limbs,
    ) -> Option<Self> {
        let token = Ifma::try_new()?;
        let v = match n {
            4 => 1,
            32 => 5,
            48 => 8,
            _ => return None,
        };
        let l = 8 * v;
        Some(Self {
            token,
            n,
            v,
            p: repack_52(p, n),
            k0: n0 & MASK52,
            // K_in = 2^{2·52·L − 64·N} = R · 2^{2·52·L − 128·N} (the exponent is positive:
            // 52·L ≥ 64·N + 2).
            k_in: repack_52(&r_times_two_pow(2 * 52 * l - 128 * n), n),
            r64: repack_52(r, n),
        })
    }

    /// `base^e` for a secret exponent: fixed windows of 5 bits, a product for every window,
    /// every table read a full scan (as [`super::Field::pow_ct`]).
    pub fn pow_ct(&self, base: &Elem, e: &[u8]) -> Elem {
        self.run(base, e, true)
    }

    /// `base^e` for a public exponent: sliding windows of 6 bits over odd powers (as
    /// [`super::Field::pow_vartime`]).
    pub fn pow_vartime(&self, base: &Elem, e: &[u8]) -> Elem {
        self.run(base, e, false)
    }

    /// One exponentiation (constant time or not) at this field's width, inside the token's
    /// `vectorize`.
    fn run(&self, base: &Elem, e: &[u8], ct: bool) -> Elem {
        match self.v {
            1 => self.token.vectorize(Pow::<1, 8> {
                f: self,
                base,
                e,
                ct,
            }),
            5 => self.token.vectorize(Pow::<5, 40> {
                f: self,
                base,
                e,
                ct,
            }),
            _ => self.token.vectorize(Pow::<8, 64> {
                f: self,
                base,
                e,
                ct,
            }),
        }
    }

    /// `a · b / R'` for `a, b < 2p`: below `2p`, normalised limbs (module docs).
    #[inline(always)]
    fn amm<const V: usize, const L: usize>(&self, a: &[u64; L], b: &[u64; L]) -> [u64; L] {
        let f = self.token.avx512f;
        let ifma = self.token.avx512ifma;
        let zero = f._mm512_setzero_si512();
        let bv = load::<V>(&b[..], zero);
        let mv = load::<V>(&self.p[..L], zero);
        let (m0, k0) = (self.p[0], self.k0);
        let mut r = [zero; V];
        for &ai in a {
            let av = f._mm512_set1_epi64(ai as i64);
            for k in 0..V {
                r[k] = ifma._mm512_madd52lo_epu64(r[k], av, bv[k]);
            }
            let r0 = pulp::cast::<__m512i, [u64; 8]>(r[0])[0];
            let u = r0.wrapping_mul(k0) & MASK52;
            let uv = f._mm512_set1_epi64(u as i64);
            for k in 0..V {
                r[k] = ifma._mm512_madd52lo_epu64(r[k], uv, mv[k]);
            }
            // The lowest lane is now a multiple of 2^52: shift it out, keep its carry.
            let carry = (r0 + (u.wrapping_mul(m0) & MASK52)) >> 52;
            for k in 0..V - 1 {
                r[k] = f._mm512_alignr_epi64::<1>(r[k + 1], r[k]);
            }
            r[V - 1] = f._mm512_alignr_epi64::<1>(zero, r[V - 1]);
            r[0] = f._mm512_add_epi64(r[0], f._mm512_maskz_set1_epi64(1, carry as i64));
            // High halves belong one limb up, i.e. at the same index after the shift.
            for k in 0..V {
                r[k] = ifma._mm512_madd52hi_epu64(r[k], av, bv[k]);
                r[k] = ifma._mm512_madd52hi_epu64(r[k], uv, mv[k]);
            }
        }
        let mut out = [0u64; L];
        for k in 0..V {
            out[8 * k..8 * k + 8].copy_from_slice(&pulp::cast::<__m512i, [u64; 8]>(r[k]));
        }
        let mut c = 0u64;
        for x in out.iter_mut() {
            let s = *x + c;
            *x = s & MASK52;
            c = s >> 52;
        }
        out
    }

    /// `a·R'` from the 64-bit form `a·R` (module docs, "Conversions").
    #[inline(always)]
    fn enter<const V: usize, const L: usize>(&self, a: &Elem) -> [u64; L] {
        let x = repack_52(&a.0, self.n);
        let mut xl = [0u64; L];
        xl.copy_from_slice(&x[..L]);
        let mut k = [0u64; L];
        k.copy_from_slice(&self.k_in[..L]);
        self.amm::<V, L>(&xl, &k)
    }

    /// The 64-bit form `a·R`, below `p`, from `a·R'` (module docs, "Conversions").
    #[inline(always)]
    fn leave<const V: usize, const L: usize>(&self, x: &[u64; L]) -> Elem {
        let mut r = [0u64; L];
        r.copy_from_slice(&self.r64[..L]);
        let y = self.amm::<V, L>(x, &r);
        // y < 2p: subtract p unless that borrows, by a mask.
        let mut d = [0u64; L];
        let mut borrow = 0u64;
        for j in 0..L {
            let t = y[j].wrapping_sub(self.p[j]).wrapping_sub(borrow);
            d[j] = t & MASK52;
            borrow = t >> 63;
        }
        let keep = std::hint::black_box(0u64.wrapping_sub(borrow));
        for j in 0..L {
            d[j] = (y[j] & keep) | (d[j] & !keep);
        }
        Elem(repack_64(&d, L, self.n))
    }

    #[inline(always)]
    fn pow_ct_k<const V: usize, const L: usize>(&self, base: &Elem, e: &[u8]) -> Elem {
        let b = self.enter::<V, L>(base);
        let one = self.one::<V, L>();
        let mut table = [one; 1 << CT_WINDOW];
        table[1] = b;
        for i in 2..1 << CT_WINDOW {
            table[i] = self.amm::<V, L>(&table[i - 1], &b);
        }
        let windows = (8 * e.len()).div_ceil(CT_WINDOW);
        let mut acc = one;
        for w in (0..windows).rev() {
            if w + 1 != windows {
                for _ in 0..CT_WINDOW {
                    acc = self.amm::<V, L>(&acc, &acc);
                }
            }
            let d = window_be(e, w * CT_WINDOW, CT_WINDOW);
            let mut sel = [0u64; L];
            for (i, entry) in table.iter().enumerate() {
                let diff = (i as u32) ^ d;
                let mask =
                    std::hint::black_box((u64::from(diff).wrapping_sub(1) >> 63).wrapping_neg());
                for (s, &x) in sel.iter_mut().zip(entry) {
                    *s |= x & mask;
                }
            }
            acc = self.amm::<V, L>(&acc, &sel);
        }
        self.leave::<V, L>(&acc)
    }

    #[inline(always)]
    fn pow_vartime_k<const V: usize, const L: usize>(&self, base: &Elem, e: &[u8]) -> Elem {
        let bits = e
            .iter()
            .position(|&b| b != 0)
            .map_or(0, |i| 8 * (e.len() - i) - e[i].leading_zeros() as usize);
        let b = self.enter::<V, L>(base);
        if bits == 0 {
            return self.leave::<V, L>(&self.one::<V, L>());
        }
        let sq = self.amm::<V, L>(&b, &b);
        let mut odd = [b; 1 << (VT_WINDOW - 1)];
        for i in 1..1 << (VT_WINDOW - 1) {
            odd[i] = self.amm::<V, L>(&odd[i - 1], &sq);
        }
        let mut acc: Option<[u64; L]> = None;
        for step in sliding_windows(e, bits) {
            if let Some(a) = acc.as_mut() {
                for _ in 0..step.squarings {
                    *a = self.amm::<V, L>(a, a);
                }
            }
            if let Some(k) = step.odd {
                acc = Some(match acc {
                    Some(a) => self.amm::<V, L>(&a, &odd[k]),
                    None => odd[k],
                });
            }
        }
        let acc = acc.unwrap_or_else(|| self.one::<V, L>());
        self.leave::<V, L>(&acc)
    }

    /// `R' mod p` (below `2p`): `amm(R mod p, K_in)`, since `R mod p` is the 64-bit form's one.
    #[inline(always)]
    fn one<const V: usize, const L: usize>(&self) -> [u64; L] {
        let mut r = [0u64; L];
        r.copy_from_slice(&self.r64[..L]);
        let mut k = [0u64; L];
        k.copy_from_slice(&self.k_in[..L]);
        self.amm::<V, L>(&r, &k)
    }
}
