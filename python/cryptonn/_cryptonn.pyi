"""Type stubs of the compiled extension ``cryptonn._cryptonn`` (re-exported by ``cryptonn``)."""

from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

GroupName = Literal["ristretto255", "modp2048", "modp3072"]
Policy = Union[Literal["default", "permissive"], Mapping[str, Optional[int]], None]
Int64Matrix = npt.NDArray[np.int64]

__version__: str

def library_version() -> str:
    """The version of the ``cryptonn`` Rust crate this extension was built from."""

class PublicKey:
    """The public key of a key domain: what a :class:`Client` encrypts with."""

    @property
    def domain(self) -> int: ...
    @property
    def n(self) -> int: ...
    @property
    def x_bound(self) -> int: ...
    @property
    def y_bound(self) -> int: ...
    @property
    def group(self) -> GroupName: ...

class Authority:
    """The authority: master secret keys, function keys, key policy and audit log.

    >>> import cryptonn
    >>> authority = cryptonn.Authority(group="ristretto255")
    >>> domain = authority.create_domain(n=3, x_bound=100, y_bound=100, policy="permissive")
    >>> authority.public_key(domain).n
    3
    """

    def __init__(self, group: GroupName = "ristretto255") -> None: ...
    @property
    def group(self) -> GroupName: ...
    def create_domain(
        self,
        n: int,
        x_bound: int,
        y_bound: int,
        policy: Policy = None,
        febo_bound: Optional[Tuple[int, int]] = None,
    ) -> int:
        """Creates a key domain for vectors of length ``n`` (``|x| <= x_bound``,
        ``|w| <= y_bound``) and returns its id. ``policy``: ``"default"`` (rank cap n/2, at
        least 4 non-zero entries per key vector), ``"permissive"``, or
        ``{"min_nonzero": t, "rank_cap": r or None}``. ``febo_bound=(X, Y)`` adds an
        element-wise key."""
    def public_key(self, domain: int) -> PublicKey: ...
    def audit(self) -> List[Dict[str, Any]]:
        """One dict per issued function key, oldest first."""
    def register_commitments(self, enc: "FeboEncryptedMatrix") -> int:
        """The data owner registers its FEBO ciphertexts; FEBO keys exist for nothing else."""

class EncryptedMatrix:
    """``X`` (shape ``(n, m)``) encrypted column by column under FEIP; holds no plaintext.

    Bytes (and pickles) use the versioned ``CNEM`` format with a CRC-32."""

    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> "EncryptedMatrix": ...
    @property
    def shape(self) -> Tuple[int, int]: ...
    @property
    def domain(self) -> int: ...
    @property
    def group(self) -> GroupName: ...
    def __reduce__(self) -> Tuple[Callable[[bytes], "EncryptedMatrix"], Tuple[bytes]]: ...

class FeboEncryptedMatrix:
    """A matrix encrypted entry by entry under FEBO, for :meth:`Server.secure_elementwise`."""

    @property
    def shape(self) -> Tuple[int, int]: ...
    @property
    def domain(self) -> int: ...

class Client:
    """A data owner: encrypts int64 matrices under a domain's public key."""

    def __init__(self, public_key: PublicKey) -> None: ...
    def encrypt(self, x: Int64Matrix) -> EncryptedMatrix:
        """Encrypts ``x`` (int64, shape ``(n, m)``, one sample per column)."""
    def encrypt_elementwise(self, x: Int64Matrix) -> FeboEncryptedMatrix: ...

class Server:
    """Computes on ciphertexts with function keys from an :class:`Authority` (in-process) or
    a remote key service (``"https://host:port"`` with ``token=`` and ``ca_pem=``)."""

    def __init__(
        self,
        authority: Union[Authority, str],
        requester: str = "server",
        *,
        group: Optional[GroupName] = None,
        token: Optional[str] = None,
        ca_pem: Optional[bytes] = None,
        retry_seconds: float = 60.0,
        dlog_half_width: int = 1 << 17,
        cache_dir: Optional[str] = None,
    ) -> None: ...
    @property
    def requester(self) -> str: ...
    def secure_matmul(self, w: Int64Matrix, enc: EncryptedMatrix) -> Int64Matrix:
        """``W @ X`` exactly (int64, shape ``(k, m)``) for plaintext ``W`` ``(k, n)``."""
    def secure_elementwise(
        self, enc: FeboEncryptedMatrix, op: Literal["add", "sub", "mul", "div"], y: Int64Matrix
    ) -> Int64Matrix: ...

def _train(
    model: str,
    model_json: Optional[str],
    dataset: str,
    mode: str,
    train_size: Optional[int],
    test_size: int,
    epochs: int,
    batch_size: Optional[int],
    seed: int,
    lr: Optional[float],
    momentum: Optional[float],
    lr_schedule: str,
    chunk_size: Optional[int],
    threads: int,
    data_dir: Optional[str],
    group: str,
    cache_dir: Optional[str],
    dlog_half_width: int,
    reencrypt: bool,
    progress: Optional[Callable[[Dict[str, Any]], None]],
) -> str: ...
