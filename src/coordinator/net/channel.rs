//! The client side of one gRPC connection, shared by [`RemoteKeyService`] and
//! [`RemotePredictor`]: a private tokio runtime, a channel that connects lazily with TLS as
//! [`RemoteConfig`] (defined here, the lower file) says, and the bearer-token header.
//!
//! [`RemoteKeyService`]: super::RemoteKeyService
//! [`RemotePredictor`]: super::RemotePredictor

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Response, Status};

use crate::coordinator::messages::RequesterId;

/// The default limit of one gRPC message, in either direction: 256 MiB. The largest request of
/// a training step's keys (e.g. 9,600 dense key vectors of about a thousand entries) is about
/// 20 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 << 20;

/// How to reach and authenticate to a peer (an authority or a prediction server).
#[derive(Clone)]
pub struct RemoteConfig {
    /// `https://host:port` (or `http://` for plaintext loopback experiments).
    pub url: String,
    /// The CA that signed the authority's certificate (PEM); `None` for plaintext.
    pub ca_pem: Option<Vec<u8>>,
    /// The name to check the authority's certificate against (default: the URL's host).
    pub tls_domain: Option<String>,
    /// A client certificate and key (PEM), for an authority that requires mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The bearer token the operator provisioned for this party.
    pub token: String,
    /// The name the token was provisioned for (what [`KeyService::requester`](crate::coordinator::KeyService::requester) reports; the
    /// authority audits under the token's name whatever this says).
    pub requester: RequesterId,
    /// How long to keep retrying while the authority is unreachable.
    pub retry_for: Duration,
    /// The largest message sent or accepted.
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("tls", &self.ca_pem.is_some())
            .field("mutual_tls", &self.identity.is_some())
            .field("requester", &self.requester)
            .field("retry_for", &self.retry_for)
            .finish_non_exhaustive()
    }
}

impl RemoteConfig {
    /// A configuration for `url` with `token`, TLS trusting `ca_pem`, retrying for 60 s.
    #[must_use]
    pub fn new(url: impl Into<String>, token: impl Into<String>, ca_pem: Option<Vec<u8>>) -> Self {
        Self {
            url: url.into(),
            ca_pem,
            tls_domain: None,
            identity: None,
            token: token.into(),
            requester: RequesterId::new("remote"),
            retry_for: Duration::from_secs(60),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// A runtime, a lazily connecting channel and the `authorization` header value.
pub(crate) struct ClientConnection {
    pub runtime: tokio::runtime::Runtime,
    pub channel: Channel,
    pub auth: MetadataValue<Ascii>,
}

impl ClientConnection {
    /// Runs one RPC of `client` with the bearer token and blocks for its answer, retrying
    /// with backoff (50 ms doubling to 2 s) while `retryable` says so and `retry_for` allows.
    pub(crate) fn call<C, T, R, F, Fut>(
        &self,
        client: &C,
        message: T,
        rpc: F,
        retry_for: Duration,
        retryable: fn(&Status) -> bool,
    ) -> Result<R, Status>
    where
        C: Clone,
        T: Clone,
        F: Fn(C, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            let mut request = Request::new(message.clone());
            request
                .metadata_mut()
                .insert("authorization", self.auth.clone());
            match self.runtime.block_on(rpc(client.clone(), request)) {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(&s) && start.elapsed() + backoff < retry_for => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(s) => return Err(s),
            }
        }
    }
}

/// Why a connection could not be set up: a short code (`Runtime`, `InvalidUrl`, `Tls`,
/// `InvalidToken`) and the cause.
pub(crate) type ConnectFailure = (&'static str, String);

/// Whether `host` (of a URL) names a loopback interface: `localhost`, `127.0.0.0/8` or `::1`.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Sets up the connection to `config.url` (no network traffic until the first call), its
/// runtime running on one thread named `thread_name`. Without TLS (no CA) only loopback hosts
/// are accepted (`Plaintext`), since the bearer token would cross the network in the clear.
pub(crate) fn connect(
    config: &RemoteConfig,
    thread_name: &str,
) -> Result<ClientConnection, ConnectFailure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(thread_name)
        .enable_all()
        .build()
        .map_err(|e| ("Runtime", e.to_string()))?;
    let mut endpoint = Endpoint::from_shared(config.url.clone())
        .map_err(|e| ("InvalidUrl", e.to_string()))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    if config.ca_pem.is_none() {
        let host = endpoint.uri().host().unwrap_or("");
        if !is_loopback_host(host) {
            return Err((
                "Plaintext",
                format!(
                    "refusing plaintext gRPC to {}: without TLS (a CA certificate) only \
                     loopback hosts are allowed, since the bearer token would travel in the clear",
                    config.url
                ),
            ));
        }
    }
    if let Some(ca) = &config.ca_pem {
        check_ca_pem(ca).map_err(|e| ("Tls", e))?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(d) = &config.tls_domain {
            tls = tls.domain_name(d.clone());
        }
        if let Some((cert, key)) = &config.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| ("Tls", e.to_string()))?;
    }
    let channel = {
        let _guard = runtime.enter();
        endpoint.connect_lazy()
    };
    let auth = format!("Bearer {}", config.token).parse().map_err(|_| {
        (
            "InvalidToken",
            "the token is not printable ASCII".to_string(),
        )
    })?;
    Ok(ClientConnection {
        runtime,
        channel,
        auth,
    })
}

/// Checks that `pem` holds at least one PEM certificate and nothing unreadable (else a garbage
/// CA file would only show up as `UnknownIssuer` at the first handshake).
///
/// # Errors
/// The reason, as text.
pub fn check_ca_pem(pem: &[u8]) -> Result<usize, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("the CA certificate file is not valid PEM: {e}"))?;
        // An X.509 certificate is a DER SEQUENCE.
        if cert.first() != Some(&0x30) {
            return Err(
                "the CA certificate file holds a PEM block that is not a DER certificate".into(),
            );
        }
        count += 1;
    }
    if count == 0 {
        return Err("the CA certificate file holds no PEM certificate \
                    (-----BEGIN CERTIFICATE-----)"
            .into());
    }
    Ok(count)
}
