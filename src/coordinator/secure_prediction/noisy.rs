//! Secure prediction over a **noisy** query domain: the server classifies a query from noisy
//! first-layer values `z + e`, as noisy training shows it its training images.
//!
//! ```text
//!  client ── open_noisy_query_domain(σ) ──▶ Authority     (a fresh noisy domain per query)
//!  client: ct = FEIP.Encrypt(mpk_query, xq);  register ct0 under query_sample_id(domain)
//!  server ── 1,176 key vectors y + ct0 (never the ct_i) ──▶ Authority
//!  Authority ──▶ K_y = ct0^{<s,y>} · g^{−e_y},  e_y = DG_σ(PRF_k(query id ‖ H(y)))
//!  server: z + e = dlog(∏ Bct^{wq} / K_y) + padding;  the rest of LeNet-5 in plaintext
//! ```
//!
//! The keys are those of noisy training ([`crate::coordinator::authority`]'s noisy domains,
//! [`crate::fe::noisy_key`]): the authority refuses an unregistered `ct0`, charges each of the
//! 1,176 releases to the query's sample id in its privacy ledger and refuses beyond its budget.
//! A query's sample id is `2^63 | domain` ([`query_sample_id`]), apart from the training
//! sample ids (image indices) that share the ledger.
//!
//! **What it changes.** The server decrypts `z + e` instead of `z`: the prediction is that of
//! the quantised model on noisy first-layer values, so it may differ from the exact one; the
//! accuracy at each sigma is in the bench report (`privacy.curve[].prediction_accuracy`). The
//! noise comes from the authority's noise key; a reference that knows that key computes the
//! same prediction on plaintext ([`classify_first_layer`](super::classify_first_layer) of
//! `z + e`), pinned by `tests/privacy_noisy_prediction.rs`.

use rayon::prelude::*;

use super::{open_query_domain, EncryptedQuery, SecurePredictor, FORWARD_LAYER};
use crate::coordinator::authority::Authority;
use crate::coordinator::decrypt::DecryptionBases;
use crate::coordinator::key_service::KeyService;
use crate::coordinator::messages::{
    DomainAccess, DomainId, FeipKeyRequest, KeyVectorData, NoisyCiphertextRegistration,
    NoisyKeyItem, NoisyKeyRequest,
};
use crate::coordinator::secure_training::backend::{all_box_members, solve_outputs, PreparedImage};
use crate::coordinator::secure_training::geometry::LinearOutput;
use crate::coordinator::secure_training::{EncryptionParams, SecureTrainingError};
use crate::fe::discrete_gaussian::DiscreteGaussian;
use crate::fe::group::multiexp::recode;
use crate::fe::group::PrimeOrderGroup;

/// The high bit that sets query sample ids apart from training sample ids in the authority's
/// ledger.
pub const QUERY_SAMPLE_BASE: u64 = 1 << 63;

/// The sample id a noisy query registers its `ct0` under: `2^63 | domain` (domain numbers are
/// below `2^63`, so distinct domains get distinct ids).
#[must_use]
pub fn query_sample_id(domain: DomainId) -> u64 {
    QUERY_SAMPLE_BASE | domain.0
}

/// [`open_query_domain`], then makes the domain noisy with `sigma` and the coordinate range
/// `R = 2·pixel_bound` of `params` (the sensitivity model of
/// [`crate::coordinator::accountant`]).
///
/// # Errors
/// As [`open_query_domain`]; the authority's refusals of
/// [`Authority::make_noisy`].
pub fn open_noisy_query_domain<G: PrimeOrderGroup>(
    authority: &mut Authority<G>,
    params: &EncryptionParams,
    access: DomainAccess,
    sigma: DiscreteGaussian,
) -> Result<DomainId, SecureTrainingError> {
    let id = open_query_domain(authority, params, access)?;
    authority.make_noisy(id, params.noise_config(sigma)?)?;
    Ok(id)
}

impl<G: PrimeOrderGroup> EncryptedQuery<G> {
    /// The client's registration of this query's `ct0` with the authority under
    /// [`query_sample_id`], through `owner` (the client's key service; only a noisy domain's
    /// owner may register). Returns the sample id.
    ///
    /// # Errors
    /// The authority's refusals ([`NotNoisy`](crate::coordinator::CoordinatorError::NotNoisy),
    /// [`NotPermitted`](crate::coordinator::CoordinatorError::NotPermitted), …) or transport
    /// errors.
    pub fn register_noisy<K: KeyService<G> + ?Sized>(
        &self,
        group: &G,
        owner: &K,
    ) -> Result<u64, SecureTrainingError> {
        let sample = query_sample_id(self.domain());
        owner.register_noisy_ciphertexts(&NoisyCiphertextRegistration {
            domain: self.domain(),
            ciphertexts: vec![(group.element_to_bytes(self.ciphertext().ct0()), sample)],
        })?;
        Ok(sample)
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G>> SecurePredictor<G, K> {
    /// Asks for ciphertext-bound noisy keys (queries from
    /// [`open_noisy_query_domain`]) instead of plain function keys.
    #[must_use]
    pub fn with_noisy_queries(mut self, on: bool) -> Self {
        self.noisy = on;
        self
    }

    /// Switches between noisy and plain keys for the next queries (a prediction service
    /// that answers both kinds, as its requests say).
    pub fn set_noisy_queries(&mut self, on: bool) {
        self.noisy = on;
    }

    /// Whether queries are answered with noisy keys.
    #[must_use]
    pub fn noisy_queries(&self) -> bool {
        self.noisy
    }

    /// The query's 1,176 noisy forward values `z + e`: one noisy key request with the query's
    /// `ct0`, then `∏ Bct^{coef} / K` and the same discrete logs as the exact path.
    pub(super) fn noisy_forward(
        &mut self,
        query: &EncryptedQuery<G>,
        outputs: &[LinearOutput],
        vectors: Vec<KeyVectorData>,
        hint: &'static str,
    ) -> Result<Vec<i64>, SecureTrainingError> {
        let domain = query.domain();
        let group = self.table.group().clone();
        let kept: Vec<KeyVectorData> = outputs
            .iter()
            .zip(vectors)
            .filter(|(o, _)| !o.is_constant())
            .map(|(_, v)| v)
            .collect();
        let present: Vec<Option<()>> = outputs
            .iter()
            .map(|o| (!o.is_constant()).then_some(()))
            .collect();
        let count = kept.len();
        let t = std::time::Instant::now();
        let request = NoisyKeyRequest {
            ciphertexts: vec![NoisyKeyItem {
                ct0: group.element_to_bytes(query.ciphertext().ct0()),
                vectors: (0..count as u32).collect(),
            }],
            keys: FeipKeyRequest {
                domain,
                vectors: kept,
            },
        };
        let response = self.keys.noisy_feip_keys(&request)?;
        self.stats.key_seconds += t.elapsed().as_secs_f64();
        self.stats.key_requests += 1;
        let keys = match response.keys.into_iter().next() {
            Some(k) if k.len() == count && response.domain == domain => k,
            _ => {
                return Err(SecureTrainingError::Parameters(format!(
                    "the key service's noisy keys do not match the request for {domain}"
                )))
            }
        };
        self.stats.feip_keys += count as u64;

        let t = std::time::Instant::now();
        let image =
            PreparedImage::without_ct0_table(&group, query.ciphertext(), &all_box_members());
        let live: Vec<&LinearOutput> = outputs.iter().filter(|o| !o.is_constant()).collect();
        let elements: Vec<G::Element> = live
            .par_iter()
            .zip(keys.par_iter())
            .map(|(o, k)| {
                let mut e = image.vartime_numerator(&group, &recode(&o.box_terms));
                group.div_assign(&mut e, k.element());
                e
            })
            .collect();
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let z = solve_outputs(
            &self.table,
            &self.powers,
            elements,
            outputs,
            &present,
            self.quant.forward_bound,
            FORWARD_LAYER,
            hint,
        )?;
        self.stats.dlog_seconds += t.elapsed().as_secs_f64();
        self.stats.decryptions += count as u64;
        Ok(z)
    }
}
