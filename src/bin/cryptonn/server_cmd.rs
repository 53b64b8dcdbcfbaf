//! `cryptonn server …`: training over an encrypted dataset with keys from a remote authority,
//! then (with `--serve`) secure predictions with the trained model; `--save`,
//! `--checkpoint-every` and `--resume` save and continue the run; `server serve --model`
//! serves a saved model without training.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use cryptonn::coordinator::secure_prediction::SecurePredictor;
use cryptonn::coordinator::secure_training::{
    EncryptedDataset, FirstLayerGeometry, SecureTrainingError, SecureTrainingSession,
};
use cryptonn::coordinator::CoordinatorError;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{
    default_data_dir, load_named, InputEncoding, InputShape, LabelPermutation,
};
use cryptonn::nn::first_layer::FirstLayerSpec;
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::saved_model::{DatasetInfo, SavedModel};
use cryptonn::nn::train::{train_with_backend_from, BatchSchedule, Mode};

use crate::connect::ConnectArgs;
use crate::serve_predictions::ServeOptions;
use cryptonn::cli::{print_final, write_json, Bars, TrainOptions};
use cryptonn::coordinator::secure_training::SecureSummary;

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ServerCommand {
    /// Train LeNet-5 on an encrypted dataset (secure mode of examples/train_lenet, with the
    /// same options and JSON summary), asking the authority for fresh keys every step; with
    /// --serve, then serve secure predictions with the trained model until SIGTERM / Ctrl-C.
    Train(TrainArgs),
    /// Serve secure predictions with a saved model (`--save` of `server train`, `train_lenet`
    /// or `train`) until SIGTERM / Ctrl-C; nothing is trained in this process.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The saved model (safetensors); its hash and shapes are verified before serving.
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// The encrypted training set (a .cnnenc file or a directory holding it or its parts):
    /// queries that name one of its shard domains are refused. Without it the authority's domain binding
    /// is the only guard of the training domains.
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Where the discrete-log table is cached.
    #[arg(long, default_value = "cache")]
    cache_dir: PathBuf,
    /// The server's name (must be the name its token was provisioned for).
    #[arg(long, default_value = "server")]
    name: String,
    /// Half-width of the baby-step table of the discrete logs.
    #[arg(long, default_value_t = 1 << 20)]
    dlog_half_width: u64,
    #[command(flatten)]
    serve: ServeOptions,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The encrypted dataset: a .cnnenc file, or a directory holding it or the parts of a
    /// sharded encryption (`client encrypt --shards A..B`, in any order; every shard exactly
    /// once, every part checked against the authority's domain keys before training).
    #[arg(long)]
    data: PathBuf,
    /// Directory holding the public datasets (for the test split and the public encoding).
    #[arg(long, default_value_os_t = default_data_dir())]
    mnist: PathBuf,
    /// The dataset the encrypted training set comes from: mnist, breast-cancer or digits (its
    /// public test split and encoding; the training samples come only from --data).
    #[arg(long, default_value = "mnist")]
    dataset: String,
    /// The model to train: a built-in name (lenet5, mlp, cnn-small) or a model file (TOML or
    /// JSON); its first layer must fit the encrypted dataset's layout.
    #[arg(long, default_value = "lenet5")]
    model: String,
    /// Where the discrete-log table is cached.
    #[arg(long, default_value = "cache")]
    cache_dir: PathBuf,
    /// The server's name (must be the name its token was provisioned for).
    #[arg(long, default_value = "server")]
    name: String,
    /// The data owner's label permutation file, ONLY to measure the test accuracy in true
    /// classes. It hands the server π, so a deployment leaves it out: the server then trains
    /// without knowing what its classes mean and reports no test accuracy (the data owner
    /// maps predictions back with `client predict --labels`).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// The shard domains are noisy (the data owner encrypted with `client encrypt
    /// --noise-sigma`): ask the authority for ciphertext-bound noisy keys, sending each
    /// image's ct0 (never the rest of its ciphertext), and train on the blurred values.
    #[arg(long)]
    noisy_keys: bool,
    #[command(flatten)]
    train: TrainOptions,
    #[command(flatten)]
    serve: ServeOptions,
}

pub fn run(c: ServerCommand) -> anyhow::Result<()> {
    match c {
        ServerCommand::Train(a) => train(&a),
        ServerCommand::Serve(a) => serve(&a),
    }
}

/// `server serve`: a saved model, verified, behind the prediction service.
fn serve(a: &ServeArgs) -> anyhow::Result<()> {
    let saved = SavedModel::load(&a.model)?;
    let cfg = *saved.config();
    let info = DatasetInfo {
        name: "mnist".into(),
        train_size: saved.dataset().train_size,
        input: InputShape::MNIST,
        classes: cryptonn::nn::data::CLASSES,
        encoding: InputEncoding::Uniform(cfg.normalization),
    };
    saved.check_dataset(&info).with_context(|| {
        format!(
            "{}: secure prediction reads MNIST images",
            a.model.display()
        )
    })?;
    if *saved.model().first_layer() != FirstLayerSpec::lenet5() {
        anyhow::bail!(
            "{}: secure prediction serves LeNet-5's first layer (conv 5x5 padding 2 + 2x2              average pool), the model's is {:?}",
            a.model.display(),
            saved.model().first_layer()
        );
    }
    println!(
        "model {}: {} after epoch {} of {} ({} mode, seed {}), weights sha256 {} (verified)",
        a.model.display(),
        saved.model().spec().name,
        saved.epochs_done(),
        cfg.epochs,
        cfg.mode,
        cfg.seed,
        saved.weights_sha256()
    );
    let serving = a
        .serve
        .prepare()?
        .context("server serve needs --serve ADDR (and --serve-tokens, TLS)")?;
    let training_domains = match &a.data {
        Some(p) => cryptonn::coordinator::secure_training::encrypted_dataset::dataset_domains(p)
            .with_context(|| format!("reading {}", p.display()))?,
        None => Vec::new(),
    };
    let session =
        SecureTrainingSession::new(Ristretto255, &a.cache_dir).dlog_half_width(a.dlog_half_width);
    let table = session.dlog_table()?;
    let params = cryptonn::coordinator::secure_training::EncryptionParams::new(
        &cfg.quant,
        cfg.normalization,
        cfg.batch_size,
    );
    let keys = a.connect.connect(&a.name)?;
    let predictor = SecurePredictor::new(saved.into_model(), cfg.quant, params, keys, table)
        .context("setting up secure prediction")?;
    serving.run(predictor, &a.connect.authority, training_domains)
}

fn train(a: &TrainArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let mode = Mode::Secure;
    let cfg = a.train.config(mode);
    if cfg.schedule != BatchSchedule::FixedShards {
        anyhow::bail!("secure training needs --batches fixed-shards (one key domain per shard)");
    }
    if a.train.noise_sigma != 0.0 || a.train.noise_epsilon_budget.is_some() {
        anyhow::bail!(
            "--noise-sigma / --noise-epsilon-budget are not the server's to set: the data              owner chooses sigma when it encrypts (`client encrypt --noise-sigma`) and the              authority keeps the budget (`authority serve --noise-epsilon-budget`); pass              --noisy-keys to train on noisy domains"
        );
    }
    a.train.init_threads()?;
    // Checked (and bound) before training, served after it.
    let serving = a.serve.prepare()?;
    let group = Ristretto255;
    let path = a.data.clone();
    let t_load = Instant::now();
    let data = EncryptedDataset::load(group, &path).map_err(|e| {
        // The library names the cause; the flag that repairs it is the data owner's.
        let hint = match e {
            SecureTrainingError::Corrupt { .. } => {
                " (the data owner writes it again with `cryptonn client encrypt --reencrypt`)"
            }
            SecureTrainingError::Parts { .. } => {
                " (the data owner encrypts a missing range with `cryptonn client encrypt \
                 --shards A..B`; keep one part per range, all of one encryption)"
            }
            _ => "",
        };
        anyhow::Error::new(e).context(format!("loading {}{hint}", path.display()))
    })?;
    let header = data.header().clone();
    let params = header.params;
    let training_domains = header.domains.clone();
    let split = load_named(&a.dataset, &a.mnist)?;
    // LeNet-5 as `--lenet-*` options configure it (the defaults: the built-in `lenet5`).
    let lenet = a.model == "lenet5";
    let spec = if lenet {
        ModelSpec::lenet5(cfg.lenet)
    } else {
        ModelSpec::resolve(&a.model, split.test.shape(), split.test.classes())?
    };
    let (first, _) = spec.first_layer()?;
    let geometry = FirstLayerGeometry::from_spec(&first)?;
    let layout = params.data_layout()?;
    let dense = matches!(first, FirstLayerSpec::Linear { .. });
    if layout.input_len != spec.input.len()
        || layout.classes != spec.classes
        || layout.feature_major != dense
    {
        anyhow::bail!(
            "{} holds {} inputs of length {} and {} classes{}; --model {} takes length {} and {}              classes{} (encrypt with the same --model and --dataset)",
            path.display(),
            a.dataset,
            layout.input_len,
            layout.classes,
            if layout.feature_major { ", feature-major" } else { "" },
            a.model,
            spec.input.len(),
            spec.classes,
            if dense { ", feature-major" } else { "" }
        );
    }
    if serving.is_some() && first != FirstLayerSpec::lenet5() {
        anyhow::bail!(
            "--serve: secure prediction serves LeNet-5's first layer only; train {} without              --serve (and --save it)",
            spec.name
        );
    }
    let expected = a.train.encoding.encryption_params().with_layout(layout);
    let found = header.params.with_layout(layout);
    if found != expected {
        anyhow::bail!(
            "{} was encrypted with {:?}; these options give {:?} (pass the client's --batch-size \
             and scales)",
            path.display(),
            header.params,
            expected
        );
    }
    if let Some(n) = a.train.encoding.train_size {
        if n != data.len() {
            anyhow::bail!(
                "{} holds {} images, --train-size says {n}",
                path.display(),
                data.len()
            );
        }
    }
    let ciphertext_bytes = data.ciphertext_bytes();
    println!(
        "server: encrypted dataset {} ({} images, {:.1} MB; load {:.1} s)",
        path.display(),
        data.len(),
        ciphertext_bytes as f64 / 1e6,
        t_load.elapsed().as_secs_f64()
    );
    // Without π the server cannot tell which of its classes is which true digit, so it
    // evaluates nothing (an empty test set) rather than report a meaningless figure.
    let labels = match &a.labels {
        Some(p) => Some(LabelPermutation::read_file(p)?),
        None => None,
    };
    let test_size = if labels.is_some() {
        a.train.test_size
    } else {
        0
    };
    let test = split.test.take(test_size.min(split.test.len()), "test")?;
    let keys = a.connect.connect(&a.name)?;
    let t_setup = Instant::now();
    data.verify_keys(&keys)
        .with_context(|| format!("checking {} against {}", path.display(), keys.peer()))?;
    let setup_seconds = t_setup.elapsed().as_secs_f64();
    let session =
        SecureTrainingSession::new(group, &a.cache_dir).dlog_half_width(a.train.dlog_half_width);
    let t_table = Instant::now();
    let table = session.dlog_table()?;
    println!(
        "discrete-log table: half-width {} ({:.1} s)",
        a.train.dlog_half_width,
        t_table.elapsed().as_secs_f64()
    );
    println!(
        "{} on {}: mode {mode}, {} training / {} test samples, {} epochs, batch {}, lr {}, \
         momentum {}, seed {}, {} threads, authority {}",
        spec.name,
        a.dataset,
        data.len(),
        test.len(),
        cfg.epochs,
        cfg.batch_size,
        cfg.sgd.lr,
        cfg.sgd.momentum,
        cfg.seed,
        rayon::current_num_threads(),
        keys.peer()
    );
    let peer = keys.peer().to_string();
    let mut backend = session
        .server_with_dataset(keys, data, Arc::clone(&table), cfg.quant, geometry)?
        .with_noisy_keys(a.noisy_keys)?;
    let mut bars = Bars::new();
    // What the model is trained on, as far as the server knows it: the public encoding.
    let info = DatasetInfo {
        name: a.dataset.clone(),
        train_size: backend.dataset().len(),
        input: split.test.shape(),
        classes: split.test.classes(),
        encoding: split.test.encoding().clone(),
    };
    let from = a.train.persist.start(&cfg, &spec, &info, || {
        if lenet {
            Ok(LeNet5::lenet5(cfg.lenet, cfg.seed))
        } else {
            Model::new(&spec, cfg.seed)
        }
    })?;
    let mut observer = a.train.persist.observer(&mut bars, info);
    // The evaluation permutation: π if given, else any (the test set is then empty).
    let eval_labels = labels.unwrap_or_else(|| LabelPermutation::identity(spec.classes));
    let (model, mut report) = train_with_backend_from(
        &cfg,
        from,
        &mut backend,
        &test,
        &eval_labels,
        observer.as_mut(),
    )
    .map_err(|e| {
        let mut chain: Option<&dyn std::error::Error> = Some(&e);
        let mut noisy_domain = false;
        while let Some(c) = chain {
            // SecureTrainingError::Coordinator is transparent: the coordinator error is not
            // a link of its own.
            noisy_domain |= matches!(
                c.downcast_ref::<SecureTrainingError>(),
                Some(SecureTrainingError::Coordinator(
                    CoordinatorError::NoisyDomain(_)
                ))
            ) || matches!(
                c.downcast_ref::<CoordinatorError>(),
                Some(CoordinatorError::NoisyDomain(_))
            );
            chain = c.source();
        }
        let hint = if !a.noisy_keys && noisy_domain {
            " (the data owner made the shard domains noisy: pass --noisy-keys)"
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!("training with keys from {peer}{hint}"))
    })?;
    drop(observer);
    a.train.persist.report_saved(&report);
    if a.labels.is_none() {
        report.test_accuracy.clear();
        println!(
            "test accuracy: not measured (the server does not know the data owner's label \
             permutation; pass --labels FILE only in experiments)"
        );
    }
    let s = *backend.stats();
    println!(
        "secure: {} key requests ({} FEIP + {} FEBO keys) to {peer}, {} decryptions; group ops \
         {:.1} s, discrete logs {:.1} s, key service {:.1} s",
        s.key_requests,
        s.feip_keys,
        s.febo_keys,
        s.decryptions,
        s.fe_seconds,
        s.dlog_seconds,
        s.key_seconds
    );
    let extra = SecureSummary {
        group: group.id(),
        encrypt_seconds: 0.0,
        reused: true,
        ciphertext_bytes,
        stats: s,
        setup_seconds,
        audit_records: None,
        audit_file: peer,
    }
    .to_map();
    if let Some(path) = &a.train.json {
        write_json(path, &report, Some(&extra))?;
        println!("wrote {}", path.display());
    }
    print_final(&report, mode, start);
    if let Some(serving) = serving {
        drop(backend);
        let keys = a.connect.connect(&a.name)?;
        let predictor = SecurePredictor::new(model, cfg.quant, params, keys, table)
            .context("setting up secure prediction")?;
        serving.run(predictor, &a.connect.authority, training_domains)?;
    }
    Ok(())
}
