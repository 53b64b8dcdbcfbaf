//! An authority whose state survives a restart, and notices when its state was damaged:
//! [`PersistentAuthority`].
//!
//! Everything the authority knows follows from four files in its state directory (mode 0700):
//!
//! - `master-seed` (mode 0600): `"CNNSEED1" ‖ group id ‖ 32 random bytes`. Every domain's
//!   master secret key is derived from these bytes, the domain id and its key epoch
//!   (see [the authority](crate::coordinator::authority#key-derivation-and-forward-secrecy)), so
//!   whoever reads this file holds every master secret key: it never leaves the authority's
//!   machine, and [`PersistentAuthority::open`] refuses a file that group or others may read.
//! - `state.head` (mode 0600), beside the seed: the seed's fingerprint, the domain-id
//!   high-water mark, and where the hash chains of the journal and the audit file end (two
//!   checksummed slots written alternately, so that a torn write leaves the older one). It is rewritten after every change, before the change's answer returns.
//! - `domains.journal`: hash-chained JSON lines, one per state change ([format](journal)),
//!   each `fsync`'d before the operation returns: domain creation, rotation, closing, and — for
//!   domains whose policy tracks the rank of the issued key vectors — every *validated* key
//!   batch before it is reviewed; for noisy domains, their sigma, the registered `ct0` digests,
//!   the privacy budget and, after every noisy key batch and before its keys are returned, the
//!   privacy ledger entries it changed. Nothing that failed validation is ever written.
//! - `audit.cnnaudit`: the hash-chained [audit file](crate::coordinator::audit::file),
//!   append-only, `fsync`'d at every commit (before any key of a request is returned).
//!
//! # Restoring and verifying
//! [`PersistentAuthority::open`] on an existing directory checks the seed against the head's
//! fingerprint, verifies both chains from their first byte, and requires each to pass through
//! the position the head records. It then replays the journal: domain `d` gets the same master
//! key pair, the same policy prime and the same policy history as before, so ciphertexts made
//! before the restart decrypt with keys issued after it. Domain ids continue above the
//! high-water mark, and domains created from now on use a fresh random key epoch.
//!
//! - A last journal line or audit entry cut short (a write torn by a crash, never
//!   acknowledged) is removed and reported in [`PersistentAuthority::restore_report`]; so are
//!   complete entries written after the head's position (a crash between the write and the
//!   head's update).
//! - Anything else fails with a [`StateError`] naming the file and the byte offset: a flipped
//!   bit (the chain breaks, or the head's slot checksum fails), missing records (a file shorter
//!   than its head says), a deleted journal or audit file while the head records entries, a
//!   deleted head, a seed that does not match the head, or a journal entry that does not
//!   replay (it names the line).
//!
//! With `fsync` off ([`StateOptions::fsync`]) a crash of the machine may leave the files
//! behind the head; the authority then refuses to start rather than guess.

mod head;
pub mod journal;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::coordinator::accountant::{Granularity, PrivacyBudget, SampleLoss};
use crate::coordinator::audit::{
    AuditChain, AuditConfig, AuditError, AuditFileOptions, AuditFileSink, AuditLog,
};
use crate::coordinator::authority::{
    Authority, DomainConfig, DomainFactory, NoiseConfig, PreparedDomain,
};
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::messages::{
    commitment_digest, DomainAccess, DomainId, DomainPublicKey, FeboCommitmentRegistration,
    FeboKeyRequest, FeboKeyResponse, FeipKeyRequest, FeipKeyResponse, NoisyCiphertextRegistration,
    NoisyKeyRequest, NoisyKeyResponse, RequesterId, SparseKeyVector,
};
use crate::fe::discrete_gaussian::DiscreteGaussian;
use crate::fe::febo::FeboParams;
use crate::fe::feip::FeipParams;
use crate::fe::group::PrimeOrderGroup;
use head::{seed_fingerprint, HeadError, HeadFile, StateHead};
use journal::{encode_line, parse_journal, JournalChain, JournalEntry, LedgerEntry};

/// File name of the master seed in the state directory.
pub const SEED_FILE: &str = "master-seed";
/// File name of the state head.
pub const HEAD_FILE: &str = "state.head";
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
    /// A state file is damaged at a known place.
    #[error("{path}: damaged at byte offset {offset}: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
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
    /// The audit log could not be reopened (the error names the offset).
    #[error("{path}: {source}")]
    Audit {
        /// The audit file.
        path: PathBuf,
        /// The cause.
        source: AuditError,
    },
    /// A journal entry does not replay.
    #[error("replaying {path} line {line} (byte offset {offset}): {source}")]
    Replay {
        /// The journal.
        path: PathBuf,
        /// The line (1-based).
        line: u64,
        /// Its first byte.
        offset: u64,
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

/// Options of a [`PersistentAuthority`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateOptions {
    /// What the audit log keeps (used when the log is created; a reopened log keeps its own).
    pub audit: AuditConfig,
    /// `fsync` the journal, the head and the audit log at every change (default: true).
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

/// What [`PersistentAuthority::open`] repaired or noticed (all zero for a clean state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreReport {
    /// True if the state was created by this call.
    pub created: bool,
    /// Bytes of a torn last journal line that were cut off.
    pub journal_torn_bytes: u64,
    /// Bytes of a torn last audit entry that were cut off.
    pub audit_torn_bytes: u64,
    /// Complete journal lines found after the head's position (kept).
    pub journal_unrecorded: u64,
    /// Complete audit records found after the head's position (kept).
    pub audit_unrecorded: u64,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.created {
            return write!(f, "new state");
        }
        let mut parts = Vec::new();
        if self.journal_torn_bytes > 0 {
            parts.push(format!(
                "cut a torn last journal line ({} bytes)",
                self.journal_torn_bytes
            ));
        }
        if self.audit_torn_bytes > 0 {
            parts.push(format!(
                "cut a torn last audit entry ({} bytes)",
                self.audit_torn_bytes
            ));
        }
        if self.journal_unrecorded > 0 {
            parts.push(format!(
                "kept {} journal line(s) written after the last head update",
                self.journal_unrecorded
            ));
        }
        if self.audit_unrecorded > 0 {
            parts.push(format!(
                "kept {} audit record(s) written after the last head update",
                self.audit_unrecorded
            ));
        }
        if parts.is_empty() {
            write!(f, "state verified")
        } else {
            write!(f, "state verified; {}", parts.join("; "))
        }
    }
}

/// An [`Authority`] that journals its state to a directory (see the [module docs](self)).
pub struct PersistentAuthority<G: PrimeOrderGroup> {
    authority: Authority<G>,
    dir: PathBuf,
    journal: File,
    journal_chain: JournalChain,
    head: HeadFile,
    fsync: bool,
    report: RestoreReport,
    /// Set when a journal or head write failed: memory and disk may disagree, so nothing more
    /// is done.
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

/// Domains whose ids are reserved (and persisted as the high-water mark) but whose keys are
/// not yet derived: [`prepare`](Self::prepare) them without holding the authority, then
/// [`PersistentAuthority::finish_create_domains`].
pub struct PendingDomains<G: PrimeOrderGroup> {
    factory: DomainFactory<G>,
    first: u64,
    count: u64,
    config: DomainConfig,
    access: Option<DomainAccess>,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for PendingDomains<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDomains")
            .field("first", &self.first)
            .field("count", &self.count)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Domains whose keys are derived, ready to be journaled and installed.
pub struct PreparedDomains<G: PrimeOrderGroup> {
    epoch: u64,
    config: DomainConfig,
    access: Option<DomainAccess>,
    domains: Vec<PreparedDomain<G>>,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for PreparedDomains<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedDomains")
            .field("count", &self.domains.len())
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup> PendingDomains<G> {
    /// Derives every domain's keys (`n` fixed-base exponentiations each, in parallel): the
    /// expensive part of domain creation, which touches no shared state.
    #[must_use]
    pub fn prepare(self) -> PreparedDomains<G> {
        use rayon::prelude::*;
        let domains = (self.first..self.first + self.count)
            .into_par_iter()
            .map(|id| self.factory.prepare(DomainId(id), self.config, None))
            .collect();
        PreparedDomains {
            epoch: self.factory.epoch(),
            config: self.config,
            access: self.access,
            domains,
        }
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

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The initial audit chain of a new file.
fn new_audit(path: &Path, options: &StateOptions) -> Result<AuditLog, StateError> {
    let sink = AuditFileSink::create(
        path,
        AuditFileOptions {
            fsync: options.fsync,
        },
    )
    .map_err(|source| StateError::Audit {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(AuditLog::with_sink(options.audit, Box::new(sink)))
}

impl<G: PrimeOrderGroup> PersistentAuthority<G> {
    /// Opens the state in `dir`: restores and verifies it if `dir` holds one (see the
    /// [module docs](self)), else creates a fresh authority there with a master seed from the
    /// operating system's RNG.
    ///
    /// # Errors
    /// [`StateError`] naming the file at fault (and the byte offset, for damage inside a file):
    /// unreadable or damaged files, a master seed readable by others or made for another
    /// group, missing files or records, a journal that does not replay.
    pub fn open(group: G, dir: &Path, options: StateOptions) -> Result<Self, StateError> {
        create_private_dir(dir)?;
        let gid = group.id().to_byte();
        let seed_path = dir.join(SEED_FILE);
        let head_path = dir.join(HEAD_FILE);
        let journal_path = dir.join(JOURNAL_FILE);
        let audit_path = dir.join(AUDIT_FILE);
        if !seed_path.exists() {
            return Self::create(group, dir, options);
        }
        let seed = read_seed(&seed_path, gid)?;
        let fingerprint = seed_fingerprint(gid, &seed);
        let head = match HeadFile::open(&head_path, options.fsync) {
            Ok(h) => h,
            Err(HeadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::Corrupt {
                    path: head_path,
                    reason: format!(
                        "missing: the state was written by an older cryptonn (state format 1, \
                         no hash chains) or the head was deleted; this build refuses to guess \
                         where {JOURNAL_FILE} and {AUDIT_FILE} end"
                    ),
                })
            }
            Err(HeadError::Io(e)) => return Err(io(&head_path)(e)),
            Err(HeadError::NoValidSlot) => {
                return Err(StateError::Damaged {
                    path: head_path,
                    offset: 0,
                    reason: "neither head slot is valid (magic or checksum)".into(),
                })
            }
        };
        let recorded = *head.head();
        if recorded.seed_fingerprint != fingerprint {
            return Err(StateError::Corrupt {
                path: seed_path,
                reason: format!(
                    "does not match the fingerprint kept in {HEAD_FILE} (damaged or replaced seed)"
                ),
            });
        }
        let mut report = RestoreReport::default();

        // 1. The journal: verify (nothing is changed before everything is verified).
        let journal_bytes = match fs::read(&journal_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if recorded.journal.entries > 0 {
                    return Err(StateError::Corrupt {
                        path: journal_path,
                        reason: format!(
                            "missing, while {HEAD_FILE} records {} entries ({} bytes)",
                            recorded.journal.entries, recorded.journal.bytes
                        ),
                    });
                }
                Vec::new()
            }
            Err(e) => return Err(io(&journal_path)(e)),
        };
        let damaged = |path: &Path, offset: u64, reason: String| StateError::Damaged {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        let scan = parse_journal(
            &journal_bytes,
            journal::genesis(&fingerprint),
            Some(recorded.journal.bytes),
        )
        .map_err(|d| damaged(&journal_path, d.offset, d.to_string()))?;
        if scan.end.bytes < recorded.journal.bytes {
            return Err(damaged(
                &journal_path,
                scan.end.bytes,
                format!(
                    "the journal ends after {} entries, {HEAD_FILE} records {} (entries lost)",
                    scan.end.entries, recorded.journal.entries
                ),
            ));
        }
        if scan.checkpoint != Some(recorded.journal) {
            return Err(damaged(
                &journal_path,
                recorded.journal.bytes,
                format!("the hash chain does not pass through the position {HEAD_FILE} records"),
            ));
        }
        report.journal_torn_bytes = scan.torn;
        report.journal_unrecorded = scan.end.entries - recorded.journal.entries;

        // 2. The audit file: verify against the head and cut a torn tail.
        let audit_options = AuditFileOptions {
            fsync: options.fsync,
        };
        let audit = if audit_path.exists() {
            let (sink, audit_scan) =
                AuditFileSink::open_append(&audit_path, audit_options, Some(recorded.audit))
                    .map_err(|source| StateError::Audit {
                        path: audit_path.clone(),
                        source,
                    })?;
            report.audit_torn_bytes = audit_scan.file_len - audit_scan.end.bytes;
            report.audit_unrecorded = audit_scan.end.records - recorded.audit.records;
            AuditLog::resume_with_sink(options.audit, Box::new(sink), audit_scan.end.records)
        } else if recorded.audit.records == 0 {
            new_audit(&audit_path, &options)?
        } else {
            return Err(StateError::Corrupt {
                path: audit_path,
                reason: format!(
                    "missing, while {HEAD_FILE} records {} audit records",
                    recorded.audit.records
                ),
            });
        };

        // 3. Replay.
        let mut authority = Authority::from_seed(group, *seed);
        for (i, (offset, entry)) in scan.entries.into_iter().enumerate() {
            replay(&mut authority, entry).map_err(|source| StateError::Replay {
                path: journal_path.clone(),
                line: i as u64 + 1,
                offset,
                source,
            })?;
        }
        authority.raise_next_id(recorded.next_domain);
        let mut epoch = 0u64;
        while epoch == 0 {
            epoch = OsRng.next_u64();
        }
        authority.set_epoch(epoch);
        let authority = authority.with_audit_log(audit);

        // 4. Repair: cut a torn journal line, record the verified positions.
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
        if scan.torn > 0 {
            journal.set_len(scan.end.bytes).map_err(io(&journal_path))?;
            journal.sync_all().map_err(io(&journal_path))?;
        }
        let mut this = Self {
            journal_chain: scan.end,
            authority,
            dir: dir.to_path_buf(),
            journal,
            head,
            fsync: options.fsync,
            report,
            broken: false,
        };
        this.write_head().map_err(io(&head_path))?;
        if options.fsync {
            sync_dir(dir);
        }
        Ok(this)
    }

    /// A fresh state in `dir` (no seed there yet).
    fn create(group: G, dir: &Path, options: StateOptions) -> Result<Self, StateError> {
        let gid = group.id().to_byte();
        let seed_path = dir.join(SEED_FILE);
        let head_path = dir.join(HEAD_FILE);
        let journal_path = dir.join(JOURNAL_FILE);
        let audit_path = dir.join(AUDIT_FILE);
        // A fresh seed would make every old journal and audit entry meaningless.
        for p in [&head_path, &journal_path, &audit_path] {
            if p.exists() {
                return Err(StateError::Corrupt {
                    path: p.to_path_buf(),
                    reason: format!("exists without {SEED_FILE}; refusing to start afresh"),
                });
            }
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut seed[..]);
        let fingerprint = seed_fingerprint(gid, &seed);
        let audit = new_audit(&audit_path, &options)?;
        let audit_chain = audit.chain().ok_or_else(|| StateError::Corrupt {
            path: audit_path.clone(),
            reason: "the audit sink keeps no chain".into(),
        })?;
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
        let journal_chain = journal::genesis(&fingerprint);
        let head = HeadFile::create(
            &head_path,
            StateHead {
                counter: 0,
                seed_fingerprint: fingerprint,
                next_domain: 0,
                journal: journal_chain,
                audit: audit_chain,
            },
            options.fsync,
        )
        .map_err(io(&head_path))?;
        // The seed comes last: a directory with a seed always has its other files.
        write_seed(&seed_path, gid, &seed)?;
        if options.fsync {
            sync_dir(dir);
        }
        let mut epoch = 0u64;
        while epoch == 0 {
            epoch = OsRng.next_u64();
        }
        let authority = Authority::from_seed(group, *seed)
            .with_epoch(epoch)
            .with_audit_log(audit);
        Ok(Self {
            authority,
            dir: dir.to_path_buf(),
            journal,
            journal_chain,
            head,
            fsync: options.fsync,
            report: RestoreReport {
                created: true,
                ..RestoreReport::default()
            },
            broken: false,
        })
    }

    /// What opening the state repaired or noticed.
    #[must_use]
    pub fn restore_report(&self) -> &RestoreReport {
        &self.report
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

    fn write_head(&mut self) -> std::io::Result<()> {
        let old = *self.head.head();
        let audit: AuditChain = self.authority.audit_log().chain().unwrap_or(old.audit);
        let next = StateHead {
            counter: old.counter,
            seed_fingerprint: old.seed_fingerprint,
            next_domain: self.authority.next_domain_id().max(old.next_domain),
            journal: self.journal_chain,
            audit,
        };
        if next == old {
            return Ok(());
        }
        self.head.write(next)
    }

    /// Records the current positions in the head; a failure breaks the authority.
    fn sync_head(&mut self) -> Result<(), CoordinatorError> {
        let path = self.dir.join(HEAD_FILE);
        self.write_head().map_err(|e| {
            self.broken = true;
            CoordinatorError::Audit(AuditError::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            )))
        })
    }

    fn append(&mut self, entries: &[JournalEntry]) -> Result<(), CoordinatorError> {
        let path = self.dir.join(JOURNAL_FILE);
        let mut chain = self.journal_chain;
        let result = (|| {
            let mut bytes = Vec::new();
            for entry in entries {
                let (line, next) = encode_line(&chain, entry).map_err(std::io::Error::other)?;
                bytes.extend_from_slice(&line);
                chain = next;
            }
            self.journal.write_all(&bytes)?;
            if self.fsync {
                self.journal.sync_data()?;
            }
            Ok::<(), std::io::Error>(())
        })();
        match result {
            Ok(()) => {
                self.journal_chain = chain;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(CoordinatorError::Audit(AuditError::Io(
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display())),
                )))
            }
        }
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
    /// As [`Authority::create_domain`]; [`CoordinatorError::Audit`] if the journal or the head
    /// cannot be written (the authority then refuses every further request until restarted).
    pub fn create_domain(&mut self, config: DomainConfig) -> Result<DomainId, CoordinatorError> {
        let ids = self.create_domains(config, 1)?;
        ids.first()
            .copied()
            .ok_or(CoordinatorError::Empty("no domain created"))
    }

    /// Creates `count` domains with the same configuration, journaled in one write.
    ///
    /// # Errors
    /// As [`create_domain`](Self::create_domain).
    pub fn create_domains(
        &mut self,
        config: DomainConfig,
        count: u64,
    ) -> Result<Vec<DomainId>, CoordinatorError> {
        let pending = self.begin_create_domains(config, count)?;
        self.finish_create_domains(pending.prepare())
    }

    /// The first step of [`create_domains`](Self::create_domains): reserves `count` domain ids
    /// and records the new high-water mark, so that they are never handed out again even if
    /// the creation does not finish. Cheap; the expensive
    /// [`PendingDomains::prepare`] can then run without holding the authority.
    ///
    /// # Errors
    /// [`CoordinatorError::Empty`] for `count == 0`; [`CoordinatorError::Audit`] if the head
    /// cannot be written.
    pub fn begin_create_domains(
        &mut self,
        config: DomainConfig,
        count: u64,
    ) -> Result<PendingDomains<G>, CoordinatorError> {
        self.begin_create_domains_inner(config, count, None)
    }

    /// [`begin_create_domains`](Self::begin_create_domains) for domains bound to `access`
    /// ([`Authority::create_domain_for`]); the binding is journaled with each domain.
    ///
    /// # Errors
    /// [`CoordinatorError::InvalidConfig`] if `access` names no requester; otherwise as
    /// [`begin_create_domains`](Self::begin_create_domains).
    pub fn begin_create_domains_for(
        &mut self,
        config: DomainConfig,
        count: u64,
        access: DomainAccess,
    ) -> Result<PendingDomains<G>, CoordinatorError> {
        if access.requesters.is_empty() {
            return Err(CoordinatorError::InvalidConfig(
                "a bound key domain needs at least one requester",
            ));
        }
        self.begin_create_domains_inner(config, count, Some(access))
    }

    fn begin_create_domains_inner(
        &mut self,
        config: DomainConfig,
        count: u64,
        access: Option<DomainAccess>,
    ) -> Result<PendingDomains<G>, CoordinatorError> {
        self.check()?;
        if count == 0 {
            return Err(CoordinatorError::Empty("no domain to create"));
        }
        let first = self.authority.reserve_ids(count)?;
        self.sync_head()?;
        Ok(PendingDomains {
            factory: self.authority.domain_factory(),
            first,
            count,
            config,
            access,
        })
    }

    /// The last step of [`create_domains`](Self::create_domains): journals the prepared
    /// domains (one write, one `fsync`) and installs them.
    ///
    /// # Errors
    /// As [`create_domain`](Self::create_domain).
    pub fn finish_create_domains(
        &mut self,
        prepared: PreparedDomains<G>,
    ) -> Result<Vec<DomainId>, CoordinatorError> {
        self.check()?;
        let c = prepared.config;
        let entries: Vec<JournalEntry> = prepared
            .domains
            .iter()
            .map(|d| JournalEntry::Create {
                domain: d.id().0,
                epoch: prepared.epoch,
                n: c.feip.n(),
                x_bound: c.feip.x_bound(),
                y_bound: c.feip.y_bound(),
                febo: c.febo.map(|f| (f.x_bound(), f.y_bound())),
                policy: c.policy,
                access: prepared.access.clone(),
            })
            .collect();
        self.append(&entries)?;
        let mut ids = Vec::with_capacity(prepared.domains.len());
        for d in prepared.domains {
            let id = d.id();
            ids.push(id);
            if let Err(e) = self.authority.install(d) {
                self.broken = true;
                return Err(e);
            }
            if let Some(access) = &prepared.access {
                self.authority.bind(id, access.clone());
            }
        }
        self.sync_head()?;
        Ok(ids)
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
        let pending = self.begin_create_domains_for(config, 1, access)?;
        let ids = self.finish_create_domains(pending.prepare())?;
        ids.first()
            .copied()
            .ok_or(CoordinatorError::Empty("no domain created"))
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
        let digests = hex_digests(
            registration
                .commitments
                .iter()
                .map(|c| commitment_digest(c)),
        );
        self.append(&[JournalEntry::Register {
            domain: registration.domain.0,
            digests,
        }])?;
        self.sync_head()?;
        Ok(new)
    }

    /// Rotates a domain, journaled.
    ///
    /// # Errors
    /// As [`Authority::rotate`] and [`create_domain`](Self::create_domain).
    pub fn rotate(&mut self, id: DomainId) -> Result<DomainId, CoordinatorError> {
        self.check()?;
        let successor = self.authority.rotate(id)?;
        self.append(&[JournalEntry::Rotate {
            domain: id.0,
            successor: successor.0,
            epoch: self.authority.epoch(),
        }])?;
        self.sync_head()?;
        Ok(successor)
    }

    /// Closes a domain, journaled.
    ///
    /// # Errors
    /// As [`Authority::close_domain`] and [`create_domain`](Self::create_domain).
    pub fn close_domain(&mut self, id: DomainId) -> Result<(), CoordinatorError> {
        self.check()?;
        self.authority.close_domain(id)?;
        self.append(&[JournalEntry::Close { domain: id.0 }])?;
        self.sync_head()
    }

    /// The public key of an active domain.
    ///
    /// # Errors
    /// As [`Authority::public_key`].
    pub fn public_key(&self, id: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError> {
        self.authority.public_key(id)
    }

    /// SHA-256 of an active domain's public key, as [`Authority::public_key_sha256`].
    ///
    /// # Errors
    /// As [`Authority::public_key_sha256`].
    pub fn public_key_sha256(&self, id: DomainId) -> Result<[u8; 32], CoordinatorError> {
        self.authority.public_key_sha256(id)
    }

    /// Issues FEIP keys as [`Authority::issue_feip_keys`]. The request is validated first;
    /// for a domain whose policy tracks the rank, the validated batch is journaled before it
    /// is reviewed, and a rotation the review causes is journaled after it.
    ///
    /// # Errors
    /// As [`Authority::issue_feip_keys`] and [`create_domain`](Self::create_domain).
    pub fn issue_feip_keys(
        &mut self,
        requester: &RequesterId,
        request: &FeipKeyRequest,
    ) -> Result<FeipKeyResponse<G>, CoordinatorError> {
        self.check()?;
        let vectors = self.validate_and_journal_review(requester, request)?;
        let result = self
            .authority
            .issue_validated_feip_keys(requester, request.domain, &vectors);
        if let Err(e) = &result {
            self.journal_rotation(e)?;
        }
        self.sync_head()?;
        result
    }

    /// Checks the requester and validates `request`; for a domain whose policy tracks the
    /// rank, journals the validated batch before it is reviewed.
    fn validate_and_journal_review(
        &mut self,
        requester: &RequesterId,
        request: &FeipKeyRequest,
    ) -> Result<Vec<SparseKeyVector>, CoordinatorError> {
        let id = request.domain;
        self.authority.check_feip_requester(id, requester)?;
        let vectors = self.authority.validate_feip_request(request)?;
        if self.authority.issued_rank(id)?.is_some() {
            self.append(&[JournalEntry::Review {
                domain: id.0,
                vectors: request.vectors.clone(),
            }])?;
        }
        Ok(vectors)
    }

    /// Journals the rotation a key review caused (`error` is the issuance's error).
    fn journal_rotation(&mut self, error: &CoordinatorError) -> Result<(), CoordinatorError> {
        if let CoordinatorError::DomainRotated { retired, successor } = error {
            self.append(&[JournalEntry::Rotate {
                domain: retired.0,
                successor: successor.0,
                epoch: self.authority.epoch(),
            }])?;
        }
        Ok(())
    }

    /// Sets (or removes) the privacy budget of noisy domains
    /// ([`Authority::set_privacy_budget`]), journaled: it stays in force across restarts until
    /// it is set again (a restart cannot drop it by accident), as does the ledger it is checked
    /// against.
    ///
    /// # Errors
    /// [`CoordinatorError::InvalidConfig`] for an `ε` that is not positive and finite or a `δ`
    /// outside `(0, 1)`; as [`create_domain`](Self::create_domain) for the journal.
    pub fn set_privacy_budget(
        &mut self,
        budget: Option<PrivacyBudget>,
    ) -> Result<(), CoordinatorError> {
        self.check()?;
        if let Some(b) = &budget {
            check_budget(b)?;
        }
        if self.authority.accountant().budget() == budget {
            return Ok(());
        }
        self.authority.set_privacy_budget(budget);
        let (delta, granularity) =
            budget.map_or((0.0, Granularity::Image), |b| (b.delta, b.granularity));
        self.append(&[JournalEntry::Budget {
            epsilon_bits: budget.map(|b| b.epsilon.to_bits()),
            delta_bits: delta.to_bits(),
            granularity: granularity.name().into(),
        }])?;
        self.sync_head()
    }

    /// Makes a domain noisy ([`Authority::make_noisy`]), journaled.
    ///
    /// # Errors
    /// As [`Authority::make_noisy`] and [`create_domain`](Self::create_domain).
    pub fn make_noisy(
        &mut self,
        id: DomainId,
        config: NoiseConfig,
    ) -> Result<(), CoordinatorError> {
        self.check()?;
        self.authority.make_noisy(id, config)?;
        let (sigma_num, sigma_den) = config.sigma.sigma_ratio();
        self.append(&[JournalEntry::MakeNoisy {
            domain: id.0,
            sigma_num,
            sigma_den,
            coordinate_range: config.coordinate_range,
        }])?;
        self.sync_head()
    }

    /// Registers ciphertexts of a noisy domain
    /// ([`Authority::register_noisy_ciphertexts`]), journaled (as `ct0` digests with their
    /// sample ids) after they are validated.
    ///
    /// # Errors
    /// As [`Authority::register_noisy_ciphertexts`] and [`create_domain`](Self::create_domain).
    pub fn register_noisy_ciphertexts(
        &mut self,
        registrant: &RequesterId,
        registration: &NoisyCiphertextRegistration,
    ) -> Result<usize, CoordinatorError> {
        self.check()?;
        let fresh = self
            .authority
            .register_noisy_digests(registrant, registration)?;
        if fresh.is_empty() {
            return Ok(0);
        }
        self.append(&[JournalEntry::RegisterNoisy {
            domain: registration.domain.0,
            digests: hex_digests(fresh.iter().map(|&(d, _)| d)),
            samples: fresh.iter().map(|&(_, s)| s).collect(),
        }])?;
        self.sync_head()?;
        Ok(fresh.len())
    }

    /// Issues noisy keys as [`Authority::issue_noisy_feip_keys`]. As for plain keys, a
    /// validated batch of a domain whose policy tracks the rank is journaled before it is
    /// reviewed, and a rotation the review causes after it; the ledger entries of the charged
    /// samples are journaled after the keys are derived and before they are returned (a
    /// crash in between leaves the restored ledger above what was handed out, never below).
    ///
    /// # Errors
    /// As [`Authority::issue_noisy_feip_keys`] and [`create_domain`](Self::create_domain).
    pub fn issue_noisy_feip_keys(
        &mut self,
        requester: &RequesterId,
        request: &NoisyKeyRequest,
    ) -> Result<NoisyKeyResponse<G>, CoordinatorError> {
        self.check()?;
        let vectors = self.validate_and_journal_review(requester, &request.keys)?;
        let result = self
            .authority
            .issue_validated_noisy_feip_keys(requester, request, &vectors);
        match result {
            Ok((response, charged)) => {
                let ledger = self.authority.accountant();
                let entries = charged
                    .iter()
                    .map(|&sample| {
                        let loss = ledger.loss(sample);
                        LedgerEntry {
                            sample,
                            pixel_bits: loss.pixel.to_bits(),
                            image_bits: loss.image.to_bits(),
                            releases: loss.releases,
                        }
                    })
                    .collect();
                self.append(&[JournalEntry::Charge { entries }])?;
                self.sync_head()?;
                Ok(response)
            }
            Err(e) => {
                self.journal_rotation(&e)?;
                self.sync_head()?;
                Err(e)
            }
        }
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
        let result = self.authority.issue_febo_keys(requester, request);
        self.sync_head()?;
        result
    }
}
/// A budget the accountant can hold: `ε` positive and finite, `δ` in `(0, 1)`.
fn check_budget(b: &PrivacyBudget) -> Result<(), CoordinatorError> {
    if !(b.epsilon.is_finite() && b.epsilon > 0.0 && b.delta > 0.0 && b.delta < 1.0) {
        return Err(CoordinatorError::InvalidConfig(
            "a privacy budget needs a positive, finite epsilon and a delta in (0, 1)",
        ));
    }
    Ok(())
}

/// Digests as one hex string (the journal's `Register` and `RegisterNoisy` entries).
fn hex_digests(digests: impl Iterator<Item = [u8; 32]>) -> String {
    let mut hex = String::new();
    for d in digests {
        for b in d {
            hex.push_str(&format!("{b:02x}"));
        }
    }
    hex
}

/// The digests of a journal's `Register` or `RegisterNoisy` entry.
fn parse_digests(hex: &str) -> Result<Vec<[u8; 32]>, CoordinatorError> {
    let bad = || CoordinatorError::InvalidConfig("a registration entry holds malformed digests");
    if hex.is_empty() || !hex.len().is_multiple_of(64) || !hex.is_ascii() {
        return Err(bad());
    }
    hex.as_bytes()
        .chunks(64)
        .map(|chunk| {
            let mut d = [0u8; 32];
            for (i, pair) in chunk.chunks(2).enumerate() {
                let text = std::str::from_utf8(pair).map_err(|_| bad())?;
                d[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
            }
            Ok(d)
        })
        .collect()
}

/// Applies one journal entry to `authority` (what [`PersistentAuthority::open`] does for each
/// line). Only what the authority wrote replays: every check of the original operation runs
/// again, and anything else is an error.
///
/// # Errors
/// The [`CoordinatorError`] of the operation: invalid parameters, an unknown, inactive or
/// already existing domain, an invalid key batch or binding, malformed registration digests.
pub fn replay<G: PrimeOrderGroup>(
    authority: &mut Authority<G>,
    entry: JournalEntry,
) -> Result<(), CoordinatorError> {
    match entry {
        JournalEntry::Create {
            domain,
            epoch,
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
            if access.as_ref().is_some_and(|a| a.requesters.is_empty()) {
                return Err(CoordinatorError::InvalidConfig(
                    "a bound key domain needs at least one requester",
                ));
            }
            let id = DomainId(domain);
            authority.replay_create(id, epoch, config)?;
            if let Some(access) = access {
                authority.bind(id, access);
            }
        }
        JournalEntry::Register { domain, digests } => {
            let id = DomainId(domain);
            // Registration was validated before it was journaled: the domain exists (it may
            // have been rotated or closed since).
            authority.status(id)?;
            authority.insert_registered(id, parse_digests(&digests)?);
        }
        JournalEntry::Rotate {
            domain,
            successor,
            epoch,
        } => {
            authority.rotate_to(DomainId(domain), DomainId(successor), epoch)?;
        }
        JournalEntry::Close { domain } => authority.close_domain(DomainId(domain))?,
        JournalEntry::Review { domain, vectors } => {
            authority.replay_feip_review(&FeipKeyRequest {
                domain: DomainId(domain),
                vectors,
            })?;
        }
        JournalEntry::MakeNoisy {
            domain,
            sigma_num,
            sigma_den,
            coordinate_range,
        } => {
            let sigma = DiscreteGaussian::new(sigma_num, sigma_den)?;
            authority.make_noisy(
                DomainId(domain),
                NoiseConfig {
                    sigma,
                    coordinate_range,
                },
            )?;
        }
        JournalEntry::RegisterNoisy {
            domain,
            digests,
            samples,
        } => {
            let digests = parse_digests(&digests)?;
            if digests.len() != samples.len() {
                return Err(CoordinatorError::InvalidConfig(
                    "a noisy registration entry holds as many sample ids as digests",
                ));
            }
            let entries: Vec<([u8; 32], u64)> = digests.into_iter().zip(samples).collect();
            authority.restore_noisy_registrations(DomainId(domain), &entries)?;
        }
        JournalEntry::Budget {
            epsilon_bits,
            delta_bits,
            granularity,
        } => {
            let budget = match epsilon_bits {
                None => None,
                Some(bits) => {
                    let granularity = Granularity::from_name(&granularity).ok_or(
                        CoordinatorError::InvalidConfig(
                            "a budget entry names an unknown granularity",
                        ),
                    )?;
                    let b = PrivacyBudget {
                        epsilon: f64::from_bits(bits),
                        delta: f64::from_bits(delta_bits),
                        granularity,
                    };
                    check_budget(&b)?;
                    Some(b)
                }
            };
            authority.set_privacy_budget(budget);
        }
        JournalEntry::Charge { entries } => {
            for e in entries {
                let (pixel, image) = (f64::from_bits(e.pixel_bits), f64::from_bits(e.image_bits));
                // What the accountant can hold: non-negative slopes (infinite for sigma = 0).
                if pixel.is_nan() || image.is_nan() || pixel < 0.0 || image < 0.0 {
                    return Err(CoordinatorError::InvalidConfig(
                        "a ledger entry holds a negative or NaN privacy loss",
                    ));
                }
                authority.restore_privacy_loss(
                    e.sample,
                    SampleLoss {
                        pixel,
                        image,
                        releases: e.releases,
                    },
                );
            }
        }
    }
    Ok(())
}
