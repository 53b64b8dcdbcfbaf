//! scikit-learn's 8x8 digits: 1,797 images of 1 x 8 x 8 pixel counts 0..=16, 10 classes.
//!
//! The file is scikit-learn's `digits.csv.gz`, kept as shipped: no header, one line per image of
//! 64 pixels (row-major, each an integer 0..=16: the number of set pixels in a 4x4 block of a
//! 32x32 bitmap) and the digit 0..=9. An uncompressed `digits.csv` is read when the `.gz` is
//! absent.

use std::path::Path;

use super::csv::{self, Domain};
use super::{fixed_split, Table, TableSplit};
use crate::nn::error::DataError;

/// The file name in the data directory.
pub const FILE: &str = "digits.csv.gz";
/// The uncompressed name, read when [`FILE`] is absent.
pub const FILE_UNCOMPRESSED: &str = "digits.csv";
/// Examples in the file.
pub const ROWS: usize = 1797;
/// Image shape (channels, height, width).
pub const IMAGE_SHAPE: (usize, usize, usize) = (1, 8, 8);
/// Features (pixels) per example.
pub const FEATURES: usize = 64;
/// Classes: the digits 0..=9.
pub const CLASSES: usize = 10;
/// The largest pixel value.
pub const MAX_PIXEL: u8 = 16;
/// Examples per digit 0..=9 in the file.
pub const CLASS_COUNTS: [usize; CLASSES] = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];

/// Parses and checks the uncompressed bytes of `digits.csv`; errors name `path`.
///
/// # Errors
/// [`DatasetError::ColumnCount`](super::DatasetError::ColumnCount), [`DatasetError::NotANumber`](super::DatasetError::NotANumber), [`DatasetError::NonFinite`](super::DatasetError::NonFinite),
/// [`DatasetError::ValueOutOfRange`](super::DatasetError::ValueOutOfRange) (a pixel not an integer 0..=16), [`DatasetError::BadLabel`](super::DatasetError::BadLabel),
/// [`DatasetError::RowCount`](super::DatasetError::RowCount) or [`DatasetError::ClassCounts`](super::DatasetError::ClassCounts).
pub fn parse_csv(path: &Path, bytes: &[u8]) -> Result<Table, DataError> {
    let parsed = csv::parse_rows(
        path,
        csv::lines(bytes),
        FEATURES,
        Domain::IntegerUpTo(MAX_PIXEL),
        CLASSES,
    )?;
    csv::check_counts(path, &parsed.labels, ROWS, &CLASS_COUNTS)?;
    Ok(Table {
        features: FEATURES,
        classes: CLASSES,
        values: parsed.values,
        labels: parsed.labels,
        image_shape: Some(IMAGE_SHAPE),
    })
}

/// Parses and checks the gzipped bytes of `digits.csv.gz` (all 1,797 examples, unsplit); errors
/// name [`FILE`]. This is the entry point for fuzzing.
///
/// # Errors
/// [`DatasetError::Decompress`](super::DatasetError::Decompress) for a damaged or truncated gzip stream,
/// [`DatasetError::TooLarge`](super::DatasetError::TooLarge), or any error of [`parse_csv`].
pub fn parse_digits_from_bytes(gz_bytes: &[u8]) -> Result<Table, DataError> {
    let path = Path::new(FILE);
    parse_csv(path, &csv::gunzip(path, gz_bytes)?)
}

/// [`parse_csv`] for uncompressed bytes; errors name [`FILE_UNCOMPRESSED`].
///
/// # Errors
/// As [`parse_csv`].
pub fn parse_digits_csv_from_bytes(bytes: &[u8]) -> Result<Table, DataError> {
    parse_csv(Path::new(FILE_UNCOMPRESSED), bytes)
}

/// Loads `dir/digits.csv.gz` (or `dir/digits.csv`) and cuts it by the fixed split (1,442
/// training, 355 test examples; see the [module docs](super)).
///
/// # Errors
/// [`DatasetError::Missing`](super::DatasetError::Missing) (naming the `.gz`) or [`DatasetError::Io`](super::DatasetError::Io) for the file, or any
/// error of [`parse_digits_from_bytes`] naming the file read.
pub fn load(dir: &Path) -> Result<TableSplit, DataError> {
    let gz = dir.join(FILE);
    let raw = dir.join(FILE_UNCOMPRESSED);
    let table = if !gz.exists() && raw.exists() {
        parse_csv(&raw, &csv::read_file(&raw)?)?
    } else {
        let bytes = csv::read_file(&gz)?;
        parse_csv(&gz, &csv::gunzip(&gz, &bytes)?)?
    };
    fixed_split(&table)
}
