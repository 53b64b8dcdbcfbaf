//! Secure training of every built-in model (`lenet5`, `mlp`, `cnn-small`) equals quantised
//! training bit for bit, step by step, on small MNIST slices: the generic secure first layer
//! (a folded conv + pool, a dense layer over feature-major ciphertexts, a 3x3 conv without
//! pooling) built through [`SecureTrainingSession`], on Ristretto255 and on the insecure test
//! group of Z_p*. Tens of samples each; the large runs are in `bench_report` and
//! `examples/train.rs`.

use std::sync::OnceLock;

use cryptonn::coordinator::secure_training::{
    DatasetSamples, EncryptionParams, FirstLayerGeometry, SecureTrainingSession,
};
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{Dataset, LabelPermutation, Mnist};
use cryptonn::nn::first_layer::{FirstLayerSpec, QuantizedFirstLayer};
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::optim::Sgd;
use cryptonn::nn::train::{backend_step, epoch_batches, BatchSchedule, Mode, TrainConfig};

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

/// Trains `model` with both backends on the same fixed shards of `data` and compares every
/// parameter after each step; returns the number of steps.
fn assert_identical<G: PrimeOrderGroup>(group: G, model: &str, data: &Dataset, shard: usize) {
    let spec = ModelSpec::builtin(model, data.shape(), data.classes()).expect("model");
    let (first, _) = spec.first_layer().expect("first layer");
    let cfg = TrainConfig {
        mode: Mode::Secure,
        epochs: 1,
        batch_size: shard,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    };
    let labels = LabelPermutation::from_seed(cfg.seed, data.classes());
    let dir = std::env::temp_dir().join(format!(
        "cryptonn-models-{}-{model}-{:?}",
        std::process::id(),
        group.id()
    ));
    let session = SecureTrainingSession::new(group, &dir).dlog_half_width(1 << 16);
    let samples = DatasetSamples::new(data, &labels, cfg.quant.scale_x).expect("samples");
    let dense = matches!(first, FirstLayerSpec::Linear { .. });
    let layout = samples.layout(dense).expect("layout");
    let params = EncryptionParams::new(&cfg.quant, Default::default(), shard).with_layout(layout);
    let local = session.local_authority().expect("authority");
    let input = session
        .encrypt(&local.authority, model, &samples, &params, &|_| {})
        .expect("encrypt");
    let mut secure = session
        .server(
            session.in_process_keys(&local.authority),
            &input.path,
            session.dlog_table().expect("table"),
            cfg.quant,
            FirstLayerGeometry::from_spec(&first).expect("geometry"),
        )
        .expect("server");
    let mut quantized =
        QuantizedFirstLayer::new(data, labels.clone(), cfg.quant, first).expect("quantized");
    let mut m_s = Model::new(&spec, cfg.seed).expect("model");
    let mut m_q = Model::new(&spec, cfg.seed).expect("model");
    let (mut sgd_s, mut sgd_q) = (Sgd::new(cfg.sgd), Sgd::new(cfg.sgd));
    let batches = epoch_batches(cfg.schedule, data.len(), shard, cfg.seed, 0);
    for (step, idx) in batches.iter().enumerate() {
        sgd_s.schedule(step, batches.len());
        sgd_q.schedule(step, batches.len());
        let out_s = backend_step(&mut m_s, &mut sgd_s, &cfg, &mut secure, idx).expect("secure");
        let out_q =
            backend_step(&mut m_q, &mut sgd_q, &cfg, &mut quantized, idx).expect("quantized");
        assert_eq!(out_s, out_q, "{model} step {step}: loss and accuracy");
        assert_eq!(
            m_s.parameter_bytes(),
            m_q.parameter_bytes(),
            "{model} step {step}: weights differ"
        );
    }
    assert_eq!(m_s.weights_sha256(), m_q.weights_sha256());
    assert!(batches.len() >= 2);
    // One FEIP request for the forward pass, one FEBO, one FEIP for the gradient per step.
    assert_eq!(secure.stats().key_requests, 3 * batches.len() as u64);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_builtin_model_is_exact_on_ristretto() {
    let data = mnist().train.take(8, "training").expect("subset");
    for model in ["lenet5", "mlp", "cnn-small"] {
        assert_identical(Ristretto255, model, &data, 4);
    }
}

#[test]
fn every_builtin_model_is_exact_on_the_zp_test_group() {
    let data = mnist().train.take(4, "training").expect("subset");
    for model in ["lenet5", "mlp", "cnn-small"] {
        assert_identical(ModpGroup::insecure_test_group(), model, &data, 2);
    }
}
