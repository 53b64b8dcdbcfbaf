"""train(...) returns train_lenet's JSON summary (plus `model` and `dataset`, as the generic
`train` example writes them), with the Rust example's weights."""

import json
import os
import pathlib
import subprocess

import pytest

import cryptonn

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARGS = {"train_size": 256, "epochs": 1, "test_size": 100}
# weights_sha256 of `cargo run --release --example train_lenet -- --mode plain --train-size 256
# --epochs 1 --test-size 100 --json out.json` (recorded 2026-12-07); used when the example's
# binary is not built here.
PLAIN_SHA256 = "86077717a7c59783b879dafa253e17d079688c8f76edd9f2a35c5992f7f3ae56"


def _rust_example():
    """The train_lenet binary, if it was built (cargo test / cargo build --examples)."""
    explicit = os.environ.get("CRYPTONN_TRAIN_LENET")
    if explicit:
        return pathlib.Path(explicit)
    built = [ROOT / "target" / p / "examples" / "train_lenet" for p in ("release", "debug")]
    built = [p for p in built if p.is_file()]
    # The newest build (an older one may predate the library this extension was built from).
    return max(built, key=lambda p: p.stat().st_mtime, default=None)


def _run_rust(tmp_path, mode):
    binary = _rust_example()
    if binary is None:
        return None
    out = tmp_path / f"{mode}.json"
    cmd = [
        str(binary),
        "--mode", mode,
        "--train-size", str(ARGS["train_size"]),
        "--epochs", str(ARGS["epochs"]),
        "--test-size", str(ARGS["test_size"]),
        "--json", str(out),
    ]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, timeout=600)
    return json.loads(out.read_text())


def test_plain_training_matches_the_rust_example(tmp_path):
    events = []
    summary = cryptonn.train(mode="plain", progress=events.append, **ARGS)
    assert summary["mode"] == "plain" and summary["train_size"] == 256
    assert len(summary["test_accuracy"]) == 1
    assert [e["event"] for e in events][:2] == ["epoch_started", "batch_finished"]
    assert events[-1]["event"] == "epoch_finished"
    assert max(e.get("images_done", 0) for e in events) == 256
    rust = _run_rust(tmp_path, "plain")
    if rust is None:
        assert PLAIN_SHA256 is not None, "build the train_lenet example (cargo build --examples)"
        assert summary["weights_sha256"] == PLAIN_SHA256
        return
    # The generic example's keys: train_lenet's, and the model and the dataset.
    assert set(summary) == set(rust) | {"model", "dataset"}
    assert (summary["model"], summary["dataset"]) == ("lenet5", "mnist")
    assert summary["weights_sha256"] == rust["weights_sha256"]
    for key in ("epochs", "train_size", "test_size", "batch_size", "seed", "lr", "schedule"):
        assert summary[key] == rust[key], key


def test_training_is_deterministic_and_modes_differ():
    a = cryptonn.train(mode="quantized", progress=False, train_size=64, epochs=1, test_size=32)
    b = cryptonn.train(mode="quantized", progress=False, train_size=64, epochs=1, test_size=32)
    c = cryptonn.train(mode="plain", progress=False, train_size=64, epochs=1, test_size=32)
    assert a["mode"] == "quantized"
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["weights_sha256"] != c["weights_sha256"]


def test_secure_training_is_bit_identical_to_quantized(tmp_path):
    args = dict(train_size=32, epochs=1, test_size=16, progress=False)
    quantized = cryptonn.train(mode="quantized", **args)
    secure = cryptonn.train(mode="secure", cache_dir=tmp_path, **args)
    # The group as the Rust examples' summaries name it.
    assert secure["mode"] == "secure" and secure["group"] == "ristretto"
    assert secure["feip_keys"] > 0 and secure["decryptions"] > 0 and secure["audit_records"] > 0
    assert secure["weights_sha256"] == quantized["weights_sha256"]


def test_an_exception_in_the_progress_callback_is_raised():
    def progress(event):
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        cryptonn.train(mode="plain", progress=progress, train_size=32, epochs=1, test_size=16)
