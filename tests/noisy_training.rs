//! Noisy secure training (the noise defence against inference from intermediate values): with the shard domains noisy, secure training
//! equals the quantised reference that draws the same noise from the same seed, bit for bit;
//! the noise changes the weights; each image's releases are charged to it at the authority.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use cryptonn::coordinator::accountant::Granularity;
use cryptonn::coordinator::secure_training::encrypted_dataset::encrypt_to_file;
use cryptonn::coordinator::secure_training::{
    create_shard_domains, make_domains_noisy, register_label_commitments,
    register_noisy_ciphertexts, training_noise_key, EncryptedDataset, EncryptionParams,
    NoisyReference, SecureFirstLayer,
};
use cryptonn::coordinator::{Authority, InProcessKeyService, RequesterId};
use cryptonn::fe::discrete_gaussian::DiscreteGaussian;
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{LabelPermutation, Mnist, CLASSES};
use cryptonn::nn::first_layer::{FirstLayerSpec, QuantizedFirstLayer};
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::optim::Sgd;
use cryptonn::nn::train::{backend_step, epoch_batches, BatchSchedule, Mode, TrainConfig};

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptonn-noisy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn noisy_secure_training_equals_the_noisy_quantised_reference() {
    let (images, batch) = (32, 16);
    let sigma = DiscreteGaussian::new(300, 1).expect("sigma");
    let data = mnist().train.take(images, "training").expect("subset");
    let cfg = TrainConfig {
        mode: Mode::Secure,
        epochs: 1,
        batch_size: batch,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    };
    // Authority and data owner: shard domains, encryption, registrations, noise.
    let group = Ristretto255;
    let mut authority = Authority::from_seed(group, [7; 32]);
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    let (owner, server) = (RequesterId::new("owner"), RequesterId::new("server"));
    let access = cryptonn::coordinator::DomainAccess::new(owner.clone(), server.clone());
    let domains =
        create_shard_domains(&mut authority, data.len(), &params, &access).expect("domains");
    let pks: Vec<_> = domains
        .iter()
        .map(|&d| authority.public_key(d).expect("pk"))
        .collect();
    let path = temp_path("noisy.cnnenc");
    let labels = LabelPermutation::from_seed(cfg.seed, CLASSES);
    encrypt_to_file(&group, &data, &labels, &pks, &params, &path, &|_| {}).expect("encrypt");
    let file = EncryptedDataset::load(group, &path).expect("load");
    let range = 2 * file.header().pixel_bound;
    authority.set_noise_key(training_noise_key(cfg.seed));
    make_domains_noisy(&mut authority, &domains, sigma, range).expect("noisy");
    let authority = Arc::new(Mutex::new(authority));
    let owner_keys = InProcessKeyService::new(Arc::clone(&authority), owner);
    register_label_commitments(&file, &owner_keys).expect("labels");
    assert_eq!(
        register_noisy_ciphertexts(&file, &owner_keys).expect("ct0"),
        images
    );
    // Server.
    let keys = InProcessKeyService::new(Arc::clone(&authority), server);
    let table = Arc::new(BabyStepTable::new(group, 1 << 16).expect("table"));
    let plain = SecureFirstLayer::new(
        EncryptedDataset::load(group, &path).expect("load"),
        keys,
        table,
        cfg.quant,
    )
    .expect("backend");
    let mut secure = plain.with_noisy_keys(true).expect("noisy keys");
    // Quantised references: with the same noise, and without.
    let quantized = || {
        QuantizedFirstLayer::new(&data, labels.clone(), cfg.quant, FirstLayerSpec::lenet5())
            .expect("quantized")
    };
    let mut reference =
        NoisyReference::new(quantized(), training_noise_key(cfg.seed), sigma).expect("reference");
    let mut exact = quantized();
    let mut m_s = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let mut m_q = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let mut m_x = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let (mut sgd_s, mut sgd_q, mut sgd_x) =
        (Sgd::new(cfg.sgd), Sgd::new(cfg.sgd), Sgd::new(cfg.sgd));
    let steps = images / batch;
    for (b, idx) in epoch_batches(cfg.schedule, images, batch, cfg.seed, 0)
        .iter()
        .enumerate()
    {
        for s in [&mut sgd_s, &mut sgd_q, &mut sgd_x] {
            s.schedule(b, steps);
        }
        let out_s = backend_step(&mut m_s, &mut sgd_s, &cfg, &mut secure, idx).expect("secure");
        let out_q =
            backend_step(&mut m_q, &mut sgd_q, &cfg, &mut reference, idx).expect("reference");
        backend_step(&mut m_x, &mut sgd_x, &cfg, &mut exact, idx).expect("exact");
        assert_eq!(out_s, out_q, "step {b}: loss and accuracy");
        assert_eq!(
            m_s.parameter_bytes(),
            m_q.parameter_bytes(),
            "step {b}: weights differ"
        );
    }
    assert_eq!(m_s.weights_sha256(), m_q.weights_sha256());
    // The noise did something.
    assert_ne!(m_s.weights_sha256(), m_x.weights_sha256());
    // Every image released its 1,176 forward values (some outputs may be constant) and its
    // gradient entries; each is charged to it.
    let a = authority.lock().expect("lock");
    for i in 0..images as u64 {
        let loss = a.accountant().loss(i);
        assert!(
            loss.releases >= 1176 && loss.releases <= 1176 + 150,
            "{i}: {loss:?}"
        );
        let (p, im) = (
            loss.epsilon(Granularity::Pixel, 1e-5),
            loss.epsilon(Granularity::Image, 1e-5),
        );
        assert!(p.is_finite() && p > 0.0 && p < im, "{p} {im}");
    }
    assert_eq!(a.accountant().samples(), images);
    drop(a);
    std::fs::remove_file(&path).ok();
}
