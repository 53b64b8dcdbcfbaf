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
//!    products over `Bct`, batched discrete logs; the per-image `G_n` are summed exactly.
//!
//! The per-image precomputation (decoded ciphertext, box products, fixed-base table of `ct0`)
//! is built once per step and shared by the forward and gradient products.
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

use ndarray::{Array2, Array4, ArrayView2, ArrayView4};
use rayon::prelude::*;

use crate::coordinator::decrypt::{
    vartime_decrypt_columns, vartime_decryption_element, DecryptTimes, DecryptionBases,
    DecryptionColumn,
};
use crate::coordinator::key_service::KeyService;
use crate::coordinator::messages::{
    DomainId, FeboKeyItem, FeboKeyRequest, FeipKeyRequest, KeyVectorData,
};
use crate::coordinator::secure_training::encrypted_dataset::EncryptedDataset;
use crate::coordinator::secure_training::error::SecureTrainingError;
use crate::coordinator::secure_training::geometry::{
    self, box_members, LinearOutput, BOXES, GRADIENT_OUTPUTS,
};
use crate::coordinator::secure_training::multiexp::{
    multi_exp, recode, Ct0Table, OddMultiples, Wnaf,
};
use crate::fe::dlog::{BabyStepTable, DlogSolver};
use crate::fe::error::DlogError;
use crate::fe::febo::{Febo, FeboOp};
use crate::fe::feip::{Ciphertext, FunctionKey};
use crate::fe::group::PrimeOrderGroup;
use crate::nn::data::{PixelNormalization, CLASSES};
use crate::nn::error::{check_shape, NnError};
use crate::nn::first_layer::{
    check_bound, max_abs, FirstLayerBackend, QuantConfig, BOX_SIDE, FILTERS, OUTPUTS, PATCH,
    POOLED_SIDE,
};

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
    /// Wall seconds waiting for the key service (key derivation, policy, audit).
    pub key_seconds: f64,
}

/// One image's precomputation: odd-multiple tables of the box products `Bct` and a fixed-base
/// table of `ct0`.
pub(crate) struct PreparedImage<G: PrimeOrderGroup> {
    boxes: Vec<OddMultiples<G>>,
    ct0: Ct0Table<G>,
}

/// The real pixels of each of the 961 boxes (row-major `u · 31 + v`).
pub(crate) fn all_box_members() -> Vec<Vec<usize>> {
    (0..BOXES)
        .map(|k| box_members(k / BOX_SIDE, k % BOX_SIDE))
        .collect()
}

impl<G: PrimeOrderGroup> PreparedImage<G> {
    /// Multiplies the ciphertext components of each box (`members` from [`all_box_members`])
    /// and builds the tables.
    pub(crate) fn new(group: &G, ct: &Ciphertext<G>, members: &[Vec<usize>]) -> Self {
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
            ct0: Ct0Table::new(group, ct.ct0()),
        }
    }

    /// `g^{<xq, y> − padding} = ∏ Bct^{coef} / ct0^{sk_y}` of one output, from its recoded
    /// box coefficients and its function key (the server's one decryption,
    /// [`vartime_decryption_element`]).
    pub(crate) fn output_element(
        &self,
        group: &G,
        terms: &[(usize, Wnaf)],
        key: &FunctionKey<G>,
    ) -> G::Element {
        vartime_decryption_element(group, self, terms, key)
    }
}

/// Recoded box coefficients `(box, wnaf(c))`.
impl<G: PrimeOrderGroup> DecryptionBases<G, [(usize, Wnaf)]> for PreparedImage<G> {
    fn vartime_numerator(&self, group: &G, terms: &[(usize, Wnaf)]) -> G::Element {
        multi_exp(group, &self.boxes, terms)
    }
    fn vartime_ct0_exp(&self, group: &G, sk: &G::Scalar) -> G::Element {
        self.ct0.exp(group, sk)
    }
}

/// Box coefficients `(box, c)`, recoded as they are used.
impl<G: PrimeOrderGroup> DecryptionBases<G, [(usize, i64)]> for PreparedImage<G> {
    fn vartime_numerator(&self, group: &G, terms: &[(usize, i64)]) -> G::Element {
        multi_exp(group, &self.boxes, &recode(terms))
    }
    fn vartime_ct0_exp(&self, group: &G, sk: &G::Scalar) -> G::Element {
        self.ct0.exp(group, sk)
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

/// Solves one image's output elements `elems` (one per output of `outs` that has a key, in
/// order) and adds the public padding terms; outputs without a key are their padding.
///
/// # Errors
/// [`SecureTrainingError::DlogOutOfRange`] naming `layer` and `hint` if a value lies outside
/// `bound` plus the largest padding term.
pub(crate) fn solve_outputs<G: PrimeOrderGroup>(
    table: &Arc<BabyStepTable<G>>,
    elems: &[G::Element],
    outs: &[LinearOutput],
    keys: &[Option<FunctionKey<G>>],
    bound: u64,
    layer: &'static str,
    hint: &'static str,
) -> Result<Vec<i64>, SecureTrainingError> {
    let solver = output_solver(table, outs, bound, layer)?;
    let solved = solver.vartime_solve_batch(elems);
    add_padding(outs, keys, solved, solver.bound(), layer, hint)
}

/// The solver of one image's outputs `outs`: `bound` plus their largest padding term.
fn output_solver<G: PrimeOrderGroup>(
    table: &Arc<BabyStepTable<G>>,
    outs: &[LinearOutput],
    bound: u64,
    layer: &'static str,
) -> Result<DlogSolver<G>, SecureTrainingError> {
    let pad_max = outs
        .iter()
        .map(|o| o.padding.unsigned_abs())
        .max()
        .unwrap_or(0);
    let bound = bound.saturating_add(pad_max);
    DlogSolver::new(Arc::clone(table), bound).map_err(|e| {
        SecureTrainingError::Parameters(format!(
            "{layer}: the discrete-log table cannot serve bound {bound}: {e}"
        ))
    })
}

/// Adds the public padding terms to one image's solved values (one per output with a key);
/// outputs without a key are their padding.
fn add_padding<G: PrimeOrderGroup>(
    outs: &[LinearOutput],
    keys: &[Option<FunctionKey<G>>],
    solved: Vec<Result<i64, DlogError>>,
    bound: u64,
    layer: &'static str,
    hint: &'static str,
) -> Result<Vec<i64>, SecureTrainingError> {
    let mut solved = solved.into_iter();
    outs.iter()
        .zip(keys)
        .map(|(o, k)| match k {
            None => Ok(o.padding),
            Some(_) => match solved.next() {
                Some(Ok(v)) => Ok(v + o.padding),
                _ => Err(SecureTrainingError::DlogOutOfRange { layer, bound, hint }),
            },
        })
        .collect()
}

/// The secure first-layer backend (see the [module docs](self)).
pub struct SecureFirstLayer<G: PrimeOrderGroup, K: KeyService<G>> {
    data: EncryptedDataset<G>,
    keys: K,
    table: Arc<BabyStepTable<G>>,
    quant: QuantConfig,
    febo: Febo<G>,
    stats: SecureStats,
    prepared: Option<(Vec<usize>, Vec<PreparedImage<G>>)>,
}

impl<G: PrimeOrderGroup, K: KeyService<G>> std::fmt::Debug for SecureFirstLayer<G, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureFirstLayer")
            .field("data", &self.data)
            .field("requester", self.keys.requester())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

const FORWARD_LAYER: &str = "conv1 forward z (secure)";
pub(crate) const FORWARD_HINT: &str = "lower --scale-w (or --scale-x), or raise the forward bound";
const GRADIENT_LAYER: &str = "conv1 weight gradient G_n (secure, per image)";
const GRADIENT_HINT: &str = "lower --scale-grad (or --scale-x), or raise the gradient bound";

impl<G: PrimeOrderGroup, K: KeyService<G>> SecureFirstLayer<G, K> {
    /// A backend over the encrypted dataset `data`, asking `keys` for function keys and solving
    /// discrete logs with `table`. `quant` must have the dataset's `S_x` and `S_p`; its other
    /// fields (`S_w`, `S_g`, bounds) are the server's choice. Checks every shard's public key
    /// against the key service.
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for mismatched scales or a table of another group;
    /// [`SecureTrainingError::WrongKey`] if the dataset was encrypted under other keys.
    pub fn new(
        data: EncryptedDataset<G>,
        keys: K,
        table: Arc<BabyStepTable<G>>,
        quant: QuantConfig,
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
        data.verify_keys(&keys)?;
        let febo = Febo::new(data.group().clone(), p.febo_params()?);
        Ok(Self {
            data,
            keys,
            table,
            quant,
            febo,
            stats: SecureStats::default(),
            prepared: None,
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

    /// The domain of the shard that holds every index of `batch`.
    fn shard_domain(&self, batch: &[usize]) -> Result<DomainId, NnError> {
        let n = self.data.len();
        if let Some(&index) = batch.iter().find(|&&i| i >= n) {
            return Err(NnError::IndexOutOfRange { index, len: n });
        }
        let h = self.data.header();
        let first = batch
            .first()
            .ok_or_else(|| NnError::InvalidConfig("empty batch".into()))?;
        let shard = h.shard_of(*first);
        if batch.iter().any(|&i| h.shard_of(i) != shard) {
            return Err(SecureTrainingError::BatchSpansShards {
                shard_size: h.params.shard_size,
            }
            .into());
        }
        Ok(h.domains[shard])
    }

    fn max_box(&self) -> i128 {
        4 * i128::from(self.data.header().pixel_bound)
    }

    /// Decodes the batch's ciphertexts and builds the box products and `ct0` tables (reused
    /// until the batch changes).
    fn prepare(&mut self, batch: &[usize]) -> Result<(), SecureTrainingError> {
        if matches!(&self.prepared, Some((b, _)) if b == batch) {
            return Ok(());
        }
        let t = Instant::now();
        let group = self.data.group();
        let data = &self.data;
        let members = all_box_members();
        let images = batch
            .par_iter()
            .map(|&i| {
                Ok(PreparedImage::new(
                    group,
                    &data.image_ciphertext(i)?,
                    &members,
                ))
            })
            .collect::<Result<Vec<_>, SecureTrainingError>>()?;
        self.prepared = Some((batch.to_vec(), images));
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        Ok(())
    }

    /// Requests one FEIP key per non-constant output (one batched request), sending
    /// `vectors`, the outputs' key vectors.
    fn request_feip(
        &mut self,
        domain: DomainId,
        outputs: &[&LinearOutput],
        vectors: Vec<KeyVectorData>,
    ) -> Result<Vec<Option<FunctionKey<G>>>, SecureTrainingError> {
        request_output_keys(&self.keys, domain, outputs, vectors, &mut self.stats)
    }

    /// Decrypts, for each image `n` of the prepared batch, the outputs `outputs(n)` with keys
    /// `keys(n)`: `value = dlog(∏ Bct^{coef} / ct0^{sk}) + padding`, each within
    /// `bound + |padding|`.
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
        let solvers = (0..images.len())
            .map(|n| output_solver(&self.table, outputs(n), bound, layer))
            .collect::<Result<Vec<_>, _>>()?;
        // The outputs of image `n` that have a key: (output index, output, key).
        let keyed = |n: usize| {
            outputs(n)
                .iter()
                .enumerate()
                .zip(keys(n))
                .filter_map(|((m, o), k)| k.as_ref().map(|k| (m, o, k)))
        };
        // The server's one decryption path, over the box products of each image.
        let mut times = DecryptTimes::default();
        let solved = match shared {
            Some(r) => {
                let columns: Vec<DecryptionColumn<'_, G, [(usize, Wnaf)], _>> = images
                    .iter()
                    .enumerate()
                    .map(|(n, img)| (img, keyed(n).map(|(m, _, k)| (&r[m][..], k)).collect()))
                    .collect();
                vartime_decrypt_columns(group, &columns, &solvers, &mut times)
            }
            None => {
                let columns: Vec<DecryptionColumn<'_, G, [(usize, i64)], _>> = images
                    .iter()
                    .enumerate()
                    .map(|(n, img)| {
                        let pairs = keyed(n).map(|(_, o, k)| (&o.box_terms[..], k)).collect();
                        (img, pairs)
                    })
                    .collect();
                vartime_decrypt_columns(group, &columns, &solvers, &mut times)
            }
        };
        self.stats.fe_seconds += times.group_seconds;
        self.stats.dlog_seconds += times.dlog_seconds;
        self.stats.decryptions += solved.iter().map(|e| e.len() as u64).sum::<u64>();
        solved
            .into_iter()
            .zip(&solvers)
            .enumerate()
            .map(|(n, (values, solver))| {
                add_padding(outputs(n), keys(n), values, solver.bound(), layer, hint)
            })
            .collect()
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G>> FirstLayerBackend for SecureFirstLayer<G, K> {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn mode(&self) -> &'static str {
        "secure"
    }

    fn quant_config(&self) -> &QuantConfig {
        &self.quant
    }

    fn normalization(&self) -> PixelNormalization {
        self.data.header().params.normalization
    }

    fn forward(
        &mut self,
        batch: &[usize],
        wq: ArrayView2<'_, i64>,
    ) -> Result<Array4<i64>, NnError> {
        let domain = self.shard_domain(batch)?;
        check_shape("conv1 weights wq", &[FILTERS, PATCH], wq.shape())?;
        check_bound(
            "conv1 forward z (worst case)",
            PATCH as i128 * max_abs(wq.iter()) * self.max_box(),
            i64::MAX as u64,
            "lower --scale-w or --scale-x",
        )?;
        let wq: Vec<i64> = wq.iter().copied().collect();
        let pad = self.data.header().padding_value;
        let outputs = geometry::forward_outputs(&wq, pad);
        let refs: Vec<&LinearOutput> = outputs.iter().collect();
        let vectors = geometry::forward_key_vectors(&wq).map_err(SecureTrainingError::from)?;
        let keys = self.request_feip(domain, &refs, vectors)?;
        self.prepare(batch)?;
        // The forward outputs are the same for every image: recode their coefficients once.
        let recoded: Vec<Vec<(usize, Wnaf)>> =
            outputs.iter().map(|o| recode(&o.box_terms)).collect();
        let values = self.decrypt(
            |_| &outputs,
            Some(&recoded),
            |_| &keys,
            self.quant.forward_bound,
            FORWARD_LAYER,
            FORWARD_HINT,
        )?;
        let flat: Vec<i64> = values.into_iter().flatten().collect();
        let z = Array4::from_shape_vec((batch.len(), FILTERS, POOLED_SIDE, POOLED_SIDE), flat)
            .map_err(|e| NnError::InvalidConfig(e.to_string()))?;
        check_bound(
            "conv1 forward z",
            max_abs(z.iter()),
            self.quant.forward_bound,
            "lower --scale-w (or --scale-x), or raise the forward bound",
        )?;
        Ok(z)
    }

    fn output_error(
        &mut self,
        batch: &[usize],
        pq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        let domain = self.shard_domain(batch)?;
        check_shape(
            "encoded softmax output pq",
            &[batch.len(), CLASSES],
            pq.shape(),
        )?;
        let t = Instant::now();
        let group = self.data.group();
        let cts = batch
            .iter()
            .map(|&i| self.data.label_ciphertexts(i))
            .collect::<Result<Vec<_>, _>>()?;
        let items: Vec<FeboKeyItem> = cts
            .iter()
            .zip(pq.rows())
            .flat_map(|(c, row)| {
                c.iter().zip(row.to_vec()).map(|(ct, operand)| FeboKeyItem {
                    commitment: group.element_to_bytes(ct.commitment()),
                    op: FeboOp::Sub,
                    operand,
                })
            })
            .collect();
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let count = items.len();
        let response = self
            .keys
            .febo_keys(&FeboKeyRequest { domain, items })
            .map_err(SecureTrainingError::from)?;
        self.stats.key_seconds += t.elapsed().as_secs_f64();
        self.stats.key_requests += 1;
        if response.keys.len() != count {
            return Err(SecureTrainingError::Parameters("FEBO key count mismatch".into()).into());
        }
        self.stats.febo_keys += count as u64;
        let t = Instant::now();
        let elements = cts
            .iter()
            .flatten()
            .zip(&response.keys)
            .map(|(ct, k)| self.febo.vartime_decrypt_element(ct, k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SecureTrainingError::from)?;
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let bound = 2 * self.quant.one_hot_value().unsigned_abs();
        let solver = DlogSolver::new(Arc::clone(&self.table), bound)
            .map_err(|e| SecureTrainingError::Parameters(e.to_string()))?;
        let solved = solver.vartime_solve_batch(&elements);
        self.stats.dlog_seconds += t.elapsed().as_secs_f64();
        self.stats.decryptions += count as u64;
        let mut eq = Array2::<i64>::zeros((batch.len(), CLASSES));
        for (o, r) in eq.iter_mut().zip(solved) {
            // Decryption gives yq − pq.
            let v = r.map_err(|_| SecureTrainingError::DlogOutOfRange {
                layer: "output error P - Y (FEBO)",
                bound,
                hint: "check --scale-p",
            })?;
            *o = -v;
        }
        Ok(eq)
    }

    fn weight_gradient(
        &mut self,
        batch: &[usize],
        dq: ArrayView4<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        let domain = self.shard_domain(batch)?;
        check_shape(
            "conv1 output gradient dq",
            &[batch.len(), FILTERS, POOLED_SIDE, POOLED_SIDE],
            dq.shape(),
        )?;
        check_bound(
            "conv1 weight gradient G (worst case per image)",
            (POOLED_SIDE * POOLED_SIDE) as i128 * max_abs(dq.iter()) * self.max_box(),
            i64::MAX as u64,
            "lower --scale-grad or --scale-x",
        )?;
        let pad = self.data.header().padding_value;
        let dq = dq.as_standard_layout();
        let dq = dq
            .as_slice()
            .ok_or_else(|| NnError::InvalidConfig("dq not contiguous".into()))?;
        let outputs: Vec<Vec<LinearOutput>> = dq
            .par_chunks_exact(OUTPUTS)
            .map(|d| geometry::gradient_outputs(d, pad))
            .collect();
        let refs: Vec<&LinearOutput> = outputs.iter().flatten().collect();
        let mut vectors = Vec::with_capacity(refs.len());
        for d in dq.chunks_exact(OUTPUTS) {
            vectors.extend(geometry::gradient_key_vectors(d).map_err(SecureTrainingError::from)?);
        }
        let keys = self.request_feip(domain, &refs, vectors)?;
        self.prepare(batch)?;
        let values = self.decrypt(
            |n| &outputs[n],
            None,
            |n| &keys[n * GRADIENT_OUTPUTS..(n + 1) * GRADIENT_OUTPUTS],
            self.quant.gradient_bound,
            GRADIENT_LAYER,
            GRADIENT_HINT,
        )?;
        let mut acc = vec![0i128; GRADIENT_OUTPUTS];
        for v in &values {
            for (a, &x) in acc.iter_mut().zip(v) {
                *a += i128::from(x);
            }
        }
        let mut out = Array2::<i64>::zeros((FILTERS, PATCH));
        for (o, &v) in out.iter_mut().zip(&acc) {
            check_bound(
                "conv1 weight gradient G",
                v,
                self.quant.gradient_bound.min(i64::MAX as u64),
                "lower --scale-grad (or --scale-x), or raise the gradient bound",
            )?;
            *o = v as i64;
        }
        Ok(out)
    }
}
