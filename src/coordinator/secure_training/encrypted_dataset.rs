//! The data owner's side: per-shard key domains, encryption of the training set, and the
//! versioned on-disk format of the encrypted dataset (which the server loads).
//!
//! # Format (version 1)
//!
//! ```text
//! "CNNENCDS" | version u16 LE | header length u32 LE | header (JSON, EncryptedDatasetHeader)
//!            | record 0 | record 1 | … | SHA-256 of everything before (32 bytes)
//! record i  = ct0 | ct_0 … ct_783 (FEIP, image i's pixels xq)
//!           | (cmt_k | ct_k) for k = 0..10 (FEBO, yq_k = S_p · [k = π(label_i)])
//! ```
//!
//! Elements use the group's canonical encoding (32 bytes on Ristretto255, so a record is
//! 805 · 32 = 25,760 bytes and 60,000 images take 1.55 GB). The header names the group, the
//! shapes, the scales and pixel normalisation, the key domain of every shard with the SHA-256
//! of its public key, and a digest of the plaintext source that lets the data owner decide
//! whether a cached file is still current.
//!
//! A file is written to a temporary name and renamed only when complete, so an interrupted run
//! never leaves a file that reads as complete. [`EncryptedDataset::load`] checks magic,
//! version, header, exact length and the SHA-256 trailer; [`EncryptedDataset::verify_keys`]
//! checks every shard's public-key digest against the authority's (a dataset of another
//! authority or key fails there); group elements are fully validated when they are decoded.
//!
//! The header's `source_digest` hashes the plaintext images, labels and the label mapping; a
//! server that already knew the plaintext could test guesses against it. It is a cache key for
//! the data owner, not a secret-keyed MAC.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand_core::OsRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::coordinator::authority::{Authority, DomainConfig};
use crate::coordinator::key_service::KeyService;
use crate::coordinator::messages::{DomainAccess, DomainId, DomainPublicKey};
use crate::coordinator::policy::PolicyConfig;
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::fe::febo::{Febo, FeboCiphertext, FeboParams};
use crate::fe::feip::{Ciphertext, Feip, FeipParams};
use crate::fe::group::PrimeOrderGroup;
use crate::nn::data::{Dataset, LabelPermutation, PixelNormalization, CLASSES, IMAGE_PIXELS};
use crate::nn::error::NnError;
use crate::nn::first_layer::{PixelEncoding, QuantConfig};

/// Magic bytes of an encrypted dataset file.
pub const MAGIC: &[u8; 8] = b"CNNENCDS";
/// The format version written and read.
pub const VERSION: u16 = 1;
/// Elements per record: `ct0`, 784 pixel components, 10 FEBO ciphertexts of 2 elements.
pub const ELEMENTS_PER_RECORD: usize = 1 + IMAGE_PIXELS + 2 * CLASSES;
const PREFIX_LEN: usize = 8 + 2 + 4;
const TRAILER_LEN: usize = 32;
/// Largest header accepted (a header names one domain per shard).
const MAX_HEADER_LEN: usize = 64 << 20;

/// What the data owner encrypts with: shard size, scales, normalisation and the key bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EncryptionParams {
    /// Images per shard (= the training mini-batch size).
    pub shard_size: usize,
    /// `S_x`, the pixel scale.
    pub scale_x: f64,
    /// `S_p`, the scale of one-hot labels.
    pub scale_p: f64,
    /// The pixel normalisation.
    pub normalization: PixelNormalization,
    /// `Y`, the largest `|y_p|` of a key vector the shard domains accept (it must cover
    /// `4 · max|wq|` and `max|dq|`).
    pub key_bound: u64,
}

impl EncryptionParams {
    /// The default key bound `Y = 2^30`.
    pub const DEFAULT_KEY_BOUND: u64 = 1 << 30;

    /// Parameters matching a training configuration's quantisation.
    #[must_use]
    pub fn new(quant: &QuantConfig, normalization: PixelNormalization, shard_size: usize) -> Self {
        Self {
            shard_size,
            scale_x: quant.scale_x,
            scale_p: quant.scale_p,
            normalization,
            key_bound: Self::DEFAULT_KEY_BOUND,
        }
    }

    fn check(&self) -> Result<PixelEncoding, SecureTrainingError> {
        if self.shard_size == 0 {
            return Err(SecureTrainingError::Parameters(
                "shard size must be >= 1".into(),
            ));
        }
        if !(self.scale_p.is_finite() && self.scale_p >= 1.0 && self.scale_p.fract() == 0.0) {
            return Err(SecureTrainingError::Parameters(format!(
                "scale_p must be an integer >= 1, got {}",
                self.scale_p
            )));
        }
        PixelEncoding::new(self.scale_x, &self.normalization)
            .map_err(|e| SecureTrainingError::Parameters(e.to_string()))
    }

    /// The pixel encoding `xq(byte)`.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for unusable scales.
    pub fn pixel_encoding(&self) -> Result<PixelEncoding, SecureTrainingError> {
        self.check()
    }

    /// FEIP parameters of a shard domain: `n = 784`, `X = max|xq|`, `Y = key_bound`.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] / [`SecureTrainingError::Fe`].
    pub fn feip_params(&self) -> Result<FeipParams, SecureTrainingError> {
        let x = self.check()?.max_abs().max(1) as u64;
        Ok(FeipParams::new(IMAGE_PIXELS, x, self.key_bound)?)
    }

    /// FEBO bounds of a shard domain: `|yq|, |pq| <= S_p`.
    ///
    /// # Errors
    /// [`SecureTrainingError::Fe`].
    pub fn febo_params(&self) -> Result<FeboParams, SecureTrainingError> {
        let s = self.scale_p as u64;
        Ok(FeboParams::new(s, s)?)
    }

    /// The configuration of a shard domain: FEIP and FEBO, no rank cap and a weight filter that
    /// refuses only the all-zero vector ([`PolicyConfig::per_batch`]).
    ///
    /// # Errors
    /// As [`feip_params`](Self::feip_params).
    pub fn domain_config(&self) -> Result<DomainConfig, SecureTrainingError> {
        Ok(DomainConfig::new(self.feip_params()?)
            .with_febo(self.febo_params()?)
            .with_policy(PolicyConfig::per_batch()))
    }

    /// Number of shards for `images` training images.
    #[must_use]
    pub fn shards(&self, images: usize) -> usize {
        images.div_ceil(self.shard_size.max(1))
    }
}

/// The authority creates one key domain per shard of `images` training images (in order),
/// each bound to `access` (the data owner and its trainer).
///
/// # Errors
/// [`SecureTrainingError::Parameters`] for bad parameters; the authority's errors.
pub fn create_shard_domains<G: PrimeOrderGroup>(
    authority: &mut Authority<G>,
    images: usize,
    params: &EncryptionParams,
    access: &DomainAccess,
) -> Result<Vec<DomainId>, SecureTrainingError> {
    let config = params.domain_config()?;
    (0..params.shards(images))
        .map(|_| Ok(authority.create_domain_for(config, access.clone())?))
        .collect()
}

/// SHA-256 of a shard domain's public key (FEIP parameters and elements, FEBO bounds and
/// element), as lowercase hex.
#[must_use]
pub fn public_key_digest<G: PrimeOrderGroup>(group: &G, pk: &DomainPublicKey<G>) -> String {
    let mut h = Sha256::new();
    h.update(b"cryptonn/shard-public-key/v1");
    h.update([group.id().to_byte()]);
    h.update(pk.domain.0.to_le_bytes());
    let p = pk.feip_params;
    for v in [p.n() as u64, p.x_bound(), p.y_bound()] {
        h.update(v.to_le_bytes());
    }
    for e in pk.feip.elements() {
        h.update(group.element_to_bytes(e));
    }
    if let Some((fp, fk)) = &pk.febo {
        h.update([1]);
        h.update(fp.x_bound().to_le_bytes());
        h.update(fp.y_bound().to_le_bytes());
        h.update(group.element_to_bytes(fk.element()));
    } else {
        h.update([0]);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The data owner's digest of what it encrypts: images, labels, the label mapping, the
/// parameters and the group (a cache key; see the module docs).
#[must_use]
pub fn source_digest(
    group_id: u8,
    data: &Dataset,
    labels: &LabelPermutation,
    params: &EncryptionParams,
) -> String {
    let mut h = Sha256::new();
    h.update(b"cryptonn/encrypted-dataset-source/v1");
    h.update([group_id]);
    h.update(serde_json::to_vec(params).unwrap_or_default());
    h.update((data.len() as u64).to_le_bytes());
    let map: Vec<u8> = (0..CLASSES as u8).map(|k| labels.apply(k)).collect();
    h.update(&map);
    h.update(data.labels());
    for i in 0..data.len() {
        h.update(data.image(i));
    }
    hex(&h.finalize())
}

/// The header of an encrypted dataset file (public).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncryptedDatasetHeader {
    /// The group's id byte.
    pub group: u8,
    /// Bytes per group element.
    pub element_len: usize,
    /// Number of images.
    pub images: usize,
    /// The encryption parameters.
    pub params: EncryptionParams,
    /// `X`, the largest `|xq|`.
    pub pixel_bound: u64,
    /// `xq` of a padding pixel (public).
    pub padding_value: i64,
    /// The key domain of each shard.
    pub domains: Vec<DomainId>,
    /// SHA-256 (hex) of each shard domain's public key ([`public_key_digest`]).
    pub public_key_sha256: Vec<String>,
    /// The data owner's cache key ([`source_digest`]).
    pub source_digest: String,
}

impl EncryptedDatasetHeader {
    /// Bytes per image record.
    #[must_use]
    pub fn record_len(&self) -> usize {
        ELEMENTS_PER_RECORD * self.element_len
    }

    fn validate(&self, path: &Path) -> Result<(), SecureTrainingError> {
        let bad = |reason: String| SecureTrainingError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if self.params.shard_size == 0 || self.images == 0 {
            return Err(bad("empty dataset or zero shard size".into()));
        }
        let shards = self.params.shards(self.images);
        if self.domains.len() != shards || self.public_key_sha256.len() != shards {
            return Err(bad(format!(
                "{} images in shards of {} need {shards} domains, header has {}",
                self.images,
                self.params.shard_size,
                self.domains.len()
            )));
        }
        let enc = self
            .params
            .pixel_encoding()
            .map_err(|e| bad(e.to_string()))?;
        if enc.encode(0) != self.padding_value || enc.max_abs().max(1) as u64 != self.pixel_bound {
            return Err(bad(
                "padding value or pixel bound disagrees with the scales".into(),
            ));
        }
        Ok(())
    }

    /// The shard of image `i`.
    #[must_use]
    pub fn shard_of(&self, i: usize) -> usize {
        i / self.params.shard_size
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SecureTrainingError + '_ {
    move |source| SecureTrainingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A writer that hashes everything it writes.
struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.inner.write_all(bytes)
    }
}

/// Encodes one image record: FEIP ciphertext of `xq`, FEBO ciphertexts of the one-hot label.
fn encrypt_record<G: PrimeOrderGroup>(
    feip: &Feip<G>,
    febo: &Febo<G>,
    pk: &DomainPublicKey<G>,
    xq: &[i64],
    class: u8,
    one: i64,
) -> Result<Vec<u8>, SecureTrainingError> {
    let group = feip.group();
    // Plain (not prepared) encryption: every shard has its own public key, and building 784
    // fixed-base tables (~1 ms each) costs more than it saves for shards of tens of images.
    let ct = feip.encrypt(&pk.feip, xq, &mut OsRng)?;
    let febo_pk = pk
        .febo
        .as_ref()
        .map(|(_, k)| k)
        .ok_or_else(|| SecureTrainingError::Parameters("shard domain without FEBO".into()))?;
    let mut out = Vec::with_capacity(ELEMENTS_PER_RECORD * group.element_len());
    out.extend_from_slice(&group.element_to_bytes(ct.ct0()));
    for e in ct.components() {
        out.extend_from_slice(&group.element_to_bytes(e));
    }
    for k in 0..CLASSES {
        let y = if k == usize::from(class) { one } else { 0 };
        let c = febo.encrypt(febo_pk, y, &mut OsRng)?;
        out.extend_from_slice(&group.element_to_bytes(c.commitment()));
        out.extend_from_slice(&group.element_to_bytes(c.body()));
    }
    Ok(out)
}

/// Encrypts `data` (labels through `labels`) shard by shard under the shard domains' public
/// keys `pks` and writes the file `path` atomically (temporary file, then rename). Calls
/// `progress(images_done)` after each shard. Returns the header.
///
/// # Errors
/// [`SecureTrainingError::Parameters`] if the number of keys does not match the shards or a
/// key's parameters differ from `params`; encryption errors (a pixel above the bound); I/O
/// errors.
pub fn encrypt_to_file<G: PrimeOrderGroup>(
    group: &G,
    data: &Dataset,
    labels: &LabelPermutation,
    pks: &[DomainPublicKey<G>],
    params: &EncryptionParams,
    path: &Path,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<EncryptedDatasetHeader, SecureTrainingError> {
    let enc = params.check()?;
    let shards = params.shards(data.len());
    if data.is_empty() || pks.len() != shards {
        return Err(SecureTrainingError::Parameters(format!(
            "{} images in shards of {} need {shards} shard keys, got {}",
            data.len(),
            params.shard_size,
            pks.len()
        )));
    }
    let feip_params = params.feip_params()?;
    let febo_params = params.febo_params()?;
    for pk in pks {
        if pk.feip_params != feip_params || pk.febo.as_ref().map(|f| f.0) != Some(febo_params) {
            return Err(SecureTrainingError::Parameters(format!(
                "the public key of {} has other parameters than the encryption's",
                pk.domain
            )));
        }
    }
    let header = EncryptedDatasetHeader {
        group: group.id().to_byte(),
        element_len: group.element_len(),
        images: data.len(),
        params: *params,
        pixel_bound: enc.max_abs().max(1) as u64,
        padding_value: enc.encode(0),
        domains: pks.iter().map(|p| p.domain).collect(),
        public_key_sha256: pks.iter().map(|p| public_key_digest(group, p)).collect(),
        source_digest: source_digest(group.id().to_byte(), data, labels, params),
    };
    let header_json = serde_json::to_vec(&header)
        .map_err(|e| SecureTrainingError::Parameters(format!("header: {e}")))?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
        };
        let mut prefix = Vec::with_capacity(PREFIX_LEN);
        prefix.extend_from_slice(MAGIC);
        prefix.extend_from_slice(&VERSION.to_le_bytes());
        prefix.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
        w.put(&prefix).map_err(io_err(&tmp))?;
        w.put(&header_json).map_err(io_err(&tmp))?;
        let feip = Feip::new(group.clone(), feip_params);
        let febo = Febo::new(group.clone(), febo_params);
        let one = params.scale_p as i64;
        let mut done = 0;
        for (s, pk) in pks.iter().enumerate() {
            let first = s * params.shard_size;
            let last = (first + params.shard_size).min(data.len());
            let records = (first..last)
                .into_par_iter()
                .map(|i| {
                    let xq: Vec<i64> = data.image(i).iter().map(|&p| enc.encode(p)).collect();
                    let class = labels.apply(data.label(i));
                    encrypt_record(&feip, &febo, pk, &xq, class, one)
                })
                .collect::<Result<Vec<_>, _>>()?;
            for r in &records {
                w.put(r).map_err(io_err(&tmp))?;
            }
            done += records.len();
            progress(done);
        }
        let digest = w.hash.finalize();
        let mut inner = w.inner;
        inner.write_all(&digest).map_err(io_err(&tmp))?;
        let file = inner
            .into_inner()
            .map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| header)
}

fn read_prefix(
    path: &Path,
    bytes: &[u8],
) -> Result<(EncryptedDatasetHeader, usize), SecureTrainingError> {
    let bad = |reason: String| SecureTrainingError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < PREFIX_LEN {
        return Err(bad("truncated before the header".into()));
    }
    if &bytes[..8] != MAGIC {
        return Err(bad("bad magic bytes".into()));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(bad(format!(
            "format version {version}, this build reads {VERSION}"
        )));
    }
    let hlen = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
    if hlen > MAX_HEADER_LEN || bytes.len() < PREFIX_LEN + hlen {
        return Err(bad("truncated header".into()));
    }
    let header: EncryptedDatasetHeader =
        serde_json::from_slice(&bytes[PREFIX_LEN..PREFIX_LEN + hlen])
            .map_err(|e| bad(format!("unreadable header: {e}")))?;
    header.validate(path)?;
    Ok((header, PREFIX_LEN + hlen))
}

/// Reads only the header of an encrypted dataset file (for cache decisions; no integrity
/// check of the records).
///
/// # Errors
/// I/O errors and [`SecureTrainingError::Corrupt`].
pub fn read_header(path: &Path) -> Result<EncryptedDatasetHeader, SecureTrainingError> {
    use std::io::Read;
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut prefix = [0u8; PREFIX_LEN];
    f.read_exact(&mut prefix)
        .map_err(|_| SecureTrainingError::Corrupt {
            path: path.to_path_buf(),
            reason: "truncated before the header".into(),
        })?;
    let hlen = u32::from_le_bytes([prefix[10], prefix[11], prefix[12], prefix[13]]) as usize;
    let mut bytes = prefix.to_vec();
    if hlen <= MAX_HEADER_LEN {
        let mut h = vec![0u8; hlen];
        f.read_exact(&mut h)
            .map_err(|_| SecureTrainingError::Corrupt {
                path: path.to_path_buf(),
                reason: "truncated header".into(),
            })?;
        bytes.extend_from_slice(&h);
    }
    Ok(read_prefix(path, &bytes)?.0)
}

/// An encrypted training set as the server holds it: ciphertexts and public metadata only.
/// There is no accessor to plaintext; the only way to learn about an image is through function
/// keys from the authority.
pub struct EncryptedDataset<G: PrimeOrderGroup> {
    group: G,
    header: EncryptedDatasetHeader,
    bytes: Vec<u8>,
    records_start: usize,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for EncryptedDataset<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedDataset")
            .field("group", &self.group.id())
            .field("images", &self.header.images)
            .field("shard_size", &self.header.params.shard_size)
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup> EncryptedDataset<G> {
    /// Loads and checks a file written by [`encrypt_to_file`]: magic, version, header, group,
    /// exact length and the SHA-256 trailer.
    ///
    /// # Errors
    /// [`SecureTrainingError::Io`], [`SecureTrainingError::Corrupt`] (truncated, tampered,
    /// unfinished), [`SecureTrainingError::GroupMismatch`].
    pub fn load(group: G, path: &Path) -> Result<Self, SecureTrainingError> {
        let bytes = fs::read(path).map_err(io_err(path))?;
        Self::from_bytes(group, path, bytes)
    }

    fn from_bytes(group: G, path: &Path, bytes: Vec<u8>) -> Result<Self, SecureTrainingError> {
        let (header, records_start) = read_prefix(path, &bytes)?;
        if header.group != group.id().to_byte() {
            return Err(SecureTrainingError::GroupMismatch {
                expected: group.id().to_byte(),
                found: header.group,
            });
        }
        let bad = |reason: String| SecureTrainingError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if header.element_len != group.element_len() {
            return Err(bad("element length disagrees with the group".into()));
        }
        let expected = header
            .images
            .checked_mul(header.record_len())
            .and_then(|r| r.checked_add(records_start + TRAILER_LEN))
            .ok_or_else(|| bad("absurd size in header".into()))?;
        if bytes.len() != expected {
            return Err(bad(format!(
                "{} bytes, the header announces {expected} (truncated or unfinished file)",
                bytes.len()
            )));
        }
        let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
        if Sha256::digest(body).as_slice() != trailer {
            return Err(bad("SHA-256 mismatch (damaged or tampered file)".into()));
        }
        Ok(Self {
            group,
            header,
            bytes,
            records_start,
        })
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
        for (shard, (&domain, digest)) in self
            .header
            .domains
            .iter()
            .zip(&self.header.public_key_sha256)
            .enumerate()
        {
            let pk = keys
                .public_key(domain)
                .map_err(|_| SecureTrainingError::WrongKey { shard, domain })?;
            if public_key_digest(&self.group, &pk) != *digest {
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
    /// The header.
    #[must_use]
    pub fn header(&self) -> &EncryptedDatasetHeader {
        &self.header
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
    /// Bytes of ciphertext (all records).
    #[must_use]
    pub fn ciphertext_bytes(&self) -> usize {
        self.header.images * self.header.record_len()
    }

    fn record(&self, i: usize) -> &[u8] {
        let len = self.header.record_len();
        let start = self.records_start + i * len;
        &self.bytes[start..start + len]
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

    /// Image `i`'s FEIP ciphertext (decoded and validated).
    ///
    /// # Errors
    /// [`SecureTrainingError::Fe`] for an invalid element encoding;
    /// [`SecureTrainingError::Parameters`] for `i` out of range.
    pub fn image_ciphertext(&self, i: usize) -> Result<Ciphertext<G>, SecureTrainingError> {
        self.check_index(i)?;
        let el = self.header.element_len;
        let mut e = self.elements(&self.record(i)[..(1 + IMAGE_PIXELS) * el])?;
        let ct0 = e.remove(0);
        Ok(Ciphertext::from_parts(ct0, e))
    }

    /// Image `i`'s ten FEBO label ciphertexts.
    ///
    /// # Errors
    /// As [`image_ciphertext`](Self::image_ciphertext).
    pub fn label_ciphertexts(
        &self,
        i: usize,
    ) -> Result<Vec<FeboCiphertext<G>>, SecureTrainingError> {
        self.check_index(i)?;
        let el = self.header.element_len;
        let e = self.elements(&self.record(i)[(1 + IMAGE_PIXELS) * el..])?;
        Ok(e.chunks_exact(2)
            .map(|p| FeboCiphertext::from_parts(p[0].clone(), p[1].clone()))
            .collect())
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

/// The cache file name for a dataset: group, size, shard size and a prefix of the source
/// digest.
#[must_use]
pub fn cache_file_name(group_id: u8, images: usize, shard_size: usize, digest: &str) -> PathBuf {
    let short = digest.get(..16).unwrap_or(digest);
    PathBuf::from(format!(
        "mnist-train-g{group_id}-n{images}-s{shard_size}-{short}.cnnenc"
    ))
}

/// The data owner's cache logic: reuses `dir/`[`cache_file_name`] when its header matches this
/// data, these parameters and these public keys (and `reencrypt` is false); otherwise encrypts
/// afresh. Returns the path and whether the file was reused.
///
/// # Errors
/// As [`encrypt_to_file`].
#[allow(clippy::too_many_arguments)]
pub fn encrypt_or_reuse<G: PrimeOrderGroup>(
    group: &G,
    dir: &Path,
    data: &Dataset,
    labels: &LabelPermutation,
    pks: &[DomainPublicKey<G>],
    params: &EncryptionParams,
    reencrypt: bool,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(PathBuf, bool), SecureTrainingError> {
    let digest = source_digest(group.id().to_byte(), data, labels, params);
    let path = dir.join(cache_file_name(
        group.id().to_byte(),
        data.len(),
        params.shard_size,
        &digest,
    ));
    if !reencrypt {
        if let Ok(h) = read_header(&path) {
            let keys: Vec<String> = pks.iter().map(|p| public_key_digest(group, p)).collect();
            let domains: Vec<DomainId> = pks.iter().map(|p| p.domain).collect();
            if h.source_digest == digest
                && h.params == *params
                && h.public_key_sha256 == keys
                && h.domains == domains
            {
                return Ok((path, true));
            }
        }
    }
    encrypt_to_file(group, data, labels, pks, params, &path, progress)?;
    Ok((path, false))
}

impl From<NnError> for SecureTrainingError {
    fn from(e: NnError) -> Self {
        SecureTrainingError::Parameters(e.to_string())
    }
}
