"""The docstrings' examples run."""

import doctest

import pytest

import cryptonn
import cryptonn.errors

OBJECTS = [
    cryptonn,
    cryptonn.errors,
    cryptonn.Authority,
    cryptonn.Client,
    cryptonn.Server,
    cryptonn.EncryptedMatrix,
    cryptonn.train,
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: getattr(o, "__name__", str(o)))
def test_docstring_examples(obj):
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(obj, getattr(obj, "__name__", "obj"), globs={})
    examples = sum(len(t.examples) for t in tests)
    assert examples > 0, "no example in the docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0
