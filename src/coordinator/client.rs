//! The client: encodes and encrypts its own data. It only ever sees a domain's public key.
//!
//! [`Client::encrypt_matrix`] encrypts `X ∈ Z^{n×m}` column by column (one sample per column)
//! under FEIP, with a fresh `r_j` per column; columns are encrypted in parallel, each from its
//! own ChaCha20 stream seeded from the client's generator in column order, so the output does not
//! depend on the number of threads. The public key is prepared once (fixed-base tables for the
//! `h_i`) when the client is created. [`Client::encrypt_matrix_f64`] encodes reals with a
//! [`FixedPoint`] codec first; [`Client::febo_encrypt_matrix`] encrypts entry by entry under
//! FEBO for element-wise operations.
//!
//! After a domain rotation, [`Client::rekey`] switches to the successor's public key; data must
//! then be encrypted again.

use ndarray::{ArrayView2, AsArray, Ix2};
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::coordinator::elementwise::FeboEncryptedMatrix;
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::matmul::EncryptedMatrix;
use crate::coordinator::messages::{DomainId, DomainPublicKey};
use crate::fe::encoding::FixedPoint;
use crate::fe::febo::Febo;
use crate::fe::feip::{Feip, PreparedPublicKey};
use crate::fe::group::PrimeOrderGroup;

/// A data owner holding a domain's public key.
pub struct Client<G: PrimeOrderGroup> {
    pk: DomainPublicKey<G>,
    feip: Feip<G>,
    prepared: PreparedPublicKey<G>,
    rng: ChaCha20Rng,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for Client<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("domain", &self.pk.domain)
            .field("params", &self.pk.feip_params)
            .finish_non_exhaustive()
    }
}

/// A 32-byte seed from `rng`, zeroized when dropped (whoever holds a ciphertext's seed
/// decrypts it).
fn seed_from<R: RngCore>(rng: &mut R) -> Zeroizing<[u8; 32]> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut seed[..]);
    seed
}

impl<G: PrimeOrderGroup> Drop for Client<G> {
    /// Overwrites the ChaCha20 state from which every ciphertext's randomness is drawn
    /// (`rand_chacha` offers no `Zeroize`; the `black_box` keeps the store from being elided).
    fn drop(&mut self) {
        self.rng = ChaCha20Rng::from_seed([0u8; 32]);
        std::hint::black_box(&self.rng);
    }
}

impl<G: PrimeOrderGroup> Client<G> {
    /// A client for the domain of `pk`, with randomness from the operating system.
    ///
    /// # Errors
    /// [`CoordinatorError::Fe`] if the public key's length does not match its parameters.
    pub fn new(group: G, pk: DomainPublicKey<G>) -> Result<Self, CoordinatorError> {
        Self::from_seed(group, pk, *seed_from(&mut OsRng))
    }

    /// A deterministic client: its encryption randomness follows from `seed`. **For tests and
    /// reproducible benchmarks only** — whoever knows the seed can decrypt its ciphertexts.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_seed(
        group: G,
        pk: DomainPublicKey<G>,
        seed: [u8; 32],
    ) -> Result<Self, CoordinatorError> {
        let feip = Feip::new(group, pk.feip_params);
        let prepared = feip.prepare_public_key(&pk.feip)?;
        Ok(Self {
            pk,
            feip,
            prepared,
            rng: ChaCha20Rng::from_seed(seed),
        })
    }

    /// Switches to another domain's public key (after a rotation); the randomness continues.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn rekey(&mut self, pk: DomainPublicKey<G>) -> Result<(), CoordinatorError> {
        let feip = Feip::new(self.feip.group().clone(), pk.feip_params);
        self.prepared = feip.prepare_public_key(&pk.feip)?;
        self.feip = feip;
        self.pk = pk;
        Ok(())
    }

    /// The domain this client encrypts under.
    #[must_use]
    pub fn domain(&self) -> DomainId {
        self.pk.domain
    }

    /// The domain's public key.
    #[must_use]
    pub fn public_key(&self) -> &DomainPublicKey<G> {
        &self.pk
    }

    fn encrypt_view(
        &mut self,
        x: ArrayView2<'_, i64>,
        encoding: Option<FixedPoint>,
    ) -> Result<EncryptedMatrix<G>, CoordinatorError> {
        let (n, m) = x.dim();
        if n != self.pk.feip_params.n() {
            return Err(CoordinatorError::ShapeMismatch {
                what: "rows of X (vector length n)",
                expected: self.pk.feip_params.n(),
                got: n,
            });
        }
        if m == 0 {
            return Err(CoordinatorError::Empty("matrix without columns"));
        }
        let seeds: Vec<Zeroizing<[u8; 32]>> = (0..m).map(|_| seed_from(&mut self.rng)).collect();
        let (feip, prepared) = (&self.feip, &self.prepared);
        let columns = seeds
            .into_par_iter()
            .enumerate()
            .map(|(j, seed)| {
                let col: Vec<i64> = x.column(j).to_vec();
                let mut rng = ChaCha20Rng::from_seed(*seed);
                feip.encrypt_prepared(prepared, &col, &mut rng)
            })
            .collect::<Result<Vec<_>, _>>()?;
        EncryptedMatrix::from_ciphertexts(self.pk.domain, self.pk.feip_params, columns, encoding)
    }

    /// Encrypts `X ∈ Z^{n×m}` column by column: one FEIP ciphertext per column (sample).
    ///
    /// # Errors
    /// [`CoordinatorError::ShapeMismatch`] if `X` does not have `n` rows;
    /// [`CoordinatorError::Empty`] if it has no column; [`CoordinatorError::Fe`] with
    /// [`PlaintextOutOfBound`](crate::fe::error::FeError::PlaintextOutOfBound) if an entry
    /// exceeds the domain's bound `X`.
    pub fn encrypt_matrix<'a, V: AsArray<'a, i64, Ix2>>(
        &mut self,
        x: V,
    ) -> Result<EncryptedMatrix<G>, CoordinatorError> {
        self.encrypt_view(x.into(), None)
    }

    /// Encrypts one vector `x ∈ Z^n` (a matrix with one column).
    ///
    /// # Errors
    /// As [`encrypt_matrix`](Self::encrypt_matrix).
    pub fn encrypt_vector(&mut self, x: &[i64]) -> Result<EncryptedMatrix<G>, CoordinatorError> {
        let view = ArrayView2::from_shape((x.len(), 1), x).map_err(|_| {
            CoordinatorError::ShapeMismatch {
                what: "vector length",
                expected: self.pk.feip_params.n(),
                got: x.len(),
            }
        })?;
        self.encrypt_view(view, None)
    }

    /// Encodes real `X ∈ R^{n×m}` with `codec` (`round(x · S)`), then encrypts it as
    /// [`encrypt_matrix`](Self::encrypt_matrix) does. The codec travels with the ciphertexts
    /// (it is public) so the server can decode products.
    ///
    /// # Errors
    /// [`CoordinatorError::Encoding`] for NaN, infinities or values beyond the codec's bound;
    /// otherwise as [`encrypt_matrix`](Self::encrypt_matrix).
    pub fn encrypt_matrix_f64<'a, V: AsArray<'a, f64, Ix2>>(
        &mut self,
        x: V,
        codec: FixedPoint,
    ) -> Result<EncryptedMatrix<G>, CoordinatorError> {
        let x: ArrayView2<'_, f64> = x.into();
        let mut encoded = ndarray::Array2::<i64>::zeros(x.dim());
        for (dst, &v) in encoded.iter_mut().zip(x.iter()) {
            *dst = codec.encode(v)?;
        }
        self.encrypt_view(encoded.view(), Some(codec))
    }

    /// Encrypts every entry of `X` under the domain's FEBO key, for element-wise operations.
    ///
    /// # Errors
    /// [`CoordinatorError::FeboDisabled`] if the domain has no FEBO key;
    /// [`CoordinatorError::Empty`] for an empty matrix; [`CoordinatorError::Fe`] if an entry
    /// exceeds the FEBO bound.
    pub fn febo_encrypt_matrix<'a, V: AsArray<'a, i64, Ix2>>(
        &mut self,
        x: V,
    ) -> Result<FeboEncryptedMatrix<G>, CoordinatorError> {
        let x: ArrayView2<'_, i64> = x.into();
        let (params, pk) = self
            .pk
            .febo
            .as_ref()
            .ok_or(CoordinatorError::FeboDisabled(self.pk.domain))?;
        let febo = Febo::new(self.feip.group().clone(), *params);
        let values: Vec<i64> = x.iter().copied().collect();
        let seeds: Vec<Zeroizing<[u8; 32]>> =
            values.iter().map(|_| seed_from(&mut self.rng)).collect();
        let cells = values
            .par_iter()
            .zip(seeds)
            .map(|(&v, seed)| febo.encrypt(pk, v, &mut ChaCha20Rng::from_seed(*seed)))
            .collect::<Result<Vec<_>, _>>()?;
        FeboEncryptedMatrix::from_ciphertexts(self.pk.domain, *params, x.dim(), cells)
    }
}
