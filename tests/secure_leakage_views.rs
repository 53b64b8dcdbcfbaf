//! What the server can rebuild of a shard from the keys it receives in a secure run
//! ([`shard_leakage`] over a [`RecordingKeyService`]'s record), on small MNIST slices built
//! through [`SecureTrainingSession`]:
//! - LeNet-5: one forward request (1,176 pooled conv1 outputs) has rank 784 and determines
//!   every pixel of every sample of the shard;
//! - a dense 784 → 4 first layer: the forward keys have rank 4 of 784 (almost nothing exact),
//!   the feature-major gradient keys rank at most 4 of the shard's 8 slots;
//! - the built-in `mlp` (784 → 128): its forward keys have rank 128, but its 128 feature-major
//!   gradient keys over 8 slots determine every input of the shard exactly.
//!
//! Each run also checks one real decryption per view against the computed observations.

use std::sync::OnceLock;

use cryptonn::coordinator::secure_training::{
    shard_leakage, DatasetSamples, EncryptionParams, FirstLayerGeometry, RecordingKeyService,
    SecureTrainingSession, ShardLeakage,
};
use cryptonn::fe::dlog::DlogSolver;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{Dataset, LabelPermutation, Mnist};
use cryptonn::nn::first_layer::FirstLayerSpec;
use cryptonn::nn::model::{LayerSpec, Model, ModelSpec};
use cryptonn::nn::train::{train_with_backend, BatchSchedule, Mode, TrainConfig};

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

/// One epoch of secure training of `spec` on `data` in shards of `shard`, recording every key;
/// then what the server can rebuild of shard 0.
fn views(spec: &ModelSpec, data: &Dataset, shard: usize) -> ShardLeakage {
    let (first, _) = spec.first_layer().expect("first layer");
    let cfg = TrainConfig {
        mode: Mode::Secure,
        epochs: 1,
        batch_size: shard,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::recommended(&spec.name, "mnist")
    };
    let labels = LabelPermutation::from_seed(cfg.seed, data.classes());
    let dir = std::env::temp_dir().join(format!(
        "cryptonn-views-{}-{}",
        std::process::id(),
        spec.name
    ));
    let session = SecureTrainingSession::new(Ristretto255, &dir).dlog_half_width(1 << 16);
    let samples = DatasetSamples::new(data, &labels, cfg.quant.scale_x).expect("samples");
    let dense = matches!(first, FirstLayerSpec::Linear { .. });
    let params = EncryptionParams::new(&cfg.quant, Default::default(), shard)
        .with_layout(samples.layout(dense).expect("layout"));
    let local = session.local_authority().expect("authority");
    let input = session
        .encrypt(&local.authority, &spec.name, &samples, &params, &|_| {})
        .expect("encrypt");
    let table = session.dlog_table().expect("table");
    let mut backend = session
        .server(
            RecordingKeyService::new(session.in_process_keys(&local.authority)),
            &input.path,
            table.clone(),
            cfg.quant,
            FirstLayerGeometry::from_spec(&first).expect("geometry"),
        )
        .expect("server");
    let model = Model::new(spec, cfg.seed).expect("model");
    train_with_backend(&cfg, model, &mut backend, data, &labels, &mut ()).expect("training");
    let dlog = DlogSolver::new(table, 2 * cfg.quant.gradient_bound).expect("dlog");
    let requests = backend.key_service().requests();
    // Forward FEIP + gradient FEIP per step (FEBO requests are not FEIP keys).
    assert_eq!(requests.len(), 2 * data.len().div_ceil(shard));
    let l = shard_leakage(
        backend.dataset(),
        backend.geometry(),
        &requests,
        0,
        &samples,
        &dlog,
    )
    .expect("leakage");
    std::fs::remove_dir_all(&dir).ok();
    let mut authority_dir = dir.into_os_string();
    authority_dir.push("-authority");
    std::fs::remove_dir_all(authority_dir).ok();
    assert_eq!(l.decryptions_checked, 2, "one real decryption per view");
    assert_eq!(l.samples, shard);
    assert_eq!(l.features, 784);
    l
}

#[test]
fn lenet5_one_forward_pass_determines_the_shard() {
    let data = mnist().train.take(4, "training").expect("subset");
    let spec = ModelSpec::builtin("lenet5", data.shape(), data.classes()).expect("spec");
    let l = views(&spec, &data, 4);
    let f = &l.forward_one_step;
    assert_eq!(f.keys_issued, 6 * 14 * 14);
    assert_eq!((f.rank, f.rank_of), (784, 784));
    assert_eq!(f.exact_fraction, 1.0);
    assert!(f.relative_error < 1e-9, "{f:?}");
    // The per-sample gradient keys of the 4 samples: 4 x 6 x 25.
    assert!(l.gradient_one_step.keys_issued <= 4 * 150);
    assert_eq!(l.whole_run.exact_fraction, 1.0);
    assert_eq!(
        l.whole_run.keys_issued,
        f.keys_issued + l.gradient_one_step.keys_issued
    );
}

#[test]
fn dense_layer_views_are_rank_limited_by_outputs_and_slots() {
    let data = mnist().train.take(8, "training").expect("subset");
    let mut spec = ModelSpec::builtin("mlp", data.shape(), data.classes()).expect("spec");
    spec.name = "narrow".into();
    spec.layers[0] = LayerSpec::Linear {
        inputs: 784,
        outputs: 4,
    };
    spec.layers[2] = LayerSpec::Linear {
        inputs: 4,
        outputs: 10,
    };
    let l = views(&spec, &data, 8);
    let f = &l.forward_one_step;
    assert_eq!((f.keys_issued, f.rank, f.rank_of), (4, 4, 784));
    assert!(f.exact_fraction < 0.01, "{f:?}");
    assert!(f.relative_error > 0.1, "{f:?}");
    let g = &l.gradient_one_step;
    assert_eq!(g.rank_of, 8, "feature-major: rank over the shard's slots");
    assert!(g.keys_issued <= 4 && g.rank <= g.keys_issued, "{g:?}");
    assert!(g.exact_fraction < 1.0, "{g:?}");
    // The union can only add to each view.
    assert!(l.whole_run.exact_fraction >= f.exact_fraction.max(g.exact_fraction));
    assert!(l.whole_run.exact_fraction < 1.0);
}

#[test]
fn mlp_gradient_keys_determine_the_shard() {
    let data = mnist().train.take(8, "training").expect("subset");
    let spec = ModelSpec::builtin("mlp", data.shape(), data.classes()).expect("spec");
    let l = views(&spec, &data, 8);
    let f = &l.forward_one_step;
    assert_eq!((f.keys_issued, f.rank, f.rank_of), (128, 128, 784));
    assert!(f.exact_fraction < 0.5, "{f:?}");
    let g = &l.gradient_one_step;
    assert_eq!((g.rank, g.rank_of), (8, 8), "{g:?}");
    assert_eq!(g.exact_fraction, 1.0);
    assert!(g.relative_error < 1e-9, "{g:?}");
    assert_eq!(l.whole_run.exact_fraction, 1.0);
}
