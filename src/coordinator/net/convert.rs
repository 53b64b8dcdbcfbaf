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

use crate::coordinator::box_grid::{BoxGrid, BoxGridVector, BoxOrigin};
use crate::coordinator::error::{CoordinatorError, PolicyRefusal};
use crate::coordinator::messages::{
    DomainId, DomainPublicKey, FeboKeyItem, FeboKeyRequest, FeboKeyResponse, FeipKeyRequest,
    FeipKeyResponse, KeyVectorData, RequesterId,
};
use crate::coordinator::net::proto;
use crate::fe::febo::{FeboFunctionKey, FeboOp, FeboParams, FeboPublicKey};
use crate::fe::feip::{FeipParams, FunctionKey, MasterPublicKey};
use crate::fe::group::PrimeOrderGroup;
use crate::fe::serialize::WireFormat;

/// The most pixel entries (4 per box of each grid vector) the box grids of one request may
/// expand to: 2^25, about 280 images' weight-gradient keys. A few bytes of origin expand to up
/// to 784 entries, so this bounds the memory one request can claim beyond its message size.
pub const MAX_GRID_EXPANSION: usize = 1 << 25;

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
        | CoordinatorError::InvalidConfig(_) => (Code::InvalidArgument, None),
        CoordinatorError::AuthorityUnavailable => (Code::Unavailable, None),
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

/// A FEIP key request to protobuf. Consecutive box-grid vectors that share one grid
/// (`Arc::ptr_eq`) travel as one `BoxGrid` with their origins.
#[must_use]
pub fn feip_request_to_proto(r: &FeipKeyRequest) -> proto::FeipKeyBatch {
    use proto::key_vector::Form;
    let mut vectors: Vec<proto::KeyVector> = Vec::new();
    let mut last_grid: Option<&Arc<BoxGrid>> = None;
    for v in &r.vectors {
        let form = match v {
            KeyVectorData::Dense(y) => Form::Dense(proto::DenseVector { values: y.clone() }),
            KeyVectorData::Sparse(t) => Form::Sparse(proto::SparseVector {
                indices: t.iter().map(|&(i, _)| i as u64).collect(),
                values: t.iter().map(|&(_, v)| v).collect(),
            }),
            KeyVectorData::BoxGrid(g) => {
                let origin = g.origin().index() as u32;
                if let (Some(prev), Some(Form::BoxGrid(b))) =
                    (last_grid, vectors.last_mut().and_then(|k| k.form.as_mut()))
                {
                    if Arc::ptr_eq(prev, g.grid()) {
                        b.origins.push(origin);
                        continue;
                    }
                }
                last_grid = Some(g.grid());
                let grid = g.grid();
                vectors.push(proto::KeyVector {
                    form: Some(Form::BoxGrid(proto::BoxGrid {
                        rows: grid.rows() as u32,
                        cols: grid.cols() as u32,
                        stride: grid.stride() as u32,
                        coefficients: grid.coefficients().to_vec(),
                        origins: vec![origin],
                    })),
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

/// A FEIP key request from protobuf (structure only; the authority validates the vectors).
/// A box grid becomes one key vector per origin, all sharing the grid.
///
/// # Errors
/// [`CoordinatorError::Empty`] for a vector without form or a grid without origins;
/// [`CoordinatorError::ShapeMismatch`] for a sparse vector whose index and value lists differ
/// in length, or a grid with other than `rows · cols` coefficients;
/// [`CoordinatorError::InvalidConfig`] for an index beyond `usize`, a malformed grid or origin,
/// or a request whose box grids expand to more than [`MAX_GRID_EXPANSION`] pixel entries;
/// [`CoordinatorError::Fe`] for a grid coefficient out of range.
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
            Some(Form::BoxGrid(g)) => {
                if g.origins.is_empty() {
                    return Err(CoordinatorError::Empty("box grid without origins"));
                }
                let grid = Arc::new(BoxGrid::new(
                    g.rows as usize,
                    g.cols as usize,
                    g.stride as usize,
                    g.coefficients,
                )?);
                for o in g.origins {
                    let origin = BoxOrigin::from_index(o as usize)
                        .ok_or(CoordinatorError::InvalidConfig("box origin beyond 31 x 31"))?;
                    let v = BoxGridVector::new(Arc::clone(&grid), origin)?;
                    expansion = expansion.saturating_add(v.expansion_size());
                    if expansion > MAX_GRID_EXPANSION {
                        return Err(CoordinatorError::InvalidConfig(
                            "the request's box grids expand to too many pixel entries; split it",
                        ));
                    }
                    vectors.push(KeyVectorData::BoxGrid(v));
                }
            }
            None => {
                return Err(CoordinatorError::Empty(
                    "key vector without dense, sparse or box-grid form",
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn grid_request() -> FeipKeyRequest {
        let dq: Vec<i64> = (0..1176).map(|i| (i % 17) - 8).collect();
        let mut vectors =
            crate::coordinator::secure_training::geometry::gradient_key_vectors(&dq).unwrap();
        vectors.insert(3, KeyVectorData::Sparse(vec![(1, 2), (9, -1)]));
        FeipKeyRequest {
            domain: DomainId(4),
            vectors,
        }
    }

    /// Box grids sharing one grid travel once, with their origins, and come back as the same
    /// vectors (the same pixel-space keys).
    #[test]
    fn box_grids_round_trip_compactly() {
        let r = grid_request();
        let p = feip_request_to_proto(&r);
        // 6 filters: the first split by the sparse vector at index 3, so 7 grids + 1 sparse.
        assert_eq!(p.vectors.len(), 8);
        let back = feip_request_from_proto(p).unwrap();
        assert_eq!(back, r);
    }

    fn first_grid(p: &mut proto::FeipKeyBatch) -> &mut proto::BoxGrid {
        match p.vectors[0].form.as_mut() {
            Some(proto::key_vector::Form::BoxGrid(g)) => g,
            _ => panic!("expected a box grid first"),
        }
    }

    /// Malformed grids are typed errors (INVALID_ARGUMENT on the wire), never a panic.
    #[test]
    fn malformed_box_grids_are_refused() {
        let base = feip_request_to_proto(&grid_request());
        type Breakage = fn(&mut proto::BoxGrid);
        let cases: [(&str, Breakage); 6] = [
            ("no origins", |g| g.origins.clear()),
            ("origin beyond 961", |g| g.origins[0] = 961),
            ("grid leaves the boxes at its origin", |g| g.origins[0] = 30),
            ("missing coefficient", |g| {
                g.coefficients.pop();
            }),
            ("zero stride", |g| g.stride = 0),
            ("coefficient beyond 2^61", |g| g.coefficients[0] = i64::MAX),
        ];
        for (what, break_it) in cases {
            let mut p = base.clone();
            break_it(first_grid(&mut p));
            let e = feip_request_from_proto(p).expect_err(what);
            assert_eq!(status_of(&e).code(), Code::InvalidArgument, "{what}: {e}");
        }
    }

    /// Cheap origins cannot make the authority expand unbounded work.
    #[test]
    fn grid_expansion_is_capped() {
        let grid = proto::BoxGrid {
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
                    form: Some(proto::key_vector::Form::BoxGrid(grid.clone())),
                };
                copies
            ],
        };
        // 4096 · 784 entries per copy: 10 copies fit, 11 do not.
        assert!(feip_request_from_proto(batch(10)).is_ok());
        let e = feip_request_from_proto(batch(11)).unwrap_err();
        assert!(e.to_string().contains("split it"), "{e}");
    }
}
