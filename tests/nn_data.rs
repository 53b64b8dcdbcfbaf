//! MNIST loading: the committed files, and missing, corrupt and truncated files.
//!
//! Reference figures (label counts) are MNIST's published ones, also checked by
//! `data/convert.py` (see data/README.md).

use std::fs;
use std::path::{Path, PathBuf};

use cryptonn::nn::data::{
    default_data_dir, Mnist, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};
use cryptonn::nn::DataError;

/// A fresh scratch directory holding copies of the four committed files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptonn-nn-data-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    for f in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let gz = format!("{f}.gz");
        fs::copy(default_data_dir().join(&gz), dir.join(&gz)).expect("copy MNIST file");
    }
    dir
}

fn gunzip(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(path).expect("open"))
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

#[test]
fn committed_files_load_with_the_published_statistics() {
    let m = Mnist::load_default().unwrap();
    assert_eq!(m.train.len(), 60_000);
    assert_eq!(m.test.len(), 10_000);
    let mut counts = [0usize; 10];
    m.train
        .labels()
        .iter()
        .for_each(|&l| counts[usize::from(l)] += 1);
    assert_eq!(
        counts,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    let mut counts = [0usize; 10];
    m.test
        .labels()
        .iter()
        .for_each(|&l| counts[usize::from(l)] += 1);
    assert_eq!(
        counts,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let mean: f64 = (0..m.test.len())
        .flat_map(|i| m.test.image(i).iter().map(|&p| f64::from(p)))
        .sum::<f64>()
        / (10_000.0 * 784.0 * 255.0);
    assert!((mean - 0.1325).abs() < 5e-5, "test pixel mean {mean}");
}

#[test]
fn a_missing_file_is_named() {
    let dir = scratch("missing");
    fs::remove_file(dir.join(format!("{TEST_LABELS}.gz"))).unwrap();
    let err = Mnist::load(&dir).unwrap_err();
    match &err {
        DataError::Missing { path } => assert!(path.ends_with(format!("{TEST_LABELS}.gz"))),
        e => panic!("expected Missing, got {e:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(TEST_LABELS) && msg.contains("data/README.md"),
        "{msg}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_truncated_gzip_file_is_named() {
    let dir = scratch("truncated-gz");
    let path = dir.join(format!("{TEST_IMAGES}.gz"));
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Mnist::load(&dir).unwrap_err();
    assert!(
        matches!(&err, DataError::Corrupt { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_truncated_idx_file_is_named() {
    // An uncompressed file whose data is shorter than its header says.
    let dir = scratch("truncated-idx");
    let gz = dir.join(format!("{TRAIN_LABELS}.gz"));
    let raw = gunzip(&gz);
    fs::remove_file(&gz).unwrap();
    let path = dir.join(TRAIN_LABELS);
    fs::write(&path, &raw[..raw.len() - 100]).unwrap();
    let err = Mnist::load(&dir).unwrap_err();
    match &err {
        DataError::Truncated {
            path: p,
            expected,
            found,
        } => {
            assert_eq!(*p, path);
            assert_eq!((*expected, *found), (60_000, 59_900));
        }
        e => panic!("expected Truncated, got {e:?}"),
    }
    assert!(err.to_string().contains(TRAIN_LABELS));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupt_files_are_named() {
    // Not gzip at all.
    let dir = scratch("corrupt");
    let path = dir.join(format!("{TRAIN_IMAGES}.gz"));
    fs::write(&path, b"this is not a gzip file").unwrap();
    let err = Mnist::load(&dir).unwrap_err();
    assert!(
        matches!(&err, DataError::Corrupt { path: p, .. } if *p == path),
        "{err:?}"
    );

    // A valid gzip stream with a wrong IDX magic number (labels file given as images).
    fs::copy(dir.join(format!("{TRAIN_LABELS}.gz")), &path).unwrap();
    let err = Mnist::load(&dir).unwrap_err();
    assert!(
        matches!(&err, DataError::Corrupt { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("magic"), "{err}");

    // A label that is not a digit.
    let dir2 = scratch("bad-label");
    let gz = dir2.join(format!("{TEST_LABELS}.gz"));
    let mut raw = gunzip(&gz);
    raw[8 + 17] = 10;
    fs::remove_file(&gz).unwrap();
    fs::write(dir2.join(TEST_LABELS), &raw).unwrap();
    let err = Mnist::load(&dir2).unwrap_err();
    assert!(matches!(&err, DataError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(TEST_LABELS));
    fs::remove_dir_all(dir).unwrap();
    fs::remove_dir_all(dir2).unwrap();
}

#[test]
fn asking_for_too_many_examples_is_an_error() {
    let m = Mnist::load_default().unwrap();
    assert!(matches!(
        m.test.take(10_001, "test"),
        Err(DataError::TooFewExamples {
            requested: 10_001,
            available: 10_000,
            ..
        })
    ));
}
