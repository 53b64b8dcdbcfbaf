"""cryptonn: train neural networks on data whose owners never reveal it (CryptoNN, ICDCS 2019).

The parties of the protocol, over numpy arrays of dtype int64:

- :class:`Authority` holds the master secret keys, issues function keys under its key policy,
  and audits every key;
- :class:`Client` (a data owner) encrypts a matrix under a domain's public key;
- :class:`Server` computes ``W @ X`` (and element-wise operations) on ciphertexts, through
  function keys the authority issues, and never sees ``X``.

>>> import numpy as np, cryptonn
>>> authority = cryptonn.Authority(group="ristretto255")
>>> domain = authority.create_domain(n=4, x_bound=100, y_bound=100, policy="permissive")
>>> x = np.array([[1, 2, 3], [-4, 5, 6], [7, -8, 9], [10, 11, -12]], dtype=np.int64)
>>> enc = cryptonn.Client(authority.public_key(domain)).encrypt(x)
>>> server = cryptonn.Server(authority, requester="server", dlog_half_width=1 << 12)
>>> w = np.array([[1, 1, 1, 1], [2, -1, 3, 5]], dtype=np.int64)
>>> bool((server.secure_matmul(w, enc) == w @ x).all())
True
>>> len(authority.audit())
2

Every computation runs in the Rust library (``cryptonn`` crate) with the GIL released; errors
are the classes of :mod:`cryptonn.errors`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Optional, Union

from . import errors
from ._cryptonn import (
    Authority,
    Client,
    EncryptedMatrix,
    FeboEncryptedMatrix,
    PublicKey,
    Server,
    __version__,
    library_version,
)
from ._cryptonn import _train

__all__ = [
    "Authority",
    "Client",
    "EncryptedMatrix",
    "FeboEncryptedMatrix",
    "PublicKey",
    "Server",
    "train",
    "errors",
    "__version__",
    "library_version",
]

_OPTIONS = {
    "test_size": 10_000,
    "batch_size": None,
    "seed": 1,
    "lr": None,
    "momentum": None,
    "lr_schedule": "cosine",
    "chunk_size": None,
    "threads": 0,
    "data_dir": None,
    "group": "ristretto255",
    "cache_dir": None,  # default: $XDG_CACHE_HOME/cryptonn (or ~/.cache/cryptonn)
    "dlog_half_width": 1 << 20,
    "reencrypt": False,
}


def _tqdm_progress() -> Optional[Callable[[Dict[str, Any]], None]]:
    try:
        from tqdm.auto import tqdm  # type: ignore[import-not-found]
    except ImportError:
        return None
    state: Dict[str, Any] = {"bar": None}

    def progress(event: Dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "epoch_started":
            state["bar"] = tqdm(
                total=event["images"], desc=f"epoch {event['epoch'] + 1}/{event['epochs']}", unit="img"
            )
        elif kind == "batch_finished" and state["bar"] is not None:
            bar = state["bar"]
            bar.update(event["images_done"] - bar.n)
            bar.set_postfix(loss=f"{event['loss']:.4f}", acc=f"{100 * event['accuracy']:.1f}%")
        elif kind == "epoch_finished" and state["bar"] is not None:
            state["bar"].close()
            state["bar"] = None

    return progress


def train(
    model: Union[str, "os.PathLike[str]", Dict[str, Any]] = "lenet5",
    dataset: str = "mnist",
    mode: str = "secure",
    train_size: Optional[int] = None,
    epochs: int = 2,
    progress: Union[Callable[[Dict[str, Any]], None], bool, None] = None,
    **options: Any,
) -> Dict[str, Any]:
    """Trains ``model`` on ``dataset`` and returns the run summary.

    The summary is the dict ``examples/train.rs --json`` writes (same keys: ``mode``,
    ``epochs``, ``train_size``, ..., ``test_accuracy``, ``images_per_second``,
    ``weights_sha256``, ``model``, ``dataset``, and in secure mode ``group``, ``feip_keys``,
    ``decryptions``, ...); the same arguments give the same ``weights_sha256`` as the Rust
    example.

    ``model`` is a built-in (``"lenet5"``, ``"mlp"``, ``"cnn-small"``, sized to the dataset), a
    model file (TOML or JSON, as ``--model`` of the example), or a spec as a dict (the JSON
    model file's content). ``dataset`` is ``"mnist"``, ``"breast-cancer"`` or ``"digits"``,
    under its declared encoding. ``mode`` is ``"plain"`` (float), ``"quantized"`` (the first
    layer in the integer arithmetic of secure training, on plaintext) or ``"secure"`` (the first
    layer over FEIP/FEBO ciphertexts, with an in-process authority). ``train_size`` defaults to
    2,048 MNIST images in secure mode and 10,000 otherwise, and to the whole training split of
    the other datasets (more than the split holds is a ``DatasetError``); ``test_size`` is
    clamped to the test split's size.

    ``progress`` is a callable that receives one dict per event (``event`` is
    ``"epoch_started"``, ``"batch_finished"`` or ``"epoch_finished"``; ``"encrypting"`` in
    secure mode); ``None`` shows tqdm bars if tqdm is installed; ``False`` shows nothing.

    Options (the defaults of the example): ``test_size=10000``, ``batch_size=16``, ``seed=1``,
    ``lr=0.015``, ``momentum=0.9``, ``lr_schedule="cosine"``, ``chunk_size=8``, ``threads=0``
    (all cores), ``data_dir`` (else ``$CRYPTONN_DATA_DIR``, else the repository's ``data/``);
    secure mode also takes ``group``, ``cache_dir``, ``dlog_half_width`` and ``reencrypt``.

    >>> import cryptonn
    >>> summary = cryptonn.train(mode="plain", train_size=64, epochs=1, test_size=32,
    ...                          progress=False)
    >>> summary["mode"], summary["train_size"], summary["model"], len(summary["weights_sha256"])
    ('plain', 64, 'lenet5', 64)
    >>> spec = {"name": "tiny", "classes": 2, "input": {"flat": 30},
    ...         "layers": [{"type": "linear", "in": 30, "out": 2}]}
    >>> s = cryptonn.train(model=spec, dataset="breast-cancer", mode="quantized", epochs=1,
    ...                    progress=False)
    >>> s["model"], s["dataset"], s["train_size"], s["test_size"]
    ('tiny', 'breast-cancer', 456, 113)
    """
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise errors.InvalidInputError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}"
        )
    opts = dict(_OPTIONS)
    opts.update(options)
    if progress is None:
        callback = _tqdm_progress()
    elif progress is False:
        callback = None
    elif callable(progress):
        callback = progress
    else:
        raise errors.InvalidInputError("progress must be a callable, None (tqdm) or False")
    data_dir = opts["data_dir"]
    cache_dir = opts["cache_dir"]
    if cache_dir is None and mode == "secure":
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        cache_dir = os.path.join(base, "cryptonn")
    if isinstance(model, dict):
        model_name, model_json = "", json.dumps(model)
    elif isinstance(model, (str, os.PathLike)):
        model_name, model_json = os.fspath(model), None
    else:
        raise errors.InvalidInputError(
            f"model must be a name, a model file or a spec dict, not {type(model).__name__}"
        )
    summary = _train(
        model_name,
        model_json,
        dataset,
        mode,
        train_size,
        opts["test_size"],
        epochs,
        opts["batch_size"],
        opts["seed"],
        opts["lr"],
        opts["momentum"],
        opts["lr_schedule"],
        opts["chunk_size"],
        opts["threads"],
        None if data_dir is None else os.fspath(data_dir),
        opts["group"],
        None if cache_dir is None else os.fspath(cache_dir),
        opts["dlog_half_width"],
        opts["reencrypt"],
        callback,
    )
    return json.loads(summary)
