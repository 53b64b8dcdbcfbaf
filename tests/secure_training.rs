//! Secure training of LeNet-5's first layer over encrypted MNIST: bit-identical to the
//! quantised mode step by step (Ristretto255, the insecure test group of Z_p*, and a tiny
//! RFC 3526 2048-bit case), plus the encrypted dataset's load-time checks and the key domains.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use cryptonn::coordinator::secure_training::encrypted_dataset::encrypt_to_file;
use cryptonn::coordinator::secure_training::{
    create_shard_domains, register_label_commitments, EncryptedDataset, EncryptionParams,
    SecureFirstLayer, SecureTrainingError,
};
use cryptonn::coordinator::{Authority, InProcessKeyService, RequesterId};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{Dataset, LabelPermutation, Mnist};
use cryptonn::nn::first_layer::QuantizedFirstLayer;
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::optim::Sgd;
use cryptonn::nn::train::{backend_step, epoch_batches, BatchSchedule, Mode, TrainConfig};

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptonn-secure-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

struct Setup<G: PrimeOrderGroup> {
    authority: Arc<Mutex<Authority<G>>>,
    path: PathBuf,
}

/// The authority creates the shard domains, the data owner encrypts to a file.
fn encrypt<G: PrimeOrderGroup>(
    group: G,
    data: &Dataset,
    cfg: &TrainConfig,
    name: &str,
) -> Setup<G> {
    let mut authority = Authority::from_seed(group.clone(), [7; 32]);
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    let access = &cryptonn::coordinator::DomainAccess::new(
        RequesterId::new("owner"),
        RequesterId::new("server"),
    );
    let domains =
        create_shard_domains(&mut authority, data.len(), &params, access).expect("domains");
    let pks: Vec<_> = domains
        .iter()
        .map(|&d| authority.public_key(d).expect("public key"))
        .collect();
    let path = temp_path(name);
    let labels = LabelPermutation::from_seed(cfg.seed, cryptonn::nn::data::CLASSES);
    encrypt_to_file(&group, data, &labels, &pks, &params, &path, &|_| {}).expect("encrypt");
    let authority = Arc::new(Mutex::new(authority));
    // The data owner registers its label ciphertexts' FEBO commitments.
    let owner = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("owner"));
    let file = EncryptedDataset::load(group, &path).expect("load");
    register_label_commitments(&file, &owner).expect("register");
    Setup { authority, path }
}

fn server<G: PrimeOrderGroup>(
    group: G,
    setup: &Setup<G>,
    cfg: &TrainConfig,
    half_width: u64,
) -> SecureFirstLayer<G, InProcessKeyService<G>> {
    let data = EncryptedDataset::load(group.clone(), &setup.path).expect("load");
    let keys = InProcessKeyService::new(Arc::clone(&setup.authority), RequesterId::new("server"));
    let table = Arc::new(BabyStepTable::new(group, half_width).expect("table"));
    SecureFirstLayer::new(data, keys, table, cfg.quant).expect("backend")
}

/// Trains with both backends on the same batches and compares all parameters after each step.
fn assert_bit_identical<G: PrimeOrderGroup>(
    group: G,
    images: usize,
    batch: usize,
    epochs: usize,
    half_width: u64,
) {
    let data = mnist().train.take(images, "training").expect("subset");
    let cfg = TrainConfig {
        mode: Mode::Secure,
        epochs,
        batch_size: batch,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    };
    let setup = encrypt(
        group.clone(),
        &data,
        &cfg,
        &format!("exact-{:?}-{images}.cnnenc", group.id()),
    );
    let mut secure = server(group, &setup, &cfg, half_width);
    let labels = LabelPermutation::from_seed(cfg.seed, cryptonn::nn::data::CLASSES);
    let mut quantized = QuantizedFirstLayer::new(
        &data,
        labels,
        cfg.quant,
        cryptonn::nn::first_layer::FirstLayerSpec::lenet5(),
    )
    .expect("quantized");
    let mut m_s = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let mut m_q = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let (mut sgd_s, mut sgd_q) = (Sgd::new(cfg.sgd), Sgd::new(cfg.sgd));
    let steps_per_epoch = images.div_ceil(batch);
    let mut steps = 0;
    for epoch in 0..epochs {
        for (b, idx) in epoch_batches(cfg.schedule, images, batch, cfg.seed, epoch)
            .iter()
            .enumerate()
        {
            let step = epoch * steps_per_epoch + b;
            sgd_s.schedule(step, steps_per_epoch * epochs);
            sgd_q.schedule(step, steps_per_epoch * epochs);
            let out_s = backend_step(&mut m_s, &mut sgd_s, &cfg, &mut secure, idx).expect("secure");
            let out_q =
                backend_step(&mut m_q, &mut sgd_q, &cfg, &mut quantized, idx).expect("quantized");
            assert_eq!(out_s, out_q, "step {step}: loss and accuracy");
            assert_eq!(
                m_s.parameter_bytes(),
                m_q.parameter_bytes(),
                "step {step}: weights differ"
            );
            steps += 1;
        }
    }
    assert_eq!(m_s.weights_sha256(), m_q.weights_sha256());
    assert!(steps >= 2);
    let stats = secure.stats();
    // One FEIP request for the forward pass, one FEBO, one FEIP for the gradient per step.
    assert_eq!(stats.key_requests, 3 * steps as u64);
    assert!(stats.decryptions >= (steps * batch * (1176 + 10)) as u64 / 2);
    std::fs::remove_file(&setup.path).ok();
}

#[test]
fn secure_equals_quantized_on_ristretto() {
    // 128 images, 2 mini-batches of 64.
    assert_bit_identical(Ristretto255, 128, 64, 1, 1 << 16);
}

#[test]
fn secure_equals_quantized_on_the_zp_test_group() {
    assert_bit_identical(ModpGroup::insecure_test_group(), 16, 8, 1, 1 << 14);
}

#[test]
#[ignore = "about two minutes: RFC 3526 2048-bit group, 4 images (passes; run with --ignored)"]
fn secure_equals_quantized_on_modp2048() {
    assert_bit_identical(ModpGroup::rfc3526_2048(), 4, 2, 1, 1 << 14);
}

fn small_setup(name: &str) -> (Dataset, TrainConfig, Setup<Ristretto255>) {
    let data = mnist().train.take(8, "training").expect("subset");
    let cfg = TrainConfig {
        mode: Mode::Secure,
        batch_size: 4,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    };
    let setup = encrypt(Ristretto255, &data, &cfg, name);
    (data, cfg, setup)
}

#[test]
fn damaged_files_are_rejected_at_load() {
    let (_, _, setup) = small_setup("damage.cnnenc");
    let bytes = std::fs::read(&setup.path).expect("read");
    let corrupt = |b: &[u8], what: &str| {
        let p = temp_path(&format!("damage-{what}.cnnenc"));
        std::fs::write(&p, b).expect("write");
        let r = EncryptedDataset::load(Ristretto255, &p);
        std::fs::remove_file(&p).ok();
        match r {
            Err(SecureTrainingError::Corrupt { reason, .. }) => reason,
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    };
    // A flipped bit in a ciphertext.
    let mut t = bytes.clone();
    let mid = t.len() / 2;
    t[mid] ^= 1;
    assert!(corrupt(&t, "flip").contains("SHA-256"));
    // Truncated (e.g. an interrupted copy).
    assert!(corrupt(&bytes[..bytes.len() - 100], "trunc").contains("announces"));
    assert!(corrupt(&bytes[..10], "short").contains("truncated"));
    // Bad magic.
    let mut m = bytes.clone();
    m[0] = b'X';
    assert!(corrupt(&m, "magic").contains("magic"));
    // Wrong group.
    assert!(matches!(
        EncryptedDataset::load(ModpGroup::insecure_test_group(), &setup.path),
        Err(SecureTrainingError::GroupMismatch { .. })
    ));
    // A missing file.
    assert!(matches!(
        EncryptedDataset::load(Ristretto255, &temp_path("absent.cnnenc")),
        Err(SecureTrainingError::Io { .. })
    ));
    std::fs::remove_file(&setup.path).ok();
}

#[test]
fn a_dataset_of_another_authority_is_rejected() {
    let (_, cfg, setup) = small_setup("other-key.cnnenc");
    // Another authority (another seed) with the same domain ids.
    let mut other = Authority::from_seed(Ristretto255, [9; 32]);
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    create_shard_domains(
        &mut other,
        8,
        &params,
        &cryptonn::coordinator::DomainAccess::new(
            RequesterId::new("owner"),
            RequesterId::new("server"),
        ),
    )
    .expect("domains");
    let keys = InProcessKeyService::new(Arc::new(Mutex::new(other)), RequesterId::new("server"));
    let data = EncryptedDataset::load(Ristretto255, &setup.path).expect("load");
    let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 10).expect("table"));
    let err = SecureFirstLayer::new(data, keys, table, cfg.quant).unwrap_err();
    assert!(
        matches!(err, SecureTrainingError::WrongKey { shard: 0, .. }),
        "{err}"
    );
    std::fs::remove_file(&setup.path).ok();
}

#[test]
fn a_batch_across_shards_is_an_error() {
    use cryptonn::nn::first_layer::FirstLayerBackend;
    let (_, cfg, setup) = small_setup("spans.cnnenc");
    let mut backend = server(Ristretto255, &setup, &cfg, 1 << 12);
    let wq = ndarray::Array2::<i64>::ones((6, 25));
    let err = backend.forward(&[0, 5], wq.view()).unwrap_err();
    assert!(err.to_string().contains("one shard"), "{err}");
    let err = backend.forward(&[8], wq.view()).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    std::fs::remove_file(&setup.path).ok();
}

#[test]
fn an_overflowing_product_names_the_layer_and_a_scale() {
    use cryptonn::nn::first_layer::FirstLayerBackend;
    let (_, mut cfg, setup) = small_setup("overflow.cnnenc");
    // A forward bound far below the values: the decryption must fail, not wrap.
    cfg.quant.forward_bound = 1000;
    let mut backend = server(Ristretto255, &setup, &cfg, 1 << 10);
    let wq = ndarray::Array2::<i64>::from_elem((6, 25), 100);
    let err = backend.forward(&[0, 1], wq.view()).unwrap_err().to_string();
    assert!(err.contains("conv1 forward"), "{err}");
    assert!(err.contains("scale-w"), "{err}");
    std::fs::remove_file(&setup.path).ok();
}

#[test]
fn keys_of_one_shard_open_nothing_of_another() {
    use cryptonn::coordinator::{FeipKeyRequest, KeyService, KeyVectorData};
    use cryptonn::fe::dlog::DlogSolver;
    use cryptonn::fe::feip::{Feip, KeyVector};
    let (data, cfg, setup) = small_setup("domains.cnnenc");
    let ds = EncryptedDataset::load(Ristretto255, &setup.path).expect("load");
    let domains = ds.header().domains.clone();
    assert_eq!(domains.len(), 2);
    let keys = InProcessKeyService::new(Arc::clone(&setup.authority), RequesterId::new("server"));
    // A dense key for the sum of all pixels, issued in shard 0's domain.
    let y: Vec<(usize, i64)> = (0..784).map(|p| (p, 1)).collect();
    let resp = keys
        .feip_keys(&FeipKeyRequest {
            domain: domains[0],
            vectors: vec![KeyVectorData::Sparse(y.clone())],
        })
        .expect("key");
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, 4);
    let feip = Feip::new(Ristretto255, params.feip_params().expect("params"));
    let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 16).expect("table"));
    let dlog = DlogSolver::new(table, 784 * 222).expect("solver");
    let enc = params.pixel_encoding().expect("encoding");
    let truth = |i: usize| data.image(i).iter().map(|&p| enc.encode(p)).sum::<i64>();
    // In its own shard the key opens the sum ...
    let own = ds.image_ciphertext(1).expect("ct");
    let prepared = feip.prepare_ciphertext(&own).expect("prepare");
    let got =
        feip.vartime_decrypt_many(&prepared, &[(&resp.keys[0], KeyVector::Sparse(&y))], &dlog);
    assert_eq!(*got[0].as_ref().expect("decrypts"), truth(1));
    // ... on every image of shard 1 it yields no value in range.
    for i in 4..8 {
        let other = ds.image_ciphertext(i).expect("ct");
        let prepared = feip.prepare_ciphertext(&other).expect("prepare");
        let got =
            feip.vartime_decrypt_many(&prepared, &[(&resp.keys[0], KeyVector::Sparse(&y))], &dlog);
        assert!(
            got[0].is_err(),
            "image {i} of shard 1 opened by a shard-0 key"
        );
    }
    std::fs::remove_file(&setup.path).ok();
}

/// The error of a secure backend, unwrapped from [`NnError::Backend`].
fn secure_error(e: &cryptonn::nn::error::NnError) -> &SecureTrainingError {
    match e {
        cryptonn::nn::error::NnError::Backend(b) => b
            .downcast_ref::<SecureTrainingError>()
            .expect("a secure-training error"),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[test]
fn a_diverged_model_fails_within_the_encoding_bound() {
    use cryptonn::nn::first_layer::FirstLayerBackend;
    let (_, cfg, setup) = small_setup("diverged.cnnenc");
    let mut backend = server(Ristretto255, &setup, &cfg, 1 << 16);
    // The weights of a diverged model (within the key bound 2^30, so the authority issues
    // keys): every product far beyond the forward bound, and the public padding terms
    // (c₀ · Σ wq · pad ≈ 10^11) far beyond it too. The search must stay within the encoding's
    // bound (2^22: 32 giant steps here), not grow with the padding (about 10^6 giant steps).
    let wq = ndarray::Array2::<i64>::from_elem((6, 25), 1 << 27);
    let t = std::time::Instant::now();
    let err = backend.forward(&[0, 1, 2, 3], wq.view()).unwrap_err();
    match secure_error(&err) {
        SecureTrainingError::DlogOutOfRange { bound, .. } => {
            assert_eq!(
                *bound, cfg.quant.forward_bound,
                "the search bound is the encoding's"
            );
        }
        other => panic!("expected DlogOutOfRange, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("diverged"), "{msg}");
    assert!(msg.contains("conv1 forward"), "{msg}");
    eprintln!(
        "diverged forward failed in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // Beyond the key bound, the server stops before asking for keys, naming the divergence.
    let wq = ndarray::Array2::<i64>::from_elem((6, 25), 1 << 29);
    let msg = backend.forward(&[0, 1], wq.view()).unwrap_err().to_string();
    assert!(
        msg.contains("diverged") && msg.contains("key bound"),
        "{msg}"
    );
    std::fs::remove_file(&setup.path).ok();
}

#[test]
fn a_diverging_run_stops_within_one_step() {
    use cryptonn::nn::train::{train_with_backend, TrainObserver};
    struct Steps(usize);
    impl TrainObserver for Steps {
        fn batch_finished(&mut self, _: &cryptonn::nn::train::BatchProgress) {
            self.0 += 1;
        }
    }
    // Issue repro: --train-size 64 --lr 1e6 in secure mode searched discrete logs for minutes.
    let data = mnist().train.take(16, "training").expect("subset");
    let mut cfg = TrainConfig {
        mode: Mode::Secure,
        batch_size: 4,
        epochs: 1,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    };
    cfg.sgd.lr = 1e6;
    let setup = encrypt(Ristretto255, &data, &cfg, "diverging-run.cnnenc");
    let mut backend = server(Ristretto255, &setup, &cfg, 1 << 16);
    let test = mnist().test.take(8, "test").expect("subset");
    let labels = LabelPermutation::from_seed(cfg.seed, 10);
    let mut steps = Steps(0);
    let err = train_with_backend(
        &cfg,
        LeNet5::lenet5(cfg.lenet, cfg.seed),
        &mut backend,
        &test,
        &labels,
        &mut steps,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("diverged"), "{msg}");
    // The first step trains; the step after the explosion fails.
    assert!(steps.0 <= 2, "{} steps before the error", steps.0);
    std::fs::remove_file(&setup.path).ok();
}

/// The file is verified once at load and then read shard by shard (it is never held whole);
/// a shard changed on disk after the load is an error naming that shard when training reads
/// it, while the untouched shards still read.
#[test]
fn a_shard_changed_after_the_load_is_named_when_it_is_read() {
    let (_, _, setup) = small_setup("changed-after-load.cnnenc");
    let data = EncryptedDataset::load(Ristretto255, &setup.path).expect("load");
    // Shard 1 (images 4..8): flip one bit of image 5's record, in place.
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&setup.path)
            .expect("open");
        let mut prefix = [0u8; 14];
        f.read_exact(&mut prefix).expect("prefix");
        let hlen = u32::from_le_bytes(prefix[10..14].try_into().expect("4 bytes")) as u64;
        let at = 14 + hlen + 5 * data.header().record_len() as u64 + 100;
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at)).expect("seek");
        f.read_exact(&mut b).expect("read");
        f.seek(SeekFrom::Start(at)).expect("seek");
        f.write_all(&[b[0] ^ 1]).expect("write");
    }
    assert!(data.image_ciphertext(0).is_ok());
    assert!(data.label_ciphertexts(3).is_ok());
    for i in [4, 5, 7] {
        match data.image_ciphertext(i) {
            Err(SecureTrainingError::Corrupt { reason, .. }) => {
                assert!(reason.contains("shard 1"), "{reason}");
                assert!(reason.contains("changed after it was loaded"), "{reason}");
            }
            other => panic!("image {i}: expected Corrupt, got {other:?}"),
        }
    }
    // The next load refuses the whole file.
    assert!(matches!(
        EncryptedDataset::load(Ristretto255, &setup.path),
        Err(SecureTrainingError::Corrupt { .. })
    ));
    std::fs::remove_file(&setup.path).ok();
}

/// Replaces element `index` (0-based within record `record`) of an encrypted dataset file by
/// element `from` of the same record and re-seals the SHA-256 trailer: a consistent file
/// whose ciphertext is not what the data owner encrypted.
fn tamper(path: &std::path::Path, record: usize, index: usize, from: usize) {
    use sha2::{Digest, Sha256};
    let mut bytes = std::fs::read(path).expect("read");
    let hlen = u32::from_le_bytes(bytes[10..14].try_into().expect("4 bytes")) as usize;
    let record_len = (1 + 784 + 20) * 32;
    let start = 14 + hlen + record * record_len;
    let src = bytes[start + from * 32..start + (from + 1) * 32].to_vec();
    bytes[start + index * 32..start + (index + 1) * 32].copy_from_slice(&src);
    let n = bytes.len() - 32;
    let digest = Sha256::digest(&bytes[..n]);
    bytes[n..].copy_from_slice(&digest);
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn a_tampered_ciphertext_is_named_as_such() {
    use cryptonn::nn::first_layer::FirstLayerBackend;
    let (_, cfg, setup) = small_setup("tampered.cnnenc");
    // Image 1's label ciphertext of class 3: its body replaced by image 1's ct0.
    tamper(&setup.path, 1, 1 + 784 + 2 * 3 + 1, 0);
    // Image 2's pixel 300: replaced by pixel 301's component.
    tamper(&setup.path, 2, 1 + 300, 1 + 301);
    let mut backend = server(Ristretto255, &setup, &cfg, 1 << 16);
    let pq = ndarray::Array2::<i64>::from_elem((4, 10), 410);
    let err = backend.output_error(&[0, 1, 2, 3], pq.view()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("tampered"), "{msg}");
    assert!(!msg.contains("scale-p"), "{msg}");
    // The model is sane (the worst case of any image fits the bound): a failing forward
    // decryption is the ciphertext's fault, not a scale's.
    let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let wq = cfg
        .quant
        .encode_weights(model.first_weight())
        .expect("weights");
    assert!(backend.forward(&[4, 5, 6, 7], wq.view()).is_ok());
    let err = backend.forward(&[0, 1, 2, 3], wq.view()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("tampered"), "{msg}");
    assert!(!msg.contains("diverged"), "{msg}");
    std::fs::remove_file(&setup.path).ok();
}

#[test]
fn stale_temporary_files_are_swept_and_their_domains_reported() {
    use cryptonn::coordinator::secure_training::encrypted_dataset::sweep_stale_temp_files;
    let (_, _, setup) = small_setup("sweep.cnnenc");
    let dir = temp_path("sweep-dir");
    std::fs::create_dir_all(&dir).expect("dir");
    // What a SIGKILL during encryption leaves: a partial file under a dead writer's PID (the
    // header is complete, the records are cut short).
    let bytes = std::fs::read(&setup.path).expect("read");
    let dead = dir.join("mnist-train-g1-n8-s4-0123456789abcdef.tmp-4194399");
    std::fs::write(&dead, &bytes[..bytes.len() / 3]).expect("write");
    // A running writer's file (this process) and an unrelated file stay.
    let live = dir.join(format!("other.tmp-{}", std::process::id()));
    std::fs::write(&live, b"in progress").expect("write");
    let unrelated = dir.join("notes.txt");
    std::fs::write(&unrelated, b"keep").expect("write");
    let header = EncryptedDataset::load(Ristretto255, &setup.path)
        .expect("load")
        .header()
        .clone();
    let swept = sweep_stale_temp_files(&dir).expect("sweep");
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].path, dead);
    assert_eq!(swept[0].orphaned_domains, header.domains);
    assert!(!dead.exists());
    assert!(live.exists() && unrelated.exists());
    // A second sweep finds nothing; a missing directory is no error.
    assert!(sweep_stale_temp_files(&dir).expect("sweep").is_empty());
    assert!(sweep_stale_temp_files(&dir.join("absent"))
        .expect("sweep")
        .is_empty());
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_file(&setup.path).ok();
}
