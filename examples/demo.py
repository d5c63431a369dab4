"""PDAE on the bundled MNIST checkpoint: autoencode test digits, compare with plain DDIM inversion, interpolate.

    python examples/demo.py                       # uses the bundled pdae-mnist, writes outputs/
    python examples/demo.py --train_minutes 3     # first trains a fresh PDAE on the bundled DPM for 3 minutes

Writes to --output_dir:
  reconstructions.png  rows: originals | inferred x_T | z alone (random x_T) | plain DDIM inversion of the DPM (no z)
  interpolation.png    slerp on x_T and lerp on z between two test digits
and prints MSE / PSNR / SSIM of each kind of reconstruction.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import diffusers_pdae  # noqa: F401  (registers the PDAE classes with diffusers)
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_arrays, load_mnist_tensors
from diffusers_pdae.evaluation import mse, psnr, ssim
from diffusers_pdae.image_utils import labelled_rows

TRAIN_PDAE = Path(__file__).resolve().parent / "train_pdae.py"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pipeline", default=checkpoint_path("pdae-mnist"), help="A PDAEPipeline folder or Hub id (default: bundled)."
    )
    parser.add_argument("--output_dir", default="outputs")
    parser.add_argument("--num_digits", type=int, default=16, help="Test digits to autoencode.")
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train_minutes",
        type=float,
        default=None,
        help="First train a fresh PDAE on the bundled DPM for this long (CPU) and demo that one instead.",
    )
    return parser.parse_args(argv)


def train_fresh_pipeline(minutes: float, output_dir: str) -> str:
    """Run examples/train_pdae.py on the bundled DPM for `minutes` and return the saved pipeline folder."""
    folder = os.path.join(output_dir, "pdae-fresh")
    subprocess.run(
        [
            sys.executable, str(TRAIN_PDAE), "--output_dir", folder,
            "--max_train_steps", "1000000", "--max_train_minutes", str(minutes), "--train_batch_size", "32",
            "--warm_start_from_unet", "--lr_warmup_steps", "50", "--checkpointing_steps", "1000000",
            "--save_images_epochs", "1000000", "--validation_inference_steps", "10", "--overwrite_output_dir",
        ],
        check=True,
    )  # fmt: skip
    return folder


def spread_test_digits(count: int) -> torch.Tensor:
    """`count` test digits evenly spread over the split (all classes), `(count, 1, 32, 32)` in [-1, 1]."""
    _, labels = load_mnist_arrays("test")
    return load_mnist_tensors("test", np.linspace(0, len(labels) - 1, count).astype(int))[0]


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    started = time.perf_counter()
    path = train_fresh_pipeline(args.train_minutes, args.output_dir) if args.train_minutes else args.pipeline
    pipeline = PDAEPipeline.from_pretrained(path)
    steps = args.num_inference_steps

    digits = spread_test_digits(args.num_digits)
    originals = digits / 2 + 0.5
    generator = torch.Generator().manual_seed(args.seed)
    print(f"Autoencoding {len(digits)} test digits with {steps} DDIM steps ...")
    reconstructions = {
        "inferred x_T": pipeline.reconstruct(digits, steps, output_type="pt").images,
        "z only (random x_T)": pipeline.reconstruct(
            digits, steps, invert=False, generator=generator, output_type="pt"
        ).images,
    }
    print("Plain DDIM inversion of the pre-trained DPM, without z ...")
    x_T = pipeline.invert(digits, num_inference_steps=steps, apply_shift=False)
    reconstructions["DDIM inversion, no z"] = pipeline.decode(x_T, None, steps, output_type="pt").images

    grid = labelled_rows([("original", originals), *reconstructions.items()])
    grid.save(os.path.join(args.output_dir, "reconstructions.png"))

    print("Interpolating between two test digits ...")
    frames = pipeline.interpolate(digits[0], digits[-1], num=8, num_inference_steps=steps, output_type="pt").images
    labelled_rows([("interpolation", frames)]).save(os.path.join(args.output_dir, "interpolation.png"))

    figures = {}
    print(f"\n{'reconstruction':<22}{'MSE':>10}{'PSNR (dB)':>11}{'SSIM':>8}")
    for name, images in reconstructions.items():
        figures[name] = {
            "mse": mse(images, originals).mean().item(),
            "psnr": psnr(images, originals).mean().item(),
            "ssim": ssim(images, originals).mean().item(),
        }
        print(f"{name:<22}{figures[name]['mse']:>10.5f}{figures[name]['psnr']:>11.2f}{figures[name]['ssim']:>8.3f}")
    with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
        json.dump({"pipeline": path, "num_digits": len(digits), "num_inference_steps": steps, **figures}, f, indent=2)
    print(
        f"\nWrote {args.output_dir}/reconstructions.png, interpolation.png and metrics.json "
        f"in {time.perf_counter() - started:.0f} s."
    )


if __name__ == "__main__":
    main()
