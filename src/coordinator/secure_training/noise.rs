//! Training with noisy first-layer values (`--noise-sigma`), secure and quantised alike.
//!
//! # Design
//! - **Secure mode.** Every shard domain is made noisy
//!   ([`Authority::make_noisy`](crate::coordinator::Authority::make_noisy)) before any key is
//!   issued. The data owner registers each image's `ct0` under the image's index in the
//!   training set as its sample id ([`register_noisy_ciphertexts`]), as it registers its FEBO
//!   label commitments. The server asks for ciphertext-bound noisy keys
//!   ([`SecureFirstLayer::with_noisy_keys`](crate::coordinator::secure_training::SecureFirstLayer::with_noisy_keys))
//!   and decrypts `z + e` (forward) and `G_n + e` per image and gradient entry.
//! - **The noise.** `e = DG_σ(PRF_k(i ‖ H(y)))` with `i` the sample index, `y` the pixel-space
//!   key vector (canonical sparse form, [`noise_input`]) and `k` the authority's noise key. The
//!   training drivers derive `k` from the run's seed ([`training_noise_key`]), so
//!   - **quantised mode** ([`NoisyReference`]) forms the same `y` from the same weights (the
//!     same [`ConvGeometry`] expansion the server uses), knows `i`, and draws the same `e`
//!     without any ciphertext: for the same seed, secure and quantised training stay bit for
//!     bit identical with noise on;
//!   - the noise does not depend on the step or epoch: the same `y` on the same image gets
//!     the same `e` whenever it is asked again.
//! - **Caveat.** A key derived from `--seed` is reproducible by whoever knows the seed, and so
//!   removable by them: that is what makes the quantised reference possible, and why a
//!   deployment's authority keeps its own random noise key (the default of
//!   [`Authority`](crate::coordinator::Authority)) and gives the server no seed.
//! - **Accounting.** Each released value is charged to its sample at the authority with
//!   coordinate range `R = 2·pixel_bound` (see [`crate::coordinator::accountant`]).
//! - `σ = 0` changes nothing: no domain is made noisy and no noise is drawn, so runs are the
//!   plain runs bit for bit.

use std::collections::HashSet;

use ndarray::{Array2, ArrayView2};

use crate::coordinator::accountant::{
    gaussian_rdp_unit, sensitivities, PrivacyAccountant, PrivacyBudget, SampleLoss,
};

use crate::coordinator::authority::{Authority, NoiseConfig};
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::key_service::{InProcessKeyService, KeyService, SharedAuthority};
use crate::coordinator::messages::{noise_input, DomainId, NoisyCiphertextRegistration};
use crate::coordinator::secure_training::encrypted_dataset::EncryptedDataset;
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::coordinator::secure_training::geometry::{ConvGeometry, FirstLayerGeometry};
use crate::coordinator::secure_training::session::{EncryptedInput, SecureTrainingSession};
use crate::fe::discrete_gaussian::{DiscreteGaussian, NoiseKey};
use crate::fe::group::PrimeOrderGroup;
use crate::nn::error::NnError;
use crate::nn::first_layer::{
    check_bound, max_abs, FirstLayerBackend, FirstLayerSpec, QuantConfig,
};

/// The noise key of a training run with seed `seed`:
/// `HKDF-SHA256(seed as u64 LE, "cryptonn noise key v1", "training noise")`.
#[must_use]
pub fn training_noise_key(seed: u64) -> NoiseKey {
    NoiseKey::derive(&seed.to_le_bytes(), b"training noise")
}

/// Makes every domain of `domains` noisy with `sigma` and coordinate range `range`.
///
/// # Errors
/// As [`Authority::make_noisy`].
pub fn make_domains_noisy<G: PrimeOrderGroup>(
    authority: &mut Authority<G>,
    domains: &[DomainId],
    sigma: DiscreteGaussian,
    range: u64,
) -> Result<(), CoordinatorError> {
    let config = NoiseConfig {
        sigma,
        coordinate_range: range,
    };
    for &d in domains {
        authority.make_noisy(d, config)?;
    }
    Ok(())
}

/// Registers the `ct0` of every image ciphertext of `data` under its index in the whole
/// training set (a part of a sharded encryption counts from its first shard), one request per
/// shard domain, through `owner` (the data owner's key service). Returns the number newly
/// registered.
///
/// # Errors
/// The dataset's decoding errors; the authority's refusals or transport errors.
pub fn register_noisy_ciphertexts<G: PrimeOrderGroup, K: KeyService<G> + ?Sized>(
    data: &EncryptedDataset<G>,
    owner: &K,
) -> Result<usize, SecureTrainingError> {
    let header = data.header();
    let group = data.group();
    let offset = header.part.map_or(0, |p| p.first_shard) * header.params.shard_size;
    let mut total = 0;
    for (s, &domain) in header.domains.iter().enumerate() {
        let first = s * header.params.shard_size;
        let last = (first + header.params.shard_size).min(data.len());
        let ciphertexts = (first..last)
            .map(|i| {
                let ct0 = data.image_ct0(i)?;
                Ok((group.element_to_bytes(&ct0), (offset + i) as u64))
            })
            .collect::<Result<Vec<_>, SecureTrainingError>>()?;
        if ciphertexts.is_empty() {
            continue;
        }
        total += owner.register_noisy_ciphertexts(&NoisyCiphertextRegistration {
            domain,
            ciphertexts,
        })?;
    }
    Ok(total)
}

/// The data owner's and the authority's part of a noisy in-process run, after
/// [`SecureTrainingSession::encrypt`] and before any key request: sets the authority's noise
/// key and privacy budget (`None`: no budget; beyond it the authority refuses keys with
/// [`CoordinatorError::PrivacyBudgetExceeded`]), makes the shard domains of `input` noisy with
/// `sigma` (coordinate range `2·pixel_bound`) and registers every image's `ct0` as the
/// session's data owner. Returns the number of registered ciphertexts. The server then needs
/// [`SecureFirstLayer::with_noisy_keys`](crate::coordinator::secure_training::SecureFirstLayer::with_noisy_keys).
///
/// # Errors
/// The dataset's load errors; the authority's refusals (a domain that already issued keys).
pub fn enable_noise<G: PrimeOrderGroup>(
    session: &SecureTrainingSession<G>,
    authority: &SharedAuthority<G>,
    input: &EncryptedInput,
    sigma: DiscreteGaussian,
    key: NoiseKey,
    budget: Option<PrivacyBudget>,
) -> Result<usize, SecureTrainingError> {
    let data = EncryptedDataset::load(session.group().clone(), &input.path)?;
    let range = data.header().pixel_bound.saturating_mul(2);
    {
        let mut a = authority
            .lock()
            .map_err(|_| CoordinatorError::AuthorityUnavailable)?;
        a.set_noise_key(key);
        a.set_privacy_budget(budget);
        make_domains_noisy(&mut a, &data.header().domains, sigma, range)?;
    }
    let owner =
        InProcessKeyService::new(std::sync::Arc::clone(authority), session.owner_id().clone());
    register_noisy_ciphertexts(&data, &owner)
}

/// What a noisy run adds to its JSON summary: `noise_sigma`, and from the authority's
/// ledger the largest `epsilon_pixel` and `epsilon_image` of any sample at `δ = 10⁻⁵`, and
/// the most values one sample released (`noisy_releases_max`).
///
/// # Errors
/// [`CoordinatorError::AuthorityUnavailable`] for a poisoned lock.
pub fn privacy_summary<G: PrimeOrderGroup>(
    authority: &SharedAuthority<G>,
    sigma: DiscreteGaussian,
    samples: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, CoordinatorError> {
    use crate::coordinator::accountant::{Granularity, DEFAULT_DELTA};
    let a = authority
        .lock()
        .map_err(|_| CoordinatorError::AuthorityUnavailable)?;
    let acc = a.accountant();
    let releases = (0..samples as u64)
        .map(|i| acc.loss(i).releases)
        .max()
        .unwrap_or(0);
    let mut m = serde_json::Map::new();
    m.insert("noise_sigma".into(), serde_json::json!(sigma.sigma()));
    for (key, g) in [
        ("epsilon_pixel", Granularity::Pixel),
        ("epsilon_image", Granularity::Image),
    ] {
        m.insert(
            key.into(),
            serde_json::json!(acc.max_epsilon(g, DEFAULT_DELTA)),
        );
    }
    m.insert("epsilon_delta".into(), serde_json::json!(DEFAULT_DELTA));
    m.insert("noisy_releases_max".into(), serde_json::json!(releases));
    Ok(m)
}

/// The quantised reference of noisy training: wraps a first-layer backend (the quantised one)
/// and adds to each value the noise the authority adds to the same `(sample, y)` (see the
/// [module docs](self)). Only convolutional first layers, as in secure mode.
#[derive(Debug)]
pub struct NoisyReference<B> {
    inner: B,
    geometry: ConvGeometry,
    key: NoiseKey,
    sigma: DiscreteGaussian,
    watch: HashSet<usize>,
    view: Vec<Observation>,
    ledger: Option<(PrivacyAccountant, u64)>,
}

/// One value the server decrypts in a noisy run: `<xq, y> + noise` for `sample` and the key
/// vector `y` (its pixel-space terms). For evaluating attacks on the server's view.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The sample's index.
    pub sample: usize,
    /// The key vector `y` (sparse, increasing indices).
    pub terms: Vec<(usize, i64)>,
    /// The noise `e` the value carries.
    pub noise: i64,
}

fn backend_error(e: SecureTrainingError) -> NnError {
    NnError::Backend(Box::new(e))
}

impl<B: FirstLayerBackend> NoisyReference<B> {
    /// Wraps `inner`, drawing noise of `sigma` with `key`.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for a dense first layer.
    pub fn new(
        inner: B,
        key: NoiseKey,
        sigma: DiscreteGaussian,
    ) -> Result<Self, SecureTrainingError> {
        match FirstLayerGeometry::from_spec(inner.spec())? {
            FirstLayerGeometry::Conv(geometry) => Ok(Self {
                inner,
                geometry,
                key,
                sigma,
                watch: HashSet::new(),
                view: Vec::new(),
                ledger: None,
            }),
            FirstLayerGeometry::Linear(_) => Err(SecureTrainingError::Parameters(
                "noisy training needs a convolutional first layer".into(),
            )),
        }
    }

    /// The wrapped backend.
    #[must_use]
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Records every value released for the samples `samples` ([`view`](Self::view)).
    #[must_use]
    pub fn record(mut self, samples: impl IntoIterator<Item = usize>) -> Self {
        self.watch.extend(samples);
        self
    }

    /// Charges every release to a [`PrivacyAccountant`] as the authority does, with
    /// coordinate range `range` ([`accountant`](Self::accountant)).
    #[must_use]
    pub fn with_accounting(mut self, range: u64) -> Self {
        self.ledger = Some((PrivacyAccountant::default(), range));
        self
    }

    /// The recorded releases, in order.
    #[must_use]
    pub fn view(&self) -> &[Observation] {
        &self.view
    }

    /// The ledger of [`with_accounting`](Self::with_accounting).
    #[must_use]
    pub fn accountant(&self) -> Option<&PrivacyAccountant> {
        self.ledger.as_ref().map(|(a, _)| a)
    }

    fn noise(&mut self, sample: usize, terms: &[(usize, i64)]) -> i64 {
        if terms.is_empty() {
            return 0;
        }
        let e = self
            .key
            .sample(&self.sigma, &noise_input(sample as u64, terms));
        if let Some((acc, range)) = &mut self.ledger {
            let (p, i) = sensitivities(terms, *range);
            let s = self.sigma.sigma();
            let unit = SampleLoss {
                pixel: gaussian_rdp_unit(p, s),
                image: gaussian_rdp_unit(i, s),
                releases: 1,
            };
            // No budget is set on this ledger, so charging cannot fail.
            let _ = acc.charge(&[(sample as u64, unit)]);
        }
        if self.watch.contains(&sample) {
            self.view.push(Observation {
                sample,
                terms: terms.to_vec(),
                noise: e,
            });
        }
        e
    }
}

impl<B: FirstLayerBackend> FirstLayerBackend for NoisyReference<B> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn mode(&self) -> &'static str {
        self.inner.mode()
    }
    fn spec(&self) -> &FirstLayerSpec {
        self.inner.spec()
    }
    fn quant_config(&self) -> &QuantConfig {
        self.inner.quant_config()
    }
    fn classes(&self) -> usize {
        self.inner.classes()
    }

    fn forward(
        &mut self,
        batch: &[usize],
        wq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        let mut z = self.inner.forward(batch, wq)?;
        let wq: Vec<i64> = wq.iter().copied().collect();
        // The padding value does not change the key vectors' pixel terms.
        let outputs = self
            .geometry
            .forward_outputs(&wq, 0)
            .map_err(backend_error)?;
        for (mut row, &i) in z.rows_mut().into_iter().zip(batch) {
            for (v, o) in row.iter_mut().zip(&outputs) {
                *v += self.noise(i, &o.pixel_terms);
            }
        }
        check_bound(
            "first-layer forward z",
            max_abs(z.iter()),
            self.inner.quant_config().forward_bound,
            "lower --scale-w (or --scale-x), or raise the forward bound",
        )?;
        Ok(z)
    }

    fn output_error(
        &mut self,
        batch: &[usize],
        pq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        self.inner.output_error(batch, pq)
    }

    fn weight_gradient(
        &mut self,
        batch: &[usize],
        dq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        let mut g = self.inner.weight_gradient(batch, dq)?;
        let cols = g.ncols();
        for (row, &i) in dq.rows().into_iter().zip(batch) {
            let d: Vec<i64> = row.iter().copied().collect();
            let outputs = self
                .geometry
                .gradient_outputs(&d, 0)
                .map_err(backend_error)?;
            for (m, o) in outputs.iter().enumerate() {
                let e = self.noise(i, &o.pixel_terms);
                if e != 0 {
                    g[[m / cols, m % cols]] += e;
                }
            }
        }
        check_bound(
            "first-layer weight gradient G",
            max_abs(g.iter()),
            self.inner.quant_config().gradient_bound,
            "lower --scale-grad (or --scale-x), or raise the gradient bound",
        )?;
        Ok(g)
    }
}
