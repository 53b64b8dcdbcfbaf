//! The authority: Setup, the master secret keys, key derivation under a policy, and the audit
//! log.
//!
//! The authority holds any number of independent **key domains** ([`DomainId`]). Each domain is
//! one FEIP instance `(n, X, Y)` with its own master key pair (`s ← Z_q^n`, `h_i = g^{s_i}`),
//! optionally a FEBO key pair, and its own policy state. Keys of one domain are useless on
//! ciphertexts of another, so domains separate clients, datasets or training mini-batches.
//! Creating a domain costs `n` fixed-base exponentiations (about 12 µs each on Ristretto255).
//!
//! **Memory flat in the number of domains.** A domain keeps no key material: its master secret
//! keys and public key are derived again from the seed (below) whenever a request needs them,
//! held for that request only, and zeroized when dropped. What a domain keeps is its
//! configuration, policy state, binding and the 32-byte SHA-256 of its public key
//! ([`DomainPublicKey::sha256`], [`Authority::public_key_sha256`]): a few hundred bytes, so an
//! authority with thousands of per-shard domains stays small. Deriving the secrets again costs
//! `n + 1` scalar draws per request; a public key costs the `n` exponentiations again
//! ([`Authority::public_key`]), which is why a server checking many domains compares digests.
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
//! # Key derivation and forward secrecy
//! Domain `d` created in key epoch `e` draws all its secrets (the FEIP and FEBO master secret
//! keys and the policy's secret prime) from a ChaCha20 stream seeded with
//! `HKDF-SHA256(ikm = seed, salt = "cryptonn domain key v2", info = group ‖ d ‖ e)` (all
//! integers `u64` little-endian), and from nothing else. So
//! - keys of different domains are independent: one domain's master key reveals nothing of
//!   another's, and the order in which domains are created does not matter;
//! - a domain id is never handed out twice by one authority (ids only grow; a
//!   [`PersistentAuthority`](crate::coordinator::persistent::PersistentAuthority) keeps a
//!   high-water mark beside the seed), and a persistent authority draws a fresh random epoch
//!   at every start, so even a state directory rolled back to an older copy never creates
//!   the same key twice;
//! - the master secret keys live only while a request of an active domain is served (then
//!   they and the derived stream seed are zeroized); once a domain is closed or rotated the
//!   authority never derives them again. It keeps no generator state from which they could be
//!   recomputed except the seed itself.
//!
//! **Forward secrecy holds only against a reader of the authority's memory who does not also
//! obtain the seed** (in memory, or the `master-seed` file): whoever holds the seed and the
//! domain's id and epoch (both public, in the journal) re-derives every domain's key, retired
//! or not. Erasing a domain is therefore a defence against leaking the per-domain key from a
//! crash dump or swap of a process that has dropped it, not against a stolen seed.
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
use zeroize::Zeroizing;

use crate::coordinator::accountant::PrivacyAccountant;
use crate::coordinator::audit::{AuditConfig, AuditLog, AuditOutcome, AuditedKey};
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::error::PolicyRefusal;
use crate::coordinator::messages::{
    commitment_digest, DomainAccess, DomainId, DomainPublicKey, DomainStatus,
    FeboCommitmentRegistration, FeboKeyRequest, FeboKeyResponse, FeipKeyRequest, FeipKeyResponse,
    RequesterId, SparseKeyVector,
};
use crate::coordinator::policy::{DefaultPolicy, KeyPolicy, PolicyConfig, Verdict};
use crate::fe::discrete_gaussian::NoiseKey;
use crate::fe::error::FeError;
use crate::fe::febo::{Febo, FeboMasterSecretKey, FeboParams};
use crate::fe::feip::{Feip, FeipParams, MasterSecretKey};
use crate::fe::group::PrimeOrderGroup;

mod noisy;

pub use noisy::NoiseConfig;

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

/// The secrets of an active domain, derived from the seed for one request (zeroized on drop).
struct DomainSecrets<G: PrimeOrderGroup> {
    feip: MasterSecretKey<G>,
    febo: Option<FeboMasterSecretKey<G>>,
}

struct Domain<G: PrimeOrderGroup> {
    config: DomainConfig,
    feip: Feip<G>,
    febo: Option<Febo<G>>,
    /// The key epoch the domain was created in (with the id, the input of its key stream).
    epoch: u64,
    /// SHA-256 of the public key ([`DomainPublicKey::sha256`]).
    public_key_sha256: [u8; 32],
    policy: Box<dyn KeyPolicy>,
    status: DomainStatus,
    /// Who may use the domain; `None`: an unbound in-process domain (any requester).
    access: Option<DomainAccess>,
    /// Every FEBO commitment its owner registered, as a [`RegistryEntry`] (16 bytes), sorted
    /// and without duplicates, looked up by binary search: a shard's 160 label commitments
    /// take 2.5 KB.
    registered: Vec<RegistryEntry>,
    /// For a noisy domain: sigma, the sensitivity model and the registered ciphertexts.
    noisy: Option<noisy::NoisyState>,
    /// Whether the domain has issued a plain FEIP key (it can then no longer become noisy).
    plain_keys_issued: bool,
}

/// What a domain's FEBO registry keeps of a commitment: the first 128 bits of its
/// [`commitment_digest`].
///
/// The registry exists so that a FEBO key is only issued for a commitment `g^r` the data owner
/// produced, not for an element the requester chose. To pass the check with an element of its
/// own choosing, a requester must find one whose truncated digest equals one of the domain's
/// `m` entries: a second preimage of SHA-256 truncated to 128 bits, about `2^128 / m` hash
/// evaluations (`2^120.7` for a domain of 160 commitments), above the 112-bit floor.
/// The journal of a persisted authority keeps the whole 32-byte digests.
type RegistryEntry = [u8; 16];

fn registry_entry(digest: &[u8; 32]) -> RegistryEntry {
    let mut entry = [0; 16];
    entry.copy_from_slice(&digest[..16]);
    entry
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
    seed: Zeroizing<[u8; 32]>,
    epoch: u64,
    clock: Clock,
    /// The key of the noise PRF of noisy domains.
    noise_key: NoiseKey,
    /// The per-sample privacy ledger of all noisy domains.
    accountant: PrivacyAccountant,
    /// Fixed-base tables of the `ct0` values of recent noisy requests (public values only).
    ct0_tables: noisy::Ct0TableCache<G>,
}

/// The HKDF salt of per-domain key derivation (see the [module docs](self)).
const DOMAIN_KDF_SALT: &[u8] = b"cryptonn domain key v2";

/// `HKDF-SHA256(seed, salt, group ‖ id ‖ epoch)`: the seed of domain `id`'s secret stream.
fn domain_stream_seed(seed: &[u8; 32], group: u8, id: u64, epoch: u64) -> Zeroizing<[u8; 32]> {
    let mut info = [0u8; 17];
    info[0] = group;
    info[1..9].copy_from_slice(&id.to_le_bytes());
    info[9..].copy_from_slice(&epoch.to_le_bytes());
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(DOMAIN_KDF_SALT), seed);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes are far below HKDF-SHA256's limit of 255 * 32, so `expand` cannot fail.
    if hk.expand(&info, &mut out[..]).is_err() {
        unreachable!("HKDF-SHA256 output of 32 bytes");
    }
    out
}

/// The key stream of domain `id` created in `epoch`: ChaCha20 seeded by [`domain_stream_seed`].
fn domain_stream<G: PrimeOrderGroup>(
    seed: &[u8; 32],
    group: &G,
    id: DomainId,
    epoch: u64,
) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(*domain_stream_seed(seed, group.id().to_byte(), id.0, epoch))
}

/// Overwrites a key stream's state in place (ChaCha20Rng has no zeroizing drop).
fn wipe_stream(rng: &mut ChaCha20Rng) {
    *rng = ChaCha20Rng::from_seed([0u8; 32]);
    std::hint::black_box(rng);
}

/// Everything needed to set up a domain away from the authority (e.g. on another thread while
/// the authority keeps serving): the group, a copy of the seed and the epoch.
pub(crate) struct DomainFactory<G: PrimeOrderGroup> {
    group: G,
    seed: Zeroizing<[u8; 32]>,
    epoch: u64,
}

/// A domain set up by a [`DomainFactory`], not yet installed.
pub(crate) struct PreparedDomain<G: PrimeOrderGroup> {
    id: DomainId,
    domain: Domain<G>,
}

impl<G: PrimeOrderGroup> PreparedDomain<G> {
    /// The domain's id.
    pub(crate) fn id(&self) -> DomainId {
        self.id
    }
}

impl<G: PrimeOrderGroup> DomainFactory<G> {
    /// The epoch the factory derives keys in.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Derives domain `id`'s secrets and public keys (`n` fixed-base exponentiations): under
    /// the default policy of `config.policy` when `policy` is `None`.
    pub(crate) fn prepare(
        &self,
        id: DomainId,
        config: DomainConfig,
        policy: Option<Box<dyn KeyPolicy>>,
    ) -> PreparedDomain<G> {
        let mut rng = domain_stream(&self.seed, &self.group, id, self.epoch);
        let feip = Feip::new(self.group.clone(), config.feip);
        let febo = config.febo.map(|p| Febo::new(self.group.clone(), p));
        let secrets = draw_secrets(&feip, febo.as_ref(), &mut rng);
        let public_key_sha256 =
            public_key_of(id, &config, &feip, febo.as_ref(), &secrets).sha256(&self.group);
        drop(secrets);
        let policy = policy.unwrap_or_else(|| {
            Box::new(DefaultPolicy::new(config.policy, config.feip.n(), &mut rng))
        });
        wipe_stream(&mut rng);
        PreparedDomain {
            id,
            domain: Domain {
                config,
                feip,
                febo,
                epoch: self.epoch,
                public_key_sha256,
                policy,
                status: DomainStatus::Active,
                access: None,
                registered: Vec::new(),
                noisy: None,
                plain_keys_issued: false,
            },
        }
    }
}

/// The domain's master secret keys: the first draws of its key stream (`n` scalars for FEIP,
/// then one for FEBO), as [`Feip::setup`] and [`Febo::setup`] draw them.
fn draw_secrets<G: PrimeOrderGroup>(
    feip: &Feip<G>,
    febo: Option<&Febo<G>>,
    rng: &mut ChaCha20Rng,
) -> DomainSecrets<G> {
    let feip_msk = feip.setup_secret(rng);
    let febo_msk = febo.map(|f| f.setup_secret(rng));
    DomainSecrets {
        feip: feip_msk,
        febo: febo_msk,
    }
}

/// The public key of the secrets `secrets` of domain `id`.
fn public_key_of<G: PrimeOrderGroup>(
    id: DomainId,
    config: &DomainConfig,
    feip: &Feip<G>,
    febo: Option<&Febo<G>>,
    secrets: &DomainSecrets<G>,
) -> DomainPublicKey<G> {
    let febo_pk = febo
        .zip(secrets.febo.as_ref())
        .map(|(f, sk)| f.public_key_of(sk));
    DomainPublicKey {
        domain: id,
        feip_params: config.feip,
        feip: feip.public_key_of(&secrets.feip),
        febo: config.febo.zip(febo_pk),
    }
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
        let mut seed = Zeroizing::new(seed);
        let authority = Self {
            group,
            domains: BTreeMap::new(),
            next_id: 0,
            audit: AuditLog::default(),
            seed: Zeroizing::new(*seed),
            epoch: 0,
            clock: Box::new(system_clock),
            noise_key: NoiseKey::derive(&seed[..], b"authority noise key"),
            accountant: PrivacyAccountant::default(),
            ct0_tables: noisy::Ct0TableCache::default(),
        };
        zeroize::Zeroize::zeroize(&mut *seed);
        authority
    }

    /// Sets the key epoch of domains created from now on (see the [module docs](self)); a
    /// [`PersistentAuthority`](crate::coordinator::persistent::PersistentAuthority) draws a
    /// fresh one at every start.
    #[must_use]
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// The key epoch of domains created from now on.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The id the next domain gets.
    #[must_use]
    pub fn next_domain_id(&self) -> u64 {
        self.next_id
    }

    /// Never hands out an id below `next` (a persisted high-water mark).
    pub(crate) fn raise_next_id(&mut self, next: u64) {
        self.next_id = self.next_id.max(next);
    }

    /// Reserves `count` consecutive domain ids (for domains prepared off the authority with
    /// [`domain_factory`](Self::domain_factory)); returns the first.
    pub(crate) fn reserve_ids(&mut self, count: u64) -> Result<u64, CoordinatorError> {
        let first = self.next_id;
        self.next_id = first
            .checked_add(count)
            .ok_or(CoordinatorError::InvalidConfig("domain ids exhausted"))?;
        Ok(first)
    }

    /// A factory that sets up domains in the current epoch without borrowing the authority.
    pub(crate) fn domain_factory(&self) -> DomainFactory<G> {
        self.domain_factory_in(self.epoch)
    }

    fn domain_factory_in(&self, epoch: u64) -> DomainFactory<G> {
        DomainFactory {
            group: self.group.clone(),
            seed: Zeroizing::new(*self.seed),
            epoch,
        }
    }

    /// Installs a prepared domain under its reserved id.
    ///
    /// # Errors
    /// [`CoordinatorError::InvalidConfig`] if a domain with that id exists.
    pub(crate) fn install(&mut self, prepared: PreparedDomain<G>) -> Result<(), CoordinatorError> {
        if self.domains.contains_key(&prepared.id) {
            return Err(CoordinatorError::InvalidConfig("domain id already in use"));
        }
        self.next_id = self.next_id.max(prepared.id.0.saturating_add(1));
        self.domains.insert(prepared.id, prepared.domain);
        Ok(())
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
        let id = DomainId(self.reserve_ids(1)?);
        let prepared = self.domain_factory().prepare(id, config, None);
        self.install(prepared)?;
        Ok(id)
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
        let id = DomainId(self.reserve_ids(1)?);
        let prepared = self.domain_factory().prepare(id, config, Some(policy));
        self.install(prepared)?;
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
        let before = d.registered.len();
        d.registered.extend(digests.iter().map(registry_entry));
        d.registered.sort_unstable();
        d.registered.dedup();
        d.registered.shrink_to_fit();
        d.registered.len() - before
    }

    /// Binds an existing domain to `access` (journal replay of
    /// [`create_domain_for`](Self::create_domain_for)).
    pub(crate) fn bind(&mut self, id: DomainId, access: DomainAccess) {
        if let Some(d) = self.domains.get_mut(&id) {
            d.access = Some(access);
        }
    }

    /// Re-creates domain `id` of epoch `epoch` at replay (same keys as when it was created).
    pub(crate) fn replay_create(
        &mut self,
        id: DomainId,
        epoch: u64,
        config: DomainConfig,
    ) -> Result<(), CoordinatorError> {
        let prepared = self.domain_factory_in(epoch).prepare(id, config, None);
        self.install(prepared)
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
    ///
    /// The key is derived again from the seed (`n` fixed-base exponentiations, in parallel):
    /// the authority keeps only its digest ([`public_key_sha256`](Self::public_key_sha256)).
    pub fn public_key(&self, id: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError> {
        let d = self.domain(id)?;
        let secrets = self.secrets(id, d)?;
        Ok(public_key_of(
            id,
            &d.config,
            &d.feip,
            d.febo.as_ref(),
            &secrets,
        ))
    }

    /// SHA-256 of the public key of an active domain ([`DomainPublicKey::sha256`]), kept since
    /// its creation: how a server checks many domains' keys without deriving them.
    ///
    /// # Errors
    /// As [`public_key`](Self::public_key).
    pub fn public_key_sha256(&self, id: DomainId) -> Result<[u8; 32], CoordinatorError> {
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        Ok(d.public_key_sha256)
    }

    /// The master secret keys of an active domain, derived again from the seed for one request
    /// (zeroized when dropped). A rotated or closed domain's are never derived again.
    fn secrets(&self, id: DomainId, d: &Domain<G>) -> Result<DomainSecrets<G>, CoordinatorError> {
        Self::status_error(id, d.status)?;
        let mut rng = domain_stream(&self.seed, &self.group, id, d.epoch);
        let secrets = draw_secrets(&d.feip, d.febo.as_ref(), &mut rng);
        wipe_stream(&mut rng);
        Ok(secrets)
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
        let successor = DomainId(self.reserve_ids(1)?);
        self.rotate_to(id, successor, self.epoch)?;
        Ok(successor)
    }

    /// Rotates `id` into the successor `successor` of epoch `epoch` (a fresh id; at replay, the
    /// journaled one).
    pub(crate) fn rotate_to(
        &mut self,
        id: DomainId,
        successor: DomainId,
        epoch: u64,
    ) -> Result<(), CoordinatorError> {
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        let config = d.config;
        let policy = d.policy.successor();
        let access = d.access.clone();
        // A successor of a noisy domain blurs its values too (its ciphertexts are registered
        // afresh by the data owner).
        let noise = d.noisy.as_ref().map(|n| n.config);
        let prepared = self
            .domain_factory_in(epoch)
            .prepare(successor, config, Some(policy));
        self.install(prepared)?;
        if let Some(access) = access {
            self.bind(successor, access);
        }
        if let Some(config) = noise {
            if let Some(d) = self.domains.get_mut(&successor) {
                d.noisy = Some(noisy::NoisyState::new(config));
            }
        }
        if let Some(d) = self.domains.get_mut(&id) {
            d.status = DomainStatus::Rotated { successor };
        }
        Ok(())
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
        if d.status == DomainStatus::Active {
            d.status = DomainStatus::Closed;
        }
        Ok(())
    }

    /// Checks a FEIP key request as [`issue_feip_keys`](Self::issue_feip_keys) does before the
    /// policy sees it (known and active domain, non-empty batch, every vector of the domain's
    /// length and bound, sparse indices in order), and returns the validated vectors. Nothing
    /// that fails here may be persisted.
    ///
    /// # Errors
    /// The errors of [`issue_feip_keys`](Self::issue_feip_keys) other than the policy's.
    pub fn validate_feip_request(
        &self,
        request: &FeipKeyRequest,
    ) -> Result<Vec<SparseKeyVector>, CoordinatorError> {
        let id = request.domain;
        let d = self.domain(id)?;
        Self::status_error(id, d.status)?;
        if request.vectors.is_empty() {
            return Err(CoordinatorError::Empty("key request without vectors"));
        }
        request.check_expansion()?;
        let params = d.config.feip;
        let check = |v| SparseKeyVector::from_data(v, params.n(), params.y_bound());
        // Expanding placements is independent per vector; the first error in request order is
        // reported either way.
        Ok(if request.vectors.len() >= PARALLEL_DERIVE_MIN {
            request
                .vectors
                .par_iter()
                .map(check)
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?
        } else {
            request
                .vectors
                .iter()
                .map(check)
                .collect::<Result<Vec<_>, _>>()?
        })
    }

    /// Replays a batch's policy review without deriving or auditing anything: restores the
    /// policy state (issued rank) of a persisted authority
    /// ([`PersistentAuthority`](crate::coordinator::persistent::PersistentAuthority)). A batch
    /// the policy refuses changes nothing, as when it was first reviewed; a rotation the review
    /// caused is journaled (and replayed) on its own.
    ///
    /// # Errors
    /// Every error of [`validate_feip_request`](Self::validate_feip_request): only validated
    /// batches are journaled, so at replay anything else means a damaged journal.
    pub(crate) fn replay_feip_review(
        &mut self,
        request: &FeipKeyRequest,
    ) -> Result<(), CoordinatorError> {
        let vectors = self.validate_feip_request(request)?;
        let id = request.domain;
        let d = self
            .domains
            .get_mut(&id)
            .ok_or(CoordinatorError::UnknownDomain(id))?;
        let _ = d.policy.review(&vectors);
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
        self.check_feip_requester(request.domain, requester)?;
        let vectors = self.validate_feip_request(request)?;
        self.issue_validated_feip_keys(requester, request.domain, &vectors)
    }

    /// Refuses `requester` for FEIP keys of domain `id` unless the domain is unbound or binds
    /// it as a requester (checked before anything is journaled).
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownDomain`]; [`CoordinatorError::NotPermitted`].
    pub(crate) fn check_feip_requester(
        &self,
        id: DomainId,
        requester: &RequesterId,
    ) -> Result<(), CoordinatorError> {
        Self::check_requester(self.domain(id)?, id, requester)
    }

    /// [`issue_feip_keys`](Self::issue_feip_keys) for vectors that passed
    /// [`validate_feip_request`](Self::validate_feip_request) for domain `id`.
    pub(crate) fn issue_validated_feip_keys(
        &mut self,
        requester: &RequesterId,
        id: DomainId,
        vectors: &[SparseKeyVector],
    ) -> Result<FeipKeyResponse<G>, CoordinatorError> {
        let d = self.domain(id)?;
        Self::check_requester(d, id, requester)?;
        if d.noisy.is_some() {
            return Err(CoordinatorError::NoisyDomain(id));
        }
        let params = d.config.feip;
        // One clock reading per batch.
        let now = (self.clock)();
        self.review_batch(requester, id, vectors, now)?;
        let d = self
            .domains
            .get_mut(&id)
            .ok_or(CoordinatorError::UnknownDomain(id))?;
        d.plain_keys_issued = true;
        let d = self.domain(id)?;
        let secrets = self.secrets(id, d)?;
        // Each key and its audit record's key part (the vector's SHA-256) are independent of
        // the others: both are computed in parallel; only the appends (the hash chain) are
        // serial, and they are committed before any key is returned.
        let (audit, feip) = (&self.audit, &d.feip);
        let derive = |v: &SparseKeyVector| {
            feip.derive_key_sparse(&secrets.feip, v.terms())
                .map(|k| (k, audit.feip_key(v)))
        };
        let derived = if vectors.len() >= PARALLEL_DERIVE_MIN {
            vectors
                .par_iter()
                .map(derive)
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vectors.iter().map(derive).collect::<Result<Vec<_>, _>>()?
        };
        let (keys, audited): (Vec<_>, Vec<_>) = derived.into_iter().unzip();
        for key in audited {
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

    /// The domain policy's verdict on a batch of validated vectors: `Ok` on admission; on
    /// refusal or rotation the audit record (at time `now`) and the typed error.
    fn review_batch(
        &mut self,
        requester: &RequesterId,
        id: DomainId,
        vectors: &[SparseKeyVector],
        now: u64,
    ) -> Result<(), CoordinatorError> {
        let d = self
            .domains
            .get_mut(&id)
            .ok_or(CoordinatorError::UnknownDomain(id))?;
        match d.policy.review(vectors) {
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
        Ok(())
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
        Self::check_requester(d, id, requester)?;
        if request.items.is_empty() {
            return Err(CoordinatorError::Empty("FEBO key request without items"));
        }
        if let Some(index) = request.items.iter().position(|item| {
            d.registered
                .binary_search(&registry_entry(&commitment_digest(&item.commitment)))
                .is_err()
        }) {
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
        let secrets = self.secrets(id, d)?;
        let (Some(febo), Some(msk)) = (d.febo.as_ref(), secrets.febo.as_ref()) else {
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
