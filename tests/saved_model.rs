//! Saved models (`cryptonn::nn::saved_model`): a run interrupted after epoch 1 and resumed from
//! its checkpoint ends with the weights of the uninterrupted run, bit for bit, in plain,
//! quantised and secure mode (the secure run reusing the encrypted dataset and its key domains,
//! the authority's audit log continued without a gap); a saved and reloaded model predicts
//! identically, in plaintext and by secure prediction; and every kind of bad file or mismatched
//! resume is its own error.
#![allow(clippy::unwrap_used)] // tests

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptonn::coordinator::secure_prediction::{
    open_query_domain, EncryptedQuery, SecurePredictor,
};
use cryptonn::coordinator::secure_training::{
    ConvGeometry, EncryptionParams, FirstLayerGeometry, MnistSamples, SecureTrainingSession,
};
use cryptonn::coordinator::{read_audit_file, Authority, DomainAccess, InProcessKeyService};
use cryptonn::coordinator::{AuditRecord, DomainId, RequesterId};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{load_named, Dataset, LabelPermutation, Mnist};
use cryptonn::nn::error::NnError;
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::saved_model::{Checkpointer, DatasetInfo, SavedModel, SavedModelError};
use cryptonn::nn::train::{
    train, train_from, train_with_backend_from, BatchSchedule, Mode, TrainConfig, TrainObserver,
    TrainStart, TrainState,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cryptonn-saved-model-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Stops the run (as a crash would) right after the checkpoint of epoch `0`.
struct StopAfter(usize);

impl TrainObserver for StopAfter {
    fn checkpoint(&mut self, state: &TrainState<'_>) -> Result<(), NnError> {
        if state.epochs_done == self.0 {
            return Err(NnError::InvalidConfig("interrupted (test)".into()));
        }
        Ok(())
    }
}

fn config(mode: Mode) -> TrainConfig {
    TrainConfig {
        mode,
        epochs: 2,
        batch_size: 16,
        schedule: if mode == Mode::Plain {
            BatchSchedule::Shuffled
        } else {
            BatchSchedule::FixedShards
        },
        ..TrainConfig::default()
    }
}

fn small_mnist(train_size: usize) -> (Dataset, Dataset) {
    (
        mnist().train.take(train_size, "training").unwrap(),
        mnist().test.take(16, "test").unwrap(),
    )
}

/// Trains 2 epochs uninterrupted; then 2 epochs interrupted after the first (checkpoint every
/// epoch) and resumed from the file. Returns (uninterrupted, resumed) weights hashes.
fn interrupted_and_resumed(mode: Mode, dir: &Path) -> (String, String) {
    let (train_set, test) = small_mnist(64);
    let cfg = config(mode);
    let spec = ModelSpec::lenet5(cfg.lenet);
    let (_, whole) = train(&cfg, &spec, &train_set, &test, &mut ()).unwrap();

    let path = dir.join("run.safetensors");
    let info = DatasetInfo::of("mnist", &train_set);
    let mut stop = StopAfter(1);
    let mut saver = Checkpointer::new(&mut stop, &path, Some(1), info.clone());
    let err = train(&cfg, &spec, &train_set, &test, &mut saver).unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert_eq!(saver.saved_epochs(), &[1]);

    let saved = SavedModel::load(&path).unwrap();
    assert_eq!(saved.epochs_done(), 1);
    assert_eq!(saved.steps_done(), 4);
    assert_eq!(saved.total_steps(), 8);
    assert!(!saved.velocity().is_empty(), "momentum buffers are saved");
    assert_ne!(saved.weights_sha256(), whole.weights_sha256);
    let start = saved.resume(&cfg, &spec, &info).unwrap();
    let mut saver = Checkpointer::new((), &path, Some(1), info);
    let (model, resumed) = train_from(&cfg, start, &train_set, &test, &mut saver).unwrap();
    assert_eq!(saver.saved_epochs(), &[2]);
    assert_eq!(resumed.test_accuracy.len(), 1, "only epoch 2 ran");
    let last = SavedModel::load(&path).unwrap();
    assert_eq!(last.epochs_done(), 2);
    assert_eq!(last.weights_sha256(), model.weights_sha256());
    (whole.weights_sha256, resumed.weights_sha256)
}

#[test]
fn plain_run_resumed_after_epoch_1_equals_the_uninterrupted_run() {
    let dir = temp_dir("plain");
    let (whole, resumed) = interrupted_and_resumed(Mode::Plain, &dir);
    assert_eq!(whole, resumed);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn quantized_run_resumed_after_epoch_1_equals_the_uninterrupted_run() {
    let dir = temp_dir("quantized");
    let (whole, resumed) = interrupted_and_resumed(Mode::Quantized, &dir);
    assert_eq!(whole, resumed);
    std::fs::remove_dir_all(&dir).ok();
}

/// What one secure run (as `train_lenet --mode secure` builds it) left behind.
struct SecureRun {
    sha: String,
    reused: bool,
    domains: Vec<DomainId>,
    audit_file: PathBuf,
}

/// One secure run of `cfg` from `start` on `train_set` in `dir`, continuing the audit file
/// when `resumed`; `Err` if the observer interrupted it.
fn secure_run(
    dir: &Path,
    cfg: &TrainConfig,
    train_set: &Dataset,
    test: &Dataset,
    start: TrainStart,
    resumed: bool,
    observer: &mut dyn TrainObserver,
) -> (Result<String, NnError>, SecureRun) {
    let session = SecureTrainingSession::new(Ristretto255, dir.join("cache"))
        .authority_dir(dir.join("authority"))
        .dlog_half_width(1 << 16)
        .continue_audit(resumed);
    let local = session.local_authority().unwrap();
    let labels = LabelPermutation::from_seed(cfg.seed, 10);
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    let source = MnistSamples::new(train_set, &labels, &params).unwrap();
    let input = session
        .encrypt(&local.authority, "mnist-train", &source, &params, &|_| {})
        .unwrap();
    let table = session.dlog_table().unwrap();
    let mut backend = session
        .server(
            session.in_process_keys(&local.authority),
            &input.path,
            table,
            cfg.quant,
            FirstLayerGeometry::Conv(ConvGeometry::lenet5()),
        )
        .unwrap();
    let result = train_with_backend_from(cfg, start, &mut backend, test, &labels, observer)
        .map(|(_, r)| r.weights_sha256);
    (
        result,
        SecureRun {
            sha: String::new(),
            reused: input.reused,
            domains: input.domains,
            audit_file: local.audit_file,
        },
    )
}

fn audit(path: &Path) -> Vec<AuditRecord> {
    read_audit_file(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn secure_run_resumed_after_epoch_1_equals_the_uninterrupted_run_and_continues_the_audit_log() {
    let dir = temp_dir("secure");
    let (train_set, test) = small_mnist(32);
    let cfg = config(Mode::Secure);
    let spec = ModelSpec::lenet5(cfg.lenet);
    // The uninterrupted reference: quantised training is bit-identical to secure training.
    let reference = train(
        &TrainConfig {
            mode: Mode::Quantized,
            ..cfg
        },
        &spec,
        &train_set,
        &test,
        &mut (),
    )
    .unwrap()
    .1
    .weights_sha256;

    let path = dir.join("secure.safetensors");
    let info = DatasetInfo::of("mnist", &train_set);
    let fresh = TrainStart::fresh(Model::new(&spec, cfg.seed).unwrap());
    let mut stop = StopAfter(1);
    let mut saver = Checkpointer::new(&mut stop, &path, Some(1), info.clone());
    let (result, first) = secure_run(&dir, &cfg, &train_set, &test, fresh, false, &mut saver);
    assert!(result.is_err(), "the first run was interrupted");
    assert!(!first.reused, "the first run encrypts");
    let before = audit(&first.audit_file);
    assert!(!before.is_empty());

    let start = SavedModel::load(&path)
        .unwrap()
        .resume(&cfg, &spec, &info)
        .unwrap();
    let mut saver = Checkpointer::new((), &path, Some(1), info);
    let (result, second) = secure_run(&dir, &cfg, &train_set, &test, start, true, &mut saver);
    let sha = result.unwrap();
    let second = SecureRun { sha, ..second };
    assert_eq!(second.sha, reference, "resumed secure = uninterrupted");
    assert!(
        second.reused,
        "the resumed run reuses the encrypted dataset"
    );
    assert_eq!(second.domains, first.domains, "the same key domains");
    assert_eq!(second.audit_file, first.audit_file);
    // The audit file verifies (hash chain, sequence numbers 0, 1, 2, … without a gap), starts
    // with the first run's records and goes on with the second run's, in the same domains.
    let after = audit(&second.audit_file);
    assert!(
        after.len() > before.len(),
        "the second run's keys are audited"
    );
    assert_eq!(&after[..before.len()], &before[..]);
    for (i, r) in after.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "no gap at record {i}");
    }
    assert!(after[before.len()..]
        .iter()
        .all(|r| first.domains.contains(&r.domain)));
    assert_eq!(SavedModel::load(&path).unwrap().weights_sha256(), reference);
    std::fs::remove_dir_all(&dir).ok();
}

/// A quantised LeNet-5 trained one epoch on 32 images, saved with its momentum.
fn saved_lenet(dir: &Path) -> (PathBuf, Model, TrainConfig, DatasetInfo) {
    let (train_set, test) = small_mnist(32);
    let cfg = TrainConfig {
        epochs: 1,
        ..config(Mode::Quantized)
    };
    let path = dir.join("lenet.safetensors");
    let info = DatasetInfo::of("mnist", &train_set);
    let mut saver = Checkpointer::new((), &path, None, info.clone());
    let (model, _) = train(
        &cfg,
        &ModelSpec::lenet5(cfg.lenet),
        &train_set,
        &test,
        &mut saver,
    )
    .unwrap();
    (path, model, cfg, info)
}

#[test]
fn a_saved_and_reloaded_model_predicts_identically() {
    let dir = temp_dir("reload");
    let (path, model, _, _) = saved_lenet(&dir);
    let loaded = SavedModel::load(&path).unwrap();
    assert_eq!(loaded.model(), &model);
    let test = mnist().test.take(16, "test").unwrap();
    let idx: Vec<usize> = (0..test.len()).collect();
    let x = model.input(&test, &idx);
    assert_eq!(
        loaded.model().predict_proba(x.view()),
        model.predict_proba(x.view())
    );
    // The safetensors layout: PyTorch's names and shapes.
    let shapes = loaded.tensor_shapes();
    assert_eq!(shapes[0], ("layers.0.weight".to_string(), vec![6, 1, 5, 5]));
    assert!(shapes.contains(&("layers.7.weight".to_string(), vec![120, 400])));

    // A dense model on standardised features: the encoding's f64 parameters come back exactly.
    let split = load_named("breast-cancer", &cryptonn::nn::data::default_data_dir()).unwrap();
    let (train_set, test) = (split.train, split.test);
    let spec = ModelSpec::builtin("mlp", train_set.shape(), train_set.classes()).unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::recommended("mlp", "breast-cancer")
    };
    let info = DatasetInfo::of("breast-cancer", &train_set);
    let path = dir.join("mlp.safetensors");
    let mut saver = Checkpointer::new((), &path, None, info.clone());
    let (model, _) = train(&cfg, &spec, &train_set, &test, &mut saver).unwrap();
    let loaded = SavedModel::load(&path).unwrap();
    assert_eq!(loaded.dataset(), &info);
    let idx: Vec<usize> = (0..test.len()).collect();
    let x = model.input(&test, &idx);
    assert_eq!(
        loaded.model().predict_proba(x.view()),
        model.predict_proba(x.view())
    );
    loaded
        .check_dataset(&DatasetInfo::of("test", &test))
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn secure_prediction_from_a_saved_model_equals_the_in_memory_model() {
    let dir = temp_dir("predict");
    let (path, model, cfg, _) = saved_lenet(&dir);
    let loaded = SavedModel::load(&path).unwrap().into_model();
    let authority = Arc::new(Mutex::new(Authority::from_seed(Ristretto255, [3; 32])));
    let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 16).unwrap());
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, 1);
    let predictor = |m: Model| {
        let keys = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("server"));
        SecurePredictor::new(m, cfg.quant, params, keys, Arc::clone(&table)).unwrap()
    };
    let (mut from_file, mut in_memory) = (predictor(loaded), predictor(model));
    let test = mnist().test.take(2, "test").unwrap();
    for i in 0..test.len() {
        let query = |seed: u64| {
            let mut a = authority.lock().unwrap();
            let access = DomainAccess::new(RequesterId::new("client"), RequesterId::new("server"));
            let domain = open_query_domain(&mut a, &params, access).unwrap();
            let pk = a.public_key(domain).unwrap();
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            EncryptedQuery::encrypt(&Ristretto255, &pk, &params, test.image(i), &mut rng).unwrap()
        };
        let got = from_file.predict(&query(2 * i as u64)).unwrap();
        let want = in_memory.predict(&query(2 * i as u64 + 1)).unwrap();
        assert_eq!(got.probabilities, want.probabilities, "image {i}");
        assert_eq!(got.class, want.class);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The header of a safetensors file as JSON, edited, re-framed.
fn reframe(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

fn load_bytes(bytes: &[u8]) -> SavedModelError {
    SavedModel::from_bytes(bytes, Path::new("model.safetensors")).unwrap_err()
}

#[test]
fn bad_files_are_typed_errors() {
    let dir = temp_dir("bad");
    // What a crash during an earlier save left behind (removed by the next save).
    std::fs::write(dir.join(".lenet.safetensors.999.0.tmp"), b"half a model").unwrap();
    let (path, _, _, _) = saved_lenet(&dir);
    let good = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    SavedModel::from_bytes(&good, &path).unwrap();

    // Truncated anywhere: in the length, in the header, in the tensor data, by one byte.
    for cut in [
        0,
        5,
        8,
        8 + header_len / 2,
        8 + header_len + 100,
        good.len() - 1,
    ] {
        let e = load_bytes(&good[..cut]);
        assert!(
            matches!(e, SavedModelError::Truncated { .. }),
            "cut at {cut}: {e}"
        );
    }
    // Not safetensors: a model TOML, random bytes, trailing bytes.
    let toml = b"name = \"tiny\"\nclasses = 2\ninput = { flat = 30 }\n".to_vec();
    let mut noise = vec![0u8; 4096];
    rand_core::RngCore::fill_bytes(&mut ChaCha20Rng::seed_from_u64(1), &mut noise);
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    for (what, bytes) in [("toml", toml), ("noise", noise), ("trailing", trailing)] {
        let e = load_bytes(&bytes);
        assert!(
            matches!(e, SavedModelError::NotSafetensors { .. }),
            "{what}: {e}"
        );
    }
    // A weight or a momentum value flipped: the hashes catch it.
    let flip = |offset: usize| {
        let mut b = good.clone();
        b[8 + header_len + offset] ^= 0x01;
        b
    };
    let header: serde_json::Value = serde_json::from_slice(&good[8..8 + header_len]).unwrap();
    let offset_of = |name: &str| header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    match load_bytes(&flip(offset_of("layers.0.weight") + 4)) {
        SavedModelError::HashMismatch { what, .. } => assert_eq!(what, "weights"),
        e => panic!("tampered weight: {e}"),
    }
    match load_bytes(&flip(
        offset_of("optimizer.momentum_buffer.layers.0.weight") + 4,
    )) {
        SavedModelError::HashMismatch { what, .. } => assert_eq!(what, "state"),
        e => panic!("tampered momentum: {e}"),
    }
    // Tampered metadata.
    let meta = |key: &str, value: &str| {
        let (key, value) = (key.to_string(), value.to_string());
        reframe(&good, move |h| {
            h["__metadata__"][key] = serde_json::Value::String(value);
        })
    };
    match load_bytes(&meta("created_by", "someone else")) {
        SavedModelError::HashMismatch { what, .. } => assert_eq!(what, "state"),
        e => panic!("tampered metadata: {e}"),
    }
    let weights = header["__metadata__"]["weights_sha256"].as_str().unwrap();
    let other = format!(
        "{}{}",
        if weights.starts_with('0') { "1" } else { "0" },
        &weights[1..]
    );
    assert!(matches!(
        load_bytes(&meta("weights_sha256", &other)),
        SavedModelError::HashMismatch {
            what: "weights",
            ..
        }
    ));
    assert!(matches!(
        load_bytes(&meta("fixed_point", "{\"scale_x\": 1}")),
        SavedModelError::BadMetadata {
            key: "fixed_point",
            ..
        }
    ));
    assert!(matches!(
        load_bytes(&meta("epoch", "7")),
        SavedModelError::BadMetadata { key: "epoch", .. }
    ));
    assert!(matches!(
        load_bytes(&meta("model_spec", "{\"name\": \"x\"}")),
        SavedModelError::Spec { .. }
    ));
    assert!(matches!(
        load_bytes(&meta("format_version", "99")),
        SavedModelError::NotAModel { .. }
    ));
    let no_spec = reframe(&good, |h| {
        h["__metadata__"]
            .as_object_mut()
            .unwrap()
            .remove("model_spec");
    });
    assert!(matches!(
        load_bytes(&no_spec),
        SavedModelError::MissingMetadata {
            key: "model_spec",
            ..
        }
    ));
    let foreign = reframe(&good, |h| {
        h.as_object_mut().unwrap().remove("__metadata__");
    });
    assert!(matches!(
        load_bytes(&foreign),
        SavedModelError::NotAModel { .. }
    ));
    // Tensors that do not fit the spec: a transposed shape, a renamed and a wrong-dtype one.
    let transposed = reframe(&good, |h| {
        h["layers.7.weight"]["shape"] = serde_json::json!([400, 120]);
    });
    assert!(matches!(
        load_bytes(&transposed),
        SavedModelError::BadTensor { ref name, .. } if name == "layers.7.weight"
    ));
    let renamed = reframe(&good, |h| {
        let obj = h.as_object_mut().unwrap();
        let t = obj.remove("layers.11.bias").unwrap();
        obj.insert("layers.12.bias".into(), t);
    });
    assert!(matches!(
        load_bytes(&renamed),
        SavedModelError::UnexpectedTensor { .. } | SavedModelError::MissingTensor { .. }
    ));
    let int = reframe(&good, |h| {
        h["layers.11.bias"]["dtype"] = serde_json::json!("I32");
    });
    assert!(matches!(
        load_bytes(&int),
        SavedModelError::BadTensor { .. }
    ));
    // A missing file.
    assert!(matches!(
        SavedModel::load(&dir.join("absent.safetensors")).unwrap_err(),
        SavedModelError::Io { .. }
    ));
    // Atomic saves leave no temporary file behind, and sweep those of crashed saves.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mismatched_resumes_and_datasets_are_refused() {
    let dir = temp_dir("mismatch");
    let (path, _, cfg, info) = saved_lenet(&dir);
    let spec = ModelSpec::lenet5(cfg.lenet);
    let load = || SavedModel::load(&path).unwrap();
    let refused = |cfg: &TrainConfig, spec: &ModelSpec, info: &DatasetInfo| {
        load().resume(cfg, spec, info).unwrap_err()
    };
    // The same run resumes (nothing left to do after its last epoch, but no error).
    load().resume(&cfg, &spec, &info).unwrap();
    let mut scales = cfg;
    scales.quant.scale_w *= 2.0;
    match refused(&scales, &spec, &info) {
        SavedModelError::ResumeMismatch { what, .. } => assert_eq!(what, "fixed-point scales"),
        e => panic!("{e}"),
    }
    let other = ModelSpec::builtin("mlp", info.input, info.classes).unwrap();
    match refused(&cfg, &other, &info) {
        SavedModelError::ResumeMismatch { what, .. } => assert_eq!(what, "model"),
        e => panic!("{e}"),
    }
    let seed = TrainConfig { seed: 2, ..cfg };
    assert!(matches!(
        refused(&seed, &spec, &info),
        SavedModelError::ResumeMismatch { what: "seed", .. }
    ));
    let plain = TrainConfig {
        mode: Mode::Plain,
        ..cfg
    };
    assert!(matches!(
        refused(&plain, &spec, &info),
        SavedModelError::ResumeMismatch { what: "mode", .. }
    ));
    let bigger = DatasetInfo {
        train_size: info.train_size + 1,
        ..info.clone()
    };
    assert!(matches!(
        refused(&cfg, &spec, &bigger),
        SavedModelError::DatasetMismatch { .. }
    ));
    // A model whose spec does not match the dataset.
    let digits = load_named("digits", &cryptonn::nn::data::default_data_dir()).unwrap();
    let e = load()
        .check_dataset(&DatasetInfo::of("digits", &digits.train))
        .unwrap_err();
    assert!(
        matches!(
            e,
            SavedModelError::DatasetMismatch {
                what: "input shape",
                ..
            }
        ),
        "{e}"
    );
    // Secure mode may continue a quantised checkpoint (bit-identical arithmetic).
    let secure = TrainConfig {
        mode: Mode::Secure,
        ..cfg
    };
    load().resume(&secure, &spec, &info).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
