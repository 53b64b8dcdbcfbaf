//! The authority: Setup, the master secret keys, key derivation under a policy, and the audit
//! log.
//!
//! The authority holds any number of independent **key domains** ([`DomainId`]). Each domain is
//! one FEIP instance `(n, X, Y)` with its own master key pair (`s ← Z_q^n`, `h_i = g^{s_i}`),
//! optionally a FEBO key pair, and its own policy state. Keys of one domain are useless on
//! ciphertexts of another, so domains separate clients, datasets or training mini-batches.
//! Creating a domain costs `n` fixed-base exponentiations (about 12 µs each on Ristretto255).
//!
//! For every batch of key vectors the authority
//! 1. validates each vector (length, bound `|y_i| <= Y`, sparse index order),
//! 2. asks the domain's [`KeyPolicy`] for a verdict on the whole batch,
//! 3. on admission derives `sk_y = <y, s> mod q` for each vector (in parallel) and appends one
//!    [`AuditRecord`](crate::coordinator::audit::AuditRecord) per key; on refusal it appends a
//!    record of the offending vector and returns [`CoordinatorError::Refused`]; on rotation it
//!    creates the successor domain, erases the old master secret key and returns
//!    [`CoordinatorError::DomainRotated`].
//!
//! The authority's state logic is pure (no I/O); the time of audit records comes from a clock
//! that can be replaced ([`Authority::with_clock`]).
//!
//! # Example
//! ```
//! use cryptonn::coordinator::{Authority, DomainConfig, FeipKeyRequest, KeyVectorData,
//!                             RequesterId};
//! use cryptonn::fe::feip::FeipParams;
//! use cryptonn::fe::group::ristretto::Ristretto255;
//!
//! let mut authority = Authority::new(Ristretto255);
//! let domain = authority.create_domain(DomainConfig::new(FeipParams::new(8, 255, 100)?))?;
//! let server = RequesterId::new("server-1");
//! let request = FeipKeyRequest {
//!     domain,
//!     vectors: vec![KeyVectorData::Dense(vec![1, -2, 3, 4, 0, 0, 0, 0])],
//! };
//! let response = authority.issue_feip_keys(&server, &request)?;
//! assert_eq!(response.keys.len(), 1);
//! assert_eq!(authority.audit_log().len(), 1);
//!
//! // A one-hot probe is refused by the default policy, with the reason.
//! let probe = FeipKeyRequest {
//!     domain,
//!     vectors: vec![KeyVectorData::Sparse(vec![(3, 1)])],
//! };
//! let err = authority.issue_feip_keys(&server, &probe).unwrap_err();
//! assert!(err.to_string().contains("non-zero entries"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use rayon::prelude::*;

use crate::coordinator::audit::{AuditConfig, AuditLog, AuditOutcome, AuditedKey};
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::messages::{
    DomainId, DomainPublicKey, DomainStatus, FeboKeyRequest, FeboKeyResponse, FeipKeyRequest,
    FeipKeyResponse, RequesterId, SparseKeyVector,
};
use crate::coordinator::policy::{DefaultPolicy, KeyPolicy, PolicyConfig, Verdict};
use crate::fe::febo::{Febo, FeboMasterSecretKey, FeboParams, FeboPublicKey};
use crate::fe::feip::{Feip, FeipParams, MasterPublicKey, MasterSecretKey};
use crate::fe::group::PrimeOrderGroup;

/// Batches at least this large derive their keys in parallel.
const PARALLEL_DERIVE_MIN: usize = 32;

/// The parameters of a key domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainConfig {
    /// FEIP parameters `(n, X, Y)`.
    pub feip: FeipParams,
    /// FEBO bounds, if the domain offers element-wise operations.
    pub febo: Option<FeboParams>,
    /// The default policy's configuration (ignored by
    /// [`Authority::create_domain_with_policy`]).
    pub policy: PolicyConfig,
}

impl DomainConfig {
    /// A FEIP-only domain under the default policy.
    #[must_use]
    pub fn new(feip: FeipParams) -> Self {
        Self {
            feip,
            febo: None,
            policy: PolicyConfig::default(),
        }
    }
    /// Adds FEBO with the given bounds.
    #[must_use]
    pub fn with_febo(mut self, febo: FeboParams) -> Self {
        self.febo = Some(febo);
        self
    }
    /// Sets the policy configuration.
    #[must_use]
    pub fn with_policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }
}

/// The secrets of an active domain (erased on rotation or closing).
struct DomainSecrets<G: PrimeOrderGroup> {
    feip: MasterSecretKey<G>,
    febo: Option<FeboMasterSecretKey<G>>,
}

struct Domain<G: PrimeOrderGroup> {
    config: DomainConfig,
    feip: Feip<G>,
    febo: Option<Febo<G>>,
    mpk: MasterPublicKey<G>,
    febo_pk: Option<FeboPublicKey<G>>,
    secrets: Option<DomainSecrets<G>>,
    policy: Box<dyn KeyPolicy>,
    status: DomainStatus,
}

/// The time source of audit records: seconds since the Unix epoch.
type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The key authority (see the [module docs](self)).
pub struct Authority<G: PrimeOrderGroup> {
    group: G,
    domains: BTreeMap<DomainId, Domain<G>>,
    next_id: u64,
    audit: AuditLog,
    rng: ChaCha20Rng,
    clock: Clock,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for Authority<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("group", &self.group.id())
            .field(
                "domains",
                &self
                    .domains
                    .iter()
                    .map(|(id, d)| (*id, d.status))
                    .collect::<Vec<_>>(),
            )
            .field("audit_records", &self.audit.len())
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup> Authority<G> {
    /// An authority over `group` whose master keys come from the operating system's RNG.
    #[must_use]
    pub fn new(group: G) -> Self {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        Self::from_seed(group, seed)
    }

    /// A deterministic authority: every master secret key follows from `seed`. **For tests and
    /// reproducible benchmarks only** — whoever knows the seed knows every key.
    #[must_use]
    pub fn from_seed(group: G, seed: [u8; 32]) -> Self {
        Self {
            group,
            domains: BTreeMap::new(),
            next_id: 0,
            audit: AuditLog::default(),
            rng: ChaCha20Rng::from_seed(seed),
            clock: Box::new(system_clock),
        }
    }

    /// Replaces the clock that time-stamps audit records.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Sets what the audit log keeps (only before the first record).
    #[must_use]
    pub fn with_audit_config(mut self, config: AuditConfig) -> Self {
        if self.audit.is_empty() {
            self.audit = AuditLog::new(config);
        }
        self
    }

    /// Replaces the audit log, e.g. by one that streams to an
    /// [`AuditFileSink`](crate::coordinator::audit::AuditFileSink) so that memory stays flat over
    /// millions of keys (only before the first record; afterwards the call changes nothing).
    #[must_use]
    pub fn with_audit_log(mut self, log: AuditLog) -> Self {
        if self.audit.is_empty() {
            self.audit = log;
        }
        self
    }

    /// The group.
    #[must_use]
    pub fn group(&self) -> &G {
        &self.group
    }

    /// The audit log.
    #[must_use]
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// Setup of a new key domain under the default policy configured in `config.policy`.
    ///
    /// # Errors
    /// Infallible today for valid [`FeipParams`]; the `Result` leaves room for parameter checks.
    pub fn create_domain(&mut self, config: DomainConfig) -> Result<DomainId, CoordinatorError> {
        let policy = Box::new(DefaultPolicy::new(
            config.policy,
            config.feip.n(),
            &mut self.rng,
        ));
        self.create_domain_with_policy(config, policy)
    }

    /// Setup of a new key domain under a custom policy.
    ///
    /// # Errors
    /// As [`create_domain`](Self::create_domain).
    pub fn create_domain_with_policy(
        &mut self,
        config: DomainConfig,
        policy: Box<dyn KeyPolicy>,
    ) -> Result<DomainId, CoordinatorError> {
        let feip = Feip::new(self.group.clone(), config.feip);
        let (msk, mpk) = feip.setup(&mut self.rng);
        let (febo, febo_msk, febo_pk) = match config.febo {
            Some(p) => {
                let febo = Febo::new(self.group.clone(), p);
                let (sk, pk) = febo.setup(&mut self.rng);
                (Some(febo), Some(sk), Some(pk))
            }
            None => (None, None, None),
        };
        let id = DomainId(self.next_id);
        self.next_id += 1;
        self.domains.insert(
            id,
            Domain {
                config,
                feip,
                febo,
                mpk,
                febo_pk,
                secrets: Some(DomainSecrets {
                    feip: msk,
                    febo: febo_msk,
                }),
                policy,
                status: DomainStatus::Active,
            },
        );
        Ok(id)
    }

    fn domain(&self, id: DomainId) -> Result<&Domain<G>, CoordinatorError> {
        self.domains
            .get(&id)
            .ok_or(CoordinatorError::UnknownDomain(id))
    }

    fn status_error(id: DomainId, status: DomainStatus) -> Result<(), CoordinatorError> {
        match status {
            DomainStatus::Active => Ok(()),
            DomainStatus::Rotated { successor } => Err(CoordinatorError::DomainRotated {
                retired: id,
                successor,
            }),
            DomainStatus::Closed => Err(CoordinatorError::DomainClosed(id)),
        }
    }

    /// The status of a domain.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`].
    pub fn status(&self, id: DomainId) -> Result<DomainStatus, CoordinatorError> {
        Ok(self.domain(id)?.status)
    }

    /// The ids of all domains, in creation order.
    #[must_use]
    pub fn domain_ids(&self) -> Vec<DomainId> {
        self.domains.keys().copied().collect()
    }

    /// The rank of the key vectors issued so far in a domain, if its policy tracks it.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`].
    pub fn issued_rank(&self, id: DomainId) -> Result<Option<usize>, CoordinatorError> {
        Ok(self.domain(id)?.policy.issued_rank())
    }

    /// The public key of an active domain: what clients encrypt under.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`]; [`CoordinatorError::DomainRotated`] or
    /// [`CoordinatorError::DomainClosed`] for a domain that no longer issues keys (encrypting
    /// under it would be pointless).
    pub fn public_key(&self, id: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError> {
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        Ok(DomainPublicKey {
            domain: id,
            feip_params: d.config.feip,
            feip: d.mpk.clone(),
            febo: d.config.febo.zip(d.febo_pk.clone()),
        })
    }

    /// Retires an active domain and creates its successor (same parameters and policy
    /// configuration, fresh master secret key, empty policy history). The old master secret
    /// key is erased. Clients must re-encrypt under the successor's public key.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`], or the status error of a domain that is not active.
    pub fn rotate(&mut self, id: DomainId) -> Result<DomainId, CoordinatorError> {
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        let config = d.config;
        let policy = d.policy.fresh();
        let successor = self.create_domain_with_policy(config, policy)?;
        if let Some(d) = self.domains.get_mut(&id) {
            d.status = DomainStatus::Rotated { successor };
            d.secrets = None;
        }
        Ok(successor)
    }

    /// Closes a domain for good and erases its master secret keys (e.g. at the end of a
    /// per-batch domain's life). Closing a rotated or closed domain is a no-op.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`].
    pub fn close_domain(&mut self, id: DomainId) -> Result<(), CoordinatorError> {
        let d = self
            .domains
            .get_mut(&id)
            .ok_or(CoordinatorError::UnknownDomain(id))?;
        d.secrets = None;
        if d.status == DomainStatus::Active {
            d.status = DomainStatus::Closed;
        }
        Ok(())
    }

    /// Replays a batch's policy review without deriving or auditing anything: restores the
    /// policy state (issued rank, rotation) of a persisted authority
    /// ([`PersistentAuthority`](crate::coordinator::persistent::PersistentAuthority)). A batch
    /// the policy refuses changes nothing, as when it was first reviewed; one that made it
    /// rotate rotates the domain again (with the same successor, since replay follows the same
    /// order). Requests for a domain that is no longer active are ignored.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`]; [`CoordinatorError::Fe`] for a malformed vector.
    pub(crate) fn replay_feip_review(
        &mut self,
        request: &FeipKeyRequest,
    ) -> Result<(), CoordinatorError> {
        let id = request.domain;
        let d = self.domain(id)?;
        if d.status != DomainStatus::Active || request.vectors.is_empty() {
            return Ok(());
        }
        let params = d.config.feip;
        let vectors = request
            .vectors
            .iter()
            .map(|v| SparseKeyVector::from_data(v, params.n(), params.y_bound()))
            .collect::<Result<Vec<_>, _>>()?;
        let d = self
            .domains
            .get_mut(&id)
            .ok_or(CoordinatorError::UnknownDomain(id))?;
        if let Verdict::Rotate { .. } = d.policy.review(&vectors) {
            self.rotate(id)?;
        }
        Ok(())
    }

    /// Derives one FEIP function key per vector of the request, if the domain's policy admits
    /// the whole batch, and records each in the audit log.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`], [`CoordinatorError::DomainRotated`],
    /// [`CoordinatorError::DomainClosed`]; [`CoordinatorError::Empty`] for an empty batch;
    /// [`CoordinatorError::Fe`] for a malformed vector (length, bound, sparse index order);
    /// [`CoordinatorError::Placement`] for placements that expand beyond
    /// [`MAX_EXPANSION`](crate::coordinator::placement::MAX_EXPANSION) entries in all;
    /// [`CoordinatorError::Refused`] when the policy refuses; [`CoordinatorError::DomainRotated`]
    /// (naming the fresh domain) when the policy rotates the domain. No key of a failed batch
    /// is issued.
    pub fn issue_feip_keys(
        &mut self,
        requester: &RequesterId,
        request: &FeipKeyRequest,
    ) -> Result<FeipKeyResponse<G>, CoordinatorError> {
        let id = request.domain;
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        if request.vectors.is_empty() {
            return Err(CoordinatorError::Empty("key request without vectors"));
        }
        request.check_expansion()?;
        let params = d.config.feip;
        let vectors = request
            .vectors
            .iter()
            .map(|v| SparseKeyVector::from_data(v, params.n(), params.y_bound()))
            .collect::<Result<Vec<_>, _>>()?;
        let now = (self.clock)();
        let d = self
            .domains
            .get_mut(&id)
            .ok_or(CoordinatorError::UnknownDomain(id))?;
        match d.policy.review(&vectors) {
            Verdict::Admit => {}
            Verdict::Refuse { index, reason } => {
                let key = self.audit.feip_key(&vectors[index]);
                self.audit.append(
                    now,
                    id,
                    requester,
                    key,
                    AuditOutcome::Refused(reason.clone()),
                )?;
                self.audit.commit()?;
                return Err(CoordinatorError::Refused {
                    domain: id,
                    index,
                    reason,
                });
            }
            Verdict::Rotate { index, .. } => {
                let successor = self.rotate(id)?;
                let key = self.audit.feip_key(&vectors[index]);
                self.audit
                    .append(now, id, requester, key, AuditOutcome::Rotated { successor })?;
                self.audit.commit()?;
                return Err(CoordinatorError::DomainRotated {
                    retired: id,
                    successor,
                });
            }
        }
        let secrets = d
            .secrets
            .as_ref()
            .ok_or(CoordinatorError::DomainClosed(id))?;
        let derive = |v: &SparseKeyVector| d.feip.derive_key_sparse(&secrets.feip, v.terms());
        let keys = if vectors.len() >= PARALLEL_DERIVE_MIN {
            vectors
                .par_iter()
                .map(derive)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vectors.iter().map(derive).collect::<Result<Vec<_>, _>>()?
        };
        for v in &vectors {
            let key = self.audit.feip_key(v);
            self.audit
                .append(now, id, requester, key, AuditOutcome::Issued)?;
        }
        self.audit.commit()?;
        Ok(FeipKeyResponse {
            domain: id,
            params,
            keys,
        })
    }

    /// Derives one ciphertext-bound FEBO key per item and records each in the audit log.
    ///
    /// A FEBO key reveals `x Δ y` for the one ciphertext it is bound to — for `+` and `−` that
    /// is `x` itself, which is what CryptoNN uses FEBO for. The FEIP policy does not apply; every
    /// key is audited.
    ///
    /// # Errors
    /// The domain errors of [`issue_feip_keys`](Self::issue_feip_keys);
    /// [`CoordinatorError::FeboDisabled`] if the domain has no FEBO key;
    /// [`CoordinatorError::Empty`]; [`CoordinatorError::Fe`] for an invalid commitment encoding,
    /// an operand with `|y| > Y`, or division by zero.
    pub fn issue_febo_keys(
        &mut self,
        requester: &RequesterId,
        request: &FeboKeyRequest,
    ) -> Result<FeboKeyResponse<G>, CoordinatorError> {
        use sha2::{Digest, Sha256};
        let id = request.domain;
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        let (Some(febo), Some(params)) = (d.febo.as_ref(), d.config.febo) else {
            return Err(CoordinatorError::FeboDisabled(id));
        };
        let msk = d
            .secrets
            .as_ref()
            .and_then(|s| s.febo.as_ref())
            .ok_or(CoordinatorError::DomainClosed(id))?;
        if request.items.is_empty() {
            return Err(CoordinatorError::Empty("FEBO key request without items"));
        }
        let keys = request
            .items
            .par_iter()
            .map(|item| {
                let cmt = self.group.element_from_bytes(&item.commitment)?;
                febo.derive_key(msk, &cmt, item.op, item.operand)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let now = (self.clock)();
        for item in &request.items {
            let key = AuditedKey::Febo {
                op: item.op.to_byte(),
                operand: item.operand,
                commitment_sha256: Sha256::digest(&item.commitment).into(),
            };
            self.audit
                .append(now, id, requester, key, AuditOutcome::Issued)?;
        }
        self.audit.commit()?;
        Ok(FeboKeyResponse {
            domain: id,
            params,
            keys,
        })
    }
}
