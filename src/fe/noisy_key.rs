//! Ciphertext-bound **noisy** FEIP keys: decryption reveals `<x, y> + e` for one ciphertext,
//! with an integer `e` chosen by the key's issuer, instead of the exact `<x, y>`.
//!
//! For a FEIP ciphertext `ct = (ct0 = g^r, ct_i = h_i^r · g^{x_i})` (see [`crate::fe::feip`]),
//! the holder of the master secret key `s` who is shown `ct0` only (never the `ct_i`, so it
//! learns nothing of `x`) returns the group element
//!
//! ```text
//! K = ct0^{<s, y>} · g^{−e}
//! ```
//!
//! and the decryptor computes
//!
//! ```text
//! ∏ ct_i^{y_i} / K = g^{r<s,y> + <x,y>} / g^{r<s,y> − e} = g^{<x, y> + e}
//! ```
//!
//! whose bounded discrete log is `<x, y> + e`. Drawing `e` from a discrete Gaussian
//! ([`crate::fe::discrete_gaussian`]) makes each released value a Gaussian mechanism.
//!
//! # Security notes
//! - `K` is bound to one `ct0`: on another ciphertext it decrypts to garbage. A key for `ct0`
//!   and the plain function key `sk_y` together reveal `g^{−e}`, hence `e`: an issuer must never
//!   give plain keys for a domain whose values it blurs.
//! - An issuer that answers for any `ct0` is an oracle `ct0 ↦ ct0^{<s,y>}` (a disguised
//!   `ct0 · g^t` gives `g^{t<s,y>}`); it should answer only for `ct0` values the encryptor
//!   registered, as the authority does
//!   ([`Authority::issue_noisy_feip_keys`](crate::coordinator::Authority::issue_noisy_feip_keys)).
//! - Derivation runs in time independent of `s` and `e` (a constant-time fixed-base table of
//!   `ct0`, and `g^{−e}` in time that depends only on the public `noise_bound`); decryption is
//!   variable time over public values.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
//! use cryptonn::fe::feip::{Feip, FeipParams};
//! use cryptonn::fe::group::ristretto::Ristretto255;
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(7);
//! let feip = Feip::new(Ristretto255, FeipParams::new(4, 255, 127)?);
//! let (msk, mpk) = feip.setup(&mut rng);
//! let ct = feip.encrypt(&mpk, &[12, -255, 0, 77], &mut rng)?;
//!
//! // The issuer sees only ct0.
//! let ct0 = feip.prepare_ct0(ct.ct0());
//! let terms = [(0, 3), (1, 1), (3, 2)];
//! let key = feip.derive_noisy_key_sparse(&msk, &ct0, &terms, -5, 1 << 10)?;
//!
//! let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 10)?);
//! let dlog = DlogSolver::new(table, 1 << 16)?;
//! let value = feip.vartime_noisy_decrypt_sparse(&ct, &terms, &key, &dlog)?;
//! assert_eq!(value, 12 * 3 - 255 + 77 * 2 - 5); // <x, y> + e
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::fe::dlog::DlogSolver;
use crate::fe::error::FeError;
use crate::fe::feip::{Ciphertext, Feip, FunctionKey, MasterSecretKey};
use crate::fe::group::PrimeOrderGroup;

/// A noisy key `K = ct0^{<s,y>} · g^{−e}` for one ciphertext and one key vector.
#[derive(Clone, PartialEq, Eq)]
pub struct NoisyKey<G: PrimeOrderGroup> {
    k: G::Element,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for NoisyKey<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoisyKey(..)")
    }
}

impl<G: PrimeOrderGroup> NoisyKey<G> {
    /// A key from its group element (e.g. after deserialisation).
    #[must_use]
    pub fn from_element(k: G::Element) -> Self {
        Self { k }
    }
    /// The element `K`.
    #[must_use]
    pub fn element(&self) -> &G::Element {
        &self.k
    }
}

/// A constant-time fixed-base table of one ciphertext's `ct0`, built by the issuer once and
/// used for every key vector that meets this ciphertext.
pub struct PreparedCt0<G: PrimeOrderGroup> {
    table: G::PrecomputedBase,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for PreparedCt0<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedCt0(..)")
    }
}

impl<G: PrimeOrderGroup> Feip<G> {
    /// The issuer's table of `ct0` (one fixed-base precomputation).
    #[must_use]
    pub fn prepare_ct0(&self, ct0: &G::Element) -> PreparedCt0<G> {
        PreparedCt0 {
            table: self.group().precompute_base(ct0),
        }
    }

    /// `K = ct0^{<s,y>} · g^{−noise}` for the sparse key vector `terms` (strictly increasing
    /// indices). `noise_bound` is a public bound on `|noise|` that fixes the time of `g^{−e}`
    /// (a larger `|noise|` is still correct, its timing then reveals it).
    ///
    /// # Errors
    /// As [`Feip::derive_key_sparse`]: [`FeError::InvalidSparseIndex`],
    /// [`FeError::KeyOutOfBound`].
    pub fn derive_noisy_key_sparse(
        &self,
        msk: &MasterSecretKey<G>,
        ct0: &PreparedCt0<G>,
        terms: &[(usize, i64)],
        noise: i64,
        noise_bound: u64,
    ) -> Result<NoisyKey<G>, FeError> {
        let sk = self.derive_key_sparse(msk, terms)?;
        Ok(self.noisy_key_from_function_key(ct0, &sk, noise, noise_bound))
    }

    /// `K = ct0^{sk_y} · g^{−noise}` from the function key `sk_y` of the key vector (see
    /// [`derive_noisy_key_sparse`](Self::derive_noisy_key_sparse)): for an issuer that meets
    /// the same `y` on many ciphertexts and derives `sk_y` once. Constant time in `sk_y` and,
    /// up to the public `noise_bound`, in `noise`.
    #[must_use]
    pub fn noisy_key_from_function_key(
        &self,
        ct0: &PreparedCt0<G>,
        sk: &FunctionKey<G>,
        noise: i64,
        noise_bound: u64,
    ) -> NoisyKey<G> {
        let g = self.group();
        let mut k = g.exp_precomputed(&ct0.table, sk.scalar());
        let shift = g.exp_generator_i64(noise, noise_bound);
        g.div_assign(&mut k, &shift);
        NoisyKey { k }
    }

    /// `g^{<x,y> + e} = ∏ ct_i^{y_i} / K` for the sparse key vector `terms`.
    ///
    /// # Errors
    /// [`FeError::DimensionMismatch`] for a ciphertext of another length;
    /// [`FeError::InvalidSparseIndex`]; [`FeError::KeyOutOfBound`].
    pub fn vartime_noisy_decrypt_sparse_element(
        &self,
        ct: &Ciphertext<G>,
        terms: &[(usize, i64)],
        key: &NoisyKey<G>,
    ) -> Result<G::Element, FeError> {
        let p = self.params();
        if ct.len() != p.n() {
            return Err(FeError::DimensionMismatch {
                expected: p.n(),
                got: ct.len(),
            });
        }
        let mut prev: Option<usize> = None;
        for &(index, value) in terms {
            if index >= p.n() || prev.is_some_and(|q| index <= q) {
                return Err(FeError::InvalidSparseIndex { index, n: p.n() });
            }
            if value.unsigned_abs() > p.y_bound() {
                return Err(FeError::KeyOutOfBound {
                    index,
                    value,
                    bound: p.y_bound(),
                });
            }
            prev = Some(index);
        }
        let comps = ct.components();
        let g = self.group();
        let mut num = g.vartime_multi_exp_i64(terms.iter().map(|&(i, y)| (&comps[i], y)));
        g.div_assign(&mut num, &key.k);
        Ok(num)
    }

    /// `<x, y> + e` for the sparse key vector `terms`.
    ///
    /// # Errors
    /// As [`vartime_noisy_decrypt_sparse_element`](Self::vartime_noisy_decrypt_sparse_element),
    /// plus [`FeError::Dlog`] if the value lies outside the solver's bound (a key of another
    /// ciphertext or vector, or noise beyond the bound).
    pub fn vartime_noisy_decrypt_sparse(
        &self,
        ct: &Ciphertext<G>,
        terms: &[(usize, i64)],
        key: &NoisyKey<G>,
        dlog: &DlogSolver<G>,
    ) -> Result<i64, FeError> {
        let e = self.vartime_noisy_decrypt_sparse_element(ct, terms, key)?;
        Ok(dlog.vartime_solve(&e)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::fe::dlog::BabyStepTable;
    use crate::fe::feip::FeipParams;
    use crate::fe::group::ristretto::Ristretto255;

    #[test]
    fn decryption_gives_the_inner_product_plus_the_noise() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let feip = Feip::new(Ristretto255, FeipParams::new(16, 255, 100).unwrap());
        let (msk, mpk) = feip.setup(&mut rng);
        let x: Vec<i64> = (0..16).map(|i| i * 17 - 120).collect();
        let ct = feip.encrypt(&mpk, &x, &mut rng).unwrap();
        let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 10).unwrap());
        let dlog = DlogSolver::new(table, 1 << 20).unwrap();
        let ct0 = feip.prepare_ct0(ct.ct0());
        let terms: Vec<(usize, i64)> = vec![(0, 5), (3, -7), (9, 100), (15, 1)];
        let exact: i64 = terms.iter().map(|&(i, y)| x[i] * y).sum();
        for noise in [0i64, 1, -1, 37, -4096, 100_000] {
            let key = feip
                .derive_noisy_key_sparse(&msk, &ct0, &terms, noise, 1 << 12)
                .unwrap();
            let got = feip
                .vartime_noisy_decrypt_sparse(&ct, &terms, &key, &dlog)
                .unwrap();
            assert_eq!(got, exact + noise);
        }
        // A key bound to another ciphertext decrypts to something else.
        let other = feip.encrypt(&mpk, &x, &mut rng).unwrap();
        let key = feip
            .derive_noisy_key_sparse(&msk, &ct0, &terms, 0, 1)
            .unwrap();
        assert!(!matches!(
            feip.vartime_noisy_decrypt_sparse(&other, &terms, &key, &dlog),
            Ok(v) if v == exact
        ));
        // Malformed vectors are refused on both sides.
        assert!(feip
            .derive_noisy_key_sparse(&msk, &ct0, &[(3, 1), (2, 1)], 0, 1)
            .is_err());
        assert!(feip
            .vartime_noisy_decrypt_sparse_element(&ct, &[(16, 1)], &key)
            .is_err());
        assert!(feip
            .vartime_noisy_decrypt_sparse_element(&ct, &[(1, 101)], &key)
            .is_err());
    }
}
