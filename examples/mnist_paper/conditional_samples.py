"""Samples of a conditional latent DPM on MNIST, one row per digit (its caption for a StableDiffusionPipeline, its
label for a DiTPipeline, with classifier-free guidance) and a last row from the condition PDAE asks it with: the
empty prompt, or the null class, unguided. That row shows whether the unconditional branch is a real model of digits.

    python examples/mnist_paper/conditional_samples.py --pipeline diffusers_pdae/bundled/sd-mnist \\
        --out docs/images/sd-mnist-samples.png
"""

from __future__ import annotations

import argparse

import torch
from diffusers import DiffusionPipeline, DiTPipeline

from diffusers_pdae.image_utils import labelled_rows
from diffusers_pdae.training.text_conditioning import DIGIT_NAMES, digit_caption


@torch.no_grad()
def sample_row(pipe: DiffusionPipeline, digit: int | None, count: int, steps: int, guidance: float, seed: int):
    """`(count, C, H, W)` samples in [0, 1] of one digit (None: the unconditional branch, unguided)."""
    generator = torch.Generator().manual_seed(seed)
    options = {"num_inference_steps": steps, "generator": generator, "output_type": "pt"}
    if isinstance(pipe, DiTPipeline):
        if digit is None:  # DiTPipeline has no unconditional call: guidance 1 with the null class as the label
            return pipe([pipe.transformer.config.num_embeds_ada_norm] * count, guidance_scale=1.0, **options).images
        return pipe([digit] * count, guidance_scale=guidance, **options).images
    prompt = "" if digit is None else digit_caption(digit)
    scale = 1.0 if digit is None else guidance
    return pipe(prompt, num_images_per_prompt=count, guidance_scale=scale, **options).images


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="A StableDiffusionPipeline or DiTPipeline folder.")
    parser.add_argument("--count", type=int, default=8, help="Samples per row.")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps.")
    parser.add_argument("--guidance_scale", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="Where to write the PNG.")
    args = parser.parse_args(argv)
    pipe = DiffusionPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    unconditional = "null class" if isinstance(pipe, DiTPipeline) else "empty prompt"
    rows = [
        (name, sample_row(pipe, digit, args.count, args.steps, args.guidance_scale, args.seed))
        for digit, name in [*enumerate(DIGIT_NAMES), (None, unconditional)]
    ]
    labelled_rows(rows).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
