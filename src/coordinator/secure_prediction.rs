//! Secure prediction: the server classifies an image it only holds encrypted (CryptoNN's
//! inference, on the same fused first layer as [secure training](crate::coordinator::secure_training)).
//!
//! ```text
//!  client ── open_query_domain ──▶ Authority          (a fresh key domain per query)
//!  client: xq = encode(image); ct = FEIP.Encrypt(mpk_query, xq)  ──▶ EncryptedQuery ──▶ server
//!  server ── 1,176 conv1 + pool key vectors from its weights (one batch) ──▶ key service
//!  server: z = dlog(∏ Bct^{wq} / ct0^{sk}) + padding;  P = z / (4 S_x S_w) + b₁;  the
//!          rest of LeNet-5 in plaintext  ──▶ class k (in the label space it was trained in)
//! ```
//!
//! The client maps `k` back with its label permutation (`π⁻¹(k)`); the server never sees a
//! label.
//!
//! # What the server learns
//! Exactly what training shows it for a training image: the 1,176 pooled conv1 outputs
//! `z = W · xq + padding` of the query. They have rank 784 over the pixels, so they determine
//! the image (see "What the server learns" in the README). Each query has its own key domain
//! ([`open_query_domain`]): keys issued for one query decrypt nothing of any other query nor of
//! the training data, and the domain's public key binds the query to the authority's audit
//! log.
//!
//! # Exactness
//! The decrypted `z` are exact integers, so [`SecurePredictor::predict`] returns bit-for-bit
//! the probabilities of the quantised plaintext model
//! ([`QuantizedFirstLayer`](crate::nn::first_layer::QuantizedFirstLayer)) on the same image.

use std::sync::Arc;

use ndarray::Array2;
use rand_core::CryptoRngCore;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::coordinator::authority::Authority;
use crate::coordinator::key_service::KeyService;
use crate::coordinator::messages::{DomainAccess, DomainId, DomainPublicKey};
use crate::coordinator::secure_training::backend::{
    all_box_members, out_of_range_hint, request_output_keys, solve_outputs, PaddingPowers,
    PreparedImage, FORWARD_HINT,
};
use crate::coordinator::secure_training::geometry::{self, LinearOutput};
use crate::coordinator::secure_training::{EncryptionParams, SecureStats, SecureTrainingError};
use crate::fe::dlog::BabyStepTable;
use crate::fe::feip::{Ciphertext, Feip};
use crate::fe::group::multiexp::recode;
use crate::fe::group::PrimeOrderGroup;
use crate::fe::serialize::WireFormat;
use crate::nn::data::IMAGE_PIXELS;
use crate::nn::first_layer::{
    check_bound, max_abs, FirstLayerSpec, QuantConfig, FILTERS, PATCH, POOLED_SIDE,
};
use crate::nn::lenet::LeNet5;
use crate::nn::train::argmax;

mod noisy;

pub use noisy::{open_noisy_query_domain, query_sample_id, QUERY_SAMPLE_BASE};

const FORWARD_LAYER: &str = "conv1 forward z (secure prediction)";
const QUERY_MAGIC: &[u8; 4] = b"CNNQ";
const QUERY_VERSION: u16 = 1;
/// Largest JSON header of an encoded query.
const MAX_QUERY_HEADER: usize = 1 << 16;

/// Opens a fresh key domain for one query, with the parameters of `params` (the pixel
/// encoding the server's model was trained with; `shard_size` is ignored), bound to `access`
/// (the prediction client as owner, its prediction server as the one requester). A query has
/// no FEBO ciphertext, so no commitment is registered and the domain issues no FEBO key.
///
/// # Errors
/// [`SecureTrainingError::Parameters`] for unusable scales; the authority's errors.
pub fn open_query_domain<G: PrimeOrderGroup>(
    authority: &mut Authority<G>,
    params: &EncryptionParams,
    access: DomainAccess,
) -> Result<DomainId, SecureTrainingError> {
    Ok(authority.create_domain_for(query_params(params).domain_config()?, access)?)
}

/// `params` with one image per shard (a query is a shard of one).
fn query_params(params: &EncryptionParams) -> EncryptionParams {
    EncryptionParams {
        shard_size: 1,
        ..*params
    }
}

/// The public part of a query: its domain and the encoding parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct QueryHeader {
    domain: DomainId,
    params: EncryptionParams,
}

/// One image, fixed-point encoded and FEIP-encrypted under its query domain's public key.
/// Holds no plaintext.
#[derive(Debug, Clone, PartialEq)]
pub struct EncryptedQuery<G: PrimeOrderGroup> {
    header: QueryHeader,
    ciphertext: Ciphertext<G>,
}

impl<G: PrimeOrderGroup> EncryptedQuery<G> {
    /// The client's side: encodes `image` (784 pixel bytes, row-major) with `params`' pixel
    /// encoding and encrypts it under `pk`, the public key of a domain from
    /// [`open_query_domain`].
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] if `image` does not have 784 pixels or `pk` was made
    /// for other parameters; encryption errors.
    pub fn encrypt<R: CryptoRngCore + ?Sized>(
        group: &G,
        pk: &DomainPublicKey<G>,
        params: &EncryptionParams,
        image: &[u8],
        rng: &mut R,
    ) -> Result<Self, SecureTrainingError> {
        if image.len() != IMAGE_PIXELS {
            return Err(SecureTrainingError::Parameters(format!(
                "a query image has {IMAGE_PIXELS} pixels, got {}",
                image.len()
            )));
        }
        let params = query_params(params);
        let feip_params = params.feip_params()?;
        if pk.feip_params != feip_params {
            return Err(SecureTrainingError::Parameters(format!(
                "the public key of {} has other parameters than the query's",
                pk.domain
            )));
        }
        let enc = params.pixel_encoding()?;
        let xq: Vec<i64> = image.iter().map(|&p| enc.encode(p)).collect();
        let feip = Feip::new(group.clone(), feip_params);
        let ciphertext = feip.encrypt(&pk.feip, &xq, rng)?;
        Ok(Self {
            header: QueryHeader {
                domain: pk.domain,
                params,
            },
            ciphertext,
        })
    }

    /// The query's key domain.
    #[must_use]
    pub fn domain(&self) -> DomainId {
        self.header.domain
    }

    /// The encoding parameters the client used.
    #[must_use]
    pub fn params(&self) -> &EncryptionParams {
        &self.header.params
    }

    /// The ciphertext.
    #[must_use]
    pub fn ciphertext(&self) -> &Ciphertext<G> {
        &self.ciphertext
    }

    /// `"CNNQ" | version u16 LE | header length u32 LE | JSON header | FEIP ciphertext
    /// (the `fe` wire format) | CRC-32 of all before`.
    #[must_use]
    pub fn to_bytes(&self, group: &G) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).unwrap_or_default();
        let ct = self.ciphertext.to_bytes(group);
        let mut out = Vec::with_capacity(14 + header.len() + ct.len());
        out.extend_from_slice(QUERY_MAGIC);
        out.extend_from_slice(&QUERY_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&ct);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes), checking the checksum, the version, the header,
    /// and the ciphertext (length 784, every element valid).
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] naming what is wrong (including a malformed
    /// ciphertext).
    pub fn from_bytes(group: &G, bytes: &[u8]) -> Result<Self, SecureTrainingError> {
        let bad = |why: String| SecureTrainingError::Parameters(format!("encrypted query: {why}"));
        let body_len = bytes
            .len()
            .checked_sub(4)
            .filter(|&n| n >= 10)
            .ok_or_else(|| bad(format!("{} bytes is too short", bytes.len())))?;
        let (body, crc) = bytes.split_at(body_len);
        let crc = u32::from_le_bytes(crc.try_into().map_err(|_| bad("checksum".into()))?);
        if crc32fast::hash(body) != crc {
            return Err(bad("checksum mismatch (damaged or tampered)".into()));
        }
        if &body[..4] != QUERY_MAGIC {
            return Err(bad("not an encrypted query (bad magic)".into()));
        }
        let version = u16::from_le_bytes([body[4], body[5]]);
        if version != QUERY_VERSION {
            return Err(bad(format!(
                "version {version}, this build reads {QUERY_VERSION}"
            )));
        }
        let header_len = u32::from_le_bytes([body[6], body[7], body[8], body[9]]) as usize;
        if header_len > MAX_QUERY_HEADER || 10 + header_len > body.len() {
            return Err(bad(format!("header length {header_len} out of range")));
        }
        let header: QueryHeader = serde_json::from_slice(&body[10..10 + header_len])
            .map_err(|e| bad(format!("header: {e}")))?;
        let ciphertext = Ciphertext::from_bytes(group, &body[10 + header_len..])
            .map_err(|e| bad(format!("ciphertext: {e}")))?;
        if ciphertext.len() != IMAGE_PIXELS {
            return Err(bad(format!(
                "the ciphertext has {} components, a query has {IMAGE_PIXELS}",
                ciphertext.len()
            )));
        }
        Ok(Self { header, ciphertext })
    }
}

/// The server's answer to one query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The most probable class, in the label space the model was trained in (the client
    /// applies `π⁻¹`).
    pub class: u8,
    /// The softmax probabilities of the 10 classes.
    pub probabilities: Vec<f32>,
}

/// The server's secure predictor: a trained model, the quantisation it was trained with, a key
/// service and a discrete-log table. It never holds plaintext input.
pub struct SecurePredictor<G: PrimeOrderGroup, K: KeyService<G>> {
    model: LeNet5,
    quant: QuantConfig,
    params: EncryptionParams,
    keys: K,
    table: Arc<BabyStepTable<G>>,
    powers: PaddingPowers<G>,
    stats: SecureStats,
    /// Whether queries come from noisy domains (ciphertext-bound noisy keys, see [`noisy`]).
    noisy: bool,
}

impl<G: PrimeOrderGroup, K: KeyService<G>> std::fmt::Debug for SecurePredictor<G, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurePredictor")
            .field("requester", self.keys.requester())
            .field("params", &self.params)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G>> SecurePredictor<G, K> {
    /// A predictor for `model`, trained with `quant`; it accepts queries encoded with `params`
    /// (the server publishes them to clients).
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] if `params` and `quant` disagree on `S_x` or the
    /// configuration is invalid.
    pub fn new(
        model: LeNet5,
        quant: QuantConfig,
        params: EncryptionParams,
        keys: K,
        table: Arc<BabyStepTable<G>>,
    ) -> Result<Self, SecureTrainingError> {
        quant.validate()?;
        if params.scale_x != quant.scale_x {
            return Err(SecureTrainingError::Parameters(format!(
                "queries are encoded with scale_x {}, the model was trained with {}",
                params.scale_x, quant.scale_x
            )));
        }
        params.pixel_encoding()?;
        let powers = PaddingPowers::new(table.group());
        Ok(Self {
            model,
            quant,
            params: query_params(&params),
            keys,
            table,
            powers,
            stats: SecureStats::default(),
            noisy: false,
        })
    }

    /// The parameters clients must encode queries with.
    #[must_use]
    pub fn params(&self) -> &EncryptionParams {
        &self.params
    }

    /// The group of the ciphertexts it decrypts.
    #[must_use]
    pub fn group(&self) -> &G {
        self.table.group()
    }

    /// Counters and timings so far.
    #[must_use]
    pub fn stats(&self) -> &SecureStats {
        &self.stats
    }

    /// The model.
    #[must_use]
    pub fn model(&self) -> &LeNet5 {
        &self.model
    }

    /// Classifies one encrypted image: one batched key request (the 1,176 conv1 + pool key
    /// vectors of the current weights, in the query's domain), 1,176 decryptions, and the
    /// plaintext rest of the network.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for a query encoded with other parameters or a
    /// query whose domain's public key does not match; [`SecureTrainingError::DlogOutOfRange`]
    /// if a decrypted value lies outside the forward bound (e.g. a ciphertext not made under
    /// the domain's key); the key service's refusals.
    pub fn predict(
        &mut self,
        query: &EncryptedQuery<G>,
    ) -> Result<Prediction, SecureTrainingError> {
        if query.header.params != self.params {
            return Err(SecureTrainingError::Parameters(format!(
                "the query was encoded with {:?}, this server expects {:?}",
                query.header.params, self.params
            )));
        }
        let domain = query.header.domain;
        let pk = self.keys.public_key(domain)?;
        if pk.feip_params != self.params.feip_params()? {
            return Err(SecureTrainingError::Parameters(format!(
                "{domain} is not a query domain of this server's parameters"
            )));
        }
        let wq = self.quant.encode_weights(self.model.first_weight())?;
        let enc = self.params.pixel_encoding()?;
        check_bound(
            "conv1 forward z (worst case)",
            PATCH as i128 * max_abs(wq.iter()) * 4 * i128::from(enc.max_abs()),
            i64::MAX as u64,
            "lower --scale-w or --scale-x",
        )?;
        let worst = wq
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|&w| i128::from(w).abs()).sum::<i128>())
            .max()
            .unwrap_or(0)
            * 4
            * i128::from(enc.max_abs());
        let hint = out_of_range_hint(worst, self.quant.forward_bound, FORWARD_HINT);
        let wq: Vec<i64> = wq.iter().copied().collect();
        let outputs = geometry::forward_outputs(&wq, enc.encode(0));

        let vectors = geometry::forward_key_vectors(&wq)?;
        let z = if self.noisy {
            self.noisy_forward(query, &outputs, vectors, hint)?
        } else {
            self.exact_forward(query, &outputs, vectors, hint)?
        };
        classify_first_layer(&self.model, &self.quant, z)
    }

    /// The query's 1,176 exact forward values `z` (plain function keys).
    fn exact_forward(
        &mut self,
        query: &EncryptedQuery<G>,
        outputs: &[LinearOutput],
        vectors: Vec<crate::coordinator::messages::KeyVectorData>,
        hint: &'static str,
    ) -> Result<Vec<i64>, SecureTrainingError> {
        let domain = query.header.domain;
        let refs: Vec<&LinearOutput> = outputs.iter().collect();
        let keys = request_output_keys(&self.keys, domain, &refs, vectors, &mut self.stats)?;

        let t = std::time::Instant::now();
        let group = self.table.group();
        let image = PreparedImage::new(group, &query.ciphertext, &all_box_members());
        let with_keys: Vec<(&LinearOutput, _)> = outputs
            .iter()
            .zip(&keys)
            .filter_map(|(o, k)| k.as_ref().map(|k| (o, k)))
            .collect();
        let elements: Vec<G::Element> = with_keys
            .par_iter()
            .map(|(o, k)| image.output_element(group, &recode(&o.box_terms), k))
            .collect();
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let count = elements.len() as u64;
        let z = solve_outputs(
            &self.table,
            &self.powers,
            elements,
            outputs,
            &keys,
            self.quant.forward_bound,
            FORWARD_LAYER,
            hint,
        )?;
        self.stats.dlog_seconds += t.elapsed().as_secs_f64();
        self.stats.decryptions += count;
        Ok(z)
    }
}

/// The rest of the network on the server's decrypted first-layer values: `z` (the 1,176 pooled
/// conv1 values of one image, exact or noisy) is checked against the forward bound, decoded
/// (`P = z / (4 S_x S_w) + b₁`) and run through the plaintext trunk of `model`. What
/// [`SecurePredictor::predict`] returns after decryption; also the quantised reference of a
/// prediction (the same `z` computed on plaintext, with or without the same noise).
///
/// # Errors
/// [`SecureTrainingError::Parameters`] for a `z` of another length;
/// [`SecureTrainingError::Nn`]-wrapped bound and shape errors.
pub fn classify_first_layer(
    model: &LeNet5,
    quant: &QuantConfig,
    z: Vec<i64>,
) -> Result<Prediction, SecureTrainingError> {
    let z = Array2::from_shape_vec((1, FILTERS * POOLED_SIDE * POOLED_SIDE), z)
        .map_err(|e| SecureTrainingError::Parameters(e.to_string()))?;
    check_bound(
        "conv1 forward z",
        max_abs(z.iter()),
        quant.forward_bound,
        FORWARD_HINT,
    )?;
    let bias1 = model.first_bias().to_vec();
    let s1 = model.unflatten_first(quant.decode_forward(
        &FirstLayerSpec::lenet5(),
        z.view(),
        &bias1,
    )?)?;
    let probabilities = model.trunk_forward(s1).probs.row(0).to_vec();
    let class = argmax(&probabilities) as u8;
    Ok(Prediction {
        class,
        probabilities,
    })
}
