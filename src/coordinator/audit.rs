//! The authority's audit log: one record per issued function key (and one per refused batch or
//! rotation), in issue order.
//!
//! A record names the domain, the requester, the time, and what the key computes: for FEIP the
//! SHA-256 of the key vector's canonical encoding ([`SparseKeyVector::sha256`]) and, if the log
//! is configured to keep them, the vector itself (then the operator can replay what a server
//! has learnt with [`crate::coordinator::leakage`]); for FEBO the operation, the operand and the
//! SHA-256 of the ciphertext commitment the key is bound to. Sequence numbers start at 0 and
//! increase by one per record.
//!
//! # Where records go
//! A log either keeps its records in memory ([`AuditLog::new`], the default, for tests and short
//! runs) or streams them to an [`AuditSink`] ([`AuditLog::with_sink`]) and keeps only a
//! counter, so its memory stays flat however many keys are issued. A full secure training run
//! on 60,000 images issues about 14 million keys per epoch: in memory that is gigabytes, in an
//! [`AuditFileSink`] it is 100 bytes per FEIP key on disk. The authority appends the records of
//! a request and then [`commits`](AuditSink::commit) them *before* it hands out the keys; if the
//! sink fails, no key of that request is returned.
//!
//! # The audit file
//! [`AuditFileSink`] writes the records to a binary, append-only, hash-chained file (format
//! in [`file`]); [`read_audit_file`] reads it back, verifying the chain.

pub mod file;

pub use file::{
    audit_reader, read_audit_file, scan_audit_file, AuditChain, AuditFileOptions, AuditFileReader,
    AuditFileSink, AuditScan,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::coordinator::messages::{DomainId, RequesterId, SparseKeyVector};
use crate::coordinator::policy::PolicyRefusal;

/// What the audit log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditConfig {
    /// Keep each FEIP key vector in full (not only its hash).
    pub store_vectors: bool,
}

/// The key a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AuditedKey {
    /// A FEIP function key for the vector `y`.
    Feip {
        /// SHA-256 of `y`'s canonical encoding.
        vector_sha256: [u8; 32],
        /// Non-zero entries of `y`.
        nnz: usize,
        /// `y` itself, if [`AuditConfig::store_vectors`] is set.
        vector: Option<SparseKeyVector>,
    },
    /// A FEBO key bound to one ciphertext.
    Febo {
        /// The operation's byte code (`0 +`, `1 -`, `2 *`, `3 /`).
        op: u8,
        /// The public operand.
        operand: i64,
        /// SHA-256 of the commitment's canonical encoding.
        commitment_sha256: [u8; 32],
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AuditOutcome {
    /// The key was issued.
    Issued,
    /// The batch was refused because of this key.
    Refused(PolicyRefusal),
    /// The domain was rotated because of this key (no key issued).
    Rotated {
        /// The fresh domain.
        successor: DomainId,
    },
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log (0, 1, 2, …).
    pub seq: u64,
    /// Seconds since the Unix epoch when the record was written.
    pub unix_time: u64,
    /// The key domain.
    pub domain: DomainId,
    /// Who asked.
    pub requester: RequesterId,
    /// The key.
    pub key: AuditedKey,
    /// What happened.
    pub outcome: AuditOutcome,
}

/// Why the audit log could not write or read a record.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The sink's storage failed.
    #[error("audit log I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An audit file entry is truncated, has an unknown tag or version, or breaks the sequence.
    #[error("malformed audit file: {0}")]
    Malformed(&'static str),
    /// An audit file entry is malformed, or breaks the hash chain, at this byte offset.
    #[error("audit file damaged at byte offset {offset}: {reason}")]
    Corrupt {
        /// Where the entry at fault starts.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A record's JSON part could not be written or read.
    #[error("audit record JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Where an [`AuditLog`] streams its records.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Appends one record (it may be buffered until [`commit`](Self::commit)).
    ///
    /// # Errors
    /// [`AuditError`] if the record cannot be stored.
    fn append(&mut self, record: &AuditRecord) -> Result<(), AuditError>;

    /// Makes every appended record durable to the sink's configured degree. The authority calls
    /// it after the records of one request and before it returns the keys.
    ///
    /// # Errors
    /// [`AuditError`] if the records cannot be stored.
    fn commit(&mut self) -> Result<(), AuditError>;

    /// The position of the sink's hash chain after the last committed record, if it keeps one
    /// (an [`AuditFileSink`] does; the persistent authority stores it in its state head).
    fn chain(&self) -> Option<AuditChain> {
        None
    }
}

/// An append-only, ordered audit log (in memory, or streamed to an [`AuditSink`]).
#[derive(Debug, Default)]
pub struct AuditLog {
    config: AuditConfig,
    records: Vec<AuditRecord>,
    sink: Option<Box<dyn AuditSink>>,
    len: u64,
}

impl AuditLog {
    /// An empty log that keeps its records in memory.
    #[must_use]
    pub fn new(config: AuditConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// An empty log that streams its records to `sink` and keeps none in memory.
    #[must_use]
    pub fn with_sink(config: AuditConfig, sink: Box<dyn AuditSink>) -> Self {
        Self {
            config,
            sink: Some(sink),
            ..Self::default()
        }
    }

    /// A log that continues a sink already holding `records` records (e.g. an
    /// [`AuditFileSink::open_append`]): the next record gets sequence number `records`.
    #[must_use]
    pub fn resume_with_sink(config: AuditConfig, sink: Box<dyn AuditSink>, records: u64) -> Self {
        Self {
            config,
            sink: Some(sink),
            len: records,
            ..Self::default()
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// True if the records go to a sink (then [`records`](Self::records) is empty; read the
    /// sink back instead, e.g. with [`read_audit_file`]).
    #[must_use]
    pub fn is_streamed(&self) -> bool {
        self.sink.is_some()
    }

    /// The records held in memory, in order: all of them for an in-memory log, none for a
    /// streamed one.
    #[must_use]
    pub fn records(&self) -> &[AuditRecord] {
        &self.records
    }

    /// The number of records written (in memory or to the sink).
    #[must_use]
    pub fn len(&self) -> usize {
        usize::try_from(self.len).unwrap_or(usize::MAX)
    }

    /// True if nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The in-memory records of issued keys of one domain, in order (none for a streamed log).
    pub fn issued_in(&self, domain: DomainId) -> impl Iterator<Item = &AuditRecord> {
        self.records
            .iter()
            .filter(move |r| r.domain == domain && r.outcome == AuditOutcome::Issued)
    }

    /// The in-memory log as JSON Lines (one record per line), for export.
    ///
    /// # Errors
    /// A [`serde_json::Error`] if a record cannot be serialised (not expected for these types).
    pub fn to_json_lines(&self) -> Result<String, serde_json::Error> {
        let mut out = String::new();
        for r in &self.records {
            out.push_str(&serde_json::to_string(r)?);
            out.push('\n');
        }
        Ok(out)
    }

    /// A FEIP key record for `y`.
    pub(crate) fn feip_key(&self, y: &SparseKeyVector) -> AuditedKey {
        AuditedKey::Feip {
            vector_sha256: y.sha256(),
            nnz: y.nnz(),
            vector: self.config.store_vectors.then(|| y.clone()),
        }
    }

    /// Appends a record and returns its sequence number.
    pub(crate) fn append(
        &mut self,
        unix_time: u64,
        domain: DomainId,
        requester: &RequesterId,
        key: AuditedKey,
        outcome: AuditOutcome,
    ) -> Result<u64, AuditError> {
        let seq = self.len;
        let record = AuditRecord {
            seq,
            unix_time,
            domain,
            requester: requester.clone(),
            key,
            outcome,
        };
        match &mut self.sink {
            Some(sink) => sink.append(&record)?,
            None => self.records.push(record),
        }
        self.len += 1;
        Ok(seq)
    }

    /// The sink's hash-chain position (see [`AuditSink::chain`]).
    #[must_use]
    pub fn chain(&self) -> Option<AuditChain> {
        self.sink.as_ref().and_then(|s| s.chain())
    }

    /// Commits the appended records to the sink (a no-op in memory).
    ///
    /// # Errors
    /// [`AuditError`] from the sink.
    pub fn commit(&mut self) -> Result<(), AuditError> {
        match &mut self.sink {
            Some(sink) => sink.commit(),
            None => Ok(()),
        }
    }
}
