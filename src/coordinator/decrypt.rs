//! The server's one decryption path: FEIP inner products from ciphertexts prepared for many
//! keys, shared by [`Server`](crate::coordinator::Server)'s secure matrix products and by secure
//! training and prediction.
//!
//! For a ciphertext `(ct0, ct_1, …, ct_n) = (g^r, h_i^r g^{x_i})` and a function key `sk_y =
//! <y, s>`,
//!
//! ```text
//! <x, y> = dlog_g( ∏_k b_k^{t_k} / ct0^{sk_y} )
//! ```
//!
//! where the bases `b_k` are either the components themselves (`t = y`,
//! [`PreparedComponents`]) or products of components over index sets `S_k` — e.g. the boxes of a
//! [placement](crate::coordinator::placement) — with `y = Σ_k t_k · 1_{S_k}`: `∏_{i ∈ S_k} ct_i`
//! is a component of the aggregated plaintext `Σ_{i ∈ S_k} x_i`, so both forms give the same
//! `g^{<x, y>}`. A [`DecryptionBases`] implementation says how to raise its bases to a key
//! vector's terms and `ct0` to a key; [`vartime_decryption_element`] divides the two (in two
//! halves when the numerator is computed before the key arrives: [`vartime_divide_by_key`]), and
//! [`vartime_decrypt_columns`] does so for every (ciphertext, key) pair of a batch in parallel,
//! then solves each ciphertext's discrete logs in one batch within its bound.
//!
//! Everything here is variable time: it sees only public values (ciphertexts, key vectors,
//! function keys) and the results the keys entitle the server to.

use std::time::Instant;

use rayon::prelude::*;

use crate::fe::dlog::DlogSolver;
use crate::fe::error::DlogError;
use crate::fe::feip::{Ciphertext, FunctionKey};
use crate::fe::group::PrimeOrderGroup;

/// A ciphertext prepared for decryption under many keys whose vectors come as terms `T`.
pub trait DecryptionBases<G: PrimeOrderGroup, T: ?Sized>: Sync {
    /// `∏_k b_k^{t_k}` over the terms of one key vector.
    fn vartime_numerator(&self, group: &G, terms: &T) -> G::Element;
    /// `ct0^{sk}`.
    fn vartime_ct0_exp(&self, group: &G, sk: &G::Scalar) -> G::Element;
}

/// `g^{<x, y>} = ∏ b_k^{t_k} / ct0^{sk_y}` for one key (see the [module docs](self)).
#[must_use]
pub fn vartime_decryption_element<G, T, P>(
    group: &G,
    prepared: &P,
    terms: &T,
    key: &FunctionKey<G>,
) -> G::Element
where
    G: PrimeOrderGroup,
    T: ?Sized,
    P: DecryptionBases<G, T>,
{
    let num = prepared.vartime_numerator(group, terms);
    vartime_divide_by_key(group, prepared, num, key)
}

/// The second half of [`vartime_decryption_element`]: `numerator / ct0^{sk_y}` for a numerator
/// `∏ b_k^{t_k}` computed beforehand, e.g. while the key service was deriving `sk_y` (the
/// numerator depends only on the ciphertext and the public key vector).
#[must_use]
pub fn vartime_divide_by_key<G, T, P>(
    group: &G,
    prepared: &P,
    mut numerator: G::Element,
    key: &FunctionKey<G>,
) -> G::Element
where
    G: PrimeOrderGroup,
    T: ?Sized,
    P: DecryptionBases<G, T>,
{
    let den = prepared.vartime_ct0_exp(group, key.scalar());
    group.div_assign(&mut numerator, &den);
    numerator
}

/// Wall seconds spent in the two phases of [`vartime_decrypt_columns`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecryptTimes {
    /// Group operations: numerators, `ct0` exponentiations, divisions.
    pub group_seconds: f64,
    /// Discrete logs.
    pub dlog_seconds: f64,
}

/// One ciphertext's share of a batch: its prepared bases and the `(terms, key)` pairs to
/// decrypt it under.
pub type DecryptionColumn<'a, G, T, P> = (&'a P, Vec<(&'a T, &'a FunctionKey<G>)>);

/// Decrypts every `(terms, key)` pair of every column: the elements in parallel, then each
/// column's discrete logs in one batch with `solvers[j]` (a bound per column; `solvers` may
/// hold one solver for all). Result `[j][i]` belongs to pair `i` of column `j`; a value outside
/// its solver's bound is that solver's [`DlogError`]. Adds the phases' wall times to `times`.
///
/// # Errors
/// Per value, as [`DlogSolver::vartime_solve_batch`]; an empty `solvers` gives
/// [`DlogError::OutOfRange`] with bound 0 for every value.
#[must_use]
pub fn vartime_decrypt_columns<G, T, P>(
    group: &G,
    columns: &[DecryptionColumn<'_, G, T, P>],
    solvers: &[DlogSolver<G>],
    times: &mut DecryptTimes,
) -> Vec<Vec<Result<i64, DlogError>>>
where
    G: PrimeOrderGroup,
    T: ?Sized + Sync,
    P: DecryptionBases<G, T>,
{
    let t = Instant::now();
    let elements: Vec<Vec<G::Element>> = columns
        .par_iter()
        .map(|(prepared, pairs)| {
            pairs
                .par_iter()
                .map(|(terms, key)| vartime_decryption_element(group, *prepared, *terms, key))
                .collect()
        })
        .collect();
    times.group_seconds += t.elapsed().as_secs_f64();
    let t = Instant::now();
    let solved = elements
        .par_iter()
        .enumerate()
        .map(|(j, elems)| match solvers.get(j).or(solvers.first()) {
            Some(solver) => solver.vartime_solve_batch(elems),
            None => elems
                .iter()
                .map(|_| Err(DlogError::OutOfRange { bound: 0 }))
                .collect(),
        })
        .collect();
    times.dlog_seconds += t.elapsed().as_secs_f64();
    solved
}

/// A ciphertext prepared for key vectors over its own components: the components and a
/// fixed-base table of `ct0` (built once, used by every key).
pub struct PreparedComponents<'a, G: PrimeOrderGroup> {
    ciphertext: &'a Ciphertext<G>,
    ct0: G::VartimePrecomputedBase,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for PreparedComponents<'_, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedComponents")
            .field("n", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl<'a, G: PrimeOrderGroup> PreparedComponents<'a, G> {
    /// Builds the `ct0` table of `ciphertext`.
    #[must_use]
    pub fn new(group: &G, ciphertext: &'a Ciphertext<G>) -> Self {
        Self {
            ciphertext,
            ct0: group.vartime_precompute_base(ciphertext.ct0()),
        }
    }
}

/// Sparse terms `(i, y_i)`; every index must be below the ciphertext's length (the caller
/// validates key vectors against the domain's `n` first).
impl<G: PrimeOrderGroup> DecryptionBases<G, [(usize, i64)]> for PreparedComponents<'_, G> {
    fn vartime_numerator(&self, group: &G, terms: &[(usize, i64)]) -> G::Element {
        let comps = self.ciphertext.components();
        group.vartime_multi_exp_i64(terms.iter().map(|&(i, y)| (&comps[i], y)))
    }

    fn vartime_ct0_exp(&self, group: &G, sk: &G::Scalar) -> G::Element {
        group.vartime_exp_precomputed(&self.ct0, sk)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fe::dlog::BabyStepTable;
    use crate::fe::feip::{Feip, FeipParams};
    use crate::fe::group::ristretto::Ristretto255;
    use rand::{Rng, SeedableRng};

    /// Products of components over index sets, with the aggregated terms.
    struct Aggregated<G: PrimeOrderGroup> {
        bases: Vec<G::Element>,
        ct0: G::Element,
    }

    impl<G: PrimeOrderGroup> DecryptionBases<G, [(usize, i64)]> for Aggregated<G> {
        fn vartime_numerator(&self, group: &G, terms: &[(usize, i64)]) -> G::Element {
            group.vartime_multi_exp_i64(terms.iter().map(|&(k, t)| (&self.bases[k], t)))
        }
        fn vartime_ct0_exp(&self, group: &G, sk: &G::Scalar) -> G::Element {
            group.vartime_exp(&self.ct0, sk)
        }
    }

    /// Both forms of the bases decrypt `<x, y>` exactly; out-of-range values are errors.
    #[test]
    fn component_and_aggregated_bases_decrypt_the_inner_product() {
        let g = Ristretto255;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let n = 12;
        let feip = Feip::new(g, FeipParams::new(n, 100, 100).unwrap());
        let (msk, mpk) = feip.setup(&mut rng);
        let xs: Vec<Vec<i64>> = (0..3)
            .map(|_| (0..n).map(|_| rng.gen_range(-100..=100)).collect())
            .collect();
        let cts: Vec<_> = xs
            .iter()
            .map(|x| feip.encrypt(&mpk, x, &mut rng).unwrap())
            .collect();
        // Sets S_k = {2k, 2k+1}; aggregated terms t_k give y = Σ t_k 1_{S_k}.
        let ts: Vec<Vec<(usize, i64)>> = (0..4)
            .map(|_| (0..n / 2).map(|k| (k, rng.gen_range(-100..=100))).collect())
            .collect();
        let ys: Vec<Vec<(usize, i64)>> = ts
            .iter()
            .map(|t| {
                t.iter()
                    .flat_map(|&(k, v)| [(2 * k, v), (2 * k + 1, v)])
                    .collect()
            })
            .collect();
        let keys: Vec<_> = ys
            .iter()
            .map(|y| feip.derive_key_sparse(&msk, y).unwrap())
            .collect();
        let table = Arc::new(BabyStepTable::new(g, 1 << 10).unwrap());
        let solver = DlogSolver::new(Arc::clone(&table), 100 * 100 * n as u64).unwrap();
        let want: Vec<Vec<i64>> = xs
            .iter()
            .map(|x| {
                ys.iter()
                    .map(|y| y.iter().map(|&(i, v)| v * x[i]).sum())
                    .collect()
            })
            .collect();

        let prepared: Vec<_> = cts.iter().map(|c| PreparedComponents::new(&g, c)).collect();
        let columns: Vec<DecryptionColumn<'_, _, [(usize, i64)], _>> = prepared
            .iter()
            .map(|p| (p, ys.iter().zip(&keys).map(|(y, k)| (&y[..], k)).collect()))
            .collect();
        let mut times = DecryptTimes::default();
        let got = vartime_decrypt_columns(&g, &columns, std::slice::from_ref(&solver), &mut times);
        let got: Vec<Vec<i64>> = got
            .into_iter()
            .map(|c| c.into_iter().map(Result::unwrap).collect())
            .collect();
        assert_eq!(got, want);

        let aggregated: Vec<Aggregated<Ristretto255>> = cts
            .iter()
            .map(|c| Aggregated {
                bases: (0..n / 2)
                    .map(|k| g.op(&c.components()[2 * k], &c.components()[2 * k + 1]))
                    .collect(),
                ct0: *c.ct0(),
            })
            .collect();
        let columns: Vec<DecryptionColumn<'_, _, [(usize, i64)], _>> = aggregated
            .iter()
            .map(|p| (p, ts.iter().zip(&keys).map(|(t, k)| (&t[..], k)).collect()))
            .collect();
        let got = vartime_decrypt_columns(&g, &columns, std::slice::from_ref(&solver), &mut times);
        for (c, w) in got.into_iter().zip(&want) {
            let c: Vec<i64> = c.into_iter().map(Result::unwrap).collect();
            assert_eq!(&c, w);
        }

        // A bound below the values: errors, never a wrong value.
        let tight = DlogSolver::new(table, 1).unwrap();
        let got = vartime_decrypt_columns(&g, &columns, std::slice::from_ref(&tight), &mut times);
        for (c, w) in got.iter().zip(&want) {
            for (r, &v) in c.iter().zip(w) {
                assert!(r.is_err() || *r.as_ref().unwrap() == v);
                assert_eq!(r.is_ok(), v.abs() <= 1);
            }
        }
        assert!(vartime_decrypt_columns(&g, &columns, &[], &mut times)
            .iter()
            .flatten()
            .all(Result::is_err));

        // In two halves (numerator first, key later): the same element, the same value; the
        // numerator of one vector with the key of another does not decrypt to either value.
        for (p, w) in prepared.iter().zip(&want) {
            for (j, (y, k)) in ys.iter().zip(&keys).enumerate() {
                let num = p.vartime_numerator(&g, &y[..]);
                let split = vartime_divide_by_key::<_, [(usize, i64)], _>(&g, p, num, k);
                assert_eq!(split, vartime_decryption_element(&g, p, &y[..], k));
                assert_eq!(
                    solver.vartime_solve_batch(&[split])[0].as_ref().ok(),
                    Some(&w[j])
                );
                let other = &keys[(j + 1) % keys.len()];
                let num = p.vartime_numerator(&g, &y[..]);
                let wrong = vartime_divide_by_key::<_, [(usize, i64)], _>(&g, p, num, other);
                assert_ne!(wrong, split);
            }
        }
    }
}
