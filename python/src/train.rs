//! `train(...)`: keyword arguments -> a `TrainConfig`, the library's dataset and model
//! resolution (`load_named_subsets`, `ModelSpec::resolve`), one call of
//! `cryptonn::nn::train::train` or `train_secure_in_process`, and the library's
//! `run_summary` -> the JSON `examples/train.rs --json` writes.

use std::path::PathBuf;

use cryptonn::coordinator::secure_training::{
    run_summary, train_secure_in_process, InProcessOptions,
};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{load_named_subsets, LabelPermutation};
use cryptonn::nn::datasets::resolve_data_dir;
use cryptonn::nn::error::NnError;
use cryptonn::nn::model::ModelSpec;
use cryptonn::nn::optim::{LrSchedule, SgdConfig};
use cryptonn::nn::train::{
    train, BatchProgress, BatchSchedule, EpochStats, Mode, TrainConfig, TrainObserver,
};
use pyo3::prelude::*;

use crate::{detached, nn_err, raise};

/// Forwards progress to a Python callable `progress(event: dict)`; the first exception it
/// raises is kept and re-raised when training ends.
struct Progress {
    callback: Option<Py<PyAny>>,
    error: Option<PyErr>,
}

impl Progress {
    fn send(
        &mut self,
        build: impl FnOnce(Python<'_>, &Bound<'_, pyo3::types::PyDict>) -> PyResult<()>,
    ) {
        let Some(callback) = &self.callback else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        let result = Python::attach(|py| {
            let event = pyo3::types::PyDict::new(py);
            build(py, &event)?;
            callback.call1(py, (event,)).map(|_| ())
        });
        if let Err(e) = result {
            self.error = Some(e);
        }
    }
}

impl TrainObserver for Progress {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, images: usize) {
        self.send(|_, d| {
            d.set_item("event", "epoch_started")?;
            d.set_item("epoch", epoch)?;
            d.set_item("epochs", epochs)?;
            d.set_item("images", images)
        });
    }
    fn batch_finished(&mut self, p: &BatchProgress) {
        self.send(|_, d| {
            d.set_item("event", "batch_finished")?;
            d.set_item("epoch", p.epoch)?;
            d.set_item("images_done", p.images_done)?;
            d.set_item("images_total", p.images_total)?;
            d.set_item("loss", p.mean_loss)?;
            d.set_item("accuracy", p.accuracy)
        });
    }
    fn epoch_finished(&mut self, s: &EpochStats) {
        let json = serde_json::to_string(s).unwrap_or_default();
        self.send(|_, d| {
            d.set_item("event", "epoch_finished")?;
            d.set_item("stats_json", json)
        });
    }
}

fn invalid(message: String) -> PyErr {
    raise("InvalidInputError", message)
}

/// Trains `model` (a built-in name or a model file; or, with `model_json`, that spec) on
/// `dataset` and returns the run summary as JSON (the keys of `examples/train.rs --json`).
/// Defaults are those of the example.
#[pyfunction]
#[pyo3(signature = (model, model_json, dataset, mode, train_size, test_size, epochs, batch_size,
                    seed, lr, momentum, lr_schedule, chunk_size, threads, data_dir, group,
                    cache_dir, dlog_half_width, reencrypt, progress))]
#[allow(clippy::too_many_arguments)]
pub fn _train(
    py: Python<'_>,
    model: &str,
    model_json: Option<String>,
    dataset: &str,
    mode: &str,
    train_size: Option<usize>,
    test_size: usize,
    epochs: usize,
    batch_size: Option<usize>,
    seed: u64,
    lr: Option<f32>,
    momentum: Option<f32>,
    lr_schedule: &str,
    chunk_size: Option<usize>,
    threads: usize,
    data_dir: Option<PathBuf>,
    group: &str,
    cache_dir: Option<PathBuf>,
    dlog_half_width: u64,
    reencrypt: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let mode = match mode {
        "plain" => Mode::Plain,
        "quantized" => Mode::Quantized,
        "secure" => Mode::Secure,
        other => {
            return Err(invalid(format!(
                "unknown mode {other:?}: \"plain\", \"quantized\" or \"secure\""
            )))
        }
    };
    let defaults = TrainConfig::default();
    let sgd = SgdConfig {
        lr: lr.unwrap_or(defaults.sgd.lr),
        momentum: momentum.unwrap_or(defaults.sgd.momentum),
        schedule: match lr_schedule {
            "cosine" => LrSchedule::Cosine,
            "constant" => LrSchedule::Constant,
            other => {
                return Err(invalid(format!(
                    "unknown lr_schedule {other:?}: \"cosine\" or \"constant\""
                )))
            }
        },
    };
    let cfg = TrainConfig {
        mode,
        epochs,
        seed,
        batch_size: batch_size.unwrap_or(defaults.batch_size),
        chunk_size: chunk_size.unwrap_or(defaults.chunk_size),
        sgd,
        // As the example: shuffled batches in float, fixed shards (one key domain each)
        // otherwise.
        schedule: if mode == Mode::Plain {
            BatchSchedule::Shuffled
        } else {
            BatchSchedule::FixedShards
        },
        ..defaults
    };
    // As the example (`TrainOptions::train_size`): MNIST defaults to 2,048 training images in
    // secure mode and 10,000 otherwise; the other datasets to their whole training split.
    let train_size = match (dataset, train_size) {
        ("mnist", None) => Some(if mode == Mode::Secure { 2048 } else { 10_000 }),
        (_, n) => n,
    };
    let group = crate::Group::parse(group)?;
    let model = model.to_owned();
    let dataset = dataset.to_owned();
    let encrypt_callback = progress
        .as_ref()
        .map(|cb| Python::attach(|py| cb.clone_ref(py)));
    let mut observer = Progress {
        callback: progress,
        error: None,
    };
    let json = detached(py, || {
        let dir = resolve_data_dir(data_dir.as_deref()).map_err(|e| nn_err(e.into()))?;
        let split = load_named_subsets(&dataset, &dir, train_size, test_size)
            .map_err(|e| nn_err(e.into()))?;
        let (train_set, test_set) = (split.train, split.test);
        let spec = match &model_json {
            Some(json) => ModelSpec::from_json_str(json),
            None => ModelSpec::resolve(&model, train_set.shape(), train_set.classes()),
        }
        .map_err(nn_err)?;
        let mut run = || -> Result<serde_json::Map<String, serde_json::Value>, NnError> {
            let summary = |report, secure| {
                run_summary(report, secure, &spec.name, &dataset)
                    .map_err(|e| NnError::InvalidConfig(format!("summary: {e}")))
            };
            if mode != Mode::Secure {
                let report = train(&cfg, &spec, &train_set, &test_set, &mut observer)?.1;
                return summary(&report, None);
            }
            // The data owner's label permutation: the one quantised training draws from the
            // seed, so that secure and quantised weights are bit-identical.
            let labels = LabelPermutation::from_seed(cfg.seed, spec.classes);
            let cache = cache_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("cryptonn-cache"));
            let options = InProcessOptions {
                cache_dir: &cache,
                dlog_half_width,
                reencrypt,
            };
            let encrypting = |done: usize| {
                if let Some(cb) = &encrypt_callback {
                    Python::attach(|py| {
                        let event = pyo3::types::PyDict::new(py);
                        let _ = event.set_item("event", "encrypting");
                        let _ = event.set_item("images_done", done);
                        let _ = cb.call1(py, (event,));
                    });
                }
            };
            let (_, run) = match &group {
                crate::Group::Ristretto => train_secure_in_process(
                    Ristretto255,
                    &cfg,
                    &spec,
                    &dataset,
                    &train_set,
                    &test_set,
                    &labels,
                    &options,
                    &encrypting,
                    &mut observer,
                ),
                crate::Group::Modp(g) => train_secure_in_process(
                    g.clone(),
                    &cfg,
                    &spec,
                    &dataset,
                    &train_set,
                    &test_set,
                    &labels,
                    &options,
                    &encrypting,
                    &mut observer,
                ),
            }?;
            summary(&run.report, Some(&run.secure))
        };
        let summary = if threads == 0 {
            run()
        } else {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| invalid(format!("threads: {e}")))?
                .install(run)
        }
        .map_err(nn_err)?;
        serde_json::to_string(&summary).map_err(|e| raise("CryptonnError", e.to_string()))
    })?;
    if let Some(e) = observer.error {
        return Err(e);
    }
    Ok(json)
}
