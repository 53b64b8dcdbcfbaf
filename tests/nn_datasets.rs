//! Table datasets: the committed breast-cancer and digits files, their fixed splits, the
//! declared standardisation encoding, malformed files, and the run-time data directory.
//!
//! Reference values (class counts, split counts, the rows quoted) were read from scikit-learn
//! 1.9.1's `breast_cancer.csv` and `digits.csv.gz` with a few lines of Python (see
//! data/README.md); the class counts are also the ones scikit-learn's dataset descriptions give.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cryptonn::nn::data::TRAIN_IMAGES;
use cryptonn::nn::datasets::{
    breast_cancer, digits, fixed_split, load_breast_cancer, load_digits,
    parse_breast_cancer_from_bytes, parse_digits_csv_from_bytes, parse_digits_from_bytes,
    resolve_data_dir, resolve_data_dir_from, DatasetError, Standardization, Table, TableSplit,
};
use cryptonn::nn::DataError;
use proptest::prelude::*;

fn data_dir() -> PathBuf {
    // Integration tests run in the crate root, so this is the run-time search, not a baked path.
    resolve_data_dir(None).expect("the repository's data/ is found from the crate root")
}

fn bc() -> &'static TableSplit {
    static S: OnceLock<TableSplit> = OnceLock::new();
    S.get_or_init(|| load_breast_cancer(&data_dir()).expect("breast_cancer.csv loads"))
}

fn dg() -> &'static TableSplit {
    static S: OnceLock<TableSplit> = OnceLock::new();
    S.get_or_init(|| load_digits(&data_dir()).expect("digits.csv.gz loads"))
}

fn bc_bytes() -> Vec<u8> {
    fs::read(data_dir().join(breast_cancer::FILE)).expect("read breast_cancer.csv")
}

fn digits_csv() -> Vec<u8> {
    use std::io::Read;
    let gz = fs::read(data_dir().join(digits::FILE)).expect("read digits.csv.gz");
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// The text with line `line` (1-based) replaced by `f(old line)`.
fn edit_line(bytes: &[u8], line: usize, f: impl Fn(&str) -> String) -> Vec<u8> {
    let text = std::str::from_utf8(bytes).expect("utf-8");
    let mut out: Vec<String> = text.lines().map(str::to_owned).collect();
    out[line - 1] = f(&out[line - 1]);
    (out.join("\n") + "\n").into_bytes()
}

/// The line with column `column` (1-based) replaced by `v`.
fn set_field(line: &str, column: usize, v: &str) -> String {
    let mut f: Vec<&str> = line.split(',').collect();
    f[column - 1] = v;
    f.join(",")
}

fn dataset_err<T: std::fmt::Debug>(r: Result<T, DataError>) -> DatasetError {
    match r {
        Err(DataError::Dataset(e)) => e,
        other => panic!("expected a dataset error, got {other:?}"),
    }
}

/// A fresh scratch directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cryptonn-nn-datasets-{}-{name}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

// ---------------------------------------------------------------------------------------------
// The committed files and the fixed split

#[test]
fn breast_cancer_loads_with_its_shape_counts_and_split() {
    let s = bc();
    for t in [&s.train, &s.test] {
        assert_eq!((t.features, t.classes, t.image_shape), (30, 2, None));
        t.validate().unwrap();
    }
    assert_eq!((s.train.len(), s.test.len()), (456, 113));
    assert_eq!(s.train.class_counts(), vec![170, 286]);
    assert_eq!(s.test.class_counts(), vec![42, 71]);
    // File rows 0 and 4 (0-based, after the header): row 4 is the 5th malignant example, the
    // first test example.
    assert_eq!(&s.train.row(0)[..2], &[17.99, 10.38]);
    assert_eq!(s.train.labels[0], 0);
    assert_eq!(&s.test.row(0)[..2], &[20.29, 14.34]);
    assert_eq!(&s.test.row(s.test.len() - 1)[..2], &[20.13, 28.25]);
    assert!(s.train.values.iter().all(|&v| v >= 0.0 && v.is_finite()));
}

#[test]
fn digits_load_as_8x8_images_with_their_split() {
    let s = dg();
    for t in [&s.train, &s.test] {
        assert_eq!(
            (t.features, t.classes, t.image_shape),
            (64, 10, Some((1, 8, 8)))
        );
        assert!(t
            .values
            .iter()
            .all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0));
    }
    assert_eq!((s.train.len(), s.test.len()), (1442, 355));
    assert_eq!(
        s.train.class_counts(),
        vec![143, 146, 142, 147, 145, 146, 145, 144, 140, 144]
    );
    assert_eq!(
        s.test.class_counts(),
        vec![35, 36, 35, 36, 36, 36, 36, 35, 34, 36]
    );
    assert_eq!(
        &s.train.row(0)[..8],
        &[0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
    );
    // The first test example is file row 33, the 5th five.
    assert_eq!(s.test.labels[0], 5);
    assert_eq!(&s.test.row(0)[..4], &[0.0, 6.0, 13.0, 5.0]);
    // Pinned sums over the test split (computed in Python from the same file and rule).
    assert_eq!(
        s.test.values.iter().map(|&v| f64::from(v)).sum::<f64>(),
        111_152.0
    );
    assert_eq!(
        s.test.labels.iter().map(|&l| u32::from(l)).sum::<u32>(),
        1595
    );
}

#[test]
fn fixed_split_takes_every_fifth_example_of_each_class() {
    // Labels: ten 0s interleaved with six 1s; the values record the file index.
    let labels: Vec<u8> = vec![0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 0];
    let t = Table {
        features: 1,
        classes: 2,
        values: (0..labels.len()).map(|i| i as f32).collect(),
        labels: labels.clone(),
        image_shape: None,
    };
    let s = fixed_split(&t).unwrap();
    // Class 0 at indices 0,1,3,4,6,9,11,12,14,15: ranks 4 and 9 are indices 6 and 15.
    // Class 1 at indices 2,5,7,8,10,13: rank 4 is index 10.
    assert_eq!(s.test.values, vec![6.0, 10.0, 15.0]);
    assert_eq!(s.test.labels, vec![0, 1, 0]);
    assert_eq!(s.train.len(), 13);
    assert!(
        s.train.values.windows(2).all(|w| w[0] < w[1]),
        "file order kept"
    );
    // An inconsistent table is refused, not split.
    let bad = Table {
        labels: vec![0, 2],
        values: vec![1.0, 2.0],
        ..t
    };
    assert!(matches!(
        dataset_err(fixed_split(&bad)),
        DatasetError::InconsistentTable(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// Malformed files: each gets its typed error, naming the file and the place

#[test]
fn breast_cancer_malformed_inputs_get_typed_errors() {
    let good = bc_bytes();
    assert_eq!(parse_breast_cancer_from_bytes(&good).unwrap().len(), 569);

    // Wrong column count on line 3 (the 2nd example).
    let e = dataset_err(parse_breast_cancer_from_bytes(&edit_line(&good, 3, |l| {
        l.rsplit_once(',').expect("a comma").0.to_owned()
    })));
    assert!(
        matches!(
            e,
            DatasetError::ColumnCount {
                line: 3,
                expected: 31,
                found: 30,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("breast_cancer.csv, line 3"), "{msg}");

    // NaN and infinity.
    for v in ["NaN", "inf", "-inf", "1e39"] {
        let e = dataset_err(parse_breast_cancer_from_bytes(&edit_line(&good, 5, |l| {
            set_field(l, 2, v)
        })));
        assert!(
            matches!(
                e,
                DatasetError::NonFinite {
                    line: 5,
                    column: 2,
                    ..
                }
            ),
            "{v}: {e:?}"
        );
    }
    // Not a number.
    let e = dataset_err(parse_breast_cancer_from_bytes(&edit_line(&good, 7, |l| {
        set_field(l, 30, "1.2.5")
    })));
    assert!(
        matches!(
            e,
            DatasetError::NotANumber {
                line: 7,
                column: 30,
                ..
            }
        ),
        "{e:?}"
    );
    // A negative measurement.
    let e = dataset_err(parse_breast_cancer_from_bytes(&edit_line(&good, 2, |l| {
        set_field(l, 4, "-1001")
    })));
    assert!(
        matches!(
            e,
            DatasetError::ValueOutOfRange {
                line: 2,
                column: 4,
                value,
                ..
            } if value == -1001.0
        ),
        "{e:?}"
    );
    // Labels out of range or not integers.
    for v in ["2", "-1", "0.5", "benign"] {
        let e = dataset_err(parse_breast_cancer_from_bytes(&edit_line(&good, 10, |l| {
            set_field(l, 31, v)
        })));
        assert!(
            matches!(
                e,
                DatasetError::BadLabel {
                    line: 10,
                    column: 31,
                    classes: 2,
                    ..
                }
            ),
            "{v}: {e:?}"
        );
    }
    // The header.
    let e = dataset_err(parse_breast_cancer_from_bytes(&edit_line(&good, 1, |_| {
        "570,30,malignant,benign".into()
    })));
    assert!(matches!(e, DatasetError::Header { .. }), "{e:?}");
    // A missing example, and a relabelled one.
    let text = String::from_utf8(good.clone()).unwrap();
    let fewer: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|&(i, _)| i != 1)
        .map(|(_, l)| l)
        .collect();
    let e = dataset_err(parse_breast_cancer_from_bytes(fewer.join("\n").as_bytes()));
    assert!(
        matches!(
            e,
            DatasetError::RowCount {
                expected: 569,
                found: 568,
                ..
            }
        ),
        "{e:?}"
    );
    let e = dataset_err(parse_breast_cancer_from_bytes(&edit_line(&good, 2, |l| {
        set_field(l, 31, "1")
    })));
    match e {
        DatasetError::ClassCounts {
            expected, found, ..
        } => {
            assert_eq!((expected, found), (vec![212, 357], vec![211, 358]));
        }
        other => panic!("{other:?}"),
    }
    // Empty input.
    assert!(matches!(
        dataset_err(parse_breast_cancer_from_bytes(b"")),
        DatasetError::Header { .. }
    ));
    // CRLF line ends are accepted.
    let crlf = String::from_utf8(good).unwrap().replace('\n', "\r\n");
    assert_eq!(
        parse_breast_cancer_from_bytes(crlf.as_bytes())
            .unwrap()
            .len(),
        569
    );
}

#[test]
fn digits_malformed_inputs_get_typed_errors() {
    let csv = digits_csv();
    let gz = fs::read(data_dir().join(digits::FILE)).unwrap();
    assert_eq!(parse_digits_from_bytes(&gz).unwrap().len(), 1797);
    assert_eq!(parse_digits_csv_from_bytes(&csv).unwrap().len(), 1797);

    // Truncated and corrupted gzip streams, and bytes that are not gzip at all.
    for cut in [gz.len() - 1, gz.len() - 9, gz.len() / 2, 10] {
        let e = dataset_err(parse_digits_from_bytes(&gz[..cut]));
        assert!(matches!(e, DatasetError::Decompress { .. }), "{cut}: {e:?}");
        assert!(e.to_string().contains("digits.csv.gz"), "{e}");
    }
    let mut flipped = gz.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    assert!(matches!(
        dataset_err(parse_digits_from_bytes(&flipped)),
        DatasetError::Decompress { .. }
    ));
    assert!(matches!(
        dataset_err(parse_digits_from_bytes(&csv)),
        DatasetError::Decompress { .. }
    ));

    // Pixels outside 0..=16 or not integers.
    for v in ["17", "-1", "2.5"] {
        let e = dataset_err(parse_digits_from_bytes(&gzip(&edit_line(&csv, 4, |l| {
            set_field(l, 9, v)
        }))));
        assert!(
            matches!(
                e,
                DatasetError::ValueOutOfRange {
                    line: 4,
                    column: 9,
                    ..
                }
            ),
            "{v}: {e:?}"
        );
    }
    // NaN, wrong column count, label out of range.
    let e = dataset_err(parse_digits_csv_from_bytes(&edit_line(&csv, 8, |l| {
        set_field(l, 64, "nan")
    })));
    assert!(
        matches!(
            e,
            DatasetError::NonFinite {
                line: 8,
                column: 64,
                ..
            }
        ),
        "{e:?}"
    );
    let e = dataset_err(parse_digits_csv_from_bytes(&edit_line(&csv, 8, |l| {
        format!("{l},0")
    })));
    assert!(
        matches!(
            e,
            DatasetError::ColumnCount {
                line: 8,
                expected: 65,
                found: 66,
                ..
            }
        ),
        "{e:?}"
    );
    let e = dataset_err(parse_digits_csv_from_bytes(&edit_line(&csv, 8, |l| {
        set_field(l, 65, "10")
    })));
    assert!(
        matches!(
            e,
            DatasetError::BadLabel {
                line: 8,
                column: 65,
                classes: 10,
                ..
            }
        ),
        "{e:?}"
    );
    // An extra copy of a row changes the count.
    let mut more = csv.clone();
    more.extend_from_slice(csv.split(|&b| b == b'\n').next().unwrap());
    assert!(matches!(
        dataset_err(parse_digits_csv_from_bytes(&more)),
        DatasetError::RowCount {
            expected: 1797,
            found: 1798,
            ..
        }
    ));
}

#[test]
fn missing_files_are_named_and_the_uncompressed_digits_are_read() {
    let dir = scratch("missing");
    let e = dataset_err(load_breast_cancer(&dir));
    match &e {
        DatasetError::Missing { path } => assert_eq!(path, &dir.join("breast_cancer.csv")),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("breast_cancer.csv"));
    match dataset_err(load_digits(&dir)) {
        DatasetError::Missing { path } => assert_eq!(path, dir.join("digits.csv.gz")),
        other => panic!("{other:?}"),
    }
    // digits.csv (uncompressed) is read when the .gz is absent; a bad one names its file.
    fs::write(dir.join("digits.csv"), digits_csv()).unwrap();
    assert_eq!(load_digits(&dir).unwrap(), *dg());
    fs::write(dir.join("digits.csv"), b"1,2\n").unwrap();
    match dataset_err(load_digits(&dir)) {
        DatasetError::ColumnCount { path, line: 1, .. } => {
            assert_eq!(path, dir.join("digits.csv"));
        }
        other => panic!("{other:?}"),
    }
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// The declared encoding

#[test]
fn standardisation_fitted_on_train_centres_and_scales_it() {
    let s = &bc().train;
    let enc = Standardization::fit(s).unwrap();
    assert_eq!(enc.features(), 30);
    let z = enc.normalize_table(s).unwrap();
    for f in 0..30 {
        let col: Vec<f64> = (0..z.len()).map(|i| f64::from(z.row(i)[f])).collect();
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / col.len() as f64;
        assert!(mean.abs() < 1e-5, "feature {f}: mean {mean}");
        assert!((var - 1.0).abs() < 1e-4, "feature {f}: variance {var}");
    }
    // Feature 0 (mean radius) by hand: mean and population deviation of the column in f64.
    let col: Vec<f64> = (0..s.len()).map(|i| f64::from(s.row(i)[0])).collect();
    let m = col.iter().sum::<f64>() / col.len() as f64;
    let sd = (col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / col.len() as f64).sqrt();
    assert_eq!(enc.mean()[0], m);
    assert!((enc.std()[0] - sd).abs() <= 1e-12 * sd);
}

#[test]
fn a_constant_feature_is_only_centred() {
    let d = &dg().train;
    let enc = Standardization::fit(d).unwrap();
    // Pixel (0, 0) is 0 in every training image: σ = 0 is replaced by 1.
    assert!(d.values.chunks_exact(64).all(|r| r[0] == 0.0));
    assert_eq!((enc.mean()[0], enc.std()[0]), (0.0, 1.0));
    assert_eq!(enc.encode(0, 0.0, 16.0).unwrap(), 0);
    assert_eq!(enc.encode(0, 3.0, 16.0).unwrap(), 48);
    // Uniform: one mean and deviation for all pixels.
    let u = Standardization::fit_uniform(d).unwrap();
    assert!(u.mean().iter().all(|&m| m == u.mean()[0]));
    assert!(u.std().iter().all(|&s| s == u.std()[0] && s > 1.0));
}

#[test]
fn encoding_rounds_the_standardised_value_and_matches_normalize() {
    let t = Table {
        features: 2,
        classes: 2,
        values: vec![0.0, 10.0, 4.0, 10.0],
        labels: vec![0, 1],
        image_shape: None,
    };
    let enc = Standardization::fit(&t).unwrap();
    assert_eq!(enc.mean(), &[2.0, 10.0]);
    assert_eq!(enc.std(), &[2.0, 1.0]);
    // z = (x - 2) / 2; round half away from zero.
    assert_eq!(enc.encode(0, 3.0, 3.0).unwrap(), 2); // 1.5 -> 2
    assert_eq!(enc.encode(0, 1.0, 3.0).unwrap(), -2); // -1.5 -> -2
    assert_eq!(enc.encode(0, 2.5, 3.0).unwrap(), 1); // 0.75 -> 1
    assert_eq!(enc.encode_row(&[4.0, 9.0], 8.0).unwrap(), vec![8, -8]);
    assert_eq!(enc.normalize(0, 4.0), 1.0);
    assert_eq!(enc.normalize_row(&[0.0, 12.0]).unwrap(), vec![-1.0, 2.0]);

    // On the real test splits: the default range covers them, and xq / S_x is within half a step
    // of the plain input.
    for (split, s_x) in [(bc(), 16.0), (dg(), 64.0)] {
        let enc = Standardization::fit(&split.train).unwrap();
        for i in 0..split.test.len() {
            let row = split.test.row(i);
            let xq = enc.encode_row(row, s_x).unwrap();
            let x = enc.normalize_row(row).unwrap();
            for (q, v) in xq.iter().zip(&x) {
                assert!((*q as f64 / s_x - f64::from(*v)).abs() <= 0.5 / s_x + 1e-6);
            }
        }
    }
}

#[test]
fn out_of_range_and_non_finite_features_are_errors_naming_the_feature() {
    let enc = Standardization::fit(&bc().train)
        .unwrap()
        .with_feature_names(breast_cancer::FEATURE_NAMES)
        .unwrap();
    // Feature 3 (mean area): 100 standard deviations above the mean.
    let huge = (enc.mean()[3] + 100.0 * enc.std()[3]) as f32;
    let e = dataset_err(enc.encode(3, huge, 16.0));
    match &e {
        DatasetError::FeatureOutOfRange {
            feature: 3,
            name,
            z,
            max_abs_z,
            ..
        } => {
            assert_eq!(name.as_deref(), Some("mean area"));
            assert!((z - 100.0).abs() < 1e-3 && *max_abs_z == 64.0);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("feature 3 (mean area)"), "{e}");
    // The same value is refused by the plain path too.
    assert!(enc.normalize_row(&[huge; 30]).is_err());
    // A wider declared range accepts it.
    let wide = enc.clone().with_max_abs_z(128.0).unwrap();
    assert_eq!(wide.encode(3, huge, 1.0).unwrap(), 100);
    // NaN and infinities.
    for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert!(matches!(
            dataset_err(enc.encode(7, v, 16.0)),
            DatasetError::FeatureNotFinite { feature: 7, .. }
        ));
    }
    // An integer beyond 2^53 is refused even within the range.
    let z_ok = (enc.mean()[0] + enc.std()[0]) as f32;
    assert!(matches!(
        dataset_err(enc.encode(0, z_ok, 1e17)),
        DatasetError::FeatureOutOfRange { feature: 0, .. }
    ));
    // Bad scales, a missing feature, a short row.
    for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            dataset_err(enc.encode(0, 1.0, s)),
            DatasetError::InvalidParameter(_)
        ));
    }
    assert!(matches!(
        dataset_err(enc.encode(30, 1.0, 16.0)),
        DatasetError::FeatureIndex {
            feature: 30,
            features: 30
        }
    ));
    assert!(matches!(
        dataset_err(enc.encode_row(&[1.0; 29], 16.0)),
        DatasetError::InconsistentTable(_)
    ));
}

#[test]
fn encoding_parameters_are_validated_and_round_trip_through_serde() {
    let enc = Standardization::fit(&bc().train)
        .unwrap()
        .with_feature_names(breast_cancer::FEATURE_NAMES)
        .unwrap();
    let json = serde_json::to_string(&enc).unwrap();
    let back: Standardization = serde_json::from_str(&json).unwrap();
    assert_eq!(back, enc);
    // A zero deviation, a NaN mean, mismatched lengths or a bad range are refused on load.
    for bad in [
        r#"{"mean":[1.0],"std":[0.0],"max_abs_z":64.0}"#,
        r#"{"mean":[1.0,2.0],"std":[1.0],"max_abs_z":64.0}"#,
        r#"{"mean":[],"std":[],"max_abs_z":64.0}"#,
        r#"{"mean":[1.0],"std":[1.0],"max_abs_z":-1.0}"#,
        r#"{"mean":[1.0],"std":[1.0],"max_abs_z":64.0,"names":["a","b"]}"#,
    ] {
        assert!(
            serde_json::from_str::<Standardization>(bad).is_err(),
            "{bad}"
        );
    }
    assert!(Standardization::from_parts(vec![f64::NAN], vec![1.0], 8.0).is_err());
    assert!(enc.clone().with_feature_names(["one"]).is_err());
    // Fitting needs a consistent, non-empty table.
    let empty = Table {
        features: 3,
        classes: 2,
        values: vec![],
        labels: vec![],
        image_shape: None,
    };
    assert!(matches!(
        dataset_err(Standardization::fit(&empty)),
        DatasetError::InconsistentTable(_)
    ));
    let nan = Table {
        values: vec![1.0, f32::NAN, 2.0],
        labels: vec![0],
        ..empty
    };
    assert!(Standardization::fit(&nan).is_err());
}

// ---------------------------------------------------------------------------------------------
// The data directory

#[test]
fn data_dir_resolution_order_and_errors() {
    let root = scratch("resolve");
    let repo_data = root.join("repo").join("data");
    let deep = root.join("repo").join("a").join("b");
    fs::create_dir_all(&repo_data).unwrap();
    fs::create_dir_all(&deep).unwrap();
    fs::write(repo_data.join(format!("{TRAIN_IMAGES}.gz")), b"").unwrap();
    let other = root.join("other");
    fs::create_dir_all(other.join("data")).unwrap(); // a data/ without MNIST: not taken
    let compiled = root.join("compiled");
    fs::create_dir_all(&compiled).unwrap();
    let nowhere = root.join("nowhere");

    // 1. The flag wins, and a flag that is not a directory is an error (no fall back).
    let r = resolve_data_dir_from(Some(&other), Some(&compiled), Some(&deep), None).unwrap();
    assert_eq!(r, other);
    let e = dataset_err(resolve_data_dir_from(
        Some(&nowhere),
        Some(&compiled),
        Some(&deep),
        Some(&compiled),
    ));
    assert!(matches!(e, DatasetError::DataDirNotFound { ref tried } if tried.len() == 1));
    assert!(e.to_string().contains("nowhere"), "{e}");
    // 2. Then the environment variable (an empty one is unset).
    assert_eq!(
        resolve_data_dir_from(None, Some(&compiled), Some(&deep), None).unwrap(),
        compiled
    );
    assert!(resolve_data_dir_from(None, Some(&nowhere), Some(&deep), Some(&compiled)).is_err());
    // 3. Then data/ holding MNIST, searched upwards.
    assert_eq!(
        resolve_data_dir_from(None, Some(Path::new("")), Some(&deep), Some(&compiled)).unwrap(),
        repo_data
    );
    // 4. Then the compile-time path, only if it exists; otherwise an error listing the tries.
    assert_eq!(
        resolve_data_dir_from(None, None, Some(&other), Some(&compiled)).unwrap(),
        compiled
    );
    let e = dataset_err(resolve_data_dir_from(
        None,
        None,
        Some(&other),
        Some(&nowhere),
    ));
    match &e {
        DatasetError::DataDirNotFound { tried } => assert_eq!(tried.len(), 3, "{tried:?}"),
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("CRYPTONN_DATA_DIR") && msg.contains("nowhere"),
        "{msg}"
    );
    let _ = fs::remove_dir_all(&root);

    // From the crate root, the run-time search finds the repository's data/.
    let found = resolve_data_dir(None).unwrap();
    assert!(found.join(format!("{TRAIN_IMAGES}.gz")).is_file());
    assert!(found.join(breast_cancer::FILE).is_file());
}

// ---------------------------------------------------------------------------------------------
// Fuzz-style: arbitrary or damaged bytes give an error or a table, never a panic

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(parse_breast_cancer_from_bytes(&bytes).is_err());
        prop_assert!(parse_digits_from_bytes(&bytes).is_err());
        prop_assert!(parse_digits_csv_from_bytes(&bytes).is_err());
    }

    #[test]
    fn damaged_files_never_panic(pos in 0usize..119_913, byte in any::<u8>(), cut in 0usize..57_523) {
        let mut b = bc_bytes();
        let p = pos % b.len();
        b[p] = byte;
        if let Ok(t) = parse_breast_cancer_from_bytes(&b) {
            // Whatever is accepted is a consistent table of the right shape.
            t.validate().unwrap();
            prop_assert_eq!((t.len(), t.features), (569, 30));
        }
        let gz = fs::read(data_dir().join(digits::FILE)).unwrap();
        prop_assert!(parse_digits_from_bytes(&gz[..cut % gz.len()]).is_err());
    }
}
