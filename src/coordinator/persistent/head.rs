//! The state head (`state.head`): where the journal and the audit file end, the domain-id
//! high-water mark and a fingerprint of the master seed.
//!
//! The file holds two 184-byte slots. A write goes to the slot the previous write did not use,
//! so a write torn by a crash leaves the other, one step older, intact. Each slot is
//! `"CNNHEAD2" ‖ counter ‖ seed fingerprint[32] ‖ next domain id ‖ journal (bytes, entries,
//! hash[32]) ‖ audit (bytes, records, hash[32]) ‖ SHA-256 of all that[32]` (integers `u64`
//! little-endian); the valid slot with the larger counter is the head.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::journal::JournalChain;
use crate::coordinator::audit::AuditChain;

const MAGIC: &[u8; 8] = b"CNNHEAD2";
/// The size of one slot.
pub(crate) const SLOT: usize = 184;

/// One head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateHead {
    /// Incremented at every write.
    pub counter: u64,
    /// `SHA-256("cryptonn seed fingerprint" ‖ group ‖ seed)`.
    pub seed_fingerprint: [u8; 32],
    /// Every domain id ever handed out (or reserved) is below this high-water mark.
    pub next_domain: u64,
    /// Where the journal's chain ends.
    pub journal: JournalChain,
    /// Where the audit file's chain ends.
    pub audit: AuditChain,
}

/// The fingerprint of a seed (stored in the head, so that a damaged or replaced seed is found).
pub(crate) fn seed_fingerprint(group: u8, seed: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"cryptonn seed fingerprint");
    h.update([group]);
    h.update(seed);
    h.finalize().into()
}

impl StateHead {
    fn encode(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(MAGIC);
        put(&self.counter.to_le_bytes());
        put(&self.seed_fingerprint);
        put(&self.next_domain.to_le_bytes());
        put(&self.journal.bytes.to_le_bytes());
        put(&self.journal.entries.to_le_bytes());
        put(&self.journal.hash);
        put(&self.audit.bytes.to_le_bytes());
        put(&self.audit.records.to_le_bytes());
        put(&self.audit.hash);
        let sum: [u8; 32] = Sha256::digest(&b[..SLOT - 32]).into();
        b[SLOT - 32..].copy_from_slice(&sum);
        b
    }

    /// Decodes a slot; `None` if its magic or checksum is wrong.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != SLOT || &b[..8] != MAGIC {
            return None;
        }
        let sum: [u8; 32] = Sha256::digest(&b[..SLOT - 32]).into();
        if sum[..] != b[SLOT - 32..] {
            return None;
        }
        let u = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(x)
        };
        let h = |at: usize| {
            let mut x = [0u8; 32];
            x.copy_from_slice(&b[at..at + 32]);
            x
        };
        Some(Self {
            counter: u(8),
            seed_fingerprint: h(16),
            next_domain: u(48),
            journal: JournalChain {
                bytes: u(56),
                entries: u(64),
                hash: h(72),
            },
            audit: AuditChain {
                bytes: u(104),
                records: u(112),
                hash: h(120),
            },
        })
    }
}

/// The head file, open for updates.
#[derive(Debug)]
pub(crate) struct HeadFile {
    file: File,
    head: StateHead,
    fsync: bool,
}

/// Why the head could not be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    Io(std::io::Error),
    /// Neither slot is valid.
    NoValidSlot,
}

impl HeadFile {
    /// Creates the file with `head` in both slots.
    pub(crate) fn create(path: &Path, head: StateHead, fsync: bool) -> std::io::Result<Self> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(path)?;
        let slot = head.encode();
        file.write_all(&slot)?;
        file.write_all(&slot)?;
        if fsync {
            file.sync_all()?;
        }
        Ok(Self { file, head, fsync })
    }

    /// Opens the file and reads its head (the valid slot with the larger counter).
    pub(crate) fn open(path: &Path, fsync: bool) -> Result<Self, HeadError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(HeadError::Io)?;
        let mut bytes = Vec::new();
        (&mut file)
            .take(2 * SLOT as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(HeadError::Io)?;
        let head = parse_head(&bytes).ok_or(HeadError::NoValidSlot)?;
        Ok(Self { file, head, fsync })
    }

    /// The current head.
    pub(crate) fn head(&self) -> &StateHead {
        &self.head
    }

    /// Writes `head` (its counter is set to the next one) into the older slot.
    pub(crate) fn write(&mut self, mut head: StateHead) -> std::io::Result<()> {
        head.counter = self.head.counter.wrapping_add(1);
        let slot = (head.counter % 2) * SLOT as u64;
        self.file.seek(SeekFrom::Start(slot))?;
        self.file.write_all(&head.encode())?;
        if self.fsync {
            self.file.sync_data()?;
        }
        self.head = head;
        Ok(())
    }
}

/// The head in the bytes of a head file: the valid slot with the larger counter.
#[must_use]
pub(crate) fn parse_head(bytes: &[u8]) -> Option<StateHead> {
    if bytes.len() != 2 * SLOT {
        return None;
    }
    let a = StateHead::decode(&bytes[..SLOT]);
    let b = StateHead::decode(&bytes[SLOT..]);
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.counter > a.counter { b } else { a }),
        (a, b) => a.or(b),
    }
}
