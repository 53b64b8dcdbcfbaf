//! One conformance suite, generic over [`PrimeOrderGroup`], run for every backend.
//!
//! Every identity is checked against an independent computation: group exponentiations against
//! repeated multiplication or the plain constant-time `exp`, FEIP decryptions against the inner
//! product computed in `i128`, discrete logs against the exponent that produced the element.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::Arc;

use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
use cryptonn::fe::error::{DlogError, FeError};
use cryptonn::fe::febo::{Febo, FeboOp, FeboParams};
use cryptonn::fe::feip::{Feip, FeipParams, KeyVector};
use cryptonn::fe::group::PrimeOrderGroup;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Naive `base^e` by repeated multiplication (reference for small exponents).
fn naive_pow<G: PrimeOrderGroup>(g: &G, base: &G::Element, e: i64) -> G::Element {
    let mut acc = g.identity();
    for _ in 0..e.unsigned_abs() {
        acc = g.op(&acc, base);
    }
    if e < 0 {
        g.invert(&acc)
    } else {
        acc
    }
}

fn group_laws<G: PrimeOrderGroup>(g: &G) {
    let mut r = rng(1);
    let gen = g.generator();
    assert_eq!(g.op(&gen, &g.identity()), gen);
    assert_eq!(g.op(&gen, &g.invert(&gen)), g.identity());
    for _ in 0..4 {
        let a = g.random_scalar(&mut r);
        let b = g.random_scalar(&mut r);
        let ga = g.exp_generator(&a);
        assert_eq!(ga, g.exp(&gen, &a));
        assert_eq!(ga, g.vartime_exp(&gen, &a));
        let t = g.precompute_base(&ga);
        let vt = g.vartime_precompute_base(&ga);
        // (g^a)^b = g^{ab} along every path.
        let gab = g.exp_generator(&g.scalar_mul(&a, &b));
        assert_eq!(g.exp(&ga, &b), gab);
        assert_eq!(g.exp_precomputed(&t, &b), gab);
        assert_eq!(g.vartime_exp(&ga, &b), gab);
        assert_eq!(g.vartime_exp_precomputed(&vt, &b), gab);
        // g^a · g^b = g^{a+b}; g^a / g^b = g^{a-b}; -a.
        assert_eq!(
            g.op(&ga, &g.exp_generator(&b)),
            g.exp_generator(&g.scalar_add(&a, &b))
        );
        assert_eq!(
            g.div(&ga, &g.exp_generator(&b)),
            g.exp_generator(&g.scalar_sub(&a, &b))
        );
        assert_eq!(g.invert(&ga), g.exp_generator(&g.scalar_neg(&a)));
        let ainv = g.scalar_invert(&a).unwrap();
        assert_eq!(g.exp(&ga, &ainv), gen);
        // Edge exponents for the table paths: 0, 1, -1 (= q - 1).
        for e in [0i64, 1, -1, 2, -8, 15, 16, -16, 255, i64::MAX, i64::MIN] {
            let s = g.scalar_from_i64(e);
            let want = g.exp(&ga, &s);
            assert_eq!(g.exp_precomputed(&t, &s), want, "e = {e}");
            assert_eq!(g.vartime_exp_precomputed(&vt, &s), want, "e = {e}");
            assert_eq!(g.vartime_exp_i64(&ga, e), want, "e = {e}");
        }
    }
    assert!(g.scalar_invert(&g.scalar_from_i64(0)).is_err());
}

fn small_exponents<G: PrimeOrderGroup>(g: &G) {
    let gen = g.generator();
    for e in -40i64..=40 {
        let want = naive_pow(g, &gen, e);
        assert_eq!(g.vartime_exp_generator_i64(e), want, "e = {e}");
        assert_eq!(g.exp_generator_i64(e, 40), want, "e = {e}");
        assert_eq!(g.exp_generator_i64(e, 1 << 20), want, "e = {e}");
        assert_eq!(g.exp_generator(&g.scalar_from_i64(e)), want, "e = {e}");
    }
    // exp_generator_i64 stays correct beyond its timing bound and at the extremes.
    for e in [
        1000i64,
        -1000,
        1 << 40,
        -(1 << 40),
        i64::MAX,
        i64::MIN,
        i64::MIN + 1,
    ] {
        let want = g.exp_generator(&g.scalar_from_i64(e));
        assert_eq!(g.exp_generator_i64(e, 10), want, "e = {e}");
        assert_eq!(g.vartime_exp_generator_i64(e), want, "e = {e}");
    }
    // Multi-exponentiation against the product of single exponentiations.
    let mut r = rng(2);
    let bases: Vec<G::Element> = (0..9)
        .map(|_| g.exp_generator(&g.random_scalar(&mut r)))
        .collect();
    let exps = [0i64, 1, -1, 127, -127, 255, 1 << 20, -(1 << 33), i64::MIN];
    let mut want = g.identity();
    for (b, &e) in bases.iter().zip(&exps) {
        want = g.op(&want, &g.exp(b, &g.scalar_from_i64(e)));
    }
    assert_eq!(g.vartime_multi_exp_i64(bases.iter().zip(exps)), want);
    assert_eq!(g.vartime_multi_exp_i64(std::iter::empty()), g.identity());
}

/// The variable-time capabilities (`fe::group::multiexp`) against plain exponentiations: the
/// wNAF multi-exponentiation over odd powers, and the many-use fixed-base table.
fn multiexp_capabilities<G: PrimeOrderGroup>(g: &G) {
    use cryptonn::fe::group::multiexp::{multi_exp, recode, Ct0Table, OddMultiples};
    let mut r = rng(12);
    let bases: Vec<G::Element> = (0..12)
        .map(|_| g.exp_generator(&g.random_scalar(&mut r)))
        .collect();
    let tables: Vec<OddMultiples<G>> = bases.iter().map(|b| OddMultiples::new(g, b)).collect();
    let coefs = [
        0i64,
        1,
        -1,
        15,
        -16,
        17,
        70_001,
        -70_001,
        1 << 40,
        i64::MAX,
        i64::MIN,
        -3,
    ];
    let terms: Vec<(usize, i64)> = coefs.iter().copied().enumerate().collect();
    let want = g.vartime_multi_exp_i64(bases.iter().zip(coefs));
    assert_eq!(multi_exp(g, &tables, &recode(&terms)), want);
    // A subset, an index out of range (skipped) and no terms at all.
    let some = [(3usize, 5i64), (7, -9), (99, 4)];
    let want = g.op(&naive_pow(g, &bases[3], 5), &naive_pow(g, &bases[7], -9));
    assert_eq!(multi_exp(g, &tables, &recode(&some)), want);
    assert_eq!(multi_exp(g, &tables, &[]), g.identity());
    let ct0 = bases[0].clone();
    let t = Ct0Table::new(g, &ct0);
    for _ in 0..6 {
        let e = g.random_scalar(&mut r);
        assert_eq!(t.exp(g, &e), g.exp(&ct0, &e));
    }
    assert_eq!(t.exp(g, &g.scalar_from_i64(-1)), g.invert(&ct0));
    assert_eq!(t.exp(g, &g.scalar_from_i64(0)), g.identity());
}

fn encodings<G: PrimeOrderGroup>(g: &G) {
    let mut r = rng(3);
    for _ in 0..8 {
        let s = g.random_scalar(&mut r);
        let e = g.exp_generator(&s);
        let eb = g.element_to_bytes(&e);
        assert_eq!(eb.len(), g.element_len());
        assert_eq!(g.element_from_bytes(&eb).unwrap(), e);
        let sb = g.scalar_to_bytes(&s);
        assert_eq!(sb.len(), g.scalar_len());
        assert_eq!(g.scalar_from_bytes(&sb).unwrap(), s);
        assert!(g.element_from_bytes(&eb[1..]).is_err());
        assert!(g.scalar_from_bytes(&sb[1..]).is_err());
        // A fingerprint depends on the element only, not on how it was computed.
        let other = g.div(&g.op(&e, &g.generator()), &g.generator());
        assert_eq!(
            g.vartime_fingerprints(std::slice::from_ref(&e)),
            g.vartime_fingerprints(&[other])
        );
    }
    // All-0xFF bytes are neither a canonical scalar nor a valid element.
    let ff = vec![0xFFu8; g.scalar_len()];
    assert!(g.scalar_from_bytes(&ff).is_err());
    let ff = vec![0xFFu8; g.element_len()];
    assert!(g.element_from_bytes(&ff).is_err());
}

fn dlog_full_range<G: PrimeOrderGroup>(g: &G) {
    let half = 64u64;
    let table = Arc::new(BabyStepTable::new(g.clone(), half).unwrap());
    // Table only: every value of [-64, 64].
    let solver = DlogSolver::table_only(table.clone());
    let all: Vec<G::Element> = (-70i64..=70)
        .map(|z| g.vartime_exp_generator_i64(z))
        .collect();
    let got = solver.vartime_solve_batch(&all);
    for (z, res) in (-70i64..=70).zip(got) {
        if z.unsigned_abs() <= half {
            assert_eq!(res.unwrap(), z);
        } else {
            assert!(
                matches!(res, Err(DlogError::OutOfRange { bound: 64 })),
                "z = {z}"
            );
        }
    }
    // With giant steps: every value of [-1000, 1000], and errors just beyond.
    let solver = DlogSolver::new(table, 1000).unwrap();
    let zs: Vec<i64> = (-1003i64..=1003).collect();
    let all: Vec<G::Element> = zs.iter().map(|&z| g.vartime_exp_generator_i64(z)).collect();
    for (z, res) in zs.iter().zip(solver.vartime_solve_batch(&all)) {
        if z.unsigned_abs() <= 1000 {
            assert_eq!(res.unwrap(), *z);
        } else {
            assert!(res.is_err(), "z = {z}");
        }
    }
    assert_eq!(solver.vartime_solve(&all[3]).unwrap(), -1000);
    // A random element is (overwhelmingly likely) out of range.
    let far = g.exp_generator(&g.random_scalar(&mut rng(4)));
    assert!(matches!(
        solver.vartime_solve(&far),
        Err(DlogError::OutOfRange { bound: 1000 })
    ));
}

fn feip_bounds<G: PrimeOrderGroup>(g: &G) {
    let mut r = rng(5);
    let (x_b, y_b) = (255u64, 127u64);
    let feip = Feip::new(g.clone(), FeipParams::new(3, x_b, y_b).unwrap());
    let (msk, mpk) = feip.setup(&mut r);
    let table = Arc::new(BabyStepTable::new(g.clone(), 1 << 8).unwrap());
    let dlog = DlogSolver::new(table, feip.params().inner_product_bound()).unwrap();
    let x = [255i64, -255, 0];
    let y = [127i64, -127, 127];
    let ct = feip.encrypt(&mpk, &x, &mut r).unwrap();
    let key = feip.derive_key(&msk, &y).unwrap();
    assert_eq!(
        feip.vartime_decrypt(&ct, &key, &y, &dlog).unwrap(),
        2 * 255 * 127
    );
    assert!(matches!(
        feip.encrypt(&mpk, &[256, 0, 0], &mut r),
        Err(FeError::PlaintextOutOfBound {
            index: 0,
            value: 256,
            bound: 255
        })
    ));
    assert!(matches!(
        feip.encrypt(&mpk, &[0, 0, -256], &mut r),
        Err(FeError::PlaintextOutOfBound {
            index: 2,
            value: -256,
            bound: 255
        })
    ));
    assert!(matches!(
        feip.derive_key(&msk, &[0, 128, 0]),
        Err(FeError::KeyOutOfBound {
            index: 1,
            value: 128,
            bound: 127
        })
    ));
    assert!(matches!(
        feip.derive_key(&msk, &[-128, 0, 0]),
        Err(FeError::KeyOutOfBound {
            index: 0,
            value: -128,
            bound: 127
        })
    ));
    assert!(matches!(
        feip.derive_key(&msk, &[i64::MIN, 0, 0]),
        Err(FeError::KeyOutOfBound { .. })
    ));
    assert!(matches!(
        feip.encrypt(&mpk, &[1, 2], &mut r),
        Err(FeError::DimensionMismatch {
            expected: 3,
            got: 2
        })
    ));
    assert!(matches!(
        feip.vartime_decrypt(&ct, &key, &[0, 128, 0], &dlog),
        Err(FeError::KeyOutOfBound { .. })
    ));
    // A key for another vector does not decrypt to a wrong value silently: it is out of range.
    let other = feip.derive_key(&msk, &[1, 1, 1]).unwrap();
    assert!(matches!(
        feip.vartime_decrypt(&ct, &other, &y, &dlog),
        Err(FeError::Dlog(DlogError::OutOfRange { .. }))
    ));
    assert!(FeipParams::new(0, 1, 1).is_err());
    assert!(FeipParams::new(1, 0, 1).is_err());
    assert!(FeipParams::new(1 << 20, 1 << 30, 1 << 30).is_err());
}

/// decrypt(encrypt(x), key(y)) == <x, y> for random x, y of random length up to `max_len`,
/// through every decryption path (plain, prepared, many keys, sparse).
fn feip_roundtrip<G: PrimeOrderGroup>(g: &G, max_len: usize, cases: u32, seed: u64) {
    let (x_b, y_b) = (1000u64, 300u64);
    let table = Arc::new(BabyStepTable::new(g.clone(), 1 << 14).unwrap());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (1..=max_len).prop_flat_map(move |n| {
        (
            prop::collection::vec(-(x_b as i64)..=(x_b as i64), n),
            prop::collection::vec(-(y_b as i64)..=(y_b as i64), n),
            any::<u64>(),
        )
    });
    runner
        .run(&strategy, |(x, y, s)| {
            let mut r = rng(seed ^ s);
            let n = x.len();
            let feip = Feip::new(g.clone(), FeipParams::new(n, x_b, y_b).unwrap());
            let dlog = DlogSolver::new(table.clone(), feip.params().inner_product_bound()).unwrap();
            let (msk, mpk) = feip.setup(&mut r);
            let ct = feip.encrypt(&mpk, &x, &mut r).unwrap();
            let want: i64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            let key = feip.derive_key(&msk, &y).unwrap();
            prop_assert_eq!(feip.vartime_decrypt(&ct, &key, &y, &dlog).unwrap(), want);
            // Prepared public key encrypts to something that decrypts the same way.
            if n <= 8 {
                let pk = feip.prepare_public_key(&mpk).unwrap();
                let ct2 = feip.encrypt_prepared(&pk, &x, &mut r).unwrap();
                prop_assert_eq!(feip.vartime_decrypt(&ct2, &key, &y, &dlog).unwrap(), want);
            }
            // Several keys against one prepared ciphertext, plus a sparse key.
            let y2: Vec<i64> = y.iter().map(|v| -v).collect();
            let key2 = feip.derive_key(&msk, &y2).unwrap();
            let sparse: Vec<(usize, i64)> = y
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 3 == 0)
                .map(|(i, &v)| (i, v))
                .collect();
            let key3 = feip.derive_key_sparse(&msk, &sparse).unwrap();
            let want3: i64 = sparse.iter().map(|&(i, v)| x[i] * v).sum();
            prop_assert_eq!(
                feip.vartime_decrypt_sparse(&ct, &key3, &sparse, &dlog)
                    .unwrap(),
                want3
            );
            let prep = feip.prepare_ciphertext(&ct).unwrap();
            let got = feip.vartime_decrypt_many(
                &prep,
                &[
                    (&key, KeyVector::Dense(&y)),
                    (&key2, KeyVector::Dense(&y2)),
                    (&key3, KeyVector::Sparse(&sparse)),
                    (&key, KeyVector::Dense(&y2)),
                ],
                &dlog,
            );
            prop_assert_eq!(got[0].as_ref().unwrap(), &want);
            prop_assert_eq!(got[1].as_ref().unwrap(), &-want);
            prop_assert_eq!(got[2].as_ref().unwrap(), &want3);
            // The wrong key/vector pairing must not decrypt (unless it happens to agree).
            if want != 0 {
                prop_assert!(got[3].is_err());
            }
            Ok(())
        })
        .unwrap();
}

/// Every FEBO operation against integer arithmetic, at and beyond the bounds, and its failures.
fn febo_ops<G: PrimeOrderGroup>(g: &G) {
    let mut r = rng(6);
    let (x_b, y_b) = (300u64, 20u64);
    let febo = Febo::new(g.clone(), FeboParams::new(x_b, y_b).unwrap());
    let (msk, mpk) = febo.setup(&mut r);
    let table = Arc::new(BabyStepTable::new(g.clone(), 1 << 8).unwrap());
    let dlog = DlogSolver::new(table, febo.params().result_bound()).unwrap();
    let xs = [-300i64, -240, -7, 0, 1, 60, 299, 300];
    let ys = [-20i64, -3, -1, 1, 2, 5, 20];
    for &x in &xs {
        let ct = febo.encrypt(&mpk, x, &mut r).unwrap();
        for &y in ys.iter().chain([0i64].iter()) {
            for op in [FeboOp::Add, FeboOp::Sub, FeboOp::Mul, FeboOp::Div] {
                let key = febo.derive_key(&msk, ct.commitment(), op, y);
                if op == FeboOp::Div && y == 0 {
                    assert!(matches!(key, Err(FeError::DivisionByZero)));
                    continue;
                }
                let got = febo.vartime_decrypt(&ct, &key.unwrap(), &dlog);
                match op {
                    FeboOp::Add => assert_eq!(got.unwrap(), x + y),
                    FeboOp::Sub => assert_eq!(got.unwrap(), x - y),
                    FeboOp::Mul => assert_eq!(got.unwrap(), x * y),
                    FeboOp::Div if x % y == 0 => assert_eq!(got.unwrap(), x / y),
                    FeboOp::Div => {
                        assert!(matches!(got, Err(FeError::InexactDivision)), "{x}/{y}")
                    }
                }
            }
        }
    }
    // Bounds: exactly ±bound passes (above), one beyond fails with the documented error.
    assert!(matches!(
        febo.encrypt(&mpk, 301, &mut r),
        Err(FeError::PlaintextOutOfBound {
            value: 301,
            bound: 300,
            ..
        })
    ));
    assert!(matches!(
        febo.encrypt(&mpk, -301, &mut r),
        Err(FeError::PlaintextOutOfBound { value: -301, .. })
    ));
    let ct = febo.encrypt(&mpk, 42, &mut r).unwrap();
    for y in [21i64, -21, i64::MIN] {
        assert!(matches!(
            febo.derive_key(&msk, ct.commitment(), FeboOp::Mul, y),
            Err(FeError::KeyOutOfBound { bound: 20, .. })
        ));
    }
    // A key is bound to its ciphertext: against another ciphertext it does not decrypt.
    let other = febo.encrypt(&mpk, 42, &mut r).unwrap();
    let key = febo
        .derive_key(&msk, other.commitment(), FeboOp::Add, 1)
        .unwrap();
    assert!(febo.vartime_decrypt(&ct, &key, &dlog).is_err());
    assert_eq!(febo.vartime_decrypt(&other, &key, &dlog).unwrap(), 43);
    assert!(FeboParams::new(0, 1).is_err());
    assert!(FeboParams::new(1 << 40, 1 << 40).is_err());
}

/// Aggregated (pooled) ciphertext components decrypt to the pooled inner product, with a key
/// from the aggregated master key that equals the key of the expanded vector.
fn feip_aggregation<G: PrimeOrderGroup>(g: &G) {
    let mut r = rng(8);
    let n = 16; // a 4×4 image, pooled 2×2 into 4 cells
    let feip = Feip::new(g.clone(), FeipParams::new(n, 255, 127).unwrap());
    let (msk, mpk) = feip.setup(&mut r);
    let x: Vec<i64> = (0..n as i64).map(|i| (i * 37) % 511 - 255).collect();
    let ct = feip.encrypt(&mpk, &x, &mut r).unwrap();
    let sets: Vec<Vec<usize>> = (0..4)
        .map(|c| {
            let (r0, c0) = (2 * (c / 2), 2 * (c % 2));
            vec![
                4 * r0 + c0,
                4 * r0 + c0 + 1,
                4 * (r0 + 1) + c0,
                4 * (r0 + 1) + c0 + 1,
            ]
        })
        .collect();
    let pooled = feip.aggregated(&sets).unwrap();
    assert_eq!(pooled.params().x_bound(), 4 * 255);
    let act = feip.aggregate_ciphertext(&ct, &sets).unwrap();
    let amsk = feip.aggregate_secret_key(&msk, &sets).unwrap();
    let apk = feip.aggregate_public_key(&mpk, &sets).unwrap();
    let y2 = [3i64, -127, 0, 90];
    let key = pooled.derive_key(&amsk, &y2).unwrap();
    let mut expanded = vec![0i64; n];
    let mut want = 0;
    for (set, &yv) in sets.iter().zip(&y2) {
        for &i in set {
            expanded[i] = yv;
            want += x[i] * yv;
        }
    }
    assert_eq!(key, feip.derive_key(&msk, &expanded).unwrap());
    let table = Arc::new(BabyStepTable::new(g.clone(), 1 << 10).unwrap());
    let dlog = DlogSolver::new(table, pooled.params().inner_product_bound()).unwrap();
    assert_eq!(
        pooled.vartime_decrypt(&act, &key, &y2, &dlog).unwrap(),
        want
    );
    // Fresh encryptions under the aggregated public key decrypt with the same key.
    let ct2 = pooled.encrypt(&apk, &[1, 2, 3, 4], &mut r).unwrap();
    assert_eq!(
        pooled.vartime_decrypt(&ct2, &key, &y2, &dlog).unwrap(),
        3 - 254 + 360
    );
    assert!(feip.aggregate_ciphertext(&ct, &[vec![16]]).is_err());
    assert!(feip.aggregate_ciphertext(&ct, &[vec![]]).is_err());
    assert!(feip.aggregated(&[]).is_err());
}

/// Random 64-bit seed helper so each backend's proptest stream differs.
/// The batch of encoded fixed-base exponentiations against one `exp`, `exp_generator_i64` and
/// encoding per entry (zero, one, minus one, random exponents; offsets at, inside and beyond
/// the bound, missing offsets as zero; the identity among the results), and batch encryption
/// that decrypts like plain encryption, with its bound checks.
fn batch_encryption<G: PrimeOrderGroup>(g: &G) {
    let mut r = rng(21);
    let bound = 300u64;
    // Z_p* exponentiations are slow: fewer of them there.
    let big = g.element_len() > 64;
    let (n_bases, n_exps, n_vectors) = if big { (4, 3, 4) } else { (12, 17, 16) };
    let mut bases: Vec<G::Element> = (0..n_bases)
        .map(|_| g.exp_generator(&g.random_scalar(&mut r)))
        .collect();
    bases.insert(0, g.generator());
    bases.push(g.identity());
    let mut exps = vec![
        g.scalar_from_i64(0),
        g.scalar_from_i64(1),
        g.scalar_from_i64(-1),
    ];
    exps.extend((0..n_exps).map(|_| g.random_scalar(&mut r)));
    let offsets: Vec<Vec<i64>> = (0..exps.len() - 1)
        .map(|j| {
            (0..bases.len() - j % 3)
                .map(|i| [0, 1, -1, 300, -300, 77, -5000][(i + j) % 7])
                .collect()
        })
        .collect();
    let got = g.exp_batch_encoded(&bases, &exps, &offsets, bound);
    assert_eq!(got.len(), exps.len());
    for (j, e) in exps.iter().enumerate() {
        let mut want = Vec::new();
        for (i, b) in bases.iter().enumerate() {
            let x = offsets.get(j).and_then(|o| o.get(i)).copied().unwrap_or(0);
            let v = g.op(&g.exp(b, e), &g.exp_generator(&g.scalar_from_i64(x)));
            want.extend_from_slice(&g.element_to_bytes(&v));
        }
        assert_eq!(got[j], want, "exponent {j}");
    }
    assert!(g.exp_batch_encoded(&bases, &[], &[], bound).is_empty());

    let (x_b, y_b) = (255u64, 127u64);
    let n = 20;
    let feip = Feip::new(g.clone(), FeipParams::new(n, x_b, y_b).unwrap());
    let (msk, mpk) = feip.setup(&mut r);
    let table = Arc::new(BabyStepTable::new(g.clone(), 1 << 12).unwrap());
    let dlog = DlogSolver::new(table.clone(), feip.params().inner_product_bound()).unwrap();
    let xs: Vec<Vec<i64>> = (0..n_vectors)
        .map(|j| {
            (0..n)
                .map(|i| ((i * 37 + j * 11) % 511) as i64 - 255)
                .collect()
        })
        .collect();
    let y: Vec<i64> = (0..n).map(|i| (i as i64 * 13) % 255 - 127).collect();
    let key = feip.derive_key(&msk, &y).unwrap();
    let encoded = feip.encrypt_batch_encoded(&mpk, &xs, &mut r).unwrap();
    let el = g.element_len();
    for (x, bytes) in xs.iter().zip(&encoded) {
        assert_eq!(bytes.len(), (1 + n) * el);
        let mut e = bytes
            .chunks_exact(el)
            .map(|c| g.element_from_bytes(c).unwrap());
        let ct0 = e.next().unwrap();
        let ct = cryptonn::fe::feip::Ciphertext::from_parts(ct0, e.collect());
        let want: i64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert_eq!(feip.vartime_decrypt(&ct, &key, &y, &dlog).unwrap(), want);
    }
    // Fresh randomness per vector: equal plaintexts, different ciphertexts.
    let twice = feip
        .encrypt_batch_encoded(&mpk, &[xs[0].clone(), xs[0].clone()], &mut r)
        .unwrap();
    assert_ne!(twice[0], twice[1]);
    let mut bad = xs.clone();
    bad[3][7] = 256;
    assert!(matches!(
        feip.encrypt_batch_encoded(&mpk, &bad, &mut r),
        Err(FeError::PlaintextOutOfBound { value: 256, .. })
    ));
    bad[3].pop();
    assert!(matches!(
        feip.encrypt_batch_encoded(&mpk, &bad, &mut r),
        Err(FeError::DimensionMismatch { .. })
    ));

    let febo = Febo::new(g.clone(), FeboParams::new(100, 100).unwrap());
    let (fmsk, fpk) = febo.setup(&mut r);
    let fdlog = DlogSolver::new(table, febo.params().result_bound()).unwrap();
    let values = [0i64, 100, -100, 7];
    for (&x, bytes) in values
        .iter()
        .zip(febo.encrypt_batch_encoded(&fpk, &values, &mut r).unwrap())
    {
        let cmt = g.element_from_bytes(&bytes[..el]).unwrap();
        let body = g.element_from_bytes(&bytes[el..]).unwrap();
        let ct = cryptonn::fe::febo::FeboCiphertext::from_parts(cmt.clone(), body);
        let k = febo.derive_key(&fmsk, &cmt, FeboOp::Add, 3).unwrap();
        assert_eq!(febo.vartime_decrypt(&ct, &k, &fdlog).unwrap(), x + 3);
    }
    assert!(matches!(
        febo.encrypt_batch_encoded(&fpk, &[1, 101], &mut r),
        Err(FeError::PlaintextOutOfBound { index: 1, .. })
    ));
}

fn seed_of(name: &str) -> u64 {
    let mut r = rng(name.len() as u64);
    r.next_u64() ^ name.bytes().map(u64::from).sum::<u64>()
}

macro_rules! conformance_suite {
    ($modname:ident, $group:expr, short: ($short_len:expr, $short_cases:expr), long: ($long_len:expr, $long_cases:expr)) => {
        mod $modname {
            use super::*;

            #[test]
            fn group_laws() {
                super::group_laws(&$group);
            }
            #[test]
            fn small_exponents() {
                super::small_exponents(&$group);
            }
            #[test]
            fn multiexp_capabilities() {
                super::multiexp_capabilities(&$group);
            }
            #[test]
            fn encodings() {
                super::encodings(&$group);
            }
            #[test]
            fn dlog_full_range() {
                super::dlog_full_range(&$group);
            }
            #[test]
            fn feip_bounds() {
                super::feip_bounds(&$group);
            }
            #[test]
            fn feip_aggregation() {
                super::feip_aggregation(&$group);
            }
            #[test]
            fn febo_ops() {
                super::febo_ops(&$group);
            }
            #[test]
            fn batch_encryption() {
                super::batch_encryption(&$group);
            }
            #[test]
            fn feip_roundtrip_short() {
                let seed = seed_of(stringify!($modname));
                super::feip_roundtrip(&$group, $short_len, $short_cases, seed);
            }
            #[test]
            fn feip_roundtrip_long() {
                let seed = seed_of(stringify!($modname)) ^ 1;
                super::feip_roundtrip(&$group, $long_len, $long_cases, seed);
            }
        }
    };
}

conformance_suite!(
    ristretto255,
    cryptonn::fe::group::ristretto::Ristretto255,
    short: (32, 48),
    long: (1024, 6)
);

conformance_suite!(
    modp_insecure_test_group,
    cryptonn::fe::group::modp::ModpGroup::insecure_test_group(),
    short: (32, 32),
    long: (1024, 3)
);

conformance_suite!(
    modp2048,
    cryptonn::fe::group::modp::ModpGroup::rfc3526_2048(),
    short: (6, 3),
    long: (40, 1)
);
