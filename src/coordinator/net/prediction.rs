//! Secure prediction over the network: the server's [`PredictionService`] (gRPC service
//! `Predictor` of `proto/prediction.proto`) and the client's [`RemotePredictor`].
//!
//! ```text
//!  client ── GetQueryParams ─────────────────────────────────────▶ server   (S_x, normalisation, Y)
//!  client ── CreateDomains(1 query domain), GetPublicKey ────────▶ authority (client token)
//!  client: ct = FEIP.Encrypt(mpk_query, encode(image))
//!  client ── Predict(EncryptedQuery bytes, ~25 KB) ──────────────▶ server   (client token of the server)
//!                      server ── IssueFeipKeys(1,176 conv1 + pool vectors) ──▶ authority (server token)
//!                      server: z = dlog(...), the rest of LeNet-5 in plaintext
//!  client ◀── class k and the 10 probabilities (trained label space) ── server
//!  client: true label π⁻¹(k)
//! ```
//!
//! The server answers queries one at a time on a worker thread that owns the
//! [`SecurePredictor`]; up to [`QUERY_QUEUE`] queries wait, beyond that a query gets
//! `RESOURCE_EXHAUSTED`. Query bytes are decoded (length, magic, version, checksum, canonical
//! group elements) before they are queued.
//!
//! # Who may call
//! The token and role are checked from the headers by the [gate](super::gate), before the
//! query's body is read (bodies are capped: `GetQueryParams` 64 KiB, `Predict` the configured
//! limit). Every RPC needs a bearer token of role `client` (or `operator`) from the **server's own**
//! tokens file (same format as the authority's, see [`auth`](super::auth)); server tokens are
//! refused. The endpoint is not open because each query costs the server about a second of CPU
//! and makes it ask the authority for 1,176 function keys that the audit log records under the
//! server's name: the server's operator decides who may spend that. The authority's own gate
//! stays in place: a query must name a domain that an authenticated client opened at the same
//! authority, or the server's key request fails (`NOT_FOUND`).
//!
//! # Errors as statuses
//! | cause | status |
//! | --- | --- |
//! | missing / unknown token, server token | `UNAUTHENTICATED`, `PERMISSION_DENIED` |
//! | message above the size limit | `RESOURCE_EXHAUSTED` (gate) or `OUT_OF_RANGE` (tonic) |
//! | malformed protobuf | `INVALID_ARGUMENT` |
//! | malformed or tampered query bytes, other encoding parameters | `INVALID_ARGUMENT` with the reason |
//! | a ciphertext that does not decrypt under its domain's keys (moved to another domain, another authority's key) | `INVALID_ARGUMENT` |
//! | a domain the authority does not know | `NOT_FOUND` |
//! | one of the server's training domains ([`PredictionService::refuse_domains`]) | `FAILED_PRECONDITION` |
//! | a domain with other parameters, closed or rotated, a policy refusal | `INVALID_ARGUMENT` / `FAILED_PRECONDITION` |
//! | the authority unreachable | `UNAVAILABLE` |
//! | queue full | `RESOURCE_EXHAUSTED` |
//!
//! # What travels
//! The server sees the encrypted query (the domain id, the public encoding parameters, the
//! ciphertext) and learns, by decrypting, the 1,176 first-layer outputs — which determine the
//! image — and the class it answers (see [`secure_prediction`](crate::coordinator::secure_prediction)).
//! The authority sees one domain creation by the client and one batch of key vectors (the
//! server's conv1 weights) from the server. The client sees the probabilities.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::coordinator::error::CoordinatorError;
use crate::coordinator::key_service::KeyService;
use crate::coordinator::messages::{DomainId, DomainPublicKey, RequesterId};
use crate::coordinator::net::auth::{Role, TokenTable};
use crate::coordinator::net::channel::{connect, ClientConnection};
use crate::coordinator::net::gate::{Gated, MethodRule};
use crate::coordinator::net::proto;
use crate::coordinator::net::proto::predictor_client::PredictorClient;
use crate::coordinator::net::proto::predictor_server::{Predictor, PredictorServer};
use crate::coordinator::net::remote::{RemoteConfig, RemoteKeyService};
use crate::coordinator::net::service::{
    incoming, server_builder, Listener, ServeConfig, ServeError, SMALL_REQUEST_BYTES,
};
use crate::coordinator::secure_prediction::{EncryptedQuery, Prediction, SecurePredictor};
use crate::coordinator::secure_training::{EncryptionParams, SecureTrainingError};
use crate::fe::discrete_gaussian::DiscreteGaussian;
use crate::fe::group::PrimeOrderGroup;
use crate::nn::data::PixelNormalization;

/// The default message limit of the prediction service, in either direction: 1 MiB. An
/// encrypted query over Ristretto255 is about 25 KB (785 group elements and a small header).
pub const PREDICTION_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Queries that may wait for the worker; one more gets `RESOURCE_EXHAUSTED`.
pub const QUERY_QUEUE: usize = 32;

/// Number of classes of a prediction.
const CLASSES: usize = 10;

/// Why a prediction over the network failed (client side), or the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PredictionError {
    /// The server answered with an error status (or could not be reached).
    #[error("prediction server {peer}: {code:?}: {message}")]
    Status {
        /// The server's URL.
        peer: String,
        /// The gRPC status code.
        code: Code,
        /// The server's (or the transport's) message.
        message: String,
    },
    /// The server's answer is malformed.
    #[error("prediction server {peer}: invalid reply: {reason}")]
    InvalidReply {
        /// The server's URL.
        peer: String,
        /// What is wrong.
        reason: String,
    },
    /// The client configuration is unusable (URL, token, TLS material, runtime).
    #[error("prediction client for {peer}: {reason}")]
    Config {
        /// The server's URL.
        peer: String,
        /// What is wrong.
        reason: String,
    },
    /// The service's worker thread could not start.
    #[error("cannot start the prediction worker: {0}")]
    Worker(#[source] std::io::Error),
}

impl PredictionError {
    /// The gRPC status code, for [`PredictionError::Status`].
    #[must_use]
    pub fn code(&self) -> Option<Code> {
        match self {
            PredictionError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What a server publishes for clients: how to encode and encrypt a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryInfo {
    /// The encoding parameters of queries (one image per shard).
    pub params: EncryptionParams,
    /// The group byte of the wire format ([`GroupId::to_byte`](crate::fe::group::GroupId::to_byte)).
    pub group: u8,
    /// The URL of the authority the server takes keys from.
    pub authority: String,
    /// SHA-256 of the served model's weights.
    pub weights_sha256: String,
}

/// The server's answer to one query, as the client receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePrediction {
    /// The query's domain.
    pub domain: DomainId,
    /// The class and probabilities, in the label space the model was trained in.
    pub prediction: Prediction,
    /// The server's time for the query.
    pub server_seconds: f64,
    /// Of which waiting for the authority's keys.
    pub key_seconds: f64,
}

/// What the worker reports after each query (for logs): the domain, the outcome and the
/// timings.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    /// The query's domain.
    pub domain: DomainId,
    /// The class in the trained label space, or the error's message.
    pub outcome: Result<u8, String>,
    /// The server's time for the query.
    pub server_seconds: f64,
    /// Of which waiting for the authority's keys.
    pub key_seconds: f64,
}

/// Called on the worker thread after every query.
pub type QueryObserver = Box<dyn FnMut(&QueryRecord) + Send>;

struct Answer {
    prediction: Prediction,
    server_seconds: f64,
    key_seconds: f64,
}

struct Job<G: PrimeOrderGroup> {
    query: EncryptedQuery<G>,
    /// Answer with noisy keys (the request's `noisy`).
    noisy: bool,
    reply: oneshot::Sender<Result<Answer, SecureTrainingError>>,
}

/// The `Predictor` gRPC service over a [`SecurePredictor`] (see the [module docs](self)).
pub struct PredictionService<G: PrimeOrderGroup> {
    group: G,
    tokens: Arc<TokenTable>,
    info: proto::QueryParams,
    jobs: SyncSender<Job<G>>,
    refused: BTreeSet<DomainId>,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for PredictionService<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionService")
            .field("tokens", &self.tokens)
            .field("authority", &self.info.authority)
            .field("weights_sha256", &self.info.weights_sha256)
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup> PredictionService<G> {
    /// Starts the worker thread that owns `predictor` and answers the callers of `tokens`.
    /// `authority` is the URL published to clients (where they open query domains).
    ///
    /// # Errors
    /// [`PredictionError::Worker`] if the thread cannot start.
    pub fn start<K: KeyService<G> + 'static>(
        predictor: SecurePredictor<G, K>,
        tokens: Arc<TokenTable>,
        authority: &str,
        observer: Option<QueryObserver>,
    ) -> Result<Self, PredictionError> {
        let p = predictor.params();
        let info = proto::QueryParams {
            scale_x: p.scale_x,
            scale_p: p.scale_p,
            pixel_offset: p.normalization.offset,
            pixel_divisor: p.normalization.divisor,
            key_bound: p.key_bound,
            group: u32::from(predictor_group(&predictor).id().to_byte()),
            authority: authority.to_string(),
            weights_sha256: predictor.model().weights_sha256(),
        };
        let group = predictor_group(&predictor).clone();
        let (jobs, queue) = sync_channel::<Job<G>>(QUERY_QUEUE);
        std::thread::Builder::new()
            .name("cryptonn-predictor".into())
            .spawn(move || worker(predictor, &queue, observer))
            .map_err(PredictionError::Worker)?;
        Ok(Self {
            group,
            tokens,
            info,
            jobs,
            refused: BTreeSet::new(),
        })
    }

    /// Refuses queries that name one of `domains` (`FAILED_PRECONDITION`), before any key
    /// request: a server passes its training shards' domains, so that a prediction client
    /// cannot make it ask for keys in the data owner's training domains.
    #[must_use]
    pub fn refuse_domains(mut self, domains: impl IntoIterator<Item = DomainId>) -> Self {
        self.refused.extend(domains);
        self
    }
}

fn predictor_group<G: PrimeOrderGroup, K: KeyService<G>>(p: &SecurePredictor<G, K>) -> &G {
    p.group()
}

/// Answers queries in order until every sender is gone.
fn worker<G: PrimeOrderGroup, K: KeyService<G>>(
    mut predictor: SecurePredictor<G, K>,
    queue: &std::sync::mpsc::Receiver<Job<G>>,
    mut observer: Option<QueryObserver>,
) {
    while let Ok(job) = queue.recv() {
        let start = Instant::now();
        let keys_before = predictor.stats().key_seconds;
        predictor.set_noisy_queries(job.noisy);
        let result = predictor.predict(&job.query);
        let server_seconds = start.elapsed().as_secs_f64();
        let key_seconds = predictor.stats().key_seconds - keys_before;
        if let Some(observe) = observer.as_mut() {
            observe(&QueryRecord {
                domain: job.query.domain(),
                outcome: result
                    .as_ref()
                    .map(|p| p.class)
                    .map_err(ToString::to_string),
                server_seconds,
                key_seconds,
            });
        }
        // The caller may have gone (deadline, disconnect): nothing to do then.
        let _ = job.reply.send(result.map(|prediction| Answer {
            prediction,
            server_seconds,
            key_seconds,
        }));
    }
}

/// The status of a failed prediction.
fn status_of_prediction(domain: DomainId, e: &SecureTrainingError) -> Status {
    match e {
        SecureTrainingError::Parameters(_) | SecureTrainingError::Fe(_) => {
            Status::invalid_argument(e.to_string())
        }
        SecureTrainingError::DlogOutOfRange { .. } => Status::invalid_argument(format!(
            "the query does not decrypt under the keys of {domain}: it was encrypted under \
             another domain's or another authority's key ({e})"
        )),
        SecureTrainingError::Coordinator(c) => match c {
            CoordinatorError::UnknownDomain(_) => Status::not_found(format!(
                "the authority of this server does not know {domain}: open the query domain \
                 there ({e})"
            )),
            CoordinatorError::Refused { .. }
            | CoordinatorError::DomainRotated { .. }
            | CoordinatorError::DomainClosed(_)
            | CoordinatorError::PrivacyBudgetExceeded { .. } => {
                Status::failed_precondition(e.to_string())
            }
            CoordinatorError::NoisyDomain(_) => Status::failed_precondition(format!(
                "{domain} is noisy: send the query as noisy ({e})"
            )),
            CoordinatorError::NotNoisy(_) => Status::failed_precondition(format!(
                "{domain} is not noisy: send the query as exact ({e})"
            )),
            CoordinatorError::UnregisteredCiphertext { .. } => Status::permission_denied(format!(
                "the query's ct0 is not registered in {domain}: its owner registers it first                  ({e})"
            )),
            CoordinatorError::Remote { code, .. } if code == "Unavailable" => {
                Status::unavailable(format!("the authority is unreachable: {e}"))
            }
            _ => Status::internal(format!("the server's key request failed: {e}")),
        },
        _ => Status::internal(e.to_string()),
    }
}

const CALLERS: &[Role] = &[Role::Client, Role::Operator];

#[tonic::async_trait]
impl<G: PrimeOrderGroup> Predictor for PredictionService<G> {
    async fn get_query_params(
        &self,
        request: Request<proto::QueryParamsRequest>,
    ) -> Result<Response<proto::QueryParams>, Status> {
        self.tokens
            .authorize(request.metadata(), "GetQueryParams", CALLERS)?;
        Ok(Response::new(self.info.clone()))
    }

    async fn predict(
        &self,
        request: Request<proto::PredictRequest>,
    ) -> Result<Response<proto::PredictReply>, Status> {
        self.tokens
            .authorize(request.metadata(), "Predict", CALLERS)?;
        let proto::PredictRequest {
            query: bytes,
            noisy,
        } = request.into_inner();
        let group = self.group.clone();
        // Decoding checks 785 group elements: CPU work, off the async threads.
        let query = tokio::task::spawn_blocking(move || EncryptedQuery::from_bytes(&group, &bytes))
            .await
            .map_err(|e| Status::internal(format!("decoding task failed: {e}")))?
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let domain = query.domain();
        if self.refused.contains(&domain) {
            return Err(Status::failed_precondition(format!(
                "{domain} is a training domain of this server, not a query domain: open a fresh \
                 query domain for each query"
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job {
                query,
                noisy,
                reply,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => Status::resource_exhausted(format!(
                    "the server is busy ({QUERY_QUEUE} queries waiting); retry later"
                )),
                TrySendError::Disconnected(_) => Status::unavailable("the predictor has stopped"),
            })?;
        let answer = answer
            .await
            .map_err(|_| Status::internal("the predictor stopped while answering"))?
            .map_err(|e| status_of_prediction(domain, &e))?;
        Ok(Response::new(proto::PredictReply {
            domain: domain.0,
            trained_class: u32::from(answer.prediction.class),
            probabilities: answer.prediction.probabilities,
            server_seconds: answer.server_seconds,
            key_seconds: answer.key_seconds,
        }))
    }
}

/// Serves `service` on `listener` until `shutdown` completes (call inside a tokio runtime).
/// TLS and the message limit come from `config`, as for the authority's
/// [`serve`](super::serve); use [`PREDICTION_MAX_MESSAGE_BYTES`] as the limit unless queries
/// are larger.
///
/// # Errors
/// [`ServeError`] for bad TLS material or a transport failure.
pub async fn serve_predictions<G: PrimeOrderGroup>(
    service: PredictionService<G>,
    listener: Listener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    crate::coordinator::net::service::check_transport(&listener, &config)?;
    let incoming = incoming(listener)?;
    let mut builder = server_builder(&config)?;
    let tokens = Arc::clone(&service.tokens);
    let svc = PredictorServer::new(service)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let rules = [
        MethodRule {
            method: "GetQueryParams",
            roles: CALLERS,
            max_request_bytes: SMALL_REQUEST_BYTES,
        },
        MethodRule {
            method: "Predict",
            roles: CALLERS,
            max_request_bytes: config.max_message_bytes,
        },
    ];
    builder
        .add_service(Gated::new(svc, tokens, &rules))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// Opens a fresh query domain at a remote authority (client token) and returns its public
/// key: the networked form of
/// [`open_query_domain`](crate::coordinator::secure_prediction::open_query_domain), with the
/// same domain configuration (one shard's parameters, the per-batch policy), bound to this
/// client as owner and to `server` (the prediction server's name at the authority) as its only
/// requester.
///
/// # Errors
/// [`SecureTrainingError::Parameters`] for unusable parameters; the authority's refusal or a
/// transport error as [`SecureTrainingError::Coordinator`].
pub fn open_remote_query_domain<G: PrimeOrderGroup>(
    authority: &RemoteKeyService<G>,
    params: &EncryptionParams,
    server: &RequesterId,
) -> Result<DomainPublicKey<G>, SecureTrainingError> {
    open_remote_noisy_query_domain(authority, params, server, None)
}

/// [`open_remote_query_domain`], noisy from the start when `sigma` is set: the networked form
/// of
/// [`open_noisy_query_domain`](crate::coordinator::secure_prediction::open_noisy_query_domain)
/// (coordinate range `2·x_bound`). The client then registers the query's `ct0`
/// ([`EncryptedQuery::register_noisy`]) and sends it with
/// [`RemotePredictor::predict_noisy`].
///
/// # Errors
/// As [`open_remote_query_domain`].
pub fn open_remote_noisy_query_domain<G: PrimeOrderGroup>(
    authority: &RemoteKeyService<G>,
    params: &EncryptionParams,
    server: &RequesterId,
    sigma: Option<DiscreteGaussian>,
) -> Result<DomainPublicKey<G>, SecureTrainingError> {
    let noise = sigma.map(|s| params.noise_config(s)).transpose()?;
    let domains = authority.create_domains_with_noise(
        params.feip_params()?,
        Some(params.febo_params()?),
        1,
        true,
        std::slice::from_ref(server),
        noise,
    )?;
    let [domain] = domains[..] else {
        return Err(SecureTrainingError::Coordinator(CoordinatorError::Remote {
            peer: authority.peer().to_string(),
            code: "InvalidReply".into(),
            message: format!("asked for 1 domain, got {}", domains.len()),
        }));
    };
    Ok(authority.public_key(domain)?)
}

/// A blocking client of a prediction server. It owns a small tokio runtime (do not call it
/// from inside another runtime). Calls are retried with backoff while the server is
/// unreachable, for up to [`RemoteConfig::retry_for`] (a query may be sent twice: the server
/// then answers it twice, with the same keys).
pub struct RemotePredictor<G: PrimeOrderGroup> {
    group: G,
    connection: ClientConnection,
    client: PredictorClient<Channel>,
    config: RemoteConfig,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for RemotePredictor<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotePredictor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup> RemotePredictor<G> {
    /// A client of the prediction server at `config.url` (`https://…`, or `http://` for
    /// plaintext loopback tests), with the server's CA, token and message limit in `config`.
    /// No connection is made until the first call.
    ///
    /// # Errors
    /// [`PredictionError::Config`] for a malformed URL, token or TLS material.
    pub fn connect(group: G, config: RemoteConfig) -> Result<Self, PredictionError> {
        let bad = |reason: String| PredictionError::Config {
            peer: config.url.clone(),
            reason,
        };
        let connection = connect(&config, "cryptonn-predict-client")
            .map_err(|(code, message)| bad(format!("{code}: {message}")))?;
        let client = PredictorClient::new(connection.channel.clone())
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes);
        Ok(Self {
            group,
            connection,
            client,
            config,
        })
    }

    /// The server's URL.
    #[must_use]
    pub fn peer(&self) -> &str {
        &self.config.url
    }

    fn call<T, R, F, Fut>(&self, message: T, rpc: F) -> Result<R, PredictionError>
    where
        T: Clone,
        F: Fn(PredictorClient<Channel>, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        self.connection
            .call(&self.client, message, rpc, self.config.retry_for, |s| {
                s.code() == Code::Unavailable
            })
            .map_err(|s| PredictionError::Status {
                peer: self.config.url.clone(),
                code: s.code(),
                message: s.message().to_string(),
            })
    }

    fn invalid(&self, reason: impl Into<String>) -> PredictionError {
        PredictionError::InvalidReply {
            peer: self.config.url.clone(),
            reason: reason.into(),
        }
    }

    /// How the server wants queries encoded, checked: the group must be this client's and the
    /// parameters must give valid FEIP and FEBO bounds.
    ///
    /// # Errors
    /// [`PredictionError::Status`] from the server; [`PredictionError::InvalidReply`] for
    /// another group or unusable parameters.
    pub fn query_info(&self) -> Result<QueryInfo, PredictionError> {
        let r = self.call(proto::QueryParamsRequest {}, |mut c, r| async move {
            c.get_query_params(r).await
        })?;
        let ours = self.group.id().to_byte();
        if r.group != u32::from(ours) {
            return Err(self.invalid(format!(
                "the server computes over group {}, this client over group {ours}",
                r.group
            )));
        }
        let params = EncryptionParams {
            shard_size: 1,
            scale_x: r.scale_x,
            scale_p: r.scale_p,
            normalization: PixelNormalization {
                offset: r.pixel_offset,
                divisor: r.pixel_divisor,
            },
            key_bound: r.key_bound,
            layout: None,
        };
        params
            .feip_params()
            .and_then(|_| params.febo_params())
            .map_err(|e| self.invalid(format!("query parameters: {e}")))?;
        Ok(QueryInfo {
            params,
            group: ours,
            authority: r.authority,
            weights_sha256: r.weights_sha256,
        })
    }

    /// Sends `query` and returns the server's answer.
    ///
    /// # Errors
    /// As [`predict_bytes`](Self::predict_bytes).
    pub fn predict(&self, query: &EncryptedQuery<G>) -> Result<RemotePrediction, PredictionError> {
        self.predict_bytes(query.to_bytes(&self.group))
    }

    /// Sends a query of a noisy domain ([`open_remote_noisy_query_domain`], its `ct0`
    /// registered): the server classifies it from noisy first-layer values.
    ///
    /// # Errors
    /// As [`predict_bytes`](Self::predict_bytes).
    pub fn predict_noisy(
        &self,
        query: &EncryptedQuery<G>,
    ) -> Result<RemotePrediction, PredictionError> {
        self.send(proto::PredictRequest {
            query: query.to_bytes(&self.group),
            noisy: true,
        })
    }

    /// Sends the bytes of an encrypted query (for tools and tests that build them themselves).
    ///
    /// # Errors
    /// [`PredictionError::Status`] with the server's status (see the [module docs](self));
    /// [`PredictionError::InvalidReply`] for an answer without 10 finite probabilities or with
    /// a class out of range.
    pub fn predict_bytes(&self, query: Vec<u8>) -> Result<RemotePrediction, PredictionError> {
        self.send(proto::PredictRequest {
            query,
            noisy: false,
        })
    }

    fn send(&self, request: proto::PredictRequest) -> Result<RemotePrediction, PredictionError> {
        let r = self.call(request, |mut c, r| async move { c.predict(r).await })?;
        if r.probabilities.len() != CLASSES || r.probabilities.iter().any(|p| !p.is_finite()) {
            return Err(self.invalid(format!(
                "expected {CLASSES} finite probabilities, got {:?}",
                r.probabilities
            )));
        }
        let class = u8::try_from(r.trained_class)
            .ok()
            .filter(|&c| usize::from(c) < CLASSES)
            .ok_or_else(|| self.invalid(format!("class {} out of range", r.trained_class)))?;
        Ok(RemotePrediction {
            domain: DomainId(r.domain),
            prediction: Prediction {
                class,
                probabilities: r.probabilities,
            },
            server_seconds: r.server_seconds,
            key_seconds: r.key_seconds,
        })
    }
}
