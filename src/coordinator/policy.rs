//! Key-request policies: what the authority checks before it derives a function key.
//!
//! A FEIP function key for `y` reveals `<x, y>` for *every* ciphertext `x` of its domain, and
//! keys combine linearly: from keys for `y_1 … y_k` a server derives the key for any
//! `Σ c_j y_j` as `Σ c_j sk_{y_j} mod q`. Two consequences drive the default policy
//! ([`DefaultPolicy`]):
//!
//! 1. **Low-weight probes.** A key for a one-hot `e_i` reveals `x_i` outright. Vectors with fewer
//!    than `t` non-zero entries are refused ([`PolicyRefusal::TooFewNonZero`]), as in
//!    HybridAlpha's inference-prevention filter. On its own this filter stops nothing against a
//!    patient server (`e_1 = (e_1 + e_2 + …) − (e_2 + …)`); it is the rank cap that bounds what
//!    combinations can reach.
//! 2. **Rank.** Once the issued vectors span `Q^n`, every `e_i` is a combination of them and the
//!    server decrypts every ciphertext of the domain entirely. More generally, if the issued
//!    vectors span a subspace `V` of rank `r`, the server learns exactly the projection of `x`
//!    onto `V`, and at most `r` coordinates of `x` can be determined (a subspace of dimension `r`
//!    contains at most `r` unit vectors). The policy tracks `r` per domain by exact Gaussian
//!    elimination modulo a secret random prime `p ∈ [2^60, 2^61)`. That is sound: the rank mod
//!    `p` never exceeds the rank over `Q`, and falls short only if `p` divides a particular
//!    non-zero minor, which has at most `log2|minor| / 60` such prime factors out of ~2^54
//!    candidates — negligible, and a server cannot aim at a prime it does not know (a fixed
//!    public prime such as `2^61 − 1` could be targeted). It refuses any batch that would take
//!    the rank above a cap
//!    ([`PolicyRefusal::RankCapReached`]). The default cap is `⌊n/2⌋`: whatever keys a server
//!    chooses, at least half of the coordinates of every input stay undetermined.
//!
//! When the cap is reached the operator chooses ([`RankCapAction`]): **refuse**, or **rotate**
//! to a fresh domain with a new master secret key (clients re-encrypt under its public key; keys
//! of the old domain are useless on the new ciphertexts, so the rank count starts again from
//! zero). A batch whose own rank exceeds the cap is refused even under `Rotate`, since no domain
//! could serve it.
//!
//! Per-batch domains (one fresh domain per training mini-batch, so that its keys are useless on
//! other batches) use [`PolicyConfig::per_batch`]: the rank cap is off and the weight filter
//! refuses only the all-zero vector (`t = 1`). Inside such a domain the keys secure training
//! must have anyway — e.g. a convolution's forward outputs, more of them than inputs and of
//! full rank — already determine every input of the batch exactly (measured in `docs/secure-training-leakage.md`),
//! so a low-weight key reveals nothing the server does not hold, and a filter at `t = 4` would
//! only refuse legitimate weight-gradient keys: late in training `dq = round(dP · S_g)` is mostly
//! zero, and a border block touches mostly padding, so a `dW1` key vector can have 1–3 non-zero
//! pixel coefficients — and one refusal aborts a long run. Ordinary domains keep the default
//! `t = 4` ([`PolicyConfig::default`]), which is what stops one-hot probes there.
//!
//! Every review is all-or-nothing: either every vector of a batch is admitted and counted, or
//! none is.

use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::coordinator::linalg::{EchelonBasis, Insertion, PrimeField};
use crate::coordinator::messages::SparseKeyVector;

/// Why the key-request policy refused to issue a function key.
///
/// Carried inside [`CoordinatorError::Refused`](crate::coordinator::CoordinatorError::Refused),
/// so the requesting server learns the reason.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// The key vector has fewer non-zero entries than the policy's minimum `t`. Low-weight
    /// vectors (one-hot probes above all) reveal single inputs.
    #[error("key vector has {got} non-zero entries, the policy requires at least {min}")]
    TooFewNonZero {
        /// Non-zero entries of the refused vector.
        got: usize,
        /// The policy's minimum `t`.
        min: usize,
    },
    /// Issuing the key would raise the rank of the domain's issued key vectors above the cap.
    #[error(
        "issuing would raise the rank of the domain's key vectors to {rank}, above the cap {cap}"
    )]
    RankCapReached {
        /// The rank the domain would reach.
        rank: usize,
        /// The policy's cap.
        cap: usize,
    },
    /// A custom policy's reason.
    #[error("refused by policy: {0}")]
    Custom(String),
}

/// The default minimum number of non-zero entries `t` of a key vector.
pub const DEFAULT_MIN_NONZERO: usize = 4;

/// The default rank cap, in thousandths of `n`: `⌊n/2⌋`.
pub const DEFAULT_RANK_CAP_PER_MILLE: u16 = 500;

/// The rank cap of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RankCap {
    /// No cap: the rank is not tracked.
    Disabled,
    /// At most this rank.
    AtMost(usize),
    /// At most `⌊n · k / 1000⌋`.
    PerMille(u16),
}

/// What the authority does when a batch would exceed the rank cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RankCapAction {
    /// Refuse the batch ([`PolicyRefusal::RankCapReached`]).
    Refuse,
    /// Retire the domain, create a fresh one (new master secret key, same parameters) and tell
    /// the server to have clients re-encrypt under it.
    Rotate,
}

/// The configuration of the [`DefaultPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// Minimum non-zero entries `t` of a key vector (capped at `n`: a fully dense vector always
    /// passes). `0` disables the filter.
    pub min_nonzero: usize,
    /// The rank cap.
    pub rank_cap: RankCap,
    /// What happens when a batch would exceed the cap.
    pub on_rank_cap: RankCapAction,
}

impl Default for PolicyConfig {
    /// `t = 4`, rank cap `⌊n/2⌋`, refuse beyond it.
    fn default() -> Self {
        Self {
            min_nonzero: DEFAULT_MIN_NONZERO,
            rank_cap: RankCap::PerMille(DEFAULT_RANK_CAP_PER_MILLE),
            on_rank_cap: RankCapAction::Refuse,
        }
    }
}

impl PolicyConfig {
    /// No filter and no cap: every well-formed key is issued (and still audited). The server
    /// can then learn inputs entirely; use only where that is the intent (benchmarks, tests).
    #[must_use]
    pub fn permissive() -> Self {
        Self {
            min_nonzero: 0,
            rank_cap: RankCap::Disabled,
            on_rank_cap: RankCapAction::Refuse,
        }
    }

    /// For a short-lived per-batch (training shard) domain: no rank cap, and a weight filter
    /// that refuses only the all-zero vector (`t = 1`).
    ///
    /// Why not `t = 4`: in a shard domain the forward keys the server needs every step already
    /// determine every input of the shard exactly (full rank), so refusing low-weight keys
    /// protects nothing there, while legitimate weight-gradient keys can have 1–3 non-zero
    /// coefficients (a sparse quantised `dZ1`, blocks at the border that touch padding) and a
    /// refusal would abort training. See the [module docs](self).
    #[must_use]
    pub fn per_batch() -> Self {
        Self {
            min_nonzero: 1,
            rank_cap: RankCap::Disabled,
            ..Self::default()
        }
    }

    /// The default with `Rotate` as the action at the cap.
    #[must_use]
    pub fn rotating() -> Self {
        Self {
            on_rank_cap: RankCapAction::Rotate,
            ..Self::default()
        }
    }

    /// The effective minimum weight for dimension `n`: `min(t, n)`.
    #[must_use]
    pub fn min_nonzero_for(&self, n: usize) -> usize {
        self.min_nonzero.min(n)
    }

    /// The effective rank cap for dimension `n`, if any.
    #[must_use]
    pub fn rank_cap_for(&self, n: usize) -> Option<usize> {
        match self.rank_cap {
            RankCap::Disabled => None,
            RankCap::AtMost(r) => Some(r.min(n)),
            RankCap::PerMille(k) => Some(n * usize::from(k.min(1000)) / 1000),
        }
    }
}

/// A policy's decision on a batch of key vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Issue every key of the batch.
    Admit,
    /// Issue none; tell the requester why.
    Refuse {
        /// The first offending vector.
        index: usize,
        /// Why.
        reason: PolicyRefusal,
    },
    /// Issue none; retire the domain and create a fresh one.
    Rotate {
        /// The vector that reached the cap.
        index: usize,
        /// Why.
        reason: PolicyRefusal,
    },
}

/// A pluggable key-request policy. One instance belongs to one key domain and keeps that
/// domain's state (e.g. the rank of the issued vectors).
pub trait KeyPolicy: Send + std::fmt::Debug {
    /// Decides on a batch of validated key vectors of one domain. An implementation must be
    /// all-or-nothing: on [`Verdict::Admit`] every vector counts as issued, otherwise none does.
    fn review(&mut self, batch: &[SparseKeyVector]) -> Verdict;
    /// A policy with the same configuration and no history, for a rotated domain.
    fn fresh(&self) -> Box<dyn KeyPolicy>;
    /// The rank of the vectors admitted so far, if the policy tracks it.
    fn issued_rank(&self) -> Option<usize> {
        None
    }
}

/// The default policy: the weight filter and the rank cap of [`PolicyConfig`]. Its `Debug`
/// output omits the tracker's secret prime.
#[derive(Clone)]
pub struct DefaultPolicy {
    config: PolicyConfig,
    n: usize,
    field: PrimeField,
    basis: Option<EchelonBasis>,
}

impl std::fmt::Debug for DefaultPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultPolicy")
            .field("config", &self.config)
            .field("n", &self.n)
            .field("issued_rank", &self.issued_rank())
            .finish_non_exhaustive()
    }
}

impl DefaultPolicy {
    /// A policy for vectors of dimension `n`; `rng` draws the secret prime of the rank tracker.
    pub fn new<R: RngCore + ?Sized>(config: PolicyConfig, n: usize, rng: &mut R) -> Self {
        let field = PrimeField::random(rng);
        let basis = config
            .rank_cap_for(n)
            .map(|_| EchelonBasis::new(field, n, 0));
        Self {
            config,
            n,
            field,
            basis,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The rank of `batch` on its own.
    fn batch_rank(&self, batch: &[SparseKeyVector]) -> usize {
        let mut b = EchelonBasis::new(self.field, self.n, 0);
        for v in batch {
            let row = b.row_from_sparse(v.terms(), &[]);
            b.insert(row);
        }
        b.rank()
    }
}

impl KeyPolicy for DefaultPolicy {
    fn review(&mut self, batch: &[SparseKeyVector]) -> Verdict {
        let min = self.config.min_nonzero_for(self.n);
        if let Some(index) = batch.iter().position(|v| v.nnz() < min) {
            return Verdict::Refuse {
                index,
                reason: PolicyRefusal::TooFewNonZero {
                    got: batch[index].nnz(),
                    min,
                },
            };
        }
        let (Some(cap), Some(basis)) = (self.config.rank_cap_for(self.n), self.basis.as_mut())
        else {
            return Verdict::Admit;
        };
        let start = basis.rank();
        for (index, v) in batch.iter().enumerate() {
            let row = basis.row_from_sparse(v.terms(), &[]);
            if basis.insert(row) == Insertion::Independent && basis.rank() > cap {
                let rank = basis.rank();
                basis.truncate(start);
                let reason = PolicyRefusal::RankCapReached { rank, cap };
                let rotate = self.config.on_rank_cap == RankCapAction::Rotate
                    && self.batch_rank(batch) <= cap;
                return if rotate {
                    Verdict::Rotate { index, reason }
                } else {
                    Verdict::Refuse { index, reason }
                };
            }
        }
        Verdict::Admit
    }

    fn fresh(&self) -> Box<dyn KeyPolicy> {
        Box::new(Self {
            config: self.config,
            n: self.n,
            field: self.field,
            basis: self
                .basis
                .as_ref()
                .map(|_| EchelonBasis::new(self.field, self.n, 0)),
        })
    }

    fn issued_rank(&self) -> Option<usize> {
        self.basis.as_ref().map(EchelonBasis::rank)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::messages::KeyVectorData;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn vecs(n: usize, rows: &[&[(usize, i64)]]) -> Vec<SparseKeyVector> {
        rows.iter()
            .map(|t| SparseKeyVector::from_data(&KeyVectorData::Sparse(t.to_vec()), n, 100))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn weight_filter_refuses_probes() {
        let mut p = DefaultPolicy::new(
            PolicyConfig::default(),
            8,
            &mut ChaCha20Rng::seed_from_u64(0),
        );
        let batch = vecs(8, &[&[(0, 1), (1, 1), (2, 1), (3, 1)], &[(5, 1)]]);
        assert_eq!(
            p.review(&batch),
            Verdict::Refuse {
                index: 1,
                reason: PolicyRefusal::TooFewNonZero { got: 1, min: 4 }
            }
        );
        // All-or-nothing: the first vector was not counted.
        assert_eq!(p.issued_rank(), Some(0));
    }

    #[test]
    fn rank_cap_counts_only_new_directions() {
        let cfg = PolicyConfig {
            min_nonzero: 1,
            rank_cap: RankCap::AtMost(2),
            on_rank_cap: RankCapAction::Refuse,
        };
        let mut p = DefaultPolicy::new(cfg, 4, &mut ChaCha20Rng::seed_from_u64(0));
        let a = vecs(4, &[&[(0, 1), (1, 2)], &[(2, 3)]]);
        assert_eq!(p.review(&a), Verdict::Admit);
        // A combination of issued vectors adds nothing and is admitted.
        let b = vecs(4, &[&[(0, 2), (1, 4), (2, -3)]]);
        assert_eq!(p.review(&b), Verdict::Admit);
        assert_eq!(p.issued_rank(), Some(2));
        let c = vecs(4, &[&[(3, 1)]]);
        assert_eq!(
            p.review(&c),
            Verdict::Refuse {
                index: 0,
                reason: PolicyRefusal::RankCapReached { rank: 3, cap: 2 }
            }
        );
        assert_eq!(p.issued_rank(), Some(2));
        // A fresh policy starts from zero.
        assert_eq!(p.fresh().issued_rank(), Some(0));
    }

    #[test]
    fn rotate_only_when_a_fresh_domain_could_serve_the_batch() {
        let cfg = PolicyConfig {
            min_nonzero: 1,
            rank_cap: RankCap::AtMost(2),
            on_rank_cap: RankCapAction::Rotate,
        };
        let mut p = DefaultPolicy::new(cfg, 4, &mut ChaCha20Rng::seed_from_u64(0));
        assert_eq!(p.review(&vecs(4, &[&[(0, 1)], &[(1, 1)]])), Verdict::Admit);
        assert!(matches!(
            p.review(&vecs(4, &[&[(2, 1)]])),
            Verdict::Rotate { .. }
        ));
        let mut q = p.fresh();
        assert!(matches!(
            q.review(&vecs(4, &[&[(0, 1)], &[(1, 1)], &[(2, 1)]])),
            Verdict::Refuse { index: 2, .. }
        ));
    }

    #[test]
    fn config_effective_values() {
        let d = PolicyConfig::default();
        assert_eq!(d.min_nonzero_for(2), 2);
        assert_eq!(d.rank_cap_for(1000), Some(500));
        assert_eq!(PolicyConfig::per_batch().rank_cap_for(1000), None);
        assert_eq!(PolicyConfig::permissive().min_nonzero_for(1000), 0);
    }
}
