//! The data owner's side: per-shard key domains, encryption of the training set, and the
//! versioned on-disk format of the encrypted dataset (which the server loads).
//!
//! # Format (version 2)
//!
//! ```text
//! "CNNENCDS" | version u16 LE | header length u32 LE | header (JSON, EncryptedDatasetHeader)
//!            | shard 0 | shard 1 | … | SHA-256 of everything before (32 bytes)
//! shard s   = the records of its samples, in order | [its feature-major block, if the
//!             header's layout says feature_major]
//! record i  = ct0 | ct_0 … ct_{d−1}          (FEIP, sample i's encoded features xq, d = input_len)
//!           | (cmt_k | ct_k) for k < classes  (FEBO, yq_k = S_p · [k = π(label_i)])
//! block s   = for each feature q < d: ct0 | ct_0 … ct_{S−1}
//!             (FEIP under shard s's feature domain: feature q of the shard's samples, in
//!              order, zero for the missing slots of a short last shard; S = shard size)
//! ```
//!
//! Elements use the group's canonical encoding (32 bytes on Ristretto255: an MNIST record is
//! 805 · 32 = 25,760 bytes, 60,000 images take 1.55 GB). The header names the group, the input
//! (length, `C x H x W` shape if any, the encoding's bound and padding value), the class count,
//! the scales, the key domain of every shard with the SHA-256 of its public key (and of its
//! feature domain), and a digest of the plaintext source that lets the data owner decide
//! whether a cached file is still current.
//!
//! The feature-major blocks serve a dense first layer: its weight gradient
//! `G[o,q] = Σ_n dq_n[o] · xq_n[q]` is, for each feature `q`, the inner product of column `o`
//! of the batch's output gradient with the vector of feature `q` over the shard's samples (as
//! in NN-EMD), so the server decrypts it with one key per output `o`.
//!
//! A file is written to a temporary name and renamed only when complete, so an interrupted run
//! never leaves a file that reads as complete. [`EncryptedDataset::load`] checks magic,
//! version, header, exact length and the SHA-256 trailer in one streaming pass (it never holds
//! the whole file: shards are read when training needs them and checked against per-shard
//! digests taken in that pass, so memory stays flat in the dataset's size); [`EncryptedDataset::verify_keys`]
//! checks every shard's public-key digest against the authority's (a dataset of another
//! authority or key fails there); group elements are fully validated when they are decoded.
//!
//! # Parts
//! A sharded encryption (`cryptonn client encrypt --shards A..B`, one process or Kubernetes pod
//! per range: `docs/k8s/encrypt-job.yaml`) writes one part file per shard range with
//! [`encrypt_part_to_file`]: the same format, whose header adds `part` ([`DatasetPart`]: the
//! first shard, and the whole dataset's shard and sample counts) and whose `images`, domains
//! and digests are the part's own; its trailer is the part's SHA-256, and it is written to a
//! temporary name and renamed when complete like a whole file. [`EncryptedDataset::load`] of a
//! directory joins the parts in any order after checking that they hold every shard exactly
//! once and come from one encryption (group, parameters, layout, source digest);
//! [`EncryptedDataset::verify_keys`] then checks every part's shard keys.
//!
//! The header's `source_digest` hashes the plaintext images, labels and the label mapping; a
//! server that already knew the plaintext could test guesses against it. It is a cache key for
//! the data owner, not a secret-keyed MAC.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::coordinator::authority::{Authority, DomainConfig};
use crate::coordinator::messages::{DomainAccess, DomainId, DomainPublicKey};
use crate::coordinator::policy::PolicyConfig;
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::fe::febo::FeboParams;
use crate::fe::feip::FeipParams;
use crate::fe::group::PrimeOrderGroup;
use crate::nn::data::{
    Dataset, InputEncoding, LabelPermutation, PixelNormalization, CLASSES, IMAGE_PIXELS, IMAGE_SIDE,
};
use crate::nn::first_layer::{PixelEncoding, QuantConfig};

mod read;
mod write;

pub use read::{EncryptedDataset, SHARDS_KEPT};
pub use write::{encrypt_part_to_file, encrypt_samples_to_file, encrypt_to_file, SHARDS_IN_FLIGHT};

/// Magic bytes of an encrypted dataset file.
pub const MAGIC: &[u8; 8] = b"CNNENCDS";
/// The format version written and read.
pub const VERSION: u16 = 2;
/// Elements per MNIST record: `ct0`, 784 pixel components, 10 FEBO ciphertexts of 2 elements.
pub const ELEMENTS_PER_RECORD: usize = 1 + IMAGE_PIXELS + 2 * CLASSES;
/// Largest input length and class count a header may announce.
const MAX_INPUT_LEN: usize = 1 << 24;
const MAX_CLASSES: usize = 1 << 16;
const PREFIX_LEN: usize = 8 + 2 + 4;
const TRAILER_LEN: usize = 32;
/// Largest header accepted (a header names one domain per shard).
const MAX_HEADER_LEN: usize = 64 << 20;

/// The public shape of what the data owner encrypts: the input, the classes, and the bound
/// and padding value of its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLayout {
    /// Features per sample `d` (`C·H·W` for images).
    pub input_len: usize,
    /// `[C, H, W]` for image inputs, `None` for flat feature vectors.
    pub input_shape: Option<[usize; 3]>,
    /// Number of classes (FEBO label ciphertexts per sample).
    pub classes: usize,
    /// `X`, the largest `|xq|` the encoding produces.
    pub x_bound: u64,
    /// The public encoded value of the first layer's zero padding (MNIST: `xq(black) = −33`;
    /// standardised features: 0).
    pub padding_value: i64,
    /// Whether each shard is also encrypted feature-major (needed by a dense first layer).
    pub feature_major: bool,
}

impl DataLayout {
    /// MNIST's layout under `encoding`: `1 x 28 x 28`, ten classes, padding with black pixels.
    #[must_use]
    pub fn mnist(encoding: &PixelEncoding) -> Self {
        Self {
            input_len: IMAGE_PIXELS,
            input_shape: Some([1, IMAGE_SIDE, IMAGE_SIDE]),
            classes: CLASSES,
            x_bound: encoding.max_abs().max(1) as u64,
            padding_value: encoding.encode(0),
            feature_major: false,
        }
    }

    /// Checks sizes and bounds.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] naming the bad field.
    pub fn validate(&self) -> Result<(), SecureTrainingError> {
        let bad = |m: String| Err(SecureTrainingError::Parameters(format!("data layout: {m}")));
        if self.input_len == 0 || self.input_len > MAX_INPUT_LEN {
            return bad(format!(
                "input length {} outside 1..={MAX_INPUT_LEN}",
                self.input_len
            ));
        }
        if let Some([c, h, w]) = self.input_shape {
            if c.checked_mul(h).and_then(|v| v.checked_mul(w)) != Some(self.input_len) {
                return bad(format!(
                    "shape {c}x{h}x{w} does not have {} features",
                    self.input_len
                ));
            }
        }
        if self.classes < 2 || self.classes > MAX_CLASSES {
            return bad(format!("{} classes (2..={MAX_CLASSES})", self.classes));
        }
        if self.x_bound == 0 || self.x_bound > 1 << 40 {
            return bad(format!("feature bound {} outside 1..=2^40", self.x_bound));
        }
        if self.padding_value.unsigned_abs() > self.x_bound {
            return bad(format!(
                "padding value {} beyond the feature bound {}",
                self.padding_value, self.x_bound
            ));
        }
        Ok(())
    }
}

/// What the data owner encrypts with: shard size, scales, normalisation, the key bound and the
/// data layout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EncryptionParams {
    /// Samples per shard (= the training mini-batch size).
    pub shard_size: usize,
    /// `S_x`, the feature scale.
    pub scale_x: f64,
    /// `S_p`, the scale of one-hot labels.
    pub scale_p: f64,
    /// The pixel normalisation (MNIST inputs; other inputs declare their encoding through
    /// `layout`).
    pub normalization: PixelNormalization,
    /// `Y`, the largest `|y_q|` of a key vector the shard domains accept (it must cover
    /// `p² · max|wq|` and `max|dq|`).
    pub key_bound: u64,
    /// The input and classes; `None`: MNIST under `normalization` and `scale_x`
    /// ([`DataLayout::mnist`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<DataLayout>,
}

impl EncryptionParams {
    /// The default key bound `Y = 2^30`.
    pub const DEFAULT_KEY_BOUND: u64 = 1 << 30;

    /// MNIST parameters matching a training configuration's quantisation.
    #[must_use]
    pub fn new(quant: &QuantConfig, normalization: PixelNormalization, shard_size: usize) -> Self {
        Self {
            shard_size,
            scale_x: quant.scale_x,
            scale_p: quant.scale_p,
            normalization,
            key_bound: Self::DEFAULT_KEY_BOUND,
            layout: None,
        }
    }

    /// These parameters for another data layout.
    #[must_use]
    pub fn with_layout(self, layout: DataLayout) -> Self {
        Self {
            layout: Some(layout),
            ..self
        }
    }

    /// The data layout: the declared one, or MNIST's under the pixel encoding.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for unusable scales or a bad layout.
    pub fn data_layout(&self) -> Result<DataLayout, SecureTrainingError> {
        let layout = match self.layout {
            Some(l) => l,
            None => DataLayout::mnist(&self.pixel_encoding()?),
        };
        layout.validate()?;
        Ok(layout)
    }

    fn check(&self) -> Result<(), SecureTrainingError> {
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
        if !(self.scale_x.is_finite() && self.scale_x > 0.0) {
            return Err(SecureTrainingError::Parameters(format!(
                "scale_x must be finite and > 0, got {}",
                self.scale_x
            )));
        }
        self.data_layout().map(|_| ())
    }

    /// The MNIST pixel encoding `xq(byte)`.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for unusable scales.
    pub fn pixel_encoding(&self) -> Result<PixelEncoding, SecureTrainingError> {
        PixelEncoding::new(self.scale_x, &self.normalization)
            .map_err(|e| SecureTrainingError::Parameters(e.to_string()))
    }

    /// FEIP parameters of a shard domain: `n = input_len`, `X`, `Y = key_bound`.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] / [`SecureTrainingError::Fe`].
    pub fn feip_params(&self) -> Result<FeipParams, SecureTrainingError> {
        self.check()?;
        let l = self.data_layout()?;
        Ok(FeipParams::new(l.input_len, l.x_bound, self.key_bound)?)
    }

    /// The noise configuration of a noisy domain for data encoded with these parameters:
    /// `sigma` over the coordinate range `R = 2·x_bound` (every encoded coordinate lies in
    /// `[−x_bound, x_bound]`; the sensitivity model of [`crate::coordinator::accountant`]).
    ///
    /// # Errors
    /// As [`feip_params`](Self::feip_params).
    pub fn noise_config(
        &self,
        sigma: crate::fe::discrete_gaussian::DiscreteGaussian,
    ) -> Result<crate::coordinator::NoiseConfig, SecureTrainingError> {
        Ok(crate::coordinator::NoiseConfig {
            sigma,
            coordinate_range: self.feip_params()?.x_bound().saturating_mul(2),
        })
    }

    /// FEIP parameters of a shard's feature-major domain: `n = shard_size`, `X`, `Y`.
    ///
    /// # Errors
    /// As [`feip_params`](Self::feip_params).
    pub fn feature_feip_params(&self) -> Result<FeipParams, SecureTrainingError> {
        self.check()?;
        let l = self.data_layout()?;
        Ok(FeipParams::new(self.shard_size, l.x_bound, self.key_bound)?)
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

    /// The configuration of a shard's feature-major domain: FEIP over the shard's samples,
    /// the same policy.
    ///
    /// # Errors
    /// As [`feip_params`](Self::feip_params).
    pub fn feature_domain_config(&self) -> Result<DomainConfig, SecureTrainingError> {
        Ok(DomainConfig::new(self.feature_feip_params()?).with_policy(PolicyConfig::per_batch()))
    }

    /// Number of shards for `images` training samples.
    #[must_use]
    pub fn shards(&self, images: usize) -> usize {
        images.div_ceil(self.shard_size.max(1))
    }
}

/// The authority creates one key domain per shard of `images` training samples (in order),
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

/// The authority creates one feature-major key domain per shard (none unless
/// `params.layout.feature_major`), each bound to `access`.
///
/// # Errors
/// As [`create_shard_domains`].
pub fn create_feature_domains<G: PrimeOrderGroup>(
    authority: &mut Authority<G>,
    images: usize,
    params: &EncryptionParams,
    access: &DomainAccess,
) -> Result<Vec<DomainId>, SecureTrainingError> {
    if !params.data_layout()?.feature_major {
        return Ok(Vec::new());
    }
    let config = params.feature_domain_config()?;
    (0..params.shards(images))
        .map(|_| Ok(authority.create_domain_for(config, access.clone())?))
        .collect()
}

/// SHA-256 of a shard domain's public key (FEIP parameters and elements, FEBO bounds and
/// element), as lowercase hex.
#[must_use]
pub fn public_key_digest<G: PrimeOrderGroup>(group: &G, pk: &DomainPublicKey<G>) -> String {
    hex(&pk.sha256(group))
}

/// The shard domains' public keys of one encryption, `len()` of them in shard order: the ids
/// and digests that the file's header lists come first, and each key only when its shard is
/// encrypted. A slice or vector of keys is one; a data owner with many shards can instead
/// fetch each key from its authority when its window is encrypted
/// ([`SecureTrainingSession::encrypt`](crate::coordinator::secure_training::SecureTrainingSession::encrypt)
/// does), so memory holds a window of keys, not all of them.
pub trait ShardPublicKeys<G: PrimeOrderGroup>: Sync {
    /// How many shard keys.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shard `k`'s domain.
    fn domain(&self, k: usize) -> DomainId;
    /// SHA-256 of shard `k`'s public key ([`DomainPublicKey::sha256`]).
    ///
    /// # Errors
    /// Where the keys come from (e.g. the authority refuses).
    fn sha256(&self, group: &G, k: usize) -> Result<[u8; 32], SecureTrainingError>;
    /// Shard `k`'s public key.
    ///
    /// # Errors
    /// Where the keys come from (e.g. the authority refuses).
    fn public_key(
        &self,
        k: usize,
    ) -> Result<std::borrow::Cow<'_, DomainPublicKey<G>>, SecureTrainingError>;
}

impl<G: PrimeOrderGroup> ShardPublicKeys<G> for [DomainPublicKey<G>] {
    fn len(&self) -> usize {
        <[DomainPublicKey<G>]>::len(self)
    }
    fn domain(&self, k: usize) -> DomainId {
        self[k].domain
    }
    fn sha256(&self, group: &G, k: usize) -> Result<[u8; 32], SecureTrainingError> {
        Ok(self[k].sha256(group))
    }
    fn public_key(
        &self,
        k: usize,
    ) -> Result<std::borrow::Cow<'_, DomainPublicKey<G>>, SecureTrainingError> {
        Ok(std::borrow::Cow::Borrowed(&self[k]))
    }
}

/// A vector of keys is its slice.
impl<G: PrimeOrderGroup> ShardPublicKeys<G> for Vec<DomainPublicKey<G>> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn domain(&self, k: usize) -> DomainId {
        self.as_slice().domain(k)
    }
    fn sha256(&self, group: &G, k: usize) -> Result<[u8; 32], SecureTrainingError> {
        self.as_slice().sha256(group, k)
    }
    fn public_key(
        &self,
        k: usize,
    ) -> Result<std::borrow::Cow<'_, DomainPublicKey<G>>, SecureTrainingError> {
        self.as_slice().public_key(k)
    }
}

/// The ids of `pks` in order.
fn shard_domains<G: PrimeOrderGroup, P: ShardPublicKeys<G> + ?Sized>(pks: &P) -> Vec<DomainId> {
    (0..pks.len()).map(|k| pks.domain(k)).collect()
}

/// The hex digests of `pks` in order ([`public_key_digest`]).
fn shard_digests<G: PrimeOrderGroup, P: ShardPublicKeys<G> + ?Sized>(
    group: &G,
    pks: &P,
) -> Result<Vec<String>, SecureTrainingError> {
    (0..pks.len())
        .map(|k| pks.sha256(group, k).map(|h| hex(&h)))
        .collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The data owner's plaintext training samples, encoded: what it encrypts. The layout
/// (input length, classes, bound) is declared by [`EncryptionParams::layout`].
pub trait EncodedSamples: Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sample `i`'s encoded features `xq` (`input_len` integers within the layout's bound).
    ///
    /// # Errors
    /// A feature the encoding cannot represent.
    fn encode(&self, i: usize) -> Result<Vec<i64>, SecureTrainingError>;
    /// Sample `i`'s class as presented to the server (after the label permutation).
    fn class(&self, i: usize) -> usize;
    /// SHA-256 of the plaintext source (features, labels, label mapping): the data owner's
    /// cache key, never shown to anyone but the data owner's own cache logic.
    fn digest(&self) -> [u8; 32];
}

/// MNIST images through a pixel encoding and a label permutation.
#[derive(Debug, Clone)]
pub struct MnistSamples<'a> {
    data: &'a Dataset,
    labels: &'a LabelPermutation,
    encoding: PixelEncoding,
}

impl<'a> MnistSamples<'a> {
    /// `data` encoded as `params` says, labels through `labels`.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for unusable scales.
    pub fn new(
        data: &'a Dataset,
        labels: &'a LabelPermutation,
        params: &EncryptionParams,
    ) -> Result<Self, SecureTrainingError> {
        Ok(Self {
            data,
            labels,
            encoding: params.pixel_encoding()?,
        })
    }
}

impl EncodedSamples for MnistSamples<'_> {
    fn len(&self) -> usize {
        self.data.len()
    }
    fn encode(&self, i: usize) -> Result<Vec<i64>, SecureTrainingError> {
        Ok(self
            .data
            .image(i)
            .iter()
            .map(|&p| self.encoding.encode(p))
            .collect())
    }
    fn class(&self, i: usize) -> usize {
        usize::from(self.labels.apply(self.data.label(i)))
    }
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"cryptonn/mnist-source/v1");
        h.update((self.data.len() as u64).to_le_bytes());
        let map: Vec<u8> = (0..CLASSES as u8).map(|k| self.labels.apply(k)).collect();
        h.update(&map);
        h.update(self.data.labels());
        for i in 0..self.data.len() {
            h.update(self.data.image(i));
        }
        h.finalize().into()
    }
}

/// Any [`Dataset`] under its declared [`InputEncoding`] at scale `S_x`, labels through a
/// permutation: what the data owner encrypts for a declared model.
#[derive(Debug, Clone)]
pub struct DatasetSamples<'a> {
    data: &'a Dataset,
    labels: &'a LabelPermutation,
    scale_x: f64,
}

impl<'a> DatasetSamples<'a> {
    /// `data` encoded at `scale_x`, labels through `labels`.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] if `labels` covers another number of classes.
    pub fn new(
        data: &'a Dataset,
        labels: &'a LabelPermutation,
        scale_x: f64,
    ) -> Result<Self, SecureTrainingError> {
        if labels.classes() != data.classes() {
            return Err(SecureTrainingError::Parameters(format!(
                "a label permutation of {} classes for a dataset of {}",
                labels.classes(),
                data.classes()
            )));
        }
        Ok(Self {
            data,
            labels,
            scale_x,
        })
    }

    /// The layout this data owner declares: input shape and classes of the dataset, the bound
    /// of its encoding (a byte image: the largest `|xq|` of any byte; standardised features:
    /// `⌈max_abs · S_x⌉`) and the encoded padding value; feature-major blocks if asked.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for an unusable scale, or float inputs under a uniform
    /// encoding (no declared bound).
    pub fn layout(&self, feature_major: bool) -> Result<DataLayout, SecureTrainingError> {
        let shape = self.data.shape();
        let x_bound = match self.data.encoding() {
            InputEncoding::Uniform(norm) if self.data.bytes(0).is_some() => {
                PixelEncoding::new(self.scale_x, norm)?.max_abs().max(1) as u64
            }
            InputEncoding::Uniform(_) => {
                return Err(SecureTrainingError::Parameters(
                    "float features under a uniform encoding have no declared bound; \
                     standardise them"
                        .into(),
                ))
            }
            InputEncoding::Standardized(s) => {
                let b = (s.max_abs_z() * self.scale_x).ceil();
                if !(1.0..=(1u64 << 40) as f64).contains(&b) {
                    return Err(SecureTrainingError::Parameters(format!(
                        "feature bound {} · S_x {} is not encodable",
                        s.max_abs_z(),
                        self.scale_x
                    )));
                }
                b as u64
            }
        };
        let layout = DataLayout {
            input_len: shape.len(),
            input_shape: shape.image_dims().map(|(c, h, w)| [c, h, w]),
            classes: self.data.classes(),
            x_bound,
            padding_value: self.data.encoding().padding_xq(self.scale_x)?,
            feature_major,
        };
        layout.validate()?;
        Ok(layout)
    }
}

impl EncodedSamples for DatasetSamples<'_> {
    fn len(&self) -> usize {
        self.data.len()
    }
    fn encode(&self, i: usize) -> Result<Vec<i64>, SecureTrainingError> {
        Ok(self.data.encode_sample(i, self.scale_x)?)
    }
    fn class(&self, i: usize) -> usize {
        usize::from(self.labels.apply(self.data.label(i)))
    }
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"cryptonn/dataset-source/v1");
        h.update(serde_json::to_vec(self.data.encoding()).unwrap_or_default());
        h.update(self.data.shape().to_string().as_bytes());
        h.update((self.data.len() as u64).to_le_bytes());
        let classes = self.data.classes();
        let map: Vec<u8> = (0..classes)
            .map(|k| self.labels.apply(u8::try_from(k).unwrap_or(u8::MAX)))
            .collect();
        h.update(&map);
        for i in 0..self.data.len() {
            h.update([self.data.label(i)]);
            match self.data.bytes(i) {
                Some(b) => h.update(b),
                None => {
                    for q in 0..self.data.shape().len() {
                        h.update(self.data.raw(i, q).to_le_bytes());
                    }
                }
            }
        }
        h.finalize().into()
    }
}

/// The data owner's digest of what it encrypts: the source's digest, the parameters and the
/// group (a cache key; see the module docs).
#[must_use]
pub fn samples_digest(
    group_id: u8,
    source: &dyn EncodedSamples,
    params: &EncryptionParams,
) -> String {
    let mut h = Sha256::new();
    h.update(b"cryptonn/encrypted-dataset-source/v2");
    h.update([group_id]);
    h.update(serde_json::to_vec(params).unwrap_or_default());
    h.update((source.len() as u64).to_le_bytes());
    h.update(source.digest());
    hex(&h.finalize())
}

/// [`samples_digest`] of MNIST images with a label mapping.
#[must_use]
pub fn source_digest(
    group_id: u8,
    data: &Dataset,
    labels: &LabelPermutation,
    params: &EncryptionParams,
) -> String {
    match MnistSamples::new(data, labels, params) {
        Ok(source) => samples_digest(group_id, &source, params),
        // Unusable parameters: no file can match them.
        Err(_) => String::new(),
    }
}

/// The header of an encrypted dataset file (public).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncryptedDatasetHeader {
    /// The group's id byte.
    pub group: u8,
    /// Bytes per group element.
    pub element_len: usize,
    /// Number of samples.
    pub images: usize,
    /// The encryption parameters.
    pub params: EncryptionParams,
    /// The data layout (`params`' declared or derived one).
    pub layout: DataLayout,
    /// `X`, the largest `|xq|` (= `params.layout.x_bound`).
    pub pixel_bound: u64,
    /// `xq` of a padding position (public; = `params.layout.padding_value`).
    pub padding_value: i64,
    /// The key domain of each shard.
    pub domains: Vec<DomainId>,
    /// SHA-256 (hex) of each shard domain's public key ([`public_key_digest`]).
    pub public_key_sha256: Vec<String>,
    /// The feature-major key domain of each shard (empty unless `layout.feature_major`).
    pub feature_domains: Vec<DomainId>,
    /// SHA-256 (hex) of each feature-major domain's public key.
    pub feature_public_key_sha256: Vec<String>,
    /// The data owner's cache key ([`samples_digest`], of the whole dataset for a part).
    pub source_digest: String,
    /// For one part of a sharded encryption: which shards of how many it holds (`images`,
    /// `domains` and the digests are then the part's own); absent for a whole dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<DatasetPart>,
}

/// Which shards of a sharded encryption one part file holds (`cryptonn client encrypt
/// --shards A..B`): shards `first_shard .. first_shard + header.shards()` of `total_shards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetPart {
    /// The whole dataset's index of the part's first shard.
    pub first_shard: usize,
    /// Shards of the whole dataset.
    pub total_shards: usize,
    /// Samples of the whole dataset.
    pub total_images: usize,
}

impl EncryptedDatasetHeader {
    /// Bytes per sample record.
    #[must_use]
    pub fn record_len(&self) -> usize {
        let l = &self.layout;
        (1 + l.input_len + 2 * l.classes) * self.element_len
    }

    /// Bytes per shard's feature-major block (0 unless feature-major).
    #[must_use]
    pub fn feature_block_len(&self) -> usize {
        let l = &self.layout;
        if l.feature_major {
            l.input_len * (1 + self.params.shard_size) * self.element_len
        } else {
            0
        }
    }

    /// The number of shards.
    #[must_use]
    pub fn shards(&self) -> usize {
        self.params.shards(self.images)
    }

    fn validate(&self, path: &Path) -> Result<(), SecureTrainingError> {
        let bad = |reason: String| SecureTrainingError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if self.params.shard_size == 0 || self.images == 0 {
            return Err(bad("empty dataset or zero shard size".into()));
        }
        self.params.check().map_err(|e| bad(e.to_string()))?;
        if self.params.data_layout().ok() != Some(self.layout) {
            return Err(bad("the layout disagrees with the parameters".into()));
        }
        let shards = self.shards();
        if self.domains.len() != shards || self.public_key_sha256.len() != shards {
            return Err(bad(format!(
                "{} samples in shards of {} need {shards} domains, header has {}",
                self.images,
                self.params.shard_size,
                self.domains.len()
            )));
        }
        let features = if self.layout.feature_major { shards } else { 0 };
        if self.feature_domains.len() != features
            || self.feature_public_key_sha256.len() != features
        {
            return Err(bad(format!(
                "the header names {} feature-major domains, the layout needs {features}",
                self.feature_domains.len()
            )));
        }
        if self.layout.padding_value != self.padding_value
            || self.layout.x_bound != self.pixel_bound
        {
            return Err(bad(
                "padding value or feature bound disagrees with the layout".into(),
            ));
        }
        if let Some(p) = self.part {
            let size = self.params.shard_size;
            let end = p.first_shard.checked_add(shards);
            let whole = p
                .total_images
                .checked_sub(p.first_shard.saturating_mul(size));
            let fits = p.total_shards == self.params.shards(p.total_images)
                && end.is_some_and(|e| e <= p.total_shards)
                && if end == Some(p.total_shards) {
                    whole == Some(self.images)
                } else {
                    self.images == shards * size
                };
            if !fits {
                return Err(bad(format!(
                    "a part of {} samples at shard {} does not fit a dataset of {} samples in \
                     {} shards of {size}",
                    self.images, p.first_shard, p.total_images, p.total_shards
                )));
            }
        }
        Ok(())
    }

    /// The shard of sample `i`.
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

/// A temporary file of an interrupted encryption, removed by [`sweep_stale_temp_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleTempFile {
    /// The removed file.
    pub path: PathBuf,
    /// The shard domains its header named (orphaned: the authority created them, but no
    /// complete dataset uses them); empty if the header was unreadable.
    pub orphaned_domains: Vec<DomainId>,
}

/// The process id of a writer's temporary file name `….tmp-PID`, if it is one.
fn temp_file_pid(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let (_, pid) = name.rsplit_once(".tmp-")?;
    pid.parse().ok()
}

/// Whether process `pid` is running (Linux `/proc`; elsewhere every other process counts as
/// gone).
fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporary files that interrupted runs of [`encrypt_to_file`] left in `dir`
/// (`….tmp-PID` of a process that is gone, e.g. after a SIGKILL) and returns them with the
/// shard domains their headers name, which are now orphaned. A missing `dir` is no error.
/// Files of a running writer are left alone.
///
/// # Errors
/// [`SecureTrainingError::Io`] if `dir` cannot be listed or a stale file cannot be removed.
pub fn sweep_stale_temp_files(dir: &Path) -> Result<Vec<StaleTempFile>, SecureTrainingError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        let Some(pid) = temp_file_pid(&path) else {
            continue;
        };
        if process_alive(pid) || !path.is_file() {
            continue;
        }
        let orphaned_domains = read_header(&path).map(|h| h.domains).unwrap_or_default();
        fs::remove_file(&path).map_err(io_err(&path))?;
        out.push(StaleTempFile {
            path,
            orphaned_domains,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The cache file name for an MNIST dataset: group, size, shard size and a prefix of the
/// source digest.
#[must_use]
pub fn cache_file_name(group_id: u8, images: usize, shard_size: usize, digest: &str) -> PathBuf {
    named_cache_file("mnist-train", group_id, images, shard_size, digest)
}

/// The cache file name `NAME-gGROUP-nSAMPLES-sSHARD-DIGEST16.cnnenc`.
#[must_use]
pub fn named_cache_file(
    name: &str,
    group_id: u8,
    images: usize,
    shard_size: usize,
    digest: &str,
) -> PathBuf {
    let short = digest.get(..16).unwrap_or(digest);
    PathBuf::from(format!(
        "{name}-g{group_id}-n{images}-s{shard_size}-{short}.cnnenc"
    ))
}

/// The data owner's cache logic for MNIST ([`encrypt_samples_or_reuse`] under
/// [`cache_file_name`], without feature-major blocks).
///
/// # Errors
/// As [`encrypt_to_file`].
#[allow(clippy::too_many_arguments)]
pub fn encrypt_or_reuse<G: PrimeOrderGroup, P: ShardPublicKeys<G> + ?Sized>(
    group: &G,
    dir: &Path,
    data: &Dataset,
    labels: &LabelPermutation,
    pks: &P,
    params: &EncryptionParams,
    reencrypt: bool,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(PathBuf, bool), SecureTrainingError> {
    let source = MnistSamples::new(data, labels, params)?;
    encrypt_samples_or_reuse(
        group,
        dir,
        "mnist-train",
        &source,
        pks,
        &[],
        params,
        reencrypt,
        progress,
    )
}

/// The data owner's cache logic: reuses `dir/`[`named_cache_file`] when its header matches this
/// source, these parameters and these public keys (and `reencrypt` is false); otherwise
/// encrypts afresh. Returns the path and whether the file was reused.
///
/// # Errors
/// As [`encrypt_samples_to_file`].
#[allow(clippy::too_many_arguments)]
pub fn encrypt_samples_or_reuse<G: PrimeOrderGroup, P: ShardPublicKeys<G> + ?Sized>(
    group: &G,
    dir: &Path,
    name: &str,
    source: &dyn EncodedSamples,
    pks: &P,
    feature_pks: &[DomainPublicKey<G>],
    params: &EncryptionParams,
    reencrypt: bool,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(PathBuf, bool), SecureTrainingError> {
    let shards = params.shards(source.len());
    encrypt_part_or_reuse(
        group,
        dir,
        name,
        source,
        pks,
        feature_pks,
        params,
        0..shards,
        reencrypt,
        progress,
    )
}

/// The file name of shards `shards` of a dataset: [`named_cache_file`] for all of them,
/// `NAME-gGROUP-nSAMPLES-sSHARD-DIGEST16-shardsA-B.cnnenc` for a part.
#[must_use]
pub fn part_file_name(
    name: &str,
    group_id: u8,
    images: usize,
    shard_size: usize,
    digest: &str,
    shards: Range<usize>,
) -> PathBuf {
    if shards == (0..images.div_ceil(shard_size.max(1))) {
        return named_cache_file(name, group_id, images, shard_size, digest);
    }
    let short = digest.get(..16).unwrap_or(digest);
    PathBuf::from(format!(
        "{name}-g{group_id}-n{images}-s{shard_size}-{short}-shards{}-{}.cnnenc",
        shards.start, shards.end
    ))
}

/// [`encrypt_samples_or_reuse`] for the shards `shards` (one part of a sharded encryption,
/// [`encrypt_part_to_file`]) under `dir/`[`part_file_name`].
///
/// # Errors
/// As [`encrypt_part_to_file`].
#[allow(clippy::too_many_arguments)]
pub fn encrypt_part_or_reuse<G: PrimeOrderGroup, P: ShardPublicKeys<G> + ?Sized>(
    group: &G,
    dir: &Path,
    name: &str,
    source: &dyn EncodedSamples,
    pks: &P,
    feature_pks: &[DomainPublicKey<G>],
    params: &EncryptionParams,
    shards: Range<usize>,
    reencrypt: bool,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(PathBuf, bool), SecureTrainingError> {
    let digest = samples_digest(group.id().to_byte(), source, params);
    let path = dir.join(part_file_name(
        name,
        group.id().to_byte(),
        source.len(),
        params.shard_size,
        &digest,
        shards.clone(),
    ));
    if !reencrypt {
        if let Ok(h) = read_header(&path) {
            if h.source_digest == digest
                && h.params == *params
                && h.part.map_or(0, |p| p.first_shard) == shards.start
                && h.domains == shard_domains(pks)
                && h.public_key_sha256 == shard_digests(group, pks)?
                && h.feature_domains == shard_domains(feature_pks)
                && h.feature_public_key_sha256 == shard_digests(group, feature_pks)?
            {
                return Ok((path, true));
            }
        }
    }
    encrypt_part_to_file(
        group,
        source,
        pks,
        feature_pks,
        params,
        shards,
        &path,
        progress,
    )?;
    Ok((path, false))
}

/// The shard domains of the dataset at `path` (a file, or a directory of parts: their domains
/// in shard order), from the headers alone (no integrity check of the ciphertexts).
///
/// # Errors
/// I/O errors and [`SecureTrainingError::Corrupt`] for an unreadable header;
/// [`SecureTrainingError::Parts`] for a directory without `.cnnenc` files.
pub fn dataset_domains(path: &Path) -> Result<Vec<DomainId>, SecureTrainingError> {
    if !path.is_dir() {
        return Ok(read_header(path)?.domains);
    }
    let mut headers = Vec::new();
    for entry in fs::read_dir(path).map_err(io_err(path))? {
        let p = entry.map_err(io_err(path))?.path();
        if p.extension().is_some_and(|x| x == "cnnenc") && p.is_file() {
            headers.push(read_header(&p)?);
        }
    }
    if headers.is_empty() {
        return Err(SecureTrainingError::Parts {
            dir: path.to_path_buf(),
            reason: "no encrypted dataset (.cnnenc) in this directory".into(),
        });
    }
    headers.sort_by_key(|h| h.part.map_or(0, |p| p.first_shard));
    Ok(headers.into_iter().flat_map(|h| h.domains).collect())
}
