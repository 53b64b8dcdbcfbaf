//! `train(...)`: keyword arguments -> a `TrainConfig`, one call of `cryptonn::nn::train::train`,
//! the `TrainReport` -> the JSON `train_lenet --json` writes.

use std::path::{Path, PathBuf};

use cryptonn::coordinator::secure_training::{train_secure_in_process, InProcessOptions};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{LabelPermutation, Mnist};
use cryptonn::nn::datasets::resolve_data_dir;
use cryptonn::nn::error::NnError;
use cryptonn::nn::model::ModelSpec;
use cryptonn::nn::optim::{LrSchedule, SgdConfig};
use cryptonn::nn::train::{
    train, BatchProgress, BatchSchedule, EpochStats, Mode, TrainConfig, TrainObserver, TrainReport,
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

/// Trains `model` on `dataset` and returns the run summary as JSON (the keys of
/// `train_lenet --json`). Defaults are those of `train_lenet`.
#[pyfunction]
#[pyo3(signature = (model, dataset, mode, train_size, test_size, epochs, batch_size, seed, lr,
                    momentum, lr_schedule, chunk_size, threads, data_dir, group, cache_dir,
                    dlog_half_width, reencrypt, progress))]
#[allow(clippy::too_many_arguments)]
pub fn _train(
    py: Python<'_>,
    model: &str,
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
    if dataset != "mnist" {
        return Err(invalid(format!(
            "unknown dataset {dataset:?}: this build trains on \"mnist\""
        )));
    }
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
        // As train_lenet: shuffled batches in float, fixed shards (one key domain each)
        // otherwise.
        schedule: if mode == Mode::Plain {
            BatchSchedule::Shuffled
        } else {
            BatchSchedule::FixedShards
        },
        ..defaults
    };
    let train_size = train_size.unwrap_or(if mode == Mode::Secure { 2048 } else { 10_000 });
    let group = crate::Group::parse(group)?;
    if mode == Mode::Secure && model != "lenet5" {
        return Err(invalid(format!(
            "secure mode trains \"lenet5\" in this build, not {model:?}"
        )));
    }
    let model = model.to_owned();
    let encrypt_callback = progress
        .as_ref()
        .map(|cb| Python::attach(|py| cb.clone_ref(py)));
    let mut observer = Progress {
        callback: progress,
        error: None,
    };
    let json = detached(py, || {
        let dir = resolve_data_dir(data_dir.as_deref()).map_err(|e| nn_err(e.into()))?;
        let spec = model_spec(&model, &cfg)?;
        let mnist = Mnist::load(&dir).map_err(|e| nn_err(e.into()))?;
        let train_set = mnist
            .train
            .take(train_size, "training")
            .map_err(|e| nn_err(e.into()))?;
        let test_set = mnist
            .test
            .take(test_size, "test")
            .map_err(|e| nn_err(e.into()))?;
        let mut extra = serde_json::Map::new();
        let mut run = || -> Result<TrainReport, NnError> {
            if mode != Mode::Secure {
                return Ok(train(&cfg, &spec, &train_set, &test_set, &mut observer)?.1);
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
            let summary = match &group {
                crate::Group::Ristretto => train_secure_in_process(
                    Ristretto255,
                    &cfg,
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
                    &train_set,
                    &test_set,
                    &labels,
                    &options,
                    &encrypting,
                    &mut observer,
                ),
            }?
            .1;
            let s = summary.stats;
            let group_name = match &group {
                crate::Group::Ristretto => "ristretto255",
                crate::Group::Modp(g) => crate::group_name(g),
            };
            // The keys train_lenet adds in secure mode.
            for (k, v) in [
                ("group", serde_json::json!(group_name)),
                (
                    "encrypt_seconds",
                    serde_json::json!(summary.encrypt_seconds),
                ),
                (
                    "encrypted_dataset_reused",
                    serde_json::json!(summary.reused),
                ),
                (
                    "ciphertext_bytes",
                    serde_json::json!(summary.ciphertext_bytes),
                ),
                ("key_requests", serde_json::json!(s.key_requests)),
                ("feip_keys", serde_json::json!(s.feip_keys)),
                ("febo_keys", serde_json::json!(s.febo_keys)),
                ("decryptions", serde_json::json!(s.decryptions)),
                ("dlog_seconds", serde_json::json!(s.dlog_seconds)),
                ("fe_seconds", serde_json::json!(s.fe_seconds)),
                ("key_seconds", serde_json::json!(s.key_seconds)),
                (
                    "authority_setup_seconds",
                    serde_json::json!(summary.setup_seconds),
                ),
                ("audit_records", serde_json::json!(summary.audit_records)),
                ("audit_file", serde_json::json!("(in memory)")),
            ] {
                extra.insert(k.to_string(), v);
            }
            Ok(summary.report)
        };
        let report = if threads == 0 {
            run()
        } else {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| invalid(format!("threads: {e}")))?
                .install(run)
        }
        .map_err(nn_err)?;
        let mut value =
            serde_json::to_value(&report).map_err(|e| raise("CryptonnError", e.to_string()))?;
        if let Some(obj) = value.as_object_mut() {
            obj.extend(extra);
        }
        serde_json::to_string(&value).map_err(|e| raise("CryptonnError", e.to_string()))
    })?;
    if let Some(e) = observer.error {
        return Err(e);
    }
    Ok(json)
}

/// A built-in model by name, or a model file (TOML or JSON).
fn model_spec(name: &str, cfg: &TrainConfig) -> PyResult<ModelSpec> {
    if name == "lenet5" {
        return Ok(ModelSpec::lenet5(cfg.lenet));
    }
    let path = Path::new(name);
    if path.extension().is_some() {
        return ModelSpec::from_file(path).map_err(nn_err);
    }
    ModelSpec::builtin(
        name,
        cryptonn::nn::data::InputShape::Image {
            channels: 1,
            height: 28,
            width: 28,
        },
        10,
    )
    .map_err(nn_err)
}
