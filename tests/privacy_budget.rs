//! `--noise-epsilon-budget`: the flag parses into the authority's `PrivacyBudget` (and is
//! refused without noise or when not a positive number); a noisy secure run that would take an
//! image beyond it is refused with `CoordinatorError::PrivacyBudgetExceeded`, nothing issued.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use clap::Parser;
use cryptonn::cli::{BudgetWithoutNoise, TrainOptions};
use cryptonn::coordinator::accountant::{Granularity, DEFAULT_DELTA};
use cryptonn::coordinator::secure_training::encrypted_dataset::encrypt_to_file;
use cryptonn::coordinator::secure_training::{
    create_shard_domains, make_domains_noisy, register_label_commitments,
    register_noisy_ciphertexts, training_noise_key, EncryptedDataset, EncryptionParams,
    SecureFirstLayer, SecureTrainingError,
};
use cryptonn::coordinator::{
    Authority, CoordinatorError, DomainAccess, InProcessKeyService, RequesterId,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{LabelPermutation, Mnist, CLASSES};
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::optim::Sgd;
use cryptonn::nn::train::{backend_step, epoch_batches, BatchSchedule, Mode};
use cryptonn::nn::NnError;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    train: TrainOptions,
}

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

#[test]
fn the_budget_flag_parses_and_needs_noise() {
    let cli = Cli::try_parse_from(["t", "--noise-sigma", "300", "--noise-epsilon-budget", "1e6"])
        .expect("parse");
    let b = cli.train.noise_budget().expect("valid").expect("a budget");
    assert_eq!(b.epsilon, 1e6);
    assert_eq!(b.delta, DEFAULT_DELTA);
    assert_eq!(b.granularity, Granularity::Image);
    let cli = Cli::try_parse_from([
        "t",
        "--noise-sigma",
        "300",
        "--noise-epsilon-budget",
        "5",
        "--noise-budget-granularity",
        "pixel",
    ])
    .expect("parse");
    let b = cli.train.noise_budget().expect("valid").expect("a budget");
    assert_eq!(b.granularity, Granularity::Pixel);
    // No budget: none; a budget without noise: a typed error.
    let cli = Cli::try_parse_from(["t", "--noise-sigma", "300"]).expect("parse");
    assert_eq!(cli.train.noise_budget().expect("valid"), None);
    let cli = Cli::try_parse_from(["t", "--noise-epsilon-budget", "5"]).expect("parse");
    assert_eq!(cli.train.noise_budget(), Err(BudgetWithoutNoise));
    for bad in ["0", "-1", "inf", "NaN", "x"] {
        assert!(
            Cli::try_parse_from(["t", "--noise-sigma", "1", "--noise-epsilon-budget", bad])
                .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn a_noisy_run_beyond_the_budget_is_refused_with_the_typed_error() {
    let (images, batch) = (32, 16);
    let cli =
        Cli::try_parse_from(["t", "--noise-sigma", "300", "--batch-size", "16"]).expect("parse");
    let sigma = cli.train.noise().expect("noise");
    let cfg = cryptonn::nn::train::TrainConfig {
        mode: Mode::Secure,
        schedule: BatchSchedule::FixedShards,
        batch_size: batch,
        ..cryptonn::nn::train::TrainConfig::default()
    };
    let data = mnist().train.take(images, "training").expect("subset");
    let group = Ristretto255;
    let mut authority = Authority::from_seed(group, [8; 32]);
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, batch);
    let (owner, server) = (RequesterId::new("owner"), RequesterId::new("server"));
    let access = DomainAccess::new(owner.clone(), server.clone());
    let domains =
        create_shard_domains(&mut authority, data.len(), &params, &access).expect("domains");
    let pks: Vec<_> = domains
        .iter()
        .map(|&d| authority.public_key(d).expect("pk"))
        .collect();
    let dir: PathBuf = std::env::temp_dir().join(format!("cryptonn-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("budget.cnnenc");
    let labels = LabelPermutation::from_seed(cfg.seed, CLASSES);
    encrypt_to_file(&group, &data, &labels, &pks, &params, &path, &|_| {}).expect("encrypt");
    let file = EncryptedDataset::load(group, &path).expect("load");
    let range = 2 * file.header().pixel_bound;
    authority.set_noise_key(training_noise_key(cfg.seed));
    make_domains_noisy(&mut authority, &domains, sigma, range).expect("noisy");
    let authority = Arc::new(Mutex::new(authority));
    let owner_keys = InProcessKeyService::new(Arc::clone(&authority), owner);
    register_label_commitments(&file, &owner_keys).expect("labels");
    register_noisy_ciphertexts(&file, &owner_keys).expect("ct0");
    let keys = InProcessKeyService::new(Arc::clone(&authority), server);
    let table = Arc::new(BabyStepTable::new(group, 1 << 16).expect("table"));
    let mut backend = SecureFirstLayer::new(file, keys, table, cfg.quant)
        .expect("backend")
        .with_noisy_keys(true)
        .expect("noisy keys");
    let mut model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let mut sgd = Sgd::new(cfg.sgd);

    // Epoch 1 without a budget: every image releases its values once.
    let batches = epoch_batches(cfg.schedule, images, batch, cfg.seed, 0);
    for idx in &batches {
        backend_step(&mut model, &mut sgd, &cfg, &mut backend, idx).expect("epoch 1");
    }
    // The flag's budget: exactly what the first image of epoch 2's first batch has spent, so
    // that any further release of it goes beyond.
    let idx = &epoch_batches(cfg.schedule, images, batch, cfg.seed, 1)[0];
    let before: Vec<_> = {
        let a = authority.lock().expect("lock");
        idx.iter().map(|&i| a.accountant().loss(i as u64)).collect()
    };
    let spent = before[0].epsilon(Granularity::Image, DEFAULT_DELTA);
    assert!(spent.is_finite() && spent > 0.0);
    let budget = format!("{spent}");
    let cli = Cli::try_parse_from([
        "t",
        "--noise-sigma",
        "300",
        "--noise-epsilon-budget",
        budget.as_str(),
    ])
    .expect("parse");
    authority
        .lock()
        .expect("lock")
        .set_privacy_budget(cli.train.noise_budget().expect("budget"));
    let err =
        backend_step(&mut model, &mut sgd, &cfg, &mut backend, idx).expect_err("beyond the budget");
    let NnError::Backend(source) = &err else {
        panic!("expected a backend error, got {err:?}");
    };
    match source.downcast_ref::<SecureTrainingError>() {
        Some(SecureTrainingError::Coordinator(CoordinatorError::PrivacyBudgetExceeded {
            epsilon,
            budget,
            granularity,
            ..
        })) => {
            assert!(epsilon > budget, "{epsilon} {budget}");
            assert_eq!(*granularity, Granularity::Image);
        }
        other => panic!("expected PrivacyBudgetExceeded, got {other:?}"),
    }
    // Nothing was charged by the refused request.
    let a = authority.lock().expect("lock");
    let after: Vec<_> = idx.iter().map(|&i| a.accountant().loss(i as u64)).collect();
    assert_eq!(after, before);
    drop(a);
    std::fs::remove_dir_all(&dir).ok();
}
