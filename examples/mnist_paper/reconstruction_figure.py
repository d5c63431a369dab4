"""One picture of what a PDAE pipeline on MNIST does with ten test digits (one of each class): the autoencoder's own
reconstruction (the ceiling, for a latent pipeline), plain DDIM inversion of the frozen model, PDAE with the inferred
x_T, PDAE from z alone (random x_T), samples through the latent sampler, and edits along z.

    python examples/mnist_paper/reconstruction_figure.py --pipeline diffusers_pdae/bundled/pdae-sd-mnist \\
        --out docs/images/pdae-sd-mnist-reconstructions.png
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_arrays, load_mnist_tensors
from diffusers_pdae.image_utils import labelled_rows


def one_digit_of_each_class(size: int, seed: int) -> torch.Tensor:
    """`(10, 1, size, size)` test digits in [-1, 1], classes 0 to 9, each drawn from `seed`."""
    _, labels = load_mnist_arrays("test")
    rng = np.random.default_rng(seed)
    indices = [int(rng.choice(np.flatnonzero(labels == digit))) for digit in range(10)]
    return load_mnist_tensors("test", indices, size)[0]


@torch.no_grad()
def figure_rows(pipe: PDAEPipeline, digits: torch.Tensor, steps: int, seed: int) -> list[tuple[str, torch.Tensor]]:
    """The figure's rows, each `(10, C, H, W)` in [0, 1]."""
    rows = [("original", digits / 2 + 0.5)]
    pixels = pipe.prepare_images(digits)
    if pipe.vae is not None:
        rows.append(("autoencoder", pipe._output(pipe._to_latents(pixels), "pt", False)[0]))
    plain = pipe.invert(digits, num_inference_steps=steps, apply_shift=False)
    rows.append((f"DDIM inversion, T={steps}", pipe.decode(plain, None, steps, output_type="pt").images))
    rows.append((f"PDAE inferred x_T, T={steps}", pipe.reconstruct(digits, steps, output_type="pt").images))
    generator = torch.Generator().manual_seed(seed)
    z_only = pipe.reconstruct(digits, steps, invert=False, generator=generator, output_type="pt").images
    rows.append(("PDAE z only", z_only))
    if pipe.latent_sampler is not None:
        generator = torch.Generator().manual_seed(seed + 1)
        rows.append(("samples", pipe(batch_size=10, num_inference_steps=steps, generator=generator, output_type="pt")
                     .images))  # fmt: skip
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=checkpoint_path("pdae-ldm-mnist"), help="A PDAEPipeline folder.")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="Where to write the PNG.")
    args = parser.parse_args(argv)
    pipe = PDAEPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    digits = one_digit_of_each_class(pipe.image_shape[1], args.seed)
    labelled_rows(figure_rows(pipe, digits, args.steps, args.seed)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
