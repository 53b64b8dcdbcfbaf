//! Conversions between the coordinator's messages and the protobuf messages, and between
//! [`CoordinatorError`] and gRPC status.
//!
//! Every conversion from protobuf validates: parameters through their constructors, keys
//! through [`WireFormat::from_bytes`] (length, magic, version, checksum, group, canonical
//! encodings), vectors later through the authority's own checks.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tonic::codegen::Bytes;
use tonic::{Code, Status};

use crate::coordinator::accountant::Granularity;
use crate::coordinator::authority::NoiseConfig;
use crate::coordinator::error::{CoordinatorError, PolicyRefusal};
use crate::coordinator::messages::{
    DomainId, DomainPublicKey, FeboKeyItem, FeboKeyRequest, FeboKeyResponse, FeipKeyRequest,
    FeipKeyResponse, KeyVectorData, NoisyCiphertextRegistration, NoisyKeyItem, NoisyKeyRequest,
    NoisyKeyResponse, RequesterId,
};
use crate::coordinator::net::proto;
use crate::coordinator::placement::{
    Placement, PlacementError, PlacementFrame, PlacementGrid, MAX_EXPANSION,
};
use crate::fe::discrete_gaussian::DiscreteGaussian;
use crate::fe::febo::{FeboFunctionKey, FeboOp, FeboParams, FeboPublicKey};
use crate::fe::feip::{FeipParams, FunctionKey, MasterPublicKey};
use crate::fe::group::PrimeOrderGroup;
use crate::fe::noisy_key::NoisyKey;
use crate::fe::serialize::WireFormat;

/// A typed error carried in a status's details, so the client can rebuild it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ErrorDetail {
    Refused {
        domain: u64,
        index: usize,
        reason: PolicyRefusal,
    },
    Rotated {
        retired: u64,
        successor: u64,
    },
    UnknownDomain {
        domain: u64,
    },
    Closed {
        domain: u64,
    },
    FeboDisabled {
        domain: u64,
    },
    NotPermitted {
        domain: u64,
        requester: String,
        action: String,
    },
    UnregisteredCommitment {
        domain: u64,
        index: usize,
    },
    NoisyDomain {
        domain: u64,
    },
    NotNoisy {
        domain: u64,
    },
    UnregisteredCiphertext {
        domain: u64,
        index: usize,
    },
    /// The `f64`s travel as their bits (`ε` is infinite at sigma = 0, which JSON cannot hold).
    PrivacyBudgetExceeded {
        domain: u64,
        sample: u64,
        epsilon_bits: u64,
        budget_bits: u64,
        delta_bits: u64,
        granularity: String,
    },
}

/// The `&'static str` of a [`CoordinatorError::NotPermitted`] action received over the wire.
fn permitted_action(action: &str) -> &'static str {
    if action == "register FEBO commitments" {
        "register FEBO commitments"
    } else {
        "request function keys"
    }
}

/// The gRPC status of a coordinator error (the message is the error's `Display`).
#[must_use]
pub fn status_of(e: &CoordinatorError) -> Status {
    let (code, detail) = match e {
        CoordinatorError::Refused {
            domain,
            index,
            reason,
        } => (
            Code::FailedPrecondition,
            Some(ErrorDetail::Refused {
                domain: domain.0,
                index: *index,
                reason: reason.clone(),
            }),
        ),
        CoordinatorError::DomainRotated { retired, successor } => (
            Code::FailedPrecondition,
            Some(ErrorDetail::Rotated {
                retired: retired.0,
                successor: successor.0,
            }),
        ),
        CoordinatorError::UnknownDomain(d) => (
            Code::NotFound,
            Some(ErrorDetail::UnknownDomain { domain: d.0 }),
        ),
        CoordinatorError::DomainClosed(d) => (
            Code::FailedPrecondition,
            Some(ErrorDetail::Closed { domain: d.0 }),
        ),
        CoordinatorError::FeboDisabled(d) => (
            Code::FailedPrecondition,
            Some(ErrorDetail::FeboDisabled { domain: d.0 }),
        ),
        CoordinatorError::NotPermitted {
            domain,
            requester,
            action,
        } => (
            Code::PermissionDenied,
            Some(ErrorDetail::NotPermitted {
                domain: domain.0,
                requester: requester.0.clone(),
                action: (*action).to_string(),
            }),
        ),
        CoordinatorError::UnregisteredCommitment { domain, index } => (
            Code::PermissionDenied,
            Some(ErrorDetail::UnregisteredCommitment {
                domain: domain.0,
                index: *index,
            }),
        ),
        CoordinatorError::Empty(_)
        | CoordinatorError::Fe(_)
        | CoordinatorError::Encoding(_)
        | CoordinatorError::ShapeMismatch { .. }
        | CoordinatorError::Placement(_)
        | CoordinatorError::InvalidConfig(_) => (Code::InvalidArgument, None),
        CoordinatorError::AuthorityUnavailable => (Code::Unavailable, None),
        CoordinatorError::NoisyDomain(d) => (
            Code::FailedPrecondition,
            Some(ErrorDetail::NoisyDomain { domain: d.0 }),
        ),
        CoordinatorError::NotNoisy(d) => (
            Code::FailedPrecondition,
            Some(ErrorDetail::NotNoisy { domain: d.0 }),
        ),
        CoordinatorError::PrivacyBudgetExceeded {
            domain,
            sample,
            epsilon,
            budget,
            delta,
            granularity,
        } => (
            Code::FailedPrecondition,
            Some(ErrorDetail::PrivacyBudgetExceeded {
                domain: domain.0,
                sample: *sample,
                epsilon_bits: epsilon.to_bits(),
                budget_bits: budget.to_bits(),
                delta_bits: delta.to_bits(),
                granularity: granularity.name().to_string(),
            }),
        ),
        CoordinatorError::UnregisteredCiphertext { domain, index } => (
            Code::PermissionDenied,
            Some(ErrorDetail::UnregisteredCiphertext {
                domain: domain.0,
                index: *index,
            }),
        ),
        CoordinatorError::Unsupported(_) => (Code::Unimplemented, None),
        _ => (Code::Internal, None),
    };
    let message = e.to_string();
    match detail.and_then(|d| serde_json::to_vec(&d).ok()) {
        Some(json) => Status::with_details(code, message, Bytes::from(json)),
        None => Status::new(code, message),
    }
}

/// The coordinator error of a status received from `peer`: the typed error if the status
/// carries one, else [`CoordinatorError::Remote`].
#[must_use]
pub fn error_of(peer: &str, status: &Status) -> CoordinatorError {
    if let Ok(detail) = serde_json::from_slice::<ErrorDetail>(status.details()) {
        return match detail {
            ErrorDetail::Refused {
                domain,
                index,
                reason,
            } => CoordinatorError::Refused {
                domain: DomainId(domain),
                index,
                reason,
            },
            ErrorDetail::Rotated { retired, successor } => CoordinatorError::DomainRotated {
                retired: DomainId(retired),
                successor: DomainId(successor),
            },
            ErrorDetail::UnknownDomain { domain } => {
                CoordinatorError::UnknownDomain(DomainId(domain))
            }
            ErrorDetail::Closed { domain } => CoordinatorError::DomainClosed(DomainId(domain)),
            ErrorDetail::FeboDisabled { domain } => {
                CoordinatorError::FeboDisabled(DomainId(domain))
            }
            ErrorDetail::NotPermitted {
                domain,
                requester,
                action,
            } => CoordinatorError::NotPermitted {
                domain: DomainId(domain),
                requester: RequesterId(requester),
                action: permitted_action(&action),
            },
            ErrorDetail::UnregisteredCommitment { domain, index } => {
                CoordinatorError::UnregisteredCommitment {
                    domain: DomainId(domain),
                    index,
                }
            }
            ErrorDetail::NoisyDomain { domain } => CoordinatorError::NoisyDomain(DomainId(domain)),
            ErrorDetail::NotNoisy { domain } => CoordinatorError::NotNoisy(DomainId(domain)),
            ErrorDetail::UnregisteredCiphertext { domain, index } => {
                CoordinatorError::UnregisteredCiphertext {
                    domain: DomainId(domain),
                    index,
                }
            }
            ErrorDetail::PrivacyBudgetExceeded {
                domain,
                sample,
                epsilon_bits,
                budget_bits,
                delta_bits,
                granularity,
            } => CoordinatorError::PrivacyBudgetExceeded {
                domain: DomainId(domain),
                sample,
                epsilon: f64::from_bits(epsilon_bits),
                budget: f64::from_bits(budget_bits),
                delta: f64::from_bits(delta_bits),
                granularity: Granularity::from_name(&granularity).unwrap_or(Granularity::Image),
            },
        };
    }
    CoordinatorError::Remote {
        peer: peer.to_string(),
        code: format!("{:?}", status.code()),
        message: status.message().to_string(),
    }
}

fn bad_reply(peer: &str, what: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Remote {
        peer: peer.to_string(),
        code: "InvalidReply".to_string(),
        message: what.to_string(),
    }
}

/// FEIP parameters to protobuf.
#[must_use]
pub fn feip_params_to_proto(p: &FeipParams) -> proto::FeipParams {
    proto::FeipParams {
        n: p.n() as u64,
        x_bound: p.x_bound(),
        y_bound: p.y_bound(),
    }
}

/// FEIP parameters from protobuf (validated).
///
/// # Errors
/// [`CoordinatorError::Fe`] for invalid parameters.
pub fn feip_params_from_proto(
    p: Option<&proto::FeipParams>,
) -> Result<FeipParams, CoordinatorError> {
    let p = p.ok_or(CoordinatorError::InvalidConfig("missing FEIP parameters"))?;
    let n = usize::try_from(p.n).map_err(|_| CoordinatorError::InvalidConfig("n too large"))?;
    Ok(FeipParams::new(n, p.x_bound, p.y_bound)?)
}

/// FEBO parameters to protobuf.
#[must_use]
pub fn febo_params_to_proto(p: &FeboParams) -> proto::FeboParams {
    proto::FeboParams {
        x_bound: p.x_bound(),
        y_bound: p.y_bound(),
    }
}

/// FEBO parameters from protobuf (validated).
///
/// # Errors
/// [`CoordinatorError::Fe`] for invalid bounds.
pub fn febo_params_from_proto(p: &proto::FeboParams) -> Result<FeboParams, CoordinatorError> {
    Ok(FeboParams::new(p.x_bound, p.y_bound)?)
}

/// A domain's public key to protobuf.
#[must_use]
pub fn public_key_to_proto<G: PrimeOrderGroup>(
    group: &G,
    pk: &DomainPublicKey<G>,
) -> proto::PublicKeyReply {
    proto::PublicKeyReply {
        domain: pk.domain.0,
        feip_params: Some(feip_params_to_proto(&pk.feip_params)),
        feip_public_key: pk.feip.to_bytes(group),
        febo_params: pk.febo.as_ref().map(|(p, _)| febo_params_to_proto(p)),
        febo_public_key: pk
            .febo
            .as_ref()
            .map(|(_, k)| k.to_bytes(group))
            .unwrap_or_default(),
    }
}

/// A domain's public key from a reply of `peer` (validated).
///
/// # Errors
/// [`CoordinatorError::Remote`] with code `InvalidReply` for malformed parameters or keys.
pub fn public_key_from_proto<G: PrimeOrderGroup>(
    group: &G,
    peer: &str,
    r: &proto::PublicKeyReply,
) -> Result<DomainPublicKey<G>, CoordinatorError> {
    let feip_params =
        feip_params_from_proto(r.feip_params.as_ref()).map_err(|e| bad_reply(peer, e))?;
    let feip = MasterPublicKey::<G>::from_bytes(group, &r.feip_public_key)
        .map_err(|e| bad_reply(peer, format!("FEIP public key: {e}")))?;
    if feip.elements().len() != feip_params.n() {
        return Err(bad_reply(peer, "FEIP public key length differs from n"));
    }
    let febo = match &r.febo_params {
        Some(p) => Some((
            febo_params_from_proto(p).map_err(|e| bad_reply(peer, e))?,
            FeboPublicKey::<G>::from_bytes(group, &r.febo_public_key)
                .map_err(|e| bad_reply(peer, format!("FEBO public key: {e}")))?,
        )),
        None => None,
    };
    Ok(DomainPublicKey {
        domain: DomainId(r.domain),
        feip_params,
        feip,
        febo,
    })
}

/// A FEIP key request to protobuf. Consecutive placements that share one grid
/// (`Arc::ptr_eq`) travel as one `Placement` with their origins.
#[must_use]
pub fn feip_request_to_proto(r: &FeipKeyRequest) -> proto::FeipKeyBatch {
    use proto::key_vector::Form;
    let mut vectors: Vec<proto::KeyVector> = Vec::new();
    let mut last_grid: Option<&Arc<PlacementGrid>> = None;
    for v in &r.vectors {
        let form = match v {
            KeyVectorData::Dense(y) => Form::Dense(proto::DenseVector { values: y.clone() }),
            KeyVectorData::Sparse(t) => Form::Sparse(proto::SparseVector {
                indices: t.iter().map(|&(i, _)| i as u64).collect(),
                values: t.iter().map(|&(_, v)| v).collect(),
            }),
            KeyVectorData::Placement(p) => {
                let o = p.origin();
                // A valid placement's origin is one of its frame's boxes.
                let origin = p
                    .frame()
                    .box_index(o.channel, o.row, o.col)
                    .unwrap_or(usize::MAX) as u64;
                if let (Some(prev), Some(Form::Placement(b))) =
                    (last_grid, vectors.last_mut().and_then(|k| k.form.as_mut()))
                {
                    if Arc::ptr_eq(prev, p.grid()) {
                        b.origins.push(origin);
                        continue;
                    }
                }
                last_grid = Some(p.grid());
                vectors.push(proto::KeyVector {
                    form: Some(Form::Placement(placement_to_proto(p.grid(), origin))),
                });
                continue;
            }
        };
        last_grid = None;
        vectors.push(proto::KeyVector { form: Some(form) });
    }
    proto::FeipKeyBatch {
        domain: r.domain.0,
        vectors,
    }
}

fn placement_to_proto(grid: &PlacementGrid, origin: u64) -> proto::Placement {
    let f = grid.frame();
    // Every dimension is at most MAX_SIDE = 2^16 (checked on construction).
    let u = |n: usize| n as u32;
    proto::Placement {
        frame: Some(proto::PlacementFrame {
            channels: u(f.channels()),
            height: u(f.height()),
            width: u(f.width()),
            padding: u(f.padding()),
            pool: u(f.pool()),
            dilation: u(f.dilation()),
        }),
        channels: u(grid.channels()),
        rows: u(grid.rows()),
        cols: u(grid.cols()),
        stride: u(grid.stride()),
        coefficients: grid.coefficients().to_vec(),
        origins: vec![origin],
    }
}

/// The validated grid of a protobuf placement (frame and coefficients; origins apart).
fn placement_grid_from_proto(p: &mut proto::Placement) -> Result<PlacementGrid, PlacementError> {
    let f = p.frame.as_ref().ok_or(PlacementError::MissingFrame)?;
    let u = |n: u32| n as usize;
    let frame = PlacementFrame::new(
        u(f.channels),
        u(f.height),
        u(f.width),
        u(f.padding),
        u(f.pool),
        u(f.dilation),
    )?;
    PlacementGrid::new(
        frame,
        u(p.channels),
        u(p.rows),
        u(p.cols),
        u(p.stride),
        std::mem::take(&mut p.coefficients),
    )
}

/// A FEIP key request from protobuf (structure and placements validated; the authority checks
/// the vectors against the domain). A placement becomes one key vector per origin, all sharing
/// the grid.
///
/// # Errors
/// [`CoordinatorError::Empty`] for a vector without form;
/// [`CoordinatorError::ShapeMismatch`] for a sparse vector whose index and value lists differ
/// in length; [`CoordinatorError::InvalidConfig`] for an index beyond `usize`;
/// [`CoordinatorError::Placement`] for a malformed frame, grid or origin, a grid without
/// origins, or a request whose placements expand to more than [`MAX_EXPANSION`] entries.
pub fn feip_request_from_proto(b: proto::FeipKeyBatch) -> Result<FeipKeyRequest, CoordinatorError> {
    use proto::key_vector::Form;
    let mut vectors = Vec::with_capacity(b.vectors.len());
    let mut expansion = 0usize;
    for v in b.vectors {
        match v.form {
            Some(Form::Dense(d)) => vectors.push(KeyVectorData::Dense(d.values)),
            Some(Form::Sparse(s)) => {
                if s.indices.len() != s.values.len() {
                    return Err(CoordinatorError::ShapeMismatch {
                        what: "sparse vector indices and values",
                        expected: s.indices.len(),
                        got: s.values.len(),
                    });
                }
                let terms = s
                    .indices
                    .into_iter()
                    .zip(s.values)
                    .map(|(i, v)| {
                        usize::try_from(i)
                            .map(|i| (i, v))
                            .map_err(|_| CoordinatorError::InvalidConfig("sparse index too large"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                vectors.push(KeyVectorData::Sparse(terms));
            }
            Some(Form::Placement(mut p)) => {
                if p.origins.is_empty() {
                    return Err(PlacementError::NoOrigins.into());
                }
                let grid = Arc::new(placement_grid_from_proto(&mut p)?);
                for o in p.origins {
                    let origin = grid.frame().box_at(o)?;
                    let v = Placement::new(Arc::clone(&grid), origin)?;
                    // Checked before expanding anything (the authority checks again).
                    expansion = expansion.saturating_add(v.expansion_size());
                    if expansion > MAX_EXPANSION {
                        return Err(PlacementError::ExpansionTooLarge { max: MAX_EXPANSION }.into());
                    }
                    vectors.push(KeyVectorData::Placement(v));
                }
            }
            None => {
                return Err(CoordinatorError::Empty(
                    "key vector without dense, sparse or placement form",
                ))
            }
        }
    }
    Ok(FeipKeyRequest {
        domain: DomainId(b.domain),
        vectors,
    })
}

/// FEIP keys to protobuf.
#[must_use]
pub fn feip_response_to_proto<G: PrimeOrderGroup>(
    group: &G,
    r: &FeipKeyResponse<G>,
) -> proto::FeipKeyReply {
    proto::FeipKeyReply {
        domain: r.domain.0,
        params: Some(feip_params_to_proto(&r.params)),
        keys: r.keys.iter().map(|k| k.to_bytes(group)).collect(),
    }
}

/// FEIP keys from a reply of `peer`, checked against the request (domain, number of keys).
///
/// # Errors
/// [`CoordinatorError::Remote`] with code `InvalidReply` for a malformed key or a reply that
/// does not answer the request.
pub fn feip_response_from_proto<G: PrimeOrderGroup>(
    group: &G,
    peer: &str,
    request: &FeipKeyRequest,
    r: &proto::FeipKeyReply,
) -> Result<FeipKeyResponse<G>, CoordinatorError> {
    if r.domain != request.domain.0 || r.keys.len() != request.vectors.len() {
        return Err(bad_reply(peer, "the FEIP keys do not answer the request"));
    }
    let params = feip_params_from_proto(r.params.as_ref()).map_err(|e| bad_reply(peer, e))?;
    let keys = r
        .keys
        .iter()
        .map(|k| FunctionKey::<G>::from_bytes(group, k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_reply(peer, format!("FEIP key: {e}")))?;
    Ok(FeipKeyResponse {
        domain: request.domain,
        params,
        keys,
    })
}

/// A FEBO key request to protobuf.
#[must_use]
pub fn febo_request_to_proto(r: &FeboKeyRequest) -> proto::FeboKeyBatch {
    proto::FeboKeyBatch {
        domain: r.domain.0,
        items: r
            .items
            .iter()
            .map(|i| proto::FeboKeyItem {
                commitment: i.commitment.clone(),
                op: u32::from(i.op.to_byte()),
                operand: i.operand,
            })
            .collect(),
    }
}

/// A FEBO key request from protobuf.
///
/// # Errors
/// [`CoordinatorError::InvalidFeboRequest`] for an unknown operation code.
pub fn febo_request_from_proto(b: proto::FeboKeyBatch) -> Result<FeboKeyRequest, CoordinatorError> {
    let items = b
        .items
        .into_iter()
        .enumerate()
        .map(|(index, i)| {
            let op = u8::try_from(i.op).ok().and_then(FeboOp::from_byte).ok_or(
                CoordinatorError::InvalidFeboRequest {
                    index,
                    reason: "unknown operation code",
                },
            )?;
            Ok(FeboKeyItem {
                commitment: i.commitment,
                op,
                operand: i.operand,
            })
        })
        .collect::<Result<Vec<_>, CoordinatorError>>()?;
    Ok(FeboKeyRequest {
        domain: DomainId(b.domain),
        items,
    })
}

/// FEBO keys to protobuf.
#[must_use]
pub fn febo_response_to_proto<G: PrimeOrderGroup>(
    group: &G,
    r: &FeboKeyResponse<G>,
) -> proto::FeboKeyReply {
    proto::FeboKeyReply {
        domain: r.domain.0,
        params: Some(febo_params_to_proto(&r.params)),
        keys: r.keys.iter().map(|k| k.to_bytes(group)).collect(),
    }
}

/// FEBO keys from a reply of `peer`, checked against the request.
///
/// # Errors
/// As [`feip_response_from_proto`].
pub fn febo_response_from_proto<G: PrimeOrderGroup>(
    group: &G,
    peer: &str,
    request: &FeboKeyRequest,
    r: &proto::FeboKeyReply,
) -> Result<FeboKeyResponse<G>, CoordinatorError> {
    if r.domain != request.domain.0 || r.keys.len() != request.items.len() {
        return Err(bad_reply(peer, "the FEBO keys do not answer the request"));
    }
    let params = febo_params_from_proto(
        r.params
            .as_ref()
            .ok_or_else(|| bad_reply(peer, "missing FEBO parameters"))?,
    )
    .map_err(|e| bad_reply(peer, e))?;
    let keys = r
        .keys
        .iter()
        .map(|k| FeboFunctionKey::<G>::from_bytes(group, k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_reply(peer, format!("FEBO key: {e}")))?;
    Ok(FeboKeyResponse {
        domain: request.domain,
        params,
        keys,
    })
}

/// A noisy domain's settings to protobuf.
#[must_use]
pub fn noise_to_proto(config: &NoiseConfig) -> proto::NoiseSettings {
    let (sigma_num, sigma_den) = config.sigma.sigma_ratio();
    proto::NoiseSettings {
        sigma_num,
        sigma_den,
        coordinate_range: config.coordinate_range,
    }
}

/// A noisy domain's settings from protobuf.
///
/// # Errors
/// [`CoordinatorError::Fe`] for a sigma the discrete Gaussian refuses;
/// [`CoordinatorError::InvalidConfig`] for a zero coordinate range.
pub fn noise_from_proto(n: &proto::NoiseSettings) -> Result<NoiseConfig, CoordinatorError> {
    let sigma = DiscreteGaussian::new(n.sigma_num, n.sigma_den)?;
    if n.coordinate_range == 0 {
        return Err(CoordinatorError::InvalidConfig(
            "a noisy domain needs a coordinate range >= 1",
        ));
    }
    Ok(NoiseConfig {
        sigma,
        coordinate_range: n.coordinate_range,
    })
}

/// A noisy ciphertext registration to protobuf.
#[must_use]
pub fn noisy_registration_to_proto(r: &NoisyCiphertextRegistration) -> proto::NoisyCiphertextBatch {
    proto::NoisyCiphertextBatch {
        domain: r.domain.0,
        ciphertexts: r
            .ciphertexts
            .iter()
            .map(|(ct0, sample)| proto::NoisyCiphertext {
                ct0: ct0.clone(),
                sample: *sample,
            })
            .collect(),
    }
}

/// A noisy ciphertext registration from protobuf (the authority validates every `ct0`).
#[must_use]
pub fn noisy_registration_from_proto(
    b: proto::NoisyCiphertextBatch,
) -> NoisyCiphertextRegistration {
    NoisyCiphertextRegistration {
        domain: DomainId(b.domain),
        ciphertexts: b
            .ciphertexts
            .into_iter()
            .map(|c| (c.ct0, c.sample))
            .collect(),
    }
}

/// A noisy key request to protobuf.
#[must_use]
pub fn noisy_request_to_proto(r: &NoisyKeyRequest) -> proto::NoisyFeipKeyBatch {
    let plain = feip_request_to_proto(&r.keys);
    proto::NoisyFeipKeyBatch {
        domain: plain.domain,
        vectors: plain.vectors,
        items: r
            .ciphertexts
            .iter()
            .map(|i| proto::NoisyKeyItem {
                ct0: i.ct0.clone(),
                vectors: i.vectors.clone(),
            })
            .collect(),
    }
}

/// A noisy key request from protobuf: the vectors as [`feip_request_from_proto`]; the items'
/// `ct0` and indices are validated by the authority.
///
/// # Errors
/// As [`feip_request_from_proto`].
pub fn noisy_request_from_proto(
    b: proto::NoisyFeipKeyBatch,
) -> Result<NoisyKeyRequest, CoordinatorError> {
    let keys = feip_request_from_proto(proto::FeipKeyBatch {
        domain: b.domain,
        vectors: b.vectors,
    })?;
    Ok(NoisyKeyRequest {
        keys,
        ciphertexts: b
            .items
            .into_iter()
            .map(|i| NoisyKeyItem {
                ct0: i.ct0,
                vectors: i.vectors,
            })
            .collect(),
    })
}

/// A noisy key response to protobuf (each `K` as its canonical group encoding).
#[must_use]
pub fn noisy_response_to_proto<G: PrimeOrderGroup>(
    group: &G,
    r: &NoisyKeyResponse<G>,
) -> proto::NoisyFeipKeyReply {
    proto::NoisyFeipKeyReply {
        domain: r.domain.0,
        params: Some(feip_params_to_proto(&r.params)),
        keys: r
            .keys
            .iter()
            .map(|ks| proto::NoisyKeyList {
                keys: ks
                    .iter()
                    .map(|k| group.element_to_bytes(k.element()))
                    .collect(),
            })
            .collect(),
    }
}

/// Noisy keys from a reply of `peer`, checked against the request (domain, one list per item,
/// one key per listed vector, canonical group elements).
///
/// # Errors
/// [`CoordinatorError::Remote`] with code `InvalidReply` for a malformed key or a reply that
/// does not answer the request.
pub fn noisy_response_from_proto<G: PrimeOrderGroup>(
    group: &G,
    peer: &str,
    request: &NoisyKeyRequest,
    r: &proto::NoisyFeipKeyReply,
) -> Result<NoisyKeyResponse<G>, CoordinatorError> {
    let answers = r.domain == request.keys.domain.0
        && r.keys.len() == request.ciphertexts.len()
        && r.keys
            .iter()
            .zip(&request.ciphertexts)
            .all(|(k, item)| k.keys.len() == item.vectors.len());
    if !answers {
        return Err(bad_reply(peer, "the noisy keys do not answer the request"));
    }
    let params = feip_params_from_proto(r.params.as_ref()).map_err(|e| bad_reply(peer, e))?;
    let keys = r
        .keys
        .iter()
        .map(|list| {
            list.keys
                .iter()
                .map(|k| group.element_from_bytes(k).map(NoisyKey::from_element))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_reply(peer, format!("noisy key: {e}")))?;
    Ok(NoisyKeyResponse {
        domain: request.keys.domain,
        params,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::placement::PlacementOrigin;

    /// A refusal survives the trip through a status, typed.
    #[test]
    fn refusal_round_trips_through_status() {
        let e = CoordinatorError::Refused {
            domain: DomainId(3),
            index: 7,
            reason: PolicyRefusal::TooFewNonZero { got: 1, min: 4 },
        };
        let s = status_of(&e);
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("non-zero entries"), "{}", s.message());
        let back = error_of("peer", &s);
        assert!(matches!(
            back,
            CoordinatorError::Refused {
                domain: DomainId(3),
                index: 7,
                reason: PolicyRefusal::TooFewNonZero { got: 1, min: 4 }
            }
        ));
        let other = error_of("https://a:1", &Status::unauthenticated("no"));
        assert!(other.to_string().contains("https://a:1"), "{other}");
    }

    /// Gradient-style placements of a 3 x 10 x 10 input (padding 1, 2 x 2 boxes): one
    /// 1 x 5 x 5 grid of stride 2 per filter at the 3 · 2 · 2 origins `(c, a, b)`.
    fn grid_request() -> FeipKeyRequest {
        let frame = PlacementFrame::new(3, 10, 10, 1, 2, 1).unwrap();
        let mut vectors = Vec::new();
        for f in 0..4i64 {
            let coefs = (0..25).map(|i| (i * 7 + f) % 17 - 8).collect();
            let grid = Arc::new(PlacementGrid::new(frame, 1, 5, 5, 2, coefs).unwrap());
            for channel in 0..3 {
                for row in 0..2 {
                    for col in 0..2 {
                        let origin = PlacementOrigin { channel, row, col };
                        let v = Placement::new(Arc::clone(&grid), origin).unwrap();
                        vectors.push(KeyVectorData::Placement(v));
                    }
                }
            }
        }
        vectors.insert(3, KeyVectorData::Sparse(vec![(1, 2), (9, -1)]));
        FeipKeyRequest {
            domain: DomainId(4),
            vectors,
        }
    }

    /// Placements sharing one grid travel once, with their origins, and come back as the same
    /// vectors (the same input-space keys).
    #[test]
    fn placements_round_trip_compactly() {
        let r = grid_request();
        let p = feip_request_to_proto(&r);
        // 4 grids: the first split by the sparse vector at index 3, so 5 grids + 1 sparse.
        assert_eq!(p.vectors.len(), 6);
        let back = feip_request_from_proto(p).unwrap();
        assert_eq!(back, r);
    }

    fn first_grid(p: &mut proto::FeipKeyBatch) -> &mut proto::Placement {
        match p.vectors[0].form.as_mut() {
            Some(proto::key_vector::Form::Placement(g)) => g,
            _ => panic!("expected a placement first"),
        }
    }

    /// Malformed placements are typed errors (INVALID_ARGUMENT on the wire), never a panic.
    #[test]
    fn malformed_placements_are_refused() {
        let base = feip_request_to_proto(&grid_request());
        type Breakage = fn(&mut proto::Placement);
        let cases: [(&str, Breakage); 12] = [
            ("no origins", |g| g.origins.clear()),
            ("origin beyond the boxes", |g| g.origins[0] = 3 * 11 * 11),
            ("origin index beyond usize", |g| g.origins[0] = u64::MAX),
            ("grid leaves the boxes at its origin", |g| g.origins[0] = 3),
            ("missing coefficient", |g| {
                g.coefficients.pop();
            }),
            ("zero stride", |g| g.stride = 0),
            ("coefficient beyond 2^61", |g| g.coefficients[0] = i64::MAX),
            ("missing frame", |g| g.frame = None),
            ("zero pool", |g| g.frame.as_mut().unwrap().pool = 0),
            ("box beyond the padded input", |g| {
                g.frame.as_mut().unwrap().dilation = 1000;
            }),
            ("grid channels beyond the input's", |g| g.channels = 4),
            ("huge input", |g| {
                let f = g.frame.as_mut().unwrap();
                (f.height, f.width) = (1 << 16, 1 << 16);
            }),
        ];
        for (what, break_it) in cases {
            let mut p = base.clone();
            break_it(first_grid(&mut p));
            let e = feip_request_from_proto(p).expect_err(what);
            assert!(matches!(e, CoordinatorError::Placement(_)), "{what}: {e}");
            assert_eq!(status_of(&e).code(), Code::InvalidArgument, "{what}: {e}");
        }
    }

    /// Cheap origins cannot make the authority expand unbounded work.
    #[test]
    fn placement_expansion_is_capped() {
        let grid = proto::Placement {
            frame: Some(proto::PlacementFrame {
                channels: 1,
                height: 30,
                width: 30,
                padding: 1,
                pool: 2,
                dilation: 1,
            }),
            channels: 1,
            rows: 14,
            cols: 14,
            stride: 2,
            coefficients: vec![1; 196],
            origins: vec![0; 4096],
        };
        let batch = |copies: usize| proto::FeipKeyBatch {
            domain: 1,
            vectors: vec![
                proto::KeyVector {
                    form: Some(proto::key_vector::Form::Placement(grid.clone())),
                };
                copies
            ],
        };
        // 4096 · 196 · 4 entries per copy: 10 copies fit, 11 do not.
        assert!(feip_request_from_proto(batch(10)).is_ok());
        let e = feip_request_from_proto(batch(11)).unwrap_err();
        assert!(e.to_string().contains("split it"), "{e}");
        assert_eq!(status_of(&e).code(), Code::InvalidArgument);
    }
}
