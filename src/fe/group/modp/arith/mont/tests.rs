//! Unit and property tests of the Montgomery arithmetic against num-bigint.

use super::*;
use num_bigint::BigUint;
use proptest::prelude::*;

// The 256-bit test prime and the RFC 3526 2048-bit prime (hex), as the group defines them.
use crate::fe::group::modp::{
    INSECURE_TEST_256_HEX as P256, RFC3526_2048_HEX as P2048, RFC3526_3072_HEX as P3072,
};

struct Ctx {
    f: Field,
    p: BigUint,
    len: usize,
}

fn ctx(hex: &str) -> Ctx {
    let p = BigUint::parse_bytes(hex.as_bytes(), 16).unwrap();
    let be = p.to_bytes_be();
    Ctx {
        f: Field::new(&be).unwrap(),
        len: be.len(),
        p,
    }
}

impl Ctx {
    /// The element of `v mod p` and its reference value.
    fn elem(&self, v: &BigUint) -> (Elem, BigUint) {
        let v = v % &self.p;
        let mut be = v.to_bytes_be();
        while be.len() < self.len {
            be.insert(0, 0);
        }
        (self.f.decode(&be).unwrap(), v)
    }
    fn val(&self, e: &Elem) -> BigUint {
        BigUint::from_bytes_be(&self.f.to_be(e))
    }
    /// `v` reduced below `p`, from random bytes and an edge selector.
    fn pick(&self, bytes: &[u8], edge: u8) -> BigUint {
        match edge % 8 {
            0 => BigUint::from(0u8),
            1 => BigUint::from(1u8),
            2 => &self.p - 1u8,
            3 => &self.p - 2u8,
            _ => BigUint::from_bytes_be(bytes) % &self.p,
        }
    }
}

fn check_all(c: &Ctx, a: &[u8], ea: u8, b: &[u8], eb: u8, exp: &[u8]) {
    let (x, xv) = c.elem(&c.pick(a, ea));
    let (y, yv) = c.elem(&c.pick(b, eb));
    let p = &c.p;
    assert_eq!(c.val(&c.f.mul(&x, &y)), (&xv * &yv) % p, "mul");
    assert_eq!(c.val(&c.f.sqr(&x)), (&xv * &xv) % p, "sqr");
    let e = BigUint::from_bytes_be(exp);
    let want = xv.modpow(&e, p);
    assert_eq!(c.val(&c.f.pow_ct(&x, exp)), want, "pow_ct");
    assert_eq!(c.val(&c.f.pow_vartime(&x, exp)), want, "pow_vartime");
    assert_eq!(
        c.val(&c.f.pow_vartime_split(&x, exp)),
        want,
        "pow_vartime_split"
    );
    let comb = c.f.base_comb(&x, exp.len());
    assert_eq!(c.val(&c.f.pow_comb(&comb, exp)), want, "pow_comb");
    // Where the CPU has AVX-512 IFMA the exponentiations above ran there: check the 64-bit
    // kernels' exponentiations too.
    #[cfg(target_arch = "x86_64")]
    {
        let scalar = Field::new(&c.p.to_bytes_be()).unwrap().without_ifma();
        assert!(!scalar.uses_ifma());
        assert_eq!(c.val(&scalar.pow_ct(&x, exp)), want, "pow_ct, 64-bit");
        assert_eq!(
            c.val(&scalar.pow_vartime(&x, exp)),
            want,
            "pow_vartime, 64-bit"
        );
        assert_eq!(
            c.val(&scalar.pow_vartime_split(&x, exp)),
            want,
            "pow_vartime_split, 64-bit"
        );
    }
}

/// The exponentiations modulo the 3072-bit prime (48 limbs; 64 limbs of 52 bits on IFMA),
/// edge values and full-width exponents, against num-bigint.
#[test]
fn exponentiations_3072_match_num_bigint() {
    let c = ctx(P3072);
    let exps: [Vec<u8>; 3] = [
        (0..384).map(|i| (i * 37 + 11) as u8).collect(),
        vec![0xFF; 384],
        vec![0, 0, 1],
    ];
    for (k, exp) in exps.iter().enumerate() {
        let bytes: Vec<u8> = (0..390).map(|i| (i * 101 + k) as u8).collect();
        check_all(&c, &bytes, 4 + k as u8, &bytes, 2, exp);
    }
    check_all(&c, &[], 2, &[], 1, &exps[0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Products, squares and every exponentiation modulo the 256-bit prime against
    /// num-bigint, edge values (0, 1, p − 1, p − 2) included.
    #[test]
    fn arithmetic_256_matches_num_bigint(
        a in proptest::collection::vec(any::<u8>(), 40),
        b in proptest::collection::vec(any::<u8>(), 40),
        ea in any::<u8>(),
        eb in any::<u8>(),
        exp in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        check_all(&ctx(P256), &a, ea, &b, eb, &exp);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    /// The same at 2048 bits (32 limbs), with full-width exponents.
    #[test]
    fn arithmetic_2048_matches_num_bigint(
        a in proptest::collection::vec(any::<u8>(), 260),
        b in proptest::collection::vec(any::<u8>(), 260),
        ea in any::<u8>(),
        eb in any::<u8>(),
        exp in proptest::collection::vec(any::<u8>(), 256),
    ) {
        check_all(&ctx(P2048), &a, ea, &b, eb, &exp);
    }
}

/// Every comb shape (teeth, sub-tables), including shapes whose last sub-table runs past
/// the tooth spacing, and exponents shorter than the comb.
#[test]
fn comb_shapes_match_num_bigint() {
    let c = ctx(P256);
    let (x, xv) = c.elem(&BigUint::from(0xDEAD_BEEF_1234_5678u64));
    let exps: [&[u8]; 4] = [&[0xFF; 32], &[0x01; 32], &[0x80, 0, 0, 1], &[]];
    for teeth in 1..=8 {
        for tables in 1..=5 {
            let comb = c.f.base_comb_with(&x, 32, teeth, tables);
            for e in exps {
                let want = xv.modpow(&BigUint::from_bytes_be(e), &c.p);
                assert_eq!(c.val(&c.f.pow_comb(&comb, e)), want, "h={teeth} v={tables}");
            }
        }
    }
}

/// The two-thread exponentiation inside a one-thread pool (the consumer then runs after
/// the producer on the same thread) gives the same result and does not block.
#[test]
fn split_exponentiation_on_one_thread() {
    let c = ctx(P2048);
    let (x, xv) = c.elem(&BigUint::from(123_456_789u64));
    let e = [0xA5u8; 256];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let got = pool.install(|| c.f.pow_vartime_split(&x, &e));
    assert_eq!(c.val(&got), xv.modpow(&BigUint::from_bytes_be(&e), &c.p));
}
