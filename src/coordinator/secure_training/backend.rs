//! [`SecureFirstLayer`]: the server's first layer over an [`EncryptedDataset`].
//!
//! Per training step (one mini-batch = one shard, one key domain):
//!
//! 1. **Forward.** From the current encoded weights `wq` the server forms the 1,176 pixel-space
//!    key vectors `y_{f,i,j}` ([`geometry::forward_outputs`]) and asks its
//!    [`KeyService`] for their function keys in the shard's domain — one batched request, fresh
//!    after every weight update. For every image it multiplies the ciphertext components of
//!    each 2x2 box (`Bct`, 961 elements), then per output
//!    `g^{z − pad} = ∏_{a,b} Bct[2i+a][2j+b]^{wq[f,a,b]} / ct0^{sk}` and solves all discrete
//!    logs of the image in one batch, adding the public padding term.
//! 2. **Output error.** One ciphertext-bound FEBO `−` key per (image, class) with operand
//!    `pq`: decryption gives `yq − pq`, so `eq = pq − yq`.
//! 3. **Weight gradient.** Per image, the 150 key vectors `y_{f,a,b}` built from the image's
//!    `dq` ([`geometry::gradient_outputs`]), one batched request for the batch, 196-term
//!    products over `Bct`, batched discrete logs; the per-image `G_n` are summed exactly. The
//!    products depend only on the server's own `dq`, so they are computed while the key
//!    service derives and audits the gradient keys (`rayon::join`); the keys then only divide
//!    by `ct0^{sk}`.
//!
//! The per-image precomputation (decoded ciphertext, box products, fixed-base table of `ct0`)
//! is built once per step and shared by the forward and gradient products. It does not depend
//! on the keys, so it runs while the key service derives and audits the step's forward keys
//! (`rayon::join`). The public padding term of an output shared by all images (the forward
//! pass) is raised to `g^{padding}` once per step, then applied with one group operation per
//! image.
//!
//! # What the server holds
//! An [`EncryptedDataset`] (ciphertexts and public metadata), a [`KeyService`] handle, a
//! [`BabyStepTable`] and the public quantisation parameters: no constructor takes plaintext and
//! no method returns anything but the exact integers the function keys reveal.
//!
//! # Errors and bounds
//! Every decrypted value is solved within an explicit bound (`forward_bound`, resp.
//! `gradient_bound` per image, plus the public padding term); a value outside it is
//! [`SecureTrainingError::DlogOutOfRange`] naming the layer and the scale to lower — never a
//! wrong weight. After decryption the same bound checks as
//! [`QuantizedFirstLayer`](crate::nn::first_layer::QuantizedFirstLayer) apply, so both backends fail alike.

use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::coordinator::decrypt::{
    vartime_decryption_element, vartime_divide_by_key, DecryptionBases,
};
use crate::coordinator::key_service::KeyService;
use crate::coordinator::messages::{
    DomainId, FeboKeyItem, FeboKeyRequest, FeipKeyRequest, KeyVectorData,
};
use crate::coordinator::secure_training::encrypted_dataset::EncryptedDataset;
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::coordinator::secure_training::geometry::{
    ConvGeometry, FirstLayerGeometry, LinearGeometry, LinearOutput,
};
use crate::fe::dlog::{BabyStepTable, DlogSolver};
use crate::fe::febo::{Febo, FeboOp};
use crate::fe::feip::{Ciphertext, FunctionKey};
use crate::fe::group::multiexp::{multi_exp, recode, Ct0Table, OddMultiples, Wnaf};
use crate::fe::group::PrimeOrderGroup;
use crate::nn::error::{check_shape, NnError};
use crate::nn::first_layer::{
    check_bound, max_abs, FirstLayerBackend, FirstLayerSpec, QuantConfig,
};

mod noisy;

/// Counters and timings of a secure training run.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SecureStats {
    /// Batched requests to the key service (FEIP and FEBO).
    pub key_requests: u64,
    /// FEIP function keys received.
    pub feip_keys: u64,
    /// FEBO function keys received.
    pub febo_keys: u64,
    /// Values decrypted (FEIP inner products and FEBO results), each one discrete log.
    pub decryptions: u64,
    /// Wall seconds in discrete-log solving.
    pub dlog_seconds: f64,
    /// Wall seconds in group operations (decoding, box products, multi-exponentiations,
    /// `ct0` exponentiations), excluding discrete logs.
    pub fe_seconds: f64,
    /// Wall seconds waiting for the key service (key derivation, policy, audit), beyond the
    /// work that overlaps it (a batch's precomputation runs while its forward keys are
    /// derived, the gradient products while the gradient keys are; that time is counted in
    /// `fe_seconds` only).
    pub key_seconds: f64,
}

/// One image's precomputation: odd-multiple tables of the box products `Bct` and a fixed-base
/// table of `ct0`.
pub(crate) struct PreparedImage<G: PrimeOrderGroup> {
    boxes: Vec<OddMultiples<G>>,
    /// `None` for noisy keys ([`without_ct0_table`](Self::without_ct0_table)): the authority
    /// exponentiates `ct0` then.
    ct0: Option<Ct0Table<G>>,
    ct0_element: G::Element,
    /// The canonical encoding of `ct0` (what a noisy key request sends).
    ct0_bytes: Vec<u8>,
}

/// The real pixels of each of LeNet-5's 961 boxes (row-major `u · 31 + v`).
pub(crate) fn all_box_members() -> Vec<Vec<usize>> {
    ConvGeometry::lenet5().all_box_members()
}

impl<G: PrimeOrderGroup> PreparedImage<G> {
    /// Multiplies the ciphertext components of each box (`members` from [`all_box_members`])
    /// and builds the tables.
    pub(crate) fn new(group: &G, ct: &Ciphertext<G>, members: &[Vec<usize>]) -> Self {
        let mut image = Self::without_ct0_table(group, ct, members);
        image.ct0 = Some(Ct0Table::new(group, ct.ct0()));
        image
    }

    /// [`new`](Self::new) without the `ct0` table, for noisy keys (`K` already holds the `ct0`
    /// exponentiation); [`output_element`](Self::output_element) still works, more slowly.
    pub(crate) fn without_ct0_table(group: &G, ct: &Ciphertext<G>, members: &[Vec<usize>]) -> Self {
        let comps = ct.components();
        let boxes = members
            .iter()
            .map(|m| {
                let b = m.iter().fold(group.identity(), |mut acc, &p| {
                    group.op_assign(&mut acc, &comps[p]);
                    acc
                });
                OddMultiples::new(group, &b)
            })
            .collect();
        Self {
            boxes,
            ct0: None,
            ct0_element: ct.ct0().clone(),
            ct0_bytes: group.element_to_bytes(ct.ct0()),
        }
    }

    /// `g^{<xq, y> − padding} = ∏ Bct^{coef} / ct0^{sk_y}` of one output, from its recoded
    /// box coefficients and its function key: the server's one decryption
    /// ([`vartime_decryption_element`], shared with [`Server`](crate::coordinator::Server)).
    pub(crate) fn output_element(
        &self,
        group: &G,
        terms: &[(usize, Wnaf)],
        key: &FunctionKey<G>,
    ) -> G::Element {
        vartime_decryption_element(group, self, terms, key)
    }
}

/// The bases of an image are its box products `Bct`; a key vector comes as recoded box
/// coefficients `(box, wnaf(c))`.
impl<G: PrimeOrderGroup> DecryptionBases<G, [(usize, Wnaf)]> for PreparedImage<G> {
    fn vartime_numerator(&self, group: &G, terms: &[(usize, Wnaf)]) -> G::Element {
        multi_exp(group, &self.boxes, terms)
    }
    fn vartime_ct0_exp(&self, group: &G, sk: &G::Scalar) -> G::Element {
        match &self.ct0 {
            Some(t) => t.exp(group, sk),
            None => group.vartime_exp(&self.ct0_element, sk),
        }
    }
}

/// Asks `keys` for one FEIP key per non-constant output of `outputs` in `domain` (one
/// batched request, counted in `stats`), sending `vectors[i]`, the key vector of `outputs[i]`
/// in any form (box grids for the first layer); constant outputs get `None`.
///
/// # Errors
/// The key service's refusals; [`SecureTrainingError::Parameters`] if `vectors` does not match
/// `outputs`, or the service answers for another domain or with another number of keys.
pub(crate) fn request_output_keys<G: PrimeOrderGroup, K: KeyService<G> + ?Sized>(
    keys: &K,
    domain: DomainId,
    outputs: &[&LinearOutput],
    vectors: Vec<KeyVectorData>,
    stats: &mut SecureStats,
) -> Result<Vec<Option<FunctionKey<G>>>, SecureTrainingError> {
    if vectors.len() != outputs.len() {
        return Err(SecureTrainingError::Parameters(format!(
            "internal: {} key vectors for {} outputs",
            vectors.len(),
            outputs.len()
        )));
    }
    let vectors: Vec<KeyVectorData> = outputs
        .iter()
        .zip(vectors)
        .filter(|(o, _)| !o.is_constant())
        .map(|(_, v)| v)
        .collect();
    if vectors.is_empty() {
        return Ok(vec![None; outputs.len()]);
    }
    let t = Instant::now();
    let count = vectors.len();
    let response = keys.feip_keys(&FeipKeyRequest { domain, vectors })?;
    stats.key_seconds += t.elapsed().as_secs_f64();
    stats.key_requests += 1;
    if response.domain != domain || response.keys.len() != count {
        return Err(SecureTrainingError::Parameters(format!(
            "key service answered {} keys for {}, asked {count} for {domain}",
            response.keys.len(),
            response.domain
        )));
    }
    stats.feip_keys += count as u64;
    let mut issued = response.keys.into_iter();
    Ok(outputs
        .iter()
        .map(|o| if o.is_constant() { None } else { issued.next() })
        .collect())
}

/// `g^v` for the public padding terms `v` of the outputs: a fixed-base table of the generator
/// (variable time; the padding terms are public).
pub(crate) struct PaddingPowers<G: PrimeOrderGroup> {
    table: Ct0Table<G>,
}

impl<G: PrimeOrderGroup> PaddingPowers<G> {
    /// Builds the table of `group`'s generator.
    pub(crate) fn new(group: &G) -> Self {
        Self {
            table: Ct0Table::new(group, &group.generator()),
        }
    }

    /// `g^{|v|}` (`None` for `v = 0`).
    fn power_of_magnitude(&self, group: &G, v: i64) -> Option<G::Element> {
        (v != 0).then(|| {
            self.table.exp(
                group,
                &group.scalar_from_i64(i64::try_from(v.unsigned_abs()).unwrap_or(i64::MAX)),
            )
        })
    }

    /// `elem ← elem · g^v`.
    fn shift(&self, group: &G, elem: &mut G::Element, v: i64) {
        if let Some(p) = self.power_of_magnitude(group, v) {
            apply_shift(group, elem, &p, v > 0);
        }
    }

    /// `g^v` of every output with a key, for outputs shared by all images of a batch (built
    /// once per step, then one group operation per image and output instead of a fixed-base
    /// exponentiation).
    fn shared_shifts<T: Sync>(
        &self,
        group: &G,
        outs: &[LinearOutput],
        keys: &[Option<T>],
    ) -> Vec<Option<(G::Element, bool)>> {
        outs.par_iter()
            .zip(keys)
            .map(|(o, k)| {
                k.as_ref()
                    .and_then(|_| self.power_of_magnitude(group, o.padding))
                    .map(|p| (p, o.padding > 0))
            })
            .collect()
    }
}

/// `elem ← elem · p` (`positive`) or `elem ← elem / p`.
fn apply_shift<G: PrimeOrderGroup>(
    group: &G,
    elem: &mut G::Element,
    p: &G::Element,
    positive: bool,
) {
    if positive {
        group.op_assign(elem, p);
    } else {
        group.div_assign(elem, p);
    }
}

/// Solves one image's output elements `elems` (one per output of `outs` that has a key, in
/// order, each `g^{<xq, y>}`): each is first shifted by its public padding term, so that the
/// discrete-log search covers exactly the encoding's bound `|value| <= bound` (a diverging
/// model fails after `bound / table width` giant steps, however large its padding terms).
/// Outputs without a key are their padding term.
///
/// # Errors
/// [`SecureTrainingError::DlogOutOfRange`] naming `layer` and `hint` if a value lies outside
/// `bound`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn solve_outputs<G: PrimeOrderGroup, T>(
    table: &Arc<BabyStepTable<G>>,
    powers: &PaddingPowers<G>,
    mut elems: Vec<G::Element>,
    outs: &[LinearOutput],
    keys: &[Option<T>],
    bound: u64,
    layer: &'static str,
    hint: &'static str,
) -> Result<Vec<i64>, SecureTrainingError> {
    let group = table.group();
    let mut with_key = outs.iter().zip(keys).filter(|(_, k)| k.is_some());
    for e in &mut elems {
        if let Some((o, _)) = with_key.next() {
            powers.shift(group, e, o.padding);
        }
    }
    solve_shifted(table, &elems, outs, keys, bound, layer, hint)
}

/// [`solve_outputs`] for elements already shifted by their padding terms.
///
/// # Errors
/// As [`solve_outputs`].
fn solve_shifted<G: PrimeOrderGroup, T>(
    table: &Arc<BabyStepTable<G>>,
    elems: &[G::Element],
    outs: &[LinearOutput],
    keys: &[Option<T>],
    bound: u64,
    layer: &'static str,
    hint: &'static str,
) -> Result<Vec<i64>, SecureTrainingError> {
    let solver = DlogSolver::new(Arc::clone(table), bound).map_err(|e| {
        SecureTrainingError::Parameters(format!(
            "{layer}: the discrete-log table cannot serve bound {bound}: {e}"
        ))
    })?;
    let mut solved = solver.vartime_solve_batch(elems).into_iter();
    outs.iter()
        .zip(keys)
        .map(|(o, k)| match k {
            None => Ok(o.padding),
            Some(_) => match solved.next() {
                Some(Ok(v)) => Ok(v),
                _ => Err(SecureTrainingError::DlogOutOfRange { layer, bound, hint }),
            },
        })
        .collect()
}

/// Why a decrypted value can lie beyond its bound: the model diverged if the worst case of
/// honest data (`worst`) exceeds `bound`; otherwise no encryption of encodable data gives such
/// a value, and the ciphertext is not what the data owner encrypted.
pub(crate) fn out_of_range_hint(worst: i128, bound: u64, diverged: &'static str) -> &'static str {
    if worst.unsigned_abs() <= u128::from(bound) {
        TAMPERED_HINT
    } else {
        diverged
    }
}

/// The cause named when honest data cannot produce the value.
pub(crate) const TAMPERED_HINT: &str = "the worst case of any encodable input fits the bound, \
     so a ciphertext is not an encryption of the data owner's data under this domain's key \
     (tampered or corrupt ciphertext, or one of another domain)";

/// The secure first-layer backend (see the [module docs](self)).
pub struct SecureFirstLayer<G: PrimeOrderGroup, K: KeyService<G>> {
    data: EncryptedDataset<G>,
    keys: K,
    table: Arc<BabyStepTable<G>>,
    powers: PaddingPowers<G>,
    quant: QuantConfig,
    febo: Febo<G>,
    geometry: FirstLayerGeometry,
    spec: FirstLayerSpec,
    members: Vec<Vec<usize>>,
    stats: SecureStats,
    prepared: Option<(Vec<usize>, Vec<PreparedImage<G>>)>,
    /// Whether the shard domains are noisy: keys are then asked per ciphertext
    /// ([`with_noisy_keys`](Self::with_noisy_keys)).
    noisy: bool,
}

impl<G: PrimeOrderGroup, K: KeyService<G>> std::fmt::Debug for SecureFirstLayer<G, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureFirstLayer")
            .field("data", &self.data)
            .field("geometry", &self.geometry)
            .field("requester", self.keys.requester())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The layer names in errors: `conv1` or `fc1`, the model's first layer.
struct LayerNames {
    forward: &'static str,
    forward_worst: &'static str,
    forward_check: &'static str,
    forward_keys: &'static str,
    gradient_keys: &'static str,
    gradient: &'static str,
    gradient_worst: &'static str,
    gradient_check: &'static str,
}

const CONV_NAMES: LayerNames = LayerNames {
    forward: "conv1 forward z (secure)",
    forward_worst: "conv1 forward z (worst case)",
    forward_check: "conv1 forward z",
    forward_keys: "conv1 forward key vectors",
    gradient_keys: "conv1 weight-gradient key vectors",
    gradient: "conv1 weight gradient G_n (secure, per image)",
    gradient_worst: "conv1 weight gradient G (worst case per image)",
    gradient_check: "conv1 weight gradient G",
};

const DENSE_NAMES: LayerNames = LayerNames {
    forward: "fc1 forward z (secure)",
    forward_worst: "fc1 forward z (worst case)",
    forward_check: "fc1 forward z",
    forward_keys: "fc1 forward key vectors",
    gradient_keys: "fc1 weight-gradient key vectors",
    gradient: "fc1 weight gradient G (secure, feature-major)",
    gradient_worst: "fc1 weight gradient G (worst case)",
    gradient_check: "fc1 weight gradient G",
};

fn names(g: &FirstLayerGeometry) -> &'static LayerNames {
    match g {
        FirstLayerGeometry::Conv(_) => &CONV_NAMES,
        FirstLayerGeometry::Linear(_) => &DENSE_NAMES,
    }
}

pub(crate) const FORWARD_HINT: &str = "the model diverged (values beyond the encoding's bound): \
     lower --lr, --scale-w or --scale-x, or raise the forward bound";
const GRADIENT_HINT: &str = "the model diverged (values beyond the encoding's bound): \
     lower --lr, --scale-grad or --scale-x, or raise the gradient bound";

/// The largest row sum `Σ_j |m[r, j]|` of a row-major matrix with `cols` columns.
fn max_row_l1(m: &[i64], cols: usize) -> i128 {
    m.chunks(cols.max(1))
        .map(|r| r.iter().map(|&v| i128::from(v).abs()).sum::<i128>())
        .max()
        .unwrap_or(0)
}

/// Errors unless every key-vector entry of `outputs` lies within the shard domains' key bound
/// `Y` (the authority would refuse the request): weights or gradients beyond it mean the model
/// diverged.
fn check_key_bound(
    layer: &'static str,
    outputs: &[LinearOutput],
    key_bound: u64,
) -> Result<(), SecureTrainingError> {
    let max = outputs
        .iter()
        .flat_map(|o| o.pixel_terms.iter().map(|&(_, y)| i128::from(y).abs()))
        .max()
        .unwrap_or(0);
    check_bound(
        layer,
        max,
        key_bound,
        "the model diverged (key-vector entries beyond the key bound Y of the shard domains): \
         lower --lr, --scale-w or --scale-grad",
    )?;
    Ok(())
}

/// The key vector of one dense-layer output: its sparse or dense form, whichever is smaller.
fn plain_key_vector(o: &LinearOutput, n: usize) -> KeyVectorData {
    if 2 * o.pixel_terms.len() >= n {
        let mut y = vec![0i64; n];
        for &(q, v) in &o.pixel_terms {
            y[q] = v;
        }
        KeyVectorData::Dense(y)
    } else {
        KeyVectorData::Sparse(o.pixel_terms.clone())
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G>> SecureFirstLayer<G, K> {
    /// A LeNet-5 backend (conv1 + 2x2 average pool, [`ConvGeometry::lenet5`]) over the
    /// encrypted dataset `data`; see [`with_geometry`](Self::with_geometry).
    ///
    /// # Errors
    /// As [`with_geometry`](Self::with_geometry).
    pub fn new(
        data: EncryptedDataset<G>,
        keys: K,
        table: Arc<BabyStepTable<G>>,
        quant: QuantConfig,
    ) -> Result<Self, SecureTrainingError> {
        Self::with_geometry(
            data,
            keys,
            table,
            quant,
            FirstLayerGeometry::Conv(ConvGeometry::lenet5()),
        )
    }

    /// A backend for the first layer `geometry` over the encrypted dataset `data`, asking
    /// `keys` for function keys and solving discrete logs with `table`. `quant` must have the
    /// dataset's `S_x` and `S_p`; its other fields (`S_w`, `S_g`, bounds) are the server's
    /// choice. Checks every shard's public key against the key service.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for mismatched scales, a table of another group, or
    /// a geometry that does not fit the dataset (input length or shape; a dense layer needs
    /// feature-major blocks); [`SecureTrainingError::WrongKey`] if the dataset was encrypted
    /// under other keys.
    pub fn with_geometry(
        data: EncryptedDataset<G>,
        keys: K,
        table: Arc<BabyStepTable<G>>,
        quant: QuantConfig,
        geometry: FirstLayerGeometry,
    ) -> Result<Self, SecureTrainingError> {
        quant.validate()?;
        let p = data.header().params;
        if quant.scale_x != p.scale_x || quant.scale_p != p.scale_p {
            return Err(SecureTrainingError::Parameters(format!(
                "the dataset was encrypted with scale_x {} and scale_p {}, training uses {} and {}",
                p.scale_x, p.scale_p, quant.scale_x, quant.scale_p
            )));
        }
        if table.group() != data.group() {
            return Err(SecureTrainingError::Parameters(
                "the discrete-log table is over another group".into(),
            ));
        }
        let layout = data.header().layout;
        if geometry.input_len() != layout.input_len {
            return Err(SecureTrainingError::Parameters(format!(
                "the first layer reads {} features, the dataset has {}",
                geometry.input_len(),
                layout.input_len
            )));
        }
        match &geometry {
            FirstLayerGeometry::Linear(_) if !layout.feature_major => {
                return Err(SecureTrainingError::Parameters(
                    "a dense first layer needs the dataset encrypted feature-major as well \
                     (re-encrypt it for this model)"
                        .into(),
                ));
            }
            FirstLayerGeometry::Conv(g) => {
                if let Some(shape) = layout.input_shape {
                    if g.input_shape() != shape {
                        return Err(SecureTrainingError::Parameters(format!(
                            "the first layer reads {:?} inputs, the dataset has {shape:?}",
                            g.input_shape()
                        )));
                    }
                }
            }
            FirstLayerGeometry::Linear(_) => {}
        }
        data.verify_keys(&keys)?;
        let febo = Febo::new(data.group().clone(), p.febo_params()?);
        let powers = PaddingPowers::new(data.group());
        let members = geometry.all_box_members();
        let spec = geometry.spec();
        Ok(Self {
            data,
            keys,
            table,
            powers,
            quant,
            febo,
            geometry,
            spec,
            members,
            stats: SecureStats::default(),
            prepared: None,
            noisy: false,
        })
    }

    /// Counters and timings so far.
    #[must_use]
    pub fn stats(&self) -> &SecureStats {
        &self.stats
    }

    /// The encrypted dataset.
    #[must_use]
    pub fn dataset(&self) -> &EncryptedDataset<G> {
        &self.data
    }

    /// The key service.
    #[must_use]
    pub fn key_service(&self) -> &K {
        &self.keys
    }

    /// The first layer's geometry.
    #[must_use]
    pub fn geometry(&self) -> &FirstLayerGeometry {
        &self.geometry
    }

    /// The shard that holds every index of `batch`.
    fn shard_of_batch(&self, batch: &[usize]) -> Result<usize, SecureTrainingError> {
        let n = self.data.len();
        if let Some(&index) = batch.iter().find(|&&i| i >= n) {
            return Err(SecureTrainingError::Parameters(format!(
                "index {index} out of range for {n} samples"
            )));
        }
        let h = self.data.header();
        let first = batch
            .first()
            .ok_or_else(|| SecureTrainingError::Parameters("empty batch".into()))?;
        let shard = h.shard_of(*first);
        if batch.iter().any(|&i| h.shard_of(i) != shard) {
            return Err(SecureTrainingError::BatchSpansShards {
                shard_size: h.params.shard_size,
            });
        }
        Ok(shard)
    }

    /// Largest `|B|`: `p²` times the feature bound.
    fn max_box(&self) -> i128 {
        self.geometry.box_size() as i128 * i128::from(self.data.header().pixel_bound)
    }

    /// Decodes the batch's ciphertexts and builds the box products and `ct0` tables (reused
    /// until the batch changes).
    fn prepare(&mut self, batch: &[usize]) -> Result<(), SecureTrainingError> {
        if matches!(&self.prepared, Some((b, _)) if b == batch) {
            return Ok(());
        }
        let (images, seconds) = self.prepare_images(batch)?;
        self.prepared = Some((batch.to_vec(), images));
        self.stats.fe_seconds += seconds;
        Ok(())
    }

    /// The prepared images of `batch` and the wall seconds they took.
    fn prepare_images(
        &self,
        batch: &[usize],
    ) -> Result<(Vec<PreparedImage<G>>, f64), SecureTrainingError> {
        let t = Instant::now();
        let group = self.data.group();
        let data = &self.data;
        let members = &self.members;
        let noisy = self.noisy;
        let images = batch
            .par_iter()
            .map(|&i| {
                let ct = data.image_ciphertext(i)?;
                Ok(if noisy {
                    PreparedImage::without_ct0_table(group, &ct, members)
                } else {
                    PreparedImage::new(group, &ct, members)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<Vec<_>, SecureTrainingError>>()?;
        Ok((images, t.elapsed().as_secs_f64()))
    }

    /// [`request_output_keys`] for `outputs` while the batch is [prepared](Self::prepare) on
    /// the other threads: the precomputation does not depend on the keys, so the key service's
    /// serial part (policy, audit chain) no longer idles the cores.
    fn keys_while_preparing(
        &mut self,
        batch: &[usize],
        domain: DomainId,
        outputs: &[&LinearOutput],
        vectors: Vec<KeyVectorData>,
    ) -> Result<Vec<Option<FunctionKey<G>>>, SecureTrainingError> {
        if matches!(&self.prepared, Some((b, _)) if b == batch) {
            return request_output_keys(&self.keys, domain, outputs, vectors, &mut self.stats);
        }
        let mut stats = SecureStats::default();
        let keys = &self.keys;
        let t = Instant::now();
        let (issued, prepared) = rayon::join(
            || request_output_keys(keys, domain, outputs, vectors, &mut stats),
            || self.prepare_images(batch),
        );
        let both = t.elapsed().as_secs_f64();
        let (images, seconds) = prepared?;
        self.prepared = Some((batch.to_vec(), images));
        // The overlap counts once: as group work; the key service only for the time the server
        // waited beyond it.
        self.stats.fe_seconds += seconds;
        self.stats.key_seconds += (both - seconds).max(0.0);
        let issued = issued?;
        self.stats.key_requests += stats.key_requests;
        self.stats.feip_keys += stats.feip_keys;
        Ok(issued)
    }

    /// Decrypts each image's own outputs `per_sample[n]` of the prepared batch (the gradient
    /// pass), asking the key service for their keys (`refs`: `per_sample` flattened, `vectors`
    /// their key vectors) while the numerators `∏ Bct^{coef}` are computed on the other
    /// threads: they depend only on the server's own key vectors. Then as
    /// [`decrypt`](Self::decrypt): `/ ct0^{sk}`, the padding shift, the discrete logs within
    /// `bound`. The key service counts only for the time waited beyond the numerators.
    #[allow(clippy::too_many_arguments)]
    fn keys_while_multiplying(
        &mut self,
        domain: DomainId,
        per_sample: &[Vec<LinearOutput>],
        refs: &[&LinearOutput],
        vectors: Vec<KeyVectorData>,
        bound: u64,
        layer: &'static str,
        hint: &'static str,
    ) -> Result<Vec<Vec<i64>>, SecureTrainingError> {
        let (_, images) = self.prepared.as_ref().ok_or_else(|| {
            SecureTrainingError::Parameters("internal: batch not prepared".into())
        })?;
        if images.len() != per_sample.len() {
            return Err(SecureTrainingError::Parameters(format!(
                "internal: {} prepared images for {} samples' outputs",
                images.len(),
                per_sample.len()
            )));
        }
        let group = self.data.group();
        let keys = &self.keys;
        let mut stats = SecureStats::default();
        let t = Instant::now();
        let (issued, (numerators, multiplying)) = rayon::join(
            || request_output_keys(keys, domain, refs, vectors, &mut stats),
            || {
                let t = Instant::now();
                let numerators: Vec<Vec<G::Element>> = images
                    .par_iter()
                    .zip(per_sample)
                    .map(|(img, outs)| {
                        outs.iter()
                            .filter(|o| !o.is_constant())
                            .map(|o| img.vartime_numerator(group, recode(&o.box_terms).as_slice()))
                            .collect()
                    })
                    .collect();
                (numerators, t.elapsed().as_secs_f64())
            },
        );
        let both = t.elapsed().as_secs_f64();
        self.stats.fe_seconds += multiplying;
        self.stats.key_seconds += (both - multiplying).max(0.0);
        let issued = issued?;
        self.stats.key_requests += stats.key_requests;
        self.stats.feip_keys += stats.feip_keys;
        // `issued` follows `refs` (= `per_sample` flattened): image n's keys start at the sum
        // of the earlier images' output counts.
        let mut starts = Vec::with_capacity(per_sample.len());
        let mut next = 0;
        for outs in per_sample {
            starts.push(next..next + outs.len());
            next += outs.len();
        }
        if next != issued.len() {
            return Err(SecureTrainingError::Parameters(format!(
                "internal: {} keys for {next} outputs",
                issued.len()
            )));
        }
        let t = Instant::now();
        let powers = &self.powers;
        let elements: Vec<Vec<G::Element>> = images
            .par_iter()
            .zip(numerators)
            .zip(per_sample)
            .zip(&starts)
            .map(|(((img, nums), outs), range)| {
                outs.iter()
                    .zip(&issued[range.clone()])
                    .filter_map(|(o, k)| k.as_ref().map(|k| (o, k)))
                    .zip(nums)
                    .map(|((o, k), num)| {
                        let mut e =
                            vartime_divide_by_key::<G, [(usize, Wnaf)], _>(group, img, num, k);
                        powers.shift(group, &mut e, o.padding);
                        e
                    })
                    .collect()
            })
            .collect();
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        self.solve_images(
            &elements,
            |n| &per_sample[n],
            |n| &issued[starts[n].clone()],
            bound,
            layer,
            hint,
        )
    }

    /// The discrete logs of each image's elements, already shifted by their padding terms
    /// (`elements[n]` for the outputs of `outputs(n)` that have a key in `keys(n)`), within
    /// `bound`; timed and counted in the stats.
    fn solve_images<'o, O, Q>(
        &mut self,
        elements: &[Vec<G::Element>],
        outputs: O,
        keys: Q,
        bound: u64,
        layer: &'static str,
        hint: &'static str,
    ) -> Result<Vec<Vec<i64>>, SecureTrainingError>
    where
        O: Fn(usize) -> &'o [LinearOutput] + Sync,
        Q: Fn(usize) -> &'o [Option<FunctionKey<G>>] + Sync,
    {
        let t = Instant::now();
        let table = &self.table;
        let count = elements.iter().map(|e| e.len() as u64).sum::<u64>();
        // Stops at the first image with a value out of range (rayon short-circuits).
        let results = elements
            .par_iter()
            .enumerate()
            .map(|(n, elems)| solve_shifted(table, elems, outputs(n), keys(n), bound, layer, hint))
            .collect::<Result<Vec<_>, _>>()?;
        self.stats.dlog_seconds += t.elapsed().as_secs_f64();
        self.stats.decryptions += count;
        Ok(results)
    }

    /// Decrypts, for each image `n` of the prepared batch, the outputs `outputs(n)` with keys
    /// `keys(n)`: `value = dlog(∏ Bct^{coef} / ct0^{sk} · g^{padding})`, each within `bound`.
    #[allow(clippy::too_many_arguments)]
    fn decrypt<'o, O, Q>(
        &mut self,
        outputs: O,
        shared: Option<&[Vec<(usize, Wnaf)>]>,
        keys: Q,
        bound: u64,
        layer: &'static str,
        hint: &'static str,
    ) -> Result<Vec<Vec<i64>>, SecureTrainingError>
    where
        O: Fn(usize) -> &'o [LinearOutput] + Sync,
        Q: Fn(usize) -> &'o [Option<FunctionKey<G>>] + Sync,
    {
        let (_, images) = self.prepared.as_ref().ok_or_else(|| {
            SecureTrainingError::Parameters("internal: batch not prepared".into())
        })?;
        let group = self.data.group();
        let t = Instant::now();
        let powers = &self.powers;
        // Shared outputs (the forward pass): their padding powers once for all images.
        let shifts = shared.map(|_| powers.shared_shifts(group, outputs(0), keys(0)));
        // Each element is shifted by its public padding term, `g^{<xq, y>}`, so that the
        // discrete-log search covers exactly the bound (see `solve_outputs`).
        let elements: Vec<Vec<G::Element>> = images
            .par_iter()
            .enumerate()
            .map(|(n, img)| {
                let outs = outputs(n);
                let mut local = Vec::new();
                outs.iter()
                    .enumerate()
                    .zip(keys(n))
                    .filter_map(|((m, o), k)| k.as_ref().map(|k| (m, o, k)))
                    .map(|(m, o, k)| {
                        let terms = match shared {
                            Some(r) => &r[m],
                            None => {
                                local = recode(&o.box_terms);
                                &local
                            }
                        };
                        let mut e = img.output_element(group, terms, k);
                        match &shifts {
                            Some(s) => {
                                if let Some((p, positive)) = &s[m] {
                                    apply_shift(group, &mut e, p, *positive);
                                }
                            }
                            None => powers.shift(group, &mut e, o.padding),
                        }
                        e
                    })
                    .collect()
            })
            .collect();
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        self.solve_images(&elements, outputs, keys, bound, layer, hint)
    }

    /// The forward outputs `z: [batch, outputs]` (row-major) for the encoded weights
    /// `wq: [rows · cols]` of [`FirstLayerGeometry::weight_shape`].
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for a bad batch or weight length;
    /// [`SecureTrainingError::BatchSpansShards`]; [`SecureTrainingError::DlogOutOfRange`]
    /// naming divergence or a tampered ciphertext; the key service's refusals; `NnError`
    /// bound errors (as the quantised backend's) through [`SecureTrainingError::Parameters`].
    pub fn forward_values(
        &mut self,
        batch: &[usize],
        wq: &[i64],
    ) -> Result<Vec<i64>, SecureTrainingError> {
        let shard = self.shard_of_batch(batch)?;
        let domain = self.data.header().domains[shard];
        let (rows, cols) = self.geometry.weight_shape();
        if wq.len() != rows * cols {
            return Err(SecureTrainingError::Parameters(format!(
                "first-layer weights: {} values, expected {rows} x {cols}",
                wq.len()
            )));
        }
        // The largest |z| any encodable input can give: beyond the bound, a failing discrete
        // log means divergence; within it, a ciphertext that is not the data owner's.
        let worst = max_row_l1(wq, cols) * self.max_box();
        let names = names(&self.geometry);
        check_bound(
            names.forward_worst,
            worst,
            i64::MAX as u64,
            "lower --scale-w or --scale-x",
        )?;
        let hint = out_of_range_hint(worst, self.quant.forward_bound, FORWARD_HINT);
        let pad = self.data.header().padding_value;
        let n = self.geometry.input_len();
        let (outputs, vectors) = match &self.geometry {
            FirstLayerGeometry::Conv(g) => {
                let outputs = g.forward_outputs(wq, pad)?;
                let vectors = g.forward_key_vectors(wq)?;
                (outputs, vectors)
            }
            FirstLayerGeometry::Linear(g) => {
                let outputs = g.forward_outputs(wq)?;
                let vectors = outputs.iter().map(|o| plain_key_vector(o, n)).collect();
                (outputs, vectors)
            }
        };
        let key_bound = self.data.header().params.key_bound;
        check_key_bound(names.forward_keys, &outputs, key_bound)?;
        let values = if self.noisy {
            self.noisy_forward(batch, domain, &outputs, vectors, hint)?
        } else {
            let refs: Vec<&LinearOutput> = outputs.iter().collect();
            // The key service's work (derivation, audit) overlaps the batch's precomputation
            // and the recoding, which do not depend on the keys.
            let keys = self.keys_while_preparing(batch, domain, &refs, vectors)?;
            // The forward outputs are the same for every image: recode their coefficients once.
            let recoded: Vec<Vec<(usize, Wnaf)>> =
                outputs.iter().map(|o| recode(&o.box_terms)).collect();
            self.decrypt(
                |_| &outputs,
                Some(&recoded),
                |_| &keys,
                self.quant.forward_bound,
                names.forward,
                hint,
            )?
        };
        let z: Vec<i64> = values.into_iter().flatten().collect();
        check_bound(
            names.forward_check,
            max_abs(z.iter()),
            self.quant.forward_bound,
            "lower --scale-w (or --scale-x), or raise the forward bound",
        )?;
        Ok(z)
    }

    /// The output error `eq = pq − yq: [batch, classes]` for the encoded softmax outputs
    /// `pq: [batch, classes]` (FEBO, one key per sample and class).
    ///
    /// # Errors
    /// As [`forward_values`](Self::forward_values); an out-of-range value names a tampered
    /// label ciphertext (`|yq − pq| <= S_p` for every honest one).
    pub fn output_error_values(
        &mut self,
        batch: &[usize],
        pq: &[i64],
    ) -> Result<Vec<i64>, SecureTrainingError> {
        let shard = self.shard_of_batch(batch)?;
        let domain = self.data.header().domains[shard];
        let classes = self.data.header().layout.classes;
        if pq.len() != batch.len() * classes {
            return Err(SecureTrainingError::Parameters(format!(
                "encoded softmax output: {} values, expected {} x {classes}",
                pq.len(),
                batch.len()
            )));
        }
        let t = Instant::now();
        let group = self.data.group();
        let cts = batch
            .iter()
            .map(|&i| self.data.label_ciphertexts(i))
            .collect::<Result<Vec<_>, _>>()?;
        let items: Vec<FeboKeyItem> = cts
            .iter()
            .zip(pq.chunks_exact(classes))
            .flat_map(|(c, row)| {
                c.iter().zip(row).map(|(ct, &operand)| FeboKeyItem {
                    commitment: group.element_to_bytes(ct.commitment()),
                    op: FeboOp::Sub,
                    operand,
                })
            })
            .collect();
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let count = items.len();
        let response = self.keys.febo_keys(&FeboKeyRequest { domain, items })?;
        self.stats.key_seconds += t.elapsed().as_secs_f64();
        self.stats.key_requests += 1;
        if response.keys.len() != count {
            return Err(SecureTrainingError::Parameters(
                "FEBO key count mismatch".into(),
            ));
        }
        self.stats.febo_keys += count as u64;
        let t = Instant::now();
        let febo = &self.febo;
        let elements = cts
            .iter()
            .flatten()
            .zip(&response.keys)
            .map(|(ct, k)| febo.vartime_decrypt_element(ct, k))
            .collect::<Result<Vec<_>, _>>()?;
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let bound = 2 * self.quant.one_hot_value().unsigned_abs();
        let solver = DlogSolver::new(Arc::clone(&self.table), bound)
            .map_err(|e| SecureTrainingError::Parameters(e.to_string()))?;
        let solved = solver.vartime_solve_batch(&elements);
        self.stats.dlog_seconds += t.elapsed().as_secs_f64();
        self.stats.decryptions += count as u64;
        solved
            .into_iter()
            .map(|r| {
                // Decryption gives yq − pq.
                r.map(|v| -v)
                    .map_err(|_| SecureTrainingError::DlogOutOfRange {
                        layer: "output error P - Y (FEBO)",
                        bound,
                        // |yq - pq| <= S_p for every one-hot label and every encodable
                        // probability, so this is never a scale problem.
                        hint: "a label ciphertext is not an encryption of a one-hot label \
                               under this shard's key (tampered or corrupt ciphertext, or one \
                               of another domain)",
                    })
            })
            .collect()
    }

    /// The weight gradient `G: [rows · cols]` summed over the batch, for the encoded output
    /// gradients `dq: [batch, outputs]`.
    ///
    /// A convolution decrypts each sample's `G_n` over its box products (key vectors from the
    /// sample's `dq`); a dense layer decrypts `G[o, q]` directly from the shard's feature-major
    /// ciphertexts, with one key per output `o` (column `o` of `dq` over the shard's slots).
    ///
    /// # Errors
    /// As [`forward_values`](Self::forward_values), with the gradient bound.
    pub fn weight_gradient_values(
        &mut self,
        batch: &[usize],
        dq: &[i64],
    ) -> Result<Vec<i64>, SecureTrainingError> {
        let shard = self.shard_of_batch(batch)?;
        let outputs = self.geometry.outputs();
        if dq.len() != batch.len() * outputs {
            return Err(SecureTrainingError::Parameters(format!(
                "first-layer output gradient: {} values, expected {} x {outputs}",
                dq.len(),
                batch.len()
            )));
        }
        let acc = match self.geometry.clone() {
            FirstLayerGeometry::Conv(g) => self.conv_gradient(&g, shard, batch, dq)?,
            FirstLayerGeometry::Linear(g) => self.linear_gradient(&g, shard, batch, dq)?,
        };
        acc.into_iter()
            .map(|v| {
                check_bound(
                    names(&self.geometry).gradient_check,
                    v,
                    self.quant.gradient_bound.min(i64::MAX as u64),
                    "lower --scale-grad (or --scale-x), or raise the gradient bound",
                )?;
                Ok(v as i64)
            })
            .collect()
    }

    fn conv_gradient(
        &mut self,
        g: &ConvGeometry,
        shard: usize,
        batch: &[usize],
        dq: &[i64],
    ) -> Result<Vec<i128>, SecureTrainingError> {
        let domain = self.data.header().domains[shard];
        let outputs = g.outputs();
        let (oh, ow) = g.output_side();
        let worst = max_row_l1(dq, oh * ow) * self.max_box();
        check_bound(
            CONV_NAMES.gradient_worst,
            worst,
            i64::MAX as u64,
            "lower --scale-grad or --scale-x",
        )?;
        let hint = out_of_range_hint(worst, self.quant.gradient_bound, GRADIENT_HINT);
        let pad = self.data.header().padding_value;
        let per_sample: Vec<Vec<LinearOutput>> = dq
            .par_chunks_exact(outputs)
            .map(|d| g.gradient_outputs(d, pad))
            .collect::<Result<_, _>>()?;
        let key_bound = self.data.header().params.key_bound;
        for o in &per_sample {
            check_key_bound(CONV_NAMES.gradient_keys, o, key_bound)?;
        }
        let refs: Vec<&LinearOutput> = per_sample.iter().flatten().collect();
        let mut vectors = Vec::with_capacity(refs.len());
        for d in dq.chunks_exact(outputs) {
            vectors.extend(g.gradient_key_vectors(d)?);
        }
        if self.noisy {
            return self.noisy_conv_gradient(batch, domain, &per_sample, vectors, hint);
        }
        self.prepare(batch)?;
        let values = self.keys_while_multiplying(
            domain,
            &per_sample,
            &refs,
            vectors,
            self.quant.gradient_bound,
            CONV_NAMES.gradient,
            hint,
        )?;
        let m = g.gradient_outputs_len();
        let mut acc = vec![0i128; m];
        for v in &values {
            for (a, &x) in acc.iter_mut().zip(v) {
                *a += i128::from(x);
            }
        }
        Ok(acc)
    }

    fn linear_gradient(
        &mut self,
        g: &LinearGeometry,
        shard: usize,
        batch: &[usize],
        dq: &[i64],
    ) -> Result<Vec<i128>, SecureTrainingError> {
        let h = self.data.header();
        let domain = h.feature_domains[shard];
        let size = h.params.shard_size;
        let first = shard * size;
        let (outputs, inputs) = (g.outputs(), g.inputs());
        // Column o of dq over the shard's slots: y_o[i − first] = dq[n, o] for i = batch[n].
        let mut columns = vec![vec![0i64; size]; outputs];
        for (row, &i) in dq.chunks_exact(outputs).zip(batch) {
            for (col, &v) in columns.iter_mut().zip(row) {
                col[i - first] = v;
            }
        }
        let worst = columns
            .iter()
            .map(|c| max_row_l1(c, size))
            .max()
            .unwrap_or(0)
            * self.max_box();
        check_bound(
            DENSE_NAMES.gradient_worst,
            worst,
            i64::MAX as u64,
            "lower --scale-grad or --scale-x",
        )?;
        let hint = out_of_range_hint(worst, self.quant.gradient_bound, GRADIENT_HINT);
        let keyed: Vec<LinearOutput> = columns
            .iter()
            .map(|c| {
                let terms: Vec<(usize, i64)> = c
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| v != 0)
                    .map(|(j, &v)| (j, v))
                    .collect();
                LinearOutput {
                    box_terms: terms.clone(),
                    pixel_terms: terms,
                    padding: 0,
                }
            })
            .collect();
        check_key_bound(DENSE_NAMES.gradient_keys, &keyed, h.params.key_bound)?;
        let refs: Vec<&LinearOutput> = keyed.iter().collect();
        let vectors = keyed.iter().map(|o| plain_key_vector(o, size)).collect();
        let keys = request_output_keys(&self.keys, domain, &refs, vectors, &mut self.stats)?;
        let recoded: Vec<Vec<(usize, Wnaf)>> = keyed.iter().map(|o| recode(&o.box_terms)).collect();
        let slots: Vec<Vec<usize>> = (0..size).map(|j| vec![j]).collect();
        let t = Instant::now();
        let (data, group) = (&self.data, self.data.group());
        // Per feature q: the tables of its ciphertext, then G[o, q] for every keyed o.
        let elements: Vec<Vec<G::Element>> = (0..inputs)
            .into_par_iter()
            .map(|q| {
                let ct = data.feature_ciphertext(shard, q)?;
                let prepared = PreparedImage::new(group, &ct, &slots);
                Ok(recoded
                    .iter()
                    .zip(&keys)
                    .filter_map(|(terms, k)| {
                        k.as_ref().map(|k| prepared.output_element(group, terms, k))
                    })
                    .collect())
            })
            .collect::<Result<_, SecureTrainingError>>()?;
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let count = elements.iter().map(|e| e.len() as u64).sum::<u64>();
        let (table, powers, bound) = (&self.table, &self.powers, self.quant.gradient_bound);
        let per_feature: Vec<Vec<i64>> = elements
            .into_par_iter()
            .map(|elems| {
                solve_outputs(
                    table,
                    powers,
                    elems,
                    &keyed,
                    &keys,
                    bound,
                    DENSE_NAMES.gradient,
                    hint,
                )
            })
            .collect::<Result<_, _>>()?;
        self.stats.dlog_seconds += t.elapsed().as_secs_f64();
        self.stats.decryptions += count;
        // per_feature[q][o] → G[o, q].
        let mut acc = vec![0i128; outputs * inputs];
        for (q, col) in per_feature.iter().enumerate() {
            for (o, &v) in col.iter().enumerate() {
                acc[o * inputs + q] = i128::from(v);
            }
        }
        Ok(acc)
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G>> FirstLayerBackend for SecureFirstLayer<G, K> {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn mode(&self) -> &'static str {
        "secure"
    }

    fn spec(&self) -> &FirstLayerSpec {
        &self.spec
    }

    fn quant_config(&self) -> &QuantConfig {
        &self.quant
    }

    fn classes(&self) -> usize {
        self.data.header().layout.classes
    }

    fn forward(
        &mut self,
        batch: &[usize],
        wq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        self.check_indices(batch)?;
        let (rows, cols) = self.geometry.weight_shape();
        check_shape("first-layer weights wq", &[rows, cols], wq.shape())?;
        let wq: Vec<i64> = wq.iter().copied().collect();
        let z = self.forward_values(batch, &wq)?;
        Array2::from_shape_vec((batch.len(), self.geometry.outputs()), z)
            .map_err(|e| NnError::InvalidConfig(e.to_string()))
    }

    fn output_error(
        &mut self,
        batch: &[usize],
        pq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        self.check_indices(batch)?;
        let classes = self.classes();
        check_shape(
            "encoded softmax output pq",
            &[batch.len(), classes],
            pq.shape(),
        )?;
        let pq: Vec<i64> = pq.iter().copied().collect();
        let eq = self.output_error_values(batch, &pq)?;
        Array2::from_shape_vec((batch.len(), classes), eq)
            .map_err(|e| NnError::InvalidConfig(e.to_string()))
    }

    fn weight_gradient(
        &mut self,
        batch: &[usize],
        dq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        self.check_indices(batch)?;
        check_shape(
            "first-layer output gradient dq",
            &[batch.len(), self.geometry.outputs()],
            dq.shape(),
        )?;
        let dq: Vec<i64> = dq.iter().copied().collect();
        let g = self.weight_gradient_values(batch, &dq)?;
        Array2::from_shape_vec(self.geometry.weight_shape(), g)
            .map_err(|e| NnError::InvalidConfig(e.to_string()))
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G>> SecureFirstLayer<G, K> {
    fn check_indices(&self, batch: &[usize]) -> Result<(), NnError> {
        let n = self.data.len();
        match batch.iter().find(|&&i| i >= n) {
            Some(&index) => Err(NnError::IndexOutOfRange { index, len: n }),
            None => Ok(()),
        }
    }
}
