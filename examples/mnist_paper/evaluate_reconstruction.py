"""Reconstruction figures of a PDAEPipeline on bundled MNIST test digits, and nothing else.

    python examples/mnist_paper/evaluate_reconstruction.py --num_digits 256 --steps 100   # bundled pdae-mnist

Prints MSE, PSNR and SSIM (mean and standard error over digits) of each kind of reconstruction: PDAE with inferred
x_T, PDAE from random x_T (z only), plain DDIM inversion of the DPM without z, and the DPM alone from the same random
x_T. The digits are a class-balanced subset of the test split (the same one `evaluate_pdae.py` uses for the
same count and seed). 256 digits at 100 steps take about 22 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json

import torch

import diffusers_pdae  # noqa: F401  (registers the PDAE models with diffusers)
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_arrays, load_mnist_tensors
from diffusers_pdae.evaluation import format_reconstruction_table, reconstruction_study, stratified_indices


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pipeline",
        default=checkpoint_path("pdae-mnist"),
        help="A PDAEPipeline folder (default: bundled pdae-mnist).",
    )
    parser.add_argument("--num_digits", type=int, default=256, help="Test digits, class-balanced.")
    parser.add_argument("--steps", type=int, nargs="+", default=[100], help="Numbers of DDIM steps T.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the digit subset and of the random x_T.")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    return parser.parse_args(argv)


def balanced_test_digits(num_digits: int, seed: int, size: int = 32) -> torch.Tensor:
    """A class-balanced subset of the bundled test split, `(num_digits, 1, size, size)` in [-1, 1] (28x28 digits
    padded, or resized for a UNet smaller than 28 px)."""
    _, labels = load_mnist_arrays("test")
    return load_mnist_tensors("test", stratified_indices(labels, num_digits, seed=seed), size)[0]


def main(argv=None) -> dict:
    args = parse_args(argv)
    pipeline = PDAEPipeline.from_pretrained(args.pipeline)
    pipeline.set_progress_bar_config(disable=True)
    digits = balanced_test_digits(args.num_digits, args.seed, pipeline.unet.config.sample_size)
    figures, _ = reconstruction_study(pipeline, digits, args.steps, seed=args.seed, batch_size=args.batch_size)
    print(f"{args.num_digits} test digits, {args.pipeline}")
    print(format_reconstruction_table(figures))
    if args.json is not None:
        with open(args.json, "w") as f:
            json.dump({"pipeline": args.pipeline, "num_digits": args.num_digits, "figures": figures}, f, indent=1)
    return figures


if __name__ == "__main__":
    main()
