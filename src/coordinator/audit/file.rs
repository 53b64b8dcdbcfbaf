//! The audit file: a binary, append-only, hash-chained record of every key decision.
//!
//! # Format (version 2)
//! A 10-byte header: the magic `CNNAUDIT` and a little-endian `u16` version, then entries. Every
//! entry is a tag byte, the 32-byte SHA-256 of the **previous entry's bytes** (for the first
//! entry: `SHA-256("cryptonn audit chain" ‖ header)`), and a body:
//! - `0x01` requester definition: `u32` id, `u16` length, UTF-8 name (written once per
//!   requester, before its first record);
//! - `0x02` record: `u64` seq, `u64` unix time, `u64` domain, `u32` requester id, the key
//!   (`0` FEIP: 32-byte SHA-256, `u32` nnz, `u8` has-vector [, `u32` length, JSON vector];
//!   `1` FEBO: `u8` op, `i64` operand, 32-byte SHA-256), the outcome (`0` issued; `1` refused:
//!   `u32` length, JSON reason; `2` rotated: `u64` successor).
//!
//! All integers are little-endian. The chain's position after an entry, [`AuditChain`] (records,
//! bytes, SHA-256 of the last entry), is what a
//! [`PersistentAuthority`](crate::coordinator::persistent::PersistentAuthority) keeps in its state
//! head: a reader that finds the head's hash at the head's offset knows that no byte before it
//! changed, and one that finds the file shorter knows that records were lost.
//!
//! [`read_audit_file`] reads a file back and checks the chain and that the sequence numbers are
//! contiguous from 0; a truncated or malformed entry is an error naming its offset. Version 1
//! files (no chain) are refused with a message saying so.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AuditError, AuditOutcome, AuditRecord, AuditSink, AuditedKey};
use crate::coordinator::messages::{DomainId, RequesterId};

/// Options of an [`AuditFileSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditFileOptions {
    /// `fsync` the file at every commit (else commits only flush to the operating system).
    pub fsync: bool,
}

/// A position in an audit file's hash chain: after `records` records, `bytes` bytes, the last
/// entry hashing to `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditChain {
    /// Records (not requester definitions) up to here.
    pub records: u64,
    /// File length up to here.
    pub bytes: u64,
    /// SHA-256 of the last entry (of the header's chain seed at the start).
    pub hash: [u8; 32],
}

const MAGIC: &[u8; 8] = b"CNNAUDIT";
const VERSION: u16 = 2;
const HEADER_LEN: u64 = 10;
const TAG_REQUESTER: u8 = 1;
const TAG_RECORD: u8 = 2;
/// The largest JSON part of a record (a stored key vector or a refusal reason).
const MAX_JSON: usize = 1 << 30;

fn header() -> [u8; 10] {
    let mut h = [0u8; 10];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// The chain's start: `SHA-256("cryptonn audit chain" ‖ header)`.
fn genesis() -> AuditChain {
    let mut h = Sha256::new();
    h.update(b"cryptonn audit chain");
    h.update(header());
    AuditChain {
        records: 0,
        bytes: HEADER_LEN,
        hash: h.finalize().into(),
    }
}

/// An append-only binary audit file (format in the [module docs](self)).
#[derive(Debug)]
pub struct AuditFileSink {
    path: PathBuf,
    out: BufWriter<File>,
    options: AuditFileOptions,
    requesters: Vec<RequesterId>,
    buf: Vec<u8>,
    /// The chain after the last appended entry.
    pending: AuditChain,
    /// The chain after the last commit.
    committed: AuditChain,
}

/// What [`scan_audit_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditScan {
    /// The chain after the last complete record (requester definitions after it are a torn tail).
    pub end: AuditChain,
    /// The chain at the requested checkpoint offset, if an entry ends exactly there.
    pub checkpoint: Option<AuditChain>,
    /// The file's length: bytes beyond `end.bytes` are a torn tail.
    pub file_len: u64,
}

/// Reads and verifies the whole audit file at `path`. A last entry cut short (a write torn by a
/// crash) ends the scan without error: its bytes lie between `end.bytes` and `file_len`.
/// `checkpoint` asks for the chain position at that byte offset.
///
/// # Errors
/// [`AuditError::Io`] if the file cannot be read; [`AuditError::Malformed`] for a wrong magic or
/// version; [`AuditError::Corrupt`] for any other damage, with its offset.
pub fn scan_audit_file(path: &Path, checkpoint: Option<u64>) -> Result<AuditScan, AuditError> {
    let file_len = std::fs::metadata(path)?.len();
    let mut reader = read_audit_file(path)?;
    let (end, checkpoint) = reader.scan_chain(checkpoint)?;
    Ok(AuditScan {
        end,
        checkpoint,
        file_len,
    })
}

impl AuditFileSink {
    /// Creates (or truncates) the file at `path` and writes the header.
    ///
    /// # Errors
    /// [`AuditError::Io`] if the file cannot be created or written.
    pub fn create(path: impl AsRef<Path>, options: AuditFileOptions) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        out.write_all(&header())?;
        out.flush()?;
        if options.fsync {
            out.get_ref().sync_all()?;
        }
        Ok(Self {
            path,
            out,
            options,
            requesters: Vec::new(),
            buf: Vec::with_capacity(128),
            pending: genesis(),
            committed: genesis(),
        })
    }

    /// Reopens an existing audit file to append to it, after verifying every entry (magic,
    /// version, hash chain, contiguous sequence numbers). If `expect` is given, the chain must
    /// pass through it (the file may hold more complete records after it: a crash between the
    /// write and the update of the state head). An entry cut short at the end of the file — a
    /// write torn by a crash, whose request never returned its keys — is cut off; the returned
    /// scan says how many bytes were.
    ///
    /// # Errors
    /// [`AuditError::Io`] if the file cannot be opened, read or cut; [`AuditError::Malformed`]
    /// for a wrong magic or version; [`AuditError::Corrupt`] for damage other than a torn last
    /// entry, or a chain that misses `expect` (the file is then left as it is).
    pub fn open_append(
        path: impl AsRef<Path>,
        options: AuditFileOptions,
        expect: Option<AuditChain>,
    ) -> Result<(Self, AuditScan), AuditError> {
        let path = path.as_ref().to_path_buf();
        let file_len = std::fs::metadata(&path)?.len();
        let mut reader = read_audit_file(&path)?;
        let (end, checkpoint) = reader.scan_chain(expect.map(|e| e.bytes))?;
        if let Some(expect) = expect {
            if end.bytes < expect.bytes {
                return Err(AuditError::Corrupt {
                    offset: end.bytes,
                    reason:
                        "the file ends before the position its state head records (records lost)",
                });
            }
            if checkpoint != Some(expect) {
                return Err(AuditError::Corrupt {
                    offset: expect.bytes,
                    reason: "the hash chain does not pass through the state head's position",
                });
            }
        }
        let requesters = reader.good_requesters;
        let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
        if file_len != end.bytes {
            file.set_len(end.bytes)?;
            file.sync_all()?;
        }
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        Ok((
            Self {
                path,
                out: BufWriter::with_capacity(1 << 20, file),
                options,
                requesters,
                buf: Vec::with_capacity(128),
                pending: end,
                committed: end,
            },
            AuditScan {
                end,
                checkpoint,
                file_len,
            },
        ))
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `self.buf` (an entry's tag and body, with room for the chain hash after the tag)
    /// and advances the chain.
    fn write_entry(&mut self, record: bool) -> Result<(), AuditError> {
        self.buf[1..33].copy_from_slice(&self.pending.hash);
        self.out.write_all(&self.buf)?;
        self.pending = AuditChain {
            records: self.pending.records + u64::from(record),
            bytes: self.pending.bytes + self.buf.len() as u64,
            hash: Sha256::digest(&self.buf).into(),
        };
        Ok(())
    }

    fn start_entry(&mut self, tag: u8) {
        self.buf.clear();
        self.buf.push(tag);
        self.buf.extend_from_slice(&[0u8; 32]);
    }

    fn requester_id(&mut self, requester: &RequesterId) -> Result<u32, AuditError> {
        if let Some(i) = self.requesters.iter().position(|r| r == requester) {
            return u32::try_from(i).map_err(|_| AuditError::Malformed("too many requesters"));
        }
        let id = u32::try_from(self.requesters.len())
            .map_err(|_| AuditError::Malformed("too many requesters"))?;
        let name = requester.0.as_bytes();
        let len =
            u16::try_from(name.len()).map_err(|_| AuditError::Malformed("requester too long"))?;
        self.start_entry(TAG_REQUESTER);
        self.buf.extend_from_slice(&id.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(name);
        self.write_entry(false)?;
        self.requesters.push(requester.clone());
        Ok(id)
    }
}

fn put_json(buf: &mut Vec<u8>, value: &impl Serialize) -> Result<(), AuditError> {
    let json = serde_json::to_vec(value)?;
    if json.len() > MAX_JSON {
        return Err(AuditError::Malformed("JSON too long"));
    }
    let len = u32::try_from(json.len()).map_err(|_| AuditError::Malformed("JSON too long"))?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&json);
    Ok(())
}

impl AuditSink for AuditFileSink {
    fn append(&mut self, r: &AuditRecord) -> Result<(), AuditError> {
        let requester = self.requester_id(&r.requester)?;
        self.start_entry(TAG_RECORD);
        let b = &mut self.buf;
        b.extend_from_slice(&r.seq.to_le_bytes());
        b.extend_from_slice(&r.unix_time.to_le_bytes());
        b.extend_from_slice(&r.domain.0.to_le_bytes());
        b.extend_from_slice(&requester.to_le_bytes());
        match &r.key {
            AuditedKey::Feip {
                vector_sha256,
                nnz,
                vector,
            } => {
                b.push(0);
                b.extend_from_slice(vector_sha256);
                let nnz = u32::try_from(*nnz).map_err(|_| AuditError::Malformed("nnz"))?;
                b.extend_from_slice(&nnz.to_le_bytes());
                match vector {
                    None => b.push(0),
                    Some(v) => {
                        b.push(1);
                        put_json(b, v)?;
                    }
                }
            }
            AuditedKey::Febo {
                op,
                operand,
                commitment_sha256,
            } => {
                b.push(1);
                b.push(*op);
                b.extend_from_slice(&operand.to_le_bytes());
                b.extend_from_slice(commitment_sha256);
            }
        }
        match &r.outcome {
            AuditOutcome::Issued => b.push(0),
            AuditOutcome::Refused(reason) => {
                b.push(1);
                put_json(b, reason)?;
            }
            AuditOutcome::Rotated { successor } => {
                b.push(2);
                b.extend_from_slice(&successor.0.to_le_bytes());
            }
        }
        self.write_entry(true)
    }

    fn commit(&mut self) -> Result<(), AuditError> {
        self.out.flush()?;
        if self.options.fsync {
            self.out.get_ref().sync_data()?;
        }
        self.committed = self.pending;
        Ok(())
    }

    fn chain(&self) -> Option<AuditChain> {
        Some(self.committed)
    }
}

/// A reader that counts and hashes the bytes taken from it.
#[derive(Debug)]
struct Hashed<R> {
    inner: R,
    consumed: u64,
    hasher: Sha256,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The reason of the error for an entry cut short by the end of the input.
const TRUNCATED: &str = "truncated entry";

/// Reads an audit file written by [`AuditFileSink`], one record at a time, verifying the hash
/// chain and the sequence numbers.
#[derive(Debug)]
pub struct AuditFileReader<R = BufReader<File>> {
    input: Hashed<R>,
    requesters: Vec<RequesterId>,
    /// The requesters defined up to the last complete record.
    good_requesters: Vec<RequesterId>,
    chain: AuditChain,
    failed: bool,
}

/// Opens an audit file for reading back (see [`AuditFileReader`]).
///
/// # Errors
/// [`AuditError::Io`] if the file cannot be opened; [`AuditError::Malformed`] for a wrong magic
/// or version.
pub fn read_audit_file(path: impl AsRef<Path>) -> Result<AuditFileReader, AuditError> {
    audit_reader(BufReader::with_capacity(1 << 20, File::open(path)?))
}

/// Reads an audit file from any byte source (e.g. a slice), checking the header.
///
/// # Errors
/// As [`read_audit_file`].
pub fn audit_reader<R: Read>(mut input: R) -> Result<AuditFileReader<R>, AuditError> {
    let mut h = [0u8; 10];
    input.read_exact(&mut h).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            AuditError::Malformed("not an audit file (shorter than its header)")
        } else {
            AuditError::Io(e)
        }
    })?;
    if &h[..8] != MAGIC {
        return Err(AuditError::Malformed("not an audit file (magic)"));
    }
    match u16::from_le_bytes([h[8], h[9]]) {
        VERSION => {}
        1 => {
            return Err(AuditError::Malformed(
                "audit file version 1 (no hash chain), written by an older cryptonn; this build \
                 reads version 2: move the old state directory aside",
            ))
        }
        _ => return Err(AuditError::Malformed("unsupported audit file version")),
    }
    Ok(AuditFileReader {
        input: Hashed {
            inner: input,
            consumed: HEADER_LEN,
            hasher: Sha256::new(),
        },
        requesters: Vec::new(),
        good_requesters: Vec::new(),
        chain: genesis(),
        failed: false,
    })
}

fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<(), AuditError> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            AuditError::Malformed(TRUNCATED)
        } else {
            AuditError::Io(e)
        }
    })
}

fn get<const N: usize>(input: &mut impl Read) -> Result<[u8; N], AuditError> {
    let mut b = [0u8; N];
    read_exact(input, &mut b)?;
    Ok(b)
}

fn get_json<T: serde::de::DeserializeOwned>(input: &mut impl Read) -> Result<T, AuditError> {
    let len = u32::from_le_bytes(get(input)?) as usize;
    if len > MAX_JSON {
        return Err(AuditError::Malformed("JSON part too long"));
    }
    // Read in steps, so that a damaged length cannot allocate more than the input holds.
    let mut json = Vec::new();
    input
        .take(len as u64)
        .read_to_end(&mut json)
        .map_err(AuditError::Io)?;
    if json.len() != len {
        return Err(AuditError::Malformed(TRUNCATED));
    }
    serde_json::from_slice(&json).map_err(|_| AuditError::Malformed("record JSON does not parse"))
}

/// One entry: a requester definition (`None`) or a record.
type Entry = Option<AuditRecord>;

impl<R: Read> AuditFileReader<R> {
    /// The chain position after the last entry read.
    #[must_use]
    pub fn chain(&self) -> AuditChain {
        self.chain
    }

    /// Reads the next entry; `Ok(None)` at a clean end of the input.
    fn next_entry(&mut self) -> Result<Option<Entry>, AuditError> {
        let start = self.input.consumed;
        self.input.hasher = Sha256::new();
        let mut tag = [0u8; 1];
        if self.input.read(&mut tag)? == 0 {
            return Ok(None);
        }
        let at = |e: AuditError| match e {
            AuditError::Malformed(reason) => AuditError::Corrupt {
                offset: start,
                reason,
            },
            e => e,
        };
        let prev: [u8; 32] = get(&mut self.input).map_err(at)?;
        let entry = match tag[0] {
            TAG_REQUESTER => {
                self.read_requester().map_err(at)?;
                None
            }
            TAG_RECORD => Some(self.read_record().map_err(at)?),
            _ => return Err(at(AuditError::Malformed("unknown entry tag"))),
        };
        if prev != self.chain.hash {
            return Err(at(AuditError::Malformed(
                "the entry does not carry its predecessor's hash (hash chain broken)",
            )));
        }
        let hash = std::mem::take(&mut self.input.hasher).finalize().into();
        self.chain = AuditChain {
            records: self.chain.records + u64::from(entry.is_some()),
            bytes: self.input.consumed,
            hash,
        };
        if entry.is_some() {
            self.good_requesters.clone_from(&self.requesters);
        }
        Ok(Some(entry))
    }

    /// Reads every entry; stops without error at a torn last entry. Returns the chain after
    /// the last complete record, and the chain at `checkpoint` if an entry ends there.
    fn scan_chain(
        &mut self,
        checkpoint: Option<u64>,
    ) -> Result<(AuditChain, Option<AuditChain>), AuditError> {
        let mut end = self.chain;
        let mut found = (checkpoint == Some(self.chain.bytes)).then_some(self.chain);
        loop {
            match self.next_entry() {
                Ok(Some(entry)) => {
                    if checkpoint == Some(self.chain.bytes) {
                        found = Some(self.chain);
                    }
                    if entry.is_some() {
                        end = self.chain;
                    }
                }
                Ok(None) => break,
                Err(AuditError::Corrupt {
                    reason: TRUNCATED, ..
                }) => break,
                Err(e) => return Err(e),
            }
        }
        // Requester definitions after the last record belong to a torn request: cut them too.
        if found.is_some_and(|f| f.bytes > end.bytes) {
            found = None;
        }
        Ok((end, found))
    }

    fn read_requester(&mut self) -> Result<(), AuditError> {
        let id = u32::from_le_bytes(get(&mut self.input)?) as usize;
        let len = u16::from_le_bytes(get(&mut self.input)?) as usize;
        let mut name = vec![0u8; len];
        read_exact(&mut self.input, &mut name)?;
        if id != self.requesters.len() {
            return Err(AuditError::Malformed("requester ids out of order"));
        }
        let name = String::from_utf8(name)
            .map_err(|_| AuditError::Malformed("requester name is not UTF-8"))?;
        self.requesters.push(RequesterId(name));
        Ok(())
    }

    /// Reads the next record, `Ok(None)` at a clean end of the input.
    ///
    /// # Errors
    /// [`AuditError::Corrupt`] for a truncated or malformed entry, a broken hash chain, an
    /// unknown requester, or a sequence number that is not the previous one plus one.
    pub fn next_record(&mut self) -> Result<Option<AuditRecord>, AuditError> {
        loop {
            match self.next_entry()? {
                None => return Ok(None),
                Some(Some(record)) => return Ok(Some(record)),
                Some(None) => {}
            }
        }
    }

    fn read_record(&mut self) -> Result<AuditRecord, AuditError> {
        let i = &mut self.input;
        let seq = u64::from_le_bytes(get(i)?);
        let unix_time = u64::from_le_bytes(get(i)?);
        let domain = DomainId(u64::from_le_bytes(get(i)?));
        let requester = u32::from_le_bytes(get(i)?) as usize;
        let requester = self
            .requesters
            .get(requester)
            .cloned()
            .ok_or(AuditError::Malformed("record names an undefined requester"))?;
        let key = match get::<1>(i)?[0] {
            0 => {
                let vector_sha256 = get::<32>(i)?;
                let nnz = u32::from_le_bytes(get(i)?) as usize;
                let vector = match get::<1>(i)?[0] {
                    0 => None,
                    1 => Some(get_json(i)?),
                    _ => return Err(AuditError::Malformed("vector flag")),
                };
                AuditedKey::Feip {
                    vector_sha256,
                    nnz,
                    vector,
                }
            }
            1 => {
                let op = get::<1>(i)?[0];
                let operand = i64::from_le_bytes(get(i)?);
                let commitment_sha256 = get::<32>(i)?;
                AuditedKey::Febo {
                    op,
                    operand,
                    commitment_sha256,
                }
            }
            _ => return Err(AuditError::Malformed("unknown key kind")),
        };
        let outcome = match get::<1>(i)?[0] {
            0 => AuditOutcome::Issued,
            1 => AuditOutcome::Refused(get_json(i)?),
            2 => AuditOutcome::Rotated {
                successor: DomainId(u64::from_le_bytes(get(i)?)),
            },
            _ => return Err(AuditError::Malformed("unknown outcome")),
        };
        if seq != self.chain.records {
            return Err(AuditError::Malformed("sequence numbers are not contiguous"));
        }
        Ok(AuditRecord {
            seq,
            unix_time,
            domain,
            requester,
            key,
            outcome,
        })
    }
}

impl<R: Read> Iterator for AuditFileReader<R> {
    type Item = Result<AuditRecord, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.next_record().transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::audit::{AuditConfig, AuditLog};
    use crate::coordinator::error::PolicyRefusal;
    use crate::coordinator::messages::{KeyVectorData, SparseKeyVector};

    /// Every key and outcome kind survives the binary encoding; a second requester is interned;
    /// a spliced-out record breaks the sequence and is reported.
    #[test]
    fn file_sink_round_trips_every_record_kind() {
        let dir = std::env::temp_dir().join(format!("cryptonn-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kinds.cnnaudit");
        let sink = AuditFileSink::create(&path, AuditFileOptions::default()).unwrap();
        let mut log = AuditLog::with_sink(
            AuditConfig {
                store_vectors: true,
            },
            Box::new(sink),
        );
        let y = SparseKeyVector::from_data(&KeyVectorData::Dense(vec![0, 3, -2, 0]), 4, 9).unwrap();
        let (a, b) = (RequesterId::new("a"), RequesterId::new("bé"));
        let key = log.feip_key(&y);
        log.append(5, DomainId(1), &a, key.clone(), AuditOutcome::Issued)
            .unwrap();
        let febo = AuditedKey::Febo {
            op: 1,
            operand: -7,
            commitment_sha256: [0xab; 32],
        };
        log.append(6, DomainId(1), &b, febo, AuditOutcome::Issued)
            .unwrap();
        let refusal = AuditOutcome::Refused(PolicyRefusal::RankCapReached { rank: 4, cap: 3 });
        log.append(7, DomainId(2), &a, key.clone(), refusal)
            .unwrap();
        let rotated = AuditOutcome::Rotated {
            successor: DomainId(3),
        };
        log.append(8, DomainId(2), &b, key, rotated).unwrap();
        log.commit().unwrap();
        assert_eq!(log.len(), 4);
        let back: Vec<AuditRecord> = read_audit_file(&path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut memory = AuditLog::new(*log.config());
        for r in &back {
            memory
                .append(
                    r.unix_time,
                    r.domain,
                    &r.requester,
                    r.key.clone(),
                    r.outcome.clone(),
                )
                .unwrap();
        }
        assert_eq!(back.as_slice(), memory.records());
        assert_eq!(back[1].requester, b);
        assert!(matches!(&back[0].key, AuditedKey::Feip { vector: Some(v), .. } if *v == y));
        // A file whose first record is missing (the second written alone) breaks the sequence.
        let spliced = dir.join("spliced.cnnaudit");
        let mut sink = AuditFileSink::create(&spliced, AuditFileOptions::default()).unwrap();
        sink.append(&back[1]).unwrap();
        sink.commit().unwrap();
        let err = read_audit_file(&spliced)
            .unwrap()
            .next_record()
            .unwrap_err();
        assert!(
            matches!(err, AuditError::Corrupt { offset, .. } if offset > 10),
            "{err}"
        );
        // A wrong magic is refused.
        std::fs::write(&spliced, b"NOTAUDIT\x01\x00").unwrap();
        assert!(read_audit_file(&spliced).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
