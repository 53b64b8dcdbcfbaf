"""The Python package, its extension and the Rust crate carry one version."""

import pathlib
import re
from importlib import metadata

import cryptonn

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _cargo_version(path):
    text = path.read_text()
    package = text[text.index("[package]"):]
    return re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)


def test_versions_are_in_lockstep():
    assert cryptonn.__version__ == cryptonn.library_version()
    assert metadata.version("cryptonn") == cryptonn.__version__
    if (ROOT / "Cargo.toml").is_file():
        assert _cargo_version(ROOT / "Cargo.toml") == cryptonn.__version__
        assert _cargo_version(ROOT / "python" / "Cargo.toml") == cryptonn.__version__
