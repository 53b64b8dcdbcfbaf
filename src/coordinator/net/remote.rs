//! [`RemoteKeyService`]: the key service of a remote authority, as a blocking [`KeyService`].
//!
//! It owns a small tokio runtime and one HTTP/2 channel (reconnected lazily), so the existing
//! synchronous code — [`Server`](crate::coordinator::Server), secure training — runs over the
//! network unchanged. Do not call it from inside another tokio runtime.
//!
//! While the authority is unreachable (`UNAVAILABLE`, a broken connection) a call is retried
//! with exponential backoff (50 ms doubling to 2 s) for up to [`RemoteConfig::retry_for`];
//! repeating a key request is safe, since `sk_y = <y, s>` is the same key every time (the
//! authority audits it again). Every other error is returned at once: policy refusals and
//! domain errors typed as in-process, the rest as [`CoordinatorError::Remote`].

use std::future::Future;

use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::coordinator::authority::NoiseConfig;
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::key_service::KeyService;
use crate::coordinator::messages::{
    DomainId, DomainPublicKey, FeboCommitmentRegistration, FeboKeyRequest, FeboKeyResponse,
    FeipKeyRequest, FeipKeyResponse, NoisyCiphertextRegistration, NoisyKeyRequest,
    NoisyKeyResponse, RequesterId,
};
pub use crate::coordinator::net::channel::RemoteConfig;
use crate::coordinator::net::channel::{connect, ClientConnection};
use crate::coordinator::net::convert::{
    error_of, febo_params_to_proto, febo_request_to_proto, febo_response_from_proto,
    feip_params_to_proto, feip_request_to_proto, feip_response_from_proto, noise_to_proto,
    noisy_registration_to_proto, noisy_request_to_proto, noisy_response_from_proto,
    public_key_from_proto,
};
use crate::coordinator::net::proto;
use crate::coordinator::net::proto::key_authority_client::KeyAuthorityClient;
use crate::coordinator::AuditRecord;
use crate::fe::febo::FeboParams;
use crate::fe::feip::FeipParams;
use crate::fe::group::PrimeOrderGroup;

/// A blocking client of a remote authority (see the [module docs](self)).
pub struct RemoteKeyService<G: PrimeOrderGroup> {
    group: G,
    connection: ClientConnection,
    client: KeyAuthorityClient<Channel>,
    config: RemoteConfig,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for RemoteKeyService<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeyService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn remote(peer: &str, code: &str, message: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Remote {
        peer: peer.to_string(),
        code: code.to_string(),
        message: message.to_string(),
    }
}

fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    )
}

impl<G: PrimeOrderGroup> RemoteKeyService<G> {
    /// A client of the authority at `config.url` over `group` (no connection is made until the
    /// first call).
    ///
    /// # Errors
    /// [`CoordinatorError::Remote`] for a malformed URL, token or TLS material, or if the
    /// runtime cannot start.
    pub fn connect(group: G, config: RemoteConfig) -> Result<Self, CoordinatorError> {
        let peer = config.url.clone();
        let connection = connect(&config, "cryptonn-key-client")
            .map_err(|(code, message)| remote(&peer, code, message))?;
        let client = KeyAuthorityClient::new(connection.channel.clone())
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes);
        Ok(Self {
            group,
            connection,
            client,
            config,
        })
    }

    /// The authority's URL.
    #[must_use]
    pub fn peer(&self) -> &str {
        &self.config.url
    }

    /// Runs one RPC, retrying while the authority is unreachable.
    fn call<T, R, F, Fut>(&self, message: T, rpc: F) -> Result<R, CoordinatorError>
    where
        T: Clone,
        F: Fn(KeyAuthorityClient<Channel>, Request<T>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        self.connection
            .call(&self.client, message, rpc, self.config.retry_for, retryable)
            .map_err(|s| error_of(&self.config.url, &s))
    }

    /// Creates `count` key domains with the given parameters (client or operator role), owned
    /// by this party and bound to `requesters` (the servers allowed to ask for their keys). With
    /// `per_batch` they get the per-batch policy
    /// ([`PolicyConfig::per_batch`](crate::coordinator::PolicyConfig::per_batch)), else the
    /// default policy.
    ///
    /// # Errors
    /// The authority's refusal (e.g. `PERMISSION_DENIED` for a server token) or a transport
    /// error, as [`CoordinatorError::Remote`].
    pub fn create_domains(
        &self,
        feip: FeipParams,
        febo: Option<FeboParams>,
        count: u32,
        per_batch: bool,
        requesters: &[RequesterId],
    ) -> Result<Vec<DomainId>, CoordinatorError> {
        self.create_domains_with_noise(feip, febo, count, per_batch, requesters, None)
    }

    /// [`create_domains`](Self::create_domains), noisy from the start when `noise` is set
    /// (see [`Authority::make_noisy`](crate::coordinator::Authority::make_noisy)): the
    /// requesters then get only ciphertext-bound noisy keys, for the `ct0` values this client
    /// registers ([`KeyService::register_noisy_ciphertexts`]).
    ///
    /// # Errors
    /// As [`create_domains`](Self::create_domains); `INVALID_ARGUMENT` for noise settings the
    /// authority refuses.
    pub fn create_domains_with_noise(
        &self,
        feip: FeipParams,
        febo: Option<FeboParams>,
        count: u32,
        per_batch: bool,
        requesters: &[RequesterId],
        noise: Option<NoiseConfig>,
    ) -> Result<Vec<DomainId>, CoordinatorError> {
        use crate::coordinator::net::service::{MAX_CREATE_ELEMENTS, MAX_DOMAINS_PER_CALL};
        // One call stays within the authority's limits: split larger requests.
        let per_call = (MAX_CREATE_ELEMENTS / feip.n().max(1) as u64)
            .clamp(1, u64::from(MAX_DOMAINS_PER_CALL));
        let per_call = u32::try_from(per_call).unwrap_or(MAX_DOMAINS_PER_CALL);
        let mut domains = Vec::with_capacity(count as usize);
        let mut left = count;
        while left > 0 || domains.is_empty() {
            let message = proto::CreateDomainsRequest {
                requesters: requesters.iter().map(|r| r.0.clone()).collect(),
                feip: Some(feip_params_to_proto(&feip)),
                febo: febo.as_ref().map(febo_params_to_proto),
                count: left.min(per_call),
                noise: noise.as_ref().map(noise_to_proto),
                policy: if per_batch {
                    proto::PolicyKind::PolicyPerBatch as i32
                } else {
                    proto::PolicyKind::PolicyDefault as i32
                },
            };
            let reply = self.call(message, |mut c, r| async move { c.create_domains(r).await })?;
            domains.extend(reply.domains.into_iter().map(DomainId));
            left -= left.min(per_call);
            if count == 0 {
                break;
            }
        }
        Ok(domains)
    }

    /// A page of the audit log from sequence number `from` (operator role), and the number of
    /// records in the log.
    ///
    /// # Errors
    /// As [`create_domains`](Self::create_domains); `InvalidReply` for a record that does not
    /// parse.
    pub fn read_audit_log(
        &self,
        from: u64,
        max_records: u32,
    ) -> Result<(Vec<AuditRecord>, u64), CoordinatorError> {
        let message = proto::AuditLogRequest {
            from_seq: from,
            max_records,
        };
        let reply = self.call(message, |mut c, r| async move { c.read_audit_log(r).await })?;
        let records = reply
            .records_json
            .iter()
            .map(|j| serde_json::from_str(j))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| remote(&self.config.url, "InvalidReply", e))?;
        Ok((records, reply.total))
    }

    /// Every domain and its status (operator role).
    ///
    /// # Errors
    /// As [`create_domains`](Self::create_domains).
    pub fn list_domains(&self) -> Result<Vec<(DomainId, String)>, CoordinatorError> {
        let reply = self.call(proto::ListDomainsRequest {}, |mut c, r| async move {
            c.list_domains(r).await
        })?;
        Ok(reply
            .domains
            .into_iter()
            .map(|d| (DomainId(d.domain), d.status))
            .collect())
    }
}

impl<G: PrimeOrderGroup> KeyService<G> for RemoteKeyService<G> {
    fn requester(&self) -> &RequesterId {
        &self.config.requester
    }

    fn public_key(&self, domain: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError> {
        let message = proto::PublicKeyRequest { domain: domain.0 };
        let reply = self.call(message, |mut c, r| async move { c.get_public_key(r).await })?;
        let pk = public_key_from_proto(&self.group, &self.config.url, &reply)?;
        if pk.domain != domain {
            return Err(remote(
                &self.config.url,
                "InvalidReply",
                format!("asked for {domain}, got {}", pk.domain),
            ));
        }
        Ok(pk)
    }

    fn feip_keys(&self, request: &FeipKeyRequest) -> Result<FeipKeyResponse<G>, CoordinatorError> {
        let message = feip_request_to_proto(request);
        let reply = self.call(
            message,
            |mut c, r| async move { c.issue_feip_keys(r).await },
        )?;
        feip_response_from_proto(&self.group, &self.config.url, request, &reply)
    }

    fn febo_keys(&self, request: &FeboKeyRequest) -> Result<FeboKeyResponse<G>, CoordinatorError> {
        let message = febo_request_to_proto(request);
        let reply = self.call(
            message,
            |mut c, r| async move { c.issue_febo_keys(r).await },
        )?;
        febo_response_from_proto(&self.group, &self.config.url, request, &reply)
    }

    fn register_febo_commitments(
        &self,
        registration: &FeboCommitmentRegistration,
    ) -> Result<usize, CoordinatorError> {
        let message = proto::FeboCommitmentBatch {
            domain: registration.domain.0,
            commitments: registration.commitments.clone(),
        };
        let reply = self.call(message, |mut c, r| async move {
            c.register_febo_commitments(r).await
        })?;
        usize::try_from(reply.registered).map_err(|e| remote(&self.config.url, "InvalidReply", e))
    }

    fn noisy_feip_keys(
        &self,
        request: &NoisyKeyRequest,
    ) -> Result<NoisyKeyResponse<G>, CoordinatorError> {
        let message = noisy_request_to_proto(request);
        let reply = self.call(message, |mut c, r| async move {
            c.issue_noisy_feip_keys(r).await
        })?;
        noisy_response_from_proto(&self.group, &self.config.url, request, &reply)
    }

    fn register_noisy_ciphertexts(
        &self,
        registration: &NoisyCiphertextRegistration,
    ) -> Result<usize, CoordinatorError> {
        let message = noisy_registration_to_proto(registration);
        let reply = self.call(message, |mut c, r| async move {
            c.register_noisy_ciphertexts(r).await
        })?;
        usize::try_from(reply.registered).map_err(|e| remote(&self.config.url, "InvalidReply", e))
    }
}
