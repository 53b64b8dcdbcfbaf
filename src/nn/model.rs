//! Declared models: a [`ModelSpec`] is a sequence of layers ([`LayerSpec`]) built in Rust or
//! read from a TOML or JSON file; [`Model`] holds its parameters and runs it forward and
//! backward over a chunk of samples.
//!
//! # Layers
//!
//! | layer | file | config |
//! |---|---|---|
//! | `linear {in, out}` | [`crate::nn::linear`] | [`LinearConfig`](crate::nn::linear::LinearConfig) |
//! | `conv2d {in_channels, out_channels, kernel, stride, padding}` | [`crate::nn::conv`] | [`Conv2dConfig`] |
//! | `avg_pool2d {kernel, stride}`, `max_pool2d {kernel, stride}` | [`crate::nn::pool`] | [`Pool2dConfig`] |
//! | `relu`, `tanh`, `sigmoid` | [`crate::nn::activation`] | [`Activation`] |
//! | `flatten` | [`crate::nn::flatten`] | — |
//!
//! The output is followed by softmax cross-entropy ([`crate::nn::loss`]); the last layer must
//! output `classes` values.
//!
//! # The first layer
//!
//! The first layer must be linear in the input, because secure training evaluates it over
//! FEIP ciphertexts: a `linear` layer, or a `conv2d` optionally followed by an `avg_pool2d`
//! whose kernel equals its stride — the pooling then folds into the same linear map
//! ([`FirstLayerSpec`]). Its output `P` (before any activation) is where the float trunk
//! starts. A convolution's padding is filled with the encoding's padding value (MNIST: the
//! black pixel), so that the integer and the float layer agree.
//!
//! Further on, a `conv2d` followed by such an `avg_pool2d` is computed in the same fused way (a
//! stride-`s·p` convolution of the box mean, [`crate::nn::pool::box_mean`]), which is how
//! LeNet-5 in LeCun et al.'s order has always been computed here.
//!
//! # Parameter order
//!
//! Weight then bias of each parametrised layer, in layer order; a convolution's weight is
//! `[F, C·k·k]` row-major (= `[F, C, k, k]`), a dense layer's `[out, in]`.
//! [`Model::weights_sha256`] hashes them as `f32` little-endian bytes in this order. Initial
//! weights are drawn in the same order from stream [`RngStream::Weights`] of the seed, so
//! [`ModelSpec::lenet5`] gives exactly the LeNet-5 weights of earlier versions.
//!
//! # File format
//!
//! ```
//! use cryptonn::nn::model::ModelSpec;
//!
//! let spec = ModelSpec::from_toml_str(r#"
//!     name = "tiny"
//!     classes = 2
//!     input = { flat = 30 }
//!
//!     [[layers]]
//!     type = "linear"
//!     in = 30
//!     out = 16
//!
//!     [[layers]]
//!     type = "relu"
//!
//!     [[layers]]
//!     type = "linear"
//!     in = 16
//!     out = 2
//! "#)?;
//! assert_eq!(spec.layers.len(), 3);
//! let bad = ModelSpec::from_toml_str(&r#"
//!     name = "bad"
//!     classes = 2
//!     input = { flat = 30 }
//!     [[layers]]
//!     type = "relu"
//! "#);
//! assert!(bad.unwrap_err().to_string().contains("layer 0 (relu)"));
//! # Ok::<(), cryptonn::nn::NnError>(())
//! ```

use std::path::Path;

use ndarray::{Array1, Array2, Array4, ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, Ix4, IxDyn};
use sha2::{Digest, Sha256};

use crate::nn::activation::Activation;
use crate::nn::conv::{Conv2d, Conv2dConfig};
use crate::nn::data::{Dataset, InputShape};
use crate::nn::error::NnError;
use crate::nn::first_layer::FirstLayerSpec;
use crate::nn::flatten;
use crate::nn::init::{seeded_rng, Init, RngStream};
use crate::nn::lenet::{LayerOrder, LeNetConfig, PoolKind};
use crate::nn::linear::Linear;
use crate::nn::loss::softmax_rows_inplace;
use crate::nn::pool::{self, Pool2dConfig};

/// One layer of a declared model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum LayerSpec {
    /// A dense layer `in → out`.
    Linear {
        /// Inputs.
        #[serde(rename = "in")]
        inputs: usize,
        /// Outputs.
        #[serde(rename = "out")]
        outputs: usize,
    },
    /// A 2-D convolution.
    Conv2d {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Kernel side.
        kernel: usize,
        /// Stride (default 1).
        #[serde(default = "one")]
        stride: usize,
        /// Zero padding on every side (default 0).
        #[serde(default)]
        padding: usize,
    },
    /// Average pooling.
    AvgPool2d {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Max pooling.
    MaxPool2d {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^{-x})`.
    Sigmoid,
    /// `[C, H, W] → [C·H·W]`.
    Flatten,
}

fn one() -> usize {
    1
}

impl LayerSpec {
    /// The layer's name in model files.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Linear { .. } => "linear",
            Self::Conv2d { .. } => "conv2d",
            Self::AvgPool2d { .. } => "avg_pool2d",
            Self::MaxPool2d { .. } => "max_pool2d",
            Self::Relu => "relu",
            Self::Tanh => "tanh",
            Self::Sigmoid => "sigmoid",
            Self::Flatten => "flatten",
        }
    }

    fn activation(&self) -> Option<Activation> {
        match self {
            Self::Relu => Some(Activation::Relu),
            Self::Tanh => Some(Activation::Tanh),
            Self::Sigmoid => Some(Activation::Sigmoid),
            _ => None,
        }
    }

    fn from_activation(a: Activation) -> Self {
        match a {
            Activation::Tanh => Self::Tanh,
            Activation::Sigmoid => Self::Sigmoid,
            _ => Self::Relu,
        }
    }
}

/// A declared model: input shape, number of classes, initialisation and layers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    /// A name for reports.
    pub name: String,
    /// The input shape of one sample.
    pub input: InputShape,
    /// Number of classes (the last layer's outputs).
    pub classes: usize,
    /// Weight initialisation.
    #[serde(default)]
    pub init: Init,
    /// The layers, first to last.
    pub layers: Vec<LayerSpec>,
}

/// The most values per sample any activation of a model may hold, the input included
/// (`2^24`; MNIST's input is 784). Larger declared sizes are refused by
/// [`ModelSpec::validate`] rather than allocated.
pub const MAX_VALUES: usize = 1 << 24;

/// The most parameters (weights and biases) a model may have (`2^28`, 1 GiB of `f32`; LeNet-5
/// has 61,706).
pub const MAX_PARAMETERS: usize = 1 << 28;

/// The size of a valid model ([`ModelSpec::size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelSize {
    /// Weights and biases, at most [`MAX_PARAMETERS`].
    pub parameters: usize,
    /// Values per sample of the largest activation (the input included), at most
    /// [`MAX_VALUES`].
    pub largest_activation: usize,
}

/// A model file before its layers are checked one by one (so that errors name the layer).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    input: InputShape,
    classes: usize,
    #[serde(default)]
    init: Init,
    layers: Vec<serde_json::Value>,
}

/// The shape of an activation per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Flat(usize),
    Image(usize, usize, usize),
}

impl Shape {
    fn of(input: InputShape) -> Self {
        match input {
            InputShape::Flat(n) => Self::Flat(n),
            InputShape::Image {
                channels,
                height,
                width,
            } => Self::Image(channels, height, width),
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Flat(n) => n,
            Self::Image(c, h, w) => c * h * w,
        }
    }

    /// [`len`](Self::len), or `None` if it overflows.
    fn checked_len(self) -> Option<usize> {
        match self {
            Self::Flat(n) => Some(n),
            Self::Image(c, h, w) => c.checked_mul(h)?.checked_mul(w),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flat(n) => write!(f, "[{n}]"),
            Self::Image(c, h, w) => write!(f, "[{c}, {h}, {w}]"),
        }
    }
}

impl ModelSpec {
    /// The built-in model `name` for inputs of `input` and `classes` classes:
    ///
    /// - `lenet5`: [`ModelSpec::lenet5`] with the default [`LeNetConfig`] (MNIST only);
    /// - `mlp`: `linear(len, 128) → relu → linear(128, classes)` (784-128-10 on MNIST);
    /// - `cnn-small`: `conv2d(C → 8, 3x3, padding 1) → relu → max_pool2d(2) →
    ///   conv2d(8 → 16, 3x3, padding 1) → relu → max_pool2d(2) → flatten → linear(·, classes)`
    ///   (images only).
    ///
    /// # Errors
    /// [`NnError::Model`] for an unknown name or an input the model does not fit.
    pub fn builtin(name: &str, input: InputShape, classes: usize) -> Result<Self, NnError> {
        let spec = match name {
            "lenet5" => {
                let mut s = Self::lenet5(LeNetConfig::default());
                if input != s.input || classes != s.classes {
                    return Err(NnError::Model {
                        model: name.into(),
                        reason: format!(
                            "LeNet-5 reads 1x28x28 images of 10 classes, not a {input} of \
                             {classes} classes"
                        ),
                    });
                }
                s.input = input;
                s
            }
            "mlp" => Self {
                name: name.into(),
                input,
                classes,
                init: Init::HeUniform,
                layers: vec![
                    LayerSpec::Linear {
                        inputs: input.len(),
                        outputs: 128,
                    },
                    LayerSpec::Relu,
                    LayerSpec::Linear {
                        inputs: 128,
                        outputs: classes,
                    },
                ],
            },
            "cnn-small" => {
                let Some((c, h, w)) = input.image_dims() else {
                    return Err(NnError::Model {
                        model: name.into(),
                        reason: format!("cnn-small reads images, not {input}"),
                    });
                };
                let conv = |i, o| LayerSpec::Conv2d {
                    in_channels: i,
                    out_channels: o,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                };
                let pool = LayerSpec::MaxPool2d {
                    kernel: 2,
                    stride: 2,
                };
                Self {
                    name: name.into(),
                    input,
                    classes,
                    init: Init::HeUniform,
                    layers: vec![
                        conv(c, 8),
                        LayerSpec::Relu,
                        pool,
                        conv(8, 16),
                        LayerSpec::Relu,
                        pool,
                        LayerSpec::Flatten,
                        LayerSpec::Linear {
                            inputs: 16 * (h / 2 / 2) * (w / 2 / 2),
                            outputs: classes,
                        },
                    ],
                }
            }
            other => {
                return Err(NnError::Model {
                    model: other.into(),
                    reason: "unknown built-in model; the built-ins are lenet5, mlp, cnn-small"
                        .into(),
                })
            }
        };
        spec.validate()?;
        Ok(spec)
    }

    /// LeNet-5 on MNIST (1x28x28, padded by 2 with black pixels, 10 classes) in the layer order
    /// and with the activation, pooling and initialisation of `cfg`:
    ///
    /// ```text
    /// LeCun et al. 1998 (default)                  modern
    /// conv2d 1→6 5x5 padding 2                      conv2d 1→6 5x5 padding 2
    /// avg_pool2d 2  (folds into the first layer)    act, pool 2
    /// act                                           conv2d 6→16 5x5, act, pool 2
    /// conv2d 6→16 5x5, avg_pool2d 2, act
    /// flatten, linear 400→120, act, linear 120→84, act, linear 84→10
    /// ```
    #[must_use]
    pub fn lenet5(cfg: LeNetConfig) -> Self {
        let act = LayerSpec::from_activation(cfg.activation);
        let conv = |i, o, padding| LayerSpec::Conv2d {
            in_channels: i,
            out_channels: o,
            kernel: 5,
            stride: 1,
            padding,
        };
        let avg = LayerSpec::AvgPool2d {
            kernel: 2,
            stride: 2,
        };
        let pool = match cfg.pool {
            PoolKind::Average => avg,
            _ => LayerSpec::MaxPool2d {
                kernel: 2,
                stride: 2,
            },
        };
        let mut layers = match cfg.order {
            LayerOrder::Modern => vec![conv(1, 6, 2), act, pool, conv(6, 16, 0), act, pool],
            _ => vec![conv(1, 6, 2), avg, act, conv(6, 16, 0), avg, act],
        };
        layers.extend([
            LayerSpec::Flatten,
            LayerSpec::Linear {
                inputs: 400,
                outputs: 120,
            },
            act,
            LayerSpec::Linear {
                inputs: 120,
                outputs: 84,
            },
            act,
            LayerSpec::Linear {
                inputs: 84,
                outputs: 10,
            },
        ]);
        Self {
            name: "lenet5".into(),
            input: InputShape::MNIST,
            classes: 10,
            init: cfg.init,
            layers,
        }
    }

    /// A model file if `name_or_file` names an existing file ([`from_file`](Self::from_file)),
    /// else the built-in model of that name for inputs of `input` and `classes` classes
    /// ([`builtin`](Self::builtin)): how every driver reads `--model` / `model=`.
    ///
    /// # Errors
    /// As [`from_file`](Self::from_file) or [`builtin`](Self::builtin).
    pub fn resolve(name_or_file: &str, input: InputShape, classes: usize) -> Result<Self, NnError> {
        let path = Path::new(name_or_file);
        if path.is_file() {
            Self::from_file(path)
        } else {
            Self::builtin(name_or_file, input, classes)
        }
    }

    /// Parses and validates a TOML model file's text.
    ///
    /// # Errors
    /// [`NnError::Model`] naming the offending layer (by index and type) or field.
    pub fn from_toml_str(text: &str) -> Result<Self, NnError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| NnError::Model {
            model: "(file)".into(),
            reason: e.to_string(),
        })?;
        Self::from_raw(raw)
    }

    /// Parses and validates a JSON model file's text.
    ///
    /// # Errors
    /// As [`from_toml_str`](Self::from_toml_str).
    pub fn from_json_str(text: &str) -> Result<Self, NnError> {
        let raw: RawSpec = serde_json::from_str(text).map_err(|e| NnError::Model {
            model: "(file)".into(),
            reason: e.to_string(),
        })?;
        Self::from_raw(raw)
    }

    /// Reads a model file: JSON if its name ends in `.json`, TOML otherwise.
    ///
    /// # Errors
    /// [`NnError::ModelFile`] if it cannot be read; as [`from_toml_str`](Self::from_toml_str).
    pub fn from_file(path: &Path) -> Result<Self, NnError> {
        let text = std::fs::read_to_string(path).map_err(|source| NnError::ModelFile {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        };
        parsed.map_err(|e| match e {
            NnError::Model { model, reason } => NnError::Model {
                model: format!("{model} in {}", path.display()),
                reason,
            },
            e => e,
        })
    }

    fn from_raw(raw: RawSpec) -> Result<Self, NnError> {
        let mut layers = Vec::with_capacity(raw.layers.len());
        for (i, v) in raw.layers.into_iter().enumerate() {
            let kind = v
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("no type")
                .to_string();
            let layer: LayerSpec = serde_json::from_value(v).map_err(|e| NnError::Model {
                model: raw.name.clone(),
                reason: format!("layer {i} ({kind}): {e}"),
            })?;
            layers.push(layer);
        }
        let spec = Self {
            name: raw.name,
            input: raw.input,
            classes: raw.classes,
            init: raw.init,
            layers,
        };
        spec.validate()?;
        Ok(spec)
    }

    fn error(&self, reason: String) -> NnError {
        NnError::Model {
            model: self.name.clone(),
            reason,
        }
    }

    /// The first layer's geometry (with a following `avg_pool2d` whose kernel equals its stride
    /// folded in) and how many declared layers it takes (1 or 2).
    ///
    /// # Errors
    /// [`NnError::Model`] if the first layer is not linear or does not fit the input.
    pub fn first_layer(&self) -> Result<(FirstLayerSpec, usize), NnError> {
        self.check_declared_sizes()?;
        let name = |i: usize, l: &LayerSpec| format!("layer {i} ({})", l.kind());
        let Some(first) = self.layers.first() else {
            return Err(self.error("a model needs at least one layer".into()));
        };
        match (*first, Shape::of(self.input)) {
            (LayerSpec::Linear { inputs, outputs }, s) => {
                if inputs != s.len() {
                    return Err(self.error(format!(
                        "{}: reads {inputs} inputs but the input is {s} ({} values)",
                        name(0, first),
                        s.len()
                    )));
                }
                Ok((FirstLayerSpec::Linear { inputs, outputs }, 1))
            }
            (
                LayerSpec::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                },
                Shape::Image(c, h, w),
            ) => {
                if in_channels != c {
                    return Err(self.error(format!(
                        "{}: {in_channels} input channels but the input is [{c}, {h}, {w}]",
                        name(0, first)
                    )));
                }
                let pool = match self.layers.get(1) {
                    Some(LayerSpec::AvgPool2d {
                        kernel: p,
                        stride: ps,
                    }) if p == ps && *p > 0 => *p,
                    _ => 1,
                };
                let spec = FirstLayerSpec::Conv {
                    channels: c,
                    height: h,
                    width: w,
                    filters: out_channels,
                    kernel,
                    stride,
                    padding,
                    pool,
                };
                spec.validate()
                    .map_err(|e| self.error(format!("{}: {e}", name(0, first))))?;
                Ok((spec, if pool > 1 { 2 } else { 1 }))
            }
            (LayerSpec::Conv2d { .. }, s) => Err(self.error(format!(
                "{}: a convolution needs an image input, the input is {s}",
                name(0, first)
            ))),
            (l, _) => Err(self.error(format!(
                "{}: the first layer must be linear in the input (linear, or conv2d optionally \
                 followed by avg_pool2d) so that it can run over ciphertexts",
                name(0, &l)
            ))),
        }
    }

    /// Checks the whole model: the first layer, every layer's shapes, and that the last layer
    /// outputs `classes` values.
    ///
    /// # Errors
    /// [`NnError::Model`] naming the offending layer.
    pub fn validate(&self) -> Result<(), NnError> {
        self.shapes().map(|_| ())
    }

    /// The number of parameters and the largest activation per sample.
    ///
    /// # Errors
    /// [`NnError::Model`] if the spec is invalid ([`validate`](Self::validate)).
    pub fn size(&self) -> Result<ModelSize, NnError> {
        let shapes = self.shapes()?;
        let mut parameters = 0usize;
        let mut shape = Shape::of(self.input);
        for (l, next) in self.layers.iter().zip(&shapes) {
            let count = match (*l, shape) {
                (LayerSpec::Linear { inputs, outputs }, _) => inputs * outputs + outputs,
                (
                    LayerSpec::Conv2d {
                        out_channels,
                        kernel,
                        ..
                    },
                    Shape::Image(c, ..),
                ) => out_channels * c * kernel * kernel + out_channels,
                _ => 0,
            };
            parameters += count;
            shape = *next;
        }
        let largest_activation = std::iter::once(Shape::of(self.input))
            .chain(shapes)
            .map(Shape::len)
            .max()
            .unwrap_or(0);
        Ok(ModelSize {
            parameters,
            largest_activation,
        })
    }

    /// Every declared size within [`MAX_VALUES`] (the input's values, and each layer's
    /// sizes, kernel, stride and padding), so that the shape arithmetic cannot overflow.
    fn check_declared_sizes(&self) -> Result<(), NnError> {
        match Shape::of(self.input).checked_len() {
            Some(0) => return Err(self.error("the input has no values".into())),
            Some(n) if n <= MAX_VALUES => {}
            _ => {
                return Err(self.error(format!(
                    "the input {:?} has more than {MAX_VALUES} values",
                    self.input
                )))
            }
        }
        for (i, l) in self.layers.iter().enumerate() {
            let sizes: &[(&str, usize)] = match *l {
                LayerSpec::Linear { inputs, outputs } => &[("in", inputs), ("out", outputs)],
                LayerSpec::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                } => &[
                    ("in_channels", in_channels),
                    ("out_channels", out_channels),
                    ("kernel", kernel),
                    ("stride", stride),
                    ("padding", padding),
                ],
                LayerSpec::AvgPool2d { kernel, stride }
                | LayerSpec::MaxPool2d { kernel, stride } => {
                    &[("kernel", kernel), ("stride", stride)]
                }
                _ => &[],
            };
            if let Some((field, v)) = sizes.iter().find(|(_, v)| *v > MAX_VALUES) {
                return Err(self.error(format!(
                    "layer {i} ({}): {field} = {v} exceeds the limit {MAX_VALUES}",
                    l.kind()
                )));
            }
        }
        Ok(())
    }

    /// The per-sample output shape of every layer (after validation).
    fn shapes(&self) -> Result<Vec<Shape>, NnError> {
        if !(2..=256).contains(&self.classes) {
            return Err(self.error(format!(
                "{} classes; between 2 and 256 are supported",
                self.classes
            )));
        }
        self.check_declared_sizes()?;
        self.first_layer()?;
        let mut shape = Shape::of(self.input);
        let mut out = Vec::with_capacity(self.layers.len());
        let mut parameters = 0usize;
        for (i, l) in self.layers.iter().enumerate() {
            let bad = |m: String| self.error(format!("layer {i} ({}): {m}", l.kind()));
            // Within MAX_VALUES each, so that these products fit in a u64.
            let count = match (*l, shape) {
                (LayerSpec::Linear { inputs, outputs }, _) => inputs * outputs + outputs,
                (
                    LayerSpec::Conv2d {
                        out_channels,
                        kernel,
                        ..
                    },
                    Shape::Image(c, ..),
                ) => (out_channels * c)
                    .checked_mul(kernel * kernel)
                    .and_then(|w| w.checked_add(out_channels))
                    .unwrap_or(usize::MAX),
                _ => 0,
            };
            parameters = parameters.saturating_add(count);
            if parameters > MAX_PARAMETERS {
                return Err(bad(format!(
                    "the model has more than {MAX_PARAMETERS} parameters"
                )));
            }
            shape = match (*l, shape) {
                (LayerSpec::Linear { inputs, outputs }, s) => {
                    let ok = match s {
                        Shape::Flat(n) => n == inputs,
                        Shape::Image(..) => i == 0 && s.len() == inputs,
                    };
                    if !ok {
                        return Err(bad(format!(
                            "reads {inputs} inputs but receives {s}{}",
                            if matches!(s, Shape::Image(..)) {
                                " (add a flatten layer)"
                            } else {
                                ""
                            }
                        )));
                    }
                    if outputs == 0 {
                        return Err(bad("zero outputs".into()));
                    }
                    Shape::Flat(outputs)
                }
                (
                    LayerSpec::Conv2d {
                        in_channels,
                        out_channels,
                        kernel,
                        stride,
                        padding,
                    },
                    Shape::Image(c, h, w),
                ) => {
                    if in_channels != c {
                        return Err(bad(format!(
                            "{in_channels} input channels but receives [{c}, {h}, {w}]"
                        )));
                    }
                    if out_channels == 0 || kernel == 0 || stride == 0 {
                        return Err(bad("channels, kernel and stride must be positive".into()));
                    }
                    let cfg = Conv2dConfig {
                        in_channels,
                        out_channels,
                        kernel,
                        stride,
                        padding,
                    };
                    match (cfg.output_side(h), cfg.output_side(w)) {
                        (Some(oh), Some(ow)) => Shape::Image(out_channels, oh, ow),
                        _ => {
                            return Err(bad(format!(
                                "a {kernel}x{kernel} kernel does not fit [{c}, {h}, {w}] with \
                                 padding {padding}"
                            )))
                        }
                    }
                }
                (
                    LayerSpec::AvgPool2d { kernel, stride }
                    | LayerSpec::MaxPool2d { kernel, stride },
                    Shape::Image(c, h, w),
                ) => {
                    let cfg = Pool2dConfig { kernel, stride };
                    match (cfg.output_side(h), cfg.output_side(w)) {
                        (Some(oh), Some(ow)) => Shape::Image(c, oh, ow),
                        _ => {
                            return Err(bad(format!(
                                "a {kernel}x{kernel} window with stride {stride} does not fit \
                                 [{c}, {h}, {w}]"
                            )))
                        }
                    }
                }
                (LayerSpec::Relu | LayerSpec::Tanh | LayerSpec::Sigmoid, s) => s,
                (LayerSpec::Flatten, s) => Shape::Flat(s.len()),
                (_, s) => return Err(bad(format!("needs an image input, receives {s}"))),
            };
            if shape.checked_len().is_none_or(|n| n > MAX_VALUES) {
                return Err(bad(format!(
                    "outputs more than {MAX_VALUES} values per sample"
                )));
            }
            out.push(shape);
        }
        if shape != Shape::Flat(self.classes) {
            return Err(self.error(format!(
                "the last layer outputs {shape}, but the model has {} classes",
                self.classes
            )));
        }
        Ok(out)
    }
}

/// A parametrised or shape-changing operation of the trunk.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Linear(Linear),
    /// A convolution (stored with stride `s·p`, no padding) applied to the zero-padded (by
    /// `padding`) and, for `pool > 1`, box-averaged (`pool`, dilation `dilation`) input.
    Conv {
        conv: Conv2d,
        padding: usize,
        pool: usize,
        dilation: usize,
    },
    AvgPool(Pool2dConfig),
    MaxPool(Pool2dConfig),
    Act(Activation),
    Flatten,
}

/// The first layer in float: a convolution stored with stride `s·p` and no padding (it reads
/// the padded input, box-averaged if `p > 1`), or a dense layer.
#[derive(Debug, Clone, PartialEq)]
enum First {
    Conv(Conv2d),
    Linear(Linear),
}

/// A model with parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    spec: ModelSpec,
    first_spec: FirstLayerSpec,
    first: First,
    trunk: Vec<Op>,
}

/// What the first layer's backward pass needs.
#[derive(Debug, Clone)]
pub struct FirstCache {
    /// im2col of the (box-averaged) input, or the dense layer's input.
    input: Array2<f32>,
    /// Shape of the convolution's input `[n, C, H', W']` (unused for a dense layer).
    conv_input: [usize; 4],
}

/// What the trunk's backward pass needs, and its output probabilities.
#[derive(Debug, Clone)]
pub struct TrunkCache {
    /// Per op: its input (dense), its im2col (conv), its output (activation), argmax (max
    /// pool), or nothing.
    saved: Vec<Saved>,
    /// Per op: the shape of its input.
    shapes: Vec<Vec<usize>>,
    /// Softmax output, `[n, classes]`.
    pub probs: Array2<f32>,
}

#[derive(Debug, Clone)]
enum Saved {
    None,
    Matrix(Array2<f32>),
    Tensor(ArrayD<f32>),
    Arg(Array4<u32>),
}

/// Gradients of all parameters in [parameter order](self), summed over the samples seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Grads {
    /// One flat tensor per parameter tensor.
    pub tensors: Vec<Vec<f32>>,
}

impl Grads {
    /// `self += other`, tensor by tensor.
    ///
    /// # Panics
    /// If the two do not have the same layout.
    pub fn add_assign(&mut self, other: &Grads) {
        assert_eq!(self.tensors.len(), other.tensors.len(), "gradient layout");
        for (a, b) in self.tensors.iter_mut().zip(&other.tensors) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += *y;
            }
        }
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: f32) {
        for t in &mut self.tensors {
            t.iter_mut().for_each(|v| *v *= factor);
        }
    }

    /// Whether every value is finite.
    #[must_use]
    pub fn is_finite(&self) -> bool {
        self.tensors.iter().all(|t| t.iter().all(|v| v.is_finite()))
    }
}

fn flat<D: ndarray::Dimension>(a: &ndarray::Array<f32, D>) -> &[f32] {
    a.as_slice().expect("parameters are contiguous")
}

fn flat_mut<D: ndarray::Dimension>(a: &mut ndarray::Array<f32, D>) -> &mut [f32] {
    a.as_slice_mut().expect("parameters are contiguous")
}

fn to4(x: ArrayD<f32>) -> Array4<f32> {
    x.into_dimensionality::<Ix4>().expect("a 4-D activation")
}

fn to2(x: ArrayD<f32>) -> Array2<f32> {
    x.into_dimensionality::<Ix2>().expect("a 2-D activation")
}

/// Pads `[n, C, H, W]` by `pad` on every side with `value`.
fn pad4(x: &Array4<f32>, pad: usize, value: f32) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let mut out = Array4::from_elem((n, c, h + 2 * pad, w + 2 * pad), value);
    crop4(out.view_mut(), pad, h, w).assign(x);
    out
}

/// The `[.., .., pad..pad + h, pad..pad + w]` window of an array.
fn crop4<S: ndarray::RawData>(
    mut a: ndarray::ArrayBase<S, Ix4>,
    pad: usize,
    h: usize,
    w: usize,
) -> ndarray::ArrayBase<S, Ix4> {
    a.slice_axis_inplace(Axis(2), ndarray::Slice::from(pad..pad + h));
    a.slice_axis_inplace(Axis(3), ndarray::Slice::from(pad..pad + w));
    a
}

impl Model {
    /// A model of `spec` with weights drawn from `seed` (stream [`RngStream::Weights`], in
    /// parameter order) and zero biases.
    ///
    /// # Errors
    /// [`NnError::Model`] if the spec is invalid.
    pub fn new(spec: &ModelSpec, seed: u64) -> Result<Self, NnError> {
        spec.validate()?;
        let (first_spec, taken) = spec.first_layer()?;
        let mut rng = seeded_rng(seed, RngStream::Weights);
        let first = match first_spec {
            FirstLayerSpec::Linear { inputs, outputs } => {
                First::Linear(Linear::new(inputs, outputs, spec.init, &mut rng))
            }
            FirstLayerSpec::Conv {
                channels,
                filters,
                kernel,
                stride,
                pool,
                ..
            } => First::Conv(Conv2d::new(
                Conv2dConfig {
                    in_channels: channels,
                    out_channels: filters,
                    kernel,
                    stride: stride * pool,
                    padding: 0,
                },
                spec.init,
                &mut rng,
            )),
        };
        let mut trunk = Vec::new();
        let mut i = taken;
        while i < spec.layers.len() {
            let l = spec.layers[i];
            let op = match l {
                LayerSpec::Linear { inputs, outputs } => {
                    Op::Linear(Linear::new(inputs, outputs, spec.init, &mut rng))
                }
                LayerSpec::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                } => {
                    let pool = match spec.layers.get(i + 1) {
                        Some(LayerSpec::AvgPool2d {
                            kernel: p,
                            stride: ps,
                        }) if p == ps => *p,
                        _ => 1,
                    };
                    if pool > 1 {
                        i += 1;
                    }
                    Op::Conv {
                        conv: Conv2d::new(
                            Conv2dConfig {
                                in_channels,
                                out_channels,
                                kernel,
                                stride: stride * pool,
                                padding: 0,
                            },
                            spec.init,
                            &mut rng,
                        ),
                        padding,
                        pool,
                        dilation: stride,
                    }
                }
                LayerSpec::AvgPool2d { kernel, stride } => {
                    Op::AvgPool(Pool2dConfig { kernel, stride })
                }
                LayerSpec::MaxPool2d { kernel, stride } => {
                    Op::MaxPool(Pool2dConfig { kernel, stride })
                }
                LayerSpec::Flatten => Op::Flatten,
                other => Op::Act(other.activation().unwrap_or_default()),
            };
            trunk.push(op);
            i += 1;
        }
        Ok(Self {
            spec: spec.clone(),
            first_spec,
            first,
            trunk,
        })
    }

    /// LeNet-5 ([`ModelSpec::lenet5`]) with weights from `seed`: the same weights as every
    /// earlier version of this crate for the same configuration and seed.
    #[must_use]
    pub fn lenet5(cfg: LeNetConfig, seed: u64) -> Self {
        Self::new(&ModelSpec::lenet5(cfg), seed).expect("LeNet-5's spec is valid")
    }

    /// The declaration.
    #[must_use]
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The first layer's geometry.
    #[must_use]
    pub fn first_layer(&self) -> &FirstLayerSpec {
        &self.first_spec
    }

    /// The first layer's weights, `weight_shape` of [`first_layer`](Self::first_layer).
    #[must_use]
    pub fn first_weight(&self) -> ArrayView2<'_, f32> {
        match &self.first {
            First::Conv(c) => c.weight.view(),
            First::Linear(l) => l.weight.view(),
        }
    }

    /// The first layer's biases (one per filter or output).
    #[must_use]
    pub fn first_bias(&self) -> &[f32] {
        match &self.first {
            First::Conv(c) => flat(&c.bias),
            First::Linear(l) => flat(&l.bias),
        }
    }

    /// Number of classes.
    #[must_use]
    pub fn classes(&self) -> usize {
        self.spec.classes
    }

    /// The parameter tensors with their names, in [parameter order](self).
    #[must_use]
    pub fn parameters(&self) -> Vec<(String, &[f32])> {
        let mut out = Vec::new();
        match &self.first {
            First::Conv(c) => {
                out.push(("layers.0.weight".to_string(), flat(&c.weight)));
                out.push(("layers.0.bias".to_string(), flat(&c.bias)));
            }
            First::Linear(l) => {
                out.push(("layers.0.weight".to_string(), flat(&l.weight)));
                out.push(("layers.0.bias".to_string(), flat(&l.bias)));
            }
        }
        for (k, op) in self.trunk.iter().enumerate() {
            let (w, b) = match op {
                Op::Linear(l) => (flat(&l.weight), flat(&l.bias)),
                Op::Conv { conv, .. } => (flat(&conv.weight), flat(&conv.bias)),
                _ => continue,
            };
            out.push((format!("trunk.{k}.weight"), w));
            out.push((format!("trunk.{k}.bias"), b));
        }
        out
    }

    /// Mutable parameter tensors in [parameter order](self).
    pub fn parameters_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out = Vec::new();
        match &mut self.first {
            First::Conv(c) => {
                out.push(flat_mut(&mut c.weight));
                out.push(flat_mut(&mut c.bias));
            }
            First::Linear(l) => {
                out.push(flat_mut(&mut l.weight));
                out.push(flat_mut(&mut l.bias));
            }
        }
        for op in &mut self.trunk {
            match op {
                Op::Linear(l) => {
                    out.push(flat_mut(&mut l.weight));
                    out.push(flat_mut(&mut l.bias));
                }
                Op::Conv { conv, .. } => {
                    out.push(flat_mut(&mut conv.weight));
                    out.push(flat_mut(&mut conv.bias));
                }
                _ => {}
            }
        }
        out
    }

    /// All parameters as `f32` little-endian bytes, in [parameter order](self).
    #[must_use]
    pub fn parameter_bytes(&self) -> Vec<u8> {
        self.parameters()
            .iter()
            .flat_map(|(_, t)| t.iter().flat_map(|v| v.to_le_bytes()))
            .collect()
    }

    /// SHA-256 of [`parameter_bytes`](Self::parameter_bytes), lowercase hex.
    #[must_use]
    pub fn weights_sha256(&self) -> String {
        Sha256::digest(self.parameter_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Zero gradients in [parameter order](self).
    #[must_use]
    pub fn zero_grads(&self) -> Grads {
        Grads {
            tensors: self
                .parameters()
                .iter()
                .map(|(_, t)| vec![0.0; t.len()])
                .collect(),
        }
    }

    /// The float input of examples `indices` of `data`: normalised by the dataset's encoding,
    /// `[n, len]` for a dense first layer, or `[n, C, H + 2·pad, W + 2·pad]` for a convolution,
    /// the padding filled with the encoding's padding value (MNIST: the black pixel).
    ///
    /// # Panics
    /// If an index is out of range or the dataset's shape is not the model's input.
    #[must_use]
    pub fn input(&self, data: &Dataset, indices: &[usize]) -> ArrayD<f32> {
        let len = data.shape().len();
        match self.first_spec {
            FirstLayerSpec::Linear { .. } => {
                let mut x = Array2::<f32>::zeros((indices.len(), len));
                for (mut row, &i) in x.rows_mut().into_iter().zip(indices) {
                    data.write_normalized(
                        i,
                        row.as_slice_mut()
                            .expect("rows of a fresh array are contiguous"),
                    );
                }
                x.into_dyn()
            }
            FirstLayerSpec::Conv {
                channels: c,
                height: h,
                width: w,
                padding: p,
                ..
            } => {
                let (hp, wp) = (h + 2 * p, w + 2 * p);
                let mut x =
                    Array4::from_elem((indices.len(), c, hp, wp), data.encoding().padding_value());
                let xs = x.as_slice_mut().expect("fresh array is contiguous");
                let mut sample = vec![0.0f32; len];
                for (out, &i) in xs.chunks_exact_mut(c * hp * wp).zip(indices) {
                    data.write_normalized(i, &mut sample);
                    for ch in 0..c {
                        for r in 0..h {
                            out[(ch * hp + r + p) * wp + p..][..w]
                                .copy_from_slice(&sample[(ch * h + r) * w..][..w]);
                        }
                    }
                }
                x.into_dyn()
            }
        }
    }

    /// The first layer in float on an [`input`](Self::input) chunk: `P` (before any
    /// activation), `[n, outputs]` or `[n, F, oh, ow]`.
    ///
    /// # Panics
    /// If `x` does not have the input's shape.
    #[must_use]
    pub fn first_forward(&self, x: ArrayViewD<'_, f32>) -> (ArrayD<f32>, FirstCache) {
        match (&self.first, self.first_spec) {
            (First::Linear(l), _) => {
                let x = x.into_dimensionality::<Ix2>().expect("a 2-D input");
                let y = l.forward(x);
                (
                    y.into_dyn(),
                    FirstCache {
                        input: x.to_owned(),
                        conv_input: [0; 4],
                    },
                )
            }
            (
                First::Conv(conv),
                FirstLayerSpec::Conv {
                    stride, pool: p, ..
                },
            ) => {
                let x = x.into_dimensionality::<Ix4>().expect("a 4-D input");
                let (y, cols, shape) = if p > 1 {
                    let b = pool::box_mean(x, p, stride);
                    let shape = b.dim();
                    let (y, cols) = conv.forward(b.view());
                    (y, cols, shape)
                } else {
                    let (y, cols) = conv.forward(x);
                    (y, cols, x.dim())
                };
                (
                    y.into_dyn(),
                    FirstCache {
                        input: cols,
                        conv_input: [shape.0, shape.1, shape.2, shape.3],
                    },
                )
            }
            (First::Conv(_), FirstLayerSpec::Linear { .. }) => {
                unreachable!("a convolution has a convolution spec")
            }
        }
    }

    /// The first layer's weight and bias gradients from `dp = dL/dP`.
    #[must_use]
    pub fn first_backward(
        &self,
        cache: &FirstCache,
        dp: ArrayViewD<'_, f32>,
    ) -> (Array2<f32>, Array1<f32>) {
        match &self.first {
            First::Linear(l) => {
                let dp = dp.into_dimensionality::<Ix2>().expect("a 2-D gradient");
                let (g, _) = l.backward(cache.input.view(), dp, false);
                (g.weight, g.bias)
            }
            First::Conv(conv) => {
                let dp = dp.into_dimensionality::<Ix4>().expect("a 4-D gradient");
                let (g, _) = conv.backward(cache.input.view(), dp, cache.conv_input, false);
                (g.weight, g.bias)
            }
        }
    }

    /// `[n, outputs_per_sample]` (the integer layer's layout) to the first layer's output
    /// shape.
    ///
    /// # Errors
    /// [`NnError::Shape`] if the number of columns is wrong.
    pub fn unflatten_first(&self, p: Array2<f32>) -> Result<ArrayD<f32>, NnError> {
        let mut dims = vec![p.nrows()];
        dims.extend(self.first_spec.output_shape());
        let found = p.shape().to_vec();
        p.into_shape_with_order(IxDyn(&dims))
            .map_err(|_| NnError::Shape {
                what: "first-layer output",
                expected: format!("{dims:?}"),
                found: format!("{found:?}"),
            })
    }

    /// The trunk: the first layer's output `P` to softmax probabilities (in the cache).
    ///
    /// # Panics
    /// If `p` does not have the first layer's output shape.
    #[must_use]
    pub fn trunk_forward(&self, p: ArrayD<f32>) -> TrunkCache {
        let mut x = p;
        let mut saved = Vec::with_capacity(self.trunk.len());
        let mut shapes = Vec::with_capacity(self.trunk.len());
        for op in &self.trunk {
            shapes.push(x.shape().to_vec());
            let (y, s) = match op {
                Op::Linear(l) => {
                    let x2 = to2(x);
                    (l.forward(x2.view()).into_dyn(), Saved::Matrix(x2))
                }
                Op::Conv {
                    conv,
                    padding,
                    pool: p,
                    dilation,
                } => {
                    let mut x4 = to4(x);
                    if *padding > 0 {
                        x4 = pad4(&x4, *padding, 0.0);
                    }
                    if *p > 1 {
                        x4 = pool::box_mean(x4.view(), *p, *dilation);
                    }
                    let (y, cols) = conv.forward(x4.view());
                    (y.into_dyn(), Saved::Matrix(cols))
                }
                Op::AvgPool(cfg) => (pool::avg_pool(to4(x).view(), *cfg).into_dyn(), Saved::None),
                Op::MaxPool(cfg) => {
                    let (y, arg) = pool::max_pool(to4(x).view(), *cfg);
                    (y.into_dyn(), Saved::Arg(arg))
                }
                Op::Act(a) => {
                    let mut y = x;
                    a.forward_inplace(y.view_mut());
                    let keep = y.clone();
                    (y, Saved::Tensor(keep))
                }
                Op::Flatten => (flatten::flatten(x), Saved::None),
            };
            saved.push(s);
            x = y;
        }
        let mut probs = to2(x);
        softmax_rows_inplace(probs.view_mut());
        TrunkCache {
            saved,
            shapes,
            probs,
        }
    }

    /// The trunk's backward pass from `dlogits = dL/d(logits)`, `[n, classes]`: the trunk's
    /// gradients (in [parameter order](self), without the first layer) and `dL/dP`.
    #[must_use]
    pub fn trunk_backward(
        &self,
        cache: &TrunkCache,
        dlogits: ArrayView2<'_, f32>,
    ) -> (Vec<Vec<f32>>, ArrayD<f32>) {
        let mut dy = dlogits.to_owned().into_dyn();
        let mut grads: Vec<Vec<f32>> = Vec::new();
        for ((op, saved), shape) in self.trunk.iter().zip(&cache.saved).zip(&cache.shapes).rev() {
            dy = match (op, saved) {
                (Op::Linear(l), Saved::Matrix(x)) => {
                    let (g, dx) = l.backward(x.view(), to2(dy).view(), true);
                    grads.push(g.bias.to_vec());
                    grads.push(g.weight.into_raw_vec_and_offset().0);
                    dx.expect("requested").into_dyn()
                }
                (
                    Op::Conv {
                        conv,
                        padding,
                        pool: p,
                        dilation,
                    },
                    Saved::Matrix(cols),
                ) => {
                    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
                    let (hp, wp) = (h + 2 * padding, w + 2 * padding);
                    let shrink = dilation * (p - 1);
                    let conv_in = [n, c, hp - shrink, wp - shrink];
                    let (g, dx) = conv.backward(cols.view(), to4(dy).view(), conv_in, true);
                    grads.push(g.bias.to_vec());
                    grads.push(g.weight.into_raw_vec_and_offset().0);
                    let mut dx = dx.expect("requested");
                    if *p > 1 {
                        dx = pool::box_mean_backward(dx.view(), *p, *dilation, (hp, wp));
                    }
                    if *padding > 0 {
                        dx = crop4(dx.view(), *padding, h, w).to_owned();
                    }
                    dx.into_dyn()
                }
                (Op::AvgPool(cfg), _) => {
                    pool::avg_pool_backward(to4(dy).view(), *cfg, (shape[2], shape[3])).into_dyn()
                }
                (Op::MaxPool(_), Saved::Arg(arg)) => {
                    pool::max_pool_backward(to4(dy).view(), arg.view(), (shape[2], shape[3]))
                        .into_dyn()
                }
                (Op::Act(a), Saved::Tensor(y)) => a.backward(y.view(), dy.view()),
                (Op::Flatten, _) => flatten::unflatten(dy, shape),
                _ => unreachable!("each op saves what its backward pass reads"),
            };
        }
        grads.reverse();
        (grads, dy)
    }

    /// Softmax probabilities `[n, classes]` for an [`input`](Self::input) chunk.
    #[must_use]
    pub fn predict_proba(&self, x: ArrayViewD<'_, f32>) -> Array2<f32> {
        let (p, _) = self.first_forward(x);
        self.trunk_forward(p).probs
    }

    /// The sum over samples and positions of `dp` per filter/output, as the quantised loop
    /// computes the first layer's bias gradient.
    #[must_use]
    pub fn first_bias_grad(dp: &ArrayD<f32>) -> Array1<f32> {
        match dp.ndim() {
            4 => dp
                .sum_axis(Axis(3))
                .sum_axis(Axis(2))
                .sum_axis(Axis(0))
                .into_dimensionality()
                .expect("1-D"),
            _ => dp.sum_axis(Axis(0)).into_dimensionality().expect("1-D"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_validate_and_lenet5_has_the_historic_layout() {
        let l = ModelSpec::lenet5(LeNetConfig::default());
        l.validate().unwrap();
        let (first, taken) = l.first_layer().unwrap();
        assert_eq!((first, taken), (FirstLayerSpec::lenet5(), 2));
        let m = Model::new(&l, 1).unwrap();
        let sizes: Vec<usize> = m.parameters().iter().map(|(_, t)| t.len()).collect();
        assert_eq!(
            sizes,
            vec![150, 6, 2400, 16, 48_000, 120, 10_080, 84, 840, 10]
        );
        let mlp = ModelSpec::builtin("mlp", InputShape::MNIST, 10).unwrap();
        assert_eq!(
            mlp.first_layer().unwrap().0,
            FirstLayerSpec::Linear {
                inputs: 784,
                outputs: 128
            }
        );
        let digits = InputShape::Image {
            channels: 1,
            height: 8,
            width: 8,
        };
        let cnn = ModelSpec::builtin("cnn-small", digits, 10).unwrap();
        assert_eq!(cnn.first_layer().unwrap().1, 1);
        assert!(ModelSpec::builtin("cnn-small", InputShape::Flat(30), 2).is_err());
        assert!(ModelSpec::builtin("lenet5", digits, 10).is_err());
        assert!(ModelSpec::builtin("resnet", digits, 10)
            .unwrap_err()
            .to_string()
            .contains("unknown built-in"));
    }

    /// Sizes whose shape arithmetic overflowed (a panic with debug assertions, a wrong shape
    /// without) or whose parameters could not be allocated (an abort): each is a typed error.
    #[test]
    fn oversized_model_files_are_refused() {
        let head = "name = \"m\"\nclasses = 2\n";
        let image = |c: u64, h: u64, w: u64| {
            format!("input = {{ image = {{ channels = {c}, height = {h}, width = {w} }} }}\n")
        };
        let conv = |c: u64, o: u64, k: u64, s: u64, p: u64| {
            format!(
                "[[layers]]\ntype = \"conv2d\"\nin_channels = {c}\nout_channels = {o}\n\
                 kernel = {k}\nstride = {s}\npadding = {p}\n"
            )
        };
        let tail =
            "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nin = 4\nout = 2\n";
        let cases = [
            (image(1 << 22, 1 << 22, 1 << 22) + tail, "more than 16777216 values"),
            (image(1, 8, 8) + &conv(1, 1, 1, 1, 1 << 62) + tail, "padding = 4611686018427387904 exceeds"),
            (image(1, 8, 8) + &conv(1, 1 << 24, 1, 1, 0) + tail, "layer 0 (conv2d): outputs more than"),
            (
                "input = { flat = 16777216 }\n[[layers]]\ntype = \"linear\"\nin = 16777216\nout = 16777216\n".to_string(),
                "more than 268435456 parameters",
            ),
            (
                "input = { flat = 4 }\n[[layers]]\ntype = \"linear\"\nin = 4\nout = 18446744073709551615\n".to_string(),
                "out = 18446744073709551615 exceeds",
            ),
        ];
        for (body, want) in cases {
            let err = ModelSpec::from_toml_str(&format!("{head}{body}")).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        }
        let lenet = ModelSpec::lenet5(LeNetConfig::default()).size().unwrap();
        assert_eq!(
            lenet.parameters,
            Model::lenet5(LeNetConfig::default(), 1)
                .parameters()
                .iter()
                .map(|(_, p)| p.len())
                .sum::<usize>()
        );
        assert_eq!(lenet.largest_activation, 6 * 28 * 28);
    }

    #[test]
    fn bad_model_files_name_the_layer() {
        let head = "name = \"m\"\nclasses = 2\ninput = { image = { channels = 1, height = 8, width = 8 } }\n";
        let cases = [
            ("[[layers]]\ntype = \"conv3d\"\n", "layer 0 (conv3d)"),
            ("[[layers]]\ntype = \"max_pool2d\"\nkernel = 2\nstride = 2\n", "layer 0 (max_pool2d): the first layer must be linear"),
            (
                "[[layers]]\ntype = \"conv2d\"\nin_channels = 3\nout_channels = 4\nkernel = 3\n",
                "layer 0 (conv2d): 3 input channels",
            ),
            (
                "[[layers]]\ntype = \"conv2d\"\nin_channels = 1\nout_channels = 4\nkernel = 3\n[[layers]]\ntype = \"linear\"\nin = 144\nout = 2\n",
                "layer 1 (linear): reads 144 inputs but receives [4, 6, 6] (add a flatten layer)",
            ),
            (
                "[[layers]]\ntype = \"linear\"\nin = 64\nout = 3\n",
                "the last layer outputs [3], but the model has 2 classes",
            ),
            (
                "[[layers]]\ntype = \"linear\"\nin = 64\nout = 2\nbias = true\n",
                "layer 0 (linear): unknown field `bias`",
            ),
        ];
        for (body, want) in cases {
            let err = ModelSpec::from_toml_str(&format!("{head}{body}")).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        }
        let json = r#"{"name": "j", "classes": 2, "input": {"flat": 4},
                       "layers": [{"type": "linear", "in": 4, "out": 2}]}"#;
        assert_eq!(ModelSpec::from_json_str(json).unwrap().layers.len(), 1);
        assert!(ModelSpec::from_file(Path::new("/nonexistent/model.toml")).is_err());
        // A TOML round trip of a built-in.
        let spec = ModelSpec::lenet5(LeNetConfig::default());
        let text = toml::to_string(&spec).unwrap();
        assert_eq!(ModelSpec::from_toml_str(&text).unwrap(), spec);
    }
}
