//! `cryptonn._cryptonn`: the Python binding of the cryptonn library (PyO3 + the `numpy` crate).
//!
//! This crate holds conversions only: numpy arrays to `ndarray` views after checking dtype and
//! shape, group names to group types, library errors to the exception classes of
//! `cryptonn.errors`, and the training report to JSON. Every computation is a call into the
//! `cryptonn` crate, made with the GIL released and behind `catch_unwind`, so other Python
//! threads keep running and no Rust panic reaches Python as anything but a
//! `cryptonn.errors.CryptonnError`.
//!
//! The Python-facing documentation (with runnable examples) lives in the docstrings below and
//! in `cryptonn/_cryptonn.pyi`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use cryptonn::coordinator::net::{RemoteConfig, RemoteKeyService};
use cryptonn::coordinator::{
    Authority as RsAuthority, Client as RsClient, CoordinatorError, DomainConfig, DomainPublicKey,
    EncryptedMatrix as RsEncryptedMatrix, FeboCommitmentRegistration,
    FeboEncryptedMatrix as RsFeboMatrix, InProcessKeyService, KeyService, PolicyConfig, RankCap,
    RequesterId, Server as RsServer,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::error::{FeError, SerializationError};
use cryptonn::fe::febo::{FeboOp, FeboParams};
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::error::NnError;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyArrayDescrMethods, PyReadonlyArray2};
use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

mod train;

// ---------------------------------------------------------------------------------------------
// Errors: library errors -> the classes of `cryptonn.errors`.

/// An exception of class `name` from `cryptonn.errors` (a `RuntimeError` if that module cannot
/// be imported, which only a broken installation causes).
pub(crate) fn raise(name: &str, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        let class = py.import("cryptonn.errors").and_then(|m| m.getattr(name));
        match class {
            Ok(class) => match class.call1((message.clone(),)) {
                Ok(instance) => PyErr::from_value(instance),
                Err(e) => e,
            },
            Err(_) => PyRuntimeError::new_err(format!("{name}: {message}")),
        }
    })
}

fn fe_class(e: &FeError) -> &'static str {
    match e {
        FeError::PlaintextOutOfBound { .. }
        | FeError::KeyOutOfBound { .. }
        | FeError::ValueOutOfBound { .. } => "BoundError",
        FeError::DimensionMismatch { .. } => "ShapeError",
        FeError::InexactDivision | FeError::DivisionByZero => "ArithmeticInputError",
        _ => "InvalidInputError",
    }
}

fn coordinator_err(e: CoordinatorError) -> PyErr {
    let class = match &e {
        CoordinatorError::Refused { .. }
        | CoordinatorError::NotPermitted { .. }
        | CoordinatorError::UnregisteredCommitment { .. } => "PolicyRefusedError",
        CoordinatorError::UnknownDomain(_)
        | CoordinatorError::DomainRotated { .. }
        | CoordinatorError::DomainClosed(_)
        | CoordinatorError::DomainMismatch { .. }
        | CoordinatorError::FeboDisabled(_) => "DomainError",
        CoordinatorError::ShapeMismatch { .. } | CoordinatorError::Empty(_) => "ShapeError",
        CoordinatorError::Encoding(_) => "BoundError",
        CoordinatorError::Fe(fe) => fe_class(fe),
        CoordinatorError::ProductOutOfRange { .. } => "ProductOutOfRangeError",
        CoordinatorError::Remote { code, .. } if code == "PermissionDenied" => "PolicyRefusedError",
        CoordinatorError::Remote { .. } => "KeyServiceError",
        CoordinatorError::InvalidConfig(_) | CoordinatorError::Dlog(_) => "InvalidInputError",
        _ => "CryptonnError",
    };
    raise(class, error_chain(&e))
}

fn serialization_err(e: SerializationError) -> PyErr {
    raise("DeserializationError", error_chain(&e))
}

pub(crate) fn nn_err(e: NnError) -> PyErr {
    let class = match &e {
        NnError::Data(_) => "DatasetError",
        NnError::Shape { .. } => "ShapeError",
        NnError::Encoding { .. } | NnError::BoundExceeded { .. } => "BoundError",
        NnError::InvalidConfig(_) | NnError::Model { .. } => "InvalidInputError",
        _ => "CryptonnError",
    };
    raise(class, error_chain(&e))
}

/// The message of `e` followed by its causes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Runs `f` with the GIL released; a panic inside becomes a `CryptonnError`.
pub(crate) fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> PyResult<T> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(raise(
                "CryptonnError",
                format!("internal error in cryptonn (please report it): {what}"),
            ))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> PyResult<MutexGuard<'_, T>> {
    m.lock().map_err(|_| {
        raise(
            "CryptonnError",
            "the object is unusable: an earlier call failed",
        )
    })
}

// ---------------------------------------------------------------------------------------------
// numpy -> ndarray, checked.

/// A 2-D `int64` array from `obj`, copied: anything else (another dtype, another number of
/// dimensions, not an array) is an exception, never a cast.
fn int64_matrix(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Array2<i64>> {
    let Ok(untyped) = obj.cast::<PyUntypedArray>() else {
        return Err(raise(
            "DTypeError",
            format!(
                "{what} must be a numpy.ndarray of dtype int64, got {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ),
        ));
    };
    if untyped.ndim() != 2 {
        return Err(raise(
            "ShapeError",
            format!(
                "{what} must be 2-dimensional, got shape {:?}",
                untyped.shape()
            ),
        ));
    }
    let int64 = numpy::dtype::<i64>(obj.py());
    if !untyped.dtype().is_equiv_to(&int64) {
        return Err(raise(
            "DTypeError",
            format!(
                "{what} must have dtype int64, got {} (convert explicitly, e.g. \
                 x.astype(np.int64), after checking the values fit)",
                untyped.dtype()
            ),
        ));
    }
    let array: PyReadonlyArray2<'_, i64> = obj.extract()?;
    Ok(array.as_array().to_owned())
}

fn to_numpy<'py>(py: Python<'py>, a: Array2<i64>) -> Bound<'py, PyArray2<i64>> {
    a.into_pyarray(py)
}

// ---------------------------------------------------------------------------------------------
// Groups.

/// A group by its Python name.
#[derive(Clone)]
pub(crate) enum Group {
    Ristretto,
    Modp(ModpGroup),
}

impl Group {
    pub(crate) fn parse(name: &str) -> PyResult<Self> {
        match name {
            "ristretto255" => Ok(Group::Ristretto),
            "modp2048" => Ok(Group::Modp(ModpGroup::rfc3526_2048())),
            "modp3072" => Ok(Group::Modp(ModpGroup::rfc3526_3072())),
            other => Err(raise(
                "InvalidInputError",
                format!(
                    "unknown group {other:?}: choose \"ristretto255\", \"modp2048\" or \
                     \"modp3072\""
                ),
            )),
        }
    }
}

pub(crate) fn group_name<G: PrimeOrderGroup>(g: &G) -> &'static str {
    match g.id().to_byte() {
        1 => "ristretto255",
        2 => "modp2048",
        3 => "modp3072",
        _ => "test-only",
    }
}

/// A value over one of the supported groups.
#[derive(Clone)]
enum Any<R, M> {
    Ristretto(R),
    Modp(ModpGroup, M),
}

fn mismatch(what: &str) -> PyErr {
    raise(
        "DomainError",
        format!("{what} belong to different groups (ristretto255 vs Z_p*)"),
    )
}

// ---------------------------------------------------------------------------------------------
// Authority.

type Shared<G> = Arc<Mutex<RsAuthority<G>>>;

/// The authority: master secret keys, function keys, the key policy and the audit log.
///
/// >>> import cryptonn
/// >>> authority = cryptonn.Authority(group="ristretto255")
/// >>> domain = authority.create_domain(n=3, x_bound=100, y_bound=100, policy="permissive")
/// >>> authority.public_key(domain).n
/// 3
/// >>> authority.audit()
/// []
#[pyclass(module = "cryptonn._cryptonn", frozen)]
struct Authority {
    inner: Any<Shared<Ristretto255>, Shared<ModpGroup>>,
}

fn policy_from(obj: Option<&Bound<'_, PyAny>>) -> PyResult<PolicyConfig> {
    let Some(obj) = obj else {
        return Ok(PolicyConfig::default());
    };
    if obj.is_none() {
        return Ok(PolicyConfig::default());
    }
    if let Ok(name) = obj.extract::<String>() {
        return match name.as_str() {
            "default" => Ok(PolicyConfig::default()),
            "permissive" => Ok(PolicyConfig::permissive()),
            other => Err(raise(
                "InvalidInputError",
                format!("unknown policy {other:?}: \"default\", \"permissive\" or a dict"),
            )),
        };
    }
    let Ok(dict) = obj.cast::<PyDict>() else {
        return Err(raise(
            "InvalidInputError",
            "policy must be \"default\", \"permissive\" or a dict with min_nonzero and rank_cap",
        ));
    };
    let mut policy = PolicyConfig::default();
    for (key, value) in dict.iter() {
        let key: String = key.extract()?;
        match key.as_str() {
            "min_nonzero" => policy.min_nonzero = value.extract()?,
            "rank_cap" => {
                policy.rank_cap = if value.is_none() {
                    RankCap::Disabled
                } else {
                    RankCap::AtMost(value.extract()?)
                }
            }
            other => {
                return Err(raise(
                    "InvalidInputError",
                    format!("unknown policy key {other:?} (min_nonzero, rank_cap)"),
                ))
            }
        }
    }
    Ok(policy)
}

fn create<G: PrimeOrderGroup>(a: &Shared<G>, config: DomainConfig) -> PyResult<u64> {
    let id = lock(a)?.create_domain(config).map_err(coordinator_err)?;
    Ok(id.0)
}

fn audit_json<G: PrimeOrderGroup>(a: &Shared<G>) -> PyResult<String> {
    lock(a)?
        .audit_log()
        .to_json_lines()
        .map_err(|e| raise("CryptonnError", e.to_string()))
}

#[pymethods]
impl Authority {
    #[new]
    #[pyo3(signature = (group = "ristretto255"))]
    fn new(group: &str) -> PyResult<Self> {
        let inner = match Group::parse(group)? {
            Group::Ristretto => {
                Any::Ristretto(Arc::new(Mutex::new(RsAuthority::new(Ristretto255))))
            }
            Group::Modp(g) => Any::Modp(g.clone(), Arc::new(Mutex::new(RsAuthority::new(g)))),
        };
        Ok(Self { inner })
    }

    /// The group's name.
    #[getter]
    fn group(&self) -> &'static str {
        match &self.inner {
            Any::Ristretto(_) => "ristretto255",
            Any::Modp(g, _) => group_name(g),
        }
    }

    /// Creates a key domain for vectors of length `n` with `|x_i| <= x_bound` (data) and
    /// `|y_i| <= y_bound` (weights); returns its id. `policy` is "default" (rank cap n/2,
    /// at least 4 non-zero entries per key vector), "permissive" (no filter), or a dict
    /// `{"min_nonzero": t, "rank_cap": r or None}`. `febo_bound=(X, Y)` also gives the domain
    /// an element-wise (FEBO) key.
    #[pyo3(signature = (n, x_bound, y_bound, policy = None, febo_bound = None))]
    fn create_domain(
        &self,
        n: usize,
        x_bound: u64,
        y_bound: u64,
        policy: Option<&Bound<'_, PyAny>>,
        febo_bound: Option<(u64, u64)>,
    ) -> PyResult<u64> {
        let params = FeipParams::new(n, x_bound, y_bound)
            .map_err(|e| coordinator_err(CoordinatorError::Fe(e)))?;
        let mut config = DomainConfig::new(params).with_policy(policy_from(policy)?);
        if let Some((x, y)) = febo_bound {
            let febo =
                FeboParams::new(x, y).map_err(|e| coordinator_err(CoordinatorError::Fe(e)))?;
            config = config.with_febo(febo);
        }
        match &self.inner {
            Any::Ristretto(a) => create(a, config),
            Any::Modp(_, a) => create(a, config),
        }
    }

    /// The public key of `domain`: what a `Client` encrypts with.
    fn public_key(&self, domain: u64) -> PyResult<PublicKey> {
        let id = cryptonn::coordinator::DomainId(domain);
        let inner = match &self.inner {
            Any::Ristretto(a) => Any::Ristretto(lock(a)?.public_key(id).map_err(coordinator_err)?),
            Any::Modp(g, a) => {
                Any::Modp(g.clone(), lock(a)?.public_key(id).map_err(coordinator_err)?)
            }
        };
        Ok(PublicKey { inner })
    }

    /// The audit log: one dict per issued function key (time, requester, domain, key kind,
    /// the key vector's digest, ...), oldest first.
    fn audit<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let lines = match &self.inner {
            Any::Ristretto(a) => audit_json(a),
            Any::Modp(_, a) => audit_json(a),
        }?;
        let json = py.import("json")?;
        let records = PyList::empty(py);
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            records.append(json.call_method1("loads", (line,))?)?;
        }
        Ok(records)
    }

    /// The data owner registers the commitments of its element-wise (FEBO) ciphertexts; the
    /// authority issues FEBO keys for registered commitments only. Returns how many were new.
    fn register_commitments(&self, enc: &FeboEncryptedMatrix) -> PyResult<usize> {
        match (&self.inner, &enc.inner) {
            (Any::Ristretto(a), Any::Ristretto(e)) => register(a, &Ristretto255, e),
            (Any::Modp(_, a), Any::Modp(g, e)) => register(a, g, e),
            _ => Err(mismatch("the authority and the ciphertexts")),
        }
    }

    fn __repr__(&self) -> String {
        format!("Authority(group={:?})", self.group())
    }
}

fn register<G: PrimeOrderGroup>(
    a: &Shared<G>,
    group: &G,
    enc: &RsFeboMatrix<G>,
) -> PyResult<usize> {
    let registration = FeboCommitmentRegistration {
        domain: enc.domain(),
        commitments: enc
            .ciphertexts()
            .iter()
            .map(|c| group.element_to_bytes(c.commitment()))
            .collect(),
    };
    let owner = InProcessKeyService::new(Arc::clone(a), RequesterId::new("data-owner"));
    owner
        .register_febo_commitments(&registration)
        .map_err(coordinator_err)
}

// ---------------------------------------------------------------------------------------------
// Public keys and clients.

/// The public key of a key domain: its id, parameters and FEIP (and FEBO) public keys.
#[pyclass(module = "cryptonn._cryptonn", frozen)]
struct PublicKey {
    inner: Any<DomainPublicKey<Ristretto255>, DomainPublicKey<ModpGroup>>,
}

macro_rules! pk_field {
    ($self:ident, $pk:ident => $e:expr) => {
        match &$self.inner {
            Any::Ristretto($pk) => $e,
            Any::Modp(_, $pk) => $e,
        }
    };
}

#[pymethods]
impl PublicKey {
    /// The key domain's id.
    #[getter]
    fn domain(&self) -> u64 {
        pk_field!(self, pk => pk.domain.0)
    }
    /// The vector length `n`.
    #[getter]
    fn n(&self) -> usize {
        pk_field!(self, pk => pk.feip_params.n())
    }
    /// The data bound `X`.
    #[getter]
    fn x_bound(&self) -> u64 {
        pk_field!(self, pk => pk.feip_params.x_bound())
    }
    /// The weight bound `Y`.
    #[getter]
    fn y_bound(&self) -> u64 {
        pk_field!(self, pk => pk.feip_params.y_bound())
    }
    /// The group's name.
    #[getter]
    fn group(&self) -> &'static str {
        match &self.inner {
            Any::Ristretto(_) => "ristretto255",
            Any::Modp(g, _) => group_name(g),
        }
    }
    fn __repr__(&self) -> String {
        format!(
            "PublicKey(domain={}, n={}, x_bound={}, y_bound={}, group={:?})",
            self.domain(),
            self.n(),
            self.x_bound(),
            self.y_bound(),
            self.group()
        )
    }
}

/// A data owner: encrypts its data under a domain's public key.
///
/// >>> import numpy as np, cryptonn
/// >>> authority = cryptonn.Authority()
/// >>> domain = authority.create_domain(n=2, x_bound=10, y_bound=10, policy="permissive")
/// >>> client = cryptonn.Client(authority.public_key(domain))
/// >>> enc = client.encrypt(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64))
/// >>> enc.shape
/// (2, 3)
#[pyclass(module = "cryptonn._cryptonn", frozen)]
struct Client {
    inner: Mutex<Any<RsClient<Ristretto255>, RsClient<ModpGroup>>>,
}

#[pymethods]
impl Client {
    #[new]
    fn new(public_key: &PublicKey) -> PyResult<Self> {
        let inner = match &public_key.inner {
            Any::Ristretto(pk) => {
                Any::Ristretto(RsClient::new(Ristretto255, pk.clone()).map_err(coordinator_err)?)
            }
            Any::Modp(g, pk) => Any::Modp(
                g.clone(),
                RsClient::new(g.clone(), pk.clone()).map_err(coordinator_err)?,
            ),
        };
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    /// Encrypts `x` (int64, shape `(n, m)`: one sample per column, `|x| <= x_bound`) under
    /// FEIP, column by column.
    fn encrypt(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<EncryptedMatrix> {
        let x = int64_matrix(x, "x")?;
        detached(py, || {
            let mut client = lock(&self.inner)?;
            let inner = match &mut *client {
                Any::Ristretto(c) => Any::Ristretto(c.encrypt_matrix(&x).map_err(coordinator_err)?),
                Any::Modp(g, c) => {
                    Any::Modp(g.clone(), c.encrypt_matrix(&x).map_err(coordinator_err)?)
                }
            };
            Ok(EncryptedMatrix { inner })
        })
    }

    /// Encrypts every entry of `x` (int64, any 2-D shape) under the domain's element-wise
    /// (FEBO) key, for `Server.secure_elementwise`.
    fn encrypt_elementwise(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
    ) -> PyResult<FeboEncryptedMatrix> {
        let x = int64_matrix(x, "x")?;
        detached(py, || {
            let mut client = lock(&self.inner)?;
            let inner = match &mut *client {
                Any::Ristretto(c) => {
                    Any::Ristretto(c.febo_encrypt_matrix(&x).map_err(coordinator_err)?)
                }
                Any::Modp(g, c) => Any::Modp(
                    g.clone(),
                    c.febo_encrypt_matrix(&x).map_err(coordinator_err)?,
                ),
            };
            Ok(FeboEncryptedMatrix { inner })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Ciphertexts.

/// A matrix encrypted column by column under FEIP. It holds no plaintext and offers none.
/// `to_bytes()` / `EncryptedMatrix.from_bytes()` use the library's versioned format (magic
/// "CNEM", version, group id, CRC-32), and so does pickling.
///
/// >>> import pickle, numpy as np, cryptonn
/// >>> authority = cryptonn.Authority()
/// >>> domain = authority.create_domain(n=2, x_bound=10, y_bound=10, policy="permissive")
/// >>> enc = cryptonn.Client(authority.public_key(domain)).encrypt(np.ones((2, 4), dtype=np.int64))
/// >>> cryptonn.EncryptedMatrix.from_bytes(enc.to_bytes()).to_bytes() == enc.to_bytes()
/// True
/// >>> pickle.loads(pickle.dumps(enc)).shape
/// (2, 4)
#[pyclass(module = "cryptonn._cryptonn", frozen)]
struct EncryptedMatrix {
    inner: Any<RsEncryptedMatrix<Ristretto255>, RsEncryptedMatrix<ModpGroup>>,
}

#[pymethods]
impl EncryptedMatrix {
    /// The versioned encoding.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = detached(py, || {
            Ok(match &self.inner {
                Any::Ristretto(e) => e.to_bytes(&Ristretto255),
                Any::Modp(g, e) => e.to_bytes(g),
            })
        })?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Decodes and validates `to_bytes()`'s output (any damage is a `DeserializationError`).
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let data = data.to_vec();
        detached(py, move || {
            let group =
                cryptonn::coordinator::matmul::peek_group_byte(&data).map_err(serialization_err)?;
            let inner = match group {
                1 => Any::Ristretto(
                    RsEncryptedMatrix::from_bytes(&Ristretto255, &data)
                        .map_err(serialization_err)?,
                ),
                2 | 3 => {
                    let g = if group == 2 {
                        ModpGroup::rfc3526_2048()
                    } else {
                        ModpGroup::rfc3526_3072()
                    };
                    let e = RsEncryptedMatrix::from_bytes(&g, &data).map_err(serialization_err)?;
                    Any::Modp(g, e)
                }
                other => {
                    return Err(raise(
                        "DeserializationError",
                        format!("unknown group id {other} in an encrypted matrix"),
                    ))
                }
            };
            Ok(Self { inner })
        })
    }

    /// `(n, m)`: vector length and number of encrypted columns.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        pk_field!(self, e => e.shape())
    }

    /// The key domain's id.
    #[getter]
    fn domain(&self) -> u64 {
        pk_field!(self, e => e.domain().0)
    }

    /// The group's name.
    #[getter]
    fn group(&self) -> &'static str {
        match &self.inner {
            Any::Ristretto(_) => "ristretto255",
            Any::Modp(g, _) => group_name(g),
        }
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let py = slf.py();
        let from_bytes = slf.get_type().getattr("from_bytes")?;
        Ok((from_bytes, (slf.get().to_bytes(py)?,)))
    }

    fn __repr__(&self) -> String {
        let (n, m) = self.shape();
        format!(
            "EncryptedMatrix(shape=({n}, {m}), domain={}, group={:?})",
            self.domain(),
            self.group()
        )
    }
}

/// A matrix encrypted entry by entry under FEBO, for `Server.secure_elementwise`.
#[pyclass(module = "cryptonn._cryptonn", frozen)]
struct FeboEncryptedMatrix {
    inner: Any<RsFeboMatrix<Ristretto255>, RsFeboMatrix<ModpGroup>>,
}

#[pymethods]
impl FeboEncryptedMatrix {
    /// The matrix's shape.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        pk_field!(self, e => e.shape())
    }
    /// The key domain's id.
    #[getter]
    fn domain(&self) -> u64 {
        pk_field!(self, e => e.domain().0)
    }
}

// ---------------------------------------------------------------------------------------------
// Server.

type Keys<G> = Arc<dyn KeyService<G> + Send + Sync>;

/// The server: multiplies its plaintext weights by ciphertexts with function keys from the
/// authority (in-process, or a remote key service at an `https://` URL).
///
/// >>> import numpy as np, cryptonn
/// >>> authority = cryptonn.Authority()
/// >>> domain = authority.create_domain(n=3, x_bound=100, y_bound=100, policy="permissive")
/// >>> x = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int64)
/// >>> enc = cryptonn.Client(authority.public_key(domain)).encrypt(x)
/// >>> server = cryptonn.Server(authority, requester="server", dlog_half_width=1 << 12)
/// >>> w = np.array([[1, 0, -1], [2, 2, 2]], dtype=np.int64)
/// >>> server.secure_matmul(w, enc)
/// array([[-4, -4],
///        [18, 24]])
#[pyclass(module = "cryptonn._cryptonn", frozen)]
struct Server {
    inner: Any<RsServer<Ristretto255, Keys<Ristretto255>>, RsServer<ModpGroup, Keys<ModpGroup>>>,
}

fn table<G: PrimeOrderGroup>(
    group: G,
    half_width: u64,
    cache: Option<&PathBuf>,
) -> PyResult<Arc<BabyStepTable<G>>> {
    let table = match cache {
        Some(dir) => BabyStepTable::load_or_build(group, half_width, dir),
        None => BabyStepTable::new(group, half_width),
    };
    table
        .map(Arc::new)
        .map_err(|e| raise("InvalidInputError", error_chain(&e)))
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (authority, requester = "server", *, group = None, token = None,
                        ca_pem = None, retry_seconds = 60.0, dlog_half_width = 1 << 17,
                        cache_dir = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        authority: &Bound<'_, PyAny>,
        requester: &str,
        group: Option<&str>,
        token: Option<String>,
        ca_pem: Option<Vec<u8>>,
        retry_seconds: f64,
        dlog_half_width: u64,
        cache_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let requester = RequesterId::new(requester);
        if let Ok(a) = authority.cast::<Authority>() {
            let a = a.get();
            if group.is_some() {
                return Err(raise(
                    "InvalidInputError",
                    "group is taken from the authority; pass it only with a URL",
                ));
            }
            return detached(py, || {
                let inner = match &a.inner {
                    Any::Ristretto(shared) => {
                        let keys: Keys<Ristretto255> =
                            Arc::new(InProcessKeyService::new(Arc::clone(shared), requester));
                        let t = table(Ristretto255, dlog_half_width, cache_dir.as_ref())?;
                        Any::Ristretto(RsServer::new(keys, t))
                    }
                    Any::Modp(g, shared) => {
                        let keys: Keys<ModpGroup> =
                            Arc::new(InProcessKeyService::new(Arc::clone(shared), requester));
                        let t = table(g.clone(), dlog_half_width, cache_dir.as_ref())?;
                        Any::Modp(g.clone(), RsServer::new(keys, t))
                    }
                };
                Ok(Self { inner })
            });
        }
        let Ok(url) = authority.extract::<String>() else {
            return Err(raise(
                "InvalidInputError",
                "authority must be a cryptonn.Authority or the URL of a key service",
            ));
        };
        let Some(token) = token else {
            return Err(raise(
                "InvalidInputError",
                "a remote key service needs the bearer token provisioned for this server",
            ));
        };
        let mut config = RemoteConfig::new(url, token, ca_pem);
        config.requester = requester;
        config.retry_for = std::time::Duration::try_from_secs_f64(retry_seconds).map_err(|_| {
            raise(
                "InvalidInputError",
                format!("retry_seconds must be a finite number >= 0, got {retry_seconds}"),
            )
        })?;
        let group = Group::parse(group.unwrap_or("ristretto255"))?;
        detached(py, move || {
            let inner = match group {
                Group::Ristretto => {
                    let keys: Keys<Ristretto255> = Arc::new(
                        RemoteKeyService::connect(Ristretto255, config).map_err(coordinator_err)?,
                    );
                    let t = table(Ristretto255, dlog_half_width, cache_dir.as_ref())?;
                    Any::Ristretto(RsServer::new(keys, t))
                }
                Group::Modp(g) => {
                    let keys: Keys<ModpGroup> = Arc::new(
                        RemoteKeyService::connect(g.clone(), config).map_err(coordinator_err)?,
                    );
                    let t = table(g.clone(), dlog_half_width, cache_dir.as_ref())?;
                    Any::Modp(g, RsServer::new(keys, t))
                }
            };
            Ok(Self { inner })
        })
    }

    /// `W @ X` exactly, for plaintext int64 `W` of shape `(k, n)` and encrypted `X` of shape
    /// `(n, m)`: one function key per row of `W` (the authority's policy decides), then the
    /// `k·m` inner products are decrypted. Returns an int64 array of shape `(k, m)`.
    fn secure_matmul<'py>(
        &self,
        py: Python<'py>,
        w: &Bound<'py, PyAny>,
        enc: &EncryptedMatrix,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let w = int64_matrix(w, "W")?;
        let z = detached(py, || match (&self.inner, &enc.inner) {
            (Any::Ristretto(s), Any::Ristretto(e)) => {
                s.secure_matmul(&w, e).map_err(coordinator_err)
            }
            (Any::Modp(_, s), Any::Modp(_, e)) => s.secure_matmul(&w, e).map_err(coordinator_err),
            _ => Err(mismatch("the server and the ciphertexts")),
        })?;
        Ok(to_numpy(py, z))
    }

    /// `X op Y` entry by entry for FEBO-encrypted `X` and plaintext int64 `Y` of the same
    /// shape; `op` is "add", "sub", "mul" or "div" (exact division only).
    fn secure_elementwise<'py>(
        &self,
        py: Python<'py>,
        enc: &FeboEncryptedMatrix,
        op: &str,
        y: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let op = match op {
            "add" => FeboOp::Add,
            "sub" => FeboOp::Sub,
            "mul" => FeboOp::Mul,
            "div" => FeboOp::Div,
            other => {
                return Err(raise(
                    "InvalidInputError",
                    format!("unknown operation {other:?}: \"add\", \"sub\", \"mul\" or \"div\""),
                ))
            }
        };
        let y = int64_matrix(y, "Y")?;
        let z = detached(py, || match (&self.inner, &enc.inner) {
            (Any::Ristretto(s), Any::Ristretto(e)) => {
                s.secure_elementwise(e, op, &y).map_err(coordinator_err)
            }
            (Any::Modp(_, s), Any::Modp(_, e)) => {
                s.secure_elementwise(e, op, &y).map_err(coordinator_err)
            }
            _ => Err(mismatch("the server and the ciphertexts")),
        })?;
        Ok(to_numpy(py, z))
    }

    /// The requester name the server asks for keys under.
    #[getter]
    fn requester(&self) -> String {
        match &self.inner {
            Any::Ristretto(s) => s.key_service().requester().to_string(),
            Any::Modp(_, s) => s.key_service().requester().to_string(),
        }
    }
}

/// The crate version this extension was built from (kept equal to the `cryptonn` crate's).
#[pyfunction]
fn library_version() -> &'static str {
    cryptonn::VERSION
}

#[pymodule]
fn _cryptonn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Authority>()?;
    m.add_class::<PublicKey>()?;
    m.add_class::<Client>()?;
    m.add_class::<EncryptedMatrix>()?;
    m.add_class::<FeboEncryptedMatrix>()?;
    m.add_class::<Server>()?;
    m.add_function(wrap_pyfunction!(library_version, m)?)?;
    m.add_function(wrap_pyfunction!(train::_train, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
