"""Judge a pre-trained MNIST DPM: do its samples look like digits to the bundled digit classifier?

    python examples/mnist_paper/evaluate_dpm.py --num_samples 1000 --grid docs/ddpm-mnist-samples.png  # bundled DPM

Draws `--num_samples` seeded samples with the pipeline's own scheduler (a `DDPMPipeline`'s DDPM steps; an
`LDMPipeline`'s DDIM steps, e.g. the bundled ldm-mnist), saves a grid of the first 64, and prints the
fraction that the classifier labels with confidence > 0.9, next to the same fraction for the real test digits.
Sampling 1000 images with 1000 steps takes seconds on a GPU and about an hour on 2 CPU cores; `--save_samples` and
`--load_samples` let the two halves run on different machines.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from classifier_scores import confident_fraction
from diffusers import DiffusionPipeline
from digit_classifier import load_digit_classifier

from diffusers_pdae.bundled import checkpoint_path, load_mnist_tensors, mnist_to_tensor
from diffusers_pdae.figures import check_finite_figures
from diffusers_pdae.image_utils import make_grid


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pipeline",
        default=checkpoint_path("ddpm-mnist"),
        help="A DDPMPipeline or LDMPipeline folder (default: bundled ddpm-mnist).",
    )
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--num_inference_steps", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--grid", default=None, help="Where to save a PNG grid of the first 64 samples.")
    parser.add_argument("--save_samples", default=None, help="Save the samples (uint8, .npz) here.")
    parser.add_argument("--load_samples", default=None, help="Classify samples saved earlier instead of sampling.")
    parser.add_argument("--skip_classifier", action="store_true", help="Only sample (e.g. on a machine without it).")
    parser.add_argument("--json", default=None, help="Write the figures to this JSON file.")
    return parser.parse_args(argv)


@torch.no_grad()
def draw_samples(pipeline_path: str, num_samples: int, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """`(N, 32, 32)` uint8 samples of the DDPM (or LDM) pipeline, reproducible from `seed`."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipeline = DiffusionPipeline.from_pretrained(pipeline_path).to(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    batches = []
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        images = pipeline(batch_size=count, generator=generator, num_inference_steps=steps, output_type="np").images
        batches.append((images[..., 0] * 255).round().astype(np.uint8))
    return np.concatenate(batches)


def main(argv=None):
    args = parse_args(argv)
    if args.load_samples:
        samples = np.load(args.load_samples)["samples"]
    else:
        samples = draw_samples(args.pipeline, args.num_samples, args.num_inference_steps, args.batch_size, args.seed)
    if args.save_samples:
        np.savez_compressed(args.save_samples, samples=samples)
    if args.grid:
        grid = make_grid(torch.from_numpy(samples[:64]).float()[:, None] / 255, nrow=8)
        grid.resize((grid.width * 3, grid.height * 3)).save(args.grid)
    if args.skip_classifier:
        return
    classifier = load_digit_classifier()
    test_images, _ = load_mnist_tensors("test")
    figures = {
        "num_samples": int(len(samples)),
        "threshold": args.threshold,
        "samples_confident_fraction": confident_fraction(classifier, mnist_to_tensor(samples), args.threshold),
        "real_test_confident_fraction": confident_fraction(classifier, test_images, args.threshold),
    }
    check_finite_figures(figures, "The DPM's figures", "Its samples are not finite: check the pipeline's weights.")
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
