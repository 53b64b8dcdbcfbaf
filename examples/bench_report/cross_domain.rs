//! Do the keys a server collects during secure training open anything outside their own
//! mini-batch? A key service wrapper keeps a sample of the FEIP keys the server receives
//! (with their key vectors and shard domains); afterwards each sampled key is tried on images
//! of its own shard (the control: must decrypt to the true value) and of another shard.
//!
//! A cross-shard attempt counts as a success if the discrete log is found within the widest
//! bound the server ever uses (twice the gradient bound): a server could not tell such a
//! value from a real one. It counts as correct if it also equals the true inner product.

use std::sync::Mutex;

use anyhow::{Context, Result};
use cryptonn::coordinator::secure_training::{EncodedSamples, EncryptedDataset};
use cryptonn::coordinator::{
    CoordinatorError, DomainId, DomainPublicKey, FeboKeyRequest, FeboKeyResponse, FeipKeyRequest,
    FeipKeyResponse, KeyService, RequesterId, SparseKeyVector,
};
use cryptonn::fe::dlog::DlogSolver;
use cryptonn::fe::feip::{Feip, FeipParams, FunctionKey};
use cryptonn::fe::group::PrimeOrderGroup;
use serde::Serialize;

/// One sampled key: its domain, sparse key vector and function key.
type Sampled<G> = (DomainId, Vec<(usize, i64)>, FunctionKey<G>);

/// A key service that forwards everything to `inner` and keeps the first and the last FEIP key
/// of every request.
pub struct SamplingKeyService<G: PrimeOrderGroup, K: KeyService<G>> {
    inner: K,
    samples: Mutex<Vec<Sampled<G>>>,
}

impl<G: PrimeOrderGroup, K: KeyService<G>> SamplingKeyService<G, K> {
    /// Wraps `inner`.
    pub fn new(inner: K) -> Self {
        Self {
            inner,
            samples: Mutex::new(Vec::new()),
        }
    }

    /// The keys kept so far.
    pub fn samples(&self) -> Vec<Sampled<G>> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G>> KeyService<G> for SamplingKeyService<G, K> {
    fn requester(&self) -> &RequesterId {
        self.inner.requester()
    }
    fn public_key(&self, domain: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError> {
        self.inner.public_key(domain)
    }
    fn feip_keys(&self, request: &FeipKeyRequest) -> Result<FeipKeyResponse<G>, CoordinatorError> {
        let response = self.inner.feip_keys(request)?;
        let last = response.keys.len().saturating_sub(1);
        let mut kept = Vec::new();
        for i in [0, last] {
            if let (Some(v), Some(k)) = (request.vectors.get(i), response.keys.get(i)) {
                let terms = SparseKeyVector::from_data(v, response.params.n(), u64::MAX)?
                    .terms()
                    .to_vec();
                kept.push((request.domain, terms, k.clone()));
            }
            if last == 0 {
                break;
            }
        }
        if let Ok(mut s) = self.samples.lock() {
            s.extend(kept);
        }
        Ok(response)
    }
    fn febo_keys(&self, request: &FeboKeyRequest) -> Result<FeboKeyResponse<G>, CoordinatorError> {
        self.inner.febo_keys(request)
    }
    fn register_febo_commitments(
        &self,
        registration: &cryptonn::coordinator::FeboCommitmentRegistration,
    ) -> Result<usize, CoordinatorError> {
        self.inner.register_febo_commitments(registration)
    }
}

/// Outcome of the cross-shard attempts, serialised as `leakage.cross_domain`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CrossDomain {
    /// FEIP keys the server received in the run.
    pub keys_received: u64,
    /// Keys sampled and tried.
    pub keys_tried: usize,
    /// Decryptions of the sampled keys on images of their own shard.
    pub own_shard_attempts: usize,
    /// ... that gave the true inner product (the control).
    pub own_shard_correct: usize,
    /// Decryptions on images of another shard.
    pub other_shard_attempts: usize,
    /// ... whose discrete log was found within the server's widest bound.
    pub other_shard_in_range: usize,
    /// ... that gave the true inner product.
    pub other_shard_correct: usize,
    /// The discrete-log bound used.
    pub bound: u64,
}

/// Tries up to `max_keys` of `samples` on two images of their own shard and two of the next
/// shard. `data` is the data owner's encoded training subset (the measurement program plays
/// the data owner, to know the true values).
#[allow(clippy::too_many_arguments)]
pub fn measure<G: PrimeOrderGroup>(
    samples: &[Sampled<G>],
    keys_received: u64,
    max_keys: usize,
    dataset: &EncryptedDataset<G>,
    params: FeipParams,
    dlog: &DlogSolver<G>,
    data: &dyn EncodedSamples,
) -> Result<CrossDomain> {
    let header = dataset.header();
    let shard_size = header.params.shard_size;
    let shards = header.domains.len();
    let feip = Feip::new(dataset.group().clone(), params);
    let step = samples.len().div_ceil(max_keys.max(1)).max(1);
    let mut out = CrossDomain {
        keys_received,
        keys_tried: 0,
        own_shard_attempts: 0,
        own_shard_correct: 0,
        other_shard_attempts: 0,
        other_shard_in_range: 0,
        other_shard_correct: 0,
        bound: dlog.bound(),
    };
    for (domain, terms, key) in samples.iter().step_by(step) {
        let own = header
            .domains
            .iter()
            .position(|d| d == domain)
            .context("a sampled key of an unknown domain")?;
        out.keys_tried += 1;
        for shard in [own, (own + 1) % shards] {
            let first = shard * shard_size;
            let last = ((shard + 1) * shard_size).min(data.len()) - 1;
            for img in [first, last] {
                let x = data.encode(img)?;
                let truth: i64 = terms.iter().map(|&(p, v)| v * x[p]).sum();
                let ct = dataset.image_ciphertext(img)?;
                let got = feip.vartime_decrypt_sparse(&ct, key, terms, dlog).ok();
                if shard == own {
                    out.own_shard_attempts += 1;
                    out.own_shard_correct += usize::from(got == Some(truth));
                } else {
                    out.other_shard_attempts += 1;
                    out.other_shard_in_range += usize::from(got.is_some());
                    out.other_shard_correct += usize::from(got == Some(truth));
                }
            }
            if shards == 1 {
                break;
            }
        }
    }
    Ok(out)
}
