//! Finding the data directory at run time.
//!
//! In order, the first that applies wins:
//!
//! 1. the directory passed in (a command-line flag); it must exist;
//! 2. the environment variable [`DATA_DIR_ENV`] (`CRYPTONN_DATA_DIR`), if set and non-empty; it
//!    must exist;
//! 3. `data/` in the current directory or the nearest parent directory where `data/` holds the
//!    MNIST training images ([`MARKER`], gzipped or not): the repository's `data/` when run
//!    from anywhere inside a clone;
//! 4. last, the `data/` of the crate's source tree at compile time, only if it still exists
//!    (a binary moved to another machine, or the crate built as a dependency, has none).
//!
//! An explicit directory (1 or 2) that does not exist is an error rather than a silent fall
//! back, so a typo is not masked by the committed data. When nothing applies, the error lists
//! every place tried.

use std::path::{Path, PathBuf};

use super::error::DatasetError;
use crate::nn::error::DataError;

/// The environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "CRYPTONN_DATA_DIR";

/// The file whose presence marks a `data/` directory as the repository's (its `.gz`, or the
/// uncompressed file).
pub const MARKER: &str = crate::nn::data::TRAIN_IMAGES;

/// Resolves the data directory from `flag`, the environment, the current directory and the
/// compile-time source tree (see the [module docs](self)).
///
/// # Errors
/// [`DatasetError::DataDirNotFound`] listing what was tried.
pub fn resolve_data_dir(flag: Option<&Path>) -> Result<PathBuf, DataError> {
    let env = std::env::var_os(DATA_DIR_ENV);
    let cwd = std::env::current_dir().ok();
    let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
    resolve_data_dir_from(
        flag,
        env.as_deref().map(Path::new),
        cwd.as_deref(),
        Some(&compiled),
    )
}

/// [`resolve_data_dir`] with its inputs given: `env` is the value of [`DATA_DIR_ENV`] (if set),
/// `start` the directory to search upwards from (the current directory), `compiled` the last
/// resort. For tests and for callers that keep their own environment.
///
/// # Errors
/// [`DatasetError::DataDirNotFound`] listing what was tried.
pub fn resolve_data_dir_from(
    flag: Option<&Path>,
    env: Option<&Path>,
    start: Option<&Path>,
    compiled: Option<&Path>,
) -> Result<PathBuf, DataError> {
    let not_found =
        |tried: Vec<String>| -> DataError { DatasetError::DataDirNotFound { tried }.into() };
    if let Some(dir) = flag {
        return if dir.is_dir() {
            Ok(dir.to_path_buf())
        } else {
            Err(not_found(vec![format!(
                "the directory given, {}: not a directory",
                dir.display()
            )]))
        };
    }
    if let Some(dir) = env.filter(|d| !d.as_os_str().is_empty()) {
        return if dir.is_dir() {
            Ok(dir.to_path_buf())
        } else {
            Err(not_found(vec![format!(
                "{DATA_DIR_ENV}={}: not a directory",
                dir.display()
            )]))
        };
    }
    let mut tried = vec![format!("no directory given, {DATA_DIR_ENV} not set")];
    match start {
        Some(start) => {
            if let Some(dir) = start
                .ancestors()
                .map(|a| a.join("data"))
                .find(|d| holds_marker(d))
            {
                return Ok(dir);
            }
            tried.push(format!(
                "data/ in {} and its parents: none holds {MARKER}.gz",
                start.display()
            ));
        }
        None => tried.push("the current directory: unknown".into()),
    }
    match compiled {
        Some(dir) if dir.is_dir() => return Ok(dir.to_path_buf()),
        Some(dir) => tried.push(format!(
            "the source tree's {}: does not exist here",
            dir.display()
        )),
        None => {}
    }
    Err(not_found(tried))
}

fn holds_marker(dir: &Path) -> bool {
    dir.join(format!("{MARKER}.gz")).is_file() || dir.join(MARKER).is_file()
}
