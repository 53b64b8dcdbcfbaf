//! Montgomery arithmetic modulo an odd prime `p` of 256, 2048 or 3072 bits (4, 32 or 48
//! 64-bit limbs), written for constant time: outside the functions named `vartime`, no branch
//! and no memory index depends on a value (only on public sizes).
//!
//! Elements are kept in Montgomery form `a·R mod p` (`R = 2^{64·N}`), fully reduced, so that
//! equal residues have equal limbs. The multiplication is finely integrated operand scanning
//! (FIOS, after crypto-bigint's `montgomery_multiply_inner`); the squaring computes each
//! cross product once and reduces by product scanning (FIPS), about 25 % fewer word products.
//!
//! Where the CPU has AVX-512 IFMA, [`Field::pow_ct`] and [`Field::pow_vartime`] run in the
//! 52-bit form of the `ifma` module instead, and convert back; the results are the same.

// Index loops mirror the textbook algorithms (and keep the bounds visible to the optimiser).
#![allow(clippy::needless_range_loop)]

use crypto_bigint::{BoxedUint, JacobiSymbol, NonZero, Odd, Uint};

/// Limbs of the largest supported modulus (3072 bits).
pub const MAX_LIMBS: usize = 48;

type Limbs = [u64; MAX_LIMBS];

/// A residue in Montgomery form; limbs above the modulus width are zero.
#[derive(Clone, PartialEq, Eq)]
pub struct Elem(Limbs);

impl std::fmt::Debug for Elem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Elem(..)")
    }
}

/// `(hi, lo)` of `a + b·c + d`.
#[inline(always)]
fn mac(a: u64, b: u64, c: u64, d: u64) -> u128 {
    u128::from(a) + u128::from(b) * u128::from(c) + u128::from(d)
}

/// Adds a 128-bit product into a 192-bit accumulator `(hi:lo)`.
#[inline(always)]
fn acc(lo: &mut u128, hi: &mut u64, t: u128) {
    let (s, c) = lo.overflowing_add(t);
    *lo = s;
    *hi += u64::from(c);
}

/// `t − p` if `top:t >= p`, else `t` (constant time; `top:t < 2p`).
#[inline(always)]
fn final_sub<const N: usize>(t: &[u64], top: u64, p: &[u64]) -> Limbs {
    let (t, p) = (&t[..N], &p[..N]);
    let mut d = [0u64; MAX_LIMBS];
    let mut borrow = 0u64;
    for j in 0..N {
        let (x, b1) = t[j].overflowing_sub(p[j]);
        let (x, b2) = x.overflowing_sub(borrow);
        d[j] = x;
        borrow = u64::from(b1 | b2);
    }
    // Keep t iff the whole subtraction borrowed (top:t < p).
    let (_, b) = top.overflowing_sub(borrow);
    // Opaque to the optimiser, so that the masked select below stays branch-free (a branch
    // here would be the classic Montgomery "extra reduction" timing leak).
    let keep = std::hint::black_box(0u64.wrapping_sub(u64::from(b)));
    let mut out = [0u64; MAX_LIMBS];
    for j in 0..N {
        out[j] = (t[j] & keep) | (d[j] & !keep);
    }
    out
}

/// Montgomery product `a·b·R^{-1} mod p` (FIOS).
fn mul_k<const N: usize>(a: &Limbs, b: &Limbs, p: &Limbs, n0: u64) -> Limbs {
    let (a, b, p) = (&a[..N], &b[..N], &p[..N]);
    let mut t = [0u64; MAX_LIMBS];
    let t = &mut t[..N];
    let mut meta = 0u128;
    for &xi in a {
        let axy = mac(t[0], xi, b[0], 0);
        let u = (axy as u64).wrapping_mul(n0);
        let um = u128::from(u) * u128::from(p[0]);
        let lo = u128::from(axy as u64) + u128::from(um as u64);
        let mut carry = (axy >> 64) + (um >> 64) + (lo >> 64);
        for j in 1..N {
            let axy = mac(t[j], xi, b[j], 0);
            let umc = u128::from(u) * u128::from(p[j]) + carry;
            let lo = u128::from(axy as u64) + u128::from(umc as u64);
            t[j - 1] = lo as u64;
            carry = (axy >> 64) + (umc >> 64) + (lo >> 64);
        }
        carry += meta;
        t[N - 1] = carry as u64;
        meta = carry >> 64;
    }
    final_sub::<N>(t, meta as u64, p)
}

/// Montgomery square `a²·R^{-1} mod p` (cross products once, FIPS reduction).
fn sqr_k<const N: usize>(a: &Limbs, p: &Limbs, n0: u64) -> Limbs {
    let (a, p) = (&a[..N], &p[..N]);
    let mut m = [0u64; MAX_LIMBS];
    let m = &mut m[..N];
    let mut r = [0u64; MAX_LIMBS];
    let (mut lo, mut hi) = (0u128, 0u64);
    for k in 0..2 * N {
        let start = if k >= N { k + 1 - N } else { 0 };
        let (mut slo, mut shi) = (0u128, 0u64);
        let mut i = start;
        while 2 * i < k {
            acc(&mut slo, &mut shi, u128::from(a[i]) * u128::from(a[k - i]));
            i += 1;
        }
        shi = (shi << 1) | (slo >> 127) as u64;
        slo <<= 1;
        acc(&mut lo, &mut hi, slo);
        hi += shi;
        if k % 2 == 0 {
            acc(
                &mut lo,
                &mut hi,
                u128::from(a[k / 2]) * u128::from(a[k / 2]),
            );
        }
        if k < N {
            for j in 0..k {
                acc(&mut lo, &mut hi, u128::from(m[j]) * u128::from(p[k - j]));
            }
            let mk = (lo as u64).wrapping_mul(n0);
            m[k] = mk;
            acc(&mut lo, &mut hi, u128::from(mk) * u128::from(p[0]));
        } else {
            for j in start..N {
                acc(&mut lo, &mut hi, u128::from(m[j]) * u128::from(p[k - j]));
            }
            r[k - N] = lo as u64;
        }
        lo = (lo >> 64) | (u128::from(hi) << 64);
        hi = 0;
    }
    final_sub::<N>(&r, lo as u64, p)
}

/// `out ← table[idx]`, reading every entry (constant time in `idx`).
fn select_k<const N: usize>(table: &[Elem], idx: u32) -> Elem {
    let mut out = [0u64; MAX_LIMBS];
    for (i, t) in table.iter().enumerate() {
        // mask = all ones iff i == idx, without a branch. The optimisation barrier keeps the
        // compiler from proving the mask is 0 or all ones and turning the masked copy into a
        // branch that reads only the selected entry (a cache-timing leak that the dudect test
        // in tests/modp_timing.rs showed on the 3 MB generator table).
        let diff = (i as u32) ^ idx;
        let mask = std::hint::black_box((u64::from(diff).wrapping_sub(1) >> 63).wrapping_neg());
        for (o, &v) in out[..N].iter_mut().zip(&t.0[..N]) {
            *o |= v & mask;
        }
    }
    Elem(out)
}

fn limbs_from_be(bytes: &[u8]) -> Option<Limbs> {
    if bytes.len() > 8 * MAX_LIMBS {
        return None;
    }
    let mut out = [0u64; MAX_LIMBS];
    for (i, chunk) in bytes.rchunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[8 - chunk.len()..].copy_from_slice(chunk);
        out[i] = u64::from_be_bytes(w);
    }
    Some(out)
}

/// `a < b` over the first `n` limbs, variable time (public values only).
fn lt_vartime(a: &Limbs, b: &Limbs, n: usize) -> bool {
    for j in (0..n).rev() {
        if a[j] != b[j] {
            return a[j] < b[j];
        }
    }
    false
}

/// Whether the canonical value `a` is a quadratic residue modulo the prime `p` (Jacobi symbol
/// `1`; variable time, for public values).
fn is_residue_k<const N: usize>(a: &Limbs, p: &Limbs) -> bool {
    let a = Uint::<N>::from_words(std::array::from_fn(|i| a[i]));
    let p: Option<Odd<Uint<N>>> =
        Odd::new(Uint::<N>::from_words(std::array::from_fn(|i| p[i]))).into();
    p.is_some_and(|p| matches!(a.jacobi_symbol_vartime(&p), JacobiSymbol::One))
}

/// Bit `i` of a big-endian byte string (0 beyond its length).
#[inline(always)]
fn bit_be(e: &[u8], i: usize) -> u32 {
    let byte = i / 8;
    if byte >= e.len() {
        return 0;
    }
    u32::from((e[e.len() - 1 - byte] >> (i % 8)) & 1)
}

/// Bits `[i, i + w)` of a big-endian byte string; which bytes are read depends only on `i`, `w`.
#[inline(always)]
fn window_be(e: &[u8], i: usize, w: usize) -> u32 {
    (0..w).fold(0, |d, b| d | (bit_be(e, i + b) << b))
}

/// Window width of the constant-time exponentiation.
const CT_WINDOW: usize = 5;
/// Window width of the variable-time sliding-window exponentiation.
const VT_WINDOW: usize = 6;

/// Rows of the signed small-exponent part of a [`FixedBase`]: enough windows for `|x| <= 2^63`.
const SMALL_ROWS: usize = 65_usize.div_ceil(CT_WINDOW);

/// A constant-time fixed-base (comb) table of one element `g`:
/// `rows[32·k + d] = g^{d·32^k}` for every 5-bit window `k` of an exponent, and the same for
/// `g^{-1}` over the first [`SMALL_ROWS`] windows (signed small exponents). An exponentiation
/// is one product per window, each factor read by a full scan of its row.
pub struct FixedBase {
    rows: Vec<Elem>,
    inv_rows: Vec<Elem>,
}

/// The arithmetic modulo one prime.
pub struct Field {
    n: usize,
    p: Limbs,
    n0: u64,
    one: Elem,
    r2: Limbs,
    r3: Limbs,
    p_len: usize,
    p_odd: Odd<BoxedUint>,
    /// The AVX-512 IFMA form of the field, where the CPU has it: exponentiations run there.
    #[cfg(target_arch = "x86_64")]
    ifma: Option<ifma::IfmaField>,
}

macro_rules! dispatch {
    ($n:expr, $f:ident :: <N> ( $($arg:expr),* $(,)? )) => {
        match $n {
            4 => $f::<4>($($arg),*),
            32 => $f::<32>($($arg),*),
            _ => $f::<48>($($arg),*),
        }
    };
}

impl Field {
    /// The field of the odd prime `p` (big-endian; at most 3072 bits).
    pub fn new(p_be: &[u8]) -> Option<Self> {
        let p = limbs_from_be(p_be)?;
        let used = p.iter().rposition(|&w| w != 0)? + 1;
        let n = [4, 32, 48].into_iter().find(|&n| n >= used)?;
        let bits = 64 * n as u32;
        let p_big = BoxedUint::from_words(p[..n].iter().copied());
        let p_odd: Odd<BoxedUint> = Option::from(Odd::new(p_big.clone()))?;
        let p_nz: NonZero<BoxedUint> = Option::from(NonZero::new(p_big))?;
        // n0 = −p^{−1} mod 2^64 by Newton iteration.
        let mut inv = 1u64;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p[0].wrapping_mul(inv)));
        }
        let to_limbs = |b: &BoxedUint| {
            let mut out = [0u64; MAX_LIMBS];
            out[..n].copy_from_slice(&b.as_words()[..n]);
            out
        };
        // R mod p = (2^bits − 1 mod p) + 1 (p < R, p odd, so no wrap issue for p > 1).
        let r1 = BoxedUint::max(bits)
            .rem_vartime(&p_nz)
            .wrapping_add(BoxedUint::one_with_precision(bits));
        let r2 = r1.mul_mod(&r1, &p_nz);
        let r3 = r2.mul_mod(&r1, &p_nz);
        let n0 = inv.wrapping_neg();
        #[cfg(target_arch = "x86_64")]
        let ifma = ifma::IfmaField::new(&p, n, n0, &to_limbs(&r1), |k| {
            let mut t = r1.clone();
            for _ in 0..k {
                t = t.double_mod(&p_nz);
            }
            to_limbs(&t)
        });
        Some(Self {
            n,
            p,
            n0,
            one: Elem(to_limbs(&r1)),
            r2: to_limbs(&r2),
            r3: to_limbs(&r3),
            p_len: p_be.len(),
            p_odd,
            #[cfg(target_arch = "x86_64")]
            ifma,
        })
    }

    /// The field without its IFMA form (tests compare the two).
    #[cfg(all(test, target_arch = "x86_64"))]
    fn without_ifma(mut self) -> Self {
        self.ifma = None;
        self
    }

    /// Whether exponentiations run on AVX-512 IFMA here.
    pub fn uses_ifma(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.ifma.is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `1` (that is, `R mod p`).
    pub fn one(&self) -> Elem {
        self.one.clone()
    }

    /// `a · b`.
    pub fn mul(&self, a: &Elem, b: &Elem) -> Elem {
        Elem(dispatch!(self.n, mul_k::<N>(&a.0, &b.0, &self.p, self.n0)))
    }

    /// `a²`.
    pub fn sqr(&self, a: &Elem) -> Elem {
        Elem(dispatch!(self.n, sqr_k::<N>(&a.0, &self.p, self.n0)))
    }

    /// `table[idx]`, reading every entry.
    pub fn select(&self, table: &[Elem], idx: u32) -> Elem {
        dispatch!(self.n, select_k::<N>(table, idx))
    }

    /// The element with canonical value `v` (big-endian), if `v < p`.
    pub fn decode(&self, bytes: &[u8]) -> Option<Elem> {
        let v = limbs_from_be(bytes)?;
        if v[self.n..].iter().any(|&w| w != 0) || !lt_vartime(&v, &self.p, self.n) {
            return None;
        }
        Some(Elem(dispatch!(
            self.n,
            mul_k::<N>(&v, &self.r2, &self.p, self.n0)
        )))
    }

    /// The element `v` (`v < p`).
    pub fn small(&self, v: u64) -> Elem {
        let mut l = [0u64; MAX_LIMBS];
        l[0] = v;
        Elem(dispatch!(
            self.n,
            mul_k::<N>(&l, &self.r2, &self.p, self.n0)
        ))
    }

    fn canonical(&self, a: &Elem) -> Limbs {
        let mut one = [0u64; MAX_LIMBS];
        one[0] = 1;
        dispatch!(self.n, mul_k::<N>(&a.0, &one, &self.p, self.n0))
    }

    /// The canonical value, big-endian, `p_len` bytes.
    pub fn to_be(&self, a: &Elem) -> Vec<u8> {
        let c = self.canonical(a);
        let mut out = vec![0u8; self.p_len];
        for (i, b) in out.iter_mut().rev().enumerate() {
            *b = (c[i / 8] >> (8 * (i % 8))) as u8;
        }
        out
    }

    /// The low 64 bits of the canonical value.
    pub fn low_u64(&self, a: &Elem) -> u64 {
        self.canonical(a)[0]
    }

    /// `a^{-1}` (variable time; `a ≠ 0`, else 0).
    pub fn invert_vartime(&self, a: &Elem) -> Elem {
        // (aR)^{-1} = a^{-1}R^{-1}; times R³ with one Montgomery product gives a^{-1}R.
        let x = BoxedUint::from_words(a.0[..self.n].iter().copied());
        let inv: Option<BoxedUint> = x.invert_odd_mod_vartime(&self.p_odd).into();
        self.raw_times_r3(inv)
    }

    /// `a^{-1}` (constant time; `a ≠ 0`, else 0).
    pub fn invert(&self, a: &Elem) -> Elem {
        let x = BoxedUint::from_words(a.0[..self.n].iter().copied());
        let inv: Option<BoxedUint> = x.invert_odd_mod(&self.p_odd).into();
        self.raw_times_r3(inv)
    }

    fn raw_times_r3(&self, v: Option<BoxedUint>) -> Elem {
        let mut l = [0u64; MAX_LIMBS];
        if let Some(v) = v {
            l[..self.n].copy_from_slice(&v.as_words()[..self.n]);
        }
        Elem(dispatch!(
            self.n,
            mul_k::<N>(&l, &self.r3, &self.p, self.n0)
        ))
    }

    /// `base^e` for a secret exponent `e` (big-endian): fixed windows of 5 bits, every window
    /// multiplies (by 1 for a zero digit), every table read scans the whole table. The time
    /// depends only on `e.len()`.
    pub fn pow_ct(&self, base: &Elem, e: &[u8]) -> Elem {
        #[cfg(target_arch = "x86_64")]
        if let Some(f) = &self.ifma {
            return f.pow_ct(base, e);
        }
        let mut table = Vec::with_capacity(1 << CT_WINDOW);
        table.push(self.one());
        table.push(base.clone());
        for i in 2..1 << CT_WINDOW {
            let next = self.mul(&table[i - 1], base);
            table.push(next);
        }
        let windows = (8 * e.len()).div_ceil(CT_WINDOW);
        let mut acc = self.one();
        for k in (0..windows).rev() {
            if k + 1 != windows {
                for _ in 0..CT_WINDOW {
                    acc = self.sqr(&acc);
                }
            }
            let d = window_be(e, k * CT_WINDOW, CT_WINDOW);
            acc = self.mul(&acc, &self.select(&table, d));
        }
        acc
    }

    /// Whether `a` is a quadratic residue (variable time, for public values).
    pub fn is_residue(&self, a: &Elem) -> bool {
        let c = self.canonical(a);
        dispatch!(self.n, is_residue_k::<N>(&c, &self.p))
    }

    /// `a ← a · b`.
    pub fn mul_assign(&self, a: &mut Elem, b: &Elem) {
        *a = self.mul(a, b);
    }

    /// Builds the comb table of `g` for exponents of `exp_len` bytes (public work).
    pub fn fixed_base(&self, g: &Elem, exp_len: usize) -> FixedBase {
        let windows = (8 * exp_len).div_ceil(CT_WINDOW).max(SMALL_ROWS);
        let build = |base: &Elem, count: usize| {
            let mut rows = Vec::with_capacity(count << CT_WINDOW);
            let mut b = base.clone();
            for _ in 0..count {
                let mut acc = self.one();
                for _ in 0..1 << CT_WINDOW {
                    rows.push(acc.clone());
                    acc = self.mul(&acc, &b);
                }
                // acc = b^32, the next row's base.
                b = acc;
            }
            rows
        };
        FixedBase {
            rows: build(g, windows),
            inv_rows: build(&self.invert_vartime(g), SMALL_ROWS),
        }
    }

    /// `g^e` for a secret exponent `e` (big-endian, at most the table's length): one product
    /// and one full row scan per window, zero digits included. The time depends only on the
    /// table.
    pub fn pow_fixed(&self, table: &FixedBase, e: &[u8]) -> Elem {
        let mut acc = self.one();
        for (k, row) in table.rows.chunks_exact(1 << CT_WINDOW).enumerate() {
            let d = window_be(e, k * CT_WINDOW, CT_WINDOW);
            acc = self.mul(&acc, &self.select(row, d));
        }
        acc
    }

    /// `g^x` for a signed `x` with `|x| <= bound`: as many windows as `bound` has (a public
    /// count), each a scan of the `g` row and of the `g^{-1}` row, the sign chosen by a masked
    /// select. If `|x| > bound` the result is still right, but the window count reveals it.
    pub fn pow_fixed_i64(&self, table: &FixedBase, x: i64, bound: u64) -> Elem {
        let m = bound.max(x.unsigned_abs());
        let windows = ((64 - m.leading_zeros()) as usize)
            .div_ceil(CT_WINDOW)
            .min(SMALL_ROWS);
        let mag = x.unsigned_abs();
        let negative = (x as u64 >> 63) as u32;
        let rows = table.rows.chunks_exact(1 << CT_WINDOW);
        let inv_rows = table.inv_rows.chunks_exact(1 << CT_WINDOW);
        let mut acc = self.one();
        for (k, (row, inv_row)) in rows.zip(inv_rows).take(windows).enumerate() {
            let d = ((mag >> (k * CT_WINDOW)) & ((1 << CT_WINDOW) - 1)) as u32;
            let pair = [self.select(row, d), self.select(inv_row, d)];
            acc = self.mul(&acc, &self.select(&pair, negative));
        }
        acc
    }

    /// `base^e` for a public exponent (big-endian) on two threads: one walks the squaring
    /// chain `base^{8^k}` and hands every power whose radix-8 digit `d_k` is non-zero to the
    /// other (rayon's `join`), which multiplies it into the bucket `B_{d_k}`; at the end
    /// `∏_d B_d^d` costs 14 products. The chain's squarings are the only sequential work, so
    /// the latency is about that of `bits(e)` squarings instead of `bits(e)` squarings plus
    /// a product per window. If no second thread is free, the consumer runs after the
    /// producer on the same thread (the producer never waits), with the same result.
    pub fn pow_vartime_split(&self, base: &Elem, e: &[u8]) -> Elem {
        // On IFMA one thread's products are cheaper than the split's hand-over.
        if self.uses_ifma() {
            return self.pow_vartime(base, e);
        }
        const W: usize = 3;
        let digits = (8 * e.len()).div_ceil(W);
        let (tx, rx) = std::sync::mpsc::channel::<(u32, Elem)>();
        let ((), buckets) = rayon::join(
            move || {
                let mut x = base.clone();
                for k in 0..digits {
                    let d = window_be(e, k * W, W);
                    if d != 0 && tx.send((d, x.clone())).is_err() {
                        return;
                    }
                    if k + 1 != digits {
                        for _ in 0..W {
                            x = self.sqr(&x);
                        }
                    }
                }
            },
            move || {
                let mut buckets: Vec<Option<Elem>> = vec![None; 1 << W];
                for (d, x) in rx {
                    let slot = &mut buckets[d as usize];
                    match slot.as_mut() {
                        Some(b) => self.mul_assign(b, &x),
                        None => *slot = Some(x),
                    }
                }
                buckets
            },
        );
        // ∏_d B_d^d by running products, from the top digit down.
        let mut running: Option<Elem> = None;
        let mut total: Option<Elem> = None;
        for bucket in buckets.into_iter().skip(1).rev() {
            if let Some(b) = bucket {
                match running.as_mut() {
                    Some(r) => self.mul_assign(r, &b),
                    None => running = Some(b),
                }
            }
            if let Some(r) = &running {
                match total.as_mut() {
                    Some(t) => self.mul_assign(t, r),
                    None => total = Some(r.clone()),
                }
            }
        }
        total.unwrap_or_else(|| self.one())
    }

    /// `base^e` for a public exponent (big-endian): sliding windows of 6 bits over odd powers.
    pub fn pow_vartime(&self, base: &Elem, e: &[u8]) -> Elem {
        #[cfg(target_arch = "x86_64")]
        if let Some(f) = &self.ifma {
            return f.pow_vartime(base, e);
        }
        let bits = e
            .iter()
            .position(|&b| b != 0)
            .map_or(0, |i| 8 * (e.len() - i) - e[i].leading_zeros() as usize);
        if bits == 0 {
            return self.one();
        }
        let sq = self.sqr(base);
        let mut odd = vec![base.clone()];
        for i in 1..1 << (VT_WINDOW - 1) {
            let next = self.mul(&odd[i - 1], &sq);
            odd.push(next);
        }
        let mut acc: Option<Elem> = None;
        for step in sliding_windows(e, bits) {
            if let Some(a) = acc.as_mut() {
                for _ in 0..step.squarings {
                    *a = self.sqr(a);
                }
            }
            if let Some(k) = step.odd {
                acc = Some(match acc {
                    Some(a) => self.mul(&a, &odd[k]),
                    None => odd[k].clone(),
                });
            }
        }
        acc.unwrap_or_else(|| self.one())
    }
}

/// One step of a sliding-window exponentiation by a public exponent: square the accumulator
/// `squarings` times (once it is set), then multiply it by the odd power `base^{2·odd + 1}`.
struct WindowStep {
    squarings: usize,
    odd: Option<usize>,
}

/// The windows of width at most [`VT_WINDOW`] of the public exponent `e` (big-endian, `bits`
/// significant bits), most significant first: each starts and ends on a set bit, and the zero
/// bits between them become squarings (variable time).
fn sliding_windows(e: &[u8], bits: usize) -> Vec<WindowStep> {
    let mut steps = Vec::new();
    let mut pending = 0;
    let mut i = bits as isize - 1;
    while i >= 0 {
        if bit_be(e, i as usize) == 0 {
            pending += 1;
            i -= 1;
            continue;
        }
        let mut j = (i - VT_WINDOW as isize + 1).max(0);
        while bit_be(e, j as usize) == 0 {
            j += 1;
        }
        let len = (i - j + 1) as usize;
        let val = window_be(e, j as usize, len) as usize;
        steps.push(WindowStep {
            squarings: pending + len,
            odd: Some(val >> 1),
        });
        pending = 0;
        i = j - 1;
    }
    if pending > 0 {
        steps.push(WindowStep {
            squarings: pending,
            odd: None,
        });
    }
    steps
}

mod comb;
pub use comb::BaseComb;
#[cfg(target_arch = "x86_64")]
mod ifma;

#[cfg(test)]
mod tests;
