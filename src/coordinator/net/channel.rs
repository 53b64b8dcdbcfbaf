//! The client side of one gRPC connection, shared by [`RemoteKeyService`] and
//! [`RemotePredictor`]: a private tokio runtime, a channel that connects lazily with TLS as
//! [`RemoteConfig`] says, and the bearer-token header.
//!
//! [`RemoteKeyService`]: super::RemoteKeyService
//! [`RemotePredictor`]: super::RemotePredictor

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Response, Status};

use crate::coordinator::net::remote::RemoteConfig;

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

/// Sets up the connection to `config.url` (no network traffic until the first call), its
/// runtime running on one thread named `thread_name`.
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
