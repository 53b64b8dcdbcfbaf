//! The `cryptonn` binary and saved models: `inspect` describes a good file and fails (non-zero
//! exit, the reason named) on a truncated or tampered one; `server serve --model` answers
//! `client predict` with the saved model's probabilities, bit for bit those of the in-process
//! model, without training.
#![cfg(feature = "net")]
#![allow(clippy::unwrap_used)] // tests

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cryptonn::coordinator::net::auth::random_token;
use cryptonn::coordinator::net::generate_pki;
use cryptonn::nn::data::{Dataset, LabelPermutation, Mnist, CLASSES};
use cryptonn::nn::first_layer::{FirstLayerBackend, FirstLayerSpec, QuantizedFirstLayer};
use cryptonn::nn::model::{Model, ModelSpec};
use cryptonn::nn::saved_model::{Checkpointer, DatasetInfo, SavedModel};
use cryptonn::nn::train::{train, BatchSchedule, Mode, TrainConfig};

const BIN: &str = env!("CARGO_BIN_EXE_cryptonn");
const SEED: u64 = 5;

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("cryptonn-model-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config() -> TrainConfig {
    TrainConfig {
        mode: Mode::Quantized,
        epochs: 1,
        batch_size: 16,
        seed: SEED,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    }
}

/// LeNet-5 trained (quantised, labels permuted by the seed's π) on 32 images and saved.
fn saved(dir: &Path, mnist: &Mnist) -> (PathBuf, Model) {
    let cfg = config();
    let train_set = mnist.train.take(32, "training").unwrap();
    let test = mnist.test.take(8, "test").unwrap();
    let path = dir.join("lenet.safetensors");
    let mut saver = Checkpointer::new((), &path, None, DatasetInfo::of("mnist", &train_set));
    let (model, _) = train(
        &cfg,
        &ModelSpec::lenet5(cfg.lenet),
        &train_set,
        &test,
        &mut saver,
    )
    .unwrap();
    (path, model)
}

fn inspect(path: &Path) -> (bool, String) {
    let out = Command::new(BIN).arg("inspect").arg(path).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn inspect_verifies_and_describes_a_saved_model() {
    let dir = temp_dir("inspect");
    let mnist = Mnist::load_default().unwrap();
    let (path, model) = saved(&dir, &mnist);
    let (ok, text) = inspect(&path);
    assert!(ok, "{text}");
    for want in [
        "saved model (safetensors) `lenet5`",
        "layers.0.weight [6, 1, 5, 5]",
        "layers.11.bias [10]",
        "optimizer.momentum_buffer.layers.0.weight [6, 1, 5, 5]",
        "epoch 1 of 1",
        "seed 5",
        &format!("weights sha256 {} (verified", model.weights_sha256()),
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let good = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &good[..good.len() - 7]).unwrap();
    let (ok, text) = inspect(&cut);
    assert!(!ok && text.contains("truncated"), "{text}");
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x40;
    let bad = dir.join("tampered.safetensors");
    std::fs::write(&bad, &flipped).unwrap();
    let (ok, text) = inspect(&bad);
    assert!(!ok && text.contains("tampered"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A child process that is killed when the test ends, also when it fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `child`'s stdout until a line starts with `prefix`; returns the rest of the line and
/// keeps draining the pipe on a thread.
fn wait_for_line(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let found = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the process ended before printing {prefix:?}"))
            .unwrap();
        if let Some(rest) = line.strip_prefix(prefix) {
            break rest.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    found
}

/// The quantised model's probabilities of test image `i`, in the true label order.
fn expected_probabilities(model: &Model, test: &Dataset, i: usize) -> Vec<f32> {
    let q = config().quant;
    let mut first = QuantizedFirstLayer::new(
        test,
        LabelPermutation::identity(CLASSES),
        q,
        FirstLayerSpec::lenet5(),
    )
    .unwrap();
    let wq = q.encode_weights(model.first_weight()).unwrap();
    let z = first.forward(&[i], wq.view()).unwrap();
    let p = q
        .decode_forward(&FirstLayerSpec::lenet5(), z.view(), model.first_bias())
        .unwrap();
    let trained = model
        .trunk_forward(model.unflatten_first(p).unwrap())
        .probs
        .row(0)
        .to_vec();
    let labels = LabelPermutation::from_seed(SEED, CLASSES);
    (0..10u8)
        .map(|c| trained[usize::from(labels.apply(c))])
        .collect()
}

#[test]
fn server_serve_answers_client_predict_with_the_saved_models_probabilities() {
    let dir = temp_dir("serve");
    let mnist = Mnist::load_default().unwrap();
    let (path, model) = saved(&dir, &mnist);
    assert_eq!(SavedModel::load(&path).unwrap().model(), &model);

    let pki = generate_pki(&["localhost".into(), "127.0.0.1".into()], &[]).unwrap();
    pki.write(&dir.join("pki")).unwrap();
    let (ca, cert, key) = (
        dir.join("pki/ca.pem"),
        dir.join("pki/authority.pem"),
        dir.join("pki/authority.key"),
    );
    let (c, s, p) = (random_token(), random_token(), random_token());
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("client owner {c}\nserver server-1 {s}\n")).unwrap();
    let predict_tokens = dir.join("predict-tokens");
    std::fs::write(&predict_tokens, format!("client hospital {p}\n")).unwrap();
    #[cfg(unix)]
    for f in [&tokens, &predict_tokens] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for (name, t) in [
        ("client.token", &c),
        ("server.token", &s),
        ("predict.token", &p),
    ] {
        std::fs::write(dir.join(name), t).unwrap();
    }
    LabelPermutation::from_seed(SEED, CLASSES)
        .write_new(&dir.join("owner/labels"))
        .unwrap();
    let connect = |token: &str| -> Vec<String> {
        vec![
            "--ca".into(),
            ca.display().to_string(),
            "--tls-name".into(),
            "localhost".into(),
            "--token-file".into(),
            dir.join(token).display().to_string(),
        ]
    };

    let mut authority = Command::new(BIN)
        .args(["authority", "serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(dir.join("state"))
        .arg("--tokens")
        .arg(&tokens)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = wait_for_line(&mut authority, "listening on ");
    let _authority = Guard(authority);
    let authority_url = format!("https://{addr}");

    let server = Command::new(BIN)
        .args(["server", "serve", "--model"])
        .arg(&path)
        .args(["--authority", &authority_url])
        .args(connect("server.token"))
        .args(["--name", "server-1", "--cache-dir"])
        .arg(std::env::temp_dir().join("cryptonn-net-proc-dlog-cache"))
        .args(["--serve", "127.0.0.1:0", "--serve-tokens"])
        .arg(&predict_tokens)
        .arg("--serve-tls-cert")
        .arg(&cert)
        .arg("--serve-tls-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Guard(server);
    let server_addr = wait_for_line(&mut server.0, "serving predictions on ");

    let test = mnist.test.take(2, "test").unwrap();
    for i in 0..test.len() {
        let raw = dir.join(format!("q{i}.raw"));
        std::fs::write(&raw, test.image(i)).unwrap();
        let json = dir.join(format!("predict-{i}.json"));
        let out = Command::new(BIN)
            .args(["client", "predict", "--authority", &authority_url])
            .args(connect("client.token"))
            .args(["--server", &format!("https://{server_addr}"), "--server-ca"])
            .arg(&ca)
            .args(["--server-tls-name", "localhost", "--server-token-file"])
            .arg(dir.join("predict.token"))
            .arg("--labels")
            .arg(dir.join("owner/labels"))
            .args(["--server-name", "server-1", "--json"])
            .arg(&json)
            .arg(&raw)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "client predict: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let probabilities: Vec<f32> = got["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(
            probabilities,
            expected_probabilities(&model, &test, i),
            "image {i}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn server_serve_refuses_a_damaged_model_before_serving() {
    let dir = temp_dir("serve-bad");
    let mnist = Mnist::load_default().unwrap();
    let (path, _) = saved(&dir, &mnist);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let out = Command::new(BIN)
        .args(["server", "serve", "--model"])
        .arg(&path)
        .args([
            "--authority",
            "https://127.0.0.1:9",
            "--serve",
            "127.0.0.1:0",
        ])
        .args(["--serve-plaintext", "--serve-tokens"])
        .arg(dir.join("absent"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("SHA-256 mismatch"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
