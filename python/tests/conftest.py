import numpy as np
import pytest

import cryptonn


@pytest.fixture
def rng():
    return np.random.default_rng(2019)


@pytest.fixture
def authority():
    return cryptonn.Authority(group="ristretto255")


def domain_and_client(authority, n, x_bound=100, y_bound=100, policy="permissive", **kw):
    domain = authority.create_domain(n=n, x_bound=x_bound, y_bound=y_bound, policy=policy, **kw)
    return domain, cryptonn.Client(authority.public_key(domain))
