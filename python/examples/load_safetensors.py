"""Open a model saved by cryptonn (``--save model.safetensors``) with the ``safetensors``
package and run its plaintext forward pass in numpy (and, if installed, in PyTorch).

    pip install safetensors numpy            # torch optional
    cargo run --release --example train_lenet -- --mode quantized --epochs 1 \\
        --train-size 2048 --save lenet.safetensors
    python python/examples/load_safetensors.py lenet.safetensors --data data --images 100

The file holds float32 tensors named ``layers.{i}.weight`` / ``layers.{i}.bias`` after the
declared layer ``i`` (a convolution's weight is ``[out, in, k, k]``, a dense layer's
``[out, in]``, as in PyTorch) and metadata: the model spec (JSON), the training config (seed,
fixed-point scales, optimiser), the dataset's public input encoding, the epoch and the weights'
SHA-256, which this script recomputes.

Two details matter to reproduce cryptonn's forward pass:

- inputs are normalised with the saved encoding (MNIST: ``(pixel - 33) / 80``), and the first
  convolution's padding holds the normalised black pixel, not 0;
- the classes are those of the data owner's label permutation: pass ``--labels FILE`` (the
  ``CNNPERM1`` file of ``train_lenet --labels``) to map predictions back to digits. Plain runs
  without a labels file draw the permutation from the seed; their predictions are printed in
  the trained label space.
"""

import argparse
import gzip
import hashlib
import json
import os
import sys

import numpy as np
from safetensors import safe_open


def load(path):
    """Tensors (numpy float32) and metadata of a saved model."""
    with safe_open(path, framework="np") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != "cryptonn.model":
        sys.exit(f"{path}: not a cryptonn model (format {meta.get('format')!r})")
    return tensors, meta


def parameter_names(spec):
    """``layers.{i}.weight`` and ``.bias`` of each linear / conv2d layer, in parameter order."""
    names = []
    for i, layer in enumerate(spec["layers"]):
        if layer["type"] in ("linear", "conv2d"):
            names += [f"layers.{i}.weight", f"layers.{i}.bias"]
    return names


def weights_sha256(tensors, spec):
    """SHA-256 of the parameters as float32 little-endian bytes in parameter order."""
    h = hashlib.sha256()
    for name in parameter_names(spec):
        h.update(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())
    return h.hexdigest()


def normalise(raw, encoding):
    """The saved public input encoding applied to raw samples ``[n, features]``."""
    if "uniform" in encoding:
        u = encoding["uniform"]
        x = (raw.astype(np.float32) - np.float32(u["offset"])) / np.float32(u["divisor"])
        pad = (np.float32(0) - np.float32(u["offset"])) / np.float32(u["divisor"])
        return x.astype(np.float32), float(pad)
    s = encoding["standardized"]
    z = (raw.astype(np.float64) - np.array(s["mean"])) / np.array(s["std"])
    return z.astype(np.float32), 0.0


def conv2d(x, w, b, stride=1, padding=0, pad_value=0.0):
    """``[n, C, H, W] * [F, C, k, k]`` by im2col."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                   constant_values=pad_value)
    n, c, h, wd = x.shape
    f, _, k, _ = w.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    cols = np.empty((n, c, k, k, oh, ow), dtype=np.float32)
    for a in range(k):
        for bb in range(k):
            cols[:, :, a, bb] = x[:, :, a:a + stride * oh:stride, bb:bb + stride * ow:stride]
    cols = cols.reshape(n, c * k * k, oh * ow)
    y = np.einsum("fq,nqp->nfp", w.reshape(f, -1), cols) + b[None, :, None]
    return y.reshape(n, f, oh, ow).astype(np.float32)


def pool2d(x, kernel, stride, op):
    n, c, h, w = x.shape
    oh, ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    win = np.stack([x[:, :, a:a + stride * oh:stride, b:b + stride * ow:stride]
                    for a in range(kernel) for b in range(kernel)])
    return win.mean(axis=0) if op == "avg" else win.max(axis=0)


def forward(tensors, spec, x, pad_value):
    """Softmax probabilities of the model on normalised inputs ``x`` (``[n, C, H, W]`` or
    ``[n, features]``)."""
    for i, layer in enumerate(spec["layers"]):
        t = layer["type"]
        if t == "linear":
            x = x.reshape(x.shape[0], -1) @ tensors[f"layers.{i}.weight"].T \
                + tensors[f"layers.{i}.bias"]
        elif t == "conv2d":
            # Only the first layer reads the input, padded with the encoding's padding value.
            x = conv2d(x, tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"],
                       layer.get("stride", 1), layer.get("padding", 0),
                       pad_value if i == 0 else 0.0)
        elif t == "avg_pool2d":
            x = pool2d(x, layer["kernel"], layer["stride"], "avg")
        elif t == "max_pool2d":
            x = pool2d(x, layer["kernel"], layer["stride"], "max")
        elif t == "relu":
            x = np.maximum(x, 0)
        elif t == "tanh":
            x = np.tanh(x)
        elif t == "sigmoid":
            x = 1 / (1 + np.exp(-x))
        elif t == "flatten":
            x = x.reshape(x.shape[0], -1)
        else:
            raise ValueError(f"layer {i}: unknown type {t}")
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def torch_forward(tensors, spec, x, pad_value):
    """The same forward pass in PyTorch (``torch.nn.functional``), if it is installed."""
    import torch
    import torch.nn.functional as F

    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
    x = torch.from_numpy(x)
    for i, layer in enumerate(spec["layers"]):
        kind = layer["type"]
        if kind == "linear":
            x = F.linear(x.flatten(1), t[f"layers.{i}.weight"], t[f"layers.{i}.bias"])
        elif kind == "conv2d":
            p = layer.get("padding", 0)
            if p:
                x = F.pad(x, (p, p, p, p), value=pad_value if i == 0 else 0.0)
            x = F.conv2d(x, t[f"layers.{i}.weight"], t[f"layers.{i}.bias"],
                         stride=layer.get("stride", 1))
        elif kind == "avg_pool2d":
            x = F.avg_pool2d(x, layer["kernel"], layer["stride"])
        elif kind == "max_pool2d":
            x = F.max_pool2d(x, layer["kernel"], layer["stride"])
        elif kind == "relu":
            x = F.relu(x)
        elif kind == "tanh":
            x = torch.tanh(x)
        elif kind == "sigmoid":
            x = torch.sigmoid(x)
        elif kind == "flatten":
            x = x.flatten(1)
    return torch.softmax(x, dim=1).numpy()


def mnist_test(data_dir, n):
    with gzip.open(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return images[:n], labels[:n]


def read_permutation(path):
    fields = open(path).read().split()
    if fields[0] != "CNNPERM1":
        sys.exit(f"{path}: not a label permutation file")
    return np.array([int(v) for v in fields[2:]])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="the .safetensors file written by --save")
    ap.add_argument("--data", default="data", help="directory of the MNIST IDX files")
    ap.add_argument("--images", type=int, default=100, help="MNIST test images to classify")
    ap.add_argument("--labels", help="the data owner's label permutation file (CNNPERM1)")
    args = ap.parse_args()

    tensors, meta = load(args.model)
    spec = json.loads(meta["model_spec"])
    dataset = json.loads(meta["dataset"])
    print(f"model {spec['name']}: input {spec['input']}, {spec['classes']} classes, "
          f"epoch {meta['epoch']}, seed {meta['seed']}")
    print(f"fixed-point scales {meta['fixed_point']}")
    for name in sorted(tensors):
        print(f"  {name} {list(tensors[name].shape)} {tensors[name].dtype}")
    sha = weights_sha256(tensors, spec)
    if sha != meta["weights_sha256"]:
        sys.exit(f"weights SHA-256 mismatch: file says {meta['weights_sha256']}, computed {sha}")
    print(f"weights sha256 {sha} (verified)")

    if dataset["name"] != "mnist":
        print(f"trained on {dataset['name']}: this script classifies MNIST only; "
              "use forward() with your own samples")
        return
    images, labels = mnist_test(args.data, args.images)
    x, pad = normalise(images.reshape(len(images), -1), dataset["encoding"])
    x = x.reshape(images.shape)
    probs = forward(tensors, spec, x, pad)
    classes = probs.argmax(axis=1)
    print(f"numpy: classes of the first {len(classes)} test images (trained label space): "
          f"{classes[:20].tolist()}{' ...' if len(classes) > 20 else ''}")
    if args.labels:
        forward_perm = read_permutation(args.labels)
        inverse = np.argsort(forward_perm)
        acc = float((inverse[classes] == labels).mean())
        print(f"numpy: accuracy {100 * acc:.2f} % on {len(labels)} test images")
    try:
        probs_t = torch_forward(tensors, spec, x, pad)
        print(f"torch: max |p_torch - p_numpy| = {np.abs(probs_t - probs).max():.2e}, "
              f"same classes: {bool((probs_t.argmax(axis=1) == classes).all())}")
    except ImportError:
        print("torch: not installed (the numpy forward pass above needs only numpy)")


if __name__ == "__main__":
    main()
