"""secure_matmul against numpy: random data, the paper's product, both group families."""

import threading
import time

import numpy as np
import pytest

import cryptonn
from conftest import domain_and_client


@pytest.mark.parametrize("group", ["ristretto255", "modp2048"])
def test_secure_matmul_equals_numpy_on_random_data(group, rng):
    authority = cryptonn.Authority(group=group)
    n, m, k = 7, 5, 4
    _, client = domain_and_client(authority, n, x_bound=50, y_bound=30)
    x = rng.integers(-50, 51, size=(n, m), dtype=np.int64)
    w = rng.integers(-30, 31, size=(k, n), dtype=np.int64)
    enc = client.encrypt(x)
    assert enc.shape == (n, m) and enc.group == group
    server = cryptonn.Server(authority, requester="server", dlog_half_width=1 << 12)
    z = server.secure_matmul(w, enc)
    assert z.dtype == np.int64 and z.shape == (k, m)
    np.testing.assert_array_equal(z, w @ x)
    # The same ciphertexts, other weights: still exact.
    w2 = rng.integers(-30, 31, size=(2, n), dtype=np.int64)
    np.testing.assert_array_equal(server.secure_matmul(w2, enc), w2 @ x)


def test_paper_product_100x10_times_10x100(rng):
    """CryptoNN's benchmark: X (100x10, values 1..100) times Y (10x100), 10,000 inner products."""
    authority = cryptonn.Authority()
    _, client = domain_and_client(authority, 10, x_bound=100, y_bound=100)
    x = rng.integers(1, 101, size=(100, 10), dtype=np.int64)
    y = rng.integers(1, 101, size=(10, 100), dtype=np.int64)
    enc = client.encrypt(np.ascontiguousarray(x.T))  # one sample (row of X) per column
    server = cryptonn.Server(authority, requester="server")
    z = server.secure_matmul(np.ascontiguousarray(y.T), enc)  # (X·Y)ᵀ = Yᵀ·Xᵀ
    np.testing.assert_array_equal(z.T, x @ y)
    assert len(authority.audit()) == 100  # one audited key per column of Y


def test_non_contiguous_views_are_read_correctly(rng):
    authority = cryptonn.Authority()
    _, client = domain_and_client(authority, 4)
    x = rng.integers(-100, 101, size=(8, 4), dtype=np.int64)
    w = rng.integers(-100, 101, size=(4, 3), dtype=np.int64)
    enc = client.encrypt(x.T)  # a transposed view
    server = cryptonn.Server(authority, dlog_half_width=1 << 14)
    np.testing.assert_array_equal(server.secure_matmul(w.T, enc), w.T @ x.T)


def test_elementwise_operations(rng):
    authority = cryptonn.Authority()
    _, client = domain_and_client(authority, 2, febo_bound=(1000, 100))
    x = np.array([[-84, 0, 7], [1000, -1000, 42]], dtype=np.int64)
    enc = client.encrypt_elementwise(x)
    assert authority.register_commitments(enc) == 6
    y = np.array([[5, -3, 7], [100, 7, -6]], dtype=np.int64)
    server = cryptonn.Server(authority, dlog_half_width=1 << 12)
    np.testing.assert_array_equal(server.secure_elementwise(enc, "add", y), x + y)
    np.testing.assert_array_equal(server.secure_elementwise(enc, "sub", y), x - y)
    np.testing.assert_array_equal(server.secure_elementwise(enc, "mul", y), x * y)
    d = np.array([[-7, 1, 7], [10, -4, 6]], dtype=np.int64)
    np.testing.assert_array_equal(server.secure_elementwise(enc, "div", d), x // d)


def test_heavy_calls_release_the_gil(rng):
    """Another Python thread keeps running while secure_matmul computes."""
    authority = cryptonn.Authority()
    _, client = domain_and_client(authority, 10)
    x = rng.integers(1, 101, size=(10, 100), dtype=np.int64)
    w = rng.integers(1, 101, size=(100, 10), dtype=np.int64)
    enc = client.encrypt(x)
    server = cryptonn.Server(authority)
    done = threading.Event()
    result = {}

    def work():
        t = time.perf_counter()
        result["z"] = server.secure_matmul(w, enc)
        result["seconds"] = time.perf_counter() - t
        done.set()

    ticks = 0
    thread = threading.Thread(target=work)
    thread.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    thread.join()
    np.testing.assert_array_equal(result["z"], w @ x)
    # With the GIL held for the whole call this loop could not run during it.
    assert ticks >= 10, (ticks, result["seconds"])
