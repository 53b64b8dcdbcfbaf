//! The privacy section: what noisy first-layer values (`--noise-sigma`) cost in accuracy and
//! buy against reconstruction, for a sweep of sigma values including 0.
//!
//! For each sigma the section trains LeNet-5 for 2 epochs with the quantised reference of
//! noisy training ([`NoisyReference`]): the noise the authority adds in secure mode, drawn
//! from the same seed, so the weights and accuracy are those of secure training bit for bit
//! (pinned by `tests/noisy_training.rs`; the in-process throughput of the secure path is
//! measured separately). It records:
//! - the test accuracy after the last epoch;
//! - `ε` at `δ = 10⁻⁵` per pixel and per image: the largest over the training samples of the
//!   Rényi-DP ledger that the authority keeps, with its coordinate range `R = 2·pixel_bound`;
//! - an independent reconstruction attack on the server's whole view of the first
//!   `attack_images` training images: every forward and gradient value of every epoch,
//!   `b = <xq, y> + e`, solved by least squares (normal equations, Cholesky with a tiny ridge)
//!   over all of them at once (which averages the epochs' noise optimally), projected onto the
//!   pixel box `[xq(0), xq(255)]` and refined by projected-gradient steps. It reports the mean
//!   relative error `‖p̂ − p‖ / ‖p‖` in pixel units and the fraction of pixels within ±16;
//! - the accuracy of **noisy secure prediction** with the trained model
//!   (`prediction_accuracy`): each test image is a query of a noisy query domain
//!   ([`open_noisy_query_domain`](cryptonn::coordinator::secure_prediction::open_noisy_query_domain)),
//!   whose server decrypts `z + e`; computed by the quantised reference
//!   ([`classify_first_layer`] of `z + e` with the same noise key and the query's sample id,
//!   bit for bit the secure prediction: `tests/privacy_noisy_prediction.rs`).

use std::path::Path;

use anyhow::{anyhow, Result};
use cryptonn::coordinator::accountant::{Granularity, DEFAULT_DELTA};
use cryptonn::coordinator::messages::noise_input;
use cryptonn::coordinator::secure_prediction::{classify_first_layer, QUERY_SAMPLE_BASE};
use cryptonn::coordinator::secure_training::ConvGeometry;
use cryptonn::fe::discrete_gaussian::NoiseKey;
use cryptonn::nn::first_layer::FirstLayerBackend;
use std::sync::{Arc, Mutex};

use cryptonn::coordinator::secure_training::encrypted_dataset::encrypt_to_file;
use cryptonn::coordinator::secure_training::{
    create_shard_domains, make_domains_noisy, register_label_commitments,
    register_noisy_ciphertexts, training_noise_key, EncryptedDataset, EncryptionParams,
    NoisyReference, Observation, SecureFirstLayer,
};
use cryptonn::coordinator::{Authority, DomainAccess, InProcessKeyService, RequesterId};
use cryptonn::fe::discrete_gaussian::DiscreteGaussian;
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{Dataset, LabelPermutation, CLASSES};
use cryptonn::nn::first_layer::{FirstLayerSpec, QuantizedFirstLayer, SampleEncoder};
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::optim::Sgd;
use cryptonn::nn::train::{
    backend_step, epoch_batches, train_with_backend, BatchSchedule, TrainConfig,
};
use plotters::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The sweep's sizes.
#[derive(Debug, Clone)]
pub struct PrivacyPlan {
    /// Training images.
    pub train_size: usize,
    /// Test images.
    pub test_size: usize,
    /// Epochs.
    pub epochs: usize,
    /// The sigma values (encoded units of the first layer's values). At most the forward
    /// bound / 16 (`2^22 / 16 = 262,144` by default): a noisy value beyond the bound fails the
    /// step, as a diverged model does.
    pub sigmas: Vec<f64>,
    /// Images the attack reconstructs.
    pub attack_images: usize,
    /// Secure training throughput, noise off against on: images, sigma, alternating rounds.
    pub throughput: (usize, f64, usize),
    /// Test images classified by noisy prediction at each sigma.
    pub prediction_images: usize,
}

/// The `--full` plan if `full`, else `--quick`.
pub fn plan(full: bool) -> PrivacyPlan {
    if full {
        PrivacyPlan {
            train_size: 8192,
            test_size: 10_000,
            epochs: 2,
            sigmas: vec![0.0, 1_000.0, 4_000.0, 16_000.0, 64_000.0, 256_000.0],
            attack_images: 32,
            throughput: (256, 16_000.0, 3),
            prediction_images: 10_000,
        }
    } else {
        PrivacyPlan {
            train_size: 256,
            test_size: 500,
            epochs: 2,
            sigmas: vec![0.0, 1_000.0, 4_000.0, 16_000.0, 64_000.0],
            attack_images: 16,
            throughput: (64, 16_000.0, 2),
            prediction_images: 500,
        }
    }
}

/// One point of the curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrivacyPoint {
    /// The noise's standard deviation.
    pub sigma: f64,
    /// Test accuracy after the last epoch.
    pub test_accuracy: f64,
    /// Mean `‖p̂ − p‖ / ‖p‖` of the attack.
    pub attack_relative_error: f64,
    /// Mean fraction of pixels the attack gets within ±16.
    pub attack_within_16: f64,
    /// `ε` per pixel at `δ` (`null`: infinite, sigma 0).
    pub epsilon_pixel: Option<f64>,
    /// `ε` per image at `δ` (`null`: infinite, sigma 0).
    pub epsilon_image: Option<f64>,
    /// Noisy values one attacked image released (forward and gradient, all epochs).
    pub values_per_image: usize,
    /// Accuracy of secure prediction over a noisy query domain with this sigma, with the
    /// model trained at this sigma (`null`: not measured).
    #[serde(default)]
    pub prediction_accuracy: Option<f64>,
    /// Wall seconds of training and attack.
    pub seconds: f64,
}

/// Where and when the privacy section was measured, when it ran apart from the rest of the
/// report (`bench_report --sections privacy…`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrivacyRun {
    /// The exact command line.
    pub command: String,
    /// `git rev-parse HEAD` (+ `-dirty`).
    pub git_commit: Option<String>,
    /// Seconds since the Unix epoch at start.
    pub started_unix: u64,
    /// The start as a UTC date and time.
    pub started_utc: String,
    /// Wall seconds.
    pub seconds: f64,
    /// The load average at the start and at the end.
    pub load_average: (Option<[f64; 3]>, Option<[f64; 3]>),
}

/// The section's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrivacyResults {
    /// Training images.
    pub train_size: usize,
    /// Test images.
    pub test_size: usize,
    /// Epochs.
    pub epochs: usize,
    /// Images the attack reconstructs.
    pub attack_images: usize,
    /// `δ` of every `ε`.
    pub delta: f64,
    /// The coordinate range `R` of the sensitivity model.
    pub coordinate_range: u64,
    /// How the figures were produced.
    pub method: String,
    /// One point per sigma.
    pub curve: Vec<PrivacyPoint>,
    /// Secure training with noise on against off, in process.
    pub throughput: Option<NoiseThroughput>,
    /// Test images classified by noisy prediction at each sigma.
    #[serde(default)]
    pub prediction_images: usize,
    /// The separate run this section comes from (`null`: the report's own run).
    #[serde(default)]
    pub run: Option<PrivacyRun>,
    /// The picture's file name (`privacy_reconstructions.png`): the first attacked images (top
    /// row) and their reconstructions at each sigma (one row per sigma).
    pub picture: String,
    /// Pixels of the pictured images, then of their reconstructions per sigma (not in JSON).
    #[serde(skip)]
    pictures: Vec<Vec<Vec<u8>>>,
}

/// Images in the picture.
const PICTURED: usize = 8;

/// Secure training in process (Ristretto255), one epoch, noise off and on in alternating rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoiseThroughput {
    /// Training images.
    pub images: usize,
    /// The noise of the `on` runs.
    pub sigma: f64,
    /// Images per second of each `off` round.
    pub off_images_per_second: Vec<f64>,
    /// Images per second of each `on` round.
    pub on_images_per_second: Vec<f64>,
    /// Median of the per-round ratios on / off.
    pub ratio_median: f64,
    /// The server's group-operation seconds (off, on), summed over rounds.
    pub server_group_seconds: (f64, f64),
    /// Seconds in the key service, the authority's work included (off, on), summed.
    pub key_service_seconds: (f64, f64),
    /// The load average before and after.
    pub load_average: (Option<[f64; 3]>, Option<[f64; 3]>),
    /// The separate run it comes from (`null`: the section's own run).
    #[serde(default)]
    pub measured: Option<PrivacyRun>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// One secure epoch over `data` with noise `sigma` (`None`: off) under a fresh in-process
/// authority: images per second of the training steps, server group seconds, key seconds.
fn secure_epoch(
    data: &Dataset,
    cfg: &TrainConfig,
    path: &Path,
    table: &Arc<BabyStepTable<Ristretto255>>,
    sigma: Option<DiscreteGaussian>,
) -> Result<(f64, f64, f64)> {
    let group = Ristretto255;
    let mut authority = Authority::from_seed(group, [7; 32]);
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    let (owner, server) = (RequesterId::new("owner"), RequesterId::new("server"));
    let access = DomainAccess::new(owner.clone(), server.clone());
    let domains = create_shard_domains(&mut authority, data.len(), &params, &access)?;
    let labels = LabelPermutation::from_seed(cfg.seed, CLASSES);
    if !path.exists() {
        let pks = domains
            .iter()
            .map(|&d| authority.public_key(d))
            .collect::<Result<Vec<_>, _>>()?;
        encrypt_to_file(&group, data, &labels, &pks, &params, path, &|_| {})?;
    }
    let file = EncryptedDataset::load(group, path)?;
    if let Some(sigma) = sigma {
        authority.set_noise_key(training_noise_key(cfg.seed));
        let range = 2 * file.header().pixel_bound;
        make_domains_noisy(&mut authority, &domains, sigma, range)?;
    }
    let authority = Arc::new(Mutex::new(authority));
    let owner_keys = InProcessKeyService::new(Arc::clone(&authority), owner);
    register_label_commitments(&file, &owner_keys)?;
    if sigma.is_some() {
        register_noisy_ciphertexts(&file, &owner_keys)?;
    }
    let keys = InProcessKeyService::new(Arc::clone(&authority), server);
    let mut backend = SecureFirstLayer::new(file, keys, Arc::clone(table), cfg.quant)?
        .with_noisy_keys(sigma.is_some())?;
    let mut model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let mut sgd = Sgd::new(cfg.sgd);
    let batches = epoch_batches(cfg.schedule, data.len(), cfg.batch_size, cfg.seed, 0);
    let t = std::time::Instant::now();
    for (b, idx) in batches.iter().enumerate() {
        sgd.schedule(b, batches.len());
        backend_step(&mut model, &mut sgd, cfg, &mut backend, idx)?;
    }
    let seconds = t.elapsed().as_secs_f64();
    let s = backend.stats();
    Ok((data.len() as f64 / seconds, s.fe_seconds, s.key_seconds))
}

/// Noise off against on, `rounds` alternating rounds (see [`NoiseThroughput`]).
fn throughput(
    train_all: &Dataset,
    cfg: &TrainConfig,
    plan: &PrivacyPlan,
    table: &Arc<BabyStepTable<Ristretto255>>,
    work_dir: &Path,
) -> Result<NoiseThroughput> {
    let (images, sigma, rounds) = plan.throughput;
    let data = train_all.take(images.min(train_all.len()), "training")?;
    std::fs::create_dir_all(work_dir)?;
    let path = work_dir.join(format!("privacy-throughput-{images}.cnnenc"));
    let _ = std::fs::remove_file(&path);
    let dist = DiscreteGaussian::from_f64_milli(sigma)?;
    let start = crate::machine::load_average();
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let (mut group, mut keys) = ((0.0, 0.0), (0.0, 0.0));
    for round in 0..rounds {
        let a = secure_epoch(&data, cfg, &path, table, None)?;
        let b = secure_epoch(&data, cfg, &path, table, Some(dist))?;
        println!(
            "  throughput round {}: noise off {:.2} img/s, sigma {sigma} {:.2} img/s (ratio {:.2})",
            round + 1,
            a.0,
            b.0,
            b.0 / a.0
        );
        off.push(a.0);
        on.push(b.0);
        group = (group.0 + a.1, group.1 + b.1);
        keys = (keys.0 + a.2, keys.1 + b.2);
    }
    let _ = std::fs::remove_file(&path);
    let mut ratios: Vec<f64> = on.iter().zip(&off).map(|(b, a)| b / a).collect();
    ratios.sort_by(f64::total_cmp);
    let ratio_median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    Ok(NoiseThroughput {
        images: data.len(),
        sigma: dist.sigma(),
        off_images_per_second: off,
        on_images_per_second: on,
        ratio_median,
        server_group_seconds: group,
        key_service_seconds: keys,
        load_average: (start, crate::machine::load_average()),
        measured: None,
    })
}

/// Runs the sweep (see the [module docs](self)), then the throughput comparison when `table`
/// is given (its files in `work_dir`).
pub fn run(
    train_all: &Dataset,
    test_all: &Dataset,
    cfg: &TrainConfig,
    plan: &PrivacyPlan,
    table: Option<(&Arc<BabyStepTable<Ristretto255>>, &Path)>,
) -> Result<PrivacyResults> {
    let train = train_all.take(plan.train_size.min(train_all.len()), "training")?;
    let test = test_all.take(plan.test_size.min(test_all.len()), "test")?;
    let cfg = TrainConfig {
        epochs: plan.epochs,
        schedule: BatchSchedule::FixedShards,
        ..*cfg
    };
    let encoder = SampleEncoder::new(&train, cfg.quant.scale_x)?;
    let norm = cfg.normalization;
    let lo = encoder.padding_xq();
    let hi = ((255.0 - f64::from(norm.offset)) / f64::from(norm.divisor) * cfg.quant.scale_x)
        .round() as i64;
    let range = 2 * lo.unsigned_abs().max(hi.unsigned_abs());
    let to_pixels = f64::from(norm.divisor) / cfg.quant.scale_x;
    let attacked = plan.attack_images.min(train.len());
    let truth: Vec<Vec<i64>> = (0..attacked)
        .map(|i| encoder.encode(i))
        .collect::<Result<_, _>>()?;
    let labels = LabelPermutation::from_seed(cfg.seed, CLASSES);
    let mut curve = Vec::new();
    let to_byte = |xq: f64| {
        (xq * to_pixels + f64::from(norm.offset))
            .round()
            .clamp(0.0, 255.0) as u8
    };
    let mut pictures: Vec<Vec<Vec<u8>>> = vec![truth
        .iter()
        .take(PICTURED)
        .map(|x| x.iter().map(|&v| to_byte(v as f64)).collect())
        .collect()];
    for &sigma in &plan.sigmas {
        let t = std::time::Instant::now();
        let dist = DiscreteGaussian::from_f64_milli(sigma)?;
        let quantized =
            QuantizedFirstLayer::new(&train, labels.clone(), cfg.quant, FirstLayerSpec::lenet5())?;
        let mut backend = NoisyReference::new(quantized, training_noise_key(cfg.seed), dist)?
            .record(0..attacked)
            .with_accounting(range);
        let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
        let (model, report) =
            train_with_backend(&cfg, model, &mut backend, &test, &labels, &mut ())?;
        let prediction_accuracy = if plan.prediction_images > 0 {
            Some(noisy_prediction_accuracy(
                &model,
                &cfg,
                &test,
                &labels,
                dist,
                plan.prediction_images,
            )?)
        } else {
            None
        };
        let accuracy = report
            .test_accuracy
            .last()
            .copied()
            .ok_or_else(|| anyhow!("no epoch ran"))?;
        let acc = backend.accountant().ok_or_else(|| anyhow!("no ledger"))?;
        let (eps_pixel, eps_image) = (
            acc.max_epsilon(Granularity::Pixel, DEFAULT_DELTA),
            acc.max_epsilon(Granularity::Image, DEFAULT_DELTA),
        );
        let view = backend.view();
        let per_image: Vec<(f64, f64, usize, Vec<u8>)> = (0..attacked)
            .into_par_iter()
            .map(|i| {
                let obs: Vec<&Observation> = view.iter().filter(|o| o.sample == i).collect();
                let x = &truth[i];
                let rows: Vec<(&[(usize, i64)], f64)> = obs
                    .iter()
                    .map(|o| {
                        let exact: i64 = o.terms.iter().map(|&(q, y)| x[q] * y).sum();
                        (o.terms.as_slice(), (exact + o.noise) as f64)
                    })
                    .collect();
                let est = box_least_squares(x.len(), &rows, lo as f64, hi as f64);
                let (mut err2, mut norm2, mut within) = (0.0, 0.0, 0usize);
                for (&xq, &e) in x.iter().zip(&est) {
                    let d = (e - xq as f64) * to_pixels;
                    let p = xq as f64 * to_pixels + f64::from(norm.offset);
                    err2 += d * d;
                    norm2 += p * p;
                    within += usize::from(d.abs() <= 16.0);
                }
                (
                    err2.sqrt() / norm2.sqrt().max(1e-12),
                    within as f64 / x.len() as f64,
                    obs.len(),
                    est.iter().map(|&e| to_byte(e)).collect(),
                )
            })
            .collect();
        let n = per_image.len().max(1) as f64;
        let point = PrivacyPoint {
            sigma: dist.sigma(),
            test_accuracy: accuracy,
            attack_relative_error: per_image.iter().map(|p| p.0).sum::<f64>() / n,
            attack_within_16: per_image.iter().map(|p| p.1).sum::<f64>() / n,
            epsilon_pixel: finite(eps_pixel),
            epsilon_image: finite(eps_image),
            values_per_image: per_image.first().map_or(0, |p| p.2),
            prediction_accuracy,
            seconds: t.elapsed().as_secs_f64(),
        };
        println!(
            "  sigma {:>9.0}: test accuracy {:.2} %, attack error {:.3}, within ±16 {:.1} %, \
             eps pixel {:.3e}, eps image {:.3e}, noisy prediction {:.2} % ({:.0} s)",
            point.sigma,
            100.0 * point.test_accuracy,
            point.attack_relative_error,
            100.0 * point.attack_within_16,
            eps_pixel,
            eps_image,
            100.0 * point.prediction_accuracy.unwrap_or(f64::NAN),
            point.seconds
        );
        curve.push(point);
        pictures.push(per_image.into_iter().take(PICTURED).map(|p| p.3).collect());
    }
    Ok(PrivacyResults {
        train_size: train.len(),
        test_size: test.len(),
        epochs: cfg.epochs,
        attack_images: attacked,
        delta: DEFAULT_DELTA,
        coordinate_range: range,
        method: "quantised reference of noisy training (the same noise and weights as secure \
                 training, bit for bit); attack: least squares over every forward and gradient \
                 value of every epoch, projected onto the pixel box and refined by 200 \
                 projected-gradient steps; noisy prediction: the quantised reference of a noisy \
                 query domain (z + e, the same noise as secure prediction, bit for bit)"
            .into(),
        curve,
        throughput: match table {
            Some((t, dir)) => Some(throughput(train_all, &cfg, plan, t, dir)?),
            None => None,
        },
        prediction_images: plan.prediction_images.min(test.len()),
        run: None,
        picture: "privacy_reconstructions.png".into(),
        pictures,
    })
}

/// The accuracy of noisy secure prediction with `model` on the first `images` test images at
/// `sigma`: each image is a query with sample id `2^63 + i`, whose 1,176 forward values get the
/// noise `DG_σ(PRF_k(id ‖ H(y)))` of the authority's key `k` (here the run's training noise key;
/// the distribution is what matters), then the plaintext rest of the network.
fn noisy_prediction_accuracy(
    model: &LeNet5,
    cfg: &TrainConfig,
    test: &Dataset,
    labels: &LabelPermutation,
    sigma: DiscreteGaussian,
    images: usize,
) -> Result<f64> {
    let test = test.take(images.min(test.len()), "test")?;
    let mut quantized =
        QuantizedFirstLayer::new(&test, labels.clone(), cfg.quant, FirstLayerSpec::lenet5())?;
    let wq = cfg.quant.encode_weights(model.first_weight())?;
    let flat: Vec<i64> = wq.iter().copied().collect();
    let outputs = ConvGeometry::lenet5().forward_outputs(&flat, 0)?;
    let key: NoiseKey = training_noise_key(cfg.seed);
    let mut correct = 0usize;
    let all: Vec<usize> = (0..test.len()).collect();
    for chunk in all.chunks(256) {
        let z = quantized.forward(chunk, wq.view())?;
        let rows: Vec<Vec<i64>> = z.rows().into_iter().map(|r| r.to_vec()).collect();
        correct += rows
            .into_par_iter()
            .zip(chunk.par_iter())
            .map(|(mut z, &i)| -> Result<usize> {
                let sample = QUERY_SAMPLE_BASE + i as u64;
                for (v, o) in z.iter_mut().zip(&outputs) {
                    if !o.pixel_terms.is_empty() {
                        *v += key.sample(&sigma, &noise_input(sample, &o.pixel_terms));
                    }
                }
                let p = classify_first_layer(model, &cfg.quant, z)?;
                Ok(usize::from(p.class == labels.apply(test.label(i))))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .sum::<usize>();
    }
    Ok(correct as f64 / test.len().max(1) as f64)
}

/// Writes the picture of [`PrivacyResults::picture`] to `path`: 28x28 tiles at 3x, 2-pixel
/// gutters, one row per sigma under the originals (greyscale PNG, flate2 + CRC-32).
pub fn picture(path: &Path, results: &PrivacyResults) -> Result<()> {
    const SIDE: usize = 28;
    const ZOOM: usize = 3;
    const GAP: usize = 2;
    let rows = results.pictures.len();
    let cols = results.pictures.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let tile = SIDE * ZOOM + GAP;
    let (w, h) = (cols * tile + GAP, rows * tile + GAP);
    let mut img = vec![255u8; w * h];
    for (r, row) in results.pictures.iter().enumerate() {
        for (c, pixels) in row.iter().enumerate().take(cols) {
            for (k, &v) in pixels.iter().enumerate().take(SIDE * SIDE) {
                let (py, px) = (k / SIDE, k % SIDE);
                for dy in 0..ZOOM {
                    for dx in 0..ZOOM {
                        let y = GAP + r * tile + py * ZOOM + dy;
                        let x = GAP + c * tile + px * ZOOM + dx;
                        // MNIST is white on black; draw it dark on light.
                        img[y * w + x] = 255 - v;
                    }
                }
            }
        }
    }
    std::fs::write(path, png_grey(w, h, &img)?)?;
    Ok(())
}

/// A minimal 8-bit greyscale PNG of `pixels` (row-major `w x h`).
fn png_grey(w: usize, h: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| -> Result<()> {
        out.extend_from_slice(&u32::try_from(data.len())?.to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
        Ok(())
    };
    let mut raw = Vec::with_capacity((w + 1) * h);
    for row in pixels.chunks_exact(w) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&u32::try_from(w)?.to_be_bytes());
    ihdr.extend_from_slice(&u32::try_from(h)?.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr)?;
    chunk(&mut out, b"IDAT", &idat)?;
    chunk(&mut out, b"IEND", &[])?;
    Ok(out)
}

/// `argmin ‖A x − b‖²` over `x ∈ [lo, hi]^n` for sparse rows `(terms, b)`: the ridge-stabilised
/// normal equations solved by Cholesky, clipped to the box, then 200 projected-gradient steps.
fn box_least_squares(n: usize, rows: &[(&[(usize, i64)], f64)], lo: f64, hi: f64) -> Vec<f64> {
    let mut m = vec![0.0f64; n * n];
    let mut v = vec![0.0f64; n];
    for &(terms, b) in rows {
        for &(i, yi) in terms {
            let yi = yi as f64;
            v[i] += yi * b;
            for &(j, yj) in terms {
                m[i * n + j] += yi * yj as f64;
            }
        }
    }
    let trace: f64 = (0..n).map(|i| m[i * n + i]).sum();
    let ridge = 1e-9 * trace / n as f64 + 1e-12;
    let mut l = m.clone();
    for i in 0..n {
        l[i * n + i] += ridge;
    }
    let mid = 0.5 * (lo + hi);
    let mut x = match cholesky_solve(&mut l, &v, n) {
        Some(x) => x,
        None => vec![mid; n],
    };
    for xi in &mut x {
        *xi = xi.clamp(lo, hi);
    }
    // Projected gradient on ½‖Ax − b‖² with step 1/L (L from power iteration).
    let mut u = vec![1.0f64; n];
    let mut lmax = 1.0;
    for _ in 0..30 {
        let w = matvec(&m, &u, n);
        lmax = w.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
        u = w.iter().map(|a| a / lmax).collect();
    }
    let step = 1.0 / lmax;
    for _ in 0..200 {
        let g = matvec(&m, &x, n);
        for i in 0..n {
            x[i] = (x[i] - step * (g[i] - v[i])).clamp(lo, hi);
        }
    }
    x
}

fn matvec(m: &[f64], x: &[f64], n: usize) -> Vec<f64> {
    m.chunks_exact(n)
        .map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

/// Solves `L Lᵀ x = v` after factorising the symmetric positive definite `a` in place.
fn cholesky_solve(a: &mut [f64], v: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = v[i];
        for k in 0..i {
            s -= a[i * n + k] * y[k];
        }
        y[i] = s / a[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= a[k * n + i] * x[k];
        }
        x[i] = s / a[i * n + i];
    }
    Some(x)
}

/// Test accuracy against attack error, one point per sigma (labelled), at `path`, and the
/// picture of reconstructions beside it.
pub fn plot(path: &Path, results: &PrivacyResults) -> Result<()> {
    if let Some(dir) = path.parent() {
        picture(&dir.join(&results.picture), results)?;
    }
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting: {e}");
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let max_x = results
        .curve
        .iter()
        .map(|p| p.attack_relative_error)
        .fold(0.1f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Noisy first layer: accuracy vs reconstruction ({} images, {} epochs)",
                results.train_size, results.epochs
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0f64..max_x, 0.0f64..100.0)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("attack relative error ||p̂ − p|| / ||p||")
        .y_desc("test accuracy (%)")
        .draw()
        .map_err(|e| err(&e))?;
    let pts: Vec<(f64, f64)> = results
        .curve
        .iter()
        .map(|p| (p.attack_relative_error, 100.0 * p.test_accuracy))
        .collect();
    let color = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(results.curve.iter().zip(&pts).map(|(p, &xy)| {
            EmptyElement::at(xy)
                + Circle::new((0, 0), 4, color.filled())
                + Text::new(format!("σ={}", p.sigma), (6, -14), ("sans-serif", 13))
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The section of REPORT.md.
pub fn markdown(r: &PrivacyResults) -> String {
    let mut s = format!(
        "\n## Privacy: noisy first-layer values\n\n{} training / {} test images, {} epochs; \
         attack on the first {} training images; ε at δ = {:e}, coordinate range R = {}. \
         Method: {}.\n\n\
         | sigma | test accuracy | noisy prediction accuracy | attack rel. error | pixels within ±16 | ε per pixel | ε per image | values per image |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
        r.train_size, r.test_size, r.epochs, r.attack_images, r.delta, r.coordinate_range, r.method
    );
    if let Some(run) = &r.run {
        s.insert_str(
            s.find("\n\n| sigma").unwrap_or(s.len()),
            &format!(
                " Noisy prediction: the first {} test images. **This section comes from a separate \
                 run** (`{}`, commit `{}`, started {} UTC, {:.0} s, load average {:?} → {:?}), \
                 not from the run that produced the rest of this report.",
                r.prediction_images,
                run.command,
                run.git_commit.as_deref().unwrap_or("unknown"),
                run.started_utc,
                run.seconds,
                run.load_average.0,
                run.load_average.1
            ),
        );
    }
    let eps = |e: Option<f64>| e.map_or_else(|| "∞".to_string(), |v| format!("{v:.3e}"));
    for p in &r.curve {
        s.push_str(&format!(
            "| {} | {:.2} % | {} | {:.3} | {:.1} % | {} | {} | {} |\n",
            p.sigma,
            100.0 * p.test_accuracy,
            p.prediction_accuracy
                .map_or_else(|| "—".to_string(), |a| format!("{:.2} %", 100.0 * a)),
            p.attack_relative_error,
            100.0 * p.attack_within_16,
            eps(p.epsilon_pixel),
            eps(p.epsilon_image),
            p.values_per_image
        ));
    }
    let good: Vec<String> = r
        .curve
        .iter()
        .filter(|p| p.test_accuracy >= 0.97 && p.attack_relative_error >= 0.3)
        .map(|p| p.sigma.to_string())
        .collect();
    s.push_str(&if good.is_empty() {
        "\nNo sigma of this sweep keeps test accuracy ≥ 97 % while the attack error is ≥ 0.3.\n"
            .to_string()
    } else {
        format!(
            "\nSigma values with test accuracy ≥ 97 % and attack error ≥ 0.3: {}.\n",
            good.join(", ")
        )
    });
    if let Some(t) = &r.throughput {
        s.push_str(&format!(
            "\nSecure training in process (Ristretto255, {} images, 1 epoch), noise off against \
             sigma = {}: {:?} against {:?} images/s, median ratio on/off {:.2} (floor 0.85); \
             server group seconds {:.1} → {:.1}, key service incl. the authority {:.1} → {:.1}; \
             load average {:?} → {:?}.\n",
            t.images,
            t.sigma,
            t.off_images_per_second,
            t.on_images_per_second,
            t.ratio_median,
            t.server_group_seconds.0,
            t.server_group_seconds.1,
            t.key_service_seconds.0,
            t.key_service_seconds.1,
            t.load_average.0,
            t.load_average.1
        ));
    }
    s.push_str("\n![accuracy vs attack error](privacy.svg)\n");
    let sigmas: Vec<String> = r.curve.iter().map(|p| p.sigma.to_string()).collect();
    s.push_str(&format!(
        "\nWhat the server sees: the first {} training images (top row) and the attack's \
         reconstruction from the server's view at sigma = {} (one row each).\n\n\
         ![reconstructions]({})\n\n",
        PICTURED.min(r.attack_images),
        sigmas.join(", "),
        r.picture
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptonn::nn::data::Mnist;

    #[test]
    fn the_attack_is_exact_without_noise_and_blurred_with_it() {
        let mnist = Mnist::load_default().expect("the committed MNIST files load");
        let cfg = TrainConfig {
            batch_size: 16,
            ..TrainConfig::default()
        };
        let plan = PrivacyPlan {
            train_size: 32,
            test_size: 50,
            epochs: 1,
            sigmas: vec![0.0, 20_000.0],
            attack_images: 2,
            throughput: (0, 0.0, 0),
            prediction_images: 20,
        };
        let r = run(&mnist.train, &mnist.test, &cfg, &plan, None).expect("sweep");
        assert_eq!(r.curve.len(), 2);
        let (exact, noisy) = (&r.curve[0], &r.curve[1]);
        // Without noise the server's view determines every pixel (rank 784 with padding).
        assert!(exact.attack_relative_error < 0.01, "{exact:?}");
        assert!(exact.attack_within_16 > 0.99, "{exact:?}");
        assert_eq!(exact.epsilon_pixel, None);
        // With sigma = 20,000 the reconstruction degrades, and epsilon is finite.
        assert!(
            noisy.attack_relative_error > 2.0 * exact.attack_relative_error,
            "{noisy:?}"
        );
        let (p, i) = (
            noisy.epsilon_pixel.expect("finite"),
            noisy.epsilon_image.expect("finite"),
        );
        assert!(p > 0.0 && p < i, "{p} {i}");
        assert!(noisy.values_per_image >= 1176);
        for p in [exact, noisy] {
            let a = p.prediction_accuracy.expect("measured");
            assert!((0.0..=1.0).contains(&a), "{p:?}");
        }
        assert!(markdown(&r).contains("| 20000 |"));
        let dir = std::env::temp_dir().join(format!("cryptonn-privacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        plot(&dir.join("privacy.svg"), &r).expect("plot");
        let png = std::fs::read(dir.join(&r.picture)).expect("picture");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // 3 rows (originals, 2 sigmas) of 2 images: 2·86 + 2 wide, 3·86 + 2 high.
        assert_eq!(&png[16..24], &[0, 0, 0, 174, 0, 0, 1, 4]);
        assert!(std::fs::read_to_string(dir.join("privacy.svg"))
            .expect("svg")
            .contains("<svg"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
