//! The authority's gRPC server: [`AuthorityService`] and [`serve`].
//!
//! Every call passes the [gate](super::gate) first: the bearer token and the caller's role are
//! checked from the headers, and the body is capped at the method's limit, before a byte of
//! the body is decoded. Each RPC then decodes and validates the request and runs the authority
//! operation on a blocking thread (key derivation is CPU work, and the audit commit waits for
//! `fsync`). Requests of one authority are serialised by its mutex, as in-process, except the
//! expensive part of domain creation (deriving the keys), which runs outside the mutex on the
//! blocking pool, at most [`CREATE_CONCURRENCY`] calls at a time: other callers keep being
//! served while a large domain is created. `GetPublicKey` is read-only: a domain's public key,
//! once read under the mutex, is published in a table that later calls read without the mutex
//! ([`PUBLISHED_KEY_BYTES`] of encoded keys at most; beyond that, calls take the mutex), so
//! that public keys keep being served while a long `IssueFeipKeys` holds the mutex. A domain
//! leaves the table, under the mutex, when a key review rotates it. Every refusal is a status
//! with the reason.
//!
//! # Limits
//! | what | limit |
//! | --- | --- |
//! | dimension `n` of a created domain | [`MAX_DOMAIN_DIMENSION`] (65,536) |
//! | domains per `CreateDomains` call | [`MAX_DOMAINS_PER_CALL`] (4,096) |
//! | `count × n` per `CreateDomains` call | [`MAX_CREATE_ELEMENTS`] (2^21: about 25 s of work on Ristretto255) |
//! | concurrent `CreateDomains` calls | [`CREATE_CONCURRENCY`] (1; more wait) |
//! | request body of `GetPublicKey`, `CreateDomains`, `ReadAuditLog`, `ListDomains` | [`SMALL_REQUEST_BYTES`] (64 KiB) |
//! | request body of `IssueFeipKeys`, `IssueFeboKeys`, `RegisterFeboCommitments`, `IssueNoisyFeipKeys`, `RegisterNoisyCiphertexts` | [`ServeConfig::max_message_bytes`] |
//! | encoded public keys served without the mutex | [`PUBLISHED_KEY_BYTES`] (64 MiB) |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::Semaphore;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::coordinator::audit::read_audit_file;
use crate::coordinator::authority::DomainConfig;
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::messages::{
    DomainAccess, DomainId, DomainStatus, FeboCommitmentRegistration, RequesterId,
};
use crate::coordinator::net::auth::{Role, TokenTable};
use crate::coordinator::net::convert::{
    febo_params_from_proto, febo_request_from_proto, febo_response_to_proto,
    feip_params_from_proto, feip_request_from_proto, feip_response_to_proto, noise_from_proto,
    noisy_registration_from_proto, noisy_request_from_proto, noisy_response_to_proto,
    public_key_to_proto, status_of,
};
use crate::coordinator::net::gate::{Gated, MethodRule};
use crate::coordinator::net::proto::key_authority_server::{KeyAuthority, KeyAuthorityServer};
use crate::coordinator::net::{proto, DEFAULT_MAX_MESSAGE_BYTES};
use crate::coordinator::persistent::PersistentAuthority;
use crate::coordinator::policy::PolicyConfig;
use crate::fe::group::PrimeOrderGroup;

/// The largest number of domains one `CreateDomains` call may create.
pub const MAX_DOMAINS_PER_CALL: u32 = 4_096;
/// The largest dimension `n` of a domain created over the network.
pub const MAX_DOMAIN_DIMENSION: usize = 1 << 16;
/// The largest `count × n` of one `CreateDomains` call (each element costs one fixed-base
/// exponentiation, about 12 µs on Ristretto255).
pub const MAX_CREATE_ELEMENTS: u64 = 1 << 21;
/// How many `CreateDomains` calls derive keys at the same time; more wait their turn.
pub const CREATE_CONCURRENCY: usize = 1;
/// The request body limit of the methods that carry no key vectors.
pub const SMALL_REQUEST_BYTES: usize = 64 << 10;
/// The most bytes of encoded public keys `GetPublicKey` serves without the authority's mutex
/// (2^21 Ristretto255 elements of 32 bytes: e.g. 2,048 domains of n = 1,024).
pub const PUBLISHED_KEY_BYTES: usize = 64 << 20;
/// The default (and largest) page of `ReadAuditLog`.
pub const AUDIT_PAGE: usize = 10_000;

const ANYONE: &[Role] = &[Role::Client, Role::Server, Role::Operator];
const CREATORS: &[Role] = &[Role::Client, Role::Operator];
const KEY_TAKERS: &[Role] = &[Role::Server, Role::Operator];
const OPERATOR: &[Role] = &[Role::Operator];
const OWNERS: &[Role] = &[Role::Client];

/// The gate's rules for the key authority's methods, with key requests limited to
/// `max_key_request` bytes.
#[must_use]
pub fn authority_rules(max_key_request: usize) -> Vec<MethodRule> {
    let small = SMALL_REQUEST_BYTES;
    vec![
        MethodRule {
            method: "GetPublicKey",
            roles: ANYONE,
            max_request_bytes: small,
        },
        MethodRule {
            method: "CreateDomains",
            roles: CREATORS,
            max_request_bytes: small,
        },
        MethodRule {
            method: "IssueFeipKeys",
            roles: KEY_TAKERS,
            max_request_bytes: max_key_request,
        },
        MethodRule {
            method: "IssueFeboKeys",
            roles: KEY_TAKERS,
            max_request_bytes: max_key_request,
        },
        MethodRule {
            method: "RegisterFeboCommitments",
            roles: OWNERS,
            max_request_bytes: max_key_request,
        },
        MethodRule {
            method: "RegisterNoisyCiphertexts",
            roles: OWNERS,
            max_request_bytes: max_key_request,
        },
        MethodRule {
            method: "IssueNoisyFeipKeys",
            roles: KEY_TAKERS,
            max_request_bytes: max_key_request,
        },
        MethodRule {
            method: "ReadAuditLog",
            roles: OPERATOR,
            max_request_bytes: small,
        },
        MethodRule {
            method: "ListDomains",
            roles: OPERATOR,
            max_request_bytes: small,
        },
    ]
}

/// The public keys of active domains as `GetPublicKey` replies, read without the authority's
/// mutex. Entries are added and removed only while the mutex is held, so an entry is never
/// older than the authority's state of the last call that held it.
#[derive(Debug, Default)]
struct PublishedKeys {
    table: RwLock<(HashMap<u64, proto::PublicKeyReply>, usize)>,
}

impl PublishedKeys {
    fn get(&self, domain: u64) -> Option<proto::PublicKeyReply> {
        self.table.read().ok()?.0.get(&domain).cloned()
    }

    /// Publishes `reply` (call with the authority's mutex held), unless the table is full.
    fn insert(&self, domain: u64, reply: &proto::PublicKeyReply) {
        let size = prost::Message::encoded_len(reply);
        if let Ok(mut t) = self.table.write() {
            if !t.0.contains_key(&domain) && t.1 + size <= PUBLISHED_KEY_BYTES {
                t.0.insert(domain, reply.clone());
                t.1 += size;
            }
        }
    }

    /// Withdraws a domain that is no longer active (call with the authority's mutex held).
    fn remove(&self, domain: u64) {
        if let Ok(mut t) = self.table.write() {
            if let Some(r) = t.0.remove(&domain) {
                t.1 -= prost::Message::encoded_len(&r);
            }
        }
    }
}

/// The gRPC service over a [`PersistentAuthority`].
pub struct AuthorityService<G: PrimeOrderGroup> {
    state: Arc<Mutex<PersistentAuthority<G>>>,
    tokens: Arc<TokenTable>,
    creating: Arc<Semaphore>,
    published: Arc<PublishedKeys>,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for AuthorityService<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityService")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup> AuthorityService<G> {
    /// A service over `state` that admits the callers of `tokens`.
    #[must_use]
    pub fn new(state: Arc<Mutex<PersistentAuthority<G>>>, tokens: Arc<TokenTable>) -> Self {
        Self {
            state,
            tokens,
            creating: Arc::new(Semaphore::new(CREATE_CONCURRENCY)),
            published: Arc::new(PublishedKeys::default()),
        }
    }
}

fn lock<G: PrimeOrderGroup>(
    state: &Mutex<PersistentAuthority<G>>,
) -> Result<MutexGuard<'_, PersistentAuthority<G>>, Status> {
    state
        .lock()
        .map_err(|_| Status::unavailable("the authority's state is poisoned; restart it"))
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("authority task failed: {e}")))?
}

fn status_name(s: DomainStatus) -> String {
    match s {
        DomainStatus::Active => "active".into(),
        DomainStatus::Rotated { successor } => format!("rotated:{}", successor.0),
        DomainStatus::Closed => "closed".into(),
    }
}

#[tonic::async_trait]
impl<G: PrimeOrderGroup> KeyAuthority for AuthorityService<G> {
    async fn get_public_key(
        &self,
        request: Request<proto::PublicKeyRequest>,
    ) -> Result<Response<proto::PublicKeyReply>, Status> {
        self.tokens.authorize(
            request.metadata(),
            "GetPublicKey",
            &[Role::Client, Role::Server, Role::Operator],
        )?;
        let domain = DomainId(request.get_ref().domain);
        if let Some(reply) = self.published.get(domain.0) {
            return Ok(Response::new(reply));
        }
        let state = Arc::clone(&self.state);
        let published = Arc::clone(&self.published);
        let reply = blocking(move || {
            let state = lock(&state)?;
            let pk = state.public_key(domain).map_err(|e| status_of(&e))?;
            let reply = public_key_to_proto(state.authority().group(), &pk);
            published.insert(domain.0, &reply);
            Ok(reply)
        })
        .await?;
        Ok(Response::new(reply))
    }

    async fn create_domains(
        &self,
        request: Request<proto::CreateDomainsRequest>,
    ) -> Result<Response<proto::CreateDomainsReply>, Status> {
        let caller = self.tokens.authorize(
            request.metadata(),
            "CreateDomains",
            &[Role::Client, Role::Operator],
        )?;
        let r = request.into_inner();
        if r.requesters.is_empty() || r.requesters.iter().any(|n| n.trim().is_empty()) {
            return Err(Status::invalid_argument(
                "name the requester(s) allowed to ask for the domains' keys (e.g. the trainer)",
            ));
        }
        let access = DomainAccess {
            owner: caller.requester,
            requesters: r.requesters.iter().map(RequesterId::new).collect(),
        };
        if r.count == 0 || r.count > MAX_DOMAINS_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "count must be 1..={MAX_DOMAINS_PER_CALL}, got {}",
                r.count
            )));
        }
        let feip = feip_params_from_proto(r.feip.as_ref()).map_err(|e| status_of(&e))?;
        if feip.n() > MAX_DOMAIN_DIMENSION {
            return Err(Status::invalid_argument(format!(
                "the dimension n = {} exceeds this authority's maximum of {MAX_DOMAIN_DIMENSION}",
                feip.n()
            )));
        }
        let elements = u64::from(r.count) * feip.n() as u64;
        if elements > MAX_CREATE_ELEMENTS {
            return Err(Status::invalid_argument(format!(
                "count x n = {elements} exceeds the maximum of {MAX_CREATE_ELEMENTS} per call; \
                 split the call"
            )));
        }
        let mut config =
            DomainConfig::new(feip).with_policy(match proto::PolicyKind::try_from(r.policy) {
                Ok(proto::PolicyKind::PolicyDefault) => PolicyConfig::default(),
                Ok(proto::PolicyKind::PolicyPerBatch) => PolicyConfig::per_batch(),
                Err(_) => return Err(Status::invalid_argument("unknown policy kind")),
            });
        if let Some(f) = &r.febo {
            config = config.with_febo(febo_params_from_proto(f).map_err(|e| status_of(&e))?);
        }
        let noise = r
            .noise
            .as_ref()
            .map(noise_from_proto)
            .transpose()
            .map_err(|e| status_of(&e))?;
        // At most CREATE_CONCURRENCY calls derive keys at once; the rest wait here, holding
        // no lock and no thread.
        let _permit = self
            .creating
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the authority is shutting down"))?;
        let state = Arc::clone(&self.state);
        let count = u64::from(r.count);
        let domains = blocking(move || {
            // Reserve the ids under the lock, derive the keys without it, journal under it.
            let pending = lock(&state)?
                .begin_create_domains_for(config, count, access)
                .map_err(|e| status_of(&e))?;
            let prepared = pending.prepare();
            // Made noisy under the same lock as they are installed: no key request can come
            // between.
            let mut state = lock(&state)?;
            let ids = state
                .finish_create_domains(prepared)
                .map_err(|e| status_of(&e))?;
            if let Some(noise) = noise {
                for &id in &ids {
                    state.make_noisy(id, noise).map_err(|e| status_of(&e))?;
                }
            }
            Ok(ids.into_iter().map(|d| d.0).collect())
        })
        .await?;
        Ok(Response::new(proto::CreateDomainsReply { domains }))
    }

    async fn issue_feip_keys(
        &self,
        request: Request<proto::FeipKeyBatch>,
    ) -> Result<Response<proto::FeipKeyReply>, Status> {
        let caller = self
            .tokens
            .authorize(request.metadata(), "IssueFeipKeys", &[Role::Server])?;
        let request = feip_request_from_proto(request.into_inner()).map_err(|e| status_of(&e))?;
        let state = Arc::clone(&self.state);
        let published = Arc::clone(&self.published);
        let reply = blocking(move || {
            let mut state = lock(&state)?;
            let r = state.issue_feip_keys(&caller.requester, &request);
            if let Err(CoordinatorError::DomainRotated { retired, .. }) = &r {
                published.remove(retired.0);
            }
            let r = r.map_err(|e| status_of(&e))?;
            Ok(feip_response_to_proto(state.authority().group(), &r))
        })
        .await?;
        Ok(Response::new(reply))
    }

    async fn issue_febo_keys(
        &self,
        request: Request<proto::FeboKeyBatch>,
    ) -> Result<Response<proto::FeboKeyReply>, Status> {
        let caller = self
            .tokens
            .authorize(request.metadata(), "IssueFeboKeys", &[Role::Server])?;
        let request = febo_request_from_proto(request.into_inner()).map_err(|e| status_of(&e))?;
        let state = Arc::clone(&self.state);
        let reply = blocking(move || {
            let mut state = lock(&state)?;
            let r = state
                .issue_febo_keys(&caller.requester, &request)
                .map_err(|e| status_of(&e))?;
            Ok(febo_response_to_proto(state.authority().group(), &r))
        })
        .await?;
        Ok(Response::new(reply))
    }

    async fn register_febo_commitments(
        &self,
        request: Request<proto::FeboCommitmentBatch>,
    ) -> Result<Response<proto::RegisterCommitmentsReply>, Status> {
        let caller = self.tokens.authorize(
            request.metadata(),
            "RegisterFeboCommitments",
            &[Role::Client],
        )?;
        let r = request.into_inner();
        let registration = FeboCommitmentRegistration {
            domain: DomainId(r.domain),
            commitments: r.commitments,
        };
        let state = Arc::clone(&self.state);
        let registered = blocking(move || {
            let mut state = lock(&state)?;
            state
                .register_febo_commitments(&caller.requester, &registration)
                .map_err(|e| status_of(&e))
        })
        .await?;
        Ok(Response::new(proto::RegisterCommitmentsReply {
            registered: registered as u64,
        }))
    }

    async fn register_noisy_ciphertexts(
        &self,
        request: Request<proto::NoisyCiphertextBatch>,
    ) -> Result<Response<proto::RegisterCommitmentsReply>, Status> {
        let caller = self.tokens.authorize(
            request.metadata(),
            "RegisterNoisyCiphertexts",
            &[Role::Client],
        )?;
        let registration = noisy_registration_from_proto(request.into_inner());
        let state = Arc::clone(&self.state);
        let registered = blocking(move || {
            let mut state = lock(&state)?;
            state
                .register_noisy_ciphertexts(&caller.requester, &registration)
                .map_err(|e| status_of(&e))
        })
        .await?;
        Ok(Response::new(proto::RegisterCommitmentsReply {
            registered: registered as u64,
        }))
    }

    async fn issue_noisy_feip_keys(
        &self,
        request: Request<proto::NoisyFeipKeyBatch>,
    ) -> Result<Response<proto::NoisyFeipKeyReply>, Status> {
        let caller =
            self.tokens
                .authorize(request.metadata(), "IssueNoisyFeipKeys", &[Role::Server])?;
        let request = noisy_request_from_proto(request.into_inner()).map_err(|e| status_of(&e))?;
        let state = Arc::clone(&self.state);
        let published = Arc::clone(&self.published);
        let reply = blocking(move || {
            let mut state = lock(&state)?;
            let r = state.issue_noisy_feip_keys(&caller.requester, &request);
            if let Err(CoordinatorError::DomainRotated { retired, .. }) = &r {
                published.remove(retired.0);
            }
            let r = r.map_err(|e| status_of(&e))?;
            Ok(noisy_response_to_proto(state.authority().group(), &r))
        })
        .await?;
        Ok(Response::new(reply))
    }

    async fn read_audit_log(
        &self,
        request: Request<proto::AuditLogRequest>,
    ) -> Result<Response<proto::AuditLogReply>, Status> {
        self.tokens
            .authorize(request.metadata(), "ReadAuditLog", &[Role::Operator])?;
        let r = request.into_inner();
        let page = match r.max_records as usize {
            0 => AUDIT_PAGE,
            n => n.min(AUDIT_PAGE),
        };
        let state = Arc::clone(&self.state);
        let reply = blocking(move || {
            // Hold the lock while reading so that no record is half-written.
            let state = lock(&state)?;
            let total = state.authority().audit_log().len() as u64;
            let path = state.audit_path();
            let reader = read_audit_file(&path)
                .map_err(|e| Status::internal(format!("{}: {e}", path.display())))?;
            let mut records_json = Vec::new();
            for record in reader.skip(usize::try_from(r.from_seq).unwrap_or(usize::MAX)) {
                if records_json.len() >= page {
                    break;
                }
                let record =
                    record.map_err(|e| Status::internal(format!("{}: {e}", path.display())))?;
                records_json.push(
                    serde_json::to_string(&record)
                        .map_err(|e| Status::internal(format!("audit record JSON: {e}")))?,
                );
            }
            Ok(proto::AuditLogReply {
                records_json,
                total,
            })
        })
        .await?;
        Ok(Response::new(reply))
    }

    async fn list_domains(
        &self,
        request: Request<proto::ListDomainsRequest>,
    ) -> Result<Response<proto::ListDomainsReply>, Status> {
        self.tokens
            .authorize(request.metadata(), "ListDomains", &[Role::Operator])?;
        let state = Arc::clone(&self.state);
        let domains = blocking(move || {
            let state = lock(&state)?;
            let a = state.authority();
            a.domain_ids()
                .into_iter()
                .map(|d| {
                    Ok(proto::DomainInfo {
                        domain: d.0,
                        status: status_name(a.status(d).map_err(|e| status_of(&e))?),
                    })
                })
                .collect::<Result<Vec<_>, Status>>()
        })
        .await?;
        Ok(Response::new(proto::ListDomainsReply { domains }))
    }
}

/// The authority's TLS material (PEM).
#[derive(Clone)]
pub struct ServerTls {
    /// The authority's certificate chain.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
    /// If set, every connection must present a client certificate signed by this CA (mutual
    /// TLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// How the authority serves.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// TLS (None: plaintext, refused on any address but loopback — tokens travel in the
    /// clear).
    pub tls: Option<ServerTls>,
    /// The largest message accepted or sent.
    pub max_message_bytes: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            tls: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl ServeConfig {
    /// Parses the TLS material (certificate chain, key, client CA) as serving would, so that
    /// bad material fails before anything is announced.
    ///
    /// # Errors
    /// [`ServeError::Transport`] naming what tonic/rustls refused.
    pub fn check(&self) -> Result<(), ServeError> {
        server_builder(self).map(|_| ())
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Plaintext (no TLS) was asked for on an address other than a loopback one: bearer tokens
    /// would cross the network in the clear.
    #[error("refusing to serve plaintext gRPC on {addr}: without TLS only loopback addresses (127.0.0.0/8, ::1) are allowed")]
    PlaintextNotLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// The TLS material or the transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A bound listener: its address is known before serving (so `--listen 127.0.0.1:0` works).
#[derive(Debug)]
pub struct Listener {
    inner: std::net::TcpListener,
}

impl Listener {
    /// Binds `addr`.
    ///
    /// # Errors
    /// [`ServeError::Bind`].
    pub fn bind(addr: SocketAddr) -> Result<Self, ServeError> {
        let inner = std::net::TcpListener::bind(addr)
            .map_err(|source| ServeError::Bind { addr, source })?;
        inner
            .set_nonblocking(true)
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Self { inner })
    }

    /// The bound address.
    ///
    /// # Errors
    /// An I/O error from the operating system.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Refuses plaintext serving (`config.tls` is `None`) on a non-loopback address.
///
/// # Errors
/// [`ServeError::PlaintextNotLoopback`]; [`ServeError::Bind`] if the address is unknown.
pub fn check_transport(listener: &Listener, config: &ServeConfig) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    if config.tls.is_none() && !addr.ip().is_loopback() {
        return Err(ServeError::PlaintextNotLoopback { addr });
    }
    Ok(())
}

/// The accepted connections of `listener` (TCP_NODELAY), for tonic; call inside a tokio
/// runtime.
pub(crate) fn incoming(listener: Listener) -> Result<TcpIncoming, ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let tokio_listener = tokio::net::TcpListener::from_std(listener.inner)
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(TcpIncoming::from(tokio_listener).with_nodelay(Some(true)))
}

/// A tonic server with `config`'s TLS identity (and client CA, for mutual TLS), if any.
pub(crate) fn server_builder(config: &ServeConfig) -> Result<Server, ServeError> {
    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        let mut t =
            ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(ca) = &tls.client_ca_pem {
            t = t.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder.tls_config(t)?;
    }
    Ok(builder)
}

/// Serves `state` on `listener` until `shutdown` completes (call inside a tokio runtime).
///
/// # Errors
/// [`ServeError::PlaintextNotLoopback`] for plaintext on a non-loopback address;
/// [`ServeError`] for bad TLS material or a transport failure.
pub async fn serve<G: PrimeOrderGroup>(
    state: Arc<Mutex<PersistentAuthority<G>>>,
    tokens: Arc<TokenTable>,
    listener: Listener,
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    check_transport(&listener, &config)?;
    let incoming = incoming(listener)?;
    let mut builder = server_builder(&config)?;
    let svc = KeyAuthorityServer::new(AuthorityService::new(state, Arc::clone(&tokens)))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let rules = authority_rules(config.max_message_bytes);
    builder
        .add_service(Gated::new(svc, tokens, &rules))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
