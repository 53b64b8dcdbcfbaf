//! Training runs on small MNIST subsets: determinism across thread counts, the quantised mode
//! against the plain one, learning, and errors.

use std::sync::OnceLock;

use cryptonn::nn::data::{Dataset, InputShape, LabelPermutation, Mnist};
use cryptonn::nn::first_layer::{
    FirstLayerBackend, FirstLayerSpec, QuantConfig, QuantizedFirstLayer,
};
use cryptonn::nn::lenet::{LayerOrder, LeNet5, LeNetConfig};
use cryptonn::nn::model::{LayerSpec, ModelSpec};
use cryptonn::nn::optim::{LrSchedule, SgdConfig};
use cryptonn::nn::train::{train, train_with_backend, Mode, TrainConfig, TrainReport};
use cryptonn::nn::NnError;
use ndarray::{Array2, ArrayView2};

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

fn subset(train_n: usize, test_n: usize) -> (Dataset, Dataset) {
    let m = mnist();
    (
        m.train.take(train_n, "training").expect("subset"),
        m.test.take(test_n, "test").expect("subset"),
    )
}

fn run_in_pool(
    threads: usize,
    cfg: &TrainConfig,
    tr: &Dataset,
    te: &Dataset,
) -> (LeNet5, TrainReport) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| {
        train(cfg, &ModelSpec::lenet5(cfg.lenet), tr, te, &mut ()).expect("training run")
    })
}

#[test]
fn same_seed_gives_identical_weights_for_any_thread_count() {
    let (tr, te) = subset(480, 100);
    for mode in [Mode::Plain, Mode::Quantized] {
        let cfg = TrainConfig {
            mode,
            epochs: 1,
            ..TrainConfig::default()
        };
        let (a, ra) = run_in_pool(1, &cfg, &tr, &te);
        let (b, rb) = run_in_pool(3, &cfg, &tr, &te);
        assert_eq!(ra.threads, 1);
        assert_eq!(rb.threads, 3);
        assert_eq!(a.parameter_bytes(), b.parameter_bytes(), "{mode}");
        assert_eq!(ra.weights_sha256, rb.weights_sha256);
        assert_eq!(ra.train_loss, rb.train_loss);
        assert_eq!(ra.test_accuracy, rb.test_accuracy);
        // ...and the weights did change from their initial values.
        assert_ne!(a, LeNet5::lenet5(cfg.lenet, cfg.seed));
    }
}

#[test]
fn quantized_with_huge_scales_matches_plain() {
    let (tr, te) = subset(320, 200);
    let plain_cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let quant_cfg = TrainConfig {
        mode: Mode::Quantized,
        quant: QuantConfig {
            scale_x: 80.0 * 4096.0, // xq = (p - 33) · 4096, exact
            scale_w: (1u64 << 20) as f64,
            scale_grad: (1u64 << 24) as f64,
            scale_p: (1u64 << 24) as f64,
            forward_bound: 1 << 53,
            gradient_bound: 1 << 62,
        },
        ..plain_cfg
    };
    let (p, rp) = train(
        &plain_cfg,
        &cryptonn::nn::model::ModelSpec::lenet5(plain_cfg.lenet),
        &tr,
        &te,
        &mut (),
    )
    .unwrap();
    let (q, rq) = train(
        &quant_cfg,
        &cryptonn::nn::model::ModelSpec::lenet5(quant_cfg.lenet),
        &tr,
        &te,
        &mut (),
    )
    .unwrap();
    let mut worst = 0.0f32;
    for ((name, a), (_, b)) in p.parameters().iter().zip(q.parameters().iter()) {
        for (x, y) in a.iter().zip(b.iter()) {
            worst = worst.max((x - y).abs());
        }
        assert_eq!(a.len(), b.len(), "{name}");
    }
    assert!(
        worst < 1e-3,
        "max |plain - quantized| parameter difference {worst}"
    );
    assert!((rp.train_loss[0] - rq.train_loss[0]).abs() < 1e-3);
    assert!((rp.test_accuracy[0] - rq.test_accuracy[0]).abs() <= 0.01);

    // With the default (coarse) scales the runs differ measurably but stay close.
    let coarse = TrainConfig {
        mode: Mode::Quantized,
        ..plain_cfg
    };
    let (c, _) = train(
        &coarse,
        &cryptonn::nn::model::ModelSpec::lenet5(coarse.lenet),
        &tr,
        &te,
        &mut (),
    )
    .unwrap();
    let coarse_worst = p.parameters()[0]
        .1
        .iter()
        .zip(c.parameters()[0].1)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(coarse_worst > worst, "{coarse_worst} vs {worst}");
}

#[test]
fn a_short_run_learns() {
    let (tr, te) = subset(3000, 1000);
    let cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let (_, r) = train(
        &cfg,
        &cryptonn::nn::model::ModelSpec::lenet5(cfg.lenet),
        &tr,
        &te,
        &mut (),
    )
    .unwrap();
    assert_eq!(r.test_accuracy.len(), 1);
    assert!(
        r.test_accuracy[0] > 0.85,
        "test accuracy {}",
        r.test_accuracy[0]
    );
    assert!(r.train_loss[0] < 1.0, "train loss {}", r.train_loss[0]);
    let modern = TrainConfig {
        lenet: LeNetConfig {
            order: LayerOrder::Modern,
            ..LeNetConfig::default()
        },
        ..cfg
    };
    let (_, r) = train(
        &modern,
        &cryptonn::nn::model::ModelSpec::lenet5(modern.lenet),
        &tr,
        &te,
        &mut (),
    )
    .unwrap();
    assert!(
        r.test_accuracy[0] > 0.85,
        "modern order: {}",
        r.test_accuracy[0]
    );
}

/// A backend that forwards to the quantised one and counts calls: the training loop reaches
/// the data only through the trait.
struct Counting<'a> {
    inner: QuantizedFirstLayer<'a>,
    calls: [usize; 3],
    corrupt_error: bool,
}

impl FirstLayerBackend for Counting<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn mode(&self) -> &'static str {
        "counting"
    }
    fn quant_config(&self) -> &QuantConfig {
        self.inner.quant_config()
    }
    fn spec(&self) -> &FirstLayerSpec {
        self.inner.spec()
    }
    fn classes(&self) -> usize {
        self.inner.classes()
    }
    fn forward(&mut self, b: &[usize], wq: ArrayView2<'_, i64>) -> Result<Array2<i64>, NnError> {
        self.calls[0] += 1;
        self.inner.forward(b, wq)
    }
    fn output_error(
        &mut self,
        b: &[usize],
        pq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        self.calls[1] += 1;
        let mut e = self.inner.output_error(b, pq)?;
        if self.corrupt_error {
            e[[0, 0]] += 1;
        }
        Ok(e)
    }
    fn weight_gradient(
        &mut self,
        b: &[usize],
        dq: ArrayView2<'_, i64>,
    ) -> Result<Array2<i64>, NnError> {
        self.calls[2] += 1;
        self.inner.weight_gradient(b, dq)
    }
}

#[test]
fn a_custom_backend_plugs_in_and_gives_the_quantized_weights() {
    let (tr, te) = subset(160, 50);
    let cfg = TrainConfig {
        mode: Mode::Quantized,
        epochs: 1,
        ..TrainConfig::default()
    };
    let (want, _) = train(
        &cfg,
        &cryptonn::nn::model::ModelSpec::lenet5(cfg.lenet),
        &tr,
        &te,
        &mut (),
    )
    .unwrap();
    let labels = LabelPermutation::from_seed(cfg.seed, cryptonn::nn::data::CLASSES);
    let mut backend = Counting {
        inner: QuantizedFirstLayer::new(
            &tr,
            labels.clone(),
            cfg.quant,
            cryptonn::nn::first_layer::FirstLayerSpec::lenet5(),
        )
        .unwrap(),
        calls: [0; 3],
        corrupt_error: false,
    };
    let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let (got, report) =
        train_with_backend(&cfg, model, &mut backend, &te, &labels, &mut ()).unwrap();
    assert_eq!(got, want);
    assert_eq!(report.mode, "counting");
    assert_eq!(backend.calls, [10, 10, 10]); // 160 / 16 batches

    backend.corrupt_error = true;
    let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let err = train_with_backend(&cfg, model, &mut backend, &te, &labels, &mut ()).unwrap_err();
    assert!(matches!(err, NnError::Backend(_)), "{err:?}");
}

#[test]
fn bad_configurations_are_errors() {
    let (tr, te) = subset(64, 16);
    // The first layer must be linear in the input (it runs over ciphertexts); the modern
    // order's conv1 (no pooling folded) is, a leading activation is not.
    let quant = TrainConfig {
        mode: Mode::Quantized,
        ..TrainConfig::default()
    };
    let mut spec = ModelSpec::lenet5(LeNetConfig::default());
    spec.layers.insert(0, LayerSpec::Relu);
    let err = train(&quant, &spec, &tr, &te, &mut ()).unwrap_err();
    assert!(matches!(err, NnError::Model { .. }), "{err:?}");
    assert!(err.to_string().contains("layer 0 (relu)"), "{err}");
    // A model for another input shape or class count is refused.
    let mlp = ModelSpec::builtin("mlp", InputShape::Flat(30), 2).unwrap();
    let err = train(&quant, &mlp, &tr, &te, &mut ()).unwrap_err();
    assert!(matches!(err, NnError::InvalidConfig(_)), "{err:?}");

    for sgd in [
        SgdConfig {
            lr: -1.0,
            ..SgdConfig::default()
        },
        SgdConfig {
            momentum: 1.0,
            ..SgdConfig::default()
        },
    ] {
        let cfg = TrainConfig {
            sgd,
            ..TrainConfig::default()
        };
        assert!(matches!(
            train(
                &cfg,
                &cryptonn::nn::model::ModelSpec::lenet5(cfg.lenet),
                &tr,
                &te,
                &mut ()
            ),
            Err(NnError::InvalidConfig(_))
        ));
    }
    let empty = tr.take(0, "training").unwrap();
    assert!(matches!(
        train(
            &TrainConfig::default(),
            &cryptonn::nn::model::ModelSpec::lenet5(Default::default()),
            &empty,
            &te,
            &mut ()
        ),
        Err(NnError::InvalidConfig(_))
    ));
}

#[test]
fn divergence_is_reported_not_hidden() {
    let (tr, te) = subset(256, 16);
    for mode in [Mode::Plain, Mode::Quantized] {
        let cfg = TrainConfig {
            mode,
            epochs: 1,
            sgd: SgdConfig {
                lr: 1e6,
                momentum: 0.9,
                schedule: LrSchedule::Constant,
            },
            ..TrainConfig::default()
        };
        let err = train(
            &cfg,
            &cryptonn::nn::model::ModelSpec::lenet5(cfg.lenet),
            &tr,
            &te,
            &mut (),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                NnError::NonFinite { .. }
                    | NnError::Encoding { .. }
                    | NnError::BoundExceeded { .. }
            ),
            "{mode}: {err:?}"
        );
    }
}
