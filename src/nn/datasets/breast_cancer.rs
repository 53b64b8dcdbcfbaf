//! Wisconsin diagnostic breast cancer (WDBC): 569 examples, 30 features, 2 classes.
//!
//! The file is scikit-learn's `breast_cancer.csv`, kept as shipped: a header line
//! `569,30,malignant,benign` (rows, features, then the class names in label order), then one line
//! per example of 30 non-negative measurements and the label (0 = malignant, 1 = benign).

use std::path::Path;

use super::csv::{self, Domain};
use super::error::DatasetError;
use super::{fixed_split, Table, TableSplit};
use crate::nn::error::DataError;

/// The file name in the data directory.
pub const FILE: &str = "breast_cancer.csv";
/// Examples in the file.
pub const ROWS: usize = 569;
/// Features per example.
pub const FEATURES: usize = 30;
/// Classes: 0 = malignant, 1 = benign.
pub const CLASSES: usize = 2;
/// Examples per class in the file: 212 malignant, 357 benign.
pub const CLASS_COUNTS: [usize; CLASSES] = [212, 357];
/// Class names in label order.
pub const CLASS_NAMES: [&str; CLASSES] = ["malignant", "benign"];
/// The header line of the file.
pub const HEADER: &str = "569,30,malignant,benign";

/// The 30 feature names in column order: the mean, the standard error and the worst value of ten
/// measurements of the cell nuclei (scikit-learn's `feature_names`).
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "mean radius",
    "mean texture",
    "mean perimeter",
    "mean area",
    "mean smoothness",
    "mean compactness",
    "mean concavity",
    "mean concave points",
    "mean symmetry",
    "mean fractal dimension",
    "radius error",
    "texture error",
    "perimeter error",
    "area error",
    "smoothness error",
    "compactness error",
    "concavity error",
    "concave points error",
    "symmetry error",
    "fractal dimension error",
    "worst radius",
    "worst texture",
    "worst perimeter",
    "worst area",
    "worst smoothness",
    "worst compactness",
    "worst concavity",
    "worst concave points",
    "worst symmetry",
    "worst fractal dimension",
];

/// Parses and checks the bytes of `breast_cancer.csv`; errors name `path`.
///
/// # Errors
/// [`DatasetError::Header`], [`DatasetError::ColumnCount`], [`DatasetError::NotANumber`],
/// [`DatasetError::NonFinite`], [`DatasetError::ValueOutOfRange`] (a negative measurement),
/// [`DatasetError::BadLabel`], [`DatasetError::RowCount`] or [`DatasetError::ClassCounts`].
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Table, DataError> {
    let mut lines = csv::lines(bytes);
    let header = lines.next().map(|(_, l)| l).unwrap_or_default();
    // Compare field by field, so that spaces or a trailing `\r` are tolerated as in the rows.
    let fields: Vec<&[u8]> = header
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .collect();
    let expected: Vec<&[u8]> = HEADER.split(',').map(str::as_bytes).collect();
    if fields != expected {
        return Err(DatasetError::Header {
            path: path.to_path_buf(),
            expected: HEADER.to_owned(),
            found: csv::header_text(header),
        }
        .into());
    }
    let parsed = csv::parse_rows(path, lines, FEATURES, Domain::NonNegative, CLASSES)?;
    csv::check_counts(path, &parsed.labels, ROWS, &CLASS_COUNTS)?;
    Ok(Table {
        features: FEATURES,
        classes: CLASSES,
        values: parsed.values,
        labels: parsed.labels,
        image_shape: None,
    })
}

/// Parses and checks the bytes of `breast_cancer.csv` (all 569 examples, unsplit); errors name
/// [`FILE`]. This is the entry point for fuzzing.
///
/// # Errors
/// As [`parse`].
pub fn parse_breast_cancer_from_bytes(bytes: &[u8]) -> Result<Table, DataError> {
    parse(Path::new(FILE), bytes)
}

/// Loads `dir/breast_cancer.csv` and cuts it by the fixed split (456 training, 113 test
/// examples; see the [module docs](super)).
///
/// # Errors
/// [`DatasetError::Missing`] or [`DatasetError::Io`] for the file, or any error of [`parse`].
pub fn load(dir: &Path) -> Result<TableSplit, DataError> {
    let path = dir.join(FILE);
    let bytes = csv::read_file(&path)?;
    fixed_split(&parse(&path, &bytes)?)
}
