//! The networked key service on loopback (one process, the server on a background runtime):
//! roles and tokens, TLS and mutual TLS, policy refusals as typed errors, malformed and
//! oversized messages.
#![cfg(feature = "net")]
#![allow(clippy::unwrap_used)] // test helpers, as clippy.toml allows in tests

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cryptonn::coordinator::net::auth::{random_token, Role};
use cryptonn::coordinator::net::service::Listener;
use cryptonn::coordinator::net::tls::Pki;
use cryptonn::coordinator::net::{
    generate_pki, proto, serve, RemoteConfig, RemoteKeyService, ServeConfig, ServerTls, TokenTable,
};
use cryptonn::coordinator::{
    AuditOutcome, CoordinatorError, DomainConfig, DomainId, FeipKeyRequest, KeyService,
    KeyVectorData, PersistentAuthority, PolicyRefusal, RequesterId, StateOptions,
};
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;

struct Tokens {
    client: String,
    server: String,
    operator: String,
}

struct Fixture {
    addr: SocketAddr,
    pki: Pki,
    tokens: Tokens,
    domain: DomainId,
    _runtime: tokio::runtime::Runtime,
    dir: PathBuf,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptonn-net-auth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An authority with one default-policy domain (n = 8), served with TLS (and mutual TLS if
/// `mutual`) and a message limit of `limit` bytes.
fn start(name: &str, mutual: bool, limit: usize) -> Fixture {
    let dir = temp_dir(name);
    let pki = generate_pki(&["localhost".into()], &["client-a".into()]).unwrap();
    let tokens = Tokens {
        client: random_token(),
        server: random_token(),
        operator: random_token(),
    };
    let mut table = TokenTable::new();
    table.add(Role::Client, "client-a", &tokens.client).unwrap();
    table.add(Role::Server, "server-1", &tokens.server).unwrap();
    table.add(Role::Operator, "ops", &tokens.operator).unwrap();
    let mut state =
        PersistentAuthority::open(Ristretto255, &dir.join("state"), StateOptions::default())
            .unwrap();
    let domain = state
        .create_domain(DomainConfig::new(FeipParams::new(8, 255, 100).unwrap()))
        .unwrap();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServeConfig {
        tls: Some(ServerTls {
            cert_pem: pki.server.cert_pem.clone().into_bytes(),
            key_pem: pki.server.key_pem.clone().into_bytes(),
            client_ca_pem: mutual.then(|| pki.ca_cert_pem.clone().into_bytes()),
        }),
        max_message_bytes: limit,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.spawn(serve(
        Arc::new(Mutex::new(state)),
        Arc::new(table),
        listener,
        config,
        std::future::pending(),
    ));
    Fixture {
        addr,
        pki,
        tokens,
        domain,
        _runtime: runtime,
        dir,
    }
}

impl Fixture {
    fn config(&self, token: &str) -> RemoteConfig {
        let mut c = RemoteConfig::new(
            format!("https://{}", self.addr),
            token,
            Some(self.pki.ca_cert_pem.clone().into_bytes()),
        );
        c.tls_domain = Some("localhost".into());
        c.retry_for = Duration::ZERO;
        c
    }
    fn connect(&self, token: &str) -> RemoteKeyService<Ristretto255> {
        RemoteKeyService::connect(Ristretto255, self.config(token)).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn code(e: &CoordinatorError) -> &str {
    match e {
        CoordinatorError::Remote { code, .. } => code,
        _ => "typed",
    }
}

fn dense_request(domain: DomainId) -> FeipKeyRequest {
    FeipKeyRequest {
        domain,
        vectors: vec![KeyVectorData::Dense(vec![1, -2, 3, 4, 0, 0, 0, 0])],
    }
}

/// Clients get public keys only; servers get keys; the operator reads the audit log, which
/// names the token's party; refusals arrive typed with their reason.
#[test]
fn roles_tokens_and_refusals() {
    let f = start("roles", false, 1 << 20);
    let client = f.connect(&f.tokens.client);
    let pk = client.public_key(f.domain).unwrap();
    assert_eq!(pk.feip_params.n(), 8);
    let err = client.feip_keys(&dense_request(f.domain)).unwrap_err();
    assert_eq!(code(&err), "PermissionDenied", "{err}");
    assert!(err.to_string().contains("client-a"), "{err}");

    let server = f.connect(&f.tokens.server);
    let keys = server.feip_keys(&dense_request(f.domain)).unwrap();
    assert_eq!(keys.keys.len(), 1);
    // The same key as the authority derives in-process would be checked by decryption in the
    // multi-process test; here: a one-hot probe is refused with the policy's reason.
    let probe = FeipKeyRequest {
        domain: f.domain,
        vectors: vec![KeyVectorData::Sparse(vec![(3, 1)])],
    };
    match server.feip_keys(&probe).unwrap_err() {
        CoordinatorError::Refused {
            domain,
            index,
            reason,
        } => {
            assert_eq!((domain, index), (f.domain, 0));
            assert_eq!(reason, PolicyRefusal::TooFewNonZero { got: 1, min: 4 });
        }
        e => panic!("expected a typed refusal, got {e}"),
    }
    assert!(matches!(
        server.public_key(DomainId(99)).unwrap_err(),
        CoordinatorError::UnknownDomain(DomainId(99))
    ));
    let err = server
        .create_domains(
            FeipParams::new(4, 10, 10).unwrap(),
            None,
            1,
            false,
            &[RequesterId::new("server-1")],
        )
        .unwrap_err();
    assert_eq!(code(&err), "PermissionDenied", "{err}");
    let err = server.read_audit_log(0, 0).unwrap_err();
    assert_eq!(code(&err), "PermissionDenied", "{err}");
    let created = client
        .create_domains(
            FeipParams::new(4, 10, 10).unwrap(),
            None,
            2,
            true,
            &[RequesterId::new("server-1")],
        )
        .unwrap();
    assert_eq!(created, vec![DomainId(1), DomainId(2)]);

    let operator = f.connect(&f.tokens.operator);
    let (records, total) = operator.read_audit_log(0, 0).unwrap();
    assert_eq!(total, 2);
    assert_eq!(records[0].requester, RequesterId::new("server-1"));
    assert_eq!(records[0].outcome, AuditOutcome::Issued);
    assert!(matches!(records[1].outcome, AuditOutcome::Refused(_)));
    assert_eq!(operator.list_domains().unwrap().len(), 3);

    // Wrong or missing tokens.
    for token in [random_token(), String::new()] {
        let err = f.connect(&token).public_key(f.domain).unwrap_err();
        assert_eq!(code(&err), "Unauthenticated", "{err}");
    }
    // A client that trusts another CA refuses the authority.
    let other = generate_pki(&["localhost".into()], &[]).unwrap();
    let mut c = f.config(&f.tokens.server);
    c.ca_pem = Some(other.ca_cert_pem.into_bytes());
    let err = RemoteKeyService::<Ristretto255>::connect(Ristretto255, c)
        .unwrap()
        .public_key(f.domain)
        .unwrap_err();
    assert!(matches!(err, CoordinatorError::Remote { .. }), "{err}");
}

/// With a client CA, a connection without a client certificate (or with one from another CA)
/// is refused even with a valid token; with the right certificate it works.
#[test]
fn mutual_tls_requires_client_certificate() {
    let f = start("mtls", true, 1 << 20);
    let err = f
        .connect(&f.tokens.server)
        .feip_keys(&dense_request(f.domain))
        .unwrap_err();
    assert!(matches!(err, CoordinatorError::Remote { .. }), "{err}");
    let other = generate_pki(&["localhost".into()], &["client-a".into()]).unwrap();
    let mut c = f.config(&f.tokens.server);
    c.identity = Some((
        other.clients[0].1.cert_pem.clone().into_bytes(),
        other.clients[0].1.key_pem.clone().into_bytes(),
    ));
    let err = RemoteKeyService::<Ristretto255>::connect(Ristretto255, c)
        .unwrap()
        .feip_keys(&dense_request(f.domain))
        .unwrap_err();
    assert!(matches!(err, CoordinatorError::Remote { .. }), "{err}");
    let mut c = f.config(&f.tokens.server);
    c.identity = Some((
        f.pki.clients[0].1.cert_pem.clone().into_bytes(),
        f.pki.clients[0].1.key_pem.clone().into_bytes(),
    ));
    let server = RemoteKeyService::<Ristretto255>::connect(Ristretto255, c).unwrap();
    assert_eq!(
        server
            .feip_keys(&dense_request(f.domain))
            .unwrap()
            .keys
            .len(),
        1
    );
}

/// A message in the wrong shape for its RPC (a field of the wrong wire type), a sparse vector
/// whose lists disagree, and a message above the limit get error statuses; the authority keeps
/// serving.
#[test]
fn malformed_and_oversized_messages_get_error_status() {
    let limit = 64 << 10;
    let f = start("malformed", false, limit);
    let server = f.connect(&f.tokens.server);

    // Oversized: 10,000 dense vectors of 8 entries are ~200 KB > 64 KiB.
    let big = FeipKeyRequest {
        domain: f.domain,
        vectors: vec![KeyVectorData::Dense(vec![1, 2, 3, 4, 5, 6, 7, 8]); 10_000],
    };
    let mut c = f.config(&f.tokens.server);
    c.max_message_bytes = 64 << 20;
    let unlimited = RemoteKeyService::<Ristretto255>::connect(Ristretto255, c).unwrap();
    let err = unlimited.feip_keys(&big).unwrap_err();
    assert_eq!(code(&err), "OutOfRange", "{err}");

    // Sparse vector with more indices than values.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", f.addr))
            .unwrap()
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&f.pki.ca_cert_pem))
                    .domain_name("localhost"),
            )
            .unwrap()
            .connect()
            .await
            .unwrap();
        let bearer: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", f.tokens.server).parse().unwrap();
        let mut client = proto::key_authority_client::KeyAuthorityClient::new(channel.clone());
        let mut request = tonic::Request::new(proto::FeipKeyBatch {
            domain: f.domain.0,
            vectors: vec![proto::KeyVector {
                form: Some(proto::key_vector::Form::Sparse(proto::SparseVector {
                    indices: vec![0, 1, 2, 3],
                    values: vec![1, 1],
                })),
            }],
        });
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
        let mismatched = client.issue_feip_keys(request).await.unwrap_err();

        // Field 2 (vectors, length-delimited) sent as a varint.
        #[derive(Clone, PartialEq, prost::Message)]
        struct Garbage {
            #[prost(uint64, tag = "1")]
            domain: u64,
            #[prost(uint64, tag = "2")]
            vectors: u64,
        }
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(Garbage {
            domain: 0,
            vectors: 12345,
        });
        request.metadata_mut().insert("authorization", bearer);
        let garbage = grpc
            .unary::<_, proto::FeipKeyReply, _>(
                request,
                "/cryptonn.v1.KeyAuthority/IssueFeipKeys".parse().unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        (mismatched, garbage)
    });
    assert_eq!(
        status.0.code(),
        tonic::Code::InvalidArgument,
        "{:?}",
        status.0
    );
    assert!(status.0.message().contains("sparse"), "{:?}", status.0);
    assert_ne!(status.1.code(), tonic::Code::Ok);
    assert!(status.1.message().contains("decode"), "{:?}", status.1);
    // The hostile-client review, item 9: a malformed message is the caller's fault, not INTERNAL.
    assert_eq!(
        status.1.code(),
        tonic::Code::InvalidArgument,
        "{:?}",
        status.1
    );

    // Still serving.
    assert_eq!(
        server
            .feip_keys(&dense_request(f.domain))
            .unwrap()
            .keys
            .len(),
        1
    );
}
