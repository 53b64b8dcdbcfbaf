//! Error types of the neural-network module.

use std::path::PathBuf;

use thiserror::Error;

use crate::fe::encoding::EncodingError;

/// What to do about a bad MNIST file.
const DATA_HINT: &str = "restore the committed copy with `git checkout -- data/`, or regenerate \
                         it as described in data/README.md";

/// Why MNIST could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// Neither `NAME.gz` nor `NAME` exists.
    #[error("MNIST file {path} is missing; {DATA_HINT}, or pass the data directory (--data DIR)")]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read MNIST file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid (gzipped) IDX file of the expected kind.
    #[error("MNIST file {path} is corrupt: {reason}; {DATA_HINT}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file ends before the data its header announces.
    #[error(
        "MNIST file {path} is truncated: its header announces {expected} bytes of data, \
         found {found}; {DATA_HINT}"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes of data announced by the header.
        expected: u64,
        /// Bytes of data present.
        found: u64,
    },
    /// An image file and its label file disagree on the number of examples.
    #[error("{images} holds {n_images} images but {labels} holds {n_labels} labels")]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Its number of images.
        n_images: usize,
        /// The label file.
        labels: PathBuf,
        /// Its number of labels.
        n_labels: usize,
    },
    /// A dataset's values, labels or shape are inconsistent.
    #[error("invalid dataset: {0}")]
    Invalid(String),
    /// More examples were asked for than the set holds.
    #[error("asked for {requested} examples but the {set} set holds only {available}")]
    TooFewExamples {
        /// `"training"` or `"test"`.
        set: &'static str,
        /// How many were asked for.
        requested: usize,
        /// How many there are.
        available: usize,
    },
    /// A table dataset (breast cancer, digits), its encoding or the data directory failed.
    #[error(transparent)]
    Dataset(#[from] crate::nn::datasets::DatasetError),
}

/// Why a network operation or a training run failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NnError {
    /// Loading data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A tensor does not have the shape an operation needs.
    #[error("{what}: expected shape {expected}, got {found}")]
    Shape {
        /// Which tensor.
        what: &'static str,
        /// The expected shape.
        expected: String,
        /// The shape given.
        found: String,
    },
    /// A configuration value is out of its domain.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A real number could not be encoded as a fixed-point integer.
    #[error("cannot encode {what}: {source}; {hint}")]
    Encoding {
        /// Which quantity.
        what: &'static str,
        /// The encoding error.
        #[source]
        source: EncodingError,
        /// What to change.
        hint: &'static str,
    },
    /// An integer result of the quantised first layer exceeds its configured bound.
    #[error("{layer}: integer value {value} exceeds the configured bound {bound}; {hint}")]
    BoundExceeded {
        /// The layer and quantity, e.g. `"conv1 forward z"`.
        layer: &'static str,
        /// The offending value.
        value: i128,
        /// The bound.
        bound: u64,
        /// Which scale to lower.
        hint: &'static str,
    },
    /// Training produced NaN or an infinity.
    #[error("{what} is not finite (epoch {epoch}, batch {batch}); lower the learning rate (--lr)")]
    NonFinite {
        /// Which quantity.
        what: &'static str,
        /// The epoch (0-based).
        epoch: usize,
        /// The batch within the epoch (0-based).
        batch: usize,
    },
    /// An input feature cannot be encoded: its normalised value is not finite or exceeds the
    /// encoding's bound.
    #[error(
        "sample {sample} feature {feature}: normalised value {value} is outside the encodable \
         range ±{bound}"
    )]
    FeatureOutOfRange {
        /// The sample index.
        sample: usize,
        /// The feature index.
        feature: usize,
        /// The normalised value.
        value: f64,
        /// The bound.
        bound: f64,
    },
    /// A model declaration is invalid; the message names the layer.
    #[error("model {model}: {reason}")]
    Model {
        /// The model's name.
        model: String,
        /// What is wrong, naming the layer.
        reason: String,
    },
    /// A model file could not be read.
    #[error("cannot read model file {path}: {source}")]
    ModelFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A sample index lies outside the dataset.
    #[error("sample index {index} out of range for a dataset of {len}")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// The dataset length.
        len: usize,
    },
    /// A first-layer backend (e.g. the secure one) failed.
    #[error("first-layer backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Saving a checkpoint failed (the run stops rather than go on unsaved).
    #[error("checkpoint: {0}")]
    Checkpoint(#[source] Box<crate::nn::saved_model::SavedModelError>),
}

/// Returns a shape error unless `found == expected`.
pub(crate) fn check_shape(
    what: &'static str,
    expected: &[usize],
    found: &[usize],
) -> Result<(), NnError> {
    if expected == found {
        Ok(())
    } else {
        Err(NnError::Shape {
            what,
            expected: format!("{expected:?}"),
            found: format!("{found:?}"),
        })
    }
}
