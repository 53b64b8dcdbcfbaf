//! The data owner's encryption of a dataset file: shard by shard, shards in parallel, streamed
//! to the file in order.
//!
//! Each shard is one batch under its own public key: the FEIP ciphertexts of its samples, the
//! FEBO ciphertexts of their one-hot labels, and (feature-major layouts) one FEIP ciphertext
//! per feature under the shard's feature domain, each batch through
//! [`Feip::encrypt_batch_encoded`] / [`Febo::encrypt_batch_encoded`], which amortise
//! short-lived fixed-base tables of the shard's public key over its samples.
//!
//! Shards are encrypted in windows of [`SHARDS_IN_FLIGHT`] in parallel (and each batch is
//! parallel inside, so the end of a window keeps every core busy), and a finished window is
//! hashed and written while the next one is encrypted: memory holds at most two windows of
//! ciphertexts, whatever the dataset's size.

use std::fs;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::Path;

use rand_core::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{
    io_err, samples_digest, shard_digests, shard_domains, DatasetPart, EncodedSamples,
    EncryptedDatasetHeader, EncryptionParams, ShardPublicKeys, MAGIC, PREFIX_LEN, VERSION,
};
use crate::coordinator::messages::DomainPublicKey;
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::fe::febo::{Febo, FeboParams};
use crate::fe::feip::{Feip, FeipParams};
use crate::fe::group::PrimeOrderGroup;
use crate::nn::data::{Dataset, LabelPermutation};

use super::MnistSamples;

/// Shards encrypted together in one parallel window.
pub const SHARDS_IN_FLIGHT: usize = 4;

/// Where finished shards go: the hashing writer of the file.
type Put<'a> = dyn FnMut(&[u8]) -> Result<(), SecureTrainingError> + Send + 'a;

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

fn check_public_keys<'k, G: PrimeOrderGroup + 'k>(
    pks: impl IntoIterator<Item = &'k DomainPublicKey<G>>,
    feip: FeipParams,
    febo: Option<FeboParams>,
) -> Result<(), SecureTrainingError> {
    for pk in pks {
        if pk.feip_params != feip || pk.febo.as_ref().map(|f| f.0) != febo {
            return Err(SecureTrainingError::Parameters(format!(
                "the public key of {} has other parameters than the encryption's",
                pk.domain
            )));
        }
    }
    Ok(())
}

/// What every shard's encryption shares.
struct ShardEncryptor<'a, G: PrimeOrderGroup> {
    source: &'a dyn EncodedSamples,
    params: &'a EncryptionParams,
    input_len: usize,
    classes: usize,
    feip: Feip<G>,
    febo: Febo<G>,
    feature_feip: Feip<G>,
}

impl<G: PrimeOrderGroup> ShardEncryptor<'_, G> {
    /// Shard `s`'s bytes: its records (FEIP ciphertext, then FEBO ciphertexts of the one-hot
    /// label, per sample), then its feature-major block if `feature_pk` is given.
    fn shard(
        &self,
        s: usize,
        pk: &DomainPublicKey<G>,
        feature_pk: Option<&DomainPublicKey<G>>,
    ) -> Result<Vec<u8>, SecureTrainingError> {
        let size = self.params.shard_size;
        let first = s * size;
        let last = (first + size).min(self.source.len());
        let mut xs: Zeroizing<Vec<Vec<i64>>> = Zeroizing::new(Vec::with_capacity(size));
        let mut ys: Zeroizing<Vec<i64>> = Zeroizing::new(Vec::with_capacity(size * self.classes));
        let one = self.params.scale_p as i64;
        for i in first..last {
            let xq = self.source.encode(i)?;
            let class = self.source.class(i);
            if xq.len() != self.input_len || class >= self.classes {
                return Err(SecureTrainingError::Parameters(format!(
                    "sample {i}: {} features and class {class}, the layout has {} features \
                     and {} classes",
                    xq.len(),
                    self.input_len,
                    self.classes
                )));
            }
            xs.push(xq);
            ys.extend((0..self.classes).map(|k| if k == class { one } else { 0 }));
        }
        let febo_pk =
            pk.febo.as_ref().map(|(_, k)| k).ok_or_else(|| {
                SecureTrainingError::Parameters("shard domain without FEBO".into())
            })?;
        let images = self.feip.encrypt_batch_encoded(&pk.feip, &xs, &mut OsRng)?;
        let labels = self.febo.encrypt_batch_encoded(febo_pk, &ys, &mut OsRng)?;
        let el = self.feip.group().element_len();
        let record = (1 + self.input_len + 2 * self.classes) * el;
        let block = feature_pk.map_or(0, |_| self.input_len * (1 + size) * el);
        let mut out = Vec::with_capacity(xs.len() * record + block);
        for (image, labels) in images.iter().zip(labels.chunks(self.classes)) {
            out.extend_from_slice(image);
            for l in labels {
                out.extend_from_slice(l);
            }
        }
        if let Some(fpk) = feature_pk {
            // Feature q over the shard's samples, zero in the slots of a short shard.
            let columns: Zeroizing<Vec<Vec<i64>>> = Zeroizing::new(
                (0..self.input_len)
                    .map(|q| {
                        let mut v = vec![0i64; size];
                        for (slot, xq) in v.iter_mut().zip(xs.iter()) {
                            *slot = xq[q];
                        }
                        v
                    })
                    .collect(),
            );
            for ct in self
                .feature_feip
                .encrypt_batch_encoded(&fpk.feip, &columns, &mut OsRng)?
            {
                out.extend_from_slice(&ct);
            }
        }
        Ok(out)
    }
}

/// Encrypts MNIST `data` (labels through `labels`) under the shard domains' public keys `pks`
/// and writes `path` ([`encrypt_samples_to_file`] without feature-major blocks).
///
/// # Errors
/// As [`encrypt_samples_to_file`].
pub fn encrypt_to_file<G: PrimeOrderGroup, P: ShardPublicKeys<G> + ?Sized>(
    group: &G,
    data: &Dataset,
    labels: &LabelPermutation,
    pks: &P,
    params: &EncryptionParams,
    path: &Path,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<EncryptedDatasetHeader, SecureTrainingError> {
    let source = MnistSamples::new(data, labels, params)?;
    encrypt_samples_to_file(group, &source, pks, &[], params, path, progress)
}

/// Encrypts `source` shard by shard under the shard domains' public keys `pks` (and, for a
/// feature-major layout, each shard's features under `feature_pks`) and writes the file `path`
/// atomically (temporary file `….tmp-PID`, then rename). Shards are encrypted in parallel and
/// streamed to the file in order (see the module docs). Calls `progress(samples_done)` after
/// each shard written. Returns the header.
///
/// # Errors
/// [`SecureTrainingError::Parameters`] if the number of keys does not match the shards, a key's
/// parameters differ from `params`, or a sample has the wrong length or class; encryption
/// errors (a feature above the bound); I/O errors.
pub fn encrypt_samples_to_file<G: PrimeOrderGroup, P: ShardPublicKeys<G> + ?Sized>(
    group: &G,
    source: &dyn EncodedSamples,
    pks: &P,
    feature_pks: &[DomainPublicKey<G>],
    params: &EncryptionParams,
    path: &Path,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<EncryptedDatasetHeader, SecureTrainingError> {
    let shards = params.shards(source.len());
    encrypt_part_to_file(
        group,
        source,
        pks,
        feature_pks,
        params,
        0..shards,
        path,
        progress,
    )
}

/// Encrypts the shards `shards` of `source` (one part of a sharded encryption) under their
/// domains' public keys `pks` (`pks[k]` for shard `shards.start + k`; feature-major keys
/// likewise) and writes one self-describing part file `path`, atomically: its header names the
/// part's shard range of how many ([`DatasetPart`]), the group, parameters, layout, the source
/// digest of the whole dataset and the part's domains and public-key digests; its trailer is
/// the SHA-256 of the part. The range of all shards writes a whole dataset file (no part
/// field), the same as [`encrypt_samples_to_file`]. `progress` counts the part's samples.
///
/// # Errors
/// As [`encrypt_samples_to_file`]; [`SecureTrainingError::Parameters`] for an empty range or
/// one beyond the dataset's shards.
#[allow(clippy::too_many_arguments)]
pub fn encrypt_part_to_file<G: PrimeOrderGroup, P: ShardPublicKeys<G> + ?Sized>(
    group: &G,
    source: &dyn EncodedSamples,
    pks: &P,
    feature_pks: &[DomainPublicKey<G>],
    params: &EncryptionParams,
    shards: Range<usize>,
    path: &Path,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<EncryptedDatasetHeader, SecureTrainingError> {
    params.check()?;
    let layout = params.data_layout()?;
    let n = source.len();
    let total = params.shards(n);
    if n == 0 || shards.is_empty() || shards.end > total {
        return Err(SecureTrainingError::Parameters(format!(
            "shards {}..{} of {n} samples in {total} shards of {}: an empty range or one \
             beyond the last shard",
            shards.start, shards.end, params.shard_size
        )));
    }
    let count = shards.len();
    let feature_count = if layout.feature_major { count } else { 0 };
    if pks.len() != count || feature_pks.len() != feature_count {
        return Err(SecureTrainingError::Parameters(format!(
            "shards {}..{} (of {n} samples in shards of {}) need {count} shard keys and \
             {feature_count} feature-major keys, got {} and {}",
            shards.start,
            shards.end,
            params.shard_size,
            pks.len(),
            feature_pks.len()
        )));
    }
    let feip_params = params.feip_params()?;
    let febo_params = params.febo_params()?;
    let feature_params = params.feature_feip_params()?;
    check_public_keys(feature_pks, feature_params, None)?;
    let size = params.shard_size;
    let images = (shards.end * size).min(n) - shards.start * size;
    let part = (shards != (0..total)).then_some(DatasetPart {
        first_shard: shards.start,
        total_shards: total,
        total_images: n,
    });
    let header = EncryptedDatasetHeader {
        group: group.id().to_byte(),
        element_len: group.element_len(),
        images,
        params: *params,
        layout,
        pixel_bound: layout.x_bound,
        padding_value: layout.padding_value,
        domains: shard_domains(pks),
        public_key_sha256: shard_digests(group, pks)?,
        feature_domains: shard_domains(feature_pks),
        feature_public_key_sha256: shard_digests(group, feature_pks)?,
        source_digest: samples_digest(group.id().to_byte(), source, params),
        part,
    };
    let encryptor = ShardEncryptor {
        source,
        params,
        input_len: layout.input_len,
        classes: layout.classes,
        feip: Feip::new(group.clone(), feip_params),
        febo: Febo::new(group.clone(), febo_params),
        feature_feip: Feip::new(group.clone(), feature_params),
    };
    write_atomically(path, &header, |w| {
        stream_shards(
            &encryptor,
            shards,
            pks,
            feature_pks,
            (feip_params, febo_params),
            w,
            progress,
        )
    })?;
    Ok(header)
}

/// Encrypts shards `range` (their keys `pks[s − range.start]`) in parallel windows and hands
/// each window's bytes, in shard order, to `put` while the next window is encrypted. A
/// window's keys are fetched (and checked against `expected` parameters) just before it is
/// encrypted and dropped after it, so at most two windows of keys are held.
#[allow(clippy::too_many_arguments)]
fn stream_shards<G: PrimeOrderGroup, P: ShardPublicKeys<G> + ?Sized>(
    encryptor: &ShardEncryptor<'_, G>,
    range: Range<usize>,
    pks: &P,
    feature_pks: &[DomainPublicKey<G>],
    expected: (FeipParams, FeboParams),
    put: &mut Put<'_>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), SecureTrainingError> {
    use rayon::prelude::*;
    let size = encryptor.params.shard_size;
    let n = encryptor.source.len();
    let encrypt_window = |window: Range<usize>| -> Result<Vec<Vec<u8>>, SecureTrainingError> {
        // Fetched one after the other on this thread (a key service may hold a lock while it
        // derives a key), then encrypted in parallel.
        let keys = window
            .clone()
            .map(|s| pks.public_key(s - range.start))
            .collect::<Result<Vec<_>, _>>()?;
        check_public_keys(keys.iter().map(|k| &**k), expected.0, Some(expected.1))?;
        window
            .into_par_iter()
            .zip(keys.par_iter())
            .map(|(s, pk)| encryptor.shard(s, pk, feature_pks.get(s - range.start)))
            .collect()
    };
    let window_of = |start: usize| start..(start + SHARDS_IN_FLIGHT).min(range.end);
    let mut next = range.start;
    let mut ready = encrypt_window(window_of(next))?;
    loop {
        let written = window_of(next);
        next = written.end;
        let write = |put: &mut Put<'_>| -> Result<(), SecureTrainingError> {
            for (s, bytes) in written.clone().zip(&ready) {
                put(bytes)?;
                progress(((s + 1) * size).min(n) - range.start * size);
            }
            Ok(())
        };
        if next >= range.end {
            return write(put);
        }
        let (wrote, encrypted) = rayon::join(|| write(put), || encrypt_window(window_of(next)));
        wrote?;
        ready = encrypted?;
    }
}

/// Writes `MAGIC | VERSION | header length | header | body | SHA-256 of all before` to a
/// temporary file `….tmp-PID` beside `path`, syncs it and renames it to `path`; on any error
/// the temporary file is removed. `body` receives a writer that hashes what it writes.
fn write_atomically(
    path: &Path,
    header: &EncryptedDatasetHeader,
    body: impl FnOnce(&mut Put<'_>) -> Result<(), SecureTrainingError>,
) -> Result<(), SecureTrainingError> {
    let header_json = serde_json::to_vec(header)
        .map_err(|e| SecureTrainingError::Parameters(format!("header: {e}")))?;
    let header_len = u32::try_from(header_json.len())
        .map_err(|_| SecureTrainingError::Parameters("header too large".into()))?;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
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
        prefix.extend_from_slice(&header_len.to_le_bytes());
        w.put(&prefix).map_err(io_err(&tmp))?;
        w.put(&header_json).map_err(io_err(&tmp))?;
        body(&mut |bytes: &[u8]| w.put(bytes).map_err(io_err(&tmp)))?;
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
    result
}
