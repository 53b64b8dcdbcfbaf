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
//! [`AuditFileSink`] it is 68 bytes per FEIP key on disk. The authority appends the records of
//! a request and then [`commits`](AuditSink::commit) them *before* it hands out the keys; if the
//! sink fails, no key of that request is returned.
//!
//! # The audit file format (version 1)
//! An 8-byte magic `CNNAUDIT`, a little-endian `u16` version, then entries, each a tag byte:
//! - `0x01` requester definition: `u32` id, `u16` length, UTF-8 name (written once per
//!   requester, before its first record);
//! - `0x02` record: `u64` seq, `u64` unix time, `u64` domain, `u32` requester id, the key
//!   (`0` FEIP: 32-byte SHA-256, `u32` nnz, `u8` has-vector [, `u32` length, JSON vector];
//!   `1` FEBO: `u8` op, `i64` operand, 32-byte SHA-256), the outcome (`0` issued; `1` refused:
//!   `u32` length, JSON reason; `2` rotated: `u64` successor).
//!
//! All integers are little-endian. [`read_audit_file`] reads a file back and checks that the
//! sequence numbers are contiguous from 0; a truncated or malformed entry is an error.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

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
}

/// Options of an [`AuditFileSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditFileOptions {
    /// `fsync` the file at every commit (else commits only flush to the operating system).
    pub fsync: bool,
}

/// An append-only binary audit file (format in the [module docs](self)).
#[derive(Debug)]
pub struct AuditFileSink {
    path: PathBuf,
    out: BufWriter<File>,
    options: AuditFileOptions,
    requesters: Vec<RequesterId>,
    buf: Vec<u8>,
}

const MAGIC: &[u8; 8] = b"CNNAUDIT";
const VERSION: u16 = 1;
const TAG_REQUESTER: u8 = 1;
const TAG_RECORD: u8 = 2;

impl AuditFileSink {
    /// Creates (or truncates) the file at `path` and writes the header.
    ///
    /// # Errors
    /// [`AuditError::Io`] if the file cannot be created or written.
    pub fn create(path: impl AsRef<Path>, options: AuditFileOptions) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        out.flush()?;
        Ok(Self {
            path,
            out,
            options,
            requesters: Vec::new(),
            buf: Vec::with_capacity(128),
        })
    }

    /// Reopens an existing audit file to append to it, after checking every entry (magic,
    /// version, contiguous sequence numbers). An entry cut short at the end of the file — a
    /// write torn by a crash, whose request never returned its keys — is cut off. Returns the
    /// sink and the number of records the file holds; pass that number to
    /// [`AuditLog::resume_with_sink`] so that sequence numbers continue.
    ///
    /// # Errors
    /// [`AuditError::Io`] if the file cannot be opened, read or cut; [`AuditError::Malformed`]
    /// for a malformed entry other than a torn last one (the file is left as it is).
    pub fn open_append(
        path: impl AsRef<Path>,
        options: AuditFileOptions,
    ) -> Result<(Self, u64), AuditError> {
        let path = path.as_ref().to_path_buf();
        let mut reader = read_audit_file(&path)?;
        let mut records = 0u64;
        let mut good_end = reader.input.consumed;
        let mut good_requesters = 0;
        loop {
            match reader.next_record() {
                Ok(Some(_)) => {
                    records += 1;
                    good_end = reader.input.consumed;
                    good_requesters = reader.requesters.len();
                }
                Ok(None) => {
                    // A requester definition may close the file (its record was torn off).
                    if reader.requesters.len() == good_requesters {
                        good_end = reader.input.consumed;
                    }
                    break;
                }
                Err(AuditError::Malformed(TRUNCATED)) => break,
                Err(e) => return Err(e),
            }
        }
        let mut requesters = reader.requesters;
        requesters.truncate(good_requesters);
        drop(reader.input);
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(good_end)?;
        file.sync_all()?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        Ok((
            Self {
                path,
                out: BufWriter::with_capacity(1 << 20, file),
                options,
                requesters,
                buf: Vec::with_capacity(128),
            },
            records,
        ))
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
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
        self.buf.clear();
        self.buf.push(TAG_REQUESTER);
        self.buf.extend_from_slice(&id.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(name);
        self.out.write_all(&self.buf)?;
        self.requesters.push(requester.clone());
        Ok(id)
    }
}

fn put_json(buf: &mut Vec<u8>, value: &impl Serialize) -> Result<(), AuditError> {
    let json = serde_json::to_vec(value)?;
    let len = u32::try_from(json.len()).map_err(|_| AuditError::Malformed("JSON too long"))?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&json);
    Ok(())
}

impl AuditSink for AuditFileSink {
    fn append(&mut self, r: &AuditRecord) -> Result<(), AuditError> {
        let requester = self.requester_id(&r.requester)?;
        let b = &mut self.buf;
        b.clear();
        b.push(TAG_RECORD);
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
        self.out.write_all(&self.buf)?;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), AuditError> {
        self.out.flush()?;
        if self.options.fsync {
            self.out.get_ref().sync_data()?;
        }
        Ok(())
    }
}

/// A reader that counts the bytes taken from it (the end of the last complete entry is where a
/// reopened file is cut).
#[derive(Debug)]
struct Counted<R> {
    inner: R,
    consumed: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

/// The reason of the [`AuditError::Malformed`] for an entry cut short by the end of the file
/// (a torn write at a crash).
const TRUNCATED: &str = "truncated entry";

/// Reads an audit file written by [`AuditFileSink`], one record at a time.
#[derive(Debug)]
pub struct AuditFileReader {
    input: Counted<BufReader<File>>,
    requesters: Vec<RequesterId>,
    next_seq: u64,
    failed: bool,
}

/// Opens an audit file for reading back (see [`AuditFileReader`]).
///
/// # Errors
/// [`AuditError::Io`] if the file cannot be opened; [`AuditError::Malformed`] for a wrong magic
/// or version.
pub fn read_audit_file(path: impl AsRef<Path>) -> Result<AuditFileReader, AuditError> {
    let mut input = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut header = [0u8; 10];
    read_exact(&mut input, &mut header)?;
    if &header[..8] != MAGIC {
        return Err(AuditError::Malformed("not an audit file (magic)"));
    }
    if u16::from_le_bytes([header[8], header[9]]) != VERSION {
        return Err(AuditError::Malformed("unsupported audit file version"));
    }
    Ok(AuditFileReader {
        input: Counted {
            inner: input,
            consumed: header.len() as u64,
        },
        requesters: Vec::new(),
        next_seq: 0,
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
    if len > 1 << 30 {
        return Err(AuditError::Malformed("JSON part too long"));
    }
    let mut json = vec![0u8; len];
    read_exact(input, &mut json)?;
    Ok(serde_json::from_slice(&json)?)
}

impl AuditFileReader {
    /// Reads the next record, `Ok(None)` at a clean end of file.
    ///
    /// # Errors
    /// [`AuditError`] for a truncated or malformed entry, an unknown requester, or a sequence
    /// number that is not the previous one plus one.
    pub fn next_record(&mut self) -> Result<Option<AuditRecord>, AuditError> {
        loop {
            let mut tag = [0u8; 1];
            if self.input.read(&mut tag)? == 0 {
                return Ok(None);
            }
            match tag[0] {
                TAG_REQUESTER => {
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
                }
                TAG_RECORD => return self.read_record().map(Some),
                _ => return Err(AuditError::Malformed("unknown entry tag")),
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
        if seq != self.next_seq {
            return Err(AuditError::Malformed("sequence numbers are not contiguous"));
        }
        self.next_seq += 1;
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

impl Iterator for AuditFileReader {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::messages::KeyVectorData;

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
        assert!(matches!(err, AuditError::Malformed(_)), "{err}");
        // A wrong magic is refused.
        std::fs::write(&spliced, b"NOTAUDIT\x01\x00").unwrap();
        assert!(read_audit_file(&spliced).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
