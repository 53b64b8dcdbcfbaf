//! An authority whose state survives a restart: [`PersistentAuthority`].
//!
//! Everything the authority knows follows from three files in its state directory (mode 0700):
//!
//! - `master-seed` (mode 0600): `"CNNSEED1" ‖ group id ‖ 32 random bytes`. Every master secret
//!   key is drawn from a ChaCha20 stream seeded with these bytes, in the order the domains were
//!   created, so whoever reads this file holds every master secret key: it never leaves the
//!   authority's machine, and [`PersistentAuthority::open`] refuses a file that group or others
//!   may read.
//! - `domains.journal`: JSON lines, one per state change, each `fsync`'d before the operation
//!   returns: domain creation (parameters and policy), rotation, closing, and — for domains
//!   whose policy tracks the rank of the issued key vectors — every reviewed key batch (written
//!   *before* the keys are derived, so that a crash can only make the restored rank higher than
//!   the keys actually handed out, never lower). A torn last line is dropped at restart.
//! - `audit.cnnaudit`: the [audit file](crate::coordinator::audit), append-only, `fsync`'d at
//!   every commit (before any key of a request is returned).
//!
//! Restoring ([`PersistentAuthority::open`] on an existing directory) re-seeds the generator and
//! replays the journal: domain `i` gets the same master key pair, the same policy prime and the
//! same policy history as before, so ciphertexts made before the restart decrypt with keys
//! issued after it, and no domain starts afresh. The audit file is reopened and continues at
//! the next sequence number.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::coordinator::audit::{
    AuditConfig, AuditError, AuditFileOptions, AuditFileSink, AuditLog,
};
use crate::coordinator::authority::{Authority, DomainConfig};
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::messages::{
    commitment_digest, DomainAccess, DomainId, DomainPublicKey, FeboCommitmentRegistration,
    FeboKeyRequest, FeboKeyResponse, FeipKeyRequest, FeipKeyResponse, KeyVectorData, RequesterId,
};
use crate::coordinator::policy::PolicyConfig;
use crate::fe::febo::FeboParams;
use crate::fe::feip::FeipParams;
use crate::fe::group::PrimeOrderGroup;

/// File name of the master seed in the state directory.
pub const SEED_FILE: &str = "master-seed";
/// File name of the domain journal.
pub const JOURNAL_FILE: &str = "domains.journal";
/// File name of the audit log.
pub const AUDIT_FILE: &str = "audit.cnnaudit";

const SEED_MAGIC: &[u8; 8] = b"CNNSEED1";

/// Why the authority's state could not be created, restored or extended.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StateError {
    /// A state file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A state file is damaged or belongs to something else.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The master seed may be read by group or others.
    #[error("{path}: mode {mode:o} lets others read the master seed; chmod 600 it")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The audit log could not be reopened.
    #[error("{path}: {source}")]
    Audit {
        /// The audit file.
        path: PathBuf,
        /// The cause.
        source: AuditError,
    },
    /// Replaying the journal failed (a journal that does not fit this build or group).
    #[error("replaying {path}: {source}")]
    Replay {
        /// The journal.
        path: PathBuf,
        /// The cause.
        source: CoordinatorError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One line of the domain journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum JournalEntry {
    Create {
        domain: u64,
        n: usize,
        x_bound: u64,
        y_bound: u64,
        febo: Option<(u64, u64)>,
        policy: PolicyConfig,
        /// Who may use the domain (absent in journals written before domains were bound).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access: Option<DomainAccess>,
    },
    Rotate {
        domain: u64,
    },
    Close {
        domain: u64,
    },
    Review {
        domain: u64,
        vectors: Vec<KeyVectorData>,
    },
    /// FEBO commitments registered by the domain's owner: their digests
    /// ([`commitment_digest`]), hex, concatenated.
    Register {
        domain: u64,
        digests: String,
    },
}

/// Options of a [`PersistentAuthority`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateOptions {
    /// What the audit log keeps (used when the log is created; a reopened log keeps its own).
    pub audit: AuditConfig,
    /// `fsync` the journal and the audit log at every change (default: true).
    pub fsync: bool,
}

impl Default for StateOptions {
    fn default() -> Self {
        Self {
            audit: AuditConfig::default(),
            fsync: true,
        }
    }
}

/// An [`Authority`] that journals its state to a directory (see the [module docs](self)).
pub struct PersistentAuthority<G: PrimeOrderGroup> {
    authority: Authority<G>,
    dir: PathBuf,
    journal: File,
    fsync: bool,
    /// Set when a journal write failed: memory and disk may disagree, so nothing more is done.
    broken: bool,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for PersistentAuthority<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentAuthority")
            .field("dir", &self.dir)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(io(dir))
}

fn write_seed(path: &Path, group_id: u8, seed: &[u8; 32]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(41));
    bytes.extend_from_slice(SEED_MAGIC);
    bytes.push(group_id);
    bytes.extend_from_slice(seed);
    f.write_all(&bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn read_seed(path: &Path, group_id: u8) -> Result<Zeroizing<[u8; 32]>, StateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StateError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(io(path))?);
    let corrupt = |reason: &str| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if bytes.len() != 41 || &bytes[..8] != SEED_MAGIC {
        return Err(corrupt("not a cryptonn master seed file"));
    }
    if bytes[8] != group_id {
        return Err(corrupt(&format!(
            "the seed is for group id {}, this authority runs group id {group_id}",
            bytes[8]
        )));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&bytes[9..]);
    Ok(seed)
}

/// Reads the journal's complete lines; a torn last line (no newline) is cut off.
fn read_journal(path: &Path) -> Result<Vec<JournalEntry>, StateError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut good_end = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io(path))?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        let entry = serde_json::from_str(line.trim_end()).map_err(|e| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("entry {}: {e}", entries.len() + 1),
        })?;
        entries.push(entry);
        good_end += n as u64;
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    if file.metadata().map_err(io(path))?.len() != good_end {
        file.set_len(good_end).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
    }
    Ok(entries)
}

impl<G: PrimeOrderGroup> PersistentAuthority<G> {
    /// Opens the state in `dir`: restores it if `dir` holds one, else creates a fresh authority
    /// there with a master seed from the operating system's RNG.
    ///
    /// # Errors
    /// [`StateError`] naming the file at fault: unreadable or damaged files, a master seed
    /// readable by others or made for another group, a journal that does not replay.
    pub fn open(group: G, dir: &Path, options: StateOptions) -> Result<Self, StateError> {
        create_private_dir(dir)?;
        let gid = group.id().to_byte();
        let seed_path = dir.join(SEED_FILE);
        let journal_path = dir.join(JOURNAL_FILE);
        let audit_path = dir.join(AUDIT_FILE);
        if !seed_path.exists() {
            // A fresh seed would make every old journal and audit entry meaningless.
            for p in [&journal_path, &audit_path] {
                if p.exists() {
                    return Err(StateError::Corrupt {
                        path: p.to_path_buf(),
                        reason: format!("exists without {SEED_FILE}; refusing to start afresh"),
                    });
                }
            }
            let mut seed = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(&mut seed[..]);
            write_seed(&seed_path, gid, &seed)?;
        }
        let seed = read_seed(&seed_path, gid)?;
        let entries = read_journal(&journal_path)?;
        let audit = if audit_path.exists() {
            let (sink, records) = AuditFileSink::open_append(
                &audit_path,
                AuditFileOptions {
                    fsync: options.fsync,
                },
            )
            .map_err(|source| StateError::Audit {
                path: audit_path.clone(),
                source,
            })?;
            AuditLog::resume_with_sink(options.audit, Box::new(sink), records)
        } else {
            let sink = AuditFileSink::create(
                &audit_path,
                AuditFileOptions {
                    fsync: options.fsync,
                },
            )
            .map_err(|source| StateError::Audit {
                path: audit_path.clone(),
                source,
            })?;
            AuditLog::with_sink(options.audit, Box::new(sink))
        };
        let mut authority = Authority::from_seed(group, *seed);
        let replay_err = |source| StateError::Replay {
            path: journal_path.clone(),
            source,
        };
        for entry in entries {
            replay(&mut authority, entry).map_err(replay_err)?;
        }
        let authority = authority.with_audit_log(audit);
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io(&journal_path))?;
        // The journal and the audit log stay private to the authority, like the seed.
        #[cfg(unix)]
        for p in [&journal_path, &audit_path] {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(p, fs::Permissions::from_mode(0o600)).map_err(io(p))?;
        }
        if options.fsync {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(Self {
            authority,
            dir: dir.to_path_buf(),
            journal,
            fsync: options.fsync,
            broken: false,
        })
    }

    /// The state directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the audit file.
    #[must_use]
    pub fn audit_path(&self) -> PathBuf {
        self.dir.join(AUDIT_FILE)
    }

    /// The authority (read-only: every change goes through the journaling methods).
    #[must_use]
    pub fn authority(&self) -> &Authority<G> {
        &self.authority
    }

    fn append(&mut self, entry: &JournalEntry) -> Result<(), CoordinatorError> {
        let path = self.dir.join(JOURNAL_FILE);
        let result = (|| {
            let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
            line.push(b'\n');
            self.journal.write_all(&line)?;
            if self.fsync {
                self.journal.sync_data()?;
            }
            Ok::<(), std::io::Error>(())
        })();
        result.map_err(|e| {
            self.broken = true;
            CoordinatorError::Audit(AuditError::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            )))
        })
    }

    fn check(&self) -> Result<(), CoordinatorError> {
        if self.broken {
            return Err(CoordinatorError::AuthorityUnavailable);
        }
        Ok(())
    }

    /// Creates a domain under the default policy configured in `config.policy`, journaled.
    ///
    /// # Errors
    /// As [`Authority::create_domain`]; [`CoordinatorError::Audit`] if the journal cannot be
    /// written (the authority then refuses every further request until restarted).
    pub fn create_domain(&mut self, config: DomainConfig) -> Result<DomainId, CoordinatorError> {
        self.check()?;
        let id = self.authority.create_domain(config)?;
        self.append(&create_entry(id, &config, None))?;
        Ok(id)
    }

    /// Creates a domain bound to `access` ([`Authority::create_domain_for`]), journaled with
    /// its binding.
    ///
    /// # Errors
    /// As [`Authority::create_domain_for`] and [`create_domain`](Self::create_domain).
    pub fn create_domain_for(
        &mut self,
        config: DomainConfig,
        access: DomainAccess,
    ) -> Result<DomainId, CoordinatorError> {
        self.check()?;
        let id = self.authority.create_domain_for(config, access.clone())?;
        self.append(&create_entry(id, &config, Some(access)))?;
        Ok(id)
    }

    /// Registers FEBO commitments ([`Authority::register_febo_commitments`]), journaled (as
    /// digests) after they are validated.
    ///
    /// # Errors
    /// As [`Authority::register_febo_commitments`] and [`create_domain`](Self::create_domain).
    pub fn register_febo_commitments(
        &mut self,
        registrant: &RequesterId,
        registration: &FeboCommitmentRegistration,
    ) -> Result<usize, CoordinatorError> {
        self.check()?;
        let new = self
            .authority
            .register_febo_commitments(registrant, registration)?;
        if new == 0 {
            return Ok(0);
        }
        let mut digests = String::with_capacity(64 * registration.commitments.len());
        for c in &registration.commitments {
            for b in commitment_digest(c) {
                digests.push_str(&format!("{b:02x}"));
            }
        }
        self.append(&JournalEntry::Register {
            domain: registration.domain.0,
            digests,
        })?;
        Ok(new)
    }

    /// Rotates a domain, journaled.
    ///
    /// # Errors
    /// As [`Authority::rotate`] and [`create_domain`](Self::create_domain).
    pub fn rotate(&mut self, id: DomainId) -> Result<DomainId, CoordinatorError> {
        self.check()?;
        let successor = self.authority.rotate(id)?;
        self.append(&JournalEntry::Rotate { domain: id.0 })?;
        Ok(successor)
    }

    /// Closes a domain, journaled.
    ///
    /// # Errors
    /// As [`Authority::close_domain`] and [`create_domain`](Self::create_domain).
    pub fn close_domain(&mut self, id: DomainId) -> Result<(), CoordinatorError> {
        self.check()?;
        self.authority.close_domain(id)?;
        self.append(&JournalEntry::Close { domain: id.0 })
    }

    /// The public key of an active domain.
    ///
    /// # Errors
    /// As [`Authority::public_key`].
    pub fn public_key(&self, id: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError> {
        self.authority.public_key(id)
    }

    /// Issues FEIP keys as [`Authority::issue_feip_keys`]; for a domain whose policy tracks the
    /// rank, the batch is journaled before it is reviewed.
    ///
    /// # Errors
    /// As [`Authority::issue_feip_keys`] and [`create_domain`](Self::create_domain).
    pub fn issue_feip_keys(
        &mut self,
        requester: &RequesterId,
        request: &FeipKeyRequest,
    ) -> Result<FeipKeyResponse<G>, CoordinatorError> {
        self.check()?;
        if self.authority.issued_rank(request.domain)?.is_some()
            && self.authority.status(request.domain)? == crate::coordinator::DomainStatus::Active
        {
            self.append(&JournalEntry::Review {
                domain: request.domain.0,
                vectors: request.vectors.clone(),
            })?;
        }
        self.authority.issue_feip_keys(requester, request)
    }

    /// Issues FEBO keys as [`Authority::issue_febo_keys`] (no policy state to journal).
    ///
    /// # Errors
    /// As [`Authority::issue_febo_keys`].
    pub fn issue_febo_keys(
        &mut self,
        requester: &RequesterId,
        request: &FeboKeyRequest,
    ) -> Result<FeboKeyResponse<G>, CoordinatorError> {
        self.check()?;
        self.authority.issue_febo_keys(requester, request)
    }
}

fn create_entry(id: DomainId, config: &DomainConfig, access: Option<DomainAccess>) -> JournalEntry {
    JournalEntry::Create {
        domain: id.0,
        n: config.feip.n(),
        x_bound: config.feip.x_bound(),
        y_bound: config.feip.y_bound(),
        febo: config.febo.map(|f| (f.x_bound(), f.y_bound())),
        policy: config.policy,
        access,
    }
}

/// The digests of a journal's `Register` entry.
fn parse_digests(hex: &str) -> Result<Vec<[u8; 32]>, CoordinatorError> {
    let bad = CoordinatorError::InvalidConfig("a registration entry holds malformed digests");
    if !hex.len().is_multiple_of(64) || !hex.is_ascii() {
        return Err(bad);
    }
    hex.as_bytes()
        .chunks(64)
        .map(|chunk| {
            let mut d = [0u8; 32];
            for (i, pair) in chunk.chunks(2).enumerate() {
                let text = std::str::from_utf8(pair).map_err(|_| {
                    CoordinatorError::InvalidConfig("a registration entry holds malformed digests")
                })?;
                d[i] = u8::from_str_radix(text, 16).map_err(|_| {
                    CoordinatorError::InvalidConfig("a registration entry holds malformed digests")
                })?;
            }
            Ok(d)
        })
        .collect()
}

fn replay<G: PrimeOrderGroup>(
    authority: &mut Authority<G>,
    entry: JournalEntry,
) -> Result<(), CoordinatorError> {
    match entry {
        JournalEntry::Create {
            domain,
            n,
            x_bound,
            y_bound,
            febo,
            policy,
            access,
        } => {
            let mut config =
                DomainConfig::new(FeipParams::new(n, x_bound, y_bound)?).with_policy(policy);
            if let Some((x, y)) = febo {
                config = config.with_febo(FeboParams::new(x, y)?);
            }
            let id = authority.create_domain(config)?;
            if id.0 != domain {
                return Err(CoordinatorError::InvalidConfig(
                    "the journal's domain ids do not follow the order of creation",
                ));
            }
            if let Some(access) = access {
                authority.bind(id, access);
            }
        }
        JournalEntry::Register { domain, digests } => {
            authority.insert_registered(DomainId(domain), parse_digests(&digests)?);
        }
        JournalEntry::Rotate { domain } => {
            authority.rotate(DomainId(domain))?;
        }
        JournalEntry::Close { domain } => authority.close_domain(DomainId(domain))?,
        JournalEntry::Review { domain, vectors } => {
            authority.replay_feip_review(&FeipKeyRequest {
                domain: DomainId(domain),
                vectors,
            })?;
        }
    }
    Ok(())
}
