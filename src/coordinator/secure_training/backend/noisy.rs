//! The secure first layer over **noisy** shard domains: keys are asked per ciphertext.
//!
//! For every image `n` of the batch and every non-constant output (forward: the 1,176 conv
//! outputs, shared by all images; gradient: the image's own 150 entries) the server sends the
//! image's `ct0` and the key vector `y`, and receives `K = ct0^{<s,y>} · g^{−e}` (see
//! [`crate::fe::noisy_key`] and
//! [`Authority::issue_noisy_feip_keys`](crate::coordinator::Authority::issue_noisy_feip_keys)).
//! It then computes `∏ Bct^{coef} / K = g^{<xq, y> + e}` over its box products: the `ct0`
//! exponentiation it did for plain keys is now the authority's, and the rest (products,
//! padding shift, batched discrete logs, bound checks) is unchanged.

use super::*;
use crate::coordinator::messages::{NoisyKeyItem, NoisyKeyRequest};
use crate::fe::noisy_key::NoisyKey;

impl<G: PrimeOrderGroup, K: KeyService<G>> SecureFirstLayer<G, K> {
    /// Asks for ciphertext-bound noisy keys instead of plain function keys: required when the
    /// shard domains are noisy (they refuse plain keys with
    /// [`CoordinatorError::NoisyDomain`](crate::coordinator::CoordinatorError::NoisyDomain)).
    ///
    /// # Errors
    /// [`SecureTrainingError::Parameters`] for a dense first layer: its gradient decrypts
    /// feature-major ciphertexts that each hold a whole shard, so there is no per-sample `ct0`
    /// to bind the noise and the accounting to.
    pub fn with_noisy_keys(mut self, on: bool) -> Result<Self, SecureTrainingError> {
        if on && !matches!(self.geometry, FirstLayerGeometry::Conv(_)) {
            return Err(SecureTrainingError::Parameters(
                "noisy keys need a convolutional first layer (a dense layer's gradient reads \
                 feature-major ciphertexts that hold a whole shard)"
                    .into(),
            ));
        }
        self.noisy = on;
        Ok(self)
    }

    /// Whether keys are asked per ciphertext (noisy domains).
    #[must_use]
    pub fn noisy_keys(&self) -> bool {
        self.noisy
    }

    /// One noisy request: the non-constant `vectors`, and for image `n` of the prepared batch
    /// the indices `lists[n]` it needs. Returns the keys per image, in list order.
    fn request_noisy_keys(
        &mut self,
        domain: DomainId,
        vectors: Vec<KeyVectorData>,
        lists: Vec<Vec<u32>>,
    ) -> Result<Vec<Vec<NoisyKey<G>>>, SecureTrainingError> {
        let (_, images) = self.prepared.as_ref().ok_or_else(|| {
            SecureTrainingError::Parameters("internal: batch not prepared".into())
        })?;
        let counts: Vec<usize> = lists.iter().map(Vec::len).collect();
        let ciphertexts: Vec<NoisyKeyItem> = images
            .iter()
            .zip(lists)
            .filter(|(_, l)| !l.is_empty())
            .map(|(img, vectors)| NoisyKeyItem {
                ct0: img.ct0_bytes.clone(),
                vectors,
            })
            .collect();
        if ciphertexts.is_empty() {
            return Ok(counts.iter().map(|_| Vec::new()).collect());
        }
        let t = Instant::now();
        let request = NoisyKeyRequest {
            keys: FeipKeyRequest { domain, vectors },
            ciphertexts,
        };
        let response = self.keys.noisy_feip_keys(&request)?;
        self.stats.key_seconds += t.elapsed().as_secs_f64();
        self.stats.key_requests += 1;
        let mut issued = response.keys.into_iter();
        let mut out = Vec::with_capacity(counts.len());
        for c in counts {
            if c == 0 {
                out.push(Vec::new());
                continue;
            }
            match issued.next() {
                Some(k) if k.len() == c && response.domain == domain => {
                    self.stats.feip_keys += c as u64;
                    out.push(k);
                }
                _ => {
                    return Err(SecureTrainingError::Parameters(format!(
                        "the key service's noisy keys do not match the request for {domain}"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Decrypts, for each image `n` of the prepared batch, its non-constant outputs of
    /// `outputs(n)` with the noisy keys `keys[n]`: `value = dlog(∏ Bct^{coef} / K · g^{padding})`.
    #[allow(clippy::too_many_arguments)]
    fn decrypt_noisy<'o, O>(
        &mut self,
        outputs: O,
        shared: Option<&[Vec<(usize, Wnaf)>]>,
        keys: &[Vec<NoisyKey<G>>],
        bound: u64,
        layer: &'static str,
        hint: &'static str,
    ) -> Result<Vec<Vec<i64>>, SecureTrainingError>
    where
        O: Fn(usize) -> &'o [LinearOutput] + Sync,
    {
        let (_, images) = self.prepared.as_ref().ok_or_else(|| {
            SecureTrainingError::Parameters("internal: batch not prepared".into())
        })?;
        let group = self.data.group();
        let t = Instant::now();
        let elements: Vec<Vec<G::Element>> = images
            .par_iter()
            .zip(keys)
            .enumerate()
            .map(|(n, (img, ks))| {
                let mut ks = ks.iter();
                let mut local = Vec::new();
                outputs(n)
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| !o.is_constant())
                    .map(|(m, o)| {
                        let terms = match shared {
                            Some(r) => &r[m],
                            None => {
                                local = recode(&o.box_terms);
                                &local
                            }
                        };
                        let k = ks.next().ok_or_else(|| {
                            SecureTrainingError::Parameters("internal: missing noisy key".into())
                        })?;
                        let mut e = multi_exp(group, &img.boxes, terms);
                        group.div_assign(&mut e, k.element());
                        Ok(e)
                    })
                    .collect::<Result<Vec<_>, SecureTrainingError>>()
            })
            .collect::<Result<_, _>>()?;
        self.stats.fe_seconds += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (table, powers) = (&self.table, &self.powers);
        let count = elements.iter().map(|e| e.len() as u64).sum::<u64>();
        let results = elements
            .into_par_iter()
            .enumerate()
            .map(|(n, elems)| {
                let outs = outputs(n);
                let present: Vec<Option<()>> = outs
                    .iter()
                    .map(|o| (!o.is_constant()).then_some(()))
                    .collect();
                solve_outputs(table, powers, elems, outs, &present, bound, layer, hint)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.stats.dlog_seconds += t.elapsed().as_secs_f64();
        self.stats.decryptions += count;
        Ok(results)
    }

    /// The decryptions of [`forward_values`](Self::forward_values) over noisy domains, per
    /// image (the caller flattens them and checks the forward bound).
    pub(super) fn noisy_forward(
        &mut self,
        batch: &[usize],
        domain: DomainId,
        outputs: &[LinearOutput],
        vectors: Vec<KeyVectorData>,
        hint: &'static str,
    ) -> Result<Vec<Vec<i64>>, SecureTrainingError> {
        let names = names(&self.geometry);
        self.prepare(batch)?;
        let vectors: Vec<KeyVectorData> = outputs
            .iter()
            .zip(vectors)
            .filter(|(o, _)| !o.is_constant())
            .map(|(_, v)| v)
            .collect();
        let all: Vec<u32> = (0..vectors.len() as u32).collect();
        let lists = vec![all; batch.len()];
        let keys = self.request_noisy_keys(domain, vectors, lists)?;
        let recoded: Vec<Vec<(usize, Wnaf)>> =
            outputs.iter().map(|o| recode(&o.box_terms)).collect();
        self.decrypt_noisy(
            |_| outputs,
            Some(&recoded),
            &keys,
            self.quant.forward_bound,
            names.forward,
            hint,
        )
    }

    /// The convolution's weight gradient over noisy domains: per image its own noisy keys.
    pub(super) fn noisy_conv_gradient(
        &mut self,
        batch: &[usize],
        domain: DomainId,
        per_sample: &[Vec<LinearOutput>],
        vectors: Vec<KeyVectorData>,
        hint: &'static str,
    ) -> Result<Vec<i128>, SecureTrainingError> {
        self.prepare(batch)?;
        let m = per_sample.first().map_or(0, Vec::len);
        let mut kept = Vec::new();
        let mut lists = Vec::with_capacity(per_sample.len());
        let mut all = vectors.into_iter();
        for outs in per_sample {
            let mut list = Vec::new();
            for o in outs {
                let v = all.next().ok_or_else(|| {
                    SecureTrainingError::Parameters("internal: gradient key vectors".into())
                })?;
                if !o.is_constant() {
                    list.push(kept.len() as u32);
                    kept.push(v);
                }
            }
            lists.push(list);
        }
        let keys = self.request_noisy_keys(domain, kept, lists)?;
        let values = self.decrypt_noisy(
            |s| &per_sample[s],
            None,
            &keys,
            self.quant.gradient_bound,
            CONV_NAMES.gradient,
            hint,
        )?;
        let mut acc = vec![0i128; m];
        for v in &values {
            for (a, &x) in acc.iter_mut().zip(v) {
                *a += i128::from(x);
            }
        }
        Ok(acc)
    }
}
