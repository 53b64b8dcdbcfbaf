//! Train LeNet-5 on MNIST: cryptonn's main job.
//!
//! ```sh
//! cargo run --example train_lenet                  # secure mode on 2,048 images: a few minutes
//! cargo run --release --example train_lenet -- --mode secure --epochs 2 --train-size 60000
//! cargo run --release --example train_lenet -- --mode quantized --json run.json
//! cargo run --release --example train_lenet -- --mode plain --epochs 2 --train-size 60000
//! ```
//!
//! `--mode secure` (the default) trains from ciphertexts: an in-process authority creates one
//! key domain per mini-batch shard, the data owner FEIP/FEBO-encrypts the training subset once
//! into `--cache-dir` (reused by later runs unless `--reencrypt` or the parameters change), and
//! the server computes conv1 + pooling forward, its weight gradient and the output error through
//! function keys that are fresh after every step (see `cryptonn::coordinator::secure_training`).
//! `--mode quantized` computes the first layer in the same integer arithmetic on plaintext, so
//! for the same seed, scales, data and batch schedule both give the same `weights_sha256`.
//! `--mode plain` trains in float. Progress bars show loss, running accuracy, images/s and ETA; the test
//! accuracy is printed after every epoch; the last line gives the final test accuracy and the
//! total wall time. `--json PATH` writes the run summary ([`cryptonn::nn::train::TrainReport`]).
//! `--save model.safetensors` saves the trained model (with `--checkpoint-every N` also after
//! every N epochs), `--resume model.safetensors` continues an interrupted run bit for bit
//! ([`cryptonn::nn::saved_model`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use std::time::Instant;

use clap::{Parser, ValueEnum};
use cryptonn::cli::{print_final, write_json, Bars, TrainOptions};
use cryptonn::coordinator::secure_prediction::{
    open_query_domain, EncryptedQuery, SecurePredictor,
};
use cryptonn::coordinator::secure_training::{
    enable_noise, privacy_summary, training_noise_key, ConvGeometry, EncryptionParams,
    FirstLayerGeometry, MnistSamples, NoisyReference, SecureSummary, SecureTrainingSession,
};
use cryptonn::coordinator::{Authority, DomainAccess, InProcessKeyService, RequesterId};
use cryptonn::fe::discrete_gaussian::DiscreteGaussian;
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{default_data_dir, Dataset, LabelPermutation, Mnist, CLASSES};
use cryptonn::nn::first_layer::{FirstLayerBackend, QuantizedFirstLayer};
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::model::ModelSpec;
use cryptonn::nn::saved_model::DatasetInfo;
use cryptonn::nn::train::{
    train_from, train_with_backend_from, BatchSchedule, Mode, TrainConfig, TrainObserver,
    TrainReport, TrainStart,
};
use indicatif::{ProgressBar, ProgressStyle};

/// The in-process parties' names at the authority (its audit log's requester ids).
const DATA_OWNER: &str = "data-owner";
const SERVER: &str = "server";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CliMode {
    /// Everything in float.
    Plain,
    /// First layer in integers, exactly as secure training computes it, on plaintext data.
    Quantized,
    /// First layer over encrypted data (FEIP + FEBO).
    Secure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CliGroup {
    /// Ristretto255 (~126-bit security, fast).
    Ristretto,
    /// RFC 3526 2048-bit MODP group (~112-bit, paper-faithful, slow).
    Modp2048,
    /// RFC 3526 3072-bit MODP group (~128-bit, slower).
    Modp3072,
}

/// Train LeNet-5 on MNIST: over encrypted data (secure), or in plaintext (quantised, plain).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Training mode.
    #[arg(long, value_enum, default_value = "secure")]
    mode: CliMode,
    /// Group of the functional encryption (secure mode).
    #[arg(long, value_enum, default_value = "ristretto")]
    group: CliGroup,
    /// Where the encrypted dataset and the discrete-log table are kept (what a server may see;
    /// never the authority's or the data owner's secrets).
    #[arg(long, default_value = "cache")]
    cache_dir: PathBuf,
    /// The authority's own directory (mode 0700): its master seed
    /// (`authority-seed-g<group>.bin`, 0600) and audit log (`audit-g<group>.cnnaudit`, one
    /// binary record per issued key, overwritten by each run, continued by --resume; read it with
    /// `cryptonn::coordinator::read_audit_file`). Must not be, contain or lie in --cache-dir.
    #[arg(long, default_value = "authority-state")]
    authority_dir: PathBuf,
    /// The data owner's secret label permutation π (mode 0600): drawn from the OS RNG into this
    /// file on the first run, read on later ones (quantised and secure mode use the same π, so
    /// they stay bit-identical). Must not lie in --cache-dir.
    #[arg(long, default_value = "data-owner/label-permutation")]
    labels: PathBuf,
    /// Encrypt the training set again even if the cache holds a current copy.
    #[arg(long)]
    reencrypt: bool,
    /// Directory holding the MNIST IDX files.
    #[arg(long, default_value_os_t = default_data_dir())]
    data: PathBuf,
    /// Secure mode: after training, classify the first N test images by secure prediction
    /// (each encrypted by the client under its own query domain) and compare with the
    /// quantised model's predictions.
    #[arg(long, default_value_t = 8)]
    predict: usize,
    #[command(flatten)]
    train: TrainOptions,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let args = Args::parse();
    let mode = match args.mode {
        CliMode::Plain => Mode::Plain,
        CliMode::Quantized => Mode::Quantized,
        CliMode::Secure => Mode::Secure,
    };
    let train_size = args.train.train_size(mode);
    args.train.init_threads()?;
    let cfg = args.train.config(mode);
    if mode == Mode::Plain && args.train.noise().is_some() {
        anyhow::bail!(
            "--noise-sigma blurs the first layer's integer values: use --mode secure or quantized"
        );
    }
    let Mnist { train, test } = Mnist::load(&args.data)?;
    let full_train_len = train.len();
    // Keep one copy of the images: the subsets asked for (the whole set is moved, not copied).
    let subset = |set: Dataset, n: usize, name: &'static str| {
        if n == set.len() {
            Ok(set)
        } else {
            set.take(n, name)
        }
    };
    let train_set = subset(train, train_size, "training")?;
    let test_set = subset(test, args.train.test_size, "test")?;
    println!(
        "LeNet-5 on MNIST: mode {mode}, {} training / {} test images, {} epochs, batch {}, lr {}, \
         momentum {}, seed {}, {} threads",
        train_set.len(),
        test_set.len(),
        cfg.epochs,
        cfg.batch_size,
        cfg.sgd.lr,
        cfg.sgd.momentum,
        cfg.seed,
        rayon::current_num_threads()
    );
    if train_set.len() < full_train_len {
        println!(
            "(a subset; full training: cargo run --release --example train_lenet -- \
             --mode {mode} --epochs 2 --train-size 60000 --test-size 10000)"
        );
    }
    let mut bars = Bars::new();
    // --resume: the checkpoint's weights, momentum and epoch (checked against this run);
    // --save / --checkpoint-every: the observer saves after the epochs due.
    let spec = ModelSpec::lenet5(cfg.lenet);
    let info = DatasetInfo::of("mnist", &train_set);
    let from = args.train.persist.start(&cfg, &spec, &info, || {
        Ok(LeNet5::lenet5(cfg.lenet, cfg.seed))
    })?;
    let mut observer = args.train.persist.observer(&mut bars, info);
    let labels = if mode == Mode::Plain {
        None
    } else {
        check_apart(&args.cache_dir, &args.authority_dir, &args.labels)?;
        let (labels, created) = LabelPermutation::load_or_create(&args.labels, CLASSES)?;
        println!(
            "data owner: label permutation {} {}",
            if created { "drawn into" } else { "read from" },
            args.labels.display()
        );
        Some(labels)
    };
    let (report, extra) = if let (Mode::Secure, Some(labels)) = (mode, &labels) {
        let secure = SecureRun {
            cfg: &cfg,
            train: Some(train_set),
            test: &test_set,
            labels,
            authority_dir: &args.authority_dir,
            cache_dir: &args.cache_dir,
            reencrypt: args.reencrypt,
            resumed: args.train.persist.resume.is_some(),
            half_width: args.train.dlog_half_width,
            predict: args.predict,
            noise: args.train.noise(),
            budget: args.train.noise_budget()?,
        };
        let obs = observer.as_mut();
        match args.group {
            CliGroup::Ristretto => secure.run(Ristretto255, from, obs)?,
            CliGroup::Modp2048 => secure.run(ModpGroup::rfc3526_2048(), from, obs)?,
            CliGroup::Modp3072 => secure.run(ModpGroup::rfc3526_3072(), from, obs)?,
        }
    } else if let Some(labels) = &labels {
        // Quantised: the same π as secure mode, as an explicit input.
        let mut backend = QuantizedFirstLayer::new(
            &train_set,
            labels.clone(),
            cfg.quant,
            cryptonn::nn::first_layer::FirstLayerSpec::lenet5(),
        )?;
        let (_, report) = match args.train.noise() {
            // The noise secure mode's authority adds, drawn from the same seed.
            Some(sigma) => {
                let key = training_noise_key(cfg.seed);
                let mut noisy = NoisyReference::new(backend, key, sigma)?;
                train_with_backend_from(
                    &cfg,
                    from,
                    &mut noisy,
                    &test_set,
                    labels,
                    observer.as_mut(),
                )?
            }
            None => train_with_backend_from(
                &cfg,
                from,
                &mut backend,
                &test_set,
                labels,
                observer.as_mut(),
            )?,
        };
        (report, None)
    } else {
        (
            train_from(&cfg, from, &train_set, &test_set, observer.as_mut())?.1,
            None,
        )
    };
    drop(observer);
    args.train.persist.report_saved(&report);
    if let Some(path) = &args.train.json {
        write_json(path, &report, extra.as_ref())?;
        println!("wrote {}", path.display());
    }
    print_final(&report, mode, start);
    Ok(ExitCode::SUCCESS)
}

/// Whether `inner` is `outer` or lies inside it (both resolved as far as they exist).
fn within(inner: &Path, outer: &Path) -> bool {
    let resolve = |p: &Path| {
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
        };
        // Resolve the longest existing prefix (symbolic links, `..`), keep the rest.
        let mut head = abs.clone();
        let mut tail = Vec::new();
        while !head.exists() {
            match (head.file_name().map(|n| n.to_os_string()), head.parent()) {
                (Some(name), Some(parent)) => {
                    tail.push(name);
                    head = parent.to_path_buf();
                }
                _ => break,
            }
        }
        let mut out = head.canonicalize().unwrap_or(head);
        out.extend(tail.iter().rev());
        out
    };
    resolve(inner).starts_with(resolve(outer))
}

/// Refuses to keep secrets in the dataset cache: the authority's directory and the dataset
/// cache must be disjoint, and the label permutation must not lie in the cache.
fn check_apart(cache: &Path, authority: &Path, labels: &Path) -> anyhow::Result<()> {
    if within(authority, cache) || within(cache, authority) {
        anyhow::bail!(
            "--authority-dir {} and --cache-dir {} overlap: the authority's master seed must never \
             sit with the encrypted dataset (a copy of the cache would hand out every master key); \
             give them separate directories",
            authority.display(),
            cache.display()
        );
    }
    if within(labels, cache) {
        anyhow::bail!(
            "--labels {} lies in --cache-dir {}: keep the data owner's label permutation apart \
             from the dataset cache",
            labels.display(),
            cache.display()
        );
    }
    Ok(())
}

/// Everything secure mode needs besides the group.
struct SecureRun<'a> {
    cfg: &'a TrainConfig,
    /// The data owner's plaintext training images: encrypted, then dropped (the server trains
    /// on the ciphertexts, so memory does not hold the images during training).
    train: Option<Dataset>,
    test: &'a Dataset,
    labels: &'a LabelPermutation,
    authority_dir: &'a Path,
    cache_dir: &'a Path,
    reencrypt: bool,
    /// A resumed run: continue the authority's audit file.
    resumed: bool,
    half_width: u64,
    predict: usize,
    noise: Option<DiscreteGaussian>,
    budget: Option<cryptonn::coordinator::accountant::PrivacyBudget>,
}

impl SecureRun<'_> {
    fn run<G: PrimeOrderGroup>(
        mut self,
        group: G,
        start: TrainStart,
        observer: &mut dyn TrainObserver,
    ) -> anyhow::Result<(
        TrainReport,
        Option<serde_json::Map<String, serde_json::Value>>,
    )> {
        let cfg = self.cfg;
        if cfg.schedule != BatchSchedule::FixedShards {
            anyhow::bail!("secure mode needs --batches fixed-shards (one key domain per shard)");
        }
        let session = SecureTrainingSession::new(group.clone(), self.cache_dir)
            .dlog_half_width(self.half_width)
            .reencrypt(self.reencrypt)
            .continue_audit(self.resumed)
            .authority_dir(self.authority_dir);
        // Authority: master keys from the seed file in its own directory; every issued key is audited
        // to a file (about 14 M keys per full epoch), so its memory stays flat.
        let local = session.local_authority()?;
        let authority = Arc::clone(&local.authority);
        // Data owner: one key domain per shard (= mini-batch; the test set is never keyed),
        // encrypt once (with its own π) or reuse the cached file.
        let labels = self.labels;
        let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
        let train = self
            .train
            .take()
            .ok_or_else(|| anyhow::anyhow!("internal: the training set is already encrypted"))?;
        let train_len = train.len();
        let source = MnistSamples::new(&train, labels, &params)?;
        let bar = ProgressBar::new(train_len as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "encrypting [{bar:30.cyan/blue}] {pos:>6}/{len} {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let input = session.encrypt(&authority, "mnist-train", &source, &params, &|done| {
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        // The data owner's plaintext is not needed once encrypted (`source` borrowed it).
        drop(train);
        if let Some(sigma) = self.noise {
            let key = training_noise_key(cfg.seed);
            let n = enable_noise(&session, &authority, &input, sigma, key, self.budget)?;
            println!(
                "authority: noisy shard domains (sigma {}), {n} ciphertexts registered",
                sigma.sigma()
            );
        }
        for stale in &input.stale_temp_files {
            println!(
                "removed {} (left by an interrupted run); its {} shard domains are orphaned: {}",
                stale.path.display(),
                stale.orphaned_domains.len(),
                match (
                    stale.orphaned_domains.first(),
                    stale.orphaned_domains.last()
                ) {
                    (Some(a), Some(b)) => format!("{a}..={b}"),
                    _ => "unknown (unreadable header)".into(),
                }
            );
        }
        println!(
            "authority: {} shard key domains of {} images ({:.1} s)",
            input.domains.len(),
            cfg.batch_size,
            input.setup_seconds
        );
        // Server: ciphertexts, key service, discrete-log table.
        let t_table = Instant::now();
        let table = session.dlog_table()?;
        println!(
            "discrete-log table: half-width {} ({:.1} s)",
            self.half_width,
            t_table.elapsed().as_secs_f64()
        );
        let t_load = Instant::now();
        let mut backend = session
            .server(
                session.in_process_keys(&authority),
                &input.path,
                Arc::clone(&table),
                cfg.quant,
                FirstLayerGeometry::Conv(ConvGeometry::lenet5()),
            )?
            .with_noisy_keys(self.noise.is_some())?;
        let ciphertext_bytes = backend.dataset().ciphertext_bytes();
        println!(
            "encrypted dataset {} ({} images, {:.1} MB, {}; load {:.1} s)",
            input.path.display(),
            backend.dataset().len(),
            ciphertext_bytes as f64 / 1e6,
            if input.reused {
                "reused from the cache".to_string()
            } else {
                format!("encrypted in {:.1} s", input.encrypt_seconds)
            },
            t_load.elapsed().as_secs_f64()
        );
        let (model, mut report) =
            train_with_backend_from(cfg, start, &mut backend, self.test, labels, observer)?;
        report.encrypt_images_per_second = input.images_per_second(backend.dataset().len());
        let s = *backend.stats();
        let audit_records = authority
            .lock()
            .map_err(|_| anyhow::anyhow!("authority poisoned"))?
            .audit_log()
            .len();
        println!(
            "secure: {} key requests ({} FEIP + {} FEBO keys, {} audit records in {}), {} \
             decryptions; group ops {:.1} s, discrete logs {:.1} s, key service {:.1} s",
            s.key_requests,
            s.feip_keys,
            s.febo_keys,
            audit_records,
            local.audit_file.display(),
            s.decryptions,
            s.fe_seconds,
            s.dlog_seconds,
            s.key_seconds
        );
        let mut extra = SecureSummary {
            group: group.id(),
            encrypt_seconds: input.encrypt_seconds,
            reused: input.reused,
            ciphertext_bytes,
            stats: s,
            setup_seconds: input.setup_seconds,
            audit_records: Some(audit_records),
            audit_file: local.audit_file.display().to_string(),
        }
        .to_map();
        if let Some(sigma) = self.noise {
            extra.extend(privacy_summary(&authority, sigma, train_len)?);
        }
        if self.predict > 0 {
            let p = self.secure_predictions(&group, &authority, model, table, labels)?;
            extra.insert("secure_prediction".into(), serde_json::to_value(p)?);
        }
        Ok((report, Some(extra)))
    }

    /// Secure prediction of the first `--predict` test images with the trained model, checked
    /// against the quantised model (the check runs here, in the example, on the data owner's
    /// plaintext; the predictor itself only sees [`EncryptedQuery`]s).
    fn secure_predictions<G: PrimeOrderGroup>(
        &self,
        group: &G,
        authority: &Arc<Mutex<Authority<G>>>,
        model: LeNet5,
        table: Arc<BabyStepTable<G>>,
        labels: &LabelPermutation,
    ) -> anyhow::Result<PredictionSummary> {
        let cfg = self.cfg;
        let n = self.predict.min(self.test.len());
        let test = self.test.take(n, "test")?;
        let wq = cfg.quant.encode_weights(model.first_weight())?;
        let bias1 = model.first_bias().to_vec();
        let mut reference = QuantizedFirstLayer::new(
            &test,
            LabelPermutation::identity(cryptonn::nn::data::CLASSES),
            cfg.quant,
            cryptonn::nn::first_layer::FirstLayerSpec::lenet5(),
        )?;
        let z = reference.forward(&(0..n).collect::<Vec<_>>(), wq.view())?;
        let want = model
            .trunk_forward(model.unflatten_first(cfg.quant.decode_forward(
                &cryptonn::nn::first_layer::FirstLayerSpec::lenet5(),
                z.view(),
                &bias1,
            )?)?)
            .probs;
        let params = EncryptionParams::new(&cfg.quant, cfg.normalization, 1);
        let keys = InProcessKeyService::new(Arc::clone(authority), RequesterId::new(SERVER));
        let mut predictor = SecurePredictor::new(model, cfg.quant, params, keys, table)?;
        let mut rng = rand_core::OsRng;
        let (mut correct, mut identical) = (0, 0);
        let t = Instant::now();
        for i in 0..n {
            // Client: a fresh query domain, then encryption under its public key.
            let pk = {
                let mut a = authority
                    .lock()
                    .map_err(|_| anyhow::anyhow!("authority poisoned"))?;
                let access =
                    DomainAccess::new(RequesterId::new(DATA_OWNER), RequesterId::new(SERVER));
                let domain = open_query_domain(&mut a, &params, access)?;
                a.public_key(domain)?
            };
            let query = EncryptedQuery::encrypt(group, &pk, &params, test.image(i), &mut rng)?;
            // Server: one key request, 1,176 decryptions, the plaintext trunk.
            let p = predictor.predict(&query)?;
            // Client: maps the class back with its label permutation.
            correct += usize::from(labels.invert(p.class) == test.label(i));
            identical += usize::from(p.probabilities == want.row(i).to_vec());
        }
        let ms = 1e3 * t.elapsed().as_secs_f64() / n.max(1) as f64;
        let summary = PredictionSummary {
            images: n,
            accuracy: correct as f64 / n.max(1) as f64,
            identical_to_quantized: identical,
            ms_per_query: ms,
        };
        println!(
            "secure prediction: {n} test images, each under its own query domain: {correct}/{n} \
             correct, {identical}/{n} with probabilities bit-identical to the quantised model, \
             {ms:.1} ms per query (client encryption + keys + decryption + trunk)"
        );
        if identical != n {
            anyhow::bail!("secure prediction differs from the quantised model");
        }
        Ok(summary)
    }
}

/// What `--predict` measured (JSON key `secure_prediction`).
#[derive(serde::Serialize)]
struct PredictionSummary {
    images: usize,
    accuracy: f64,
    identical_to_quantized: usize,
    ms_per_query: f64,
}
