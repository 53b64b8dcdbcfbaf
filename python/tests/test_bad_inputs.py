"""Bad input gets a typed exception: never a cast, a wrap, a wrong value or a panic."""

import numpy as np
import pytest

import cryptonn
from cryptonn import errors
from conftest import domain_and_client


@pytest.fixture
def setup(authority):
    _, client = domain_and_client(authority, 3, x_bound=10, y_bound=10)
    server = cryptonn.Server(authority, dlog_half_width=1 << 10)
    enc = client.encrypt(np.arange(6, dtype=np.int64).reshape(3, 2))
    return client, server, enc


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((3, 2), dtype=np.float64),
        np.zeros((3, 2), dtype=np.int32),
        np.zeros((3, 2), dtype=np.uint64),
        np.zeros((3, 2), dtype=bool),
        [[1, 2], [3, 4], [5, 6]],
        "x",
    ],
)
def test_wrong_dtype_or_type_is_refused_not_cast(setup, x):
    client, server, enc = setup
    with pytest.raises(errors.DTypeError) as e:
        client.encrypt(x)
    assert isinstance(e.value, ValueError) and isinstance(e.value, TypeError)
    with pytest.raises(errors.DTypeError):
        server.secure_matmul(x, enc)


@pytest.mark.parametrize("shape", [(3,), (3, 2, 1), ()])
def test_wrong_number_of_dimensions(setup, shape):
    client, server, enc = setup
    with pytest.raises(errors.ShapeError, match="2-dimensional"):
        client.encrypt(np.zeros(shape, dtype=np.int64))
    with pytest.raises(errors.ShapeError):
        server.secure_matmul(np.zeros(shape, dtype=np.int64), enc)


def test_wrong_shapes(setup):
    client, server, enc = setup
    with pytest.raises(errors.ShapeError):
        client.encrypt(np.zeros((4, 2), dtype=np.int64))  # n = 3
    with pytest.raises(errors.ShapeError):
        server.secure_matmul(np.ones((2, 4), dtype=np.int64), enc)  # W must have 3 columns
    with pytest.raises(errors.ShapeError):
        server.secure_matmul(np.ones((0, 3), dtype=np.int64), enc)  # no rows


def test_values_beyond_the_bounds(setup):
    client, server, enc = setup
    with pytest.raises(errors.BoundError):
        client.encrypt(np.array([[11], [0], [0]], dtype=np.int64))
    with pytest.raises(errors.BoundError):
        client.encrypt(np.array([[np.iinfo(np.int64).min], [0], [0]], dtype=np.int64))
    with pytest.raises(errors.BoundError):
        server.secure_matmul(np.array([[11, 0, 0]], dtype=np.int64), enc)


def test_product_outside_the_discrete_log_range(authority):
    _, client = domain_and_client(authority, 4, x_bound=1000, y_bound=1000)
    enc = client.encrypt(np.full((4, 1), 1000, dtype=np.int64))
    server = cryptonn.Server(authority, dlog_half_width=4)  # range 4 + 256·9 = 2,308
    with pytest.raises(errors.ProductOutOfRangeError):
        server.secure_matmul(np.full((1, 4), 1000, dtype=np.int64), enc)


def test_policy_refusal_is_a_permission_error(authority):
    # Default policy: at least 4 non-zero entries per key vector, rank cap n/2.
    _, client = domain_and_client(authority, 8, policy="default")
    enc = client.encrypt(np.ones((8, 1), dtype=np.int64))
    server = cryptonn.Server(authority, dlog_half_width=1 << 10)
    e1 = np.zeros((1, 8), dtype=np.int64)
    e1[0, 0] = 1  # would reveal x_0
    with pytest.raises(errors.PolicyRefusedError) as e:
        server.secure_matmul(e1, enc)
    assert isinstance(e.value, PermissionError)
    dense = np.ones((1, 8), dtype=np.int64)
    assert server.secure_matmul(dense, enc)[0, 0] == 8
    # The refusal is audited as such; the issued key too.
    outcomes = [r["outcome"] for r in authority.audit()]
    assert len(outcomes) >= 1


def test_rank_cap_from_a_policy_dict(authority):
    _, client = domain_and_client(authority, 4, policy={"min_nonzero": 0, "rank_cap": 1})
    enc = client.encrypt(np.ones((4, 1), dtype=np.int64))
    server = cryptonn.Server(authority, dlog_half_width=1 << 10)
    server.secure_matmul(np.array([[1, 1, 0, 0]], dtype=np.int64), enc)
    with pytest.raises(errors.PolicyRefusedError):
        server.secure_matmul(np.array([[0, 0, 1, 1]], dtype=np.int64), enc)


def test_unknown_names_and_parameters():
    with pytest.raises(errors.InvalidInputError, match="unknown group"):
        cryptonn.Authority(group="p256")
    authority = cryptonn.Authority()
    with pytest.raises(errors.InvalidInputError, match="unknown policy"):
        authority.create_domain(n=2, x_bound=1, y_bound=1, policy="lax")
    with pytest.raises(errors.InvalidInputError, match="unknown policy key"):
        authority.create_domain(n=2, x_bound=1, y_bound=1, policy={"rank": 1})
    with pytest.raises(errors.InvalidInputError):
        authority.create_domain(n=0, x_bound=1, y_bound=1)
    with pytest.raises(errors.InvalidInputError):
        authority.create_domain(n=2, x_bound=0, y_bound=1)
    with pytest.raises(OverflowError):
        authority.create_domain(n=2, x_bound=-1, y_bound=1)
    with pytest.raises(errors.DomainError):
        authority.public_key(12345)
    with pytest.raises(errors.InvalidInputError, match="Authority or the URL"):
        cryptonn.Server(42)
    with pytest.raises(errors.InvalidInputError, match="token"):
        cryptonn.Server("https://localhost:1")


def test_mixing_groups_or_domains(rng):
    a = cryptonn.Authority()
    b = cryptonn.Authority(group="modp2048")
    _, client_b = domain_and_client(b, 2)
    enc_b = client_b.encrypt(np.ones((2, 1), dtype=np.int64))
    server_a = cryptonn.Server(a, dlog_half_width=1 << 8)
    with pytest.raises(errors.DomainError, match="different groups"):
        server_a.secure_matmul(np.ones((1, 2), dtype=np.int64), enc_b)
    # Same group, a domain this authority does not have.
    other = cryptonn.Authority()
    _, client_o = domain_and_client(other, 2)
    enc_o = client_o.encrypt(np.ones((2, 1), dtype=np.int64))
    _, _ = domain_and_client(a, 5)
    with pytest.raises(errors.CryptonnError):
        server_a.secure_matmul(np.ones((1, 2), dtype=np.int64), enc_o)


def test_elementwise_errors(authority):
    _, client = domain_and_client(authority, 2, febo_bound=(100, 10))
    enc = client.encrypt_elementwise(np.array([[7, 9]], dtype=np.int64))
    server = cryptonn.Server(authority, dlog_half_width=1 << 10)
    y = np.array([[2, 3]], dtype=np.int64)
    with pytest.raises(errors.PolicyRefusedError):  # commitments not registered by the owner
        server.secure_elementwise(enc, "add", y)
    authority.register_commitments(enc)
    with pytest.raises(errors.ArithmeticInputError):
        server.secure_elementwise(enc, "div", y)  # 7 / 2 is not exact
    with pytest.raises(errors.InvalidInputError, match="unknown operation"):
        server.secure_elementwise(enc, "pow", y)
    with pytest.raises(errors.ShapeError):
        server.secure_elementwise(enc, "add", np.ones((2, 1), dtype=np.int64))
    _, no_febo = domain_and_client(authority, 2)
    with pytest.raises(errors.DomainError):
        no_febo.encrypt_elementwise(np.ones((1, 2), dtype=np.int64))


def test_train_rejects_bad_arguments():
    with pytest.raises(errors.InvalidInputError, match="unknown option"):
        cryptonn.train(mode="plain", learning_rate=0.1, progress=False)
    with pytest.raises(errors.InvalidInputError, match="unknown mode"):
        cryptonn.train(mode="fast", progress=False)
    with pytest.raises(errors.InvalidInputError, match="unknown dataset"):
        cryptonn.train(mode="plain", dataset="cifar10", progress=False)
    with pytest.raises(errors.DatasetError):
        cryptonn.train(mode="plain", train_size=64, data_dir="/nonexistent/cryptonn", progress=False)
    with pytest.raises(errors.DatasetError):
        cryptonn.train(mode="plain", train_size=10**7, progress=False)
    with pytest.raises(errors.InvalidInputError):
        cryptonn.train(mode="plain", train_size=64, batch_size=0, progress=False)


def test_unreachable_remote_key_service_is_a_connection_error():
    server = cryptonn.Server(
        "http://127.0.0.1:9", requester="server", token="t", retry_seconds=0.2,
        dlog_half_width=1 << 8,
    )
    authority = cryptonn.Authority()
    _, client = domain_and_client(authority, 2)
    enc = client.encrypt(np.ones((2, 1), dtype=np.int64))
    with pytest.raises(errors.KeyServiceError) as e:
        server.secure_matmul(np.ones((1, 2), dtype=np.int64), enc)
    assert isinstance(e.value, ConnectionError)
    with pytest.raises(errors.InvalidInputError, match="retry_seconds"):
        cryptonn.Server("http://127.0.0.1:9", token="t", retry_seconds=-1.0)
