//! A strict reader for the numeric CSV files of `data/`, and gzip with a size limit.
//!
//! Each line is `f_1,...,f_F,label`: `F` finite numbers and an integer class. Lines end with `\n`
//! (a `\r` before it is dropped); the last line may lack it. Fields may carry spaces around
//! them. Nothing else is accepted: no quoting, no empty lines, no comments. Every error names the
//! file and the 1-based line (and column).

use std::io::Read;
use std::path::Path;

use super::error::DatasetError;

/// The most bytes a data file may hold after decompression (the shipped files hold < 1 MiB).
pub(crate) const MAX_FILE_BYTES: usize = 64 << 20;

/// Cuts text for an error message.
fn excerpt(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    } else {
        s.into_owned()
    }
}

/// The lines of `bytes`, numbered from 1, without line ends.
///
/// A final empty line (the file ends with `\n`) is not yielded; any other empty line is.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = body.is_empty() && bytes.len() <= 1;
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(move |_| !empty)
}

/// The text of a header line, for comparison and error messages.
pub(crate) fn header_text(line: &[u8]) -> String {
    excerpt(line, 200)
}

/// What a feature column may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Domain {
    /// Any finite number `>= 0`.
    NonNegative,
    /// An integer in `0..=max`.
    IntegerUpTo(u8),
}

impl Domain {
    fn admits(self, v: f32) -> bool {
        match self {
            Self::NonNegative => v >= 0.0,
            Self::IntegerUpTo(max) => v >= 0.0 && v <= f32::from(max) && v.fract() == 0.0,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::NonNegative => "a non-negative measurement",
            Self::IntegerUpTo(16) => "an integer pixel count 0..=16",
            Self::IntegerUpTo(_) => "an integer in the dataset's range",
        }
    }
}

/// One parsed file: `rows x features` values and a label per row.
pub(crate) struct Parsed {
    pub values: Vec<f32>,
    pub labels: Vec<u8>,
}

/// Parses the rows `(line number, text)` of a file with `features` feature columns in `domain`
/// and a label column in `0..classes`.
pub(crate) fn parse_rows<'a>(
    path: &Path,
    rows: impl Iterator<Item = (usize, &'a [u8])>,
    features: usize,
    domain: Domain,
    classes: usize,
) -> Result<Parsed, DatasetError> {
    let mut values = Vec::new();
    let mut labels = Vec::new();
    let columns = features + 1;
    for (line, text) in rows {
        let fields: Vec<&[u8]> = text.split(|&b| b == b',').collect();
        if fields.len() != columns {
            return Err(DatasetError::ColumnCount {
                path: path.to_path_buf(),
                line,
                expected: columns,
                found: fields.len(),
            });
        }
        for (i, field) in fields.iter().enumerate() {
            let column = i + 1;
            let field = field.trim_ascii();
            if i < features {
                let v = parse_number(path, line, column, field)?;
                if !domain.admits(v) {
                    return Err(DatasetError::ValueOutOfRange {
                        path: path.to_path_buf(),
                        line,
                        column,
                        value: v,
                        expected: domain.describe(),
                    });
                }
                values.push(v);
            } else {
                labels.push(parse_label(path, line, column, field, classes)?);
            }
        }
    }
    Ok(Parsed { values, labels })
}

/// A finite `f32`.
fn parse_number(
    path: &Path,
    line: usize,
    column: usize,
    field: &[u8],
) -> Result<f32, DatasetError> {
    let not_a_number = || DatasetError::NotANumber {
        path: path.to_path_buf(),
        line,
        column,
        text: excerpt(field, 40),
    };
    let text = std::str::from_utf8(field).map_err(|_| not_a_number())?;
    let v: f32 = text.parse().map_err(|_| not_a_number())?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(DatasetError::NonFinite {
            path: path.to_path_buf(),
            line,
            column,
            text: excerpt(field, 40),
        })
    }
}

/// An integer class `0..classes` (written `3` or `3.0`).
fn parse_label(
    path: &Path,
    line: usize,
    column: usize,
    field: &[u8],
    classes: usize,
) -> Result<u8, DatasetError> {
    let bad = || DatasetError::BadLabel {
        path: path.to_path_buf(),
        line,
        column,
        text: excerpt(field, 40),
        classes,
    };
    let v: f64 = std::str::from_utf8(field)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(bad)?;
    if v.fract() == 0.0 && v >= 0.0 && v < classes as f64 && v < 256.0 {
        Ok(v as u8)
    } else {
        Err(bad())
    }
}

/// Examples per class.
pub(crate) fn class_counts(labels: &[u8], classes: usize) -> Vec<usize> {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(usize::from(l)) {
            *c += 1;
        }
    }
    counts
}

/// Checks the row count and the examples per class against the dataset's.
pub(crate) fn check_counts(
    path: &Path,
    labels: &[u8],
    rows: usize,
    per_class: &[usize],
) -> Result<(), DatasetError> {
    if labels.len() != rows {
        return Err(DatasetError::RowCount {
            path: path.to_path_buf(),
            expected: rows,
            found: labels.len(),
        });
    }
    let found = class_counts(labels, per_class.len());
    if found != per_class {
        return Err(DatasetError::ClassCounts {
            path: path.to_path_buf(),
            expected: per_class.to_vec(),
            found,
        });
    }
    Ok(())
}

/// Decompresses a gzip file, refusing more than [`MAX_FILE_BYTES`].
pub(crate) fn gunzip(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DatasetError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|source| DatasetError::Decompress {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() > MAX_FILE_BYTES {
        return Err(DatasetError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(out)
}

/// Reads a file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DatasetError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DatasetError::Missing {
                path: path.to_path_buf(),
            })
        }
        Ok(m) if m.len() > MAX_FILE_BYTES as u64 => {
            return Err(DatasetError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_FILE_BYTES,
            })
        }
        _ => {}
    }
    std::fs::read(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_and_the_final_newline_is_optional() {
        let l: Vec<_> = lines(b"a\r\nb\n").collect();
        assert_eq!(l, vec![(1, &b"a"[..]), (2, &b"b"[..])]);
        let l: Vec<_> = lines(b"a\n\nb").collect();
        assert_eq!(l, vec![(1, &b"a"[..]), (2, &b""[..]), (3, &b"b"[..])]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n").count(), 0);
    }

    #[test]
    fn labels_must_be_integer_classes() {
        let p = Path::new("f");
        assert_eq!(parse_label(p, 1, 2, b"3.0", 10).unwrap(), 3);
        for bad in [&b"10"[..], b"-1", b"2.5", b"x", b"NaN", b"300"] {
            assert!(matches!(
                parse_label(p, 1, 2, bad, 10),
                Err(DatasetError::BadLabel { .. })
            ));
        }
    }

    #[test]
    fn a_blank_line_is_a_column_count_error() {
        let p = Path::new("f");
        let e = parse_rows(p, lines(b"1,0\n\n2,1\n"), 1, Domain::NonNegative, 2);
        assert!(matches!(
            e,
            Err(DatasetError::ColumnCount {
                line: 2,
                expected: 2,
                found: 1,
                ..
            })
        ));
    }
}
