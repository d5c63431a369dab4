"""How well a PDAEPipeline autoencodes your images, and (with labels) how linearly its codes separate them.

    python examples/evaluate_reconstruction.py --pipeline pdae-run --train_data_dir my_images --steps 20 50
    python examples/evaluate_reconstruction.py --pipeline you/pdae-cifar10 --dataset_name cifar10 --split test \
        --image_column img --label_column label
    python examples/evaluate_reconstruction.py          # the bundled pipeline on bundled MNIST test digits

Data flags are those of the training scripts. Prints MSE, PSNR and SSIM (mean and standard error over images) of
each kind of reconstruction: inferred x_T, random x_T (z only), plain DDIM inversion of the DPM without z, and the DPM
alone. With `--label_column` (or on the bundled digits) also the test accuracy of a linear probe on the codes (fit on
80% of the probe images, scored on the other 20%).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import diffusers_pdae  # noqa: F401  (registers the PDAE classes with diffusers)
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_tensors
from diffusers_pdae.data import ImageFileDataset, load_image_dataset
from diffusers_pdae.evaluation import format_reconstruction_table, linear_probe, reconstruction_study
from diffusers_pdae.figures import check_finite_figures
from diffusers_pdae.training import check_path_flags, make_parser, positive_int


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--pipeline", default=checkpoint_path("pdae-mnist"), help="A PDAEPipeline folder or Hub id (default: bundled)."
    )
    parser.add_argument("--dataset_name", default=None, help="A dataset on the Hub (or a local dataset).")
    parser.add_argument("--dataset_config_name", default=None, help="The dataset's config name.")
    parser.add_argument("--train_data_dir", default=None, help="A folder of images (loaded as `imagefolder`).")
    parser.add_argument("--split", default="train", help="The dataset split to evaluate on.")
    parser.add_argument("--image_column", default="image", help="The dataset column holding the images.")
    parser.add_argument("--label_column", default=None, help="A column of class labels: adds a linear probe on z.")
    parser.add_argument("--cache_dir", default=None, help="Where to cache downloaded datasets.")
    parser.add_argument("--num_images", type=positive_int, default=64, help="Images reconstructed (evenly spaced).")
    parser.add_argument("--num_probe_images", type=positive_int, default=1000, help="Images encoded for the probe.")
    parser.add_argument("--steps", type=positive_int, nargs="+", default=[20], help="Numbers of DDIM steps T.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random x_T and of the probe's split.")
    parser.add_argument("--batch_size", type=positive_int, default=64, help="Images per network call.")
    parser.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    return parser


def load_images(args, pipeline: PDAEPipeline) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The evaluation images as the pipeline's inputs `(N, C, H, W)` and their labels `(N,)` (or None)."""
    channels, size, _ = pipeline.image_shape  # the pixel images (of a latent pipeline too)
    if args.dataset_name is None and args.train_data_dir is None:
        return load_mnist_tensors("test", size=size)
    raw = load_image_dataset(
        args.dataset_name, args.dataset_config_name, args.train_data_dir, args.cache_dir, args.split
    )
    dataset = ImageFileDataset(raw, args.image_column, channels, size, label_column=args.label_column)
    count = min(len(dataset), max(args.num_images, args.num_probe_images if args.label_column else 0))
    items = [dataset[int(i)] for i in np.linspace(0, len(dataset) - 1, count).astype(int)]
    images = torch.stack([item["pixel_values"] for item in items])
    labels = torch.stack([item["class_labels"] for item in items]) if args.label_column else None
    return images, labels


def probe(pipeline: PDAEPipeline, images: torch.Tensor, labels: torch.Tensor, seed: int, batch_size: int) -> dict:
    """Linear-probe accuracy of the codes: every fifth image (after a seeded shuffle) is the test set."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    codes = torch.cat(
        [pipeline.encode(images[order[i : i + batch_size]]).cpu() for i in range(0, len(order), batch_size)]
    )
    labels = labels[order]
    test = torch.arange(len(order)) % 5 == 0
    result = linear_probe(codes[~test], labels[~test], codes[test], labels[test], seed=seed)
    return result.as_dict()


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    check_path_flags(args)
    pipeline = PDAEPipeline.from_pretrained(args.pipeline)
    pipeline.set_progress_bar_config(disable=True)
    images, labels = load_images(args, pipeline)
    chosen = np.linspace(0, len(images) - 1, min(args.num_images, len(images))).astype(int)
    figures, _ = reconstruction_study(pipeline, images[chosen], args.steps, seed=args.seed, batch_size=args.batch_size)
    print(f"{len(chosen)} images, {args.pipeline}")
    print(format_reconstruction_table(figures))
    results = {"pipeline": args.pipeline, "num_images": len(chosen), "figures": figures}
    if labels is not None:  # a --label_column, or the bundled digits' labels
        probe_images = np.linspace(0, len(images) - 1, min(args.num_probe_images, len(images))).astype(int)
        results["probe"] = probe(pipeline, images[probe_images], labels[probe_images], args.seed, args.batch_size)
        check_finite_figures(results["probe"], "The linear probe's figures", "The codes are not finite.")
        print(
            f"linear probe on z ({results['probe']['width']}-d, {results['probe']['num_train']} train / "
            f"{results['probe']['num_test']} test images): {100 * results['probe']['test_accuracy']:.2f}%"
        )
    if args.json is not None:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
