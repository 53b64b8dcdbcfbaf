//! The key service: how a server reaches the authority.
//!
//! [`KeyService`] is the server's only door to key material: public keys of domains, batched
//! FEIP function keys (dense or sparse vectors), and ciphertext-bound FEBO keys. The requester's
//! identity is a property of the channel (the in-process service is bound to one identity when it
//! is created; a networked service will take it from the authenticated connection), not a field
//! a caller fills in.
//!
//! [`InProcessKeyService`] is the embedded default: a handle to an [`Authority`] behind a mutex.
//! It gives no access to the authority itself, so code that holds only the service (such as a
//! [`Server`](crate::coordinator::Server)) cannot reach a master secret key.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::coordinator::authority::Authority;
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::messages::{
    DomainId, DomainPublicKey, FeboCommitmentRegistration, FeboKeyRequest, FeboKeyResponse,
    FeipKeyRequest, FeipKeyResponse, NoisyCiphertextRegistration, NoisyKeyRequest,
    NoisyKeyResponse, RequesterId,
};
use crate::fe::group::PrimeOrderGroup;

/// The requests a party can make of the authority: a server's (public keys, function keys) and
/// a data owner's registration of the FEBO ciphertexts it produced.
pub trait KeyService<G: PrimeOrderGroup>: Send + Sync {
    /// The identity under which this service's requests are made (and audited).
    fn requester(&self) -> &RequesterId;

    /// The public key of an active domain.
    ///
    /// # Errors
    /// As [`Authority::public_key`], plus transport errors of the implementation.
    fn public_key(&self, domain: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError>;

    /// SHA-256 of an active domain's public key ([`DomainPublicKey::sha256`]). By default the
    /// key is fetched and hashed; an in-process service answers from the authority's digest
    /// without deriving the key.
    ///
    /// # Errors
    /// As [`public_key`](Self::public_key).
    fn public_key_sha256(&self, group: &G, domain: DomainId) -> Result<[u8; 32], CoordinatorError> {
        Ok(self.public_key(domain)?.sha256(group))
    }

    /// One FEIP function key per vector of the request (all or none).
    ///
    /// # Errors
    /// As [`Authority::issue_feip_keys`], plus transport errors of the implementation.
    fn feip_keys(&self, request: &FeipKeyRequest) -> Result<FeipKeyResponse<G>, CoordinatorError>;

    /// One FEBO key per item of the request.
    ///
    /// # Errors
    /// As [`Authority::issue_febo_keys`], plus transport errors of the implementation.
    fn febo_keys(&self, request: &FeboKeyRequest) -> Result<FeboKeyResponse<G>, CoordinatorError>;

    /// Registers the commitments of FEBO ciphertexts this party (a domain's owner: the data
    /// owner) produced, so that the domain's bound server may later get keys for them. Returns
    /// the number of newly registered commitments.
    ///
    /// # Errors
    /// As [`Authority::register_febo_commitments`], plus transport errors of the
    /// implementation.
    fn register_febo_commitments(
        &self,
        registration: &FeboCommitmentRegistration,
    ) -> Result<usize, CoordinatorError>;

    /// Ciphertext-bound noisy keys of a noisy domain (see
    /// [`Authority::issue_noisy_feip_keys`]). The default refuses: a transport that does not
    /// carry them.
    ///
    /// # Errors
    /// As [`Authority::issue_noisy_feip_keys`]; [`CoordinatorError::Unsupported`] by default.
    fn noisy_feip_keys(
        &self,
        request: &NoisyKeyRequest,
    ) -> Result<NoisyKeyResponse<G>, CoordinatorError> {
        let _ = request;
        Err(CoordinatorError::Unsupported("noisy keys"))
    }

    /// Registers the `ct0` of the ciphertexts this party (a noisy domain's owner) produced,
    /// under sample ids (see [`Authority::register_noisy_ciphertexts`]). The default refuses.
    ///
    /// # Errors
    /// As [`Authority::register_noisy_ciphertexts`]; [`CoordinatorError::Unsupported`] by
    /// default.
    fn register_noisy_ciphertexts(
        &self,
        registration: &NoisyCiphertextRegistration,
    ) -> Result<usize, CoordinatorError> {
        let _ = registration;
        Err(CoordinatorError::Unsupported(
            "noisy ciphertext registration",
        ))
    }
}

impl<G: PrimeOrderGroup, K: KeyService<G> + ?Sized> KeyService<G> for Arc<K> {
    fn requester(&self) -> &RequesterId {
        (**self).requester()
    }
    fn public_key(&self, domain: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError> {
        (**self).public_key(domain)
    }
    fn public_key_sha256(&self, group: &G, domain: DomainId) -> Result<[u8; 32], CoordinatorError> {
        (**self).public_key_sha256(group, domain)
    }
    fn feip_keys(&self, request: &FeipKeyRequest) -> Result<FeipKeyResponse<G>, CoordinatorError> {
        (**self).feip_keys(request)
    }
    fn febo_keys(&self, request: &FeboKeyRequest) -> Result<FeboKeyResponse<G>, CoordinatorError> {
        (**self).febo_keys(request)
    }
    fn register_febo_commitments(
        &self,
        registration: &FeboCommitmentRegistration,
    ) -> Result<usize, CoordinatorError> {
        (**self).register_febo_commitments(registration)
    }
    fn noisy_feip_keys(
        &self,
        request: &NoisyKeyRequest,
    ) -> Result<NoisyKeyResponse<G>, CoordinatorError> {
        (**self).noisy_feip_keys(request)
    }
    fn register_noisy_ciphertexts(
        &self,
        registration: &NoisyCiphertextRegistration,
    ) -> Result<usize, CoordinatorError> {
        (**self).register_noisy_ciphertexts(registration)
    }
}

/// An authority shared between the operator and in-process key services.
pub type SharedAuthority<G> = Arc<Mutex<Authority<G>>>;

/// The embedded key service: calls an [`Authority`] in the same process.
pub struct InProcessKeyService<G: PrimeOrderGroup> {
    authority: SharedAuthority<G>,
    requester: RequesterId,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for InProcessKeyService<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessKeyService")
            .field("requester", &self.requester)
            .finish_non_exhaustive()
    }
}

impl<G: PrimeOrderGroup> InProcessKeyService<G> {
    /// A service that makes requests to `authority` as `requester`.
    #[must_use]
    pub fn new(authority: SharedAuthority<G>, requester: RequesterId) -> Self {
        Self {
            authority,
            requester,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Authority<G>>, CoordinatorError> {
        self.authority
            .lock()
            .map_err(|_| CoordinatorError::AuthorityUnavailable)
    }
}

impl<G: PrimeOrderGroup> KeyService<G> for InProcessKeyService<G> {
    fn requester(&self) -> &RequesterId {
        &self.requester
    }
    fn public_key(&self, domain: DomainId) -> Result<DomainPublicKey<G>, CoordinatorError> {
        self.lock()?.public_key(domain)
    }
    fn public_key_sha256(
        &self,
        _group: &G,
        domain: DomainId,
    ) -> Result<[u8; 32], CoordinatorError> {
        self.lock()?.public_key_sha256(domain)
    }
    fn feip_keys(&self, request: &FeipKeyRequest) -> Result<FeipKeyResponse<G>, CoordinatorError> {
        self.lock()?.issue_feip_keys(&self.requester, request)
    }
    fn febo_keys(&self, request: &FeboKeyRequest) -> Result<FeboKeyResponse<G>, CoordinatorError> {
        self.lock()?.issue_febo_keys(&self.requester, request)
    }
    fn register_febo_commitments(
        &self,
        registration: &FeboCommitmentRegistration,
    ) -> Result<usize, CoordinatorError> {
        self.lock()?
            .register_febo_commitments(&self.requester, registration)
    }
    fn noisy_feip_keys(
        &self,
        request: &NoisyKeyRequest,
    ) -> Result<NoisyKeyResponse<G>, CoordinatorError> {
        self.lock()?.issue_noisy_feip_keys(&self.requester, request)
    }
    fn register_noisy_ciphertexts(
        &self,
        registration: &NoisyCiphertextRegistration,
    ) -> Result<usize, CoordinatorError> {
        self.lock()?
            .register_noisy_ciphertexts(&self.requester, registration)
    }
}
