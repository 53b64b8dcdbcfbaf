//! Trained models and checkpoints on disk, in the [safetensors] format: save, verify, resume.
//!
//! # The file
//!
//! A saved model is a safetensors file (an 8-byte little-endian header length, a JSON header,
//! then the raw tensor bytes), readable by the `safetensors` packages of Python, PyTorch and
//! the Rust ecosystem. Its tensors are `float32`, named after the declared layer they belong
//! to (the index in [`ModelSpec::layers`]):
//!
//! | tensor | shape |
//! |---|---|
//! | `layers.{i}.weight` of a `linear {in, out}` | `[out, in]` |
//! | `layers.{i}.weight` of a `conv2d` | `[out_channels, in_channels, k, k]` (PyTorch's layout) |
//! | `layers.{i}.bias` | `[out]` / `[out_channels]` |
//! | `optimizer.momentum_buffer.layers.{i}.weight`, `….bias` | as the parameter (checkpoints with momentum only) |
//!
//! A first `conv2d` followed by an `avg_pool2d` whose kernel equals its stride is stored as the
//! convolution's weights; the pooling is a layer of the spec, as in PyTorch.
//!
//! Its metadata (the header's string map) holds:
//!
//! | key | value |
//! |---|---|
//! | `format`, `format_version` | `cryptonn.model`, `1` |
//! | `model_spec` | the declared model ([`ModelSpec`]), JSON |
//! | `train_config` | the run's [`TrainConfig`] (mode, seed, fixed-point scales, optimiser, schedule, batches), JSON |
//! | `seed`, `fixed_point` | the seed and the fixed-point scales ([`QuantConfig`]), for readers that do not parse `train_config` |
//! | `dataset` | the dataset's name, size, shape, classes and public input encoding ([`DatasetInfo`]), JSON |
//! | `epoch`, `step`, `total_steps` | epochs and SGD steps done, steps of the whole run |
//! | `rng` | the position of the run's random streams (ChaCha8, stream `shuffle(epoch)` of the seed) |
//! | `weights_sha256` | [`Model::weights_sha256`]: SHA-256 of the parameters as `f32` LE bytes in parameter order (the `weights_sha256` of the JSON summaries) |
//! | `state_sha256` | SHA-256 over every other metadata entry and every tensor (names, shapes, bytes) |
//!
//! # Guarantees
//!
//! - **Atomic.** [`SavedModel::save`] writes a new file next to the target (opened with
//!   `O_EXCL`), fsyncs it, renames it over the target and fsyncs the directory: a crash leaves
//!   the old file or the new one, never a half-written file under the target's name.
//! - **Verified.** [`SavedModel::load`] checks the container (truncation, trailing bytes), the
//!   metadata, the spec, every tensor's dtype and shape against the spec, no tensor missing or
//!   extra, both hashes, and finite values; each failure is its own [`SavedModelError`].
//! - **Exact resume.** A run's randomness is a function of the seed and the epoch (the shuffle
//!   of epoch `e` is stream `shuffle(e)`), its learning rate a function of the step, so the
//!   weights, the momentum buffers and the epoch are all the state a resumed run needs:
//!   [`SavedModel::resume`] gives a [`TrainStart`] that continues bit for bit, after checking
//!   that the run's model, scales, seed, optimiser, batches and dataset are the saved ones.
//!
//! # Example
//!
//! ```
//! use cryptonn::nn::data::Mnist;
//! use cryptonn::nn::model::ModelSpec;
//! use cryptonn::nn::saved_model::{Checkpointer, DatasetInfo, SavedModel};
//! use cryptonn::nn::train::{train, Mode, TrainConfig};
//!
//! let mnist = Mnist::load_default()?;
//! let (train_set, test_set) = (mnist.train.take(64, "training")?, mnist.test.take(32, "test")?);
//! let spec = ModelSpec::builtin("mlp", train_set.shape(), train_set.classes())?;
//! let cfg = TrainConfig { mode: Mode::Quantized, epochs: 1, ..TrainConfig::recommended("mlp", "mnist") };
//! let dir = std::env::temp_dir().join(format!("cryptonn-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("mlp.safetensors");
//! let mut saver = Checkpointer::new((), &path, None, DatasetInfo::of("mnist", &train_set));
//! let (model, report) = train(&cfg, &spec, &train_set, &test_set, &mut saver)?;
//! let saved = SavedModel::load(&path)?;
//! assert_eq!(saved.model(), &model);
//! assert_eq!(saved.weights_sha256(), report.weights_sha256);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::nn::data::{Dataset, InputEncoding, InputShape};
use crate::nn::error::NnError;
use crate::nn::first_layer::QuantConfig;
use crate::nn::model::{LayerSpec, Model, ModelSpec};
use crate::nn::train::{
    BatchProgress, EpochStats, Mode, TrainConfig, TrainObserver, TrainStart, TrainState,
};

/// The `format` metadata value.
pub const FORMAT: &str = "cryptonn.model";
/// The `format_version` this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Files larger than this are refused before they are read (a saved LeNet-5 is ~500 KB).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// The longest JSON header accepted.
const MAX_HEADER_BYTES: u64 = 100 << 20;
/// The prefix of the momentum buffers' tensor names.
pub const MOMENTUM_PREFIX: &str = "optimizer.momentum_buffer.";

/// Why a saved model could not be written, read, or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SavedModelError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file ends before the data its header announces (an interrupted copy or write).
    #[error("{path} is truncated: {reason}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The file is not a safetensors file.
    #[error("{path} is not a safetensors file: {reason}")]
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A safetensors file without cryptonn's metadata, or of another format version.
    #[error("{path} is not a cryptonn model file: {reason}")]
    NotAModel {
        /// The file.
        path: PathBuf,
        /// What is missing or different.
        reason: String,
    },
    /// A metadata entry is missing.
    #[error("{path}: metadata entry `{key}` is missing")]
    MissingMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
    },
    /// A metadata entry does not parse or contradicts another.
    #[error("{path}: metadata entry `{key}` is invalid: {reason}")]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// The saved model spec is not a valid model.
    #[error("{path}: the saved model spec is invalid: {source}")]
    Spec {
        /// The file.
        path: PathBuf,
        /// The spec's error.
        #[source]
        source: Box<NnError>,
    },
    /// A tensor the spec needs is missing.
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor the spec does not have.
    #[error("{path}: unexpected tensor `{name}` (not a parameter of the saved model)")]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor of the wrong dtype or shape, or with non-finite values.
    #[error("{path}: tensor `{name}`: {reason}")]
    BadTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A recorded hash does not match the content: the file was damaged or changed.
    #[error(
        "{path}: {what} SHA-256 mismatch (recorded {recorded}, computed {computed}): the file \
         was damaged or tampered with"
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// `"weights"` or `"state"`.
        what: &'static str,
        /// The hash in the metadata.
        recorded: String,
        /// The hash of the content.
        computed: String,
    },
    /// The saved model does not fit the dataset it is used with.
    #[error("the saved model's {what} is {saved}, the dataset's is {given}")]
    DatasetMismatch {
        /// Which property.
        what: &'static str,
        /// The saved value.
        saved: String,
        /// The dataset's value.
        given: String,
    },
    /// A resumed run differs from the saved one in something that would change its result.
    #[error(
        "cannot resume: the checkpoint's {what} is {saved}, this run's is {requested} (resume \
         with the options of the interrupted run)"
    )]
    ResumeMismatch {
        /// Which setting.
        what: &'static str,
        /// The checkpoint's value.
        saved: String,
        /// The requested value.
        requested: String,
    },
    /// The model could not be built or serialised.
    #[error("{path}: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<SavedModelError> for NnError {
    fn from(e: SavedModelError) -> Self {
        NnError::Checkpoint(Box::new(e))
    }
}

/// What a model was trained on: the dataset's name and size and its public input encoding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetInfo {
    /// The dataset's name (`mnist`, `breast-cancer`, `digits`, or a caller's).
    pub name: String,
    /// Training examples.
    pub train_size: usize,
    /// The shape of one input.
    pub input: InputShape,
    /// Classes.
    pub classes: usize,
    /// The public input encoding (pixel normalisation or per-feature standardisation).
    pub encoding: InputEncoding,
}

impl DatasetInfo {
    /// The description of `data`, a training set called `name`.
    #[must_use]
    pub fn of(name: &str, data: &Dataset) -> Self {
        Self {
            name: name.to_string(),
            train_size: data.len(),
            input: data.shape(),
            classes: data.classes(),
            encoding: data.encoding().clone(),
        }
    }
}

/// The position of the run's random streams (informative; it follows from seed and epoch).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct RngPosition {
    algorithm: String,
    seed: u64,
    next_stream: String,
}

impl RngPosition {
    fn at(seed: u64, epoch: usize) -> Self {
        Self {
            algorithm: "chacha8".into(),
            seed,
            next_stream: format!("shuffle({epoch})"),
        }
    }
}

/// A trained model with what resuming its run needs (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct SavedModel {
    model: Model,
    config: TrainConfig,
    dataset: DatasetInfo,
    epochs_done: usize,
    steps_done: usize,
    total_steps: usize,
    velocity: Vec<Vec<f32>>,
}

/// `layers.{i}.weight` / `.bias` and the shapes of the spec's parameters, in parameter order.
fn parameter_layout(spec: &ModelSpec) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for (i, l) in spec.layers.iter().enumerate() {
        let (w, b) = match *l {
            LayerSpec::Linear { inputs, outputs } => (vec![outputs, inputs], vec![outputs]),
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel,
                ..
            } => (
                vec![out_channels, in_channels, kernel, kernel],
                vec![out_channels],
            ),
            _ => continue,
        };
        out.push((format!("layers.{i}.weight"), w));
        out.push((format!("layers.{i}.bias"), b));
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// SHA-256 over the metadata (without `state_sha256`) and the tensors, both in name order.
fn state_hash(
    metadata: &BTreeMap<String, String>,
    tensors: &BTreeMap<String, (Vec<usize>, &[u8])>,
) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(b"cryptonn.model state v1");
    for (k, v) in metadata.iter().filter(|(k, _)| *k != "state_sha256") {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    for (name, (shape, data)) in tensors {
        field(name.as_bytes());
        let dims: Vec<u8> = shape
            .iter()
            .flat_map(|d| (*d as u64).to_le_bytes())
            .collect();
        field(&dims);
        field(data);
    }
    hex(&h.finalize())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    // The types serialised here (specs, configurations, encodings) hold no maps with
    // non-string keys, so serialisation cannot fail; an empty string would fail to load.
    serde_json::to_string(value).unwrap_or_default()
}

impl SavedModel {
    /// The state of a run after an epoch, trained on `dataset`.
    #[must_use]
    pub fn from_state(state: &TrainState<'_>, dataset: DatasetInfo) -> Self {
        Self {
            model: state.model.clone(),
            config: *state.config,
            dataset,
            epochs_done: state.epochs_done,
            steps_done: state.steps_done,
            total_steps: state.total_steps,
            velocity: state.optimizer.velocity().to_vec(),
        }
    }

    /// The model.
    #[must_use]
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model, by value.
    #[must_use]
    pub fn into_model(self) -> Model {
        self.model
    }

    /// The run's configuration (mode, seed, scales, optimiser, batches).
    #[must_use]
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The training set it was trained on.
    #[must_use]
    pub fn dataset(&self) -> &DatasetInfo {
        &self.dataset
    }

    /// Epochs done.
    #[must_use]
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// SGD steps done.
    #[must_use]
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    /// SGD steps of the whole run.
    #[must_use]
    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    /// The momentum buffers (empty without momentum).
    #[must_use]
    pub fn velocity(&self) -> &[Vec<f32>] {
        &self.velocity
    }

    /// [`Model::weights_sha256`] of the model.
    #[must_use]
    pub fn weights_sha256(&self) -> String {
        self.model.weights_sha256()
    }

    /// The tensors' names and shapes, in parameter order (momentum buffers last).
    #[must_use]
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let layout = parameter_layout(self.model.spec());
        let momentum = layout
            .iter()
            .take(if self.velocity.is_empty() {
                0
            } else {
                layout.len()
            })
            .map(|(n, s)| (format!("{MOMENTUM_PREFIX}{n}"), s.clone()))
            .collect::<Vec<_>>();
        layout.into_iter().chain(momentum).collect()
    }

    /// The file's bytes (see the [module docs](self)).
    ///
    /// # Errors
    /// [`SavedModelError::Encode`] if the model's parameters do not match its spec's layout
    /// (not expected) or safetensors refuses to serialise.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SavedModelError> {
        let fail = |reason: String| SavedModelError::Encode {
            path: PathBuf::from("(model)"),
            reason,
        };
        let layout = parameter_layout(self.model.spec());
        let params = self.model.parameters();
        if layout.len() != params.len()
            || layout
                .iter()
                .zip(&params)
                .any(|((_, s), (_, p))| s.iter().product::<usize>() != p.len())
        {
            return Err(fail(
                "the model's parameters do not match its spec's layout".into(),
            ));
        }
        let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = layout
            .iter()
            .zip(&params)
            .map(|((n, s), (_, p))| (n.clone(), s.clone(), f32_bytes(p)))
            .collect();
        if !self.velocity.is_empty() {
            if self.velocity.len() != layout.len() {
                return Err(fail(
                    "the momentum buffers do not match the parameters".into(),
                ));
            }
            for ((n, s), v) in layout.iter().zip(&self.velocity) {
                data.push((format!("{MOMENTUM_PREFIX}{n}"), s.clone(), f32_bytes(v)));
            }
        }
        let mut meta = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            meta.insert(k.to_string(), v);
        };
        put("format", FORMAT.into());
        put("format_version", FORMAT_VERSION.to_string());
        put("model_spec", json(self.model.spec()));
        put("train_config", json(&self.config));
        put("seed", self.config.seed.to_string());
        put("fixed_point", json(&self.config.quant));
        put("dataset", json(&self.dataset));
        put("epoch", self.epochs_done.to_string());
        put("step", self.steps_done.to_string());
        put("total_steps", self.total_steps.to_string());
        put(
            "rng",
            json(&RngPosition::at(self.config.seed, self.epochs_done)),
        );
        put("weights_sha256", self.model.weights_sha256());
        put(
            "created_by",
            format!("cryptonn {}", env!("CARGO_PKG_VERSION")),
        );
        let tensors: BTreeMap<String, (Vec<usize>, &[u8])> = data
            .iter()
            .map(|(n, s, b)| (n.clone(), (s.clone(), b.as_slice())))
            .collect();
        let state = state_hash(&meta, &tensors);
        meta.insert("state_sha256".into(), state);
        let views = data
            .iter()
            .map(|(n, s, b)| {
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| fail(format!("tensor {n}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let meta: HashMap<String, String> = meta.into_iter().collect();
        safetensors::tensor::serialize(views, Some(meta)).map_err(|e| fail(e.to_string()))
    }

    /// Writes the file atomically (see the [module docs](self)).
    ///
    /// # Errors
    /// [`SavedModelError::Io`]; as [`to_bytes`](Self::to_bytes).
    pub fn save(&self, path: &Path) -> Result<(), SavedModelError> {
        let bytes = self.to_bytes()?;
        write_atomic(path, &bytes)
    }

    /// Reads and verifies a saved model (see the [module docs](self)).
    ///
    /// # Errors
    /// A [`SavedModelError`] naming what is wrong with the file.
    pub fn load(path: &Path) -> Result<Self, SavedModelError> {
        let io = |source| SavedModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            return Err(SavedModelError::NotSafetensors {
                path: path.to_path_buf(),
                reason: format!("{len} bytes, more than the {MAX_FILE_BYTES} a model may have"),
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_bytes(&bytes, path)
    }

    /// [`load`](Self::load) from bytes; `path` names the file in errors.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, SavedModelError> {
        let p = || path.to_path_buf();
        check_container(bytes, path)?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| SavedModelError::NotSafetensors {
            path: p(),
            reason: e.to_string(),
        })?;
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| SavedModelError::NotSafetensors {
                path: p(),
                reason: e.to_string(),
            })?;
        let meta: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        match meta.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(SavedModelError::NotAModel {
                    path: p(),
                    reason: format!("its format is `{f}`, not `{FORMAT}`"),
                })
            }
            None => {
                return Err(SavedModelError::NotAModel {
                    path: p(),
                    reason: "no `format` metadata (a safetensors file from elsewhere?)".into(),
                })
            }
        }
        let get = |key: &'static str| {
            meta.get(key)
                .map(String::as_str)
                .ok_or(SavedModelError::MissingMetadata { path: p(), key })
        };
        let bad = |key: &'static str, reason: String| SavedModelError::BadMetadata {
            path: p(),
            key,
            reason,
        };
        let version = get("format_version")?;
        if version != FORMAT_VERSION.to_string() {
            return Err(SavedModelError::NotAModel {
                path: p(),
                reason: format!(
                    "format version {version}; this version of cryptonn reads version \
                     {FORMAT_VERSION}"
                ),
            });
        }
        let parse_json = |key: &'static str| -> Result<serde_json::Value, SavedModelError> {
            serde_json::from_str(get(key)?).map_err(|e| bad(key, e.to_string()))
        };
        let number = |key: &'static str| -> Result<usize, SavedModelError> {
            get(key)?.parse().map_err(|e| bad(key, format!("{e}")))
        };
        let spec =
            ModelSpec::from_json_str(get("model_spec")?).map_err(|e| SavedModelError::Spec {
                path: p(),
                source: Box::new(e),
            })?;
        let config: TrainConfig = serde_json::from_value(parse_json("train_config")?)
            .map_err(|e| bad("train_config", e.to_string()))?;
        let dataset: DatasetInfo = serde_json::from_value(parse_json("dataset")?)
            .map_err(|e| bad("dataset", e.to_string()))?;
        let seed: u64 = get("seed")?
            .parse()
            .map_err(|e| bad("seed", format!("{e}")))?;
        if seed != config.seed {
            return Err(bad(
                "seed",
                format!("{seed}, but train_config says {}", config.seed),
            ));
        }
        let quant: QuantConfig = serde_json::from_value(parse_json("fixed_point")?)
            .map_err(|e| bad("fixed_point", e.to_string()))?;
        if quant != config.quant {
            return Err(bad(
                "fixed_point",
                "differs from train_config's scales".into(),
            ));
        }
        let epochs_done = number("epoch")?;
        let steps_done = number("step")?;
        let total_steps = number("total_steps")?;
        if epochs_done > config.epochs || steps_done > total_steps {
            return Err(bad(
                "epoch",
                format!(
                    "epoch {epochs_done} of {}, step {steps_done} of {total_steps}",
                    config.epochs
                ),
            ));
        }
        let rng: RngPosition =
            serde_json::from_value(parse_json("rng")?).map_err(|e| bad("rng", e.to_string()))?;
        if rng != RngPosition::at(seed, epochs_done) {
            return Err(bad(
                "rng",
                format!("{rng:?} is not the position after epoch {epochs_done} of seed {seed}"),
            ));
        }
        let recorded_weights = get("weights_sha256")?.to_string();
        let recorded_state = get("state_sha256")?.to_string();
        if dataset.input != spec.input || dataset.classes != spec.classes {
            return Err(bad(
                "dataset",
                format!(
                    "a {} input of {} classes, the model reads {} of {}",
                    dataset.input, dataset.classes, spec.input, spec.classes
                ),
            ));
        }

        // The tensors: exactly the spec's parameters (and, if any, all their momentum buffers).
        let layout = parameter_layout(&spec);
        let mut found: BTreeMap<String, (Vec<usize>, &[u8])> = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(SavedModelError::BadTensor {
                    path: p(),
                    name,
                    reason: format!("dtype {:?}, expected F32", view.dtype()),
                });
            }
            found.insert(name, (view.shape().to_vec(), view.data()));
        }
        let has_momentum = found.keys().any(|k| k.starts_with(MOMENTUM_PREFIX));
        let mut expected: Vec<(String, Vec<usize>)> = layout.clone();
        if has_momentum {
            expected.extend(
                layout
                    .iter()
                    .map(|(n, s)| (format!("{MOMENTUM_PREFIX}{n}"), s.clone())),
            );
        }
        if let Some(extra) = found
            .keys()
            .find(|k| !expected.iter().any(|(n, _)| n == *k))
        {
            return Err(SavedModelError::UnexpectedTensor {
                path: p(),
                name: extra.clone(),
            });
        }
        let mut values: Vec<Vec<f32>> = Vec::with_capacity(expected.len());
        for (name, shape) in &expected {
            let Some((s, data)) = found.get(name) else {
                return Err(SavedModelError::MissingTensor {
                    path: p(),
                    name: name.clone(),
                });
            };
            if s != shape {
                return Err(SavedModelError::BadTensor {
                    path: p(),
                    name: name.clone(),
                    reason: format!("shape {s:?}, the spec needs {shape:?}"),
                });
            }
            let v: Vec<f32> = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(SavedModelError::BadTensor {
                    path: p(),
                    name: name.clone(),
                    reason: "holds NaN or an infinity".into(),
                });
            }
            values.push(v);
        }
        let mut model = Model::new(&spec, seed).map_err(|e| SavedModelError::Spec {
            path: p(),
            source: Box::new(e),
        })?;
        let velocity = values.split_off(layout.len());
        for (dst, src) in model.parameters_mut().into_iter().zip(&values) {
            if dst.len() != src.len() {
                return Err(SavedModelError::Encode {
                    path: p(),
                    reason: "the spec's parameter layout differs from the model's".into(),
                });
            }
            dst.copy_from_slice(src);
        }
        let computed = model.weights_sha256();
        if computed != recorded_weights {
            return Err(SavedModelError::HashMismatch {
                path: p(),
                what: "weights",
                recorded: recorded_weights,
                computed,
            });
        }
        let computed = state_hash(&meta, &found);
        if computed != recorded_state {
            return Err(SavedModelError::HashMismatch {
                path: p(),
                what: "state",
                recorded: recorded_state,
                computed,
            });
        }
        Ok(Self {
            model,
            config,
            dataset,
            epochs_done,
            steps_done,
            total_steps,
            velocity,
        })
    }

    /// Errors unless the model reads inputs of `data`'s shape, classes and encoding.
    ///
    /// # Errors
    /// [`SavedModelError::DatasetMismatch`] naming the difference.
    pub fn check_dataset(&self, data: &DatasetInfo) -> Result<(), SavedModelError> {
        let spec = self.model.spec();
        if spec.input != data.input {
            return Err(mismatch_data("input shape", &spec.input, &data.input));
        }
        if spec.classes != data.classes {
            return Err(mismatch_data(
                "number of classes",
                &spec.classes,
                &data.classes,
            ));
        }
        if self.dataset.encoding != data.encoding {
            return Err(mismatch_data(
                "input encoding",
                &self.dataset.encoding,
                &data.encoding,
            ));
        }
        Ok(())
    }

    /// The start of a run of `cfg` over `spec` on `dataset` that continues this checkpoint,
    /// after checking that nothing that determines the result changed: the model, the
    /// fixed-point scales (quantised and secure mode; those two may continue each other, being
    /// bit-identical), the seed, batch size, chunk size, batches, optimiser and, under a cosine
    /// schedule, the number of epochs (it fixes the schedule), and the dataset.
    ///
    /// # Errors
    /// [`SavedModelError::ResumeMismatch`] or [`SavedModelError::DatasetMismatch`] naming the
    /// difference.
    pub fn resume(
        self,
        cfg: &TrainConfig,
        spec: &ModelSpec,
        dataset: &DatasetInfo,
    ) -> Result<TrainStart, SavedModelError> {
        let saved = &self.config;
        if self.model.spec() != spec {
            return Err(mismatch("model", self.model.spec(), spec));
        }
        let modes_agree = saved.mode == cfg.mode
            || matches!(
                (saved.mode, cfg.mode),
                (Mode::Quantized, Mode::Secure) | (Mode::Secure, Mode::Quantized)
            );
        if !modes_agree {
            return Err(mismatch("mode", &saved.mode, &cfg.mode));
        }
        if cfg.mode != Mode::Plain && saved.quant != cfg.quant {
            return Err(mismatch("fixed-point scales", &saved.quant, &cfg.quant));
        }
        if saved.seed != cfg.seed {
            return Err(mismatch("seed", &saved.seed, &cfg.seed));
        }
        if saved.batch_size != cfg.batch_size {
            return Err(mismatch("batch size", &saved.batch_size, &cfg.batch_size));
        }
        if saved.chunk_size != cfg.chunk_size {
            return Err(mismatch("chunk size", &saved.chunk_size, &cfg.chunk_size));
        }
        if saved.schedule != cfg.schedule {
            return Err(mismatch("batches", &saved.schedule, &cfg.schedule));
        }
        if saved.sgd != cfg.sgd {
            return Err(mismatch("optimiser", &saved.sgd, &cfg.sgd));
        }
        if saved.normalization != cfg.normalization {
            return Err(mismatch(
                "pixel normalisation",
                &saved.normalization,
                &cfg.normalization,
            ));
        }
        let cosine = cfg.sgd.schedule == crate::nn::optim::LrSchedule::Cosine;
        if (cosine && saved.epochs != cfg.epochs) || cfg.epochs < self.epochs_done {
            return Err(mismatch("number of epochs", &saved.epochs, &cfg.epochs));
        }
        self.check_dataset(dataset)?;
        if self.dataset != *dataset {
            return Err(mismatch_data("training set", &self.dataset, dataset));
        }
        Ok(TrainStart {
            model: self.model,
            velocity: self.velocity,
            epochs_done: self.epochs_done,
        })
    }
}

fn mismatch<T: serde::Serialize>(what: &'static str, saved: &T, requested: &T) -> SavedModelError {
    SavedModelError::ResumeMismatch {
        what,
        saved: json(saved),
        requested: json(requested),
    }
}

fn mismatch_data<T: serde::Serialize>(what: &'static str, saved: &T, given: &T) -> SavedModelError {
    SavedModelError::DatasetMismatch {
        what,
        saved: json(saved),
        given: json(given),
    }
}

/// Checks the safetensors framing before the crate parses it, so that a cut file is called
/// truncated and a foreign file not safetensors.
fn check_container(bytes: &[u8], path: &Path) -> Result<(), SavedModelError> {
    let len = bytes.len() as u64;
    let truncated = |reason: String| SavedModelError::Truncated {
        path: path.to_path_buf(),
        reason,
    };
    let foreign = |reason: String| SavedModelError::NotSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let Some(prefix) = bytes.get(..8) else {
        return Err(if bytes.is_empty() {
            truncated("the file is empty".into())
        } else {
            truncated(format!(
                "{len} bytes, shorter than the 8-byte header length"
            ))
        });
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(prefix);
    let header_len = u64::from_le_bytes(n);
    if !(2..=MAX_HEADER_BYTES).contains(&header_len) {
        return Err(foreign(format!(
            "the first 8 bytes announce a header of {header_len} bytes"
        )));
    }
    if bytes.get(8) != Some(&b'{') {
        return Err(if len <= 8 {
            truncated("the file ends after the header length".into())
        } else {
            foreign("the header is not a JSON object".into())
        });
    }
    let Some(header) = bytes.get(8..8 + header_len as usize) else {
        return Err(truncated(format!(
            "the header announces {header_len} bytes, {} are there",
            len - 8
        )));
    };
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| foreign(format!("header: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(foreign("the header is not a JSON object".into()));
    };
    let mut end = 0u64;
    for (k, v) in obj {
        if k == "__metadata__" {
            continue;
        }
        let off = v
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| o.get(1))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| foreign(format!("tensor `{k}` has no data offsets")))?;
        end = end.max(off);
    }
    let have = len - 8 - header_len;
    if have < end {
        return Err(truncated(format!(
            "the header announces {end} bytes of tensor data, {have} are there"
        )));
    }
    if have > end {
        return Err(foreign(format!(
            "{} bytes after the last tensor",
            have - end
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: a new temporary file `.NAME.PID.N.tmp` in the same
/// directory (created exclusively), fsync, rename over `path`, fsync of the directory; then
/// removes the temporary files that crashed earlier writes of `path` left behind.
///
/// # Errors
/// [`SavedModelError::Io`] naming the file that failed; the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SavedModelError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| SavedModelError::Io { path: p, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| SavedModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        })?
        .to_string_lossy()
        .into_owned();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let write = || -> Result<(), SavedModelError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io(path))?;
        #[cfg(unix)]
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(())
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Temporary files of earlier writes of this file that crashed before their rename.
    let prefix = format!(".{name}.");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) && n.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// A [`TrainObserver`] that saves the run to `path` after every `every` epochs (if given) and
/// after the last epoch, then passes every event on to `inner`.
pub struct Checkpointer<O: TrainObserver> {
    inner: O,
    path: PathBuf,
    every: Option<usize>,
    dataset: DatasetInfo,
    saved: Vec<usize>,
}

impl<O: TrainObserver> Checkpointer<O> {
    /// Saves to `path` after the last epoch and, with `every = Some(n)`, after every `n`
    /// epochs; `dataset` describes the training set. `inner` (e.g. `()` or `&mut bars`) gets
    /// every event.
    #[must_use]
    pub fn new(
        inner: O,
        path: impl Into<PathBuf>,
        every: Option<usize>,
        dataset: DatasetInfo,
    ) -> Self {
        Self {
            inner,
            path: path.into(),
            every: every.filter(|&n| n > 0),
            dataset,
            saved: Vec::new(),
        }
    }

    /// The epochs after which the model was saved.
    #[must_use]
    pub fn saved_epochs(&self) -> &[usize] {
        &self.saved
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl<O: TrainObserver> TrainObserver for Checkpointer<O> {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, images: usize) {
        self.inner.epoch_started(epoch, epochs, images);
    }

    fn batch_finished(&mut self, progress: &BatchProgress) {
        self.inner.batch_finished(progress);
    }

    fn epoch_finished(&mut self, stats: &EpochStats) {
        self.inner.epoch_finished(stats);
    }

    fn checkpoint(&mut self, state: &TrainState<'_>) -> Result<(), NnError> {
        let last = state.epochs_done == state.config.epochs;
        let due = self
            .every
            .is_some_and(|n| state.epochs_done.is_multiple_of(n));
        if last || due {
            SavedModel::from_state(state, self.dataset.clone()).save(&self.path)?;
            self.saved.push(state.epochs_done);
        }
        self.inner.checkpoint(state)
    }
}
