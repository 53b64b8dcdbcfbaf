//! Why a table dataset could not be found, loaded or encoded.

use std::path::PathBuf;

use thiserror::Error;

/// What to do about a bad committed data file.
const HINT: &str = "restore the committed copy with `git checkout -- data/`, or fetch it again as \
                    described in data/README.md";

/// Why a table dataset (breast cancer, digits) could not be found, parsed, checked or encoded.
///
/// Every error about a file names the file; errors about one value name its line and column
/// (both 1-based, counting the header line). Encoding errors name the feature.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// The file does not exist.
    #[error("data file {path} is missing; {HINT}, or point the data directory elsewhere")]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read data file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The gzip stream is damaged or ends early (a truncated file).
    #[error("data file {path}: the gzip stream is damaged or truncated ({source}); {HINT}")]
    Decompress {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        #[source]
        source: std::io::Error,
    },
    /// The file (after decompression) is larger than any valid copy could be.
    #[error("data file {path} holds more than {limit} bytes, far more than the dataset; {HINT}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: usize,
    },
    /// The header line is not the one the dataset's file carries.
    #[error("data file {path}, line 1: header {found:?}, expected {expected:?}; {HINT}")]
    Header {
        /// The file.
        path: PathBuf,
        /// The header the dataset's file carries.
        expected: String,
        /// The header found (cut to 200 characters).
        found: String,
    },
    /// A line does not hold the expected number of comma-separated columns.
    #[error("data file {path}, line {line}: {found} columns, expected {expected}; {HINT}")]
    ColumnCount {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The columns a line must hold (features, then the label).
        expected: usize,
        /// The columns found.
        found: usize,
    },
    /// A value is not a number.
    #[error("data file {path}, line {line}, column {column}: {text:?} is not a number; {HINT}")]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The column (1-based).
        column: usize,
        /// The text found (cut to 40 characters).
        text: String,
    },
    /// A value is NaN or infinite (or too large for an `f32`).
    #[error(
        "data file {path}, line {line}, column {column}: {text:?} is not a finite number; {HINT}"
    )]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The column (1-based).
        column: usize,
        /// The text found (cut to 40 characters).
        text: String,
    },
    /// A feature value lies outside the dataset's domain (e.g. a digits pixel outside 0..=16).
    #[error(
        "data file {path}, line {line}, column {column}: value {value} is out of range, \
         expected {expected}; {HINT}"
    )]
    ValueOutOfRange {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The column (1-based).
        column: usize,
        /// The value.
        value: f32,
        /// The domain, in words.
        expected: &'static str,
    },
    /// A label is not an integer class `0..classes`.
    #[error(
        "data file {path}, line {line}, column {column}: label {text:?} is not a class \
         0..={max}; {HINT}",
        max = .classes.saturating_sub(1)
    )]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The column (1-based).
        column: usize,
        /// The text found (cut to 40 characters).
        text: String,
        /// The number of classes.
        classes: usize,
    },
    /// The file holds the wrong number of examples.
    #[error("data file {path} holds {found} examples, expected {expected}; {HINT}")]
    RowCount {
        /// The file.
        path: PathBuf,
        /// The dataset's number of examples.
        expected: usize,
        /// The number found.
        found: usize,
    },
    /// The examples per class are not the dataset's.
    #[error("data file {path} holds {found:?} examples per class, expected {expected:?}; {HINT}")]
    ClassCounts {
        /// The file.
        path: PathBuf,
        /// The dataset's examples per class.
        expected: Vec<usize>,
        /// The numbers found.
        found: Vec<usize>,
    },
    /// An in-memory [`Table`](super::Table) is inconsistent (lengths, labels, image shape).
    #[error("inconsistent table: {0}")]
    InconsistentTable(String),
    /// A feature index is outside the encoding's features.
    #[error("feature {feature} does not exist: the encoding has {features} features")]
    FeatureIndex {
        /// The index asked for.
        feature: usize,
        /// The number of features.
        features: usize,
    },
    /// A raw feature value is NaN or infinite.
    #[error("feature {feature}{} is {value}, not a finite number", name_suffix(.name.as_deref()))]
    FeatureNotFinite {
        /// The feature index.
        feature: usize,
        /// Its name, if the encoding knows it.
        name: Option<String>,
        /// The value.
        value: f32,
    },
    /// A feature standardises outside the declared encodable range `|z| <= max_abs_z`, or its
    /// fixed-point encoding would not be exact.
    #[error(
        "feature {feature}{} = {value} standardises to {z:.3}, outside the encodable range \
         |z| <= {max_abs_z} (at scale {scale}); check the value, or declare a wider range",
        name_suffix(.name.as_deref())
    )]
    FeatureOutOfRange {
        /// The feature index.
        feature: usize,
        /// Its name, if the encoding knows it.
        name: Option<String>,
        /// The raw value.
        value: f32,
        /// The standardised value `(value - mean) / std`.
        z: f64,
        /// The declared bound on `|z|`.
        max_abs_z: f64,
        /// The fixed-point scale asked for.
        scale: f64,
    },
    /// A parameter of the encoding is invalid (a scale, a bound, a mean or a deviation).
    #[error("invalid standardisation parameter: {0}")]
    InvalidParameter(String),
    /// No data directory was found.
    #[error(
        "no data directory found; tried {}. Pass the directory explicitly or set CRYPTONN_DATA_DIR",
        .tried.join("; ")
    )]
    DataDirNotFound {
        /// Each place tried, and why it was not used.
        tried: Vec<String>,
    },
}

fn name_suffix(name: Option<&str>) -> String {
    name.map(|n| format!(" ({n})")).unwrap_or_default()
}
