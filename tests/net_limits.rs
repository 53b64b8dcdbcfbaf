//! Bounded resources of the key service (hardening review, reproductions 2 and 3): callers are
//! authenticated before their message is read, every method has a size limit, domain creation
//! is bounded and runs beside the other callers instead of in front of them, and a garbage
//! `--tls-cert` fails before "listening on".
#![cfg(feature = "net")]
#![allow(clippy::unwrap_used)] // test helpers, as clippy.toml allows in tests

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cryptonn::coordinator::net::auth::{random_token, Role};
use cryptonn::coordinator::net::service::{MAX_DOMAINS_PER_CALL, MAX_DOMAIN_DIMENSION};
use cryptonn::coordinator::net::{proto, LoopbackAuthority, RemoteKeyService, TokenTable};
use cryptonn::coordinator::{
    CoordinatorError, KeyService, PersistentAuthority, RequesterId, StateOptions,
};
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;

const BIN: &str = env!("CARGO_BIN_EXE_cryptonn");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptonn-limits-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path).unwrap().write_all(text.as_bytes()).unwrap();
}

/// `cryptonn authority serve --plaintext` on a free loopback port.
fn start_authority(dir: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "authority",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-fsync",
        ])
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--tokens")
        .arg(dir.join("tokens"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("an address line").unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// The peak resident set size of process `pid`, in bytes (Linux).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Reproduction 2: a 200 MB message without a token raised the authority's memory from 216 MB
/// to 1.78 GB before it was refused. Now the gate refuses it from the headers: the body is never
/// buffered, and the peak RSS of the authority process stays below 300 MB. A valid token of a
/// role that may not call the method is refused the same way, and a message above a method's
/// own limit (GetPublicKey: 64 KiB) is cut off early.
#[cfg(target_os = "linux")]
#[test]
fn huge_messages_are_refused_before_they_are_read() {
    let dir = temp_dir("rss");
    let client = random_token();
    write_private(&dir.join("tokens"), &format!("client owner {client}\n"));
    let (mut child, addr) = start_authority(&dir, &["--plaintext"]);
    let pid = child.id();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let huge = proto::FeboKeyBatch {
        domain: 0,
        items: vec![proto::FeboKeyItem {
            commitment: vec![7u8; 200_000_000],
            op: 0,
            operand: 0,
        }],
    };
    let (anonymous, client_role, oversized) = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut c = proto::key_authority_client::KeyAuthorityClient::new(channel.clone())
            .max_encoding_message_size(usize::MAX);
        let anonymous = c
            .issue_febo_keys(tonic::Request::new(huge.clone()))
            .await
            .unwrap_err();
        let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {client}").parse().unwrap();
        let mut r = tonic::Request::new(huge);
        r.metadata_mut().insert("authorization", bearer.clone());
        let client_role = c.issue_febo_keys(r).await.unwrap_err();
        // 1 MB of padding in a GetPublicKey request (its limit is 64 KiB), as unknown field 9.
        let mut r = tonic::Request::new(proto::PublicKeyRequest { domain: 0 });
        r.metadata_mut().insert("authorization", bearer);
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        #[derive(Clone, PartialEq, prost::Message)]
        struct Padded {
            #[prost(uint64, tag = "1")]
            domain: u64,
            #[prost(bytes = "vec", tag = "9")]
            padding: Vec<u8>,
        }
        let padded = tonic::Request::from_parts(
            r.metadata().clone(),
            tonic::Extensions::default(),
            Padded {
                domain: 0,
                padding: vec![1; 1 << 20],
            },
        );
        let oversized = grpc
            .unary::<_, proto::PublicKeyReply, _>(
                padded,
                "/cryptonn.v1.KeyAuthority/GetPublicKey".parse().unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        (anonymous, client_role, oversized)
    });
    let peak = peak_rss(pid);
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "{anonymous:?}"
    );
    assert_eq!(
        client_role.code(),
        tonic::Code::PermissionDenied,
        "{client_role:?}"
    );
    assert_eq!(
        oversized.code(),
        tonic::Code::ResourceExhausted,
        "{oversized:?}"
    );
    assert!(
        oversized.message().contains("GetPublicKey"),
        "{oversized:?}"
    );
    eprintln!("authority peak RSS {} MB", peak >> 20);
    assert!(peak < 300 << 20, "peak RSS {} MB", peak >> 20);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A garbage certificate fails the start with a message naming the flag, before the
/// authority announces that it listens.
#[test]
fn garbage_tls_certificate_fails_before_listening() {
    let dir = temp_dir("tls");
    write_private(
        &dir.join("tokens"),
        &format!("client owner {}\n", random_token()),
    );
    std::fs::write(dir.join("cert.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.join("key.pem"), "not a key\n").unwrap();
    let out = Command::new(BIN)
        .args(["authority", "serve", "--listen", "127.0.0.1:0"])
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--tokens")
        .arg(dir.join("tokens"))
        .arg("--tls-cert")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stdout.contains("listening on"), "{stdout}");
    assert!(stderr.contains("--tls-cert"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn loopback(dir: &Path) -> (LoopbackAuthority, String) {
    let state = PersistentAuthority::open(
        Ristretto255,
        &dir.join("state"),
        StateOptions {
            fsync: false,
            ..StateOptions::default()
        },
    )
    .unwrap();
    let client = random_token();
    let mut tokens = TokenTable::new();
    tokens.add(Role::Client, "owner", &client).unwrap();
    (
        LoopbackAuthority::start(Arc::new(Mutex::new(state)), tokens).unwrap(),
        client,
    )
}

fn code(e: &CoordinatorError) -> String {
    match e {
        CoordinatorError::Remote { code, .. } => code.clone(),
        e => format!("{e}"),
    }
}

/// Reproduction 3, the limits: a domain above the documented maximum dimension, and more
/// domains than a call may create, are refused up front (`INVALID_ARGUMENT`).
#[test]
fn domain_creation_is_bounded() {
    let dir = temp_dir("bounds");
    let (authority, client) = loopback(&dir);
    let c = RemoteKeyService::connect(
        Ristretto255,
        authority.remote_config(&client, RequesterId::new("owner")),
    )
    .unwrap();
    let too_wide = FeipParams::new(MAX_DOMAIN_DIMENSION + 1, 255, 100).unwrap();
    let err = c
        .create_domains(too_wide, None, 1, false, &[RequesterId::new("trainer")])
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArgument", "{err}");
    assert!(err.to_string().contains("maximum"), "{err}");
    // The client splits a large request into calls the authority accepts.
    let small = FeipParams::new(2, 10, 10).unwrap();
    let many = c
        .create_domains(
            small,
            None,
            MAX_DOMAINS_PER_CALL + 3,
            true,
            &[RequesterId::new("trainer")],
        )
        .unwrap();
    assert_eq!(many.len(), MAX_DOMAINS_PER_CALL as usize + 3);
    drop(authority);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reproduction 3, the blocking: while one client creates the largest allowed domain, another
/// keeps getting public keys. Every GetPublicKey answered during the creation is timed; the
/// p99 must stay under 100 ms (loopback, TLS).
#[test]
fn public_keys_are_served_while_the_largest_domain_is_created() {
    let dir = temp_dir("busy");
    let (authority, client) = loopback(&dir);
    let config = authority.remote_config(&client, RequesterId::new("owner"));
    let reader = RemoteKeyService::connect(Ristretto255, config.clone()).unwrap();
    let small = reader
        .create_domains(
            FeipParams::new(8, 255, 100).unwrap(),
            None,
            1,
            false,
            &[RequesterId::new("trainer")],
        )
        .unwrap()[0];
    let creator = std::thread::spawn(move || {
        let c = RemoteKeyService::connect(Ristretto255, config).unwrap();
        let start = Instant::now();
        let widest = FeipParams::new(MAX_DOMAIN_DIMENSION, 255, 100).unwrap();
        let d = c
            .create_domains(widest, None, 1, false, &[RequesterId::new("trainer")])
            .unwrap();
        (d, start.elapsed())
    });
    let mut latencies = Vec::new();
    while !creator.is_finished() {
        let t = Instant::now();
        reader.public_key(small).unwrap();
        latencies.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    let (created, took) = creator.join().unwrap();
    assert_eq!(created.len(), 1);
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    eprintln!(
        "created n = {MAX_DOMAIN_DIMENSION} in {took:?}; {} GetPublicKey meanwhile, p50 {:?}, \
         p99 {p99:?}",
        latencies.len(),
        latencies[latencies.len() / 2]
    );
    assert!(
        latencies.len() >= 5,
        "only {} GetPublicKey answered during the creation",
        latencies.len()
    );
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    drop(authority);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// GetPublicKey is read-only and does not wait behind the authority's mutex, which a long
/// IssueFeipKeys holds: a domain's key, once read, is served while the mutex is held (before,
/// the call waited until the mutex was released). A domain that a key review rotates is
/// withdrawn: its key is no longer served.
#[test]
fn public_keys_do_not_wait_behind_key_issuance() {
    use cryptonn::coordinator::{
        DomainAccess, DomainConfig, FeipKeyRequest, KeyVectorData, PolicyConfig,
    };
    let dir = temp_dir("readonly");
    let state = Arc::new(Mutex::new(
        PersistentAuthority::open(
            Ristretto255,
            &dir.join("state"),
            StateOptions {
                fsync: false,
                ..StateOptions::default()
            },
        )
        .unwrap(),
    ));
    let (client, server) = (random_token(), random_token());
    let mut tokens = TokenTable::new();
    tokens.add(Role::Client, "owner", &client).unwrap();
    tokens.add(Role::Server, "trainer", &server).unwrap();
    let authority = LoopbackAuthority::start(Arc::clone(&state), tokens).unwrap();
    // A domain whose policy rotates it once the issued keys reach rank n/2 = 4.
    let d = state
        .lock()
        .unwrap()
        .create_domain_for(
            DomainConfig::new(FeipParams::new(8, 255, 100).unwrap())
                .with_policy(PolicyConfig::rotating()),
            DomainAccess::new(RequesterId::new("owner"), RequesterId::new("trainer")),
        )
        .unwrap();
    let reader = Arc::new(
        RemoteKeyService::connect(
            Ristretto255,
            authority.remote_config(&client, RequesterId::new("owner")),
        )
        .unwrap(),
    );
    let first = reader.public_key(d).unwrap();

    // What a long IssueFeipKeys does: hold the authority's mutex.
    let held = state.lock().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let r = Arc::clone(&reader);
    let t = Instant::now();
    let asker = std::thread::spawn(move || tx.send(r.public_key(d)).unwrap());
    let answer = rx.recv_timeout(Duration::from_secs(20));
    let waited = t.elapsed();
    drop(held);
    asker.join().unwrap();
    let answer = answer.expect("GetPublicKey waited behind the authority's mutex");
    let bytes = |pk: &cryptonn::coordinator::DomainPublicKey<Ristretto255>| {
        cryptonn::fe::serialize::WireFormat::to_bytes(&pk.feip, &Ristretto255)
    };
    assert_eq!(bytes(&answer.unwrap()), bytes(&first));
    eprintln!("GetPublicKey answered in {waited:?} while the authority's mutex was held");

    // The server reaches the rank cap; the fifth independent vector rotates the domain.
    let trainer = RemoteKeyService::connect(
        Ristretto255,
        authority.remote_config(&server, RequesterId::new("trainer")),
    )
    .unwrap();
    let ask = |i: usize| {
        let mut y = vec![1; 8];
        y[i] = 9;
        trainer.feip_keys(&FeipKeyRequest {
            domain: d,
            vectors: vec![KeyVectorData::Dense(y)],
        })
    };
    for i in 0..4 {
        ask(i).unwrap();
    }
    let err = ask(4).unwrap_err();
    assert!(err.to_string().contains("rotated"), "{err}");
    let err = reader.public_key(d).unwrap_err();
    assert!(err.to_string().contains("rotated"), "{err}");
    drop(authority);
    std::fs::remove_dir_all(&dir).unwrap();
}
