//! Short-lived constant-time fixed-base tables (signed-digit combs) for a batch of
//! exponentiations of the same public points, and the batch's encoding.
//!
//! # The comb
//! A scalar `e < 2^{253}` is recoded, in constant time, into `D = ⌈253/W⌉ + 1` signed digits
//! `d_m ∈ [−2^{W−1}, 2^{W−1})` of radix `2^W` (the last one takes the final carry):
//! `e = Σ_m d_m · 2^{W·m}`. The table of a point `B` has `R = ⌈D/T⌉` rows; row `k` holds
//! `1·B_k, 2·B_k, …, 2^{W−1}·B_k` with `B_k = 2^{W·T·k} · B`. Digit `m = k·T + p` sits in row
//! `k` at phase `p`, so
//!
//! ```text
//! e·B = Σ_{p<T} 2^{W·p} · Σ_{k<R} d_{kT+p} · B_k         (Horner over p: (T−1)·W doublings)
//! ```
//!
//! Building a table costs `R · (2^{W−1} + W·(T−1))` point additions; one use costs `D`
//! additions, `(T−1)·W` doublings and `D` constant-time row reads. A row read touches every
//! entry of the row (`subtle`'s conditional assignment, as dalek's `LookupTable` does) and
//! negates conditionally, so neither the memory access pattern nor the branches depend on the
//! digits. The tables hold public points only; the exponents and digits are secret.
//!
//! `W = 4, T = 3` was chosen by measurement on this crate's target machine: amortised over the
//! 16 exponents of a default shard (build / 16 + one use) it was the cheapest of `W = 2..=7`,
//! `T ∈ {1, 2, 3, 4, 6}` (see `docs/benchmarks.md`, "Encryption at table speed").
//!
//! # The encoding
//! Canonical Ristretto encoding of a point needs an inverse square root (~250 squarings) per
//! point. dalek's `double_and_compress_batch` encodes `2·P` for a whole batch with one shared
//! field inversion and no square root. So the batch computes `Q = P/2` instead of `P`: the
//! exponent `e/2 mod ℓ` against the comb of `B`, and the small offset `x` against a table of
//! `g/2` ([`super::small_exp`]); `2·Q = B^e · g^x` is then encoded at batch cost.
//!
//! # Where dalek has AVX-512 IFMA
//! dalek's own constant-time variable-base multiplication (`B * e`: a radix-16 signed window
//! over a table of 8 multiples, read in constant time) runs on its AVX-512 IFMA backend when
//! the CPU has `avx512ifma` and `avx512vl` and the build asked for that backend
//! (`.cargo/config.toml`). There it costs about 14.5 µs, against about 22 µs for this comb
//! (build / 16 + one use; docs/benchmarks.md, "Encryption at table speed"), so the batch skips
//! the tables and multiplies each base directly ([`Method::VariableBase`]). Both methods give
//! the same points; [`Method::for_this_machine`] chooses by a cached run-time check.

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use rayon::prelude::*;
use subtle::{Choice, ConditionallyNegatable, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use super::{half, small_exp, small_half_generator_table};

/// Radix `2^W` of the comb digits.
pub(crate) const COMB_W: usize = 4;
/// Interleave factor `T`: table rows are `2^{W·T}` apart.
pub(crate) const COMB_T: usize = 3;
/// Digits of a scalar below `2^{253}`, plus one for the final carry.
pub(crate) const COMB_DIGITS: usize = 253_usize.div_ceil(COMB_W) + 1;
/// Rows of a table.
pub(crate) const COMB_ROWS: usize = COMB_DIGITS.div_ceil(COMB_T);
/// Entries per row: `1..=2^{W−1}` times the row's base.
const COMB_HALF: usize = 1 << (COMB_W - 1);

/// Bases handled by one parallel task of [`exp_batch_encoded`].
const BASES_PER_TASK: usize = 8;

/// A comb table of one public point (see the module docs).
pub(crate) struct CombTable {
    rows: Vec<[RistrettoPoint; COMB_HALF]>,
}

impl CombTable {
    /// Builds the table of `base`: `R · (2^{W−1} − 1)` additions and `(R − 1) · (W·(T−1) + 1)`
    /// doublings.
    pub(crate) fn new(base: &RistrettoPoint) -> Self {
        let mut rows = Vec::with_capacity(COMB_ROWS);
        let mut b = *base;
        for k in 0..COMB_ROWS {
            let mut row = [b; COMB_HALF];
            for j in 1..COMB_HALF {
                row[j] = row[j - 1] + b;
            }
            if k + 1 < COMB_ROWS {
                // B_{k+1} = 2^{W·T} · B_k = 2^{W·T − W + 1} · (2^{W−1} · B_k)
                let mut next = row[COMB_HALF - 1];
                for _ in 0..COMB_W * COMB_T - COMB_W + 1 {
                    next = next + next;
                }
                b = next;
            }
            rows.push(row);
        }
        Self { rows }
    }

    /// `e · base` from the signed digits of `e` ([`signed_digits`]), in constant time.
    pub(crate) fn mul(&self, digits: &[i8; COMB_DIGITS]) -> RistrettoPoint {
        let mut acc = RistrettoPoint::identity();
        for p in (0..COMB_T).rev() {
            if p + 1 != COMB_T {
                for _ in 0..COMB_W {
                    acc = acc + acc;
                }
            }
            for (k, row) in self.rows.iter().enumerate() {
                if let Some(&d) = digits.get(k * COMB_T + p) {
                    acc += select(row, d);
                }
            }
        }
        acc
    }
}

/// `d · B` from a row `(1·B, …, 2^{W−1}·B)` for `|d| <= 2^{W−1}`: every entry is read, the
/// entry is picked and negated by masks.
fn select(row: &[RistrettoPoint; COMB_HALF], d: i8) -> RistrettoPoint {
    let negative = (d as u8) >> 7;
    let abs = u16::from(d.unsigned_abs());
    let mut out = RistrettoPoint::identity();
    for (j, entry) in row.iter().enumerate() {
        out.conditional_assign(entry, abs.ct_eq(&(j as u16 + 1)));
    }
    out.conditional_negate(Choice::from(negative));
    out
}

/// The signed radix-`2^W` digits of `e` (canonical, so below `2^{253}`): `e = Σ d_m 2^{W·m}`,
/// `d_m ∈ [−2^{W−1}, 2^{W−1})` except the last, the final carry (0 or 1). Arithmetic only:
/// no branch or index depends on `e`.
pub(crate) fn signed_digits(e: &Scalar) -> [i8; COMB_DIGITS] {
    let bytes = e.as_bytes();
    let mut limbs = Zeroizing::new([0u64; 5]);
    for (l, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        *l = u64::from_le_bytes(w);
    }
    let mask = (1u64 << COMB_W) - 1;
    let mut out = [0i8; COMB_DIGITS];
    let mut carry = 0i64;
    for (m, d) in out.iter_mut().enumerate().take(COMB_DIGITS - 1) {
        let pos = m * COMB_W;
        let (l, s) = (pos / 64, pos % 64);
        let mut bits = limbs[l] >> s;
        if s + COMB_W > 64 {
            bits |= limbs[l + 1] << (64 - s);
        }
        let v = (bits & mask) as i64 + carry;
        carry = (v + (1 << (COMB_W - 1))) >> COMB_W;
        *d = (v - (carry << COMB_W)) as i8;
    }
    out[COMB_DIGITS - 1] = carry as i8;
    out
}

/// How [`exp_batch_encoded`] computes `b^{e/2}`; both give the same point, in constant time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// A comb table per base, amortised over the batch's exponents (serial field arithmetic).
    Comb,
    /// dalek's constant-time variable-base multiplication per exponent: the faster one where
    /// dalek runs on AVX-512 IFMA.
    VariableBase,
}

impl Method {
    /// [`Method::VariableBase`] where dalek's AVX-512 IFMA backend is compiled in and the CPU
    /// has `avx512ifma` and `avx512vl` (the run-time check dalek itself makes), else
    /// [`Method::Comb`].
    pub(crate) fn for_this_machine() -> Self {
        #[cfg(all(target_arch = "x86_64", curve25519_dalek_backend = "avx512"))]
        {
            if std::arch::is_x86_feature_detected!("avx512ifma")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                return Method::VariableBase;
            }
        }
        Method::Comb
    }
}

/// [`PrimeOrderGroup::exp_batch_encoded`](crate::fe::group::PrimeOrderGroup::exp_batch_encoded)
/// for Ristretto255, by [`Method::for_this_machine`].
pub(crate) fn exp_batch_encoded(
    bases: &[RistrettoPoint],
    exps: &[Scalar],
    offsets: &[Vec<i64>],
    bound: u64,
) -> Vec<Vec<u8>> {
    exp_batch_encoded_with(Method::for_this_machine(), bases, exps, offsets, bound)
}

/// The batch by a given method: bases in parallel tasks of a few, each base used for every
/// exponent (one comb table per base, or dalek's variable-base multiplication); the halves
/// `Q = (b^e · g^x)/2` encoded per exponent with `double_and_compress_batch`.
pub(crate) fn exp_batch_encoded_with(
    method: Method,
    bases: &[RistrettoPoint],
    exps: &[Scalar],
    offsets: &[Vec<i64>],
    bound: u64,
) -> Vec<Vec<u8>> {
    let m = exps.len();
    if m == 0 {
        return Vec::new();
    }
    let halved: Zeroizing<Vec<Scalar>> = Zeroizing::new(exps.iter().map(|e| e * half()).collect());
    let digits: Zeroizing<Vec<[i8; COMB_DIGITS]>> = Zeroizing::new(match method {
        Method::Comb => halved.iter().map(signed_digits).collect(),
        Method::VariableBase => Vec::new(),
    });
    let small = small_half_generator_table();
    let offset = |j: usize, i: usize| {
        offsets
            .get(j)
            .and_then(|row| row.get(i))
            .copied()
            .unwrap_or(0)
    };
    // Base-major: halves[i·m + j] = (b_i^{e_j} · g^{x_{j,i}}) / 2.
    let mut halves = vec![RistrettoPoint::identity(); bases.len() * m];
    halves
        .par_chunks_mut(BASES_PER_TASK * m)
        .zip(bases.par_chunks(BASES_PER_TASK))
        .enumerate()
        .for_each(|(task, (out, chunk))| {
            for (c, (col, b)) in out.chunks_mut(m).zip(chunk).enumerate() {
                let i = task * BASES_PER_TASK + c;
                match method {
                    Method::Comb => {
                        let table = CombTable::new(b);
                        for (j, q) in col.iter_mut().enumerate() {
                            *q = table.mul(&digits[j]) + small_exp(small, offset(j, i), bound);
                        }
                    }
                    Method::VariableBase => {
                        for (j, q) in col.iter_mut().enumerate() {
                            *q = b * halved[j] + small_exp(small, offset(j, i), bound);
                        }
                    }
                }
            }
        });
    (0..m)
        .into_par_iter()
        .map(|j| {
            let row: Vec<RistrettoPoint> = (0..bases.len()).map(|i| halves[i * m + j]).collect();
            let mut out = Vec::with_capacity(32 * row.len());
            for c in RistrettoPoint::double_and_compress_batch(&row) {
                out.extend_from_slice(c.as_bytes());
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fe::group::ristretto::Ristretto255;
    use crate::fe::group::PrimeOrderGroup;
    use rand::SeedableRng;

    fn random_scalar(rng: &mut rand_chacha::ChaCha20Rng) -> Scalar {
        Ristretto255.random_scalar(rng)
    }

    #[test]
    fn digits_reconstruct_the_scalar() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let mut scalars: Vec<Scalar> = (0..50).map(|_| random_scalar(&mut rng)).collect();
        scalars.extend([
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            Scalar::from(u64::MAX),
        ]);
        let radix = Scalar::from(1u64 << COMB_W);
        for e in scalars {
            let d = signed_digits(&e);
            let half_radix = 1i16 << (COMB_W - 1);
            assert!(d[..COMB_DIGITS - 1]
                .iter()
                .all(|&v| (-half_radix..half_radix).contains(&i16::from(v))));
            assert!((0..=1).contains(&d[COMB_DIGITS - 1]));
            let back = d.iter().rev().fold(Scalar::ZERO, |acc, &v| {
                let v = if v < 0 {
                    -Scalar::from(u64::from(v.unsigned_abs()))
                } else {
                    Scalar::from(v as u64)
                };
                acc * radix + v
            });
            assert_eq!(back, e);
        }
    }

    #[test]
    fn comb_matches_scalar_multiplication() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(12);
        let b = RistrettoPoint::mul_base(&random_scalar(&mut rng));
        let table = CombTable::new(&b);
        for e in [
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            random_scalar(&mut rng),
        ] {
            assert_eq!(table.mul(&signed_digits(&e)), b * e);
        }
    }

    /// Both methods give the canonical encodings of `b_i^{e_j} · g^{x_{j,i}}`, for random,
    /// zero and extreme exponents and offsets at and inside the bound (and a missing offset
    /// row, which counts as zeros).
    #[test]
    fn both_methods_give_the_exponentiations() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(13);
        let bases: Vec<RistrettoPoint> = (0..11)
            .map(|_| RistrettoPoint::mul_base(&random_scalar(&mut rng)))
            .collect();
        let exps = [
            random_scalar(&mut rng),
            Scalar::ZERO,
            -Scalar::ONE,
            random_scalar(&mut rng),
        ];
        let bound = 255u64;
        let offsets: Vec<Vec<i64>> = vec![
            (0..11).map(|i| i * 50 - 255).collect(),
            vec![255; 11],
            (0..11).map(|i| -(i % 3)).collect(),
        ];
        let want: Vec<Vec<u8>> = exps
            .iter()
            .enumerate()
            .map(|(j, e)| {
                bases
                    .iter()
                    .enumerate()
                    .flat_map(|(i, b)| {
                        let x = offsets.get(j).map_or(0, |row| row[i]);
                        let gx = RistrettoPoint::mul_base(&Ristretto255.scalar_from_i64(x));
                        (b * e + gx).compress().to_bytes()
                    })
                    .collect()
            })
            .collect();
        for method in [Method::Comb, Method::VariableBase] {
            let got = exp_batch_encoded_with(method, &bases, &exps, &offsets, bound);
            assert_eq!(got, want, "{method:?}");
        }
    }
}
