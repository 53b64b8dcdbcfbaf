//! The server's side: an encrypted dataset loaded from one file or from a directory of parts,
//! verified, and read shard by shard.

use std::collections::VecDeque;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::{hex, io_err, read_header, EncryptedDatasetHeader, PREFIX_LEN, TRAILER_LEN};
use crate::coordinator::key_service::KeyService;
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::fe::febo::FeboCiphertext;
use crate::fe::feip::Ciphertext;
use crate::fe::group::PrimeOrderGroup;

/// One verified file of a dataset: a whole dataset or one part of a sharded encryption.
#[derive(Debug)]
struct PartFile {
    path: PathBuf,
    /// The dataset's index of the file's first shard.
    first_shard: usize,
    /// The file's own header.
    header: EncryptedDatasetHeader,
    records_start: usize,
    /// SHA-256 of each of the file's shards, noted in the verifying pass at load.
    shard_sha256: Vec<[u8; 32]>,
}

impl PartFile {
    /// Checks a file's magic, version, header, group, exact length and SHA-256 trailer in one
    /// streaming pass, noting each shard's own SHA-256.
    fn scan<G: PrimeOrderGroup>(group: &G, path: &Path) -> Result<Self, SecureTrainingError> {
        let bad = |reason: String| SecureTrainingError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let header = read_header(path)?;
        if header.group != group.id().to_byte() {
            return Err(SecureTrainingError::GroupMismatch {
                expected: group.id().to_byte(),
                found: header.group,
            });
        }
        if header.element_len != group.element_len() {
            return Err(bad("element length disagrees with the group".into()));
        }
        let mut file = fs::File::open(path).map_err(io_err(path))?;
        let file_len = file.metadata().map_err(io_err(path))?.len();
        let mut prefix = vec![0u8; PREFIX_LEN];
        file.read_exact(&mut prefix).map_err(io_err(path))?;
        let hlen = u32::from_le_bytes([prefix[10], prefix[11], prefix[12], prefix[13]]) as usize;
        let records_start = PREFIX_LEN + hlen;
        let shards = header.shards();
        let shard_bytes = |s: usize| -> Option<usize> {
            let size = header.params.shard_size;
            let samples = header.images.saturating_sub(s * size).min(size);
            samples
                .checked_mul(header.record_len())?
                .checked_add(header.feature_block_len())
        };
        let expected = header
            .images
            .checked_mul(header.record_len())
            .and_then(|r| r.checked_add(shards.checked_mul(header.feature_block_len())?))
            .and_then(|r| r.checked_add(records_start + TRAILER_LEN))
            .ok_or_else(|| bad("absurd size in header".into()))?;
        if file_len != expected as u64 {
            return Err(bad(format!(
                "{file_len} bytes, the header announces {expected} (truncated or unfinished file)"
            )));
        }
        // One pass over the file: the trailer's hash of everything, and each shard's own.
        let mut whole = Sha256::new();
        whole.update(&prefix);
        let mut head = vec![0u8; hlen];
        file.read_exact(&mut head).map_err(io_err(path))?;
        whole.update(&head);
        let mut shard_sha256 = Vec::with_capacity(shards);
        let mut buf = Vec::new();
        for s in 0..shards {
            let len = shard_bytes(s).ok_or_else(|| bad("absurd size in header".into()))?;
            buf.resize(len, 0);
            file.read_exact(&mut buf).map_err(io_err(path))?;
            whole.update(&buf);
            shard_sha256.push(Sha256::digest(&buf).into());
        }
        let mut trailer = [0u8; TRAILER_LEN];
        file.read_exact(&mut trailer).map_err(io_err(path))?;
        if whole.finalize().as_slice() != trailer {
            return Err(bad("SHA-256 mismatch (damaged or tampered file)".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            first_shard: header.part.map_or(0, |p| p.first_shard),
            header,
            records_start,
            shard_sha256,
        })
    }

    /// The shards `first..end` of the whole dataset this file holds, and the whole dataset's
    /// shard and sample counts.
    fn coverage(&self) -> (usize, usize, usize, usize) {
        let h = &self.header;
        match h.part {
            Some(p) => (
                p.first_shard,
                p.first_shard + h.shards(),
                p.total_shards,
                p.total_images,
            ),
            None => (0, h.shards(), h.shards(), h.images),
        }
    }

    fn describe(&self) -> String {
        let (first, end, total, _) = self.coverage();
        format!("{} (shards {first}..{end} of {total})", self.path.display())
    }
}

/// Shard index and verified bytes of the shards read most recently, oldest first.
type RecentShards = VecDeque<(usize, Arc<Vec<u8>>)>;

/// How many verified shards an [`EncryptedDataset`] keeps in memory: a training step reads one
/// shard (its batch) several times (forward, output error, weight gradient).
pub const SHARDS_KEPT: usize = 2;

/// The open file (by part index) and the shards read most recently.
struct Reader {
    open: Option<(usize, fs::File)>,
    recent: RecentShards,
}

/// An encrypted training set as the server holds it: ciphertexts and public metadata only.
/// There is no accessor to plaintext; the only way to learn about an image is through function
/// keys from the authority.
///
/// It comes from one file, or from a directory of parts of a sharded encryption
/// (`cryptonn client encrypt --shards A..B`): [`load`](Self::load) checks that the parts make
/// up exactly one dataset (every shard once; the same group, parameters, layout and source
/// digest) and presents them as one, with the shards numbered as in the whole dataset.
///
/// The files are never held in memory as a whole: [`load`](Self::load) streams each once,
/// shard by shard, to check its length and SHA-256 trailer and to note each shard's own
/// SHA-256; afterwards each shard is read from its file when training first needs it and
/// checked against that digest, so a shard changed after the load is an error that names it.
/// Memory is bounded by [`SHARDS_KEPT`] shards, whatever the dataset's size.
pub struct EncryptedDataset<G: PrimeOrderGroup> {
    group: G,
    /// The whole dataset's header (for parts: their domains and digests in shard order).
    header: EncryptedDatasetHeader,
    parts: Vec<PartFile>,
    reader: Mutex<Reader>,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for EncryptedDataset<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedDataset")
            .field("group", &self.group.id())
            .field("images", &self.header.images)
            .field("shard_size", &self.header.params.shard_size)
            .field("parts", &self.parts.len())
            .finish_non_exhaustive()
    }
}

fn parts_error(dir: &Path, reason: String) -> SecureTrainingError {
    SecureTrainingError::Parts {
        dir: dir.to_path_buf(),
        reason,
    }
}

impl<G: PrimeOrderGroup> EncryptedDataset<G> {
    /// Loads and checks an encrypted dataset: a file written by
    /// [`encrypt_samples_to_file`](super::encrypt_samples_to_file), or a directory of the
    /// `.cnnenc` parts of a sharded encryption ([`encrypt_part_to_file`](super::encrypt_part_to_file)),
    /// in any order (a directory holding one complete file is that file). Every file: magic,
    /// version, header, group, exact length and its SHA-256 trailer.
    ///
    /// # Errors
    /// [`SecureTrainingError::Io`], [`SecureTrainingError::Corrupt`] (truncated, tampered,
    /// unfinished), [`SecureTrainingError::GroupMismatch`]; [`SecureTrainingError::Parts`] for
    /// parts that do not make up one dataset (a shard missing or held twice, a part of
    /// another encryption, no `.cnnenc` file in the directory) and for a lone part file.
    pub fn load(group: G, path: &Path) -> Result<Self, SecureTrainingError> {
        if path.is_dir() {
            let mut files = Vec::new();
            for entry in fs::read_dir(path).map_err(io_err(path))? {
                let p = entry.map_err(io_err(path))?.path();
                if p.extension().is_some_and(|x| x == "cnnenc") && p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
            if files.is_empty() {
                return Err(parts_error(
                    path,
                    "no encrypted dataset (.cnnenc) in this directory".into(),
                ));
            }
            let parts = files
                .iter()
                .map(|p| PartFile::scan(&group, p))
                .collect::<Result<Vec<_>, _>>()?;
            Self::combine(group, path, parts)
        } else {
            let part = PartFile::scan(&group, path)?;
            Self::combine(group, path, vec![part])
        }
    }

    /// Loads one part file on its own (the data owner registers its label commitments with
    /// it): the part's shards numbered from 0, its header as written.
    ///
    /// # Errors
    /// As [`load`](Self::load) for one file.
    pub fn load_part(group: G, path: &Path) -> Result<Self, SecureTrainingError> {
        let mut part = PartFile::scan(&group, path)?;
        part.first_shard = 0;
        let mut header = part.header.clone();
        header.part = None;
        Ok(Self::new(group, header, vec![part]))
    }

    fn new(group: G, header: EncryptedDatasetHeader, parts: Vec<PartFile>) -> Self {
        Self {
            group,
            header,
            parts,
            reader: Mutex::new(Reader {
                open: None,
                recent: VecDeque::with_capacity(SHARDS_KEPT),
            }),
        }
    }

    /// Checks that `parts` make up exactly one dataset and joins their headers.
    fn combine(
        group: G,
        origin: &Path,
        mut parts: Vec<PartFile>,
    ) -> Result<Self, SecureTrainingError> {
        let Some(first) = parts.first() else {
            return Err(parts_error(origin, "no dataset file".into()));
        };
        let (_, _, total_shards, total_images) = first.coverage();
        let same = |a: &EncryptedDatasetHeader, b: &EncryptedDatasetHeader| {
            a.group == b.group
                && a.element_len == b.element_len
                && a.params == b.params
                && a.layout == b.layout
                && a.source_digest == b.source_digest
        };
        for p in &parts[1..] {
            let (_, _, shards, images) = p.coverage();
            if !same(&first.header, &p.header) || (shards, images) != (total_shards, total_images) {
                return Err(parts_error(
                    origin,
                    format!(
                        "{} and {} are parts of different encryptions (other data, parameters \
                         or layout)",
                        first.describe(),
                        p.describe()
                    ),
                ));
            }
        }
        parts.sort_by_key(|p| p.coverage().0);
        let mut next = 0;
        for (k, p) in parts.iter().enumerate() {
            let (start, end, _, _) = p.coverage();
            if start < next {
                let prev = &parts[k - 1];
                let what = if prev.coverage().0 == start && prev.coverage().1 == end {
                    "duplicate parts"
                } else {
                    "overlapping parts"
                };
                return Err(parts_error(
                    origin,
                    format!("{what}: {} and {}", prev.describe(), p.describe()),
                ));
            }
            if start > next {
                return Err(parts_error(
                    origin,
                    format!(
                        "shards {next}..{start} of {total_shards} are missing (no part holds \
                         them; the next part is {})",
                        p.describe()
                    ),
                ));
            }
            next = end;
        }
        if next != total_shards {
            return Err(parts_error(
                origin,
                format!(
                    "shards {next}..{total_shards} of {total_shards} are missing (no part holds \
                     them)"
                ),
            ));
        }
        let mut header = parts[0].header.clone();
        header.images = total_images;
        header.part = None;
        header.domains = parts
            .iter()
            .flat_map(|p| p.header.domains.clone())
            .collect();
        header.public_key_sha256 = parts
            .iter()
            .flat_map(|p| p.header.public_key_sha256.clone())
            .collect();
        header.feature_domains = parts
            .iter()
            .flat_map(|p| p.header.feature_domains.clone())
            .collect();
        header.feature_public_key_sha256 = parts
            .iter()
            .flat_map(|p| p.header.feature_public_key_sha256.clone())
            .collect();
        header.validate(origin)?;
        Ok(Self::new(group, header, parts))
    }

    /// Shard `s`'s bytes, read from its file (or kept from a recent read) and checked against
    /// the digest noted at load.
    fn shard(&self, s: usize) -> Result<Arc<Vec<u8>>, SecureTrainingError> {
        let mut reader = self
            .reader
            .lock()
            .map_err(|_| SecureTrainingError::Parameters("shard reader poisoned".into()))?;
        let Reader { open, recent } = &mut *reader;
        if let Some((_, bytes)) = recent.iter().find(|(k, _)| *k == s) {
            return Ok(Arc::clone(bytes));
        }
        let k = self.parts.partition_point(|p| p.first_shard <= s);
        let Some(part) = k.checked_sub(1).and_then(|k| self.parts.get(k)) else {
            return Err(SecureTrainingError::Parameters(format!(
                "shard {s} out of range"
            )));
        };
        let local = s - part.first_shard;
        let changed = |reason: String| SecureTrainingError::Corrupt {
            path: part.path.clone(),
            reason: format!("shard {s}: {reason}"),
        };
        let Some(digest) = part.shard_sha256.get(local) else {
            return Err(SecureTrainingError::Parameters(format!(
                "shard {s} out of range"
            )));
        };
        let h = &self.header;
        let len = self.shard_len(s) * h.record_len() + h.feature_block_len();
        let start = part.records_start
            + local * (h.params.shard_size * h.record_len() + h.feature_block_len());
        if open.as_ref().map(|(i, _)| *i) != Some(k - 1) {
            let file = fs::File::open(&part.path)
                .map_err(|e| changed(format!("unreadable since the load ({e})")))?;
            *open = Some((k - 1, file));
        }
        let mut bytes = vec![0u8; len];
        if let Some((_, file)) = open.as_mut() {
            file.seek(SeekFrom::Start(start as u64))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(|e| changed(format!("unreadable since the load ({e})")))?;
        }
        if Sha256::digest(&bytes).as_slice() != digest {
            return Err(changed(
                "SHA-256 mismatch: the file changed after it was loaded and verified".into(),
            ));
        }
        let bytes = Arc::new(bytes);
        if recent.len() == SHARDS_KEPT {
            recent.pop_front();
        }
        recent.push_back((s, Arc::clone(&bytes)));
        Ok(bytes)
    }

    /// Checks every shard's public-key digest against the key service's public key for the
    /// shard's domain.
    ///
    /// # Errors
    /// [`SecureTrainingError::WrongKey`] naming the first shard that does not match (dataset
    /// of another authority, another key or a wrong domain); the key service's errors.
    pub fn verify_keys<K: KeyService<G> + ?Sized>(
        &self,
        keys: &K,
    ) -> Result<(), SecureTrainingError> {
        let h = &self.header;
        let shards = h.domains.len();
        for (shard, (&domain, digest)) in h
            .domains
            .iter()
            .zip(&h.public_key_sha256)
            .chain(h.feature_domains.iter().zip(&h.feature_public_key_sha256))
            .enumerate()
        {
            let shard = shard % shards.max(1);
            let sha = keys
                .public_key_sha256(&self.group, domain)
                .map_err(|_| SecureTrainingError::WrongKey { shard, domain })?;
            if hex(&sha) != *digest {
                return Err(SecureTrainingError::WrongKey { shard, domain });
            }
        }
        Ok(())
    }

    /// The group.
    #[must_use]
    pub fn group(&self) -> &G {
        &self.group
    }
    /// The header (of the whole dataset, for parts).
    #[must_use]
    pub fn header(&self) -> &EncryptedDatasetHeader {
        &self.header
    }
    /// The files the dataset was loaded from (one, or its parts in shard order).
    #[must_use]
    pub fn files(&self) -> Vec<&Path> {
        self.parts.iter().map(|p| p.path.as_path()).collect()
    }
    /// Number of images.
    #[must_use]
    pub fn len(&self) -> usize {
        self.header.images
    }
    /// Whether there are no images (never, for a loaded file).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.header.images == 0
    }
    /// Bytes of ciphertext (all records and feature-major blocks).
    #[must_use]
    pub fn ciphertext_bytes(&self) -> usize {
        self.header.images * self.header.record_len()
            + self.header.shards() * self.header.feature_block_len()
    }

    /// The number of samples of shard `s`.
    fn shard_len(&self, s: usize) -> usize {
        let size = self.header.params.shard_size;
        self.header.images.saturating_sub(s * size).min(size)
    }

    /// Sample `i`'s record: its shard and the record's byte range in it.
    fn record(&self, i: usize) -> Result<(Arc<Vec<u8>>, usize), SecureTrainingError> {
        let h = &self.header;
        let (s, j) = (h.shard_of(i), i % h.params.shard_size);
        Ok((self.shard(s)?, j * h.record_len()))
    }

    fn elements(&self, bytes: &[u8]) -> Result<Vec<G::Element>, SecureTrainingError> {
        bytes
            .chunks_exact(self.header.element_len)
            .map(|b| {
                self.group
                    .element_from_bytes(b)
                    .map_err(|e| SecureTrainingError::Fe(e.into()))
            })
            .collect()
    }

    /// Sample `i`'s FEIP ciphertext (decoded and validated).
    ///
    /// # Errors
    /// [`SecureTrainingError::Fe`] for an invalid element encoding;
    /// [`SecureTrainingError::Parameters`] for `i` out of range;
    /// [`SecureTrainingError::Corrupt`] naming the shard if its bytes changed since the load.
    pub fn image_ciphertext(&self, i: usize) -> Result<Ciphertext<G>, SecureTrainingError> {
        self.check_index(i)?;
        let el = self.header.element_len;
        let d = self.header.layout.input_len;
        let (shard, start) = self.record(i)?;
        let mut e = self.elements(&shard[start..start + (1 + d) * el])?;
        let ct0 = e.remove(0);
        Ok(Ciphertext::from_parts(ct0, e))
    }

    /// Sample `i`'s `ct0 = g^r` alone (decoded and validated), without decoding the rest of
    /// its ciphertext: what a noisy domain's owner registers.
    ///
    /// # Errors
    /// As [`image_ciphertext`](Self::image_ciphertext).
    pub fn image_ct0(&self, i: usize) -> Result<G::Element, SecureTrainingError> {
        self.check_index(i)?;
        let el = self.header.element_len;
        let (shard, start) = self.record(i)?;
        self.group
            .element_from_bytes(&shard[start..start + el])
            .map_err(|e| SecureTrainingError::Fe(e.into()))
    }

    /// Sample `i`'s FEBO label ciphertexts, one per class.
    ///
    /// # Errors
    /// As [`image_ciphertext`](Self::image_ciphertext).
    pub fn label_ciphertexts(
        &self,
        i: usize,
    ) -> Result<Vec<FeboCiphertext<G>>, SecureTrainingError> {
        self.check_index(i)?;
        let el = self.header.element_len;
        let d = self.header.layout.input_len;
        let (shard, start) = self.record(i)?;
        let e = self.elements(&shard[start + (1 + d) * el..start + self.header.record_len()])?;
        Ok(e.chunks_exact(2)
            .map(|p| FeboCiphertext::from_parts(p[0].clone(), p[1].clone()))
            .collect())
    }

    /// Shard `s`'s feature-major FEIP ciphertext of feature `q`: the vector of feature `q` over
    /// the shard's samples (in order; zero in the slots of a short last shard).
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] if the dataset has no feature-major blocks or `s`,
    /// `q` are out of range; [`SecureTrainingError::Fe`] for an invalid element.
    pub fn feature_ciphertext(
        &self,
        s: usize,
        q: usize,
    ) -> Result<Ciphertext<G>, SecureTrainingError> {
        let h = &self.header;
        let d = h.layout.input_len;
        if !h.layout.feature_major || s >= h.shards() || q >= d {
            return Err(SecureTrainingError::Parameters(format!(
                "no feature-major ciphertext for shard {s}, feature {q}"
            )));
        }
        let el = h.element_len;
        let ct_len = (1 + h.params.shard_size) * el;
        let start = self.shard_len(s) * h.record_len() + q * ct_len;
        let shard = self.shard(s)?;
        let mut e = self.elements(&shard[start..start + ct_len])?;
        let ct0 = e.remove(0);
        Ok(Ciphertext::from_parts(ct0, e))
    }

    fn check_index(&self, i: usize) -> Result<(), SecureTrainingError> {
        if i >= self.header.images {
            return Err(SecureTrainingError::Parameters(format!(
                "image {i} out of range for {} images",
                self.header.images
            )));
        }
        Ok(())
    }
}
