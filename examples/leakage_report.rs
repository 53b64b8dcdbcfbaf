//! What a server learns in secure training, measured.
//!
//! ```sh
//! cargo run --example leakage_report                     # 64 images, 4 shards, 1 epoch
//! ```
//!
//! A short secure training run on Ristretto255 through a key service that records every
//! function key the server receives. Then:
//!
//! (a) **Cross-domain.** Every recorded FEIP key of shard domain `A` (a sample of them, plus
//!     random linear combinations — what a server could derive) is tried on images of every
//!     other shard `B`: a success is a decryption whose discrete log lies within the bound the
//!     server would use. Same-shard decryptions are the positive control.
//! (b) **Reconstruction.** For the images of one shard, the 1,176 pooled conv1 outputs per
//!     image that the forward pass decrypts (key vectors and values) go into
//!     `cryptonn::coordinator::leakage::reconstruct`; it reports how many of the 784 pixels
//!     are determined exactly and the relative error against the truth (which only this
//!     measurement program, playing the data owner, knows).

use std::sync::{Arc, Mutex};

use anyhow::Context;
use cryptonn::coordinator::secure_training::encrypted_dataset::encrypt_to_file;
use cryptonn::coordinator::secure_training::geometry::forward_outputs;
use cryptonn::coordinator::secure_training::{
    create_shard_domains, EncryptedDataset, EncryptionParams, SecureFirstLayer,
};
use cryptonn::coordinator::{
    reconstruct, Authority, CoordinatorError, DomainId, DomainPublicKey, FeboKeyRequest,
    FeboKeyResponse, FeipKeyRequest, FeipKeyResponse, InProcessKeyService, KeyService,
    KeyVectorData, RequesterId,
};
use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
use cryptonn::fe::feip::{Feip, FunctionKey, KeyVector};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{LabelPermutation, Mnist};
use cryptonn::nn::first_layer::FirstLayerBackend;
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::train::{train_with_backend, BatchSchedule, Mode, TrainConfig};
use ndarray::Array2;
use rand::{Rng, SeedableRng};

type G = Ristretto255;
/// A key vector (sparse) with its function key.
type Attempt = (Vec<(usize, i64)>, FunctionKey<G>);
type Recorded = Vec<(DomainId, Vec<KeyVectorData>, Vec<FunctionKey<G>>)>;

/// A key service that keeps every FEIP key the server receives.
struct Recording {
    inner: InProcessKeyService<G>,
    log: Mutex<Recorded>,
}

impl KeyService<G> for Recording {
    fn requester(&self) -> &RequesterId {
        self.inner.requester()
    }
    fn public_key(&self, domain: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError> {
        self.inner.public_key(domain)
    }
    fn feip_keys(&self, request: &FeipKeyRequest) -> Result<FeipKeyResponse<G>, CoordinatorError> {
        let r = self.inner.feip_keys(request)?;
        if let Ok(mut log) = self.log.lock() {
            log.push((request.domain, request.vectors.clone(), r.keys.clone()));
        }
        Ok(r)
    }
    fn febo_keys(&self, request: &FeboKeyRequest) -> Result<FeboKeyResponse<G>, CoordinatorError> {
        self.inner.febo_keys(request)
    }
}

fn main() -> anyhow::Result<()> {
    let images = 64;
    let cfg = TrainConfig {
        mode: Mode::Secure,
        epochs: 1,
        batch_size: 16,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    };
    let mnist = Mnist::load_default()?;
    let train = mnist.train.take(images, "training")?;
    let test = mnist.test.take(200, "test")?;
    let group = Ristretto255;
    let mut authority = Authority::new(group);
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    let domains = create_shard_domains(&mut authority, images, &params)?;
    let pks = domains
        .iter()
        .map(|&d| authority.public_key(d))
        .collect::<Result<Vec<_>, _>>()?;
    let labels = LabelPermutation::from_seed(cfg.seed, cryptonn::nn::data::CLASSES);
    let path = std::env::temp_dir().join(format!("cryptonn-leakage-{}.cnnenc", std::process::id()));
    encrypt_to_file(&group, &train, &labels, &pks, &params, &path, &|_| {})?;
    let authority = Arc::new(Mutex::new(authority));
    let service = Arc::new(Recording {
        inner: InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("server")),
        log: Mutex::new(Vec::new()),
    });
    let table = Arc::new(BabyStepTable::load_or_build(
        group,
        1 << 20,
        std::path::Path::new("cache"),
    )?);
    let data = EncryptedDataset::load(group, &path)?;
    let mut backend =
        SecureFirstLayer::new(data, Arc::clone(&service), Arc::clone(&table), cfg.quant)?;
    let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let (model, report) = train_with_backend(&cfg, model, &mut backend, &test, &labels, &mut ())?;
    println!(
        "secure run: {images} images, {} shards of {}, 1 epoch, test acc {:.1} %",
        domains.len(),
        cfg.batch_size,
        100.0 * report.test_accuracy[0]
    );

    // (a) cross-domain decryption attempts.
    let recorded = service
        .log
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let total_keys: usize = recorded.iter().map(|r| r.2.len()).sum();
    let feip = Feip::new(group, params.feip_params()?);
    // The widest bound the server ever uses: the gradient bound plus any padding term.
    let bound = cfg.quant.gradient_bound * 2;
    let dlog = DlogSolver::new(Arc::clone(&table), bound)?;
    let ds = backend.dataset();
    let shard_of = |d: DomainId| domains.iter().position(|&x| x == d);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (mut cross_tries, mut cross_hits, mut own_tries, mut own_hits) =
        (0usize, 0usize, 0usize, 0usize);
    for (domain, vectors, keys) in &recorded {
        let a = shard_of(*domain).context("unknown domain")?;
        // A sample of keys and one random combination of them.
        let picks: Vec<usize> = (0..8).map(|_| rng.gen_range(0..keys.len())).collect();
        let mut tries: Vec<Attempt> = Vec::new();
        for &k in &picks {
            if let KeyVectorData::Sparse(t) = &vectors[k] {
                tries.push((t.clone(), keys[k].clone()));
            }
        }
        // Σ c_k y_k with key Σ c_k sk_k: a key the server can derive itself.
        let mut dense = vec![0i64; 784];
        let mut sk = group.scalar_from_i64(0);
        for &k in &picks {
            let c: i64 = rng.gen_range(-3..=3);
            if let KeyVectorData::Sparse(t) = &vectors[k] {
                for &(p, v) in t {
                    dense[p] += c * v;
                }
            }
            sk = group.scalar_add(
                &sk,
                &group.scalar_mul(&group.scalar_from_i64(c), keys[k].scalar()),
            );
        }
        let combo: Vec<(usize, i64)> = dense
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(p, &v)| (p, v))
            .collect();
        if !combo.is_empty() {
            tries.push((combo, FunctionKey::from_scalar(sk)));
        }
        for b in 0..domains.len() {
            for img in [b * cfg.batch_size, b * cfg.batch_size + 7] {
                let ct = ds.image_ciphertext(img)?;
                let prepared = feip.prepare_ciphertext(&ct)?;
                let batch: Vec<(&FunctionKey<G>, KeyVector<'_>)> = tries
                    .iter()
                    .map(|(t, k)| (k, KeyVector::Sparse(t)))
                    .collect();
                let hits = feip
                    .vartime_decrypt_many(&prepared, &batch, &dlog)
                    .iter()
                    .filter(|r| r.is_ok())
                    .count();
                if b == a {
                    own_tries += batch.len();
                    own_hits += hits;
                } else {
                    cross_tries += batch.len();
                    cross_hits += hits;
                }
            }
        }
    }
    println!(
        "\n(a) keys collected over the run: {total_keys} FEIP keys in {} requests",
        recorded.len()
    );
    println!("    same shard (control):   {own_hits}/{own_tries} decryptions succeed");
    println!("    other shards:           {cross_hits}/{cross_tries} decryptions succeed (|value| <= {bound})");

    // (b) reconstruction of shard 0's images from the forward outputs the server decrypts.
    let batch: Vec<usize> = (0..cfg.batch_size).collect();
    let wq = cfg.quant.encode_weights(model.first_weight())?;
    let pad = backend.dataset().header().padding_value;
    let z = backend.forward(&batch, wq.view())?;
    let outputs = forward_outputs(wq.as_slice().context("layout")?, pad);
    let keys: Vec<KeyVectorData> = outputs
        .iter()
        .map(|o| KeyVectorData::Sparse(o.pixel_terms.clone()))
        .collect();
    let mut values = Array2::<i64>::zeros((outputs.len(), batch.len()));
    for (n, zimg) in z.outer_iter().enumerate() {
        for (k, (&v, o)) in zimg.iter().zip(&outputs).enumerate() {
            values[[k, n]] = v - o.padding;
        }
    }
    let enc = params.pixel_encoding()?;
    let recs = reconstruct(784, &keys, values.view())?;
    let (mut exact, mut err) = (0usize, 0.0f64);
    for (n, r) in recs.iter().enumerate() {
        let truth: Vec<i64> = train
            .image(batch[n])
            .iter()
            .map(|&p| enc.encode(p))
            .collect();
        if r.is_complete() && r.exact().iter().zip(&truth).all(|(a, b)| *a == Some(*b)) {
            exact += 1;
        }
        err = err.max(r.relative_error(&truth));
    }
    println!(
        "\n(b) reconstruction from one step's 1,176 pooled conv1 outputs per image ({} key vectors):",
        keys.len()
    );
    println!(
        "    rank {} of 784; {:.1} % of pixels determined; {exact}/{} images recovered exactly; \
         max relative error {err:.2e}",
        recs[0].rank(),
        100.0 * recs.iter().map(|r| r.recovered_fraction()).sum::<f64>() / recs.len() as f64,
        recs.len()
    );
    std::fs::remove_file(&path).ok();
    Ok(())
}
