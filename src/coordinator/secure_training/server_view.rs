//! What the server of a secure training run saw, and what it can rebuild from it: a key
//! service that records the FEIP keys the server receives, and the linear reconstruction
//! ([`reconstruct`]) of one shard's inputs from them — measured, for any first layer.
//!
//! # The server's view of a shard
//!
//! All keys of a shard's domain open every ciphertext of that shard (one master key per
//! domain). So for the shard's samples `x_1 … x_m` (encoded features, `n` each) the server can
//! decrypt `<y, x_c>` for every key vector `y` it received on the shard's domain and every
//! sample `c` — the forward keys (one per first-layer output) and, for a convolution, the
//! per-sample weight-gradient keys. A dense first layer's weight gradient is keyed on the
//! shard's *feature-major* domain: for each feature `q` the server decrypts `<u, X[·, q]>`
//! for every key `u` (a column of `dZ₁` over the shard's `m` slots), a system in the `m`
//! values of feature `q` across the shard.
//!
//! [`shard_leakage`] reports three views of one shard:
//! - **forward, one step**: the keys of the first forward request (the initial weights);
//! - **gradient, one step**: the keys of the first weight-gradient request;
//! - **whole run**: every key of the shard over the run. For a dense first layer it joins the
//!   sample-major system (every forward key) and the feature-major one (every gradient key) by
//!   the union of the entries each determines exactly: a lower bound on what the joint system
//!   gives.
//!
//! Each view gives the rank of its key vectors (in `n` features for sample-major keys, in `m`
//! slots for feature-major ones), the share of the shard's input entries determined exactly,
//! and the mean over samples of `||x̂ − x|| / ||x||` against the truth. The observed values are
//! the inner products the server decrypts; the analysis computes them from the data owner's
//! encoded samples (which only a measurement program holds) and checks the first key of each
//! view by a real FEIP decryption of the shard's ciphertext.
//!
//! [`shard_leakage`] grows the key set of a view in prefixes (`n`, `2n`, `4n`, … keys) and stops
//! at the first that determines every entry: once the inputs are determined, more keys cannot
//! change the figures, and a convolution's thousands of keys per step need not all be reduced.

use std::sync::Mutex;

use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde::Serialize;

use crate::coordinator::error::CoordinatorError;
use crate::coordinator::key_service::KeyService;
use crate::coordinator::leakage::{reconstruct, Reconstruction};
use crate::coordinator::messages::{
    DomainId, DomainPublicKey, FeboCommitmentRegistration, FeboKeyRequest, FeboKeyResponse,
    FeipKeyRequest, FeipKeyResponse, KeyVectorData, RequesterId, SparseKeyVector,
};
use crate::coordinator::secure_training::encrypted_dataset::{EncodedSamples, EncryptedDataset};
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::coordinator::secure_training::geometry::FirstLayerGeometry;
use crate::fe::dlog::DlogSolver;
use crate::fe::feip::{Feip, FunctionKey};
use crate::fe::group::PrimeOrderGroup;
use crate::nn::first_layer::FirstLayerSpec;

/// One FEIP key request the server made, with the keys it received.
#[derive(Debug, Clone)]
pub struct RecordedRequest<G: PrimeOrderGroup> {
    /// The key domain.
    pub domain: DomainId,
    /// The key vectors, in request order.
    pub vectors: Vec<KeyVectorData>,
    /// The function keys issued, one per vector.
    pub keys: Vec<FunctionKey<G>>,
}

/// A key service that forwards everything to `inner` and keeps the FEIP requests (vectors and
/// issued keys) of the domains it watches.
pub struct RecordingKeyService<G: PrimeOrderGroup, K: KeyService<G>> {
    inner: K,
    watched: Option<Vec<DomainId>>,
    log: Mutex<Vec<RecordedRequest<G>>>,
}

impl<G: PrimeOrderGroup, K: KeyService<G>> std::fmt::Debug for RecordingKeyService<G, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingKeyService")
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G>> RecordingKeyService<G, K> {
    /// Records the requests on every domain.
    #[must_use]
    pub fn new(inner: K) -> Self {
        Self {
            inner,
            watched: None,
            log: Mutex::new(Vec::new()),
        }
    }

    /// Records the requests on `domains` only (a long run issues millions of keys).
    #[must_use]
    pub fn watching(inner: K, domains: Vec<DomainId>) -> Self {
        Self {
            inner,
            watched: Some(domains),
            log: Mutex::new(Vec::new()),
        }
    }

    /// The wrapped service.
    #[must_use]
    pub fn inner(&self) -> &K {
        &self.inner
    }

    /// The requests recorded so far, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest<G>> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G>> KeyService<G> for RecordingKeyService<G, K> {
    fn requester(&self) -> &RequesterId {
        self.inner.requester()
    }
    fn public_key(&self, domain: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError> {
        self.inner.public_key(domain)
    }
    fn public_key_sha256(&self, group: &G, domain: DomainId) -> Result<[u8; 32], CoordinatorError> {
        self.inner.public_key_sha256(group, domain)
    }
    fn feip_keys(&self, request: &FeipKeyRequest) -> Result<FeipKeyResponse<G>, CoordinatorError> {
        let response = self.inner.feip_keys(request)?;
        let watched = self
            .watched
            .as_ref()
            .is_none_or(|w| w.contains(&request.domain));
        if watched {
            if let Ok(mut log) = self.log.lock() {
                log.push(RecordedRequest {
                    domain: request.domain,
                    vectors: request.vectors.clone(),
                    keys: response.keys.clone(),
                });
            }
        }
        Ok(response)
    }
    fn febo_keys(&self, request: &FeboKeyRequest) -> Result<FeboKeyResponse<G>, CoordinatorError> {
        self.inner.febo_keys(request)
    }
    fn register_febo_commitments(
        &self,
        registration: &FeboCommitmentRegistration,
    ) -> Result<usize, CoordinatorError> {
        self.inner.register_febo_commitments(registration)
    }
}

/// What one view of a shard lets the server rebuild.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewLeakage {
    /// Key vectors in the view.
    pub keys_issued: usize,
    /// Their rank (of the sample-major part, for a joined view).
    pub rank: usize,
    /// The dimension the rank is measured in: features per sample (sample-major keys) or
    /// slots per shard (feature-major keys).
    pub rank_of: usize,
    /// Share of the shard's input entries (samples x features) determined exactly, in `[0, 1]`.
    pub exact_fraction: f64,
    /// Mean over the shard's samples of `||x̂ − x|| / ||x||`.
    pub relative_error: f64,
    /// How the view is built.
    pub method: String,
}

/// The three views of one shard (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardLeakage {
    /// The shard analysed.
    pub shard: usize,
    /// Its samples.
    pub samples: usize,
    /// Features per sample.
    pub features: usize,
    /// The first forward request's keys.
    pub forward_one_step: ViewLeakage,
    /// The first weight-gradient request's keys.
    pub gradient_one_step: ViewLeakage,
    /// Every key of the shard over the run.
    pub whole_run: ViewLeakage,
    /// Real FEIP decryptions checked against the computed observations.
    pub decryptions_checked: usize,
}

/// A view's exact entries and estimates, per sample (`[sample][feature]`).
struct Rebuilt {
    rank: usize,
    rank_of: usize,
    exact: Vec<Vec<Option<i64>>>,
    estimate: Vec<Vec<f64>>,
}

impl Rebuilt {
    fn empty(samples: usize, features: usize, rank_of: usize) -> Self {
        Self {
            rank: 0,
            rank_of,
            exact: vec![vec![None; features]; samples],
            estimate: vec![vec![0.0; features]; samples],
        }
    }

    fn complete(&self) -> bool {
        self.exact.iter().all(|x| x.iter().all(Option::is_some))
    }

    fn figures(&self, truth: &[Vec<i64>], keys: usize, method: &str) -> ViewLeakage {
        let cells: usize = self.exact.iter().map(Vec::len).sum();
        let exact: usize = self
            .exact
            .iter()
            .map(|x| x.iter().filter(|v| v.is_some()).count())
            .sum();
        let mut err = 0.0;
        for (est, t) in self.estimate.iter().zip(truth) {
            let (mut e2, mut n2) = (0.0f64, 0.0f64);
            for (&e, &t) in est.iter().zip(t) {
                let t = t as f64;
                e2 += (e - t) * (e - t);
                n2 += t * t;
            }
            err += if n2 == 0.0 {
                e2.sqrt()
            } else {
                (e2 / n2).sqrt()
            };
        }
        ViewLeakage {
            keys_issued: keys,
            rank: self.rank,
            rank_of: self.rank_of,
            exact_fraction: if cells == 0 {
                0.0
            } else {
                exact as f64 / cells as f64
            },
            relative_error: err / truth.len().max(1) as f64,
            method: method.into(),
        }
    }

    /// The union of two views' exact entries; estimates from `self` elsewhere.
    fn join(mut self, other: &Rebuilt) -> Self {
        for (s, (ex, est)) in self.exact.iter_mut().zip(&mut self.estimate).enumerate() {
            for (q, (e, v)) in ex.iter_mut().zip(est.iter_mut()).enumerate() {
                if e.is_none() {
                    *e = other.exact[s][q];
                }
                if let Some(x) = e {
                    *v = *x as f64;
                }
            }
        }
        self
    }
}

/// The sparse terms of `keys` over `n` coordinates.
fn terms_of(
    keys: &[KeyVectorData],
    n: usize,
) -> Result<Vec<Vec<(usize, i64)>>, SecureTrainingError> {
    keys.par_iter()
        .map(|k| Ok(SparseKeyVector::from_data(k, n, u64::MAX)?.terms().to_vec()))
        .collect()
}

/// `values[j][c] = <terms[j], columns[c]>`.
fn observe(
    terms: &[Vec<(usize, i64)>],
    columns: &[Vec<i64>],
) -> Result<Array2<i64>, SecureTrainingError> {
    let rows: Vec<Vec<i64>> = terms
        .par_iter()
        .map(|t| {
            columns
                .iter()
                .map(|x| {
                    let v: i128 = t
                        .iter()
                        .map(|&(i, y)| i128::from(y) * i128::from(x[i]))
                        .sum();
                    i64::try_from(v).map_err(|_| {
                        SecureTrainingError::Parameters(
                            "an observed inner product overflows i64".into(),
                        )
                    })
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    let flat: Vec<i64> = rows.into_iter().flatten().collect();
    Array2::from_shape_vec((terms.len(), columns.len()), flat)
        .map_err(|e| SecureTrainingError::Parameters(format!("observations: {e}")))
}

/// [`reconstruct`] on growing prefixes of `keys` (see the [module docs](self)).
fn reconstruct_prefixes(
    n: usize,
    keys: &[KeyVectorData],
    values: &Array2<i64>,
) -> Result<Vec<Reconstruction>, SecureTrainingError> {
    let mut len = n.clamp(1, keys.len().max(1)).min(keys.len());
    loop {
        let recs = reconstruct(n, &keys[..len], values.slice_axis(Axis(0), (0..len).into()))?;
        if len == keys.len() || recs.iter().all(Reconstruction::is_complete) {
            return Ok(recs);
        }
        len = (2 * len).min(keys.len());
    }
}

/// Sample-major keys over `truth` (`[sample][feature]`).
fn sample_major(
    keys: &[KeyVectorData],
    truth: &[Vec<i64>],
) -> Result<Rebuilt, SecureTrainingError> {
    let n = truth.first().map_or(0, Vec::len);
    if keys.is_empty() {
        return Ok(Rebuilt::empty(truth.len(), n, n));
    }
    let values = observe(&terms_of(keys, n)?, truth)?;
    let recs = reconstruct_prefixes(n, keys, &values)?;
    Ok(Rebuilt {
        rank: recs.first().map_or(0, Reconstruction::rank),
        rank_of: n,
        exact: recs.iter().map(|r| r.exact().to_vec()).collect(),
        estimate: recs.iter().map(|r| r.estimate().to_vec()).collect(),
    })
}

/// Feature-major keys over `slots` slots (the shard size; slots past the samples hold 0).
fn feature_major(
    keys: &[KeyVectorData],
    truth: &[Vec<i64>],
    slots: usize,
) -> Result<Rebuilt, SecureTrainingError> {
    let n = truth.first().map_or(0, Vec::len);
    if keys.is_empty() {
        return Ok(Rebuilt::empty(truth.len(), n, slots));
    }
    let columns: Vec<Vec<i64>> = (0..n)
        .map(|q| {
            (0..slots)
                .map(|j| truth.get(j).map_or(0, |x| x[q]))
                .collect()
        })
        .collect();
    let values = observe(&terms_of(keys, slots)?, &columns)?;
    let recs = reconstruct_prefixes(slots, keys, &values)?;
    let mut out = Rebuilt::empty(truth.len(), n, slots);
    out.rank = recs.first().map_or(0, Reconstruction::rank);
    for (q, r) in recs.iter().enumerate() {
        for j in 0..truth.len() {
            out.exact[j][q] = r.exact()[j];
            out.estimate[j][q] = r.estimate()[j];
        }
    }
    Ok(out)
}

/// Whether a recorded request holds forward keys (else weight-gradient keys) of `geometry`'s
/// sample-major domain: a convolution's forward keys place a `C x k x k` filter, its gradient
/// keys a `1 x oh x ow` output gradient.
fn is_forward(spec: &FirstLayerSpec, vectors: &[KeyVectorData]) -> bool {
    match (spec, vectors.first()) {
        (
            FirstLayerSpec::Conv {
                channels, kernel, ..
            },
            Some(KeyVectorData::Placement(p)),
        ) => {
            let g = p.grid();
            g.channels() == *channels && g.rows() == *kernel && g.cols() == *kernel
        }
        _ => true,
    }
}

/// What the server can rebuild of shard `shard`'s samples from the keys in `requests` (a
/// [`RecordingKeyService`]'s record of a run over `data` with first layer `geometry`).
/// `source` is the data owner's plaintext (the truth); `dlog` decrypts the control values
/// (its bound must cover them: the gradient bound serves).
///
/// # Errors
/// [`SecureTrainingError::Parameters`] for a shard out of range, a source of another size, or
/// a control decryption that differs from the computed observation; the reconstruction's and
/// the decryption's errors.
pub fn shard_leakage<G: PrimeOrderGroup>(
    data: &EncryptedDataset<G>,
    geometry: &FirstLayerGeometry,
    requests: &[RecordedRequest<G>],
    shard: usize,
    source: &dyn EncodedSamples,
    dlog: &DlogSolver<G>,
) -> Result<ShardLeakage, SecureTrainingError> {
    let h = data.header();
    let (Some(&domain), true) = (h.domains.get(shard), source.len() == h.images) else {
        return Err(SecureTrainingError::Parameters(format!(
            "shard {shard} of {} shards, source of {} samples for {} encrypted",
            h.domains.len(),
            source.len(),
            h.images
        )));
    };
    let slots = h.params.shard_size;
    let first = shard * slots;
    let last = (first + slots).min(h.images);
    let truth: Vec<Vec<i64>> = (first..last)
        .map(|i| source.encode(i))
        .collect::<Result<_, _>>()?;
    let features = geometry.input_len();
    let spec = geometry.spec();
    let feature_domain = h.feature_domains.get(shard).copied();

    let mut forward: Vec<&RecordedRequest<G>> = Vec::new();
    let mut gradient: Vec<&RecordedRequest<G>> = Vec::new();
    for r in requests {
        if r.domain == domain {
            if is_forward(&spec, &r.vectors) {
                forward.push(r);
            } else {
                gradient.push(r);
            }
        } else if Some(r.domain) == feature_domain {
            gradient.push(r);
        }
    }
    let gradient_feature_major = matches!(spec, FirstLayerSpec::Linear { .. });

    // Control: the first key of each kind, decrypted from the real ciphertexts.
    let mut checked = 0;
    let sample_feip = Feip::new(data.group().clone(), h.params.feip_params()?);
    for (reqs, feature_major) in [(&forward, false), (&gradient, gradient_feature_major)] {
        let Some(r) = reqs.first() else { continue };
        let (Some(v), Some(key)) = (r.vectors.first(), r.keys.first()) else {
            continue;
        };
        let (got, want) = if feature_major {
            let feip = Feip::new(data.group().clone(), h.params.feature_feip_params()?);
            let t = SparseKeyVector::from_data(v, slots, u64::MAX)?;
            let got = feip.vartime_decrypt_sparse(
                &data.feature_ciphertext(shard, 0)?,
                key,
                t.terms(),
                dlog,
            )?;
            let want: i64 = t
                .terms()
                .iter()
                .map(|&(j, y)| y * truth.get(j).map_or(0, |x| x[0]))
                .sum();
            (got, want)
        } else {
            let t = SparseKeyVector::from_data(v, features, u64::MAX)?;
            let got = sample_feip.vartime_decrypt_sparse(
                &data.image_ciphertext(first)?,
                key,
                t.terms(),
                dlog,
            )?;
            let want: i64 = t.terms().iter().map(|&(q, y)| y * truth[0][q]).sum();
            (got, want)
        };
        if got != want {
            return Err(SecureTrainingError::Parameters(format!(
                "leakage control: the server decrypts {got}, the plaintext gives {want}"
            )));
        }
        checked += 1;
    }

    let all = |reqs: &[&RecordedRequest<G>]| -> Vec<KeyVectorData> {
        reqs.iter()
            .flat_map(|r| r.vectors.iter().cloned())
            .collect()
    };
    let one = |reqs: &[&RecordedRequest<G>]| -> Vec<KeyVectorData> {
        reqs.first().map(|r| r.vectors.clone()).unwrap_or_default()
    };
    let rebuild = |keys: &[KeyVectorData], feature_major_keys: bool| {
        if feature_major_keys {
            feature_major(keys, &truth, slots)
        } else {
            sample_major(keys, &truth)
        }
    };

    let fwd_keys = one(&forward);
    let fwd = rebuild(&fwd_keys, false)?;
    let forward_one_step = fwd.figures(
        &truth,
        fwd_keys.len(),
        "sample-major: the first forward request's keys",
    );
    let grad_keys = one(&gradient);
    let grad = rebuild(&grad_keys, gradient_feature_major)?;
    let gradient_one_step = grad.figures(
        &truth,
        grad_keys.len(),
        if gradient_feature_major {
            "feature-major: the first weight-gradient request's keys (columns of dZ1 over the shard's slots)"
        } else {
            "sample-major: the first weight-gradient request's keys (every sample's)"
        },
    );

    let all_forward = all(&forward);
    let all_gradient = all(&gradient);
    let total = all_forward.len() + all_gradient.len();
    let whole_run = if fwd.complete() || grad.complete() {
        // A subset of the run's keys already determines every entry: the figures of the
        // whole run are those of that subset, its rank a lower bound.
        let done = if fwd.complete() { &fwd } else { &grad };
        let mut v = done.figures(
            &truth,
            total,
            "every key of the shard; a one-step view already determines every entry",
        );
        v.rank = done.rank;
        v
    } else if gradient_feature_major {
        let joined = rebuild(&all_forward, false)?.join(&rebuild(&all_gradient, true)?);
        joined.figures(
            &truth,
            total,
            "union of the entries determined by every forward key (sample-major) and by every \
             gradient key (feature-major); rank of the forward keys",
        )
    } else {
        let mut keys = all_forward;
        keys.extend(all_gradient);
        rebuild(&keys, false)?.figures(
            &truth,
            total,
            "sample-major: every forward and gradient key of the shard",
        )
    };
    Ok(ShardLeakage {
        shard,
        samples: truth.len(),
        features,
        forward_one_step,
        gradient_one_step,
        whole_run,
        decryptions_checked: checked,
    })
}
