//! Table datasets besides MNIST: Wisconsin diagnostic breast cancer and scikit-learn's 8x8
//! digits, with fixed train/test splits, their declared feature encoding, and the run-time
//! data directory.
//!
//! # Files
//!
//! Both files are committed in `data/` as scikit-learn ships them (sources, licences and
//! hashes in `data/README.md`). Loading checks the shape (columns per line), every value
//! (finite numbers in the dataset's domain, integer labels in range), the number of examples
//! and the number per class; a missing or malformed file is a [`DatasetError`] (inside
//! [`DataError::Dataset`]) naming the file, and the line and column where it applies.
//!
//! | dataset | file | examples | features | classes (examples per class) |
//! |---|---|---|---|---|
//! | [`breast_cancer`] | `breast_cancer.csv` | 569 | 30 | 0 malignant (212), 1 benign (357) |
//! | [`digits`] | `digits.csv.gz` | 1,797 | 64 = 1 x 8 x 8, pixels 0..=16 | digits 0..=9 (178, 182, 177, 183, 181, 182, 181, 179, 174, 180) |
//!
//! # Fixed split
//!
//! Every 5th example of each class is a test example: with `r` the 0-based rank of an example
//! among the examples of its class, in file order,
//!
//! ```text
//! test  = { examples with r mod 5 = 4 }      (TEST_EVERY = 5)
//! train = the others
//! ```
//!
//! both kept in file order. The rule is stratified (each class keeps its share, ±1), needs no
//! random generator, and is reproducible in any language. The counts:
//!
//! | dataset | train | test | test per class |
//! |---|---|---|---|
//! | breast cancer | 456 (170 malignant, 286 benign) | 113 | 42, 71 |
//! | digits | 1,442 (143, 146, 142, 147, 145, 146, 145, 144, 140, 144) | 355 | 35, 36, 35, 36, 36, 36, 36, 35, 34, 36 |
//!
//! # Encoding
//!
//! [`Standardization`]: per-feature `z = (x - μ) / σ` fitted by the data owner on the training
//! split, then `round(z · S_x)`; see [`standardize`] for the formulas and the declared range.
//!
//! # Data directory
//!
//! [`resolve_data_dir`]: a flag, then `CRYPTONN_DATA_DIR`, then the repository's `data/` found
//! from the current directory, then the compile-time source tree if it exists.
//!
//! ```
//! use cryptonn::nn::datasets::{load_breast_cancer, resolve_data_dir, Standardization};
//!
//! let dir = resolve_data_dir(None)?;
//! let split = load_breast_cancer(&dir)?;
//! assert_eq!((split.train.len(), split.test.len()), (456, 113));
//! let enc = Standardization::fit(&split.train)?;
//! let xq = enc.encode_row(split.test.row(0), 16.0)?;
//! assert_eq!(xq.len(), 30);
//! # Ok::<(), cryptonn::nn::DataError>(())
//! ```

use std::path::Path;

pub mod breast_cancer;
mod csv;
pub mod data_dir;
pub mod digits;
pub mod error;
pub mod standardize;

pub use breast_cancer::parse_breast_cancer_from_bytes;
pub use data_dir::{resolve_data_dir, resolve_data_dir_from, DATA_DIR_ENV};
pub use digits::{parse_digits_csv_from_bytes, parse_digits_from_bytes};
pub use error::DatasetError;
pub use standardize::Standardization;

use crate::nn::error::DataError;

/// One example in `TEST_EVERY` of each class is a test example (see the [module docs](self)).
pub const TEST_EVERY: usize = 5;

/// A table of examples: `len() x features` raw values, row-major, and a label per example.
#[derive(Clone, PartialEq)]
pub struct Table {
    /// Features per example.
    pub features: usize,
    /// Number of classes; every label is below it.
    pub classes: usize,
    /// Raw values, row-major `n x features`.
    pub values: Vec<f32>,
    /// One label per example.
    pub labels: Vec<u8>,
    /// `(channels, height, width)` for images (`channels · height · width = features`).
    pub image_shape: Option<(usize, usize, usize)>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The values are the data owner's records: a summary only.
        f.debug_struct("Table")
            .field("len", &self.len())
            .field("features", &self.features)
            .field("classes", &self.classes)
            .field("image_shape", &self.image_shape)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Number of examples.
    #[must_use]
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the table holds no example.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The raw values of example `i`.
    ///
    /// # Panics
    /// If `i >= len()` (or the table is inconsistent; see [`validate`](Self::validate)).
    #[must_use]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.features..(i + 1) * self.features]
    }

    /// Examples per class `0..classes`.
    #[must_use]
    pub fn class_counts(&self) -> Vec<usize> {
        csv::class_counts(&self.labels, self.classes)
    }

    /// Checks that the fields agree: `values.len() = len() · features`, every label below
    /// `classes`, every value finite, and the image shape (if any) has `features` pixels.
    ///
    /// # Errors
    /// [`DatasetError::InconsistentTable`] saying which.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |s: String| -> DataError { DatasetError::InconsistentTable(s).into() };
        if Some(self.values.len()) != self.labels.len().checked_mul(self.features) {
            return Err(bad(format!(
                "{} values for {} examples of {} features",
                self.values.len(),
                self.labels.len(),
                self.features
            )));
        }
        if let Some(l) = self
            .labels
            .iter()
            .find(|&&l| usize::from(l) >= self.classes)
        {
            return Err(bad(format!("label {l} with {} classes", self.classes)));
        }
        if let Some(i) = self.values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "value {} of example {} is not finite",
                self.values[i],
                i / self.features.max(1)
            )));
        }
        if let Some((c, h, w)) = self.image_shape {
            let pixels = c.checked_mul(h).and_then(|p| p.checked_mul(w));
            if pixels != Some(self.features) {
                return Err(bad(format!(
                    "image shape {c} x {h} x {w} for {} features",
                    self.features
                )));
            }
        }
        Ok(())
    }

    /// The examples at `indices`, in that order.
    fn select(&self, indices: &[usize]) -> Self {
        Self {
            values: indices
                .iter()
                .flat_map(|&i| self.row(i).iter().copied())
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone_shape()
        }
    }

    fn clone_shape(&self) -> Self {
        Self {
            features: self.features,
            classes: self.classes,
            values: Vec::new(),
            labels: Vec::new(),
            image_shape: self.image_shape,
        }
    }
}

/// A dataset cut into its fixed training and test splits.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSplit {
    /// The training split.
    pub train: Table,
    /// The test split.
    pub test: Table,
}

/// Cuts `table` by the fixed split rule: the example whose 0-based rank `r` within its class
/// (in table order) has `r mod TEST_EVERY = TEST_EVERY - 1` goes to the test split, every other
/// to the training split; both keep table order.
///
/// # Errors
/// [`DatasetError::InconsistentTable`] if the table fails [`Table::validate`].
pub fn fixed_split(table: &Table) -> Result<TableSplit, DataError> {
    table.validate()?;
    let mut rank = vec![0usize; table.classes];
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, &l) in table.labels.iter().enumerate() {
        let r = &mut rank[usize::from(l)];
        if *r % TEST_EVERY == TEST_EVERY - 1 {
            test.push(i);
        } else {
            train.push(i);
        }
        *r += 1;
    }
    Ok(TableSplit {
        train: table.select(&train),
        test: table.select(&test),
    })
}

/// Loads `dir/breast_cancer.csv`: 569 x 30, 2 classes, cut by the fixed split (456 / 113).
///
/// # Errors
/// A [`DatasetError`] naming the file (and line and column) if it is missing, unreadable or
/// malformed, or holds the wrong number of examples or examples per class.
pub fn load_breast_cancer(dir: &Path) -> Result<TableSplit, DataError> {
    breast_cancer::load(dir)
}

/// Loads `dir/digits.csv.gz`: 1,797 x 64 (1 x 8 x 8), 10 classes, cut by the fixed split
/// (1,442 / 355).
///
/// # Errors
/// As [`load_breast_cancer`], and [`DatasetError::Decompress`] for a damaged gzip stream.
pub fn load_digits(dir: &Path) -> Result<TableSplit, DataError> {
    digits::load(dir)
}
