"""The CryptoNN paper's benchmark from Python: X (100x10, values 1..100) times Y (10x100).

The client encrypts its 100 samples (the rows of X, i.e. the columns of Xᵀ); the server holds Y,
gets one function key per column of Y from the authority, and computes (X·Y)ᵀ = Yᵀ·Xᵀ without
seeing X. Same data and timing phases as `cargo run --release --example secure_dot_product`.

    python python/examples/secure_matmul.py [--runs 5] [--group modp2048]
"""

import argparse
import os
import statistics
import time

import numpy as np

import cryptonn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (as the Rust example)")
    parser.add_argument("--group", default="ristretto255", choices=["ristretto255", "modp2048", "modp3072"])
    args = parser.parse_args()

    rng = np.random.default_rng(2019)
    x = rng.integers(1, 101, size=(100, 10), dtype=np.int64)
    y = rng.integers(1, 101, size=(10, 100), dtype=np.int64)
    print(f"cryptonn {cryptonn.__version__}, group {args.group}, load average {os.getloadavg()}")

    # 100 keys of length 10 span the space, so the server could recover X: the paper's setting
    # needs the permissive policy (the default would refuse the 6th independent key).
    authority = cryptonn.Authority(group=args.group)
    domain = authority.create_domain(n=10, x_bound=100, y_bound=100, policy="permissive")
    client = cryptonn.Client(authority.public_key(domain))
    server = cryptonn.Server(authority, requester="server", dlog_half_width=1 << 17)

    xt = np.ascontiguousarray(x.T)
    yt = np.ascontiguousarray(y.T)
    timings = []
    for run in range(args.warmup + args.runs):
        t0 = time.perf_counter()
        enc = client.encrypt(xt)
        t1 = time.perf_counter()
        z = server.secure_matmul(yt, enc)  # keys + decryption
        t2 = time.perf_counter()
        assert (z.T == x @ y).all(), "secure product differs from X·Y"
        if run >= args.warmup:
            timings.append((t1 - t0, t2 - t1))
    enc_s = statistics.median(t[0] for t in timings)
    mm_s = statistics.median(t[1] for t in timings)
    print(f"encrypt {enc_s:.4f} s | secure_matmul (keys + decrypt) {mm_s:.4f} s | "
          f"total {enc_s + mm_s:.4f} s  (medians of {args.runs})")
    print(f"{len(authority.audit())} function keys issued and audited")
    print("results checked equal to the plaintext product X·Y")


if __name__ == "__main__":
    main()
