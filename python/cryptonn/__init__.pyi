import os
from typing import Any, Callable, Dict, Optional, Union

from . import errors as errors
from ._cryptonn import (
    Authority as Authority,
    Client as Client,
    EncryptedMatrix as EncryptedMatrix,
    FeboEncryptedMatrix as FeboEncryptedMatrix,
    PublicKey as PublicKey,
    Server as Server,
    __version__ as __version__,
    library_version as library_version,
)

def train(
    model: Union[str, "os.PathLike[str]", Dict[str, Any]] = "lenet5",
    dataset: str = "mnist",
    mode: str = "secure",
    train_size: Optional[int] = None,
    epochs: int = 2,
    progress: Union[Callable[[Dict[str, Any]], None], bool, None] = None,
    **options: Any,
) -> Dict[str, Any]: ...
