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

use std::collections::{BTreeMap, HashSet};

use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::coordinator::audit::{AuditConfig, AuditLog, AuditOutcome, AuditedKey};
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::error::PolicyRefusal;
use crate::coordinator::messages::{
    commitment_digest, DomainAccess, DomainId, DomainPublicKey, DomainStatus,
    FeboCommitmentRegistration, FeboKeyRequest, FeboKeyResponse, FeipKeyRequest, FeipKeyResponse,
    RequesterId, SparseKeyVector,
};
use crate::coordinator::policy::{DefaultPolicy, KeyPolicy, PolicyConfig, Verdict};
use crate::fe::error::FeError;
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
    /// Who may use the domain; `None`: an unbound in-process domain (any requester).
    access: Option<DomainAccess>,
    /// SHA-256 of the canonical encoding of every FEBO commitment its owner registered.
    registered: HashSet<[u8; 32]>,
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
        let mut seed = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut seed[..]);
        Self::from_seed(group, *seed)
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

    /// Setup of a new key domain under the default policy, bound to `access`: only
    /// `access.requesters` receive its function keys and only `access.owner` registers its FEBO
    /// commitments. This is how every networked domain is created.
    ///
    /// # Errors
    /// [`CoordinatorError::InvalidConfig`] if `access` names no requester; otherwise as
    /// [`create_domain`](Self::create_domain).
    pub fn create_domain_for(
        &mut self,
        config: DomainConfig,
        access: DomainAccess,
    ) -> Result<DomainId, CoordinatorError> {
        if access.requesters.is_empty() {
            return Err(CoordinatorError::InvalidConfig(
                "a bound key domain needs at least one requester",
            ));
        }
        let id = self.create_domain(config)?;
        if let Some(d) = self.domains.get_mut(&id) {
            d.access = Some(access);
        }
        Ok(id)
    }

    /// Who may use a domain (`None`: an unbound domain).
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`].
    pub fn access(&self, id: DomainId) -> Result<Option<&DomainAccess>, CoordinatorError> {
        Ok(self.domain(id)?.access.as_ref())
    }

    /// Setup of a new **unbound** key domain under the default policy configured in
    /// `config.policy`: any requester of this in-process authority may ask for its keys. For
    /// single-process experiments and tests; a domain whose ciphertexts leave the process
    /// should be bound with [`create_domain_for`](Self::create_domain_for).
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
                access: None,
                registered: HashSet::new(),
            },
        );
        Ok(id)
    }

    /// Refuses `requester` unless the domain is unbound or binds it as a requester.
    fn check_requester(
        d: &Domain<G>,
        id: DomainId,
        requester: &RequesterId,
    ) -> Result<(), CoordinatorError> {
        match &d.access {
            Some(a) if !a.admits(requester) => Err(CoordinatorError::NotPermitted {
                domain: id,
                requester: requester.clone(),
                action: "request function keys",
            }),
            _ => Ok(()),
        }
    }

    /// Registers the commitments of FEBO ciphertexts that `registrant` (the domain's owner)
    /// produced in a domain; [`issue_febo_keys`](Self::issue_febo_keys) serves only registered
    /// commitments. Each commitment must be a canonical encoding of a group element.
    /// Registering a commitment twice is harmless. Returns the number of newly registered
    /// commitments.
    ///
    /// # Errors
    /// The domain errors of [`issue_feip_keys`](Self::issue_feip_keys);
    /// [`CoordinatorError::FeboDisabled`]; [`CoordinatorError::NotPermitted`] unless
    /// `registrant` owns a bound domain; [`CoordinatorError::Empty`];
    /// [`CoordinatorError::Fe`] for a commitment that is not a canonical group element (nothing
    /// is registered then).
    pub fn register_febo_commitments(
        &mut self,
        registrant: &RequesterId,
        registration: &FeboCommitmentRegistration,
    ) -> Result<usize, CoordinatorError> {
        let id = registration.domain;
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        if d.febo.is_none() {
            return Err(CoordinatorError::FeboDisabled(id));
        }
        if let Some(a) = &d.access {
            if &a.owner != registrant {
                return Err(CoordinatorError::NotPermitted {
                    domain: id,
                    requester: registrant.clone(),
                    action: "register FEBO commitments",
                });
            }
        }
        if registration.commitments.is_empty() {
            return Err(CoordinatorError::Empty("registration without commitments"));
        }
        let digests = registration
            .commitments
            .par_iter()
            .map(|c| {
                self.group.element_from_bytes(c).map_err(FeError::from)?;
                Ok(commitment_digest(c))
            })
            .collect::<Result<Vec<_>, CoordinatorError>>()?;
        Ok(self.insert_registered(id, digests))
    }

    /// Adds commitment digests to a domain's registry (also used when a persisted authority
    /// replays its journal); returns how many were new.
    pub(crate) fn insert_registered(&mut self, id: DomainId, digests: Vec<[u8; 32]>) -> usize {
        let Some(d) = self.domains.get_mut(&id) else {
            return 0;
        };
        digests
            .into_iter()
            .filter(|h| d.registered.insert(*h))
            .count()
    }

    /// Binds an existing domain to `access` (journal replay of
    /// [`create_domain_for`](Self::create_domain_for)).
    pub(crate) fn bind(&mut self, id: DomainId, access: DomainAccess) {
        if let Some(d) = self.domains.get_mut(&id) {
            d.access = Some(access);
        }
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

    /// Retires an active domain and creates its successor (same parameters, binding and policy
    /// configuration, fresh master secret key). The successor's policy is
    /// [`KeyPolicy::successor`]: the default policy hands on the issued span, so rotation never
    /// resets the rank cap for data re-encrypted under the successor. The old master secret key
    /// is erased. Clients must re-encrypt under the successor's public key (and register its
    /// FEBO commitments again).
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`], or the status error of a domain that is not active.
    pub fn rotate(&mut self, id: DomainId) -> Result<DomainId, CoordinatorError> {
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        let config = d.config;
        let policy = d.policy.successor();
        let access = d.access.clone();
        let successor = self.create_domain_with_policy(config, policy)?;
        if let Some(access) = access {
            self.bind(successor, access);
        }
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
    /// [`CoordinatorError::DomainClosed`]; [`CoordinatorError::NotPermitted`] for a requester
    /// the domain is not bound to; [`CoordinatorError::Empty`] for an empty batch;
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
        Self::check_requester(d, id, requester)?;
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
    /// is `x` itself, which is what CryptoNN uses FEBO for. So keys are issued only to a
    /// requester the domain is bound to, and only for commitments its owner registered
    /// ([`register_febo_commitments`](Self::register_febo_commitments)): without that, a key
    /// request would be a Diffie–Hellman oracle `cmt ↦ cmt^s` on any element, including
    /// disguised ones (`cmt · g^t`, divided by `h^t` afterwards). The FEIP policy does not
    /// apply; every key, and every refused item, is audited.
    ///
    /// # Errors
    /// The domain errors of [`issue_feip_keys`](Self::issue_feip_keys);
    /// [`CoordinatorError::FeboDisabled`] if the domain has no FEBO key;
    /// [`CoordinatorError::NotPermitted`]; [`CoordinatorError::Empty`];
    /// [`CoordinatorError::UnregisteredCommitment`] for a commitment not registered in this
    /// domain (no key of the batch is issued); [`CoordinatorError::Fe`] for an invalid
    /// commitment encoding, an operand with `|y| > Y`, or division by zero.
    pub fn issue_febo_keys(
        &mut self,
        requester: &RequesterId,
        request: &FeboKeyRequest,
    ) -> Result<FeboKeyResponse<G>, CoordinatorError> {
        use sha2::{Digest, Sha256};
        let id = request.domain;
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        let (true, Some(params)) = (d.febo.is_some(), d.config.febo) else {
            return Err(CoordinatorError::FeboDisabled(id));
        };
        if d.secrets.as_ref().and_then(|s| s.febo.as_ref()).is_none() {
            return Err(CoordinatorError::DomainClosed(id));
        }
        Self::check_requester(d, id, requester)?;
        if request.items.is_empty() {
            return Err(CoordinatorError::Empty("FEBO key request without items"));
        }
        if let Some(index) = request
            .items
            .iter()
            .position(|item| !d.registered.contains(&commitment_digest(&item.commitment)))
        {
            let item = &request.items[index];
            let key = AuditedKey::Febo {
                op: item.op.to_byte(),
                operand: item.operand,
                commitment_sha256: Sha256::digest(&item.commitment).into(),
            };
            let now = (self.clock)();
            let reason = PolicyRefusal::Custom("unregistered FEBO commitment".into());
            self.audit
                .append(now, id, requester, key, AuditOutcome::Refused(reason))?;
            self.audit.commit()?;
            return Err(CoordinatorError::UnregisteredCommitment { domain: id, index });
        }
        let d = self.domain(id)?;
        let (Some(febo), Some(msk)) = (
            d.febo.as_ref(),
            d.secrets.as_ref().and_then(|s| s.febo.as_ref()),
        ) else {
            return Err(CoordinatorError::DomainClosed(id));
        };
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

impl<G: PrimeOrderGroup> Drop for Authority<G> {
    /// Overwrites the ChaCha20 state from which master keys are drawn (the domains' own secrets
    /// zeroize themselves on drop). `rand_chacha` offers no `Zeroize`; the overwrite is
    /// followed by a `black_box` read so that the store is not elided as dead.
    fn drop(&mut self) {
        self.rng = ChaCha20Rng::from_seed([0u8; 32]);
        std::hint::black_box(&self.rng);
    }
}
