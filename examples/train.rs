//! Train a declared model on a dataset: in float (plain), in the integer first layer on
//! plaintext (quantised), or over encrypted data (secure).
//!
//! ```sh
//! cargo run --release --example train -- --model mlp --dataset breast-cancer --mode secure
//! cargo run --release --example train -- --model cnn-small --dataset digits --mode secure
//! cargo run --release --example train -- --model mlp --dataset mnist --mode secure --train-size 4096
//! cargo run --release --example train -- --model my_model.toml --dataset digits --mode quantized
//! ```
//!
//! `--model` names a built-in (`lenet5`, `mlp`, `cnn-small`) or a model file (TOML or JSON,
//! `cryptonn::nn::model::ModelSpec`). MNIST images are encoded as LeNet-5's pixels; breast
//! cancer and digits are standardised per feature with the training split's public mean and
//! deviation (fitted by the data owner). Secure mode runs through
//! `cryptonn::coordinator::secure_training::SecureTrainingSession`: an in-process authority,
//! the data owner's encryption (feature-major as well when the first layer is dense), the
//! server's secure first layer, and training. `--json PATH` writes the summary of
//! `train_lenet` plus `model` and `dataset`. `--save`, `--checkpoint-every` and `--resume`
//! save, checkpoint and continue a run ([`cryptonn::nn::saved_model`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use cryptonn::cli::{print_final, Bars, TrainOptions};
use cryptonn::coordinator::secure_training::{
    enable_noise, privacy_summary, run_summary, training_noise_key, DatasetSamples,
    EncryptionParams, FirstLayerGeometry, NoisyReference, SecureSummary, SecureTrainingSession,
};
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{default_data_dir, load_named_subsets, Dataset, LabelPermutation};
use cryptonn::nn::first_layer::{FirstLayerSpec, QuantizedFirstLayer};
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::saved_model::DatasetInfo;
use cryptonn::nn::train::{
    train_from, train_with_backend_from, BatchSchedule, Mode, TrainObserver, TrainReport,
    TrainStart,
};

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
enum CliDataset {
    /// MNIST digits, 1x28x28, 10 classes.
    Mnist,
    /// Wisconsin diagnostic breast cancer, 30 features, 2 classes.
    BreastCancer,
    /// scikit-learn's 8x8 digits, 1x8x8, 10 classes.
    Digits,
}

impl CliDataset {
    fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::BreastCancer => "breast-cancer",
            Self::Digits => "digits",
        }
    }
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

/// Train a declared model on a dataset: plain, quantised or secure.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// A built-in model (lenet5, mlp, cnn-small) or a model file (.toml or .json).
    #[arg(long, default_value = "lenet5")]
    model: String,
    /// The dataset.
    #[arg(long, value_enum, default_value = "mnist")]
    dataset: CliDataset,
    /// Training mode.
    #[arg(long, value_enum, default_value = "secure")]
    mode: CliMode,
    /// Group of the functional encryption (secure mode).
    #[arg(long, value_enum, default_value = "ristretto")]
    group: CliGroup,
    /// Where the encrypted dataset, the authority's seed, the audit log and the discrete-log
    /// table are kept.
    #[arg(long, default_value = "cache")]
    cache_dir: PathBuf,
    /// Encrypt the training set again even if the cache holds a current copy.
    #[arg(long)]
    reencrypt: bool,
    /// Directory holding the datasets [default: $CRYPTONN_DATA_DIR, else the repository's data/].
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    train: TrainOptions,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let start = Instant::now();
    let args = Args::parse();
    let mode = match args.mode {
        CliMode::Plain => Mode::Plain,
        CliMode::Quantized => Mode::Quantized,
        CliMode::Secure => Mode::Secure,
    };
    args.train.init_threads()?;
    let cfg = args.train.config(mode);
    let dir = match &args.data {
        Some(d) => d.clone(),
        None => std::env::var_os("CRYPTONN_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(default_data_dir),
    };
    let train_size = match (args.dataset, args.train.encoding.train_size) {
        (CliDataset::Mnist, _) => Some(args.train.train_size(mode)),
        (_, n) => n,
    };
    // The first `train_size` and `test_size` of each split, under the dataset's declared
    // encoding.
    let split = load_named_subsets(args.dataset.name(), &dir, train_size, args.train.test_size)?;
    let (train_set, test_set) = (split.train, split.test);
    let spec = ModelSpec::resolve(&args.model, train_set.shape(), train_set.classes())?;
    println!(
        "{} on {}: mode {mode}, {} training / {} test samples, {} epochs, batch {}, lr {}, \
         seed {}, {} threads",
        spec.name,
        args.dataset.name(),
        train_set.len(),
        test_set.len(),
        cfg.epochs,
        cfg.batch_size,
        cfg.sgd.lr,
        cfg.seed,
        rayon::current_num_threads()
    );
    let mut bars = Bars::new();
    // --resume: the checkpoint's weights, momentum and epoch (checked against this run);
    // --save / --checkpoint-every: the observer saves after the epochs due.
    let info = DatasetInfo::of(args.dataset.name(), &train_set);
    let from = args
        .train
        .persist
        .start(&cfg, &spec, &info, || Model::new(&spec, cfg.seed))?;
    let mut observer = args.train.persist.observer(&mut bars, info);
    let (report, secure, privacy) = if mode == Mode::Secure {
        let run = SecureRun {
            args: &args,
            spec: &spec,
            train: &train_set,
            test: &test_set,
        };
        let obs = observer.as_mut();
        match args.group {
            CliGroup::Ristretto => run.run(Ristretto255, from, obs)?,
            CliGroup::Modp2048 => run.run(ModpGroup::rfc3526_2048(), from, obs)?,
            CliGroup::Modp3072 => run.run(ModpGroup::rfc3526_3072(), from, obs)?,
        }
    } else if let (Mode::Quantized, Some(sigma)) = (mode, args.train.noise()) {
        // The noise secure mode's authority adds, drawn from the same seed.
        let labels = LabelPermutation::from_seed(cfg.seed, spec.classes);
        let (first, _) = spec.first_layer()?;
        let quantized = QuantizedFirstLayer::new(&train_set, labels.clone(), cfg.quant, first)?;
        let mut noisy = NoisyReference::new(quantized, training_noise_key(cfg.seed), sigma)?;
        let (_, report) = train_with_backend_from(
            &cfg,
            from,
            &mut noisy,
            &test_set,
            &labels,
            observer.as_mut(),
        )?;
        (report, None, serde_json::Map::new())
    } else {
        if args.train.noise().is_some() {
            anyhow::bail!(
                "--noise-sigma blurs the first layer's integer values: use --mode secure or \
                 quantized"
            );
        }
        (
            train_from(&cfg, from, &train_set, &test_set, observer.as_mut())?.1,
            None,
            serde_json::Map::new(),
        )
    };
    drop(observer);
    args.train.persist.report_saved(&report);
    if let Some(path) = &args.train.json {
        // The summary the Python binding's `train` returns too.
        let mut summary = run_summary(&report, secure.as_ref(), &spec.name, args.dataset.name())?;
        summary.extend(privacy);
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("{}", path.display()))?;
        println!("wrote {}", path.display());
    }
    print_final(&report, mode, start);
    Ok(())
}

struct SecureRun<'a> {
    args: &'a Args,
    spec: &'a ModelSpec,
    train: &'a Dataset,
    test: &'a Dataset,
}

impl SecureRun<'_> {
    fn run<G: PrimeOrderGroup>(
        &self,
        group: G,
        start: TrainStart,
        observer: &mut dyn TrainObserver,
    ) -> anyhow::Result<(
        TrainReport,
        Option<SecureSummary>,
        serde_json::Map<String, serde_json::Value>,
    )> {
        let cfg = self.args.train.config(Mode::Secure);
        if cfg.schedule != BatchSchedule::FixedShards {
            anyhow::bail!("secure mode needs --batches fixed-shards (one key domain per shard)");
        }
        let (first, _) = self.spec.first_layer()?;
        let session = SecureTrainingSession::new(group.clone(), &self.args.cache_dir)
            .dlog_half_width(self.args.train.dlog_half_width)
            .reencrypt(self.args.reencrypt)
            .continue_audit(self.args.train.persist.resume.is_some());
        let local = session.local_authority()?;
        let labels = LabelPermutation::from_seed(cfg.seed, self.train.classes());
        let samples = DatasetSamples::new(self.train, &labels, cfg.quant.scale_x)?;
        let layout = samples.layout(matches!(first, FirstLayerSpec::Linear { .. }))?;
        let params = EncryptionParams::new(&cfg.quant, Default::default(), cfg.batch_size)
            .with_layout(layout);
        let name = format!("{}-train", self.args.dataset.name());
        let input = session.encrypt(&local.authority, &name, &samples, &params, &|_| {})?;
        let noise = self.args.train.noise();
        if let Some(sigma) = noise {
            let key = training_noise_key(cfg.seed);
            let budget = self.args.train.noise_budget()?;
            enable_noise(&session, &local.authority, &input, sigma, key, budget)?;
        }
        for stale in &input.stale_temp_files {
            println!(
                "removed {} (left by an interrupted run); orphaned domains: {:?}",
                stale.path.display(),
                stale.orphaned_domains
            );
        }
        println!(
            "encrypted dataset {} ({}; {} shard domains, {:.1} s)",
            input.path.display(),
            if input.reused {
                "reused from the cache".to_string()
            } else {
                format!("encrypted in {:.1} s", input.encrypt_seconds)
            },
            input.domains.len(),
            input.setup_seconds
        );
        let table = session.dlog_table()?;
        let mut backend = session
            .server(
                session.in_process_keys(&local.authority),
                &input.path,
                Arc::clone(&table),
                cfg.quant,
                FirstLayerGeometry::from_spec(&first)?,
            )?
            .with_noisy_keys(noise.is_some())?;
        let (_, mut report) =
            train_with_backend_from(&cfg, start, &mut backend, self.test, &labels, observer)?;
        report.encrypt_images_per_second = input.images_per_second(backend.dataset().len());
        let s = *backend.stats();
        let audit_records = local
            .authority
            .lock()
            .map_err(|_| anyhow::anyhow!("authority poisoned"))?
            .audit_log()
            .len();
        println!(
            "secure: {} key requests ({} FEIP + {} FEBO keys), {} decryptions; group ops {:.1} s, \
             discrete logs {:.1} s, key service {:.1} s",
            s.key_requests,
            s.feip_keys,
            s.febo_keys,
            s.decryptions,
            s.fe_seconds,
            s.dlog_seconds,
            s.key_seconds
        );
        let secure = SecureSummary {
            group: group.id(),
            encrypt_seconds: input.encrypt_seconds,
            reused: input.reused,
            ciphertext_bytes: backend.dataset().ciphertext_bytes(),
            stats: s,
            setup_seconds: input.setup_seconds,
            audit_records: Some(audit_records),
            audit_file: local.audit_file.display().to_string(),
        };
        let mut privacy = serde_json::Map::new();
        if let Some(sigma) = noise {
            privacy.extend(privacy_summary(&local.authority, sigma, self.train.len())?);
        }
        Ok((report, Some(secure), privacy))
    }
}
