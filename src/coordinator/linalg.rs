//! Exact linear algebra over a prime field `F_p`, for the rank tracker of the key policy and for
//! the leakage analysis.
//!
//! Key vectors are integer vectors; what matters for FEIP is their rank over the rationals `Q`
//! (a server can combine issued keys with rational coefficients, reduced modulo the group order).
//! We compute over `F_p` for a random 60-bit prime `p` instead of over `Q` (no growth of
//! numerators), and that is sound:
//!
//! - `rank_p(Y) <= rank_Q(Y)` always (a vanishing `r × r` minor over `Q` vanishes mod `p`).
//! - `rank_p(Y) < rank_Q(Y)` only if `p` divides one particular non-zero minor `D` of size
//!   `r = rank_Q(Y)`. By Hadamard, `|D| <= (√r · Y_max)^r`, so `D` has at most
//!   `log2|D| / 60` prime factors of 60 bits. The prime is drawn uniformly from the roughly
//!   `2^54` primes in `[2^60, 2^61)` and kept secret, so an adversary choosing key vectors cannot
//!   aim at it; for `r = 1024`, `Y_max = 2^16` the chance of a miss is below `2^-45` per
//!   tracker. (A fixed public prime such as `2^61 − 1` would *not* be sound: a server could pick
//!   vectors whose minors are all multiples of it.)
//! - Values recovered through `F_p` are exact whatever the rank: if `e_i ≡ Σ c_j y_j (mod p)`
//!   then `x_i ≡ Σ c_j <y_j, x> (mod p)`, and `|x_i| < p / 2` makes the centred residue `x_i`.
//!
//! Arithmetic is Montgomery multiplication with `R = 2^64`.

use rand_core::RngCore;

/// The prime field `F_p`, `2^60 <= p < 2^61`, in Montgomery form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PrimeField {
    p: u64,
    /// `-p^{-1} mod 2^64`.
    p_neg_inv: u64,
    /// `R^2 mod p`.
    r2: u64,
}

fn mulmod_u128(a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(m)) as u64
}

fn powmod_u128(mut a: u64, mut e: u64, m: u64) -> u64 {
    let mut acc = 1 % m;
    a %= m;
    while e > 0 {
        if e & 1 == 1 {
            acc = mulmod_u128(acc, a, m);
        }
        a = mulmod_u128(a, a, m);
        e >>= 1;
    }
    acc
}

/// Deterministic Miller–Rabin for 64-bit integers: the first twelve primes as bases are a proven
/// witness set for every `n < 3.3 · 10^24`.
pub(crate) fn is_prime_u64(n: u64) -> bool {
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for &b in &BASES {
        if n.is_multiple_of(b) {
            return n == b;
        }
    }
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'bases: for &a in &BASES {
        let mut x = powmod_u128(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mulmod_u128(x, x, n);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

impl PrimeField {
    /// A field for a uniformly random prime in `[2^60, 2^61)`.
    pub(crate) fn random<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        loop {
            let candidate = (1u64 << 60) | (rng.next_u64() & ((1u64 << 60) - 1)) | 1;
            if is_prime_u64(candidate) {
                return Self::new(candidate);
            }
        }
    }

    /// The field for an odd prime `p < 2^62` (not checked).
    pub(crate) fn new(p: u64) -> Self {
        // Newton iteration for p^{-1} mod 2^64 (each step doubles the correct low bits).
        let mut inv = p;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p.wrapping_mul(inv)));
        }
        let r = ((1u128 << 64) % u128::from(p)) as u64;
        Self {
            p,
            p_neg_inv: inv.wrapping_neg(),
            r2: mulmod_u128(r, r, p),
        }
    }

    /// The modulus.
    #[cfg(test)]
    pub(crate) fn modulus(&self) -> u64 {
        self.p
    }

    #[inline]
    fn redc(&self, t: u128) -> u64 {
        let m = (t as u64).wrapping_mul(self.p_neg_inv);
        let u = ((t + u128::from(m) * u128::from(self.p)) >> 64) as u64;
        if u >= self.p {
            u - self.p
        } else {
            u
        }
    }

    /// `a · b` (Montgomery form in and out).
    #[inline]
    pub(crate) fn mul(&self, a: u64, b: u64) -> u64 {
        self.redc(u128::from(a) * u128::from(b))
    }

    /// `a - b`.
    #[inline]
    pub(crate) fn sub(&self, a: u64, b: u64) -> u64 {
        if a >= b {
            a - b
        } else {
            a + self.p - b
        }
    }

    /// `a^{-1}` for `a ≠ 0` (Fermat).
    pub(crate) fn inv(&self, a: u64) -> u64 {
        let mut e = self.p - 2;
        let mut base = a;
        let mut acc = self.residue(1);
        while e > 0 {
            if e & 1 == 1 {
                acc = self.mul(acc, base);
            }
            base = self.mul(base, base);
            e >>= 1;
        }
        acc
    }

    /// The residue of `v` in Montgomery form.
    pub(crate) fn residue(&self, v: i64) -> u64 {
        let a = v.unsigned_abs() % self.p;
        let a = if v < 0 && a != 0 { self.p - a } else { a };
        self.mul(a, self.r2)
    }

    /// The centred representative in `(-p/2, p/2)` of a Montgomery-form residue.
    pub(crate) fn centered(&self, a: u64) -> i64 {
        let v = self.redc(u128::from(a));
        if v > self.p / 2 {
            -((self.p - v) as i64)
        } else {
            v as i64
        }
    }

    /// `v ← v - c · row`, entry-wise.
    #[inline]
    pub(crate) fn axpy_neg(&self, v: &mut [u64], c: u64, row: &[u64]) {
        for (a, &b) in v.iter_mut().zip(row) {
            if b != 0 {
                *a = self.sub(*a, self.mul(c, b));
            }
        }
    }
}

/// An echelon basis of a row space over `F_p`: row `k` has a `1` at its pivot column and `0` at
/// the pivot columns of rows `0..k`. Rows are appended and never modified, so the basis can be
/// rolled back to any earlier rank with [`truncate`](Self::truncate).
///
/// Rows may be *augmented*: columns `0..n` are the vector, columns `n..width` ride along (the
/// leakage analysis stores the inner product there); pivots are taken among the first `n` only.
#[derive(Debug, Clone)]
pub(crate) struct EchelonBasis {
    field: PrimeField,
    n: usize,
    width: usize,
    rows: Vec<Vec<u64>>,
    pivots: Vec<usize>,
}

/// What happened to a row offered to an [`EchelonBasis`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insertion {
    /// The row was independent and raised the rank.
    Independent,
    /// The row's first `n` columns lie in the span; its augmented part is consistent.
    Dependent,
    /// The row's first `n` columns lie in the span but its augmented part contradicts it.
    Inconsistent,
}

impl EchelonBasis {
    /// An empty basis of vectors with `n` coordinates plus `extra` augmented columns.
    pub(crate) fn new(field: PrimeField, n: usize, extra: usize) -> Self {
        Self {
            field,
            n,
            width: n + extra,
            rows: Vec::new(),
            pivots: Vec::new(),
        }
    }

    /// The field.
    pub(crate) fn field(&self) -> &PrimeField {
        &self.field
    }

    /// The rank.
    pub(crate) fn rank(&self) -> usize {
        self.rows.len()
    }

    /// Rolls back to the first `rank` rows.
    pub(crate) fn truncate(&mut self, rank: usize) {
        self.rows.truncate(rank);
        self.pivots.truncate(rank);
    }

    /// A dense Montgomery-form row (length `width`) from sparse integer terms.
    pub(crate) fn row_from_sparse(&self, terms: &[(usize, i64)], extra: &[i64]) -> Vec<u64> {
        let mut v = vec![0u64; self.width];
        for &(i, y) in terms {
            v[i] = self.field.residue(y);
        }
        for (slot, &e) in v[self.n..].iter_mut().zip(extra) {
            *slot = self.field.residue(e);
        }
        v
    }

    /// Reduces `v` against the basis and appends it if independent (normalised to pivot `1`).
    pub(crate) fn insert(&mut self, mut v: Vec<u64>) -> Insertion {
        debug_assert_eq!(v.len(), self.width);
        for (row, &p) in self.rows.iter().zip(&self.pivots) {
            let c = v[p];
            if c != 0 {
                self.field.axpy_neg(&mut v, c, row);
            }
        }
        match v[..self.n].iter().position(|&a| a != 0) {
            Some(p) => {
                let inv = self.field.inv(v[p]);
                for a in v.iter_mut() {
                    if *a != 0 {
                        *a = self.field.mul(*a, inv);
                    }
                }
                self.rows.push(v);
                self.pivots.push(p);
                Insertion::Independent
            }
            None if v[self.n..].iter().all(|&a| a == 0) => Insertion::Dependent,
            None => Insertion::Inconsistent,
        }
    }

    /// Turns the basis into reduced row echelon form (every row is `0` at every other row's
    /// pivot) and returns its rows and pivots. Parallel over rows.
    pub(crate) fn into_reduced(mut self) -> (Vec<Vec<u64>>, Vec<usize>) {
        use rayon::prelude::*;
        let field = self.field;
        // Row j is already 0 at pivots of rows < j; clear pivot p_j from rows < j, last first:
        // row j itself has then already been cleared of every later pivot.
        for j in (0..self.rows.len()).rev() {
            let p = self.pivots[j];
            let (before, rest) = self.rows.split_at_mut(j);
            let row_j = &rest[0];
            before.par_iter_mut().for_each(|row| {
                let c = row[p];
                if c != 0 {
                    field.axpy_neg(row, c, row_j);
                }
            });
        }
        (self.rows, self.pivots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn miller_rabin_matches_known_values() {
        let primes = [
            2u64,
            3,
            5,
            61,
            1_000_000_007,
            (1 << 61) - 1,
            18446744073709551557,
        ];
        let composites = [1u64, 4, 561, 1_000_000_007 * 3, 3215031751, (1 << 61) + 1];
        assert!(primes.iter().all(|&p| is_prime_u64(p)));
        assert!(composites.iter().all(|&c| !is_prime_u64(c)));
    }

    #[test]
    fn field_arithmetic_matches_u128_reference() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let f = PrimeField::random(&mut rng);
        let p = f.modulus();
        assert!(is_prime_u64(p) && p >> 60 == 1);
        for _ in 0..1000 {
            let a = (rng.next_u64() >> 2) as i64 * if rng.next_u32() & 1 == 0 { 1 } else { -1 };
            let b = (rng.next_u32() as i64) - (1 << 31);
            let want = ((i128::from(a) * i128::from(b)).rem_euclid(i128::from(p))) as u64;
            let got = f.mul(f.residue(a), f.residue(b));
            assert_eq!(f.redc(u128::from(got)), want);
            let inv = f.inv(f.residue(b));
            if b % (p as i64) != 0 {
                assert_eq!(f.mul(inv, f.residue(b)), f.residue(1));
            }
            assert_eq!(f.centered(f.residue(b)), b);
        }
    }

    #[test]
    fn rank_and_rollback() {
        let f = PrimeField::random(&mut ChaCha20Rng::seed_from_u64(1));
        let mut b = EchelonBasis::new(f, 3, 0);
        let r1 = b.row_from_sparse(&[(0, 1), (1, 2)], &[]);
        let r2 = b.row_from_sparse(&[(0, 2), (1, 4)], &[]);
        let r3 = b.row_from_sparse(&[(2, -7)], &[]);
        assert_eq!(b.insert(r1), Insertion::Independent);
        assert_eq!(b.insert(r2), Insertion::Dependent);
        assert_eq!(b.rank(), 1);
        assert_eq!(b.insert(r3), Insertion::Independent);
        b.truncate(1);
        assert_eq!(b.rank(), 1);
    }

    #[test]
    fn augmented_rows_detect_inconsistency() {
        let f = PrimeField::random(&mut ChaCha20Rng::seed_from_u64(2));
        let mut b = EchelonBasis::new(f, 2, 1);
        let r1 = b.row_from_sparse(&[(0, 1), (1, 1)], &[5]);
        let r2 = b.row_from_sparse(&[(0, 2), (1, 2)], &[10]);
        let r3 = b.row_from_sparse(&[(0, 3), (1, 3)], &[16]);
        assert_eq!(b.insert(r1), Insertion::Independent);
        assert_eq!(b.insert(r2), Insertion::Dependent);
        assert_eq!(b.insert(r3), Insertion::Inconsistent);
    }
}
