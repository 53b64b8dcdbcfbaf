//! Multi-precision arithmetic for the Z_p* backend: num-bigint by default, GMP (rug) with the
//! `gmp` feature. Both expose the same small set of functions over a type `Nat` of non-negative
//! integers; everything above this file is written once.

#[cfg(not(feature = "gmp"))]
mod imp {
    use num_bigint::BigUint;
    use num_integer::Integer;
    use num_traits::{One, Zero};

    /// A non-negative integer.
    pub type Nat = BigUint;

    pub fn from_be(bytes: &[u8]) -> Nat {
        BigUint::from_bytes_be(bytes)
    }
    pub fn from_u64(v: u64) -> Nat {
        BigUint::from(v)
    }
    /// Big-endian, left-padded with zeros to `len` bytes (`a < 256^len` is required).
    pub fn to_be(a: &Nat, len: usize) -> Vec<u8> {
        let raw = a.to_bytes_be();
        let mut out = vec![0u8; len.saturating_sub(raw.len())];
        out.extend_from_slice(&raw);
        out
    }
    pub fn is_zero(a: &Nat) -> bool {
        a.is_zero()
    }
    pub fn bits(a: &Nat) -> u64 {
        a.bits()
    }
    pub fn low_u64(a: &Nat) -> u64 {
        a.iter_u64_digits().next().unwrap_or(0)
    }
    pub fn rem(a: &Nat, m: &Nat) -> Nat {
        a % m
    }
    pub fn mul_mod(a: &Nat, b: &Nat, m: &Nat) -> Nat {
        (a * b) % m
    }
    pub fn sqr_mod(a: &Nat, m: &Nat) -> Nat {
        (a * a) % m
    }
    pub fn add_mod(a: &Nat, b: &Nat, m: &Nat) -> Nat {
        let s = a + b;
        if &s >= m {
            s - m
        } else {
            s
        }
    }
    /// `m - a` for `0 < a < m`, and 0 for `a = 0`.
    pub fn neg_mod(a: &Nat, m: &Nat) -> Nat {
        if a.is_zero() {
            BigUint::zero()
        } else {
            m - a
        }
    }
    /// `a^e mod m` (variable time).
    pub fn pow_mod(a: &Nat, e: &Nat, m: &Nat) -> Nat {
        a.modpow(e, m)
    }
    /// `a^e mod m` for secret `e`. num-bigint offers no constant-time exponentiation: this is
    /// the same as [`pow_mod`] and only as side-channel resistant as num-bigint (enable the `gmp`
    /// feature for `mpz_powm_sec`).
    pub fn pow_mod_secret(a: &Nat, e: &Nat, m: &Nat) -> Nat {
        a.modpow(e, m)
    }
    pub fn inv_mod(a: &Nat, m: &Nat) -> Option<Nat> {
        a.modinv(m)
    }
    /// The Jacobi symbol `(a | n)` for odd `n`.
    pub fn jacobi(a: &Nat, n: &Nat) -> i32 {
        let mut a = a % n;
        let mut n = n.clone();
        let mut t = 1i32;
        while !a.is_zero() {
            let tz = a.trailing_zeros().unwrap_or(0);
            if tz > 0 {
                a >>= tz;
                let r = low_u64(&n) & 7;
                if tz % 2 == 1 && (r == 3 || r == 5) {
                    t = -t;
                }
            }
            std::mem::swap(&mut a, &mut n);
            if low_u64(&a) & 3 == 3 && low_u64(&n) & 3 == 3 {
                t = -t;
            }
            a = a.mod_floor(&n);
        }
        if n.is_one() {
            t
        } else {
            0
        }
    }
}

#[cfg(feature = "gmp")]
mod imp {
    use rug::integer::Order;
    use rug::Integer;

    /// A non-negative integer.
    pub type Nat = Integer;

    pub fn from_be(bytes: &[u8]) -> Nat {
        Integer::from_digits(bytes, Order::Msf)
    }
    pub fn from_u64(v: u64) -> Nat {
        Integer::from(v)
    }
    /// Big-endian, left-padded with zeros to `len` bytes (`a < 256^len` is required).
    pub fn to_be(a: &Nat, len: usize) -> Vec<u8> {
        let raw: Vec<u8> = a.to_digits(Order::Msf);
        let mut out = vec![0u8; len.saturating_sub(raw.len())];
        out.extend_from_slice(&raw);
        out
    }
    pub fn is_zero(a: &Nat) -> bool {
        *a == 0
    }
    pub fn bits(a: &Nat) -> u64 {
        u64::from(a.significant_bits())
    }
    pub fn low_u64(a: &Nat) -> u64 {
        a.to_u64_wrapping()
    }
    pub fn rem(a: &Nat, m: &Nat) -> Nat {
        Integer::from(a % m)
    }
    pub fn mul_mod(a: &Nat, b: &Nat, m: &Nat) -> Nat {
        let mut p = Integer::from(a * b);
        p %= m;
        p
    }
    pub fn sqr_mod(a: &Nat, m: &Nat) -> Nat {
        let mut p = Integer::from(a.square_ref());
        p %= m;
        p
    }
    pub fn add_mod(a: &Nat, b: &Nat, m: &Nat) -> Nat {
        let mut s = Integer::from(a + b);
        if s >= *m {
            s -= m;
        }
        s
    }
    /// `m - a` for `0 < a < m`, and 0 for `a = 0`.
    pub fn neg_mod(a: &Nat, m: &Nat) -> Nat {
        if *a == 0 {
            Integer::new()
        } else {
            Integer::from(m - a)
        }
    }
    /// `a^e mod m` (variable time).
    pub fn pow_mod(a: &Nat, e: &Nat, m: &Nat) -> Nat {
        // Total for e >= 0 and m > 0, which the callers guarantee.
        a.clone().pow_mod(e, m).unwrap_or_default()
    }
    /// `a^e mod m` for secret `e`: GMP's `mpz_powm_sec` (constant time, odd modulus).
    pub fn pow_mod_secret(a: &Nat, e: &Nat, m: &Nat) -> Nat {
        if *e == 0 {
            return Integer::from(1) % m;
        }
        a.clone().secure_pow_mod(e, m)
    }
    pub fn inv_mod(a: &Nat, m: &Nat) -> Option<Nat> {
        a.clone().invert(m).ok()
    }
    /// The Jacobi symbol `(a | n)` for odd `n`.
    pub fn jacobi(a: &Nat, n: &Nat) -> i32 {
        a.jacobi(n)
    }
}

pub use imp::*;
