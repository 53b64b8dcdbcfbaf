"""Bytes and pickle round trips of EncryptedMatrix, across processes too."""

import multiprocessing
import pickle

import numpy as np
import pytest

import cryptonn
from cryptonn.errors import DeserializationError
from conftest import domain_and_client


def _reencode(enc):
    # Runs in a pool worker: the matrix arrived pickled (through its versioned bytes).
    return enc.shape, enc.domain, enc.to_bytes()


@pytest.mark.parametrize("group", ["ristretto255", "modp2048"])
def test_bytes_round_trip_then_secure_matmul(group, rng):
    authority = cryptonn.Authority(group=group)
    _, client = domain_and_client(authority, 3)
    x = rng.integers(-100, 101, size=(3, 4), dtype=np.int64)
    enc = client.encrypt(x)
    data = enc.to_bytes()
    assert data[:4] == b"CNEM"
    back = cryptonn.EncryptedMatrix.from_bytes(data)
    assert back.to_bytes() == data
    assert (back.shape, back.domain, back.group) == (enc.shape, enc.domain, group)
    w = rng.integers(-100, 101, size=(2, 3), dtype=np.int64)
    server = cryptonn.Server(authority, dlog_half_width=1 << 14)
    np.testing.assert_array_equal(server.secure_matmul(w, back), w @ x)


def test_pickle_round_trip(authority, rng):
    _, client = domain_and_client(authority, 3)
    enc = client.encrypt(rng.integers(-100, 101, size=(3, 2), dtype=np.int64))
    back = pickle.loads(pickle.dumps(enc))
    assert back.to_bytes() == enc.to_bytes()


def test_pickle_across_a_multiprocessing_pool(authority, rng):
    _, client = domain_and_client(authority, 5)
    x = rng.integers(-100, 101, size=(5, 3), dtype=np.int64)
    encs = [client.encrypt(x), client.encrypt(x + 1)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_reencode, encs)
    for enc, (shape, domain, data) in zip(encs, results):
        assert shape == enc.shape and domain == enc.domain
        assert data == enc.to_bytes()
    # And what came back decrypts to the right product.
    server = cryptonn.Server(authority, dlog_half_width=1 << 14)
    w = np.ones((1, 5), dtype=np.int64)
    back = cryptonn.EncryptedMatrix.from_bytes(results[1][2])
    np.testing.assert_array_equal(server.secure_matmul(w, back), w @ (x + 1))


def test_every_truncation_and_damage_is_a_deserialization_error(authority):
    _, client = domain_and_client(authority, 2)
    data = client.encrypt(np.array([[1], [2]], dtype=np.int64)).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(DeserializationError):
            cryptonn.EncryptedMatrix.from_bytes(data[:cut])
    for i in range(0, len(data), 7):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(DeserializationError):
            cryptonn.EncryptedMatrix.from_bytes(bytes(bad))
    with pytest.raises(DeserializationError):
        cryptonn.EncryptedMatrix.from_bytes(data + b"\x00")
    with pytest.raises(ValueError):  # DeserializationError is a ValueError
        cryptonn.EncryptedMatrix.from_bytes(b"not a matrix at all")


def test_public_key_describes_its_domain(authority):
    domain = authority.create_domain(n=6, x_bound=7, y_bound=9)
    pk = authority.public_key(domain)
    assert (pk.domain, pk.n, pk.x_bound, pk.y_bound, pk.group) == (domain, 6, 7, 9, "ristretto255")
