//! A dudect-style timing test of the Z_p* backend's constant-time paths (Reparaz, Balasch,
//! Verbauwhede, "Dude, is my code constant time?", DATE 2017).
//!
//! For each operation, two classes of secret inputs are timed in a random interleaving: a fixed
//! input chosen to be extreme (the exponent 1, whose windows are all zero but the last, which
//! a digit-skipping or square-and-multiply implementation runs much faster) and fresh random
//! inputs. Welch's t-statistic between the two timing distributions is computed on all
//! measurements and after cropping each at the pooled 50th/90th percentile (dudect's
//! pre-processing against scheduler noise). `|t| > 10` is dudect's threshold for a leak; a
//! variable-time control (`vartime_exp` on the same inputs) shows what a leak looks like.
//!
//! Heavy (about 15 s on an idle machine; the dev profile is optimised) and sensitive to machine
//! load, hence ignored:
//! ```sh
//! cargo test --test modp_timing -- --ignored --nocapture
//! cargo test --features gmp --test modp_timing -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::PrimeOrderGroup;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Welch's t between two samples.
fn welch_t(a: &[f64], b: &[f64]) -> f64 {
    let stats = |v: &[f64]| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (n, mean, var)
    };
    let (na, ma, va) = stats(a);
    let (nb, mb, vb) = stats(b);
    (ma - mb) / (va / na + vb / nb).sqrt()
}

/// The largest `|t|` over no cropping and cropping at the pooled 50th and 90th percentiles.
fn max_abs_t(fixed: &[f64], random: &[f64]) -> f64 {
    let mut pooled: Vec<f64> = fixed.iter().chain(random).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let mut worst = welch_t(fixed, random).abs();
    for pct in [0.5, 0.9] {
        let cut = pooled[((pooled.len() as f64) * pct) as usize];
        let f: Vec<f64> = fixed.iter().copied().filter(|&x| x <= cut).collect();
        let r: Vec<f64> = random.iter().copied().filter(|&x| x <= cut).collect();
        if f.len() > 10 && r.len() > 10 {
            worst = worst.max(welch_t(&f, &r).abs());
        }
    }
    worst
}

/// Times `op(fixed input)` against `op(random input)` over `samples` measurements per class,
/// in a random order; returns the largest `|t|`. All inputs are drawn before the first
/// measurement, so that nothing but `op` runs between two readings of the clock.
fn dudect<I, F>(
    samples: usize,
    fixed: I,
    mut random: impl FnMut(&mut ChaCha20Rng) -> I,
    mut op: F,
) -> f64
where
    I: Clone,
    F: FnMut(&I),
{
    let mut rng = ChaCha20Rng::seed_from_u64(2017);
    let mut classes: Vec<bool> = (0..2 * samples).map(|i| i < samples).collect();
    for i in (1..classes.len()).rev() {
        classes.swap(i, rng.gen_range(0..=i));
    }
    let inputs: Vec<I> = classes
        .iter()
        .map(|&f| if f { fixed.clone() } else { random(&mut rng) })
        .collect();
    // Warm the caches and any lazily built table.
    op(&fixed);
    let (mut tf, mut tr) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for (&use_fixed, input) in classes.iter().zip(&inputs) {
        let start = Instant::now();
        op(input);
        let ns = start.elapsed().as_nanos() as f64;
        if use_fixed {
            tf.push(ns);
        } else {
            tr.push(ns);
        }
    }
    max_abs_t(&tf, &tr)
}

#[test]
#[ignore = "timing measurement: run in release, on an idle machine (see the module docs)"]
fn secret_exponent_paths_show_no_timing_difference() {
    let g = ModpGroup::rfc3526_2048();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let base = g.exp_generator(&g.random_scalar(&mut rng));
    let one = g.scalar_from_i64(1);

    let t_exp = dudect(
        300,
        one.clone(),
        |r| g.random_scalar(r),
        |e| {
            black_box(g.exp(&base, e));
        },
    );
    // h_i^r from a client's prepared public key (the Lim–Lee comb).
    let prepared = g.precompute_base(&base);
    let t_prep = dudect(
        1000,
        one.clone(),
        |r| g.random_scalar(r),
        |e| {
            black_box(g.exp_precomputed(&prepared, e));
        },
    );
    let t_gen = dudect(
        1500,
        one.clone(),
        |r| g.random_scalar(r),
        |e| {
            black_box(g.exp_generator(e));
        },
    );
    let t_small = dudect(
        20_000,
        0i64,
        |r| r.gen_range(-255..=255),
        |&x| {
            black_box(g.exp_generator_i64(x, 255));
        },
    );
    // The control: the variable-time ladder leaks the exponent's length.
    let t_control = dudect(
        300,
        one.clone(),
        |r| g.random_scalar(r),
        |e| {
            black_box(g.vartime_exp(&base, e));
        },
    );
    println!("dudect |t| (fixed exponent 1 vs random), RFC 3526 2048-bit group:");
    println!("  exp (h^r, cmt^s)          |t| = {t_exp:.2}");
    println!("  exp_precomputed (comb)    |t| = {t_prep:.2}");
    println!("  exp_generator (g^r)       |t| = {t_gen:.2}");
    println!("  exp_generator_i64 (g^x)   |t| = {t_small:.2}  (x = 0 vs |x| <= 255)");
    println!("  vartime_exp (control)     |t| = {t_control:.2}");
    assert!(
        t_control > 10.0,
        "the test cannot see a known leak: |t| = {t_control}"
    );
    for (name, t) in [
        ("exp", t_exp),
        ("exp_precomputed", t_prep),
        ("exp_generator", t_gen),
        ("exp_generator_i64", t_small),
    ] {
        assert!(t < 10.0, "{name}: |t| = {t:.2} exceeds dudect's threshold");
    }
}
