//! Noisy key domains: the authority blurs every value it lets the server decrypt, and accounts
//! for what each sample has released.
//!
//! A domain made noisy ([`Authority::make_noisy`]) never issues plain function keys
//! ([`CoordinatorError::NoisyDomain`]). Instead:
//!
//! 1. the domain's owner (the data owner) registers each ciphertext's `ct0` with the id of the
//!    sample it encrypts ([`Authority::register_noisy_ciphertexts`]);
//! 2. the server sends, with its key vectors, each ciphertext's `ct0` (never the `ct_i`)
//!    ([`Authority::issue_noisy_feip_keys`]); the authority
//!    - refuses unregistered `ct0` values (else it would be an oracle `c ↦ c^{<s,y>}`),
//!    - runs the domain's key policy on the vectors as for plain keys,
//!    - charges each `(sample, y)` release to the [`PrivacyAccountant`] with
//!      `Δ = R·max|y_j|` (per pixel) and `Δ = R·‖y‖₁` (per image), refusing the whole request
//!      if a sample would exceed the budget,
//!    - returns `K = ct0^{<s,y>} · g^{−e}` with `e = DG_σ(PRF_k(sample ‖ H(y)))`
//!      ([`noise_input`], [`NoiseKey`]), so the server decrypts `<x, y> + e`.
//!
//! The noise depends only on the noise key, the sample id and `y`: asking again for the same
//! `(ciphertext, y)`, in any request or epoch, returns the same noise, so repetition cannot
//! average it away; and a reference run that knows the noise key and forms the same `y`
//! (quantised training with the same seed) draws the same `e` without any ciphertext.
//!
//! The noise key is derived from the authority's seed by default
//! (`HKDF(seed, "cryptonn noise key v1", "authority noise key")`) and can be replaced
//! ([`Authority::with_noise_key`]). It must stay with the authority: whoever holds it
//! recomputes every `e` and removes it.
//!
//! A [`PersistentAuthority`](crate::coordinator::persistent::PersistentAuthority) journals
//! what a restart must keep: which domains are noisy and with what sigma, the registered
//! `ct0` digests with their sample ids, and the ledger entries of every charged sample
//! (before the keys are returned). Its noise key follows from the master seed, so the same
//! `(ciphertext, y)` gets the same noise after a restart too. Its budget is journaled as well
//! ([`PersistentAuthority::set_privacy_budget`](crate::coordinator::persistent::PersistentAuthority::set_privacy_budget)).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rayon::prelude::*;

use super::Authority;
use crate::coordinator::accountant::{
    gaussian_rdp_unit, sensitivities, Charge, PrivacyAccountant, PrivacyBudget, SampleLoss,
};
use crate::coordinator::audit::AuditOutcome;
use crate::coordinator::error::{CoordinatorError, PolicyRefusal};
use crate::coordinator::messages::{
    ct0_digest, noise_input, DomainId, NoisyCiphertextRegistration, NoisyKeyRequest,
    NoisyKeyResponse, RequesterId, SparseKeyVector,
};
use crate::fe::discrete_gaussian::{DiscreteGaussian, NoiseKey};
use crate::fe::error::FeError;
use crate::fe::feip::FunctionKey;
use crate::fe::group::PrimeOrderGroup;
use crate::fe::noisy_key::PreparedCt0;

/// How many `ct0` tables the authority keeps between noisy requests: enough for a training
/// step's forward and gradient requests to share one table per image (batches up to 32).
pub const CT0_TABLE_CACHE: usize = 32;

/// The fixed-base tables of the `ct0` values of the most recent noisy requests, by
/// [`ct0_digest`], oldest evicted first ([`CT0_TABLE_CACHE`] of them). `ct0` is public, so the
/// cache holds no secret; it saves a table build when the same ciphertext comes back (the
/// gradient request of a step after its forward request).
pub(super) struct Ct0TableCache<G: PrimeOrderGroup> {
    tables: HashMap<[u8; 32], Arc<PreparedCt0<G>>>,
    order: VecDeque<[u8; 32]>,
}

impl<G: PrimeOrderGroup> Default for Ct0TableCache<G> {
    fn default() -> Self {
        Self {
            tables: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<G: PrimeOrderGroup> Ct0TableCache<G> {
    fn get(&self, digest: &[u8; 32]) -> Option<Arc<PreparedCt0<G>>> {
        self.tables.get(digest).cloned()
    }

    fn insert(&mut self, digest: [u8; 32], table: Arc<PreparedCt0<G>>) {
        if self.tables.insert(digest, table).is_none() {
            self.order.push_back(digest);
        }
        while self.order.len() > CT0_TABLE_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.tables.remove(&old);
            }
        }
    }
}

/// A noisy domain's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseConfig {
    /// The discrete Gaussian each released value gets.
    pub sigma: DiscreteGaussian,
    /// `R`: every input coordinate lies in an interval of this width (the sensitivity model of
    /// [`crate::coordinator::accountant`]).
    pub coordinate_range: u64,
}

/// A noisy domain's state.
pub(super) struct NoisyState {
    pub(super) config: NoiseConfig,
    /// [`ct0_digest`] of each registered ciphertext → its sample id.
    samples: HashMap<[u8; 32], u64>,
}

impl NoisyState {
    pub(super) fn new(config: NoiseConfig) -> Self {
        Self {
            config,
            samples: HashMap::new(),
        }
    }
}

impl<G: PrimeOrderGroup> Authority<G> {
    /// Replaces the key of the noise PRF (e.g. a key derived from a training seed, so a
    /// quantised reference run can draw the same noise). **Whoever holds it removes the
    /// noise.**
    #[must_use]
    pub fn with_noise_key(mut self, key: NoiseKey) -> Self {
        self.noise_key = key;
        self
    }

    /// Replaces the key of the noise PRF in place (see [`with_noise_key`](Self::with_noise_key)).
    pub fn set_noise_key(&mut self, key: NoiseKey) {
        self.noise_key = key;
    }

    /// Sets (or removes) the budget every sample's loss must stay within.
    pub fn set_privacy_budget(&mut self, budget: Option<PrivacyBudget>) {
        self.accountant.set_budget(budget);
    }

    /// The per-sample privacy ledger of all noisy domains.
    #[must_use]
    pub fn accountant(&self) -> &PrivacyAccountant {
        &self.accountant
    }

    /// Makes domain `id` noisy (see the [module docs](self)). Must happen before it issues
    /// any key; a noisy domain stays noisy (its successors too).
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`] and the status errors;
    /// [`CoordinatorError::InvalidConfig`] for a zero coordinate range, a domain that has
    /// already issued keys, or one that is already noisy.
    pub fn make_noisy(
        &mut self,
        id: DomainId,
        config: NoiseConfig,
    ) -> Result<(), CoordinatorError> {
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        if config.coordinate_range == 0 {
            return Err(CoordinatorError::InvalidConfig(
                "a noisy domain needs a coordinate range >= 1",
            ));
        }
        if d.noisy.is_some() {
            return Err(CoordinatorError::InvalidConfig(
                "the domain is already noisy",
            ));
        }
        if d.plain_keys_issued {
            return Err(CoordinatorError::InvalidConfig(
                "a domain that has issued keys cannot become noisy",
            ));
        }
        if let Some(d) = self.domains.get_mut(&id) {
            d.noisy = Some(NoisyState::new(config));
        }
        Ok(())
    }

    /// The noise parameters of domain `id` (`None`: not noisy).
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`].
    pub fn noise_config(&self, id: DomainId) -> Result<Option<NoiseConfig>, CoordinatorError> {
        Ok(self.domain(id)?.noisy.as_ref().map(|n| n.config))
    }

    /// Registers ciphertexts of a noisy domain under sample ids (only the owner of a bound
    /// domain may). Registering the same `ct0` under the same id again is harmless. Returns
    /// the number of newly registered ciphertexts.
    ///
    /// # Errors
    /// The domain errors; [`CoordinatorError::NotNoisy`];
    /// [`CoordinatorError::NotPermitted`] for anyone but the owner of a bound domain;
    /// [`CoordinatorError::Empty`]; [`CoordinatorError::Fe`] for a `ct0` that is not a
    /// canonical group element; [`CoordinatorError::InvalidConfig`] for a `ct0` registered
    /// under another sample id (nothing is registered then).
    pub fn register_noisy_ciphertexts(
        &mut self,
        registrant: &RequesterId,
        registration: &NoisyCiphertextRegistration,
    ) -> Result<usize, CoordinatorError> {
        self.register_noisy_digests(registrant, registration)
            .map(|fresh| fresh.len())
    }

    /// [`register_noisy_ciphertexts`](Self::register_noisy_ciphertexts), returning the newly
    /// registered `(ct0 digest, sample id)` pairs (what a persisted authority journals).
    pub(crate) fn register_noisy_digests(
        &mut self,
        registrant: &RequesterId,
        registration: &NoisyCiphertextRegistration,
    ) -> Result<Vec<([u8; 32], u64)>, CoordinatorError> {
        let id = registration.domain;
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        let noisy = d.noisy.as_ref().ok_or(CoordinatorError::NotNoisy(id))?;
        if let Some(a) = &d.access {
            if &a.owner != registrant {
                return Err(CoordinatorError::NotPermitted {
                    domain: id,
                    requester: registrant.clone(),
                    action: "register noisy ciphertexts",
                });
            }
        }
        if registration.ciphertexts.is_empty() {
            return Err(CoordinatorError::Empty("registration without ciphertexts"));
        }
        let digests = registration
            .ciphertexts
            .par_iter()
            .map(|(ct0, sample)| {
                self.group.element_from_bytes(ct0).map_err(FeError::from)?;
                Ok((ct0_digest(ct0), *sample))
            })
            .collect::<Result<Vec<_>, CoordinatorError>>()?;
        let mut fresh = HashMap::new();
        for (h, sample) in digests {
            match noisy.samples.get(&h).or_else(|| fresh.get(&h)) {
                Some(&s) if s != sample => {
                    return Err(CoordinatorError::InvalidConfig(
                        "a ciphertext is registered under two sample ids",
                    ))
                }
                Some(_) => {}
                None => {
                    fresh.insert(h, sample);
                }
            }
        }
        let mut fresh: Vec<([u8; 32], u64)> = fresh.into_iter().collect();
        fresh.sort_unstable();
        if let Some(n) = self.domains.get_mut(&id).and_then(|d| d.noisy.as_mut()) {
            n.samples.extend(fresh.iter().copied());
        }
        Ok(fresh)
    }

    /// Adds registered `(ct0 digest, sample id)` pairs to noisy domain `id` (a persisted
    /// authority replaying its journal).
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`]; [`CoordinatorError::NotNoisy`];
    /// [`CoordinatorError::InvalidConfig`] for a digest already registered under another
    /// sample id.
    pub(crate) fn restore_noisy_registrations(
        &mut self,
        id: DomainId,
        entries: &[([u8; 32], u64)],
    ) -> Result<(), CoordinatorError> {
        let noisy = self
            .domains
            .get_mut(&id)
            .ok_or(CoordinatorError::UnknownDomain(id))?
            .noisy
            .as_mut()
            .ok_or(CoordinatorError::NotNoisy(id))?;
        for &(digest, sample) in entries {
            if *noisy.samples.entry(digest).or_insert(sample) != sample {
                return Err(CoordinatorError::InvalidConfig(
                    "a ciphertext is registered under two sample ids",
                ));
            }
        }
        Ok(())
    }

    /// Sets `sample`'s composed privacy loss (a persisted authority replaying its journal).
    pub(crate) fn restore_privacy_loss(&mut self, sample: u64, loss: SampleLoss) {
        self.accountant.restore(sample, loss);
    }

    /// Issues ciphertext-bound noisy keys (see the [module docs](self)): for every item, one
    /// key per listed vector. All or nothing.
    ///
    /// # Errors
    /// The errors of [`issue_feip_keys`](Self::issue_feip_keys) (requester, domain, vector
    /// validation, policy); [`CoordinatorError::NotNoisy`]; [`CoordinatorError::Empty`] for a
    /// request without ciphertexts or an item without vectors;
    /// [`CoordinatorError::ShapeMismatch`] for a vector index beyond the request's vectors;
    /// [`CoordinatorError::UnregisteredCiphertext`];
    /// [`CoordinatorError::PrivacyBudgetExceeded`] (nothing charged, nothing issued).
    pub fn issue_noisy_feip_keys(
        &mut self,
        requester: &RequesterId,
        request: &NoisyKeyRequest,
    ) -> Result<NoisyKeyResponse<G>, CoordinatorError> {
        self.check_feip_requester(request.keys.domain, requester)?;
        let vectors = self.validate_feip_request(&request.keys)?;
        self.issue_validated_noisy_feip_keys(requester, request, &vectors)
            .map(|(response, _)| response)
    }

    /// [`issue_noisy_feip_keys`](Self::issue_noisy_feip_keys) for the vectors of
    /// `request.keys` that passed [`validate_feip_request`](Self::validate_feip_request);
    /// also returns the sample ids charged (sorted, each once), whose ledger entries a
    /// persisted authority journals before it hands out the keys.
    pub(crate) fn issue_validated_noisy_feip_keys(
        &mut self,
        requester: &RequesterId,
        request: &NoisyKeyRequest,
        vectors: &[SparseKeyVector],
    ) -> Result<(NoisyKeyResponse<G>, Vec<u64>), CoordinatorError> {
        let id = request.keys.domain;
        self.check_feip_requester(id, requester)?;
        let d = self.domain(id)?;
        let noisy = d.noisy.as_ref().ok_or(CoordinatorError::NotNoisy(id))?;
        let config = noisy.config;
        if request.ciphertexts.is_empty() {
            return Err(CoordinatorError::Empty(
                "noisy key request without ciphertexts",
            ));
        }
        let mut samples = Vec::with_capacity(request.ciphertexts.len());
        let ct0_digests: Vec<[u8; 32]> = request
            .ciphertexts
            .iter()
            .map(|item| ct0_digest(&item.ct0))
            .collect();
        for (index, item) in request.ciphertexts.iter().enumerate() {
            if item.vectors.is_empty() {
                return Err(CoordinatorError::Empty("noisy key item without vectors"));
            }
            if let Some(&bad) = item.vectors.iter().find(|&&v| v as usize >= vectors.len()) {
                return Err(CoordinatorError::ShapeMismatch {
                    what: "noisy key item: vector index",
                    expected: vectors.len(),
                    got: bad as usize + 1,
                });
            }
            match noisy.samples.get(&ct0_digests[index]) {
                Some(&s) => samples.push(s),
                None => {
                    let reason = PolicyRefusal::Custom("unregistered noisy ciphertext".into());
                    let key = self.audit.feip_key(&vectors[item.vectors[0] as usize]);
                    let now = (self.clock)();
                    self.audit
                        .append(now, id, requester, key, AuditOutcome::Refused(reason))?;
                    self.audit.commit()?;
                    return Err(CoordinatorError::UnregisteredCiphertext { domain: id, index });
                }
            }
        }
        // The charges: per-vector sensitivities once, then one release per (ciphertext, y).
        let sigma = config.sigma.sigma();
        let units: Vec<SampleLoss> = vectors
            .iter()
            .map(|v| {
                let (pixel, image) = sensitivities(v.terms(), config.coordinate_range);
                SampleLoss {
                    pixel: gaussian_rdp_unit(pixel, sigma),
                    image: gaussian_rdp_unit(image, sigma),
                    releases: 1,
                }
            })
            .collect();
        let charges: Vec<Charge> = request
            .ciphertexts
            .iter()
            .zip(&samples)
            .flat_map(|(item, &s)| item.vectors.iter().map(move |&v| (s, v as usize)))
            .filter(|&(_, v)| !vectors[v].terms().is_empty())
            .map(|(s, v)| (s, units[v]))
            .collect();
        let pending = match self.accountant.prepare(&charges) {
            Ok(p) => p,
            Err(e) => {
                return Err(CoordinatorError::PrivacyBudgetExceeded {
                    domain: id,
                    sample: e.sample,
                    epsilon: e.epsilon,
                    budget: e.budget.epsilon,
                    delta: e.budget.delta,
                    granularity: e.budget.granularity,
                })
            }
        };
        // One clock reading per batch.
        let now = (self.clock)();
        self.review_batch(requester, id, vectors, now)?;
        let d = self.domain(id)?;
        let secrets = self.secrets(id, d)?;
        let params = d.config.feip;
        // The public bound that fixes the time of g^{−e}: 64σ covers every sample but with
        // probability below 2^-2900.
        let noise_bound = (64.0 * sigma).ceil().max(1.0) as u64;
        let digests: Vec<[u8; 32]> = vectors
            .par_iter()
            .map(|v| {
                let input = noise_input(0, v.terms());
                let mut h = [0u8; 32];
                h.copy_from_slice(&input[8..]);
                h
            })
            .collect();
        let noise_key = &self.noise_key;
        let group = &self.group;
        let (feip, msk) = (&d.feip, &secrets.feip);
        // sk_y once per vector (the forward vectors meet every image of the batch).
        let sks: Vec<FunctionKey<G>> = vectors
            .par_iter()
            .map(|v| feip.derive_key_sparse(msk, v.terms()))
            .collect::<Result<_, FeError>>()?;
        // One fixed-base table per ciphertext, reused from the cache when it came before.
        let cache = &self.ct0_tables;
        let tables: Vec<Arc<PreparedCt0<G>>> = request
            .ciphertexts
            .par_iter()
            .zip(&ct0_digests)
            .map(|(item, h)| match cache.get(h) {
                Some(t) => Ok(t),
                None => {
                    let ct0 = group.element_from_bytes(&item.ct0).map_err(FeError::from)?;
                    Ok(Arc::new(feip.prepare_ct0(&ct0)))
                }
            })
            .collect::<Result<_, CoordinatorError>>()?;
        let keys = request
            .ciphertexts
            .par_iter()
            .zip(&samples)
            .zip(&tables)
            .map(|((item, &sample), table)| {
                item.vectors
                    .iter()
                    .map(|&v| {
                        let v = v as usize;
                        let e = if vectors[v].terms().is_empty() {
                            0
                        } else {
                            let mut input = [0u8; 40];
                            input[..8].copy_from_slice(&sample.to_le_bytes());
                            input[8..].copy_from_slice(&digests[v]);
                            noise_key.sample(&config.sigma, &input)
                        };
                        feip.noisy_key_from_function_key(table, &sks[v], e, noise_bound)
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        drop(sks);
        for (h, t) in ct0_digests.into_iter().zip(tables) {
            self.ct0_tables.insert(h, t);
        }
        self.accountant.commit(pending);
        for v in vectors {
            let key = self.audit.feip_key(v);
            self.audit
                .append(now, id, requester, key, AuditOutcome::Issued)?;
        }
        self.audit.commit()?;
        let mut charged = samples;
        charged.sort_unstable();
        charged.dedup();
        Ok((
            NoisyKeyResponse {
                domain: id,
                params,
                keys,
            },
            charged,
        ))
    }
}
