"""The exceptions cryptonn raises.

Every error of the Rust library reaches Python as one of these classes (never as a Rust panic):

- bad input (wrong dtype, shape, bound, group, unknown names, damaged bytes) are ``ValueError``
  subclasses, under :class:`InvalidInputError`;
- refusals by the authority's key policy (or by its access rules) are ``PermissionError``
  subclasses: :class:`PolicyRefusedError`;
- everything is a :class:`CryptonnError`.

>>> import numpy as np, cryptonn
>>> from cryptonn.errors import BoundError
>>> authority = cryptonn.Authority()
>>> domain = authority.create_domain(n=2, x_bound=10, y_bound=10)
>>> client = cryptonn.Client(authority.public_key(domain))
>>> try:
...     client.encrypt(np.array([[11], [0]], dtype=np.int64))
... except BoundError as e:
...     print("refused:", isinstance(e, ValueError))
refused: True
"""

__all__ = [
    "CryptonnError",
    "InvalidInputError",
    "DTypeError",
    "ShapeError",
    "BoundError",
    "ArithmeticInputError",
    "DomainError",
    "DeserializationError",
    "DatasetError",
    "PolicyRefusedError",
    "ProductOutOfRangeError",
    "KeyServiceError",
]


class CryptonnError(Exception):
    """Base class of every cryptonn error."""


class InvalidInputError(CryptonnError, ValueError):
    """An argument cryptonn cannot use (unknown name, unusable parameter, bad configuration)."""


class DTypeError(InvalidInputError, TypeError):
    """A numpy array of another dtype than int64 (cryptonn never casts silently), or not an array."""


class ShapeError(InvalidInputError):
    """Shapes that do not fit (e.g. W's columns differ from the encrypted vectors' length)."""


class BoundError(InvalidInputError):
    """A value outside the bound of its key domain (|x| > x_bound, |w| > y_bound), or not encodable."""


class ArithmeticInputError(InvalidInputError, ArithmeticError):
    """An element-wise division by zero, or a division that is not exact."""


class DomainError(InvalidInputError):
    """An unknown, rotated or closed key domain, or objects of different domains or groups."""


class DeserializationError(InvalidInputError):
    """Bytes that are not a valid encoding (truncated, damaged, another version or group)."""


class DatasetError(InvalidInputError):
    """A dataset file that is missing or malformed, or too few examples."""


class PolicyRefusedError(CryptonnError, PermissionError):
    """The authority's key policy (or its access rules) refused a function key; none was issued."""


class ProductOutOfRangeError(CryptonnError, ArithmeticError):
    """A decrypted product lies outside the server's discrete-log range (never a wrong value)."""


class KeyServiceError(CryptonnError, ConnectionError):
    """A remote key service could not be reached or answered with an error."""
