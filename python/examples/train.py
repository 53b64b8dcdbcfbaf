"""Train a declared model on a dataset from Python: the same run as `examples/train.rs`, the same JSON summary.

    python python/examples/train.py                          # LeNet-5, MNIST, secure, 2,048 images: minutes
    python python/examples/train.py --mode quantized --train-size 4096 --epochs 1
    python python/examples/train.py --model mlp --dataset breast-cancer --mode secure
    python python/examples/train.py --model examples/models/clinic-mlp.toml --dataset breast-cancer
    python python/examples/train.py --model cnn-small --dataset digits --mode plain --json run.json

Progress shows as tqdm bars if tqdm is installed, else as one line per epoch.
"""

import argparse
import json

import cryptonn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet5", help="lenet5, mlp, cnn-small or a model file")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "breast-cancer", "digits"])
    parser.add_argument("--mode", default="secure", choices=["plain", "quantized", "secure"])
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--group", default="ristretto255")
    parser.add_argument("--json", default=None, help="write the summary here")
    args = parser.parse_args()

    try:
        import tqdm  # noqa: F401

        progress = None  # tqdm bars
    except ImportError:

        def progress(event):
            if event["event"] == "epoch_finished":
                stats = json.loads(event["stats_json"])
                print("epoch finished:", stats)

    options = {"test_size": args.test_size, "seed": args.seed}
    if args.mode == "secure":
        options["group"] = args.group
    summary = cryptonn.train(
        model=args.model,
        dataset=args.dataset,
        mode=args.mode,
        train_size=args.train_size,
        epochs=args.epochs,
        progress=progress,
        **options,
    )
    print(f"weights sha256 {summary['weights_sha256']}")
    accuracy = summary["test_accuracy"][-1] if summary["test_accuracy"] else float("nan")
    print(f"{summary['model']} on {summary['dataset']}: final test accuracy {100 * accuracy:.2f} % "
          f"({summary['mode']}, {summary['epochs']} epochs, {summary['train_size']} training examples, "
          f"{summary['images_per_second']:.0f} img/s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
