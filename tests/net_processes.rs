//! The three parties as three OS processes on 127.0.0.1 (the `cryptonn` binary): secure
//! training on 128 images gives the weights of the in-process run with the same seed, also
//! when the authority is SIGKILLed mid-training and restarted on the same state directory; the
//! audit log then still holds every key the server received.
#![cfg(feature = "net")]
#![allow(clippy::unwrap_used)] // test helpers, as clippy.toml allows in tests

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cryptonn::coordinator::net::auth::random_token;
use cryptonn::coordinator::net::generate_pki;
use cryptonn::coordinator::secure_training::{
    create_shard_domains, encrypt_or_reuse, EncryptedDataset, EncryptionParams, SecureFirstLayer,
};
use cryptonn::coordinator::{
    read_audit_file, AuditOutcome, AuditedKey, Authority, InProcessKeyService, RequesterId,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{default_data_dir, LabelPermutation, Mnist};
use cryptonn::nn::first_layer::QuantConfig;
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::train::{train_with_backend, BatchSchedule, Mode, TrainConfig};

const BIN: &str = env!("CARGO_BIN_EXE_cryptonn");
const IMAGES: usize = 128;
const BATCH: usize = 64;
const SEED: u64 = 5;
const TEST_SIZE: usize = 100;
const HALF_WIDTH: u64 = 1 << 20;

struct Setup {
    dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    tokens: PathBuf,
    client_token: PathBuf,
    server_token: PathBuf,
    cache: PathBuf,
}

fn setup(name: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("cryptonn-net-proc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pki = generate_pki(&["localhost".into(), "127.0.0.1".into()], &[]).unwrap();
    pki.write(&dir.join("pki")).unwrap();
    let (c, s) = (random_token(), random_token());
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("client owner {c}\nserver server-1 {s}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // The data owner's label permutation, fixed here so that the in-process reference can
    // use the same one (the client reads an existing file instead of drawing a fresh π).
    LabelPermutation::from_seed(SEED, 10)
        .write_new(&dir.join("owner/labels"))
        .unwrap();
    std::fs::write(dir.join("client.token"), &c).unwrap();
    std::fs::write(dir.join("server.token"), &s).unwrap();
    // The discrete-log table is shared by all runs of this test binary.
    let cache = std::env::temp_dir().join("cryptonn-net-proc-dlog-cache");
    Setup {
        ca: dir.join("pki/ca.pem"),
        cert: dir.join("pki/authority.pem"),
        key: dir.join("pki/authority.key"),
        tokens,
        client_token: dir.join("client.token"),
        server_token: dir.join("server.token"),
        cache,
        dir,
    }
}

/// Starts `cryptonn authority serve` and returns it with its bound address.
fn start_authority(s: &Setup, listen: &str) -> (Child, String) {
    start_authority_with(s, listen, &[])
}

/// [`start_authority`] with `extra` arguments.
fn start_authority_with(s: &Setup, listen: &str, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["authority", "serve", "--listen", listen])
        .args(extra)
        .arg("--state")
        .arg(s.dir.join("state"))
        .arg("--tokens")
        .arg(&s.tokens)
        .arg("--tls-cert")
        .arg(&s.cert)
        .arg("--tls-key")
        .arg(&s.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the authority printed its address")
            .unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.to_string();
        }
    };
    // Keep draining stdout so the authority never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
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

fn encoding_args() -> Vec<String> {
    [
        "--train-size",
        &IMAGES.to_string(),
        "--batch-size",
        &BATCH.to_string(),
        "--seed",
        &SEED.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_client(s: &Setup, addr: &str) {
    let status = Command::new(BIN)
        .args(["client", "encrypt"])
        .args(connect_args(s, addr, &s.client_token))
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
    assert!(status.success(), "client encrypt failed: {status}");
}

fn server_command(s: &Setup, addr: &str, epochs: usize) -> Command {
    let mut c = Command::new(BIN);
    c.args(["server", "train"])
        .args(connect_args(s, addr, &s.server_token))
        .arg("--data")
        .arg(s.dir.join("enc"))
        .arg("--mnist")
        .arg(default_data_dir())
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(["--name", "server-1", "--epochs", &epochs.to_string()])
        .args(["--test-size", &TEST_SIZE.to_string()])
        .arg("--json")
        .arg(s.dir.join("run.json"))
        .args(encoding_args());
    c
}

fn summary(s: &Setup) -> serde_json::Value {
    let text = std::fs::read_to_string(s.dir.join("run.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The in-process secure run with the same seed and options (train_lenet's secure mode).
fn in_process_weights(epochs: usize, cache: &Path) -> String {
    in_process_weights_of(epochs, cache, IMAGES, BATCH)
}

/// [`in_process_weights`] on the first `images` images in shards of `batch`.
fn in_process_weights_of(epochs: usize, cache: &Path, images: usize, batch: usize) -> String {
    let cfg = TrainConfig {
        mode: Mode::Secure,
        epochs,
        batch_size: batch,
        seed: SEED,
        quant: QuantConfig::default(),
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    };
    let mnist = Mnist::load_default().unwrap();
    let train = mnist.train.take(images, "training").unwrap();
    let test = mnist.test.take(TEST_SIZE, "test").unwrap();
    let mut authority = Authority::from_seed(Ristretto255, [9; 32]);
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, cfg.batch_size);
    let access =
        cryptonn::coordinator::DomainAccess::new(RequesterId::new("o"), RequesterId::new("s"));
    let domains = create_shard_domains(&mut authority, images, &params, &access).unwrap();
    let pks: Vec<_> = domains
        .iter()
        .map(|&d| authority.public_key(d).unwrap())
        .collect();
    let labels = LabelPermutation::from_seed(cfg.seed, cryptonn::nn::data::CLASSES);
    let dir = std::env::temp_dir().join(format!(
        "cryptonn-net-proc-{}-inproc-{images}",
        std::process::id()
    ));
    let (path, _) = encrypt_or_reuse(
        &Ristretto255,
        &dir,
        &train,
        &labels,
        &pks,
        &params,
        true,
        &|_| {},
    )
    .unwrap();
    let data = EncryptedDataset::load(Ristretto255, &path).unwrap();
    let authority = Arc::new(Mutex::new(authority));
    let owner = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("o"));
    cryptonn::coordinator::secure_training::register_label_commitments(&data, &owner).unwrap();
    let keys = InProcessKeyService::new(authority, RequesterId::new("s"));
    let table = Arc::new(BabyStepTable::load_or_build(Ristretto255, HALF_WIDTH, cache).unwrap());
    let mut backend = SecureFirstLayer::new(data, keys, table, cfg.quant).unwrap();
    let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let (_, report) =
        train_with_backend(&cfg, model, &mut backend, &test, &labels, &mut ()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    report.weights_sha256
}

/// Issued FEIP and FEBO keys to `who` in the audit file (checking its sequence on the way).
fn issued_keys(audit: &Path, who: &str) -> (u64, u64) {
    let (mut feip, mut febo) = (0, 0);
    for r in read_audit_file(audit).unwrap() {
        let r = r.unwrap();
        if r.requester.0 == who && r.outcome == AuditOutcome::Issued {
            match r.key {
                AuditedKey::Feip { .. } => feip += 1,
                AuditedKey::Febo { .. } => febo += 1,
                _ => {}
            }
        }
    }
    (feip, febo)
}

fn audit_records(audit: &Path) -> usize {
    read_audit_file(audit).map(|r| r.count()).unwrap_or(0)
}

#[test]
fn three_processes_match_in_process_and_survive_authority_kill() {
    let start = Instant::now();
    let epochs = 1;
    let s = setup("run");
    std::fs::create_dir_all(&s.cache).unwrap();
    let reference = in_process_weights(epochs, &s.cache);
    eprintln!(
        "in-process reference {reference} ({:.1} s)",
        start.elapsed().as_secs_f64()
    );

    // Uninterrupted: authority, client, server.
    let (mut authority, addr) = start_authority(&s, "127.0.0.1:0");
    run_client(&s, &addr);
    let status = server_command(&s, &addr, epochs).status().unwrap();
    assert!(status.success(), "server train failed: {status}");
    let first = summary(&s);
    assert_eq!(first["weights_sha256"].as_str().unwrap(), reference);
    // The server trained without the data owner's label permutation (it was never given the
    // file), so it could not, and did not, report a test accuracy.
    assert_eq!(first["test_accuracy"].as_array().unwrap().len(), 0);
    eprintln!(
        "three processes match ({:.1} s)",
        start.elapsed().as_secs_f64()
    );

    // Interrupted: train again on the same dataset and authority state; SIGKILL the authority
    // once the server has received keys, restart it on the same port and state.
    let audit = s.dir.join("state/audit.cnnaudit");
    let before = audit_records(&audit);
    let mut server = server_command(&s, &addr, epochs)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while audit_records(&audit) <= before {
        assert!(Instant::now() < deadline, "the server never asked for keys");
        assert!(
            server.try_wait().unwrap().is_none(),
            "the server ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    authority.kill().unwrap(); // SIGKILL
    authority.wait().unwrap();
    let killed_at = audit_records(&audit);
    std::thread::sleep(Duration::from_millis(500));
    let (mut authority, addr2) = start_authority(&s, &addr);
    assert_eq!(addr2, addr);
    let status = server.wait().unwrap();
    assert!(
        status.success(),
        "server train after the restart failed: {status}"
    );
    let second = summary(&s);
    assert_eq!(second["weights_sha256"].as_str().unwrap(), reference);
    authority.kill().unwrap();
    authority.wait().unwrap();

    // Every key of both runs is in the audit log (retries may add duplicates, never gaps).
    let (feip, febo) = issued_keys(&audit, "server-1");
    let served = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    assert!(
        feip >= served(&first, "feip_keys") + served(&second, "feip_keys"),
        "audit holds {feip} FEIP keys"
    );
    assert!(
        febo >= served(&first, "febo_keys") + served(&second, "febo_keys"),
        "audit holds {febo} FEBO keys"
    );
    assert!(killed_at > before);
    eprintln!(
        "kill and restart ok ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// Noisy domains across the three processes: the data owner encrypts with `--noise-sigma`
/// (the authority makes the domains noisy and records the ciphertexts' `ct0`), the server is
/// told to pass `--noisy-keys` without it and trains with it; after a restart the authority
/// still serves the domains as noisy and refuses keys beyond its `--noise-epsilon-budget`.
#[test]
fn three_processes_train_on_noisy_domains() {
    let s = setup("noisy");
    std::fs::create_dir_all(&s.cache).unwrap();
    let (mut authority, addr) = start_authority(&s, "127.0.0.1:0");
    let out = client_command(&s, &addr, &s.dir.join("enc"), IMAGES, BATCH)
        .args(["--noise-sigma", "300"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client encrypt failed: {stdout}");
    assert!(
        stdout.contains(&format!(
            "client: {IMAGES} ciphertexts registered in noisy domains"
        )),
        "{stdout}"
    );
    // Plain keys are refused, with the flag that repairs it.
    let plain = server_command(&s, &addr, 1).output().unwrap();
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success());
    assert!(stderr.contains("pass --noisy-keys"), "{stderr}");
    // The server may not pick sigma itself.
    let own = server_command(&s, &addr, 1)
        .args(["--noise-sigma", "1"])
        .output()
        .unwrap();
    assert!(!own.status.success());
    assert!(
        String::from_utf8_lossy(&own.stderr).contains("client encrypt --noise-sigma"),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let status = server_command(&s, &addr, 1)
        .arg("--noisy-keys")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "server train --noisy-keys failed: {status}"
    );
    let run = summary(&s);
    assert!(run["feip_keys"].as_u64().unwrap() > 0);
    let audit = s.dir.join("state/audit.cnnaudit");
    assert!(issued_keys(&audit, "server-1").0 > 0);
    authority.kill().unwrap();
    authority.wait().unwrap();

    // Restarted with a budget far below one image's loss: the journal kept the domains noisy,
    // and the budget refuses the first request.
    let (mut authority, addr) =
        start_authority_with(&s, "127.0.0.1:0", &["--noise-epsilon-budget", "1"]);
    let refused = server_command(&s, &addr, 1)
        .arg("--noisy-keys")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("privacy budget exhausted"), "{stderr}");
    authority.kill().unwrap();
    authority.wait().unwrap();
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// `cryptonn client encrypt` of `images` images in shards of `batch`, with extra arguments
/// (e.g. `--shards A..B`), into `out`.
fn client_command(s: &Setup, addr: &str, out: &Path, images: usize, batch: usize) -> Command {
    let mut c = Command::new(BIN);
    c.args(["client", "encrypt"])
        .args(connect_args(s, addr, &s.client_token))
        .arg("--data")
        .arg(default_data_dir())
        .arg("--out")
        .arg(out)
        .arg("--labels")
        .arg(s.dir.join("owner/labels"))
        .args(["--trainer", "server-1"])
        .args(["--train-size", &images.to_string()])
        .args(["--batch-size", &batch.to_string()])
        .args(["--seed", &SEED.to_string()]);
    c
}

/// Sharded encryption on a scheduler, locally: four `client encrypt --shards` processes at
/// once write four parts; `server train --data DIR` joins them and trains to the weights of
/// the one-part in-process run. A missing part is refused before any key is asked for.
#[test]
fn four_part_processes_train_like_one_part_encryption() {
    const PARTS_IMAGES: usize = 64;
    const PARTS_BATCH: usize = 16;
    let s = setup("parts");
    std::fs::create_dir_all(&s.cache).unwrap();
    let reference = in_process_weights_of(1, &s.cache, PARTS_IMAGES, PARTS_BATCH);
    let (mut authority, addr) = start_authority(&s, "127.0.0.1:0");
    let enc = s.dir.join("enc-parts");
    let mut clients: Vec<Child> = (0..4)
        .map(|k| {
            client_command(&s, &addr, &enc, PARTS_IMAGES, PARTS_BATCH)
                .args(["--shards", &format!("{k}..{}", k + 1)])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut clients {
        assert!(
            c.wait().unwrap().success(),
            "a client encrypt --shards failed"
        );
    }
    let parts: Vec<PathBuf> = std::fs::read_dir(&enc)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cnnenc"))
        .collect();
    assert_eq!(parts.len(), 4, "{parts:?}");
    let train = |json: &Path| {
        let mut c = Command::new(BIN);
        c.args(["server", "train"])
            .args(connect_args(&s, &addr, &s.server_token))
            .arg("--data")
            .arg(&enc)
            .arg("--mnist")
            .arg(default_data_dir())
            .arg("--cache-dir")
            .arg(&s.cache)
            .args(["--name", "server-1", "--epochs", "1"])
            .args(["--test-size", &TEST_SIZE.to_string()])
            .args(["--train-size", &PARTS_IMAGES.to_string()])
            .args(["--batch-size", &PARTS_BATCH.to_string()])
            .args(["--seed", &SEED.to_string()])
            .arg("--json")
            .arg(json);
        c
    };
    let json = s.dir.join("parts.json");
    assert!(
        train(&json).status().unwrap().success(),
        "server train failed"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["weights_sha256"].as_str().unwrap(), reference);
    // The server did not encrypt: no encryption speed in its summary.
    assert!(summary["encrypt_images_per_second"].is_null());
    // Without one part the directory is refused, naming the missing shards.
    std::fs::remove_file(&parts[0]).unwrap();
    let out = train(&s.dir.join("missing.json")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("are missing"), "{err}");
    authority.kill().unwrap();
    authority.wait().unwrap();
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// A SIGKILL during a sharded encryption leaves no part that reads as complete: only the
/// writer's temporary file, which the server's directory load ignores.
#[test]
fn a_killed_part_encryption_leaves_no_complete_part() {
    let s = setup("killed");
    let (mut authority, addr) = start_authority(&s, "127.0.0.1:0");
    let enc = s.dir.join("enc-killed");
    let mut client = client_command(&s, &addr, &enc, 2048, 16)
        .args(["--shards", "0..128"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let temp = loop {
        assert!(Instant::now() < deadline, "no temporary part appeared");
        assert!(
            client.try_wait().unwrap().is_none(),
            "the client ended early"
        );
        let found = std::fs::read_dir(&enc).ok().and_then(|d| {
            d.map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().contains(".tmp-"))
        });
        if let Some(p) = found {
            if std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0) > 1 << 20 {
                break p;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    client.kill().unwrap(); // SIGKILL
    client.wait().unwrap();
    let names: Vec<PathBuf> = std::fs::read_dir(&enc)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names, vec![temp], "only the temporary file is left");
    assert!(matches!(
        EncryptedDataset::load(Ristretto255, &enc),
        Err(cryptonn::coordinator::secure_training::SecureTrainingError::Parts { .. })
    ));
    authority.kill().unwrap();
    authority.wait().unwrap();
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// Another model and dataset through the same three processes: the clinic's MLP on the
/// Wisconsin breast-cancer table (a dense first layer, so the client also encrypts each
/// shard feature-major). The weights equal quantised training's with the same seed and π.
#[test]
fn three_processes_train_an_mlp_on_breast_cancer_like_quantised_training() {
    use cryptonn::nn::data::load_named;
    use cryptonn::nn::model::ModelSpec;
    const ROWS: usize = 64;
    const SHARD: usize = 16;
    let s = setup("mlp");
    std::fs::create_dir_all(&s.cache).unwrap();
    let labels = s.dir.join("owner/labels-bc");
    LabelPermutation::from_seed(SEED, 2)
        .write_new(&labels)
        .unwrap();
    let common = |c: &mut Command| {
        c.args(["--dataset", "breast-cancer", "--model", "mlp"])
            .args(["--train-size", &ROWS.to_string()])
            .args(["--batch-size", &SHARD.to_string()])
            .args(["--seed", &SEED.to_string()]);
    };
    let (mut authority, addr) = start_authority(&s, "127.0.0.1:0");
    let mut client = Command::new(BIN);
    client
        .args(["client", "encrypt"])
        .args(connect_args(&s, &addr, &s.client_token))
        .arg("--data")
        .arg(default_data_dir())
        .arg("--out")
        .arg(s.dir.join("enc"))
        .arg("--labels")
        .arg(&labels)
        .args(["--trainer", "server-1"]);
    common(&mut client);
    assert!(client.status().unwrap().success(), "client encrypt failed");
    let mut server = Command::new(BIN);
    server
        .args(["server", "train"])
        .args(connect_args(&s, &addr, &s.server_token))
        .arg("--data")
        .arg(s.dir.join("enc"))
        .arg("--mnist")
        .arg(default_data_dir())
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(["--name", "server-1", "--epochs", "2"])
        .arg("--labels")
        .arg(&labels)
        .arg("--json")
        .arg(s.dir.join("run.json"));
    common(&mut server);
    assert!(server.status().unwrap().success(), "server train failed");
    // The wrong model for this dataset file is refused before any key is asked for.
    let mut wrong = Command::new(BIN);
    wrong
        .args(["server", "train"])
        .args(connect_args(&s, &addr, &s.server_token))
        .arg("--data")
        .arg(s.dir.join("enc"))
        .arg("--cache-dir")
        .arg(&s.cache)
        .args([
            "--name",
            "server-1",
            "--dataset",
            "mnist",
            "--model",
            "lenet5",
        ])
        .args(["--train-size", &ROWS.to_string()])
        .args(["--batch-size", &SHARD.to_string()]);
    let out = wrong.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--model lenet5"), "{err}");
    authority.kill().unwrap();
    authority.wait().unwrap();

    let run = summary(&s);
    let split = load_named("breast-cancer", &default_data_dir()).unwrap();
    let train = split.train.take(ROWS, "training").unwrap();
    let spec = ModelSpec::builtin("mlp", train.shape(), train.classes()).unwrap();
    let cfg = TrainConfig {
        mode: Mode::Quantized,
        epochs: 2,
        batch_size: SHARD,
        seed: SEED,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    };
    let (_, quantized) =
        cryptonn::nn::train::train(&cfg, &spec, &train, &split.test, &mut ()).unwrap();
    assert_eq!(
        run["weights_sha256"].as_str().unwrap(),
        quantized.weights_sha256
    );
    assert_eq!(
        run["test_accuracy"].as_array().unwrap().len(),
        2,
        "with --labels the server reports the test accuracy per epoch"
    );
    let _ = std::fs::remove_dir_all(&s.dir);
}
