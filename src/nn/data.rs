//! MNIST: IDX file loading, the in-memory [`Dataset`], and CryptoNN's random label mapping.
//!
//! # IDX format
//!
//! An IDX file is a big-endian header followed by raw bytes:
//!
//! ```text
//! magic: 0x00 0x00 <type = 0x08 (u8)> <ndim>      images: ndim = 3, labels: ndim = 1
//! ndim big-endian u32 dimensions                  images: count, 28, 28; labels: count
//! prod(dimensions) unsigned bytes                 pixels 0..=255 row-major; labels 0..=9
//! ```
//!
//! The files in `data/` are gzipped (`*.gz`); an uncompressed file with the name minus `.gz` is
//! accepted too. A missing, corrupt or truncated file is a [`DataError`] that names the file and
//! says how to restore it. The images are 28x28; the network sees them zero-padded to 32x32
//! ([`PADDED_SIDE`]) and normalised by [`PixelNormalization`]: `X = (p - offset) / divisor` for a
//! pixel byte `p`, with the default `offset = 33`, `divisor = 80` (MNIST's mean pixel is
//! 0.1307 · 255 ≈ 33.3 and its standard deviation 0.3081 · 255 ≈ 78.6, so `X` has mean ≈ 0 and
//! standard deviation ≈ 0.98). Padding pixels are black bytes (`p = 0`, so `X = -0.4125`). Integer
//! constants keep the quantised encoding exact: at scale `S_x = 80`, `round(X · S_x) = p - 33`.
//!
//! # Random label mapping
//!
//! CryptoNN hides the meaning of the labels from the server: the data owner draws a secret
//! permutation `π` of the ten classes, and every training label `y` is presented as `π(y)`.
//! The network therefore learns to predict `π(y)`; test accuracy maps a prediction `k` back to
//! `π⁻¹(k)`. [`LabelPermutation::from_seed`] draws `π` from the run's seed, so plain, quantised
//! and secure training all use the same mapping.

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use thiserror::Error;

use crate::nn::error::{DataError, NnError};
use crate::nn::init::{seeded_rng, RngStream};

/// Side of an MNIST image.
pub const IMAGE_SIDE: usize = 28;
/// Pixels in an MNIST image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Side of the zero-padded image LeNet-5 sees.
pub const PADDED_SIDE: usize = 32;
/// Zero padding on each side: (32 - 28) / 2.
pub const PADDING: usize = (PADDED_SIDE - IMAGE_SIDE) / 2;
/// Number of classes.
pub const CLASSES: usize = 10;

/// File names (without `.gz`) of the four MNIST files.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// Training labels.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// Test images.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// Test labels.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The data directory, resolved at run time
/// ([`resolve_data_dir`](crate::nn::datasets::resolve_data_dir)`(None)`: the environment
/// variable `CRYPTONN_DATA_DIR`, then a `data/` holding MNIST found upwards from the current
/// directory, then the source tree's if it exists), or `data` if none is found (loading then
/// names the missing file).
#[must_use]
pub fn default_data_dir() -> PathBuf {
    crate::nn::datasets::resolve_data_dir(None).unwrap_or_else(|_| PathBuf::from("data"))
}

/// The input normalisation `X = (p - offset) / divisor` of a pixel byte `p`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PixelNormalization {
    /// Subtracted from the byte.
    pub offset: f32,
    /// Divides the difference.
    pub divisor: f32,
}

impl Default for PixelNormalization {
    /// `offset = 33`, `divisor = 80` (see the module docs).
    fn default() -> Self {
        Self {
            offset: 33.0,
            divisor: 80.0,
        }
    }
}

impl PixelNormalization {
    /// `p / 255`: pixels in `[0, 1]`, no centring.
    #[must_use]
    pub fn unit() -> Self {
        Self {
            offset: 0.0,
            divisor: 255.0,
        }
    }

    /// `(p - offset) / divisor` in `f32`.
    #[must_use]
    pub fn apply(&self, p: u8) -> f32 {
        (f32::from(p) - self.offset) / self.divisor
    }

    /// `(p - offset) / divisor` in `f64` (for fixed-point encoding).
    #[must_use]
    pub fn apply_f64(&self, p: u8) -> f64 {
        (f64::from(p) - f64::from(self.offset)) / f64::from(self.divisor)
    }

    /// Checks that the divisor is finite and non-zero and the offset finite.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] naming the normalisation.
    pub fn validate(&self) -> Result<(), NnError> {
        if self.offset.is_finite() && self.divisor.is_finite() && self.divisor != 0.0 {
            Ok(())
        } else {
            Err(NnError::InvalidConfig(format!(
                "pixel normalisation needs a finite offset and a finite, non-zero divisor, got {self:?}"
            )))
        }
    }
}

/// The shape of one sample's input: a flat feature vector or a `C x H x W` image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputShape {
    /// `n` features.
    Flat(usize),
    /// `channels x height x width`, row-major per channel.
    Image {
        /// Channels `C`.
        channels: usize,
        /// Rows `H`.
        height: usize,
        /// Columns `W`.
        width: usize,
    },
}

impl InputShape {
    /// MNIST's `1 x 28 x 28`.
    pub const MNIST: Self = Self::Image {
        channels: 1,
        height: IMAGE_SIDE,
        width: IMAGE_SIDE,
    };

    /// Values per sample.
    #[must_use]
    pub fn len(&self) -> usize {
        match *self {
            Self::Flat(n) => n,
            Self::Image {
                channels,
                height,
                width,
            } => channels * height * width,
        }
    }

    /// Whether a sample has no values.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(C, H, W)` of an image, `None` for a flat shape.
    #[must_use]
    pub fn image_dims(&self) -> Option<(usize, usize, usize)> {
        match *self {
            Self::Flat(_) => None,
            Self::Image {
                channels,
                height,
                width,
            } => Some((channels, height, width)),
        }
    }
}

impl std::fmt::Display for InputShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Flat(n) => write!(f, "{n} features"),
            Self::Image {
                channels,
                height,
                width,
            } => write!(f, "{channels}x{height}x{width} image"),
        }
    }
}

pub use crate::nn::datasets::Standardization;

/// The declared public input encoding of a dataset: how raw values become the network's
/// float inputs and the fixed-point integers `xq` the first layer (and FEIP) works on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InputEncoding {
    /// The same affine map for every feature, `X = (v - offset) / divisor` (MNIST:
    /// [`PixelNormalization::default`]); float inputs in `f32`, `xq = round(X · S_x)` in `f64`.
    Uniform(PixelNormalization),
    /// Per-feature standardisation fitted on the training split
    /// ([`Standardization`](crate::nn::datasets::Standardization): `z = (v - μ) / σ` in `f64`,
    /// `xq = round(z · S_x)`, `|z| <= max_abs_z`).
    Standardized(Standardization),
}

impl Default for InputEncoding {
    fn default() -> Self {
        Self::Uniform(PixelNormalization::default())
    }
}

impl InputEncoding {
    /// Checks the parameters for `features` features.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] naming the problem.
    pub fn validate(&self, features: usize) -> Result<(), NnError> {
        match self {
            Self::Uniform(n) => n.validate(),
            // Standardization's constructors validate its parameters.
            Self::Standardized(s) => {
                if s.features() == features {
                    Ok(())
                } else {
                    Err(NnError::InvalidConfig(format!(
                        "a standardisation of {} features for samples of {features}",
                        s.features()
                    )))
                }
            }
        }
    }

    /// The float input of raw value `v` of feature `q`.
    #[must_use]
    pub fn normalize(&self, q: usize, v: f32) -> f32 {
        match self {
            Self::Uniform(n) => (v - n.offset) / n.divisor,
            Self::Standardized(s) => s.normalize(q, v),
        }
    }

    /// The normalised value of raw `v` of feature `q` in `f64` (what is encoded).
    #[must_use]
    pub fn normalize_f64(&self, q: usize, v: f32) -> f64 {
        match self {
            Self::Uniform(n) => (f64::from(v) - f64::from(n.offset)) / f64::from(n.divisor),
            Self::Standardized(s) => s.normalize_f64(q, v),
        }
    }

    /// The float value the first layer's padding takes: the encoding of a raw 0 (MNIST's black
    /// pixel) for a uniform encoding, 0 (the mean) for a standardisation.
    #[must_use]
    pub fn padding_value(&self) -> f32 {
        match self {
            Self::Uniform(n) => n.apply(0),
            Self::Standardized(_) => 0.0,
        }
    }

    /// `xq` of the padding, `round(padding · S_x)` (MNIST at `S_x = 80`: -33).
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] or [`NnError::Encoding`] for an unusable scale.
    pub fn padding_xq(&self, scale_x: f64) -> Result<i64, NnError> {
        match self {
            Self::Uniform(n) => encode_one(scale_x, n.apply_f64(0)),
            Self::Standardized(_) => Ok(0),
        }
    }

    /// The uniform normalisation, if this is one.
    #[must_use]
    pub fn uniform(&self) -> Option<PixelNormalization> {
        match self {
            Self::Uniform(n) => Some(*n),
            Self::Standardized(_) => None,
        }
    }
}

fn encode_one(scale_x: f64, x: f64) -> Result<i64, NnError> {
    let codec = crate::fe::encoding::FixedPoint::new(scale_x)
        .map_err(|e| NnError::InvalidConfig(e.to_string()))?;
    codec.encode(x).map_err(|source| NnError::Encoding {
        what: "input features",
        source,
        hint: "lower scale_x",
    })
}

/// The stored raw values: bytes (MNIST pixels) or `f32`.
#[derive(Clone, PartialEq)]
enum Values {
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
}

/// A labelled dataset: per sample, the raw values of an [`InputShape`] (bytes or `f32`) and a
/// label in `0..classes`, together with the public [`InputEncoding`] that turns raw values into
/// network inputs and fixed-point integers.
#[derive(Clone, PartialEq)]
pub struct Dataset {
    values: Values,
    labels: Vec<u8>,
    classes: usize,
    shape: InputShape,
    encoding: InputEncoding,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the values: a summary.
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Dataset {
    /// An MNIST-shaped dataset from `n * 784` pixel bytes and `n` labels in `0..10`, encoded by
    /// [`PixelNormalization::default`].
    ///
    /// # Errors
    /// [`DataError::Invalid`] if the lengths disagree or a label exceeds 9.
    pub fn new(images: Vec<u8>, labels: Vec<u8>) -> Result<Self, DataError> {
        Self::from_bytes(
            InputShape::MNIST,
            CLASSES,
            images,
            labels,
            InputEncoding::default(),
        )
    }

    /// A dataset of byte values.
    ///
    /// # Errors
    /// [`DataError::Invalid`] if `values.len() != labels.len() · shape.len()`, a label is
    /// `>= classes`, or `classes` is not in `2..=256`.
    pub fn from_bytes(
        shape: InputShape,
        classes: usize,
        values: Vec<u8>,
        labels: Vec<u8>,
        encoding: InputEncoding,
    ) -> Result<Self, DataError> {
        Self::check(shape, classes, values.len(), &labels)?;
        Ok(Self {
            values: Values::Bytes(values),
            labels,
            classes,
            shape,
            encoding,
        })
    }

    /// A dataset of `f32` values (each finite).
    ///
    /// # Errors
    /// As [`from_bytes`](Self::from_bytes), and [`DataError::Invalid`] naming the first
    /// non-finite value.
    pub fn from_f32(
        shape: InputShape,
        classes: usize,
        values: Vec<f32>,
        labels: Vec<u8>,
        encoding: InputEncoding,
    ) -> Result<Self, DataError> {
        Self::check(shape, classes, values.len(), &labels)?;
        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
            return Err(DataError::Invalid(format!(
                "sample {} feature {} is {}",
                k / shape.len(),
                k % shape.len(),
                values[k]
            )));
        }
        Ok(Self {
            values: Values::Floats(values),
            labels,
            classes,
            shape,
            encoding,
        })
    }

    fn check(
        shape: InputShape,
        classes: usize,
        values: usize,
        labels: &[u8],
    ) -> Result<(), DataError> {
        if !(2..=256).contains(&classes) {
            return Err(DataError::Invalid(format!(
                "{classes} classes; between 2 and 256 are supported"
            )));
        }
        if shape.is_empty() || values != labels.len() * shape.len() {
            return Err(DataError::Invalid(format!(
                "{values} values for {} labels (expected {} per sample, a {shape})",
                labels.len(),
                shape.len()
            )));
        }
        if let Some(&l) = labels.iter().find(|&&l| usize::from(l) >= classes) {
            return Err(DataError::Invalid(format!(
                "label {l} is not a class in 0..{classes}"
            )));
        }
        Ok(())
    }

    /// The same samples with another encoding.
    #[must_use]
    pub fn with_encoding(mut self, encoding: InputEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Number of examples.
    #[must_use]
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    #[must_use]
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The shape of one sample.
    #[must_use]
    pub fn shape(&self) -> InputShape {
        self.shape
    }

    /// The input encoding.
    #[must_use]
    pub fn encoding(&self) -> &InputEncoding {
        &self.encoding
    }

    /// The raw bytes of example `i`, if the dataset holds bytes (MNIST).
    ///
    /// # Panics
    /// If `i >= len()`.
    #[must_use]
    pub fn bytes(&self, i: usize) -> Option<&[u8]> {
        let n = self.shape.len();
        match &self.values {
            Values::Bytes(b) => Some(&b[i * n..(i + 1) * n]),
            Values::Floats(_) => None,
        }
    }

    /// The 784 pixels of MNIST example `i`, row-major.
    ///
    /// # Panics
    /// If `i >= len()` or the dataset does not hold bytes (only MNIST does); generic code uses
    /// [`encode_sample`](Self::encode_sample) or [`write_normalized`](Self::write_normalized).
    #[must_use]
    pub fn image(&self, i: usize) -> &[u8] {
        self.bytes(i).expect("a byte (MNIST) dataset")
    }

    /// The raw value of feature `q` of example `i`.
    ///
    /// # Panics
    /// If out of range.
    #[must_use]
    pub fn raw(&self, i: usize, q: usize) -> f32 {
        let k = i * self.shape.len() + q;
        match &self.values {
            Values::Bytes(b) => f32::from(b[k]),
            Values::Floats(v) => v[k],
        }
    }

    /// The label of example `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[must_use]
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// All labels.
    #[must_use]
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The first `n` examples.
    ///
    /// # Errors
    /// [`DataError::TooFewExamples`] if `n > len()`; `set` names the set in the message.
    pub fn take(&self, n: usize, set: &'static str) -> Result<Self, DataError> {
        if n > self.len() {
            return Err(DataError::TooFewExamples {
                set,
                requested: n,
                available: self.len(),
            });
        }
        let m = n * self.shape.len();
        Ok(Self {
            values: match &self.values {
                Values::Bytes(b) => Values::Bytes(b[..m].to_vec()),
                Values::Floats(v) => Values::Floats(v[..m].to_vec()),
            },
            labels: self.labels[..n].to_vec(),
            classes: self.classes,
            shape: self.shape,
            encoding: self.encoding.clone(),
        })
    }

    /// Writes the normalised float input of example `i` (`shape().len()` values) into `out`.
    ///
    /// # Panics
    /// If `i >= len()` or `out` has the wrong length.
    pub fn write_normalized(&self, i: usize, out: &mut [f32]) {
        let n = self.shape.len();
        assert_eq!(out.len(), n, "normalised sample length");
        match (&self.values, &self.encoding) {
            (Values::Bytes(b), InputEncoding::Uniform(norm)) => {
                let table: [f32; 256] = std::array::from_fn(|p| norm.apply(p as u8));
                for (o, &p) in out.iter_mut().zip(&b[i * n..(i + 1) * n]) {
                    *o = table[usize::from(p)];
                }
            }
            _ => {
                for (q, o) in out.iter_mut().enumerate() {
                    *o = self.encoding.normalize(q, self.raw(i, q));
                }
            }
        }
    }

    /// `xq` of example `i`: `round(X_q · S_x)` per feature (see [`InputEncoding`]).
    ///
    /// # Errors
    /// [`NnError::IndexOutOfRange`]; [`NnError::FeatureOutOfRange`] naming the feature if its
    /// normalised value is not finite or beyond the encoding's bound; encoding errors for an
    /// unusable scale.
    pub fn encode_sample(&self, i: usize, scale_x: f64) -> Result<Vec<i64>, NnError> {
        if i >= self.len() {
            return Err(NnError::IndexOutOfRange {
                index: i,
                len: self.len(),
            });
        }
        let codec = crate::fe::encoding::FixedPoint::new(scale_x)
            .map_err(|e| NnError::InvalidConfig(e.to_string()))?;
        self.encoding.validate(self.shape.len())?;
        let bound = match &self.encoding {
            InputEncoding::Standardized(s) => s.max_abs_z(),
            InputEncoding::Uniform(_) => f64::INFINITY,
        };
        (0..self.shape.len())
            .map(|q| {
                let raw = self.raw(i, q);
                let x = self.encoding.normalize_f64(q, raw);
                if !x.is_finite() || x.abs() > bound {
                    return Err(NnError::FeatureOutOfRange {
                        sample: i,
                        feature: q,
                        value: x,
                        bound,
                    });
                }
                match &self.encoding {
                    InputEncoding::Standardized(s) => Ok(s.encode(q, raw, scale_x)?),
                    InputEncoding::Uniform(_) => {
                        codec.encode(x).map_err(|source| NnError::Encoding {
                            what: "input features",
                            source,
                            hint: "lower scale_x",
                        })
                    }
                }
            })
            .collect()
    }

    /// Writes example `i`, padded to 32x32 with black pixels and normalised by `norm`, into
    /// `out` (length 1024).
    ///
    /// # Panics
    /// If `i >= len()`, `out.len() != 1024` or the dataset is not MNIST bytes.
    pub fn write_padded_f32(&self, i: usize, out: &mut [f32], norm: &PixelNormalization) {
        assert_eq!(out.len(), PADDED_SIDE * PADDED_SIDE);
        let table: [f32; 256] = std::array::from_fn(|p| norm.apply(p as u8));
        out.fill(table[0]);
        for (r, row) in self.image(i).chunks_exact(IMAGE_SIDE).enumerate() {
            let start = (r + PADDING) * PADDED_SIDE + PADDING;
            for (o, &p) in out[start..start + IMAGE_SIDE].iter_mut().zip(row) {
                *o = table[usize::from(p)];
            }
        }
    }
}

/// A dataset's fixed training and test splits, encoded alike.
#[derive(Debug, Clone)]
pub struct DatasetSplit {
    /// The training split.
    pub train: Dataset,
    /// The test split.
    pub test: Dataset,
}

/// The names [`load_named`] knows.
pub const DATASETS: [&str; 3] = ["mnist", "breast-cancer", "digits"];

impl Dataset {
    /// A dataset of a table ([`crate::nn::datasets::Table`]): a `C x H x W` image if the table
    /// has an image shape, else flat features.
    ///
    /// # Errors
    /// As [`Dataset::from_f32`].
    pub fn from_table(
        table: &crate::nn::datasets::Table,
        encoding: InputEncoding,
    ) -> Result<Self, DataError> {
        let shape = match table.image_shape {
            Some((channels, height, width)) => InputShape::Image {
                channels,
                height,
                width,
            },
            None => InputShape::Flat(table.features),
        };
        Self::from_f32(
            shape,
            table.classes,
            table.values.clone(),
            table.labels.clone(),
            encoding,
        )
    }
}

/// Loads dataset `name` ([`DATASETS`]) from `dir` with its declared encoding:
///
/// | name | shape | classes | encoding |
/// |---|---|---|---|
/// | `mnist` | 1x28x28 bytes | 10 | uniform `(p - 33) / 80` ([`PixelNormalization::default`]) |
/// | `breast-cancer` | 30 features | 2 | per-feature standardisation fitted on the training split |
/// | `digits` | 1x8x8 (pixels 0..=16) | 10 | one mean and deviation for all pixels, fitted on the training split ([`Standardization::fit_uniform`]: the convolution's zero padding is the average pixel) |
///
/// The splits are fixed ([`crate::nn::datasets`]; MNIST's are its own files).
///
/// # Errors
/// [`DataError`] for an unknown name or a missing or malformed file.
pub fn load_named(name: &str, dir: &Path) -> Result<DatasetSplit, DataError> {
    use crate::nn::datasets::{load_breast_cancer, load_digits};
    match name {
        "mnist" => {
            let m = Mnist::load(dir)?;
            Ok(DatasetSplit {
                train: m.train,
                test: m.test,
            })
        }
        "breast-cancer" => encode_table_split(&load_breast_cancer(dir)?),
        "digits" => encode_table_split(&load_digits(dir)?),
        other => Err(DataError::Invalid(format!(
            "unknown dataset {other:?}; the datasets are {}",
            DATASETS.join(", ")
        ))),
    }
}

/// [`load_named`], then the first `train_size` examples of the training split (all if `None`)
/// and the first `test_size` of the test split (at most all: the drivers' default, 10,000, is
/// MNIST's test set): how every driver reads `--dataset`, `--train-size` and `--test-size`.
///
/// # Errors
/// As [`load_named`], and [`DataError::TooFewExamples`] if `train_size` exceeds the training
/// split.
pub fn load_named_subsets(
    name: &str,
    dir: &Path,
    train_size: Option<usize>,
    test_size: usize,
) -> Result<DatasetSplit, DataError> {
    let split = load_named(name, dir)?;
    let n = train_size.unwrap_or(split.train.len());
    let m = test_size.min(split.test.len());
    Ok(DatasetSplit {
        train: split.train.take(n, "training")?,
        test: split.test.take(m, "test")?,
    })
}

/// The datasets of a table split under its declared encoding, fitted on the training split:
/// per-feature [`Standardization::fit`] for a flat table, one mean and deviation for all pixels
/// ([`Standardization::fit_uniform`]) for images (see [`load_named`]).
///
/// # Errors
/// [`DataError`] if the encoding cannot be fitted (e.g. an empty training split) or a split
/// does not make a dataset.
pub fn encode_table_split(
    split: &crate::nn::datasets::TableSplit,
) -> Result<DatasetSplit, DataError> {
    let enc = if split.train.image_shape.is_some() {
        Standardization::fit_uniform(&split.train)?
    } else {
        Standardization::fit(&split.train)?
    };
    let encoding = InputEncoding::Standardized(enc);
    Ok(DatasetSplit {
        train: Dataset::from_table(&split.train, encoding.clone())?,
        test: Dataset::from_table(&split.test, encoding)?,
    })
}

/// MNIST's training and test sets.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// 60,000 training examples.
    pub train: Dataset,
    /// 10,000 test examples.
    pub test: Dataset,
}

impl Mnist {
    /// Loads the four IDX files from `dir` (see the module docs for names and format).
    ///
    /// # Errors
    /// A [`DataError`] naming the first file that is missing, unreadable, corrupt or truncated.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        Ok(Self {
            train: load_pair(dir, TRAIN_IMAGES, TRAIN_LABELS)?,
            test: load_pair(dir, TEST_IMAGES, TEST_LABELS)?,
        })
    }

    /// [`Mnist::load`] from [`default_data_dir`].
    ///
    /// # Errors
    /// As [`Mnist::load`].
    pub fn load_default() -> Result<Self, DataError> {
        Self::load(&default_data_dir())
    }
}

/// Loads one image file and its label file from `dir`.
///
/// # Errors
/// A [`DataError`] naming the offending file.
pub fn load_pair(dir: &Path, images: &str, labels: &str) -> Result<Dataset, DataError> {
    let (img_path, img_dims, pixels) = read_idx(dir, images, 3)?;
    let (lab_path, lab_dims, labs) = read_idx(dir, labels, 1)?;
    mnist_set(img_path, &img_dims, pixels, lab_path, &lab_dims, labs)
}

/// One MNIST set from the bytes of its image file and its label file as read from
/// `image_path` and `label_path` (each gunzipped first if its name ends in `.gz`); errors name
/// the paths. This is the entry point for fuzzing.
///
/// # Errors
/// As [`load_pair`], without the I/O errors.
pub fn mnist_set_from_bytes(
    image_path: &Path,
    image_bytes: &[u8],
    label_path: &Path,
    label_bytes: &[u8],
) -> Result<Dataset, DataError> {
    let (img_dims, pixels) = parse_idx_file(image_path, image_bytes, 3)?;
    let (lab_dims, labs) = parse_idx_file(label_path, label_bytes, 1)?;
    mnist_set(
        image_path.to_path_buf(),
        &img_dims,
        pixels,
        label_path.to_path_buf(),
        &lab_dims,
        labs,
    )
}

/// Checks an image IDX file and a label IDX file against each other and MNIST's shape.
fn mnist_set(
    img_path: PathBuf,
    img_dims: &[usize],
    pixels: Vec<u8>,
    lab_path: PathBuf,
    lab_dims: &[usize],
    labs: Vec<u8>,
) -> Result<Dataset, DataError> {
    if img_dims[1] != IMAGE_SIDE || img_dims[2] != IMAGE_SIDE {
        return Err(DataError::Corrupt {
            path: img_path,
            reason: format!(
                "images are {}x{}, expected {IMAGE_SIDE}x{IMAGE_SIDE}",
                img_dims[1], img_dims[2]
            ),
        });
    }
    if lab_dims[0] != img_dims[0] {
        return Err(DataError::CountMismatch {
            images: img_path,
            n_images: img_dims[0],
            labels: lab_path,
            n_labels: lab_dims[0],
        });
    }
    if let Some(&l) = labs.iter().find(|&&l| usize::from(l) >= CLASSES) {
        return Err(DataError::Corrupt {
            path: lab_path,
            reason: format!("label {l} is not a digit 0..=9"),
        });
    }
    Dataset::from_bytes(
        InputShape::MNIST,
        CLASSES,
        pixels,
        labs,
        InputEncoding::default(),
    )
}

/// Reads `dir/name.gz` (or `dir/name`) as an IDX file of unsigned bytes with `ndim` dimensions.
/// Returns the path read, the dimensions and the data.
///
/// # Errors
/// [`DataError::Missing`], [`DataError::Io`], [`DataError::Corrupt`] or [`DataError::Truncated`].
pub fn read_idx(
    dir: &Path,
    name: &str,
    ndim: u8,
) -> Result<(PathBuf, Vec<usize>, Vec<u8>), DataError> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    let path = if gz.exists() {
        gz
    } else if raw.exists() {
        raw
    } else {
        return Err(DataError::Missing { path: gz });
    };
    let bytes = std::fs::read(&path).map_err(|source| DataError::Io {
        path: path.clone(),
        source,
    })?;
    let (dims, data) = parse_idx_file(&path, &bytes, ndim)?;
    Ok((path, dims, data))
}

/// Parses the bytes of an IDX file as read from `path`: gunzipped first (at most
/// [`MAX_IDX_BYTES`]) if the name ends in `.gz`.
///
/// # Errors
/// As [`parse_idx`], and [`DataError::Corrupt`] for a damaged gzip stream or one that
/// decompresses to more than [`MAX_IDX_BYTES`].
pub fn parse_idx_file(
    path: &Path,
    bytes: &[u8],
    ndim: u8,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    if path.extension().is_some_and(|e| e == "gz") {
        parse_idx(path, &gunzip(path, bytes, MAX_IDX_BYTES)?, ndim)
    } else {
        parse_idx(path, bytes, ndim)
    }
}

/// The most bytes an IDX file may hold after decompression (MNIST's largest holds 47,040,016).
pub const MAX_IDX_BYTES: usize = 256 << 20;

/// Decompresses a gzip file, refusing more than `limit` bytes of output.
fn gunzip(path: &Path, bytes: &[u8], limit: usize) -> Result<Vec<u8>, DataError> {
    if bytes.len() < 2 || bytes[..2] != [0x1f, 0x8b] {
        return Err(DataError::Corrupt {
            path: path.to_path_buf(),
            reason: "not a gzip file (bad magic bytes)".into(),
        });
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(8).min(limit));
    flate2::read::GzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::Corrupt {
            path: path.to_path_buf(),
            reason: if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "gzip stream ends early (the file is truncated)".into()
            } else {
                format!("gzip stream: {e}")
            },
        })?;
    if out.len() > limit {
        return Err(DataError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("decompresses to more than {limit} bytes"),
        });
    }
    Ok(out)
}

/// Parses the bytes of an IDX file of unsigned bytes with `ndim` dimensions.
///
/// # Errors
/// [`DataError::Corrupt`] on a bad header or trailing bytes, [`DataError::Truncated`] if the
/// data is shorter than the header announces.
pub fn parse_idx(path: &Path, bytes: &[u8], ndim: u8) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let header_len = 4 + 4 * usize::from(ndim);
    if bytes.len() < header_len {
        return Err(corrupt(format!(
            "{} bytes, shorter than the {header_len}-byte IDX header",
            bytes.len()
        )));
    }
    if bytes[..4] != [0, 0, 0x08, ndim] {
        return Err(corrupt(format!(
            "IDX magic {:02x?}, expected [00, 00, 08, {ndim:02x}] (unsigned bytes, {ndim} dimensions)",
            &bytes[..4]
        )));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| corrupt(format!("dimensions {dims:?} overflow")))?;
    let found = bytes.len() - header_len;
    if found < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: expected as u64,
            found: found as u64,
        });
    }
    if found > expected {
        return Err(corrupt(format!(
            "{} trailing bytes after the {expected} announced by the header",
            found - expected
        )));
    }
    Ok((dims, bytes[header_len..].to_vec()))
}

/// First word of a label-permutation file.
const LABEL_FILE_MAGIC: &str = "CNNPERM1";

/// Why a label permutation could not be made, read or kept.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LabelFileError {
    /// The file could not be read or written.
    #[error("label permutation file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file may be read by group or others.
    #[error("label permutation file {path}: mode {mode:o} lets others read the data owner's secret; chmod 600 it")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a label permutation.
    #[error(
        "label permutation file {path} is malformed (expected `CNNPERM1 <classes> π(0) π(1) …`)"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The mapping is not a permutation of its classes.
    #[error("the label mapping is not a permutation")]
    NotAPermutation,
    /// Too many classes (or none).
    #[error("a label permutation of {got} classes; at most {supported} are supported")]
    Classes {
        /// The most classes supported.
        supported: usize,
        /// Classes given.
        got: usize,
    },
}

/// A secret permutation `π` of the classes (CryptoNN's random label mapping).
#[derive(Clone, PartialEq, Eq)]
pub struct LabelPermutation {
    forward: Vec<u8>,
    inverse: Vec<u8>,
}

impl std::fmt::Debug for LabelPermutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The mapping is the data owner's secret.
        f.write_str("LabelPermutation { .. }")
    }
}

impl LabelPermutation {
    /// The identity mapping of `classes` classes (at most 256).
    #[must_use]
    pub fn identity(classes: usize) -> Self {
        let id: Vec<u8> = (0..classes.min(256)).map(|i| i as u8).collect();
        Self {
            forward: id.clone(),
            inverse: id,
        }
    }

    /// A uniformly random permutation of `classes` classes (at most 256) drawn from `seed`
    /// (ChaCha8, its own stream). For 10 classes it is the mapping every earlier version drew.
    #[must_use]
    pub fn from_seed(seed: u64, classes: usize) -> Self {
        let mut forward: Vec<u8> = (0..classes.min(256)).map(|i| i as u8).collect();
        forward.shuffle(&mut seeded_rng(seed, RngStream::LabelPermutation));
        Self::from_forward(forward)
    }

    fn from_forward(forward: Vec<u8>) -> Self {
        let mut inverse = vec![0u8; forward.len()];
        for (y, &k) in forward.iter().enumerate() {
            inverse[usize::from(k)] = y as u8;
        }
        Self { forward, inverse }
    }

    /// A uniformly random permutation of `classes` classes (1 to 256) drawn from the operating
    /// system's RNG: the data owner's secret, never derivable from a run seed. Keep it with
    /// [`write_new`](Self::write_new).
    ///
    /// # Errors
    /// [`LabelFileError::Classes`] for no classes or more than 256.
    pub fn from_os_rng(classes: usize) -> Result<Self, LabelFileError> {
        if classes == 0 || classes > 256 {
            return Err(LabelFileError::Classes {
                supported: 256,
                got: classes,
            });
        }
        let mut forward: Vec<u8> = (0..classes).map(|i| i as u8).collect();
        forward.shuffle(&mut rand::rngs::OsRng);
        Self::checked_from_forward(&forward)
    }

    /// The permutation with `π(i) = forward[i]`.
    ///
    /// # Errors
    /// [`LabelFileError::Classes`] for an empty or over-long mapping,
    /// [`LabelFileError::NotAPermutation`] unless `forward` is a permutation of
    /// `0..forward.len()`.
    pub fn checked_from_forward(forward: &[u8]) -> Result<Self, LabelFileError> {
        if forward.is_empty() || forward.len() > 256 {
            return Err(LabelFileError::Classes {
                supported: 256,
                got: forward.len(),
            });
        }
        let mut seen = vec![false; forward.len()];
        for &k in forward {
            let slot = seen
                .get_mut(usize::from(k))
                .ok_or(LabelFileError::NotAPermutation)?;
            if *slot {
                return Err(LabelFileError::NotAPermutation);
            }
            *slot = true;
        }
        Ok(Self::from_forward(forward.to_vec()))
    }

    /// The mapping `(π(0), π(1), …)`.
    #[must_use]
    pub fn forward(&self) -> Vec<u8> {
        self.forward.clone()
    }

    /// Number of classes.
    #[must_use]
    pub fn classes(&self) -> usize {
        self.forward.len()
    }

    /// Writes the permutation to a new file `path` (`CNNPERM1 <classes> π(0) π(1) …`), created
    /// exclusively with mode 0600 (its directory, if missing, with mode 0700).
    ///
    /// # Errors
    /// [`LabelFileError::Io`], e.g. if `path` already exists.
    pub fn write_new(&self, path: &Path) -> Result<(), LabelFileError> {
        use std::io::Write;
        let io = |source| LabelFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir).map_err(io)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(io)?;
        let mut line = format!("{LABEL_FILE_MAGIC} {}", self.classes());
        for k in &self.forward {
            line.push_str(&format!(" {k}"));
        }
        line.push('\n');
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Reads a permutation written by [`write_new`](Self::write_new), refusing a file that
    /// group or others may read.
    ///
    /// # Errors
    /// [`LabelFileError::Io`], [`LabelFileError::InsecurePermissions`],
    /// [`LabelFileError::Malformed`], or the errors of [`checked_from_forward`](Self::checked_from_forward).
    pub fn read_file(path: &Path) -> Result<Self, LabelFileError> {
        let io = |source| LabelFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(LabelFileError::InsecurePermissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let malformed = || LabelFileError::Malformed {
            path: path.to_path_buf(),
        };
        let mut fields = text.split_whitespace();
        if fields.next() != Some(LABEL_FILE_MAGIC) {
            return Err(malformed());
        }
        let classes: usize = fields
            .next()
            .and_then(|c| c.parse().ok())
            .ok_or_else(malformed)?;
        let forward = fields
            .map(str::parse::<u8>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| malformed())?;
        if forward.len() != classes {
            return Err(malformed());
        }
        Self::checked_from_forward(&forward)
    }

    /// The data owner's permutation kept in `path`: read it if the file exists, else draw a
    /// fresh one ([`from_os_rng`](Self::from_os_rng)) and write it there
    /// ([`write_new`](Self::write_new)). Returns it and whether it was created.
    ///
    /// # Errors
    /// As [`read_file`](Self::read_file) and [`write_new`](Self::write_new).
    pub fn load_or_create(path: &Path, classes: usize) -> Result<(Self, bool), LabelFileError> {
        if path.exists() {
            return Ok((Self::read_file(path)?, false));
        }
        let p = Self::from_os_rng(classes)?;
        p.write_new(path)?;
        Ok((p, true))
    }

    /// `π(label)`: the class the network is trained to predict for a true label.
    ///
    /// # Panics
    /// If `label >= classes()`.
    #[must_use]
    pub fn apply(&self, label: u8) -> u8 {
        self.forward[usize::from(label)]
    }

    /// `π⁻¹(class)`: the true label of a predicted class.
    ///
    /// # Panics
    /// If `class >= classes()`.
    #[must_use]
    pub fn invert(&self, class: u8) -> u8 {
        self.inverse[usize::from(class)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_round_trips_and_is_a_bijection() {
        let p = LabelPermutation::from_seed(7, CLASSES);
        let mut seen = [false; CLASSES];
        for y in 0..CLASSES as u8 {
            assert_eq!(p.invert(p.apply(y)), y);
            seen[usize::from(p.apply(y))] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_ne!(
            p,
            LabelPermutation::identity(CLASSES),
            "seed 7 should not give the identity"
        );
        assert_eq!(format!("{p:?}"), "LabelPermutation { .. }");
    }

    #[test]
    fn gzip_output_is_bounded() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&[0u8; 4096]).unwrap();
        let gz = e.finish().unwrap();
        let p = Path::new("x.gz");
        assert_eq!(gunzip(p, &gz, 4096).unwrap().len(), 4096);
        let err = gunzip(p, &gz, 4095).unwrap_err();
        assert!(
            matches!(&err, DataError::Corrupt { reason, .. } if reason.contains("more than 4095")),
            "{err}"
        );
    }

    #[test]
    fn an_mnist_set_parses_from_bytes() {
        let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
        images.extend((0..2 * 784).map(|i| (i % 256) as u8));
        let (ip, lp) = (Path::new("i"), Path::new("l"));
        let set = mnist_set_from_bytes(ip, &images, lp, &[0, 0, 8, 1, 0, 0, 0, 2, 7, 3]).unwrap();
        assert_eq!((set.len(), set.label(1), set.image(1)[0]), (2, 3, 16));
        // A label beyond 9, a count mismatch, an image of another side: typed errors.
        let err = mnist_set_from_bytes(ip, &images, lp, &[0, 0, 8, 1, 0, 0, 0, 2, 7, 10]);
        assert!(matches!(err, Err(DataError::Corrupt { .. })));
        let err = mnist_set_from_bytes(ip, &images, lp, &[0, 0, 8, 1, 0, 0, 0, 1, 7]);
        assert!(matches!(err, Err(DataError::CountMismatch { .. })));
        images[11] = 27;
        let err = mnist_set_from_bytes(ip, &images, lp, &[0, 0, 8, 1, 0, 0, 0, 2, 7, 3]);
        assert!(matches!(err, Err(DataError::Corrupt { .. })));
        // A name ending in .gz is gunzipped: these bytes are no gzip stream.
        let err = mnist_set_from_bytes(Path::new("i.gz"), &images, lp, &[0; 9]);
        assert!(matches!(err, Err(DataError::Corrupt { reason, .. }) if reason.contains("gzip")));
    }

    #[test]
    fn parse_rejects_bad_headers() {
        let p = Path::new("x");
        assert!(matches!(
            parse_idx(p, &[0, 0, 8, 1, 0, 0, 0, 2, 5], 1),
            Err(DataError::Truncated {
                expected: 2,
                found: 1,
                ..
            })
        ));
        assert!(matches!(
            parse_idx(p, &[0, 0, 9, 1, 0, 0, 0, 1, 5], 1),
            Err(DataError::Corrupt { .. })
        ));
        assert!(matches!(
            parse_idx(p, &[0, 0, 8, 1, 0, 0, 0, 1, 5, 6], 1),
            Err(DataError::Corrupt { .. })
        ));
        let (dims, data) = parse_idx(p, &[0, 0, 8, 1, 0, 0, 0, 2, 5, 6], 1).unwrap();
        assert_eq!((dims, data), (vec![2], vec![5, 6]));
    }

    #[test]
    fn padding_places_the_image_in_the_centre() {
        let mut img = vec![0u8; IMAGE_PIXELS];
        img[0] = 255;
        img[IMAGE_PIXELS - 1] = 51;
        let d = Dataset::new(img, vec![3]).unwrap();
        let mut out = vec![1.0f32; PADDED_SIDE * PADDED_SIDE];
        d.write_padded_f32(0, &mut out, &PixelNormalization::unit());
        assert_eq!(out[PADDING * PADDED_SIDE + PADDING], 1.0);
        assert_eq!(out[(PADDING + 27) * PADDED_SIDE + PADDING + 27], 0.2);
        assert_eq!(out.iter().filter(|&&v| v != 0.0).count(), 2);
        d.write_padded_f32(0, &mut out, &PixelNormalization::default());
        assert_eq!(out[0], -33.0 / 80.0);
        assert_eq!(out[PADDING * PADDED_SIDE + PADDING], (255.0 - 33.0) / 80.0);
        assert_eq!(format!("{d:?}"), "Dataset { len: 1, .. }");
    }
}
