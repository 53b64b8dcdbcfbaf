//! [`SecureTrainingSession`]: one way to build a secure training run, for every driver
//! (`train_lenet`, `train`, `cryptonn server train`, `bench_report`, `leakage_report`, the
//! tests).
//!
//! A session holds the group, the cache directory and the server's discrete-log table size,
//! and composes the roles:
//!
//! ```text
//! in process:  Authority (seed + audit file in its own 0700 directory, never the cache)
//!              ── shard domains bound to (data owner, server) ──▶ data owner:
//!              sweep stale temporary files → encrypt or reuse the cached file
//!              → register the label ciphertexts' FEBO commitments
//!              ──▶ server: load + verify keys, dlog table, SecureFirstLayer ──▶ training
//! remote:      an encrypted dataset file + any KeyService (e.g. the gRPC client)
//!              ──▶ server: load + verify keys, dlog table, SecureFirstLayer ──▶ training
//! ```
//!
//! The data owner's plaintext enters only [`SecureTrainingSession::encrypt`] (through
//! [`EncodedSamples`]); the server side ([`SecureTrainingSession::server`]) takes a file and a
//! key service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand_core::{OsRng, RngCore};

use crate::coordinator::audit::{AuditConfig, AuditFileOptions, AuditFileSink, AuditLog};
use crate::coordinator::authority::Authority;
use crate::coordinator::key_service::{InProcessKeyService, KeyService, SharedAuthority};
use crate::coordinator::messages::{DomainAccess, DomainId, DomainPublicKey, RequesterId};
use crate::coordinator::secure_training::backend::{SecureFirstLayer, SecureStats};
use crate::coordinator::secure_training::encrypted_dataset::{
    create_feature_domains, create_shard_domains, encrypt_samples_or_reuse, sweep_stale_temp_files,
    EncodedSamples, EncryptedDataset, EncryptionParams, ShardPublicKeys, StaleTempFile,
};
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::coordinator::secure_training::geometry::FirstLayerGeometry;
use crate::coordinator::secure_training::registration::register_label_commitments;
use crate::fe::dlog::BabyStepTable;
use crate::fe::group::{GroupId, PrimeOrderGroup};
use crate::nn::first_layer::QuantConfig;

/// The default half-width of the server's baby-step table, `2^20`.
pub const DEFAULT_DLOG_HALF_WIDTH: u64 = 1 << 20;

/// The group's name in summaries (`ristretto`, `modp2048`, …).
#[must_use]
pub fn group_name(id: GroupId) -> &'static str {
    match id {
        GroupId::Ristretto255 => "ristretto",
        GroupId::Modp2048 => "modp2048",
        GroupId::Modp3072 => "modp3072",
        _ => "other",
    }
}

/// Builds the parts of a secure training run (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct SecureTrainingSession<G: PrimeOrderGroup> {
    group: G,
    cache_dir: PathBuf,
    dlog_half_width: u64,
    reencrypt: bool,
    requester: RequesterId,
    owner: RequesterId,
    authority_dir: PathBuf,
    continue_audit: bool,
}

/// An in-process authority whose master keys derive from a seed file in the authority's own
/// directory, auditing every issued key to a file there.
pub struct LocalAuthority<G: PrimeOrderGroup> {
    /// The authority, shared with the in-process key service.
    pub authority: SharedAuthority<G>,
    /// The audit file (overwritten by each run).
    pub audit_file: PathBuf,
}

/// What the data owner produced: the encrypted dataset file and how it came to be.
#[derive(Debug, Clone)]
pub struct EncryptedInput {
    /// The file.
    pub path: PathBuf,
    /// Whether a cached file was reused.
    pub reused: bool,
    /// Seconds spent encrypting (0 when reused).
    pub encrypt_seconds: f64,
    /// Seconds the authority took to create the shard domains.
    pub setup_seconds: f64,
    /// The shard domains.
    pub domains: Vec<DomainId>,
    /// Temporary files of interrupted earlier runs, removed, with their orphaned domains.
    pub stale_temp_files: Vec<StaleTempFile>,
}

impl EncryptedInput {
    /// Images per second of the encryption of `images` samples; `None` if the file was reused
    /// (or the time is not measurable).
    #[must_use]
    pub fn images_per_second(&self, images: usize) -> Option<f64> {
        (!self.reused && self.encrypt_seconds > 0.0).then(|| images as f64 / self.encrypt_seconds)
    }
}

/// What secure mode adds to a run's JSON summary (the keys of `train_lenet --mode secure`).
#[derive(Debug, Clone)]
pub struct SecureSummary {
    /// The group.
    pub group: GroupId,
    /// Seconds the data owner spent encrypting.
    pub encrypt_seconds: f64,
    /// Whether the encrypted dataset came from the cache.
    pub reused: bool,
    /// Bytes of ciphertext.
    pub ciphertext_bytes: usize,
    /// The server's counters and timings.
    pub stats: SecureStats,
    /// Seconds the authority took to create the shard domains.
    pub setup_seconds: f64,
    /// Audit records written, if this process can see the audit log.
    pub audit_records: Option<usize>,
    /// The audit file, or the authority that keeps it.
    pub audit_file: String,
}

impl SecureSummary {
    /// The summary's keys, in the order `train_lenet` writes them.
    #[must_use]
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let s = &self.stats;
        let mut extra = serde_json::Map::new();
        for (k, v) in [
            ("group", serde_json::json!(group_name(self.group))),
            ("encrypt_seconds", serde_json::json!(self.encrypt_seconds)),
            ("encrypted_dataset_reused", serde_json::json!(self.reused)),
            ("ciphertext_bytes", serde_json::json!(self.ciphertext_bytes)),
            ("key_requests", serde_json::json!(s.key_requests)),
            ("feip_keys", serde_json::json!(s.feip_keys)),
            ("febo_keys", serde_json::json!(s.febo_keys)),
            ("decryptions", serde_json::json!(s.decryptions)),
            ("dlog_seconds", serde_json::json!(s.dlog_seconds)),
            ("fe_seconds", serde_json::json!(s.fe_seconds)),
            ("key_seconds", serde_json::json!(s.key_seconds)),
            (
                "authority_setup_seconds",
                serde_json::json!(self.setup_seconds),
            ),
            ("audit_records", serde_json::json!(self.audit_records)),
            ("audit_file", serde_json::json!(self.audit_file)),
        ] {
            extra.insert(k.to_string(), v);
        }
        extra
    }
}

/// The JSON summary of a training run, as `examples/train.rs --json` writes it and the Python
/// binding's `train` returns it: the [`TrainReport`](crate::nn::train::TrainReport)'s keys, then
/// in secure mode the keys of [`SecureSummary::to_map`], then `model` (the spec's name) and
/// `dataset`.
///
/// # Errors
/// If the report does not serialise (it always does: it holds numbers and strings).
pub fn run_summary(
    report: &crate::nn::train::TrainReport,
    secure: Option<&SecureSummary>,
    model: &str,
    dataset: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, serde_json::Error> {
    let mut map = match serde_json::to_value(report)? {
        serde_json::Value::Object(map) => map,
        other => {
            let mut map = serde_json::Map::new();
            map.insert("report".into(), other);
            map
        }
    };
    if let Some(secure) = secure {
        map.extend(secure.to_map());
    }
    map.insert("model".into(), serde_json::json!(model));
    map.insert("dataset".into(), serde_json::json!(dataset));
    Ok(map)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecureTrainingError + '_ {
    move |source| SecureTrainingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl<G: PrimeOrderGroup> SecureTrainingSession<G> {
    /// A session over `group` that keeps its data files (encrypted datasets, discrete-log
    /// table) in `cache_dir`, and the in-process authority's secrets (master seed, audit log)
    /// apart from them, by default in the sibling directory `<cache_dir>-authority`
    /// ([`authority_dir`](Self::authority_dir) changes it).
    #[must_use]
    pub fn new(group: G, cache_dir: impl Into<PathBuf>) -> Self {
        let cache_dir: PathBuf = cache_dir.into();
        let mut name = cache_dir
            .file_name()
            .map(std::ffi::OsStr::to_os_string)
            .unwrap_or_else(|| "cache".into());
        name.push("-authority");
        let authority_dir = cache_dir.with_file_name(name);
        Self {
            group,
            cache_dir,
            dlog_half_width: DEFAULT_DLOG_HALF_WIDTH,
            reencrypt: false,
            requester: RequesterId::new("server"),
            owner: RequesterId::new("data-owner"),
            authority_dir,
            continue_audit: false,
        }
    }

    /// Continue the in-process authority's audit file instead of starting a new one (a resumed
    /// run: its records follow the interrupted run's, sequence numbers without a gap, the hash
    /// chain verified first). Without an existing file a new one is started.
    #[must_use]
    pub fn continue_audit(mut self, continue_audit: bool) -> Self {
        self.continue_audit = continue_audit;
        self
    }

    /// The in-process authority's own directory (created 0700; its files 0600). It must not
    /// be, contain or lie in the cache directory, which is handed to the server.
    #[must_use]
    pub fn authority_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.authority_dir = dir.into();
        self
    }

    /// The data owner's name towards an in-process authority (the owner of the shard domains).
    #[must_use]
    pub fn owner(mut self, owner: RequesterId) -> Self {
        self.owner = owner;
        self
    }

    /// The half-width of the server's baby-step table.
    #[must_use]
    pub fn dlog_half_width(mut self, half_width: u64) -> Self {
        self.dlog_half_width = half_width;
        self
    }

    /// Encrypt again even when the cache holds a current file.
    #[must_use]
    pub fn reencrypt(mut self, reencrypt: bool) -> Self {
        self.reencrypt = reencrypt;
        self
    }

    /// The server's name towards an in-process authority.
    #[must_use]
    pub fn requester(mut self, requester: RequesterId) -> Self {
        self.requester = requester;
        self
    }

    /// The data owner's name towards an in-process authority.
    #[must_use]
    pub fn owner_id(&self) -> &RequesterId {
        &self.owner
    }

    /// The group.
    #[must_use]
    pub fn group(&self) -> &G {
        &self.group
    }

    /// The cache directory.
    #[must_use]
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Refuses an authority directory that is, contains or lies in the cache directory.
    fn check_apart(&self) -> Result<(), SecureTrainingError> {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let (cache, auth) = (abs(&self.cache_dir), abs(&self.authority_dir));
        if cache.starts_with(&auth) || auth.starts_with(&cache) {
            return Err(SecureTrainingError::Parameters(format!(
                "the authority directory {} and the dataset cache {} must be apart (the cache \
                 is handed to the server; the authority's master seed must never be in it)",
                self.authority_dir.display(),
                self.cache_dir.display()
            )));
        }
        Ok(())
    }

    /// The authority's persistent secret: 32 random bytes in `authority-seed-gID.bin` (mode
    /// 0600) in the authority directory (mode 0700), from which its master keys derive (so a
    /// cached encrypted dataset stays decryptable across runs). Whoever reads this file holds
    /// every master key. A seed that older versions left in the dataset cache is moved there.
    ///
    /// # Errors
    /// [`SecureTrainingError::Io`]; [`SecureTrainingError::Parameters`] for directories that
    /// are not apart, a seed file that others may read, a malformed seed file, or two seeds.
    pub fn authority_seed(&self) -> Result<zeroize::Zeroizing<[u8; 32]>, SecureTrainingError> {
        self.check_apart()?;
        let gid = self.group.id().to_byte();
        let name = format!("authority-seed-g{gid}.bin");
        let path = self.authority_dir.join(&name);
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&self.authority_dir)
            .map_err(io(&self.authority_dir))?;
        let old = self.cache_dir.join(&name);
        if old.exists() {
            if path.exists() {
                return Err(SecureTrainingError::Parameters(format!(
                    "{} holds an authority seed from an older version, and {} holds another; \
                     delete the one in the dataset cache (and its encrypted datasets, or \
                     re-encrypt)",
                    old.display(),
                    path.display()
                )));
            }
            #[cfg(unix)]
            std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(io(&old))?;
            std::fs::rename(&old, &path).map_err(io(&path))?;
            let _ = std::fs::remove_file(self.cache_dir.join(format!("audit-g{gid}.cnnaudit")));
        }
        if path.exists() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path)
                    .map_err(io(&path))?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecureTrainingError::Parameters(format!(
                        "{}: mode {mode:o} lets others read the authority's master seed; \
                         chmod 600 it",
                        path.display()
                    )));
                }
            }
            let bytes = zeroize::Zeroizing::new(std::fs::read(&path).map_err(io(&path))?);
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            if bytes.len() != 32 {
                return Err(SecureTrainingError::Parameters(format!(
                    "{}: not a 32-byte seed",
                    path.display()
                )));
            }
            seed.copy_from_slice(&bytes);
            return Ok(seed);
        }
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut seed[..]);
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(io(&tmp))?;
            std::io::Write::write_all(&mut f, &seed[..]).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(seed)
    }

    /// An in-process authority from the seed file, auditing to `audit-gID.cnnaudit` (mode
    /// 0600) in the authority directory: a new file, or with
    /// [`continue_audit`](Self::continue_audit) the existing one continued.
    ///
    /// # Errors
    /// As [`authority_seed`](Self::authority_seed); the audit file's errors (a damaged file to
    /// continue is an error, never silently replaced).
    pub fn local_authority(&self) -> Result<LocalAuthority<G>, SecureTrainingError> {
        let seed = self.authority_seed()?;
        let gid = self.group.id().to_byte();
        let audit_file = self.authority_dir.join(format!("audit-g{gid}.cnnaudit"));
        let coordinator = crate::coordinator::error::CoordinatorError::from;
        let (sink, records) = if self.continue_audit && audit_file.exists() {
            let (sink, scan) =
                AuditFileSink::open_append(&audit_file, AuditFileOptions::default(), None)
                    .map_err(coordinator)?;
            (sink, scan.end.records)
        } else {
            let sink = AuditFileSink::create(&audit_file, AuditFileOptions::default())
                .map_err(coordinator)?;
            (sink, 0)
        };
        #[cfg(unix)]
        std::fs::set_permissions(
            &audit_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .map_err(io(&audit_file))?;
        let log = AuditLog::resume_with_sink(AuditConfig::default(), Box::new(sink), records);
        let authority = Authority::from_seed(self.group.clone(), *seed).with_audit_log(log);
        Ok(LocalAuthority {
            authority: Arc::new(Mutex::new(authority)),
            audit_file,
        })
    }

    /// The data owner's step: removes stale temporary files of interrupted runs, has the
    /// authority create the shard domains (and feature-major domains when the layout asks for
    /// them), each bound to the data owner and this session's server, encrypts `source` into
    /// the cache directory under `name` (or reuses a current cached file), and registers the
    /// label ciphertexts' FEBO commitments, the only ones the authority will issue FEBO keys
    /// for. Calls `progress(samples_done)`.
    ///
    /// # Errors
    /// The authority's, the encryption's and I/O errors.
    pub fn encrypt(
        &self,
        authority: &SharedAuthority<G>,
        name: &str,
        source: &dyn EncodedSamples,
        params: &EncryptionParams,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<EncryptedInput, SecureTrainingError> {
        let stale_temp_files = sweep_stale_temp_files(&self.cache_dir)?;
        let t = Instant::now();
        let (domains, pks, feature_pks) = {
            let mut a = authority
                .lock()
                .map_err(|_| SecureTrainingError::Parameters("authority lock poisoned".into()))?;
            let access = DomainAccess::new(self.owner.clone(), self.requester.clone());
            let domains = create_shard_domains(&mut a, source.len(), params, &access)?;
            let features = create_feature_domains(&mut a, source.len(), params, &access)?;
            // The shard keys are fetched window by window while encrypting (memory flat in the
            // number of shards); only their digests now, for the file's header.
            let sha256 = domains
                .iter()
                .map(|d| a.public_key_sha256(*d))
                .collect::<Result<Vec<_>, _>>()?;
            let pks = AuthorityShardKeys {
                authority,
                domains: domains.clone(),
                sha256,
            };
            let pk = |d: &DomainId| a.public_key(*d);
            let feature_pks = features.iter().map(pk).collect::<Result<Vec<_>, _>>()?;
            (domains, pks, feature_pks)
        };
        let setup_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (path, reused) = encrypt_samples_or_reuse(
            &self.group,
            &self.cache_dir,
            name,
            source,
            &pks,
            &feature_pks,
            params,
            self.reencrypt,
            progress,
        )?;
        let encrypt_seconds = if reused {
            0.0
        } else {
            t.elapsed().as_secs_f64()
        };
        // The data owner registers the commitments of its label ciphertexts (read back from
        // the file, so a reused file is registered too).
        let data = EncryptedDataset::load(self.group.clone(), &path)?;
        let owner = InProcessKeyService::new(Arc::clone(authority), self.owner.clone());
        register_label_commitments(&data, &owner)?;
        drop(data);
        Ok(EncryptedInput {
            path,
            reused,
            encrypt_seconds,
            setup_seconds,
            domains,
            stale_temp_files,
        })
    }

    /// The server's discrete-log table (cached in the cache directory).
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for an unusable half-width; cache I/O errors.
    pub fn dlog_table(&self) -> Result<Arc<BabyStepTable<G>>, SecureTrainingError> {
        BabyStepTable::load_or_build(self.group.clone(), self.dlog_half_width, &self.cache_dir)
            .map(Arc::new)
            .map_err(|e| {
                SecureTrainingError::Parameters(format!(
                    "discrete-log table (half-width {}) in {}: {e}",
                    self.dlog_half_width,
                    self.cache_dir.display()
                ))
            })
    }

    /// An in-process key service of `authority` for this session's server.
    #[must_use]
    pub fn in_process_keys(&self, authority: &SharedAuthority<G>) -> InProcessKeyService<G> {
        InProcessKeyService::new(Arc::clone(authority), self.requester.clone())
    }

    /// The server's step: loads the encrypted dataset `path` (integrity checks), checks its
    /// shard keys against `keys`, and builds the secure first layer `geometry` with `table`.
    ///
    /// # Errors
    /// The dataset's load errors, [`SecureTrainingError::WrongKey`], and the backend's
    /// parameter checks.
    pub fn server<K: KeyService<G>>(
        &self,
        keys: K,
        path: &Path,
        table: Arc<BabyStepTable<G>>,
        quant: QuantConfig,
        geometry: FirstLayerGeometry,
    ) -> Result<SecureFirstLayer<G, K>, SecureTrainingError> {
        let data = EncryptedDataset::load(self.group.clone(), path)?;
        self.server_with_dataset(keys, data, table, quant, geometry)
    }

    /// [`server`](Self::server) over an already loaded dataset.
    ///
    /// # Errors
    /// As [`server`](Self::server).
    pub fn server_with_dataset<K: KeyService<G>>(
        &self,
        keys: K,
        data: EncryptedDataset<G>,
        table: Arc<BabyStepTable<G>>,
        quant: QuantConfig,
        geometry: FirstLayerGeometry,
    ) -> Result<SecureFirstLayer<G, K>, SecureTrainingError> {
        SecureFirstLayer::with_geometry(data, keys, table, quant, geometry)
    }
}

/// The shard keys of an encryption, fetched from the in-process authority one at a time (see
/// [`ShardPublicKeys`]); the digests were read when the domains were created.
struct AuthorityShardKeys<'a, G: PrimeOrderGroup> {
    authority: &'a SharedAuthority<G>,
    domains: Vec<DomainId>,
    sha256: Vec<[u8; 32]>,
}

impl<G: PrimeOrderGroup> ShardPublicKeys<G> for AuthorityShardKeys<'_, G> {
    fn len(&self) -> usize {
        self.domains.len()
    }
    fn domain(&self, k: usize) -> DomainId {
        self.domains[k]
    }
    fn sha256(&self, _group: &G, k: usize) -> Result<[u8; 32], SecureTrainingError> {
        Ok(self.sha256[k])
    }
    fn public_key(
        &self,
        k: usize,
    ) -> Result<std::borrow::Cow<'_, DomainPublicKey<G>>, SecureTrainingError> {
        let a = self
            .authority
            .lock()
            .map_err(|_| SecureTrainingError::Parameters("authority lock poisoned".into()))?;
        Ok(std::borrow::Cow::Owned(a.public_key(self.domains[k])?))
    }
}
