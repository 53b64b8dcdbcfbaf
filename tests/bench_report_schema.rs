//! The report contract of `examples/bench_report` (`cryptonn::report_schema`), on synthetic
//! reports: a complete report passes; a missing key, a wrong type, a `null` without a
//! reason, an accuracy given in percent, or a missing output file each fail, naming the key or
//! file.
//!
//! The real quick report is produced and checked by
//! `cargo run --release --example bench_report -- --quick --out report/` (which exits non-zero
//! if its own output does not meet the contract), or checked later with `--check PATH`.

#![allow(clippy::unwrap_used)]

use cryptonn::report_schema as schema;
use serde_json::{json, Value};

/// Sets the dotted `key` in `root` to `value`, creating objects on the way.
fn set(root: &mut Value, key: &str, value: Value) {
    let mut v = root;
    let parts: Vec<&str> = key.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        v = v
            .as_object_mut()
            .unwrap()
            .entry(p.to_string())
            .or_insert_with(|| json!({}));
    }
    v.as_object_mut()
        .unwrap()
        .insert(parts[parts.len() - 1].to_string(), value);
}

fn synthetic() -> Value {
    let mut r = json!({
        "profile": "quick",
        "command": "cargo run --release --example bench_report -- --quick --out report/",
        "git_commit": "0000000",
        "machine": {"cores": 2, "load_average_start": [1.0, 1.0, 1.0]},
        "missing": {},
    });
    for (key, kind) in schema::required_keys() {
        let v = match kind {
            schema::Kind::Bool => json!(true),
            schema::Kind::Number if key.ends_with("accuracy") || key.ends_with("fraction") => {
                json!(0.98)
            }
            schema::Kind::Number => json!(1.5),
        };
        set(&mut r, &key, v);
    }
    let curve: Vec<Value> = [0.0, 1e3, 4e3, 16e3, 64e3]
        .iter()
        .map(|&sigma| {
            let eps = if sigma == 0.0 {
                Value::Null
            } else {
                json!(1e4)
            };
            json!({"sigma": sigma, "test_accuracy": 0.9, "attack_relative_error": 0.1,
                   "epsilon_pixel": eps, "epsilon_image": eps})
        })
        .collect();
    set(&mut r, "privacy.curve", Value::Array(curve));
    r
}

fn problems(r: &Value) -> Vec<String> {
    schema::check(r).err().unwrap_or_default()
}

#[test]
fn complete_report_passes_and_covers_the_issue_keys() {
    assert_eq!(problems(&synthetic()), Vec::<String>::new());
    let keys: Vec<String> = schema::required_keys().into_iter().map(|k| k.0).collect();
    // 3 modes x 2 + 3 training keys + 2 groups x 6 FE keys + 2 leakage keys, then for each
    // of the 5 built-in (model, dataset) pairs 10 architecture keys and 3 leakage views x 4,
    // then 5 scaling keys.
    assert_eq!(keys.len(), 6 + 3 + 12 + 2 + 5 * 10 + 5 * 3 * 4 + 5);
    for k in [
        "training.secure.images_per_second",
        "training.weights_identical",
        "fe.modp2048.paper_product_s",
        "fe.ristretto.decrypt_len25_amortized_us",
        "leakage.policy.relative_error",
        "architectures.lenet5.mnist.secure_accuracy",
        "architectures.mlp.mnist.secure_images_per_second",
        "architectures.cnn-small.mnist.weights_identical",
        "architectures.mlp.breast-cancer.secure_over_plain",
        "architectures.cnn-small.digits.plain_accuracy",
        "leakage.models.mlp.mnist.gradient_one_step.exact_fraction",
        "leakage.models.cnn-small.digits.whole_run.rank",
        "scaling.weights_identical",
        "scaling.secure_speedup",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} not in the contract");
    }
}

#[test]
fn missing_key_is_named() {
    let mut r = synthetic();
    r["fe"]["modp2048"]
        .as_object_mut()
        .unwrap()
        .remove("dlog_table_load_s");
    assert_eq!(problems(&r), vec!["fe.modp2048.dlog_table_load_s: absent"]);
    let mut r = synthetic();
    r.as_object_mut().unwrap().remove("git_commit");
    assert_eq!(problems(&r), vec!["git_commit: absent"]);
}

#[test]
fn null_needs_a_reason() {
    let mut r = synthetic();
    set(&mut r, "training.secure.epoch_seconds", Value::Null);
    assert_eq!(
        problems(&r),
        vec!["training.secure.epoch_seconds: null without a reason in `missing`"]
    );
    r["missing"]
        .as_object_mut()
        .unwrap()
        .insert("training.secure.epoch_seconds".into(), json!("  "));
    assert_eq!(problems(&r).len(), 1, "a blank reason is no reason");
    r["missing"]
        .as_object_mut()
        .unwrap()
        .insert("training.secure.epoch_seconds".into(), json!("not built"));
    assert_eq!(problems(&r), Vec::<String>::new());
}

#[test]
fn wrong_types_and_ranges_fail() {
    let mut r = synthetic();
    set(&mut r, "training.weights_identical", json!(1));
    set(&mut r, "fe.ristretto.decrypt_len25_us", json!("64 µs"));
    set(&mut r, "training.plain.test_accuracy", json!(98.9));
    set(&mut r, "training.ratio_secure_to_plain", json!(-2.0));
    let p = problems(&r);
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(
        p[0].starts_with("training.plain.test_accuracy: accuracy 98.9"),
        "{p:?}"
    );
    assert!(p
        .iter()
        .any(|x| x.starts_with("training.ratio_secure_to_plain: negative")));
    assert!(p
        .iter()
        .any(|x| x.starts_with("training.weights_identical: not a bool")));
    assert!(p
        .iter()
        .any(|x| x.starts_with("fe.ristretto.decrypt_len25_us: not a number")));
}

#[test]
fn check_files_needs_every_output() {
    let dir = std::env::temp_dir().join(format!("cryptonn-report-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report.json"), synthetic().to_string()).unwrap();
    std::fs::write(dir.join("REPORT.md"), "# report\n").unwrap();
    for plot in schema::PLOTS {
        std::fs::write(
            dir.join(plot),
            "<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>",
        )
        .unwrap();
    }
    assert_eq!(schema::check_files(&dir.join("report.json")), Ok(()));
    assert_eq!(
        schema::check_files(&dir),
        Ok(()),
        "a directory is accepted too"
    );

    std::fs::remove_file(dir.join(schema::PLOTS[1])).unwrap();
    std::fs::write(dir.join("report.json"), "{ not json").unwrap();
    let p = schema::check_files(&dir).unwrap_err();
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("not JSON"));
    assert!(p[1].contains(schema::PLOTS[1]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn architecture_rows_and_model_leakage_are_checked() {
    let mut r = synthetic();
    r["architectures"]["mlp"]["breast-cancer"]
        .as_object_mut()
        .unwrap()
        .remove("secure_accuracy");
    set(
        &mut r,
        "architectures.cnn-small.digits.weights_identical",
        json!("yes"),
    );
    set(
        &mut r,
        "leakage.models.lenet5.mnist.forward_one_step.exact_fraction",
        json!(100.0),
    );
    set(
        &mut r,
        "architectures.mlp.mnist.quantized_accuracy",
        json!(97.6),
    );
    let p = problems(&r);
    assert_eq!(p.len(), 4, "{p:?}");
    for (key, what) in [
        ("architectures.mlp.breast-cancer.secure_accuracy", "absent"),
        (
            "architectures.cnn-small.digits.weights_identical",
            "not a bool",
        ),
        (
            "leakage.models.lenet5.mnist.forward_one_step.exact_fraction",
            "is not a fraction",
        ),
        (
            "architectures.mlp.mnist.quantized_accuracy",
            "is not a fraction",
        ),
    ] {
        assert!(
            p.iter().any(|x| x.starts_with(key) && x.contains(what)),
            "{key}: {what} not in {p:?}"
        );
    }
}

#[test]
fn the_privacy_curve_is_checked_point_by_point() {
    assert_eq!(schema::check_privacy(&synthetic()), Ok(()));
    // Absent.
    let mut r = synthetic();
    r.as_object_mut().unwrap().remove("privacy");
    assert!(problems(&r).iter().any(|p| p == "privacy.curve: absent"));
    // Too few points.
    let mut r = synthetic();
    r["privacy"]["curve"].as_array_mut().unwrap().truncate(4);
    assert!(problems(&r).iter().any(|p| p.contains("4 points")));
    // No sigma 0.
    let mut r = synthetic();
    r["privacy"]["curve"][0]["sigma"] = json!(500.0);
    let p = problems(&r);
    assert!(
        p.iter().any(|p| p.contains("no point at sigma = 0")),
        "{p:?}"
    );
    // A null epsilon is infinite: allowed at sigma 0 only (sigma 500 above is also flagged).
    assert!(
        p.iter()
            .any(|p| p.contains("privacy.curve[0].epsilon_pixel")),
        "{p:?}"
    );
    // Accuracy in percent, a missing key.
    let mut r = synthetic();
    r["privacy"]["curve"][2]["test_accuracy"] = json!(97.0);
    r["privacy"]["curve"][3]
        .as_object_mut()
        .unwrap()
        .remove("attack_relative_error");
    let p = problems(&r);
    assert!(
        p.iter()
            .any(|p| p.contains("privacy.curve[2].test_accuracy")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p == "privacy.curve[3].attack_relative_error: absent"),
        "{p:?}"
    );
}
