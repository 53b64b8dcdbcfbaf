//! The contract of the benchmark report (`examples/bench_report`'s `report.json`): the dotted
//! keys it must hold (dotted = nested objects), their types, and the rule for figures that were
//! not measured — `null`, with the reason in `missing["<dotted key>"]`. Also checks that a
//! report directory holds every output file.
//!
//! Used by the example (`--check PATH`, and after every run) and by
//! `tests/bench_report_schema.rs`. It knows JSON only: no cryptography, no model.
//!
//! ```
//! use cryptonn::report_schema::{check, required_keys};
//! let problems = check(&serde_json::json!({})).unwrap_err();
//! assert!(problems.len() >= required_keys().len());
//! ```

use std::path::Path;

use serde_json::Value;

/// What a contract key must hold when it is not `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON number.
    Number,
    /// `true` or `false`.
    Bool,
}

/// The groups the FE section covers.
pub const GROUPS: [&str; 2] = ["ristretto", "modp2048"];

/// The per-group FE keys.
pub const FE_KEYS: [&str; 6] = [
    "decrypt_len25_us",
    "decrypt_len25_amortized_us",
    "encrypt_len785_ms",
    "dlog_table_build_s",
    "dlog_table_load_s",
    "paper_product_s",
];

/// The SVG plots every report contains.
pub const PLOTS: [&str; 4] = [
    "accuracy_per_epoch.svg",
    "epoch_seconds.svg",
    "secure_breakdown.svg",
    "privacy.svg",
];

/// Every contract key with its kind.
pub fn required_keys() -> Vec<(String, Kind)> {
    let mut keys: Vec<(String, Kind)> = Vec::new();
    for mode in ["plain", "quantized", "secure"] {
        keys.push((format!("training.{mode}.epoch_seconds"), Kind::Number));
        keys.push((format!("training.{mode}.test_accuracy"), Kind::Number));
    }
    keys.push(("training.secure.images_per_second".into(), Kind::Number));
    keys.push(("training.ratio_secure_to_plain".into(), Kind::Number));
    keys.push(("training.weights_identical".into(), Kind::Bool));
    for g in GROUPS {
        for k in FE_KEYS {
            keys.push((format!("fe.{g}.{k}"), Kind::Number));
        }
    }
    keys.push(("leakage.unrestricted.relative_error".into(), Kind::Number));
    keys.push(("leakage.policy.relative_error".into(), Kind::Number));
    keys.extend(architecture_keys());
    keys.extend(model_leakage_keys());
    keys.extend(scaling_keys());
    keys
}

/// `scaling.*`: images/s at 1, 2, 4, … threads up to the core count (the runs themselves are
/// in `scaling.runs`), the speed-ups from 1 thread to the most, and whether the weights were
/// identical at every thread count.
pub fn scaling_keys() -> Vec<(String, Kind)> {
    let mut keys: Vec<(String, Kind)> = [
        "train_size",
        "max_threads",
        "secure_speedup",
        "plain_speedup",
    ]
    .into_iter()
    .map(|k| (format!("scaling.{k}"), Kind::Number))
    .collect();
    keys.push(("scaling.weights_identical".into(), Kind::Bool));
    keys
}

/// The built-in (model, dataset) pairs every report has a row for.
pub const ARCHITECTURES: [(&str, &str); 5] = [
    ("lenet5", "mnist"),
    ("mlp", "mnist"),
    ("cnn-small", "mnist"),
    ("mlp", "breast-cancer"),
    ("cnn-small", "digits"),
];

/// The numeric keys of each `architectures.<model>.<dataset>` row (plus `weights_identical`,
/// a bool).
pub const ARCHITECTURE_KEYS: [&str; 9] = [
    "plain_accuracy",
    "quantized_accuracy",
    "secure_accuracy",
    "plain_images_per_second",
    "quantized_images_per_second",
    "secure_images_per_second",
    "secure_over_plain",
    "train_size",
    "epochs",
];

/// The views of each `leakage.models.<model>.<dataset>` entry, and the keys of each view.
pub const LEAKAGE_VIEWS: [&str; 3] = ["forward_one_step", "gradient_one_step", "whole_run"];

/// The keys of each leakage view.
pub const LEAKAGE_VIEW_KEYS: [&str; 4] =
    ["keys_issued", "rank", "exact_fraction", "relative_error"];

/// `architectures.<model>.<dataset>.*` for every built-in pair.
pub fn architecture_keys() -> Vec<(String, Kind)> {
    let mut keys = Vec::new();
    for (model, dataset) in ARCHITECTURES {
        for k in ARCHITECTURE_KEYS {
            keys.push((format!("architectures.{model}.{dataset}.{k}"), Kind::Number));
        }
        keys.push((
            format!("architectures.{model}.{dataset}.weights_identical"),
            Kind::Bool,
        ));
    }
    keys
}

/// `leakage.models.<model>.<dataset>.<view>.*` for every built-in pair.
pub fn model_leakage_keys() -> Vec<(String, Kind)> {
    let mut keys = Vec::new();
    for (model, dataset) in ARCHITECTURES {
        for view in LEAKAGE_VIEWS {
            for k in LEAKAGE_VIEW_KEYS {
                keys.push((
                    format!("leakage.models.{model}.{dataset}.{view}.{k}"),
                    Kind::Number,
                ));
            }
        }
    }
    keys
}

/// The keys of each point of `privacy.curve[]` (`epsilon_*` may be `null` for `sigma = 0`:
/// infinite).
pub const PRIVACY_CURVE_KEYS: [&str; 5] = [
    "sigma",
    "test_accuracy",
    "attack_relative_error",
    "epsilon_pixel",
    "epsilon_image",
];

/// The fewest points of `privacy.curve[]` (sigma 0 among them).
pub const PRIVACY_CURVE_MIN_POINTS: usize = 5;

/// Checks `privacy.curve[]`: an array of at least [`PRIVACY_CURVE_MIN_POINTS`] objects, one of
/// them at `sigma = 0`, each with the keys of [`PRIVACY_CURVE_KEYS`]: non-negative numbers, the
/// accuracy a fraction, `epsilon_*` a number or (at `sigma = 0` only) `null`.
///
/// # Errors
/// Every problem found, naming the point and key.
pub fn check_privacy(report: &Value) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let Some(curve) = lookup(report, "privacy.curve") else {
        return Err(vec!["privacy.curve: absent".into()]);
    };
    let Some(points) = curve.as_array() else {
        return Err(vec![format!("privacy.curve: not an array: {curve}")]);
    };
    if points.len() < PRIVACY_CURVE_MIN_POINTS {
        problems.push(format!(
            "privacy.curve: {} points, at least {PRIVACY_CURVE_MIN_POINTS} are required",
            points.len()
        ));
    }
    let mut has_zero = false;
    for (i, p) in points.iter().enumerate() {
        let sigma = p.get("sigma").and_then(Value::as_f64);
        has_zero |= sigma == Some(0.0);
        for key in PRIVACY_CURVE_KEYS {
            let name = format!("privacy.curve[{i}].{key}");
            match p.get(key) {
                None => problems.push(format!("{name}: absent")),
                Some(Value::Null) if key.starts_with("epsilon") && sigma == Some(0.0) => {}
                Some(v) => match v.as_f64() {
                    None => problems.push(format!("{name}: not a number: {v}")),
                    Some(x) if is_fraction(key) && !(0.0..=1.0).contains(&x) => {
                        problems.push(format!("{name}: accuracy {x} is not a fraction"))
                    }
                    Some(x) if x < 0.0 => problems.push(format!("{name}: negative ({x})")),
                    Some(_) => {}
                },
            }
        }
    }
    if !has_zero {
        problems.push("privacy.curve: no point at sigma = 0".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Whether `key` holds a fraction in `[0, 1]` (an accuracy or a share).
fn is_fraction(key: &str) -> bool {
    key.ends_with("accuracy") || key.ends_with("fraction")
}

/// The value at a dotted path, if every step is an object holding the next name.
pub fn lookup<'a>(root: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(root, |v, name| v.as_object()?.get(name))
}

/// Checks `report` against the contract. Returns every violation, not just the first.
///
/// # Errors
/// The list of problems: a missing key, a value of the wrong type, a `null` without a reason
/// in `missing`, a test accuracy outside `[0, 1]`, a negative timing, a `privacy.curve[]`
/// that fails [`check_privacy`], or a missing `machine` / `command` / `git_commit` record.
pub fn check(report: &Value) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let missing = report.get("missing").and_then(Value::as_object);
    for (key, kind) in required_keys() {
        match lookup(report, &key) {
            None => problems.push(format!("{key}: absent")),
            Some(Value::Null) => {
                let reason = missing.and_then(|m| m.get(&key)).and_then(Value::as_str);
                if reason.is_none_or(|r| r.trim().is_empty()) {
                    problems.push(format!("{key}: null without a reason in `missing`"));
                }
            }
            Some(v) => match kind {
                Kind::Bool if !v.is_boolean() => problems.push(format!("{key}: not a bool: {v}")),
                Kind::Number => match v.as_f64() {
                    None => problems.push(format!("{key}: not a number: {v}")),
                    Some(x) if is_fraction(&key) && !(0.0..=1.0).contains(&x) => {
                        problems.push(format!("{key}: accuracy {x} is not a fraction"))
                    }
                    Some(x) if x < 0.0 => problems.push(format!("{key}: negative ({x})")),
                    Some(_) => {}
                },
                Kind::Bool => {}
            },
        }
    }
    if let Err(p) = check_privacy(report) {
        problems.extend(p);
    }
    for key in ["machine.cores", "machine.load_average_start"] {
        if lookup(report, key).is_none() {
            problems.push(format!("{key}: absent"));
        }
    }
    for key in ["command", "git_commit", "profile"] {
        if report.get(key).is_none() {
            problems.push(format!("{key}: absent"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Checks a report: `json` (a report.json, or a directory holding one) parses and meets
/// [`check`]; beside it, `REPORT.md` is not empty and every plot of [`PLOTS`] is an SVG
/// document.
///
/// # Errors
/// Every problem found, as text.
pub fn check_files(json: &Path) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let json = if json.is_dir() {
        json.join("report.json")
    } else {
        json.to_path_buf()
    };
    let dir = json.parent().unwrap_or(Path::new("."));
    match std::fs::read_to_string(&json) {
        Err(e) => problems.push(format!("{}: {e}", json.display())),
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Err(e) => problems.push(format!("{}: not JSON: {e}", json.display())),
            Ok(v) => {
                if let Err(p) = check(&v) {
                    problems.extend(p);
                }
            }
        },
    }
    let md = dir.join("REPORT.md");
    match std::fs::read_to_string(&md) {
        Ok(t) if !t.trim().is_empty() => {}
        Ok(_) => problems.push(format!("{}: empty", md.display())),
        Err(e) => problems.push(format!("{}: {e}", md.display())),
    }
    for plot in PLOTS {
        let path = dir.join(plot);
        match std::fs::read_to_string(&path) {
            Ok(t) if t.contains("<svg") => {}
            Ok(_) => problems.push(format!("{}: not an SVG document", path.display())),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
