//! The authority's audit log: one record per issued function key (and one per refused batch or
//! rotation), in issue order.
//!
//! A record names the domain, the requester, the time, and what the key computes: for FEIP the
//! SHA-256 of the key vector's canonical encoding ([`SparseKeyVector::sha256`]) and, if the log
//! is configured to keep them, the vector itself (then the operator can replay what a server
//! has learnt with [`crate::coordinator::leakage`]); for FEBO the operation, the operand and the
//! SHA-256 of the ciphertext commitment the key is bound to. Sequence numbers start at 0 and
//! increase by one per record.

use serde::{Deserialize, Serialize};

use crate::coordinator::error::PolicyRefusal;
use crate::coordinator::messages::{DomainId, RequesterId, SparseKeyVector};

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

/// An append-only, ordered audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    config: AuditConfig,
    records: Vec<AuditRecord>,
}

impl AuditLog {
    /// An empty log.
    #[must_use]
    pub fn new(config: AuditConfig) -> Self {
        Self {
            config,
            records: Vec::new(),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// All records, in order.
    #[must_use]
    pub fn records(&self) -> &[AuditRecord] {
        &self.records
    }

    /// The number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records of issued keys of one domain, in order.
    pub fn issued_in(&self, domain: DomainId) -> impl Iterator<Item = &AuditRecord> {
        self.records
            .iter()
            .filter(move |r| r.domain == domain && r.outcome == AuditOutcome::Issued)
    }

    /// The log as JSON Lines (one record per line), for export.
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
    ) -> u64 {
        let seq = self.records.len() as u64;
        self.records.push(AuditRecord {
            seq,
            unix_time,
            domain,
            requester: requester.clone(),
            key,
            outcome,
        });
        seq
    }
}
