//! [`LoopbackAuthority`]: an authority served with TLS on 127.0.0.1 from its own tokio
//! runtime, with a fresh private CA — for experiments, benchmarks and tests on one machine
//! (`examples/key_request_cost`, `key_service_load`, `bench_report`).
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use cryptonn::coordinator::net::{LoopbackAuthority, RemoteKeyService, Role, TokenTable};
//! use cryptonn::coordinator::net::auth::random_token;
//! use cryptonn::coordinator::{DomainConfig, KeyService, PersistentAuthority, RequesterId,
//!                             StateOptions};
//! use cryptonn::fe::feip::FeipParams;
//! use cryptonn::fe::group::ristretto::Ristretto255;
//!
//! let dir = std::env::temp_dir().join(format!("cryptonn-loopback-doc-{}", std::process::id()));
//! let mut state = PersistentAuthority::open(Ristretto255, &dir, StateOptions::default())?;
//! let domain = state.create_domain(DomainConfig::new(FeipParams::new(8, 255, 100)?))?;
//! let token = random_token();
//! let mut tokens = TokenTable::new();
//! tokens.add(Role::Server, "server-1", &token)?;
//! let authority = LoopbackAuthority::start(Arc::new(Mutex::new(state)), tokens)?;
//! let keys = RemoteKeyService::connect(
//!     Ristretto255,
//!     authority.remote_config(&token, RequesterId::new("server-1")),
//! )?;
//! assert_eq!(keys.public_key(domain)?.domain, domain);
//! drop((keys, authority));
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::coordinator::messages::RequesterId;
use crate::coordinator::net::auth::TokenTable;
use crate::coordinator::net::remote::RemoteConfig;
use crate::coordinator::net::service::{serve, Listener, ServeConfig, ServeError, ServerTls};
use crate::coordinator::net::tls::{generate_pki, PkiError};
use crate::coordinator::persistent::PersistentAuthority;
use crate::fe::group::PrimeOrderGroup;

/// Why a loopback authority could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoopbackError {
    /// The certificates could not be made.
    #[error("certificates: {0}")]
    Pki(#[from] PkiError),
    /// The port could not be bound or the server not built.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The runtime could not start.
    #[error("tokio runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// An authority served on 127.0.0.1 with TLS until dropped (see the [module docs](self)).
pub struct LoopbackAuthority {
    /// Runs the server; dropping it stops the server.
    _runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    ca_pem: Vec<u8>,
}

impl std::fmt::Debug for LoopbackAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackAuthority")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LoopbackAuthority {
    /// Serves `state` to the callers of `tokens` on a free port of 127.0.0.1, with a
    /// certificate for `localhost` from a fresh CA.
    ///
    /// # Errors
    /// [`LoopbackError`] if the certificates, the port or the runtime fail.
    pub fn start<G: PrimeOrderGroup>(
        state: Arc<Mutex<PersistentAuthority<G>>>,
        tokens: TokenTable,
    ) -> Result<Self, LoopbackError> {
        let pki = generate_pki(&["localhost".into()], &[])?;
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = Listener::bind(any_port)?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: any_port,
            source,
        })?;
        let runtime = tokio::runtime::Runtime::new()?;
        let config = ServeConfig {
            tls: Some(ServerTls {
                cert_pem: pki.server.cert_pem.clone().into_bytes(),
                key_pem: pki.server.key_pem.clone().into_bytes(),
                client_ca_pem: None,
            }),
            ..ServeConfig::default()
        };
        runtime.spawn(serve(
            state,
            Arc::new(tokens),
            listener,
            config,
            std::future::pending(),
        ));
        Ok(Self {
            _runtime: runtime,
            addr,
            ca_pem: pki.ca_cert_pem.into_bytes(),
        })
    }

    /// `https://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client configuration for this authority: its CA, `localhost` as the TLS name, `token`
    /// and `requester`, no retries (a loopback authority does not restart).
    #[must_use]
    pub fn remote_config(&self, token: &str, requester: RequesterId) -> RemoteConfig {
        let mut c = RemoteConfig::new(self.url(), token, Some(self.ca_pem.clone()));
        c.tls_domain = Some("localhost".into());
        c.requester = requester;
        c.retry_for = std::time::Duration::ZERO;
        c
    }
}
