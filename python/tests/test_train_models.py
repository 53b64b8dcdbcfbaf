"""train(...) on any built-in model, model file or spec dict, and any built-in dataset: the
summary of the Rust example `examples/train.rs --json`, with its weights."""

import json
import os
import pathlib
import subprocess

import pytest

import cryptonn
from cryptonn.errors import DatasetError, InvalidInputError

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLINIC = ROOT / "examples" / "models" / "clinic-mlp.toml"
# A short breast-cancer run of the built-in mlp (30-128-2).
ARGS = {"model": "mlp", "dataset": "breast-cancer", "train_size": 64, "epochs": 1, "test_size": 32}
# Keys whose values depend only on the arguments (not on timings or paths).
SAME = (
    "mode", "epochs", "train_size", "test_size", "batch_size", "seed", "lr", "schedule",
    "test_accuracy", "weights_sha256", "model", "dataset",
)
SAME_SECURE = ("group", "key_requests", "feip_keys", "febo_keys", "decryptions", "ciphertext_bytes")
# weights_sha256 of `cargo run --example train -- --model mlp --dataset breast-cancer --mode
# quantized --train-size 64 --epochs 1 --test-size 32 --json out.json` (recorded 2026-12-07);
# used when the example's binary is not built here.
QUANTIZED_SHA256 = "8e2ac1309954dfd174db0e03c8936b0386302262de5227dff66cd2d5710b4f06"


def _rust_example():
    """The `train` example's binary, if it was built (cargo test / cargo build --examples)."""
    explicit = os.environ.get("CRYPTONN_TRAIN")
    if explicit:
        return pathlib.Path(explicit)
    built = [ROOT / "target" / p / "examples" / "train" for p in ("release", "debug")]
    built = [p for p in built if p.is_file()]
    return max(built, key=lambda p: p.stat().st_mtime, default=None)


def _run_rust(tmp_path, mode, **args):
    binary = _rust_example()
    if binary is None:
        return None
    out = tmp_path / f"rust-{mode}.json"
    cmd = [str(binary), "--mode", mode, "--json", str(out), "--cache-dir", str(tmp_path / "rust-cache")]
    for key, value in args.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, timeout=600)
    return json.loads(out.read_text())


@pytest.mark.parametrize("mode", ["quantized", "secure"])
def test_breast_cancer_mlp_matches_the_rust_example(tmp_path, mode):
    options = {"cache_dir": tmp_path / "py-cache"} if mode == "secure" else {}
    summary = cryptonn.train(mode=mode, progress=False, **ARGS, **options)
    assert (summary["model"], summary["dataset"], summary["mode"]) == ("mlp", "breast-cancer", mode)
    assert (summary["train_size"], summary["test_size"]) == (64, 32)
    rust = _run_rust(tmp_path, mode, **ARGS)
    if rust is None:
        assert QUANTIZED_SHA256 is not None, "build the train example (cargo build --examples)"
        if mode == "quantized":
            assert summary["weights_sha256"] == QUANTIZED_SHA256
        return
    assert set(summary) == set(rust)
    for key in SAME + (SAME_SECURE if mode == "secure" else ()):
        assert summary[key] == rust[key], key
    if mode == "secure":
        assert summary["audit_file"] == "(in memory)"
        assert summary["feip_keys"] > 0 and summary["decryptions"] > 0


def test_secure_is_bit_identical_to_quantized_on_digits(tmp_path):
    args = dict(model="cnn-small", dataset="digits", train_size=32, epochs=1, test_size=16,
                progress=False)
    quantized = cryptonn.train(mode="quantized", **args)
    secure = cryptonn.train(mode="secure", cache_dir=tmp_path, **args)
    assert secure["model"] == "cnn-small" and secure["dataset"] == "digits"
    assert secure["weights_sha256"] == quantized["weights_sha256"]


def test_a_model_file_a_spec_dict_and_a_path_train_alike():
    args = dict(dataset="breast-cancer", mode="quantized", train_size=48, epochs=1, test_size=16,
                progress=False)
    from_str = cryptonn.train(model=str(CLINIC), **args)
    from_path = cryptonn.train(model=CLINIC, **args)
    spec = {
        "name": "clinic-mlp",
        "classes": 2,
        "input": {"flat": 30},
        "layers": [
            {"type": "linear", "in": 30, "out": 16},
            {"type": "relu"},
            {"type": "linear", "in": 16, "out": 2},
        ],
    }
    from_dict = cryptonn.train(model=spec, **args)
    assert from_str["model"] == "clinic-mlp"
    assert from_str["weights_sha256"] == from_path["weights_sha256"] == from_dict["weights_sha256"]
    other = cryptonn.train(model="mlp", **args)
    assert other["weights_sha256"] != from_dict["weights_sha256"]


def test_bad_models_and_datasets_are_value_errors():
    args = dict(mode="plain", train_size=16, epochs=1, test_size=8, progress=False)
    with pytest.raises(DatasetError, match="unknown dataset"):
        cryptonn.train(model="mlp", dataset="cifar10", **args)
    with pytest.raises(InvalidInputError, match="unknown built-in"):
        cryptonn.train(model="resnet50", dataset="digits", **args)
    with pytest.raises(InvalidInputError, match="layer 0"):
        cryptonn.train(
            model={"name": "bad", "classes": 2, "input": {"flat": 30}, "layers": [{"type": "relu"}]},
            dataset="breast-cancer",
            **args,
        )
    with pytest.raises(InvalidInputError, match="784 features"):
        # A model for another input than the dataset's.
        cryptonn.train(
            model={"name": "m", "classes": 2, "input": {"flat": 784},
                   "layers": [{"type": "linear", "in": 784, "out": 2}]},
            dataset="breast-cancer",
            **args,
        )
    with pytest.raises(InvalidInputError, match="model must be"):
        cryptonn.train(model=3, dataset="digits", **args)
