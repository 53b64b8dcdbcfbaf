//! Secure prediction across OS processes on 127.0.0.1 (the `cryptonn` binary): authority,
//! `client encrypt`, `server train --serve` on 128 images, then `client predict` on MNIST test
//! images given as `--mnist-test`, binary PGM, ASCII PGM and raw bytes. The classes and
//! probabilities equal those of the quantised plaintext model trained in-process with the same
//! seed (whose weights the server's summary must match), mapped through the same label
//! permutation. Malformed, tampered, oversized, misaddressed and unauthenticated queries get an
//! error status, and the server keeps serving; SIGTERM ends it with exit code 0.
#![cfg(feature = "net")]
#![allow(clippy::unwrap_used)] // test helpers, as clippy.toml allows in tests

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cryptonn::coordinator::net::auth::random_token;
use cryptonn::coordinator::net::{
    generate_pki, open_remote_noisy_query_domain, open_remote_query_domain, PredictionError,
    RemoteConfig, RemoteKeyService, RemotePredictor,
};
use cryptonn::coordinator::secure_prediction::EncryptedQuery;
use cryptonn::coordinator::secure_training::EncryptionParams;
use cryptonn::coordinator::RequesterId;
use cryptonn::fe::discrete_gaussian::DiscreteGaussian;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{default_data_dir, Dataset, LabelPermutation, Mnist};
use cryptonn::nn::first_layer::{FirstLayerBackend, QuantConfig, QuantizedFirstLayer};
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::train::{train, BatchSchedule, Mode, TrainConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_cryptonn");
const IMAGES: usize = 128;
const BATCH: usize = 64;
const SEED: u64 = 7;
const TEST_SIZE: usize = 100;
/// Test images asked through `client predict` (one per input form), then one from this test.
const QUERIES: usize = 5;

struct Setup {
    dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    tokens: PathBuf,
    client_token: PathBuf,
    server_token: PathBuf,
    predict_tokens: PathBuf,
    predict_token: PathBuf,
    /// A server-role token in the prediction tokens file (must be refused).
    wrong_role_token: String,
    cache: PathBuf,
}

/// A child process that is killed when the test ends, also when it fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn setup() -> Setup {
    let dir = std::env::temp_dir().join(format!("cryptonn-net-predict-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pki = generate_pki(&["localhost".into(), "127.0.0.1".into()], &[]).unwrap();
    pki.write(&dir.join("pki")).unwrap();
    let (c, s, p, w) = (
        random_token(),
        random_token(),
        random_token(),
        random_token(),
    );
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("client owner {c}\nserver server-1 {s}\n")).unwrap();
    // The data owner's label permutation, fixed here so that the in-process reference can
    // use the same one (the client reads an existing file instead of drawing a fresh π).
    LabelPermutation::from_seed(SEED, 10)
        .write_new(&dir.join("owner/labels"))
        .unwrap();
    // The server's own tokens file: who may ask it for predictions.
    let predict_tokens = dir.join("predict-tokens");
    std::fs::write(
        &predict_tokens,
        format!("client hospital {p}\nserver other-server {w}\n"),
    )
    .unwrap();
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
    Setup {
        ca: dir.join("pki/ca.pem"),
        cert: dir.join("pki/authority.pem"),
        key: dir.join("pki/authority.key"),
        tokens,
        client_token: dir.join("client.token"),
        server_token: dir.join("server.token"),
        predict_tokens,
        predict_token: dir.join("predict.token"),
        wrong_role_token: w,
        // The discrete-log table is shared with tests/net_processes.rs.
        cache: std::env::temp_dir().join("cryptonn-net-proc-dlog-cache"),
        dir,
    }
}

/// Reads `child`'s stdout until a line starts with `prefix`; returns the rest of that line and
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

fn start_authority(s: &Setup) -> (Guard, String) {
    let mut child = Command::new(BIN)
        .args(["authority", "serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(s.dir.join("state"))
        .arg("--tokens")
        .arg(&s.tokens)
        .arg("--tls-cert")
        .arg(&s.cert)
        .arg("--tls-key")
        .arg(&s.key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = wait_for_line(&mut child, "listening on ");
    (Guard(child), addr)
}

fn connect_args(s: &Setup, addr: &str, token: &Path) -> Vec<String> {
    vec![
        "--authority".into(),
        format!("https://{addr}"),
        "--ca".into(),
        s.ca.display().to_string(),
        "--tls-name".into(),
        "localhost".into(),
        "--token-file".into(),
        token.display().to_string(),
    ]
}

/// `cryptonn client predict` against the prediction server at `server_url`, with the
/// authority at `addr`, writing its JSON summary to `json` (the image arguments to add).
fn client_predict(s: &Setup, addr: &str, server_url: &str, json: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["client", "predict"])
        .args(connect_args(s, addr, &s.client_token))
        .args(["--server", server_url, "--server-ca"])
        .arg(&s.ca)
        .args(["--server-tls-name", "localhost", "--server-token-file"])
        .arg(&s.predict_token)
        .arg("--labels")
        .arg(s.dir.join("owner/labels"))
        .args(["--server-name", "server-1", "--json"])
        .arg(json);
    c
}

fn encoding_args() -> Vec<String> {
    [
        "--train-size".to_string(),
        IMAGES.to_string(),
        "--batch-size".into(),
        BATCH.to_string(),
        "--seed".into(),
        SEED.to_string(),
    ]
    .to_vec()
}

/// The in-process reference: quantised plaintext training with the options of the server run
/// (secure training gives bit-identical weights).
fn quantized_model(train_set: &Dataset, test: &Dataset) -> (LeNet5, String) {
    let cfg = reference_config();
    let (model, report) = train(
        &cfg,
        &cryptonn::nn::model::ModelSpec::lenet5(cfg.lenet),
        train_set,
        test,
        &mut (),
    )
    .unwrap();
    (model, report.weights_sha256)
}

fn reference_config() -> TrainConfig {
    TrainConfig {
        mode: Mode::Quantized,
        epochs: 1,
        batch_size: BATCH,
        seed: SEED,
        quant: QuantConfig::default(),
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    }
}

/// The quantised model's probabilities of test image `i`, in the true label order.
fn expected_probabilities(model: &LeNet5, test: &Dataset, i: usize) -> Vec<f32> {
    let cfg = reference_config();
    let mut first = QuantizedFirstLayer::new(
        test,
        LabelPermutation::identity(cryptonn::nn::data::CLASSES),
        cfg.quant,
        cryptonn::nn::first_layer::FirstLayerSpec::lenet5(),
    )
    .unwrap();
    let wq = cfg.quant.encode_weights(model.first_weight()).unwrap();
    let z = first.forward(&[i], wq.view()).unwrap();
    let s1 = model
        .unflatten_first(
            cfg.quant
                .decode_forward(
                    &cryptonn::nn::first_layer::FirstLayerSpec::lenet5(),
                    z.view(),
                    model.first_bias(),
                )
                .unwrap(),
        )
        .unwrap();
    let trained = model.trunk_forward(s1).probs.row(0).to_vec();
    let labels = LabelPermutation::from_seed(SEED, cryptonn::nn::data::CLASSES);
    (0..10u8)
        .map(|c| trained[usize::from(labels.apply(c))])
        .collect()
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

/// `bytes` (an encoded query) with its header's domain replaced by `domain`, re-framed with a
/// valid length and checksum: a well-formed query that names another domain.
fn with_domain(bytes: &[u8], domain: u64) -> Vec<u8> {
    let header_len = u32::from_le_bytes(bytes[6..10].try_into().unwrap()) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[10..10 + header_len]).unwrap();
    header["domain"] = serde_json::json!(domain);
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = bytes[..6].to_vec();
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[10 + header_len..bytes.len() - 4]);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn status(r: Result<impl std::fmt::Debug, PredictionError>) -> (Code, String) {
    match r {
        Err(PredictionError::Status { code, message, .. }) => (code, message),
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[test]
fn server_serves_secure_predictions_equal_to_the_quantized_model() {
    let start = Instant::now();
    let s = setup();
    std::fs::create_dir_all(&s.cache).unwrap();
    let mnist = Mnist::load_default().unwrap();
    let train_set = mnist.train.take(IMAGES, "training").unwrap();
    let test = mnist.test.take(TEST_SIZE, "test").unwrap();
    // The reference trains on a thread while the processes run.
    let reference = {
        let (train_set, test) = (train_set.clone(), test.clone());
        std::thread::spawn(move || quantized_model(&train_set, &test))
    };

    let (authority, addr) = start_authority(&s);
    let status_encrypt = Command::new(BIN)
        .args(["client", "encrypt"])
        .args(connect_args(&s, &addr, &s.client_token))
        .arg("--data")
        .arg(default_data_dir())
        .arg("--out")
        .arg(s.dir.join("enc"))
        .arg("--labels")
        .arg(s.dir.join("owner/labels"))
        .args(["--trainer", "server-1"])
        .args(encoding_args())
        .status()
        .unwrap();
    assert!(status_encrypt.success(), "client encrypt: {status_encrypt}");

    let server = Command::new(BIN)
        .args(["server", "train"])
        .args(connect_args(&s, &addr, &s.server_token))
        .arg("--data")
        .arg(s.dir.join("enc"))
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(["--name", "server-1", "--epochs", "1"])
        .args(["--test-size", &TEST_SIZE.to_string()])
        .arg("--json")
        .arg(s.dir.join("run.json"))
        .args(encoding_args())
        .args(["--serve", "127.0.0.1:0", "--serve-tokens"])
        .arg(&s.predict_tokens)
        .arg("--serve-tls-cert")
        .arg(&s.cert)
        .arg("--serve-tls-key")
        .arg(&s.key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Guard(server);
    let server_addr = wait_for_line(&mut server.0, "serving predictions on ");
    eprintln!(
        "trained and serving on {server_addr} ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.dir.join("run.json")).unwrap()).unwrap();
    let (model, sha) = reference.join().unwrap();
    assert_eq!(summary["weights_sha256"].as_str().unwrap(), sha);

    // `client predict` on one image per input form.
    let images: Vec<Vec<u8>> = (0..QUERIES).map(|i| test.image(i).to_vec()).collect();
    let p5 = s.dir.join("q1.pgm");
    let mut pgm = b"P5\n# test image 1\n28 28\n255\n".to_vec();
    pgm.extend_from_slice(&images[1]);
    std::fs::write(&p5, pgm).unwrap();
    let p2 = s.dir.join("q2.pgm");
    let ascii: Vec<String> = images[2].iter().map(u8::to_string).collect();
    std::fs::write(&p2, format!("P2\n28 28\n255\n{}\n", ascii.join(" "))).unwrap();
    let raw = s.dir.join("q3.raw");
    std::fs::write(&raw, &images[3]).unwrap();
    let inputs: Vec<Vec<String>> = vec![
        vec!["--mnist-test".into(), "0".into()],
        vec![p5.display().to_string()],
        vec![p2.display().to_string()],
        vec![raw.display().to_string()],
    ];
    let server_url = format!("https://{server_addr}");
    let mut domains = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let json = s.dir.join(format!("predict-{i}.json"));
        let t = Instant::now();
        let out = client_predict(&s, &addr, &server_url, &json)
            .arg("--save-query")
            .arg(s.dir.join(format!("query-{i}.cnnq")))
            .args(input)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "client predict {input:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let want = expected_probabilities(&model, &test, i);
        let probabilities: Vec<f32> = got["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(probabilities, want, "image {i}: probabilities");
        assert_eq!(got["class"].as_u64().unwrap() as usize, argmax(&want));
        domains.push(got["domain"].as_u64().unwrap());
        eprintln!(
            "client predict {input:?}: class {} (label {}), {:.2} s wall, server {:.3} s",
            got["class"],
            test.label(i),
            t.elapsed().as_secs_f64(),
            got["server_seconds"]
        );
    }
    // `client predict --noise-sigma`: a noisy query domain, the query registered, the class
    // of noise this small the exact one.
    let json = s.dir.join("predict-noisy.json");
    let out = client_predict(&s, &addr, &server_url, &json)
        .args(["--mnist-test", "0", "--noise-sigma", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client predict --noise-sigma: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(got["noise_sigma"].as_f64(), Some(1.0));
    assert_eq!(
        got["class"].as_u64().unwrap() as usize,
        argmax(&expected_probabilities(&model, &test, 0))
    );

    // The saved query is the bytes sent, and `inspect` describes it without the pixels.
    let saved = s.dir.join("query-3.cnnq");
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(&saved)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "inspect: {text}");
    assert!(
        text.contains("encrypted prediction query")
            && text.contains(&format!("domain-{}", domains[3])),
        "{text}"
    );
    let mut distinct = domains.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), domains.len(), "one fresh domain per query");

    // From this process: a valid query, and broken ones around it.
    let predictor_config = |token: &str, max_message_bytes: usize| {
        let mut c = RemoteConfig::new(&server_url, token, Some(std::fs::read(&s.ca).unwrap()));
        c.tls_domain = Some("localhost".into());
        c.retry_for = Duration::from_secs(10);
        c.max_message_bytes = max_message_bytes;
        c
    };
    let predict_token = std::fs::read_to_string(&s.predict_token).unwrap();
    let predictor =
        RemotePredictor::connect(Ristretto255, predictor_config(&predict_token, 8 << 20)).unwrap();
    let info = predictor.query_info().unwrap();
    assert_eq!(info.weights_sha256, sha);
    let mut keys_config = RemoteConfig::new(
        format!("https://{addr}"),
        std::fs::read_to_string(&s.client_token).unwrap(),
        Some(std::fs::read(&s.ca).unwrap()),
    );
    keys_config.tls_domain = Some("localhost".into());
    keys_config.requester = RequesterId::new("owner");
    let keys = RemoteKeyService::connect(Ristretto255, keys_config).unwrap();
    let pk = open_remote_query_domain(&keys, &info.params, &RequesterId::new("server-1")).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let i = QUERIES - 1;
    let query = EncryptedQuery::encrypt(&Ristretto255, &pk, &info.params, &images[i], &mut rng)
        .unwrap()
        .to_bytes(&Ristretto255);

    let (code, message) = status(predictor.predict_bytes(b"not a query".to_vec()));
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("encrypted query"), "{message}");
    let mut tampered = query.clone();
    tampered[query.len() / 2] ^= 1;
    let (code, message) = status(predictor.predict_bytes(tampered));
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("checksum"), "{message}");
    // A domain the authority does not know.
    let (code, message) = status(predictor.predict_bytes(with_domain(&query, 1 << 40)));
    assert_eq!(code, Code::NotFound, "{message}");
    // Another query's domain: its keys do not decrypt this ciphertext.
    let (code, message) = status(predictor.predict_bytes(with_domain(&query, domains[0])));
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("does not decrypt"), "{message}");
    // A training shard's domain (client encrypt made domains 0 and 1): refused before any key
    // request.
    let (code, message) = status(predictor.predict_bytes(with_domain(&query, 0)));
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("training domain"), "{message}");
    // Encoded with other parameters.
    let other = EncryptionParams {
        scale_x: info.params.scale_x * 2.0,
        ..info.params
    };
    let other_pk = open_remote_query_domain(&keys, &other, &RequesterId::new("server-1")).unwrap();
    let other_query =
        EncryptedQuery::encrypt(&Ristretto255, &other_pk, &other, &images[i], &mut rng).unwrap();
    let (code, message) = status(predictor.predict(&other_query));
    assert_eq!(code, Code::InvalidArgument, "{message}");
    // Above the server's 1 MiB message limit.
    let (code, message) = status(predictor.predict_bytes(vec![7; 2 << 20]));
    assert!(
        matches!(code, Code::ResourceExhausted | Code::OutOfRange),
        "{code:?}: {message}"
    );
    // Tokens: unknown, and a provisioned one of the wrong role.
    let stranger =
        RemotePredictor::connect(Ristretto255, predictor_config(&random_token(), 1 << 20)).unwrap();
    assert_eq!(
        status(stranger.predict_bytes(query.clone())).0,
        Code::Unauthenticated
    );
    let wrong_role =
        RemotePredictor::connect(Ristretto255, predictor_config(&s.wrong_role_token, 1 << 20))
            .unwrap();
    assert_eq!(status(wrong_role.query_info()).0, Code::PermissionDenied);

    // A noisy query domain (sigma 1): refused until its owner registers the query's ct0, then
    // classified from z + e (noise this small keeps the class); sent as exact it is refused,
    // since the domain issues no plain keys.
    let labels = LabelPermutation::from_seed(SEED, cryptonn::nn::data::CLASSES);
    let want = expected_probabilities(&model, &test, i);
    let noisy_pk = open_remote_noisy_query_domain(
        &keys,
        &info.params,
        &RequesterId::new("server-1"),
        Some(DiscreteGaussian::new(1, 1).unwrap()),
    )
    .unwrap();
    let noisy_query =
        EncryptedQuery::encrypt(&Ristretto255, &noisy_pk, &info.params, &images[i], &mut rng)
            .unwrap();
    let (code, message) = status(predictor.predict_noisy(&noisy_query));
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.contains("not registered"), "{message}");
    noisy_query.register_noisy(&Ristretto255, &keys).unwrap();
    let noisy = predictor.predict_noisy(&noisy_query).unwrap();
    assert_eq!(noisy.domain, noisy_pk.domain);
    assert_eq!(
        usize::from(labels.invert(noisy.prediction.class)),
        argmax(&want)
    );
    let (code, message) = status(predictor.predict(&noisy_query));
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("is noisy"), "{message}");
    // An exact domain's query sent as noisy is refused too.
    let (code, message) = status(
        predictor.predict_noisy(&EncryptedQuery::from_bytes(&Ristretto255, &query).unwrap()),
    );
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("not noisy"), "{message}");

    // The server still serves, with the same answer as the quantised model.
    let answer = predictor.predict_bytes(query).unwrap();
    let got: Vec<f32> = (0..10u8)
        .map(|c| answer.prediction.probabilities[usize::from(labels.apply(c))])
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        usize::from(labels.invert(answer.prediction.class)),
        argmax(&want)
    );
    assert_eq!(answer.domain, pk.domain);

    // SIGTERM: a clean exit (the server closes idle connections after a 5 s grace; ours go
    // first).
    drop((predictor, stranger, wrong_role, keys));
    let term = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(e) = server.0.try_wait().unwrap() {
            break e;
        }
        assert!(Instant::now() < deadline, "the server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "server exit after SIGTERM: {exit}");
    drop(authority);
    eprintln!("done ({:.1} s)", start.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&s.dir);
}
