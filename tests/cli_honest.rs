//! Honest files and figures from the `cryptonn` binary (hardening review, reproductions 7–9):
//! `inspect` verifies what it describes and exits non-zero on a truncated or tampered file,
//! `--epochs 0` and `--test-size 0` are refused, and a garbage CA file is named as such.
#![cfg(feature = "net")]
#![allow(clippy::unwrap_used)] // test helpers, as clippy.toml allows in tests

use std::path::{Path, PathBuf};
use std::process::Command;

use cryptonn::coordinator::net::{check_ca_pem, RemoteConfig, RemoteKeyService};
use cryptonn::coordinator::secure_training::encrypted_dataset::encrypt_to_file;
use cryptonn::coordinator::secure_training::EncryptionParams;
use cryptonn::coordinator::{Authority, CoordinatorError, PersistentAuthority, StateOptions};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{Dataset, LabelPermutation, PixelNormalization};
use cryptonn::nn::first_layer::QuantConfig;

const BIN: &str = env!("CARGO_BIN_EXE_cryptonn");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptonn-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn inspect(path: &Path) -> (bool, String) {
    let out = Command::new(BIN).arg("inspect").arg(path).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Reproduction 7: `inspect` described truncated and tampered datasets as normal and exited 0.
#[test]
fn inspect_verifies_datasets_and_state_files() {
    let dir = temp_dir("inspect");
    let g = Ristretto255;
    let mut authority = Authority::from_seed(g, [1; 32]);
    let params = EncryptionParams::new(&QuantConfig::default(), PixelNormalization::default(), 2);
    let pks: Vec<_> = (0..2)
        .map(|_| {
            let d = authority
                .create_domain(params.domain_config().unwrap())
                .unwrap();
            authority.public_key(d).unwrap()
        })
        .collect();
    let images: Vec<u8> = (0..3 * 784).map(|i| (i % 253) as u8).collect();
    let data = Dataset::new(images, vec![0, 4, 9]).unwrap();
    let file = dir.join("ds.cnnenc");
    encrypt_to_file(
        &g,
        &data,
        &LabelPermutation::from_seed(1, 10),
        &pks,
        &params,
        &file,
        &|_| {},
    )
    .unwrap();
    let (ok, out) = inspect(&file);
    assert!(ok, "{out}");
    assert!(out.contains("trailer verified"), "{out}");
    let bytes = std::fs::read(&file).unwrap();
    let truncated = dir.join("truncated.cnnenc");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let (ok, out) = inspect(&truncated);
    assert!(!ok, "{out}");
    assert!(out.contains("truncated"), "{out}");
    let mut flipped = bytes.clone();
    let at = bytes.len() - 5000;
    flipped[at] ^= 1;
    let tampered = dir.join("tampered.cnnenc");
    std::fs::write(&tampered, &flipped).unwrap();
    let (ok, out) = inspect(&tampered);
    assert!(!ok, "{out}");
    assert!(out.contains("SHA-256"), "{out}");

    // The authority's audit file and journal: verified, and a flipped byte fails.
    let state = dir.join("state");
    {
        let mut a = PersistentAuthority::open(
            g,
            &state,
            StateOptions {
                fsync: false,
                ..StateOptions::default()
            },
        )
        .unwrap();
        a.create_domain(params.domain_config().unwrap()).unwrap();
        a.create_domain(params.domain_config().unwrap()).unwrap();
    }
    for name in ["domains.journal", "audit.cnnaudit", "state.head"] {
        let path = state.join(name);
        let (ok, out) = inspect(&path);
        assert!(ok, "{name}: {out}");
    }
    let journal = state.join("domains.journal");
    let mut j = std::fs::read(&journal).unwrap();
    let last = j.len() - 3;
    j[last] ^= 1;
    std::fs::write(&journal, &j).unwrap();
    let (ok, out) = inspect(&journal);
    assert!(!ok, "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reproduction 8: `--epochs 0` or `--test-size 0` printed "final test accuracy 0.00 %" and
/// exited 0. Now both are refused before anything runs.
#[test]
fn zero_epochs_or_test_images_are_refused() {
    for flag in ["--epochs", "--test-size"] {
        let out = Command::new(BIN)
            .args(["server", "train", flag, "0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(flag) && err.contains("at least 1"), "{err}");
    }
}

/// Reproduction 9: a garbage CA file showed up as "UnknownIssuer" at the first handshake.
#[test]
fn garbage_ca_is_named_as_such() {
    let garbage = b"this is not a certificate\n";
    let err = check_ca_pem(garbage).unwrap_err();
    assert!(err.contains("no PEM certificate"), "{err}");
    let config = RemoteConfig::new("https://127.0.0.1:9", "token", Some(garbage.to_vec()));
    let err = RemoteKeyService::connect(Ristretto255, config).unwrap_err();
    assert!(
        matches!(&err, CoordinatorError::Remote { .. }) && err.to_string().contains("CA"),
        "{err}"
    );
    assert!(!err.to_string().contains("UnknownIssuer"), "{err}");
}

/// Reproduction 9: `server train` suggested `--reencrypt`, which it does not accept. A damaged
/// dataset now names the flag of the command that writes the dataset again, and that command
/// has it.
#[test]
fn a_damaged_dataset_names_a_flag_that_exists() {
    let dir = temp_dir("damaged");
    let bad = dir.join("train.cnnenc");
    std::fs::write(&bad, b"CNNENC but not really an encrypted dataset").unwrap();
    let out = Command::new(BIN)
        .args([
            "server",
            "train",
            "--authority",
            "https://127.0.0.1:1",
            "--data",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not a valid encrypted dataset"), "{err}");
    assert!(err.contains("cryptonn client encrypt --reencrypt"), "{err}");
    let help = Command::new(BIN)
        .args(["client", "encrypt", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--reencrypt"));
    let help = Command::new(BIN)
        .args(["server", "train", "--help"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("--reencrypt"));
    std::fs::remove_dir_all(&dir).unwrap();
}
