"""Judge unconditional generation and label-free editing of a PDAE MNIST pipeline with a latent sampler.

    python examples/mnist_paper/evaluate_generation.py     # the bundled pdae-mnist -> docs/results/generation
    python examples/mnist_paper/evaluate_generation.py --num_samples 200 --num_edited 20 --out /tmp/gen   # minutes

Prints and writes (README.md, results.json, PNG grids in --out):
1. classifier FD (bundled digit classifier's features; not FID) against the test split of `--num_samples` PDAE samples
   (codes from the latent sampler, random x_T), of as many samples of the pre-trained DPM alone (same x_T, same
   steps), and of as many train digits (the floor sampling noise alone gives);
2. the class histogram of both sets of samples, as the classifier labels them;
3. for stroke thickness (ink mass) and slant (second image moment), directions fit on the codes of the most vs the
   least marked quarter of the train digits, no labels: the measured attribute of edited test digits against the
   scale, the share whose attribute rises monotonically with it, and the share that keep their label; and for one
   class pair, the share of edited digits the classifier moves to the target class.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from classifier_scores import classifier_frechet_distance, classifier_statistics, classify
from digit_classifier import load_digit_classifier

import diffusers_pdae  # noqa: F401  (registers the PDAE classes with diffusers)
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_tensors
from diffusers_pdae.evaluation import stratified_indices
from diffusers_pdae.evaluation.attributes import STROKE_ATTRIBUTES, extreme_groups
from diffusers_pdae.image_utils import labelled_rows
from diffusers_pdae.training import make_parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--pipeline", default=checkpoint_path("pdae-mnist"), help="A PDAEPipeline with a latent sampler."
    )
    parser.add_argument("--out", default="docs/results/generation", help="Where README.md, JSON and PNGs go.")
    parser.add_argument(
        "--num_samples", type=int, default=2000, help="Samples of PDAE and of the DPM (FD, histogram)."
    )
    parser.add_argument("--num_inference_steps", type=int, default=20, help="DDIM steps of every decoding.")
    parser.add_argument("--code_num_inference_steps", type=int, default=50, help="Steps of the latent sampler.")
    parser.add_argument(
        "--num_edited", type=int, default=100, help="Test digits edited per direction (class-balanced)."
    )
    parser.add_argument(
        "--multiples", type=float, nargs="+", default=[-1.0, -0.5, 0.0, 0.5, 1.0], help="Edit scales, in separations."
    )
    parser.add_argument("--class_pair", type=int, nargs=2, default=[3, 8], help="Edit digits of A towards B.")
    parser.add_argument(
        "--class_multiples", type=float, nargs="+", default=[0.0, 2.0, 4.0, 6.0, 8.0], help="Scales of the pair."
    )
    parser.add_argument("--batch_size", type=int, default=250, help="Images per pipeline call.")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def in_batches(function, count: int, batch_size: int) -> torch.Tensor:
    """`torch.cat([function(start, stop) for each batch])` over `range(count)`."""
    return torch.cat([function(start, min(start + batch_size, count)) for start in range(0, count, batch_size)])


def draw_samples(pipeline: PDAEPipeline, args) -> tuple[torch.Tensor, torch.Tensor]:
    """`(PDAE samples, DPM samples)`, each `(N, 1, H, W)` in [-1, 1], decoded from the same seeded x_T."""
    generator = torch.Generator().manual_seed(args.seed)
    codes = in_batches(
        lambda start, stop: pipeline.sample_codes(stop - start, args.code_num_inference_steps, generator),
        args.num_samples,
        args.batch_size,
    )
    latents = torch.randn((args.num_samples, *pipeline.sample_shape), generator=generator)

    def decode(z: torch.Tensor | None):
        def batch(start: int, stop: int) -> torch.Tensor:
            z_part = None if z is None else z[start:stop]
            images = pipeline.decode(latents[start:stop], z_part, args.num_inference_steps, output_type="pt")
            return from_unit(images.images.float().cpu())

        return in_batches(batch, args.num_samples, args.batch_size).clamp(-1, 1)

    return decode(codes), decode(None)


def histogram(labels: torch.Tensor) -> list[float]:
    return (torch.bincount(labels, minlength=10).float() / len(labels)).tolist()


def evaluate_samples(pipeline: PDAEPipeline, classifier, args, out: Path) -> dict:
    pdae, dpm = draw_samples(pipeline, args)
    test_images, _ = load_mnist_tensors("test")
    train_images, train_labels = load_mnist_tensors("train")
    floor = train_images[stratified_indices(train_labels, min(args.num_samples, len(train_images)), args.seed)]
    reference = classifier_statistics(classifier, test_images)
    labelled_rows([("PDAE", to_unit(pdae[:16])), ("DPM alone", to_unit(dpm[:16]))]).save(out / "samples.png")
    pdae_histogram = histogram(classify(classifier, pdae).argmax(dim=1))
    return {
        "num_samples": args.num_samples,
        "num_reference": len(test_images),
        "classifier_fd": {
            "PDAE samples (sampled z, random x_T)": classifier_frechet_distance(classifier, pdae, reference),
            "DPM samples (same x_T, no z)": classifier_frechet_distance(classifier, dpm, reference),
            "train digits (floor)": classifier_frechet_distance(classifier, floor, reference),
        },
        "class_histogram": {
            "PDAE samples": pdae_histogram,
            "DPM samples": histogram(classify(classifier, dpm).argmax(dim=1)),
        },
        "all_digits_present": min(pdae_histogram) > 0,
        "smallest_class_share": min(pdae_histogram),
        "grid": "samples.png",
    }


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 2 + 0.5).clamp(0, 1)


def from_unit(images: torch.Tensor) -> torch.Tensor:
    """Pixel images in [0, 1] (`output_type="pt"`, whatever space the DPM works in) -> [-1, 1]."""
    return images * 2 - 1


def edit(pipeline: PDAEPipeline, images: torch.Tensor, direction, multiples: list[float], args) -> torch.Tensor:
    """Edited images `(N, len(multiples), 1, H, W)` in [-1, 1]."""
    scales = direction.scales(multiples)
    edited = in_batches(
        lambda start, stop: pipeline.manipulate(
            images[start:stop], direction.direction, scales, args.num_inference_steps, output_type="pt"
        ).images.cpu(),
        len(images),
        max(args.batch_size // len(multiples), 1),
    )
    return from_unit(edited).reshape(len(images), len(multiples), *images.shape[1:])


def evaluate_attribute(pipeline, classifier, name: str, train_images, test_images, test_labels, args, out) -> dict:
    measure = STROKE_ATTRIBUTES[name]
    high, low = extreme_groups(measure(train_images))
    direction = pipeline.attribute_direction(train_images[high], train_images[low])
    edited = edit(pipeline, test_images, direction, args.multiples, args)
    values = measure(edited.flatten(0, 1)).reshape(len(test_images), len(args.multiples))
    order = np.argsort(args.multiples)
    monotonic = (np.diff(values[:, order], axis=1) > 0).all(axis=1)
    labels = classify(classifier, edited.flatten(0, 1)).argmax(dim=1).reshape(len(test_images), -1)
    kept = (labels == test_labels[:, None]).float().mean(dim=0).tolist()
    smallest = min(abs(m) for m in args.multiples if m != 0)
    kept_smallest = min(k for m, k in zip(args.multiples, kept, strict=True) if abs(m) == smallest)
    save_edit_grid(edited, test_labels, args.multiples, out / f"{name}.png", name)
    return {
        "direction_train_accuracy": direction.train_accuracy,
        "separation": direction.separation,
        "multiples": args.multiples,
        "mean_attribute_by_scale": values.mean(axis=0).tolist(),
        "monotonic_share": float(monotonic.mean()),
        "label_kept_by_scale": kept,
        "label_kept_at_smallest_scale": kept_smallest,
        "grid": f"{name}.png",
    }


def evaluate_class_pair(pipeline, classifier, train_images, train_labels, test_images, test_labels, args, out) -> dict:
    source, target = args.class_pair
    direction = pipeline.attribute_direction(
        train_images[train_labels == target], train_images[train_labels == source]
    )
    digits = test_images[test_labels == source][: max(args.num_edited // 10, 2)]
    edited = edit(pipeline, digits, direction, args.class_multiples, args)
    labels = classify(classifier, edited.flatten(0, 1)).argmax(dim=1).reshape(len(digits), -1)
    name = f"{source}_to_{target}"
    save_edit_grid(edited, torch.full((len(digits),), source), args.class_multiples, out / f"{name}.png", name)
    return {
        "pair": [source, target],
        "num_edited": len(digits),
        "multiples": args.class_multiples,
        "share_classified_as_target": (labels == target).float().mean(dim=0).tolist(),
        "grid": f"{name}.png",
    }


def save_edit_grid(edited: torch.Tensor, labels: torch.Tensor, multiples, path: Path, name: str) -> None:
    """One row per digit (the first 8), columns from the most negative to the most positive scale."""
    order = np.argsort(multiples)
    rows = [(f"{name}: {int(labels[i])}", to_unit(edited[i, order])) for i in range(min(8, len(edited)))]
    labelled_rows(rows).save(path)


def targets(results: dict) -> list[tuple[str, str, bool]]:
    """The issue's targets as `(target, measured, met)`."""
    samples = results["samples"]
    fd = samples["classifier_fd"]
    pdae, dpm = fd["PDAE samples (sampled z, random x_T)"], fd["DPM samples (same x_T, no z)"]
    rows = [
        ("classifier FD of PDAE samples <= the DPM's own", f"{pdae:.2f} vs {dpm:.2f}", pdae <= dpm),
        (
            "all ten digits in the PDAE samples, none below 5%",
            f"smallest share {100 * samples['smallest_class_share']:.1f}%",
            samples["all_digits_present"] and samples["smallest_class_share"] >= 0.05,
        ),
    ]
    for name in STROKE_ATTRIBUTES:
        figures = results[name]
        rows.append(
            (f"{name} rises monotonically with the scale for >= 90% of edited digits",
             f"{100 * figures['monotonic_share']:.1f}%", figures["monotonic_share"] >= 0.9)
        )  # fmt: skip
        rows.append(
            (f"{name}: >= 90% keep their label at the smallest nonzero scale",
             f"{100 * figures['label_kept_at_smallest_scale']:.1f}%", figures["label_kept_at_smallest_scale"] >= 0.9)
        )  # fmt: skip
    return rows


def write_readme(results: dict, path: Path) -> None:
    samples = results["samples"]
    lines = [
        f"# Generation and editing ({results['pipeline']})",
        "",
        f"Command: `{results['command']}`. Every figure is in `results.json`.",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
        *[f"| {target} | {measured} | {'yes' if met else '**no**'} |" for target, measured, met in targets(results)],
        "",
        f"## Unconditional samples ({samples['num_samples']} each, T={results['num_inference_steps']})",
        "",
        f"Classifier FD against the {samples['num_reference']} test digits (lower is better; not FID):",
        "",
        "| images | classifier FD |",
        "| --- | --- |",
        *[f"| {name} | {value:.3f} |" for name, value in samples["classifier_fd"].items()],
        "",
        "Class histogram (share of samples per digit, as the classifier labels them):",
        "",
        "| samples | " + " | ".join(str(d) for d in range(10)) + " |",
        "| --- |" + " --- |" * 10,
        *[
            f"| {name} | " + " | ".join(f"{100 * v:.1f}%" for v in shares) + " |"
            for name, shares in samples["class_histogram"].items()
        ],
        "",
        "![samples](samples.png)",
        "",
        "## Label-free attribute directions",
        "",
        "Directions fit on the codes of the most vs the least marked quarter of the train digits (no labels); test "
        "digits edited from their own inverted x_T. In the grids each row is one digit, its columns run from the "
        "most negative to the most positive scale (in separations between the two quarters' mean codes). Label "
        "kept: the classifier's label of the edit equals the digit's true label.",
        "",
        "| attribute | scales | mean attribute by scale | rises monotonically | label kept by scale |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in STROKE_ATTRIBUTES:
        figures = results[name]
        lines.append(
            f"| {name} | {', '.join(f'{m:g}' for m in figures['multiples'])} | "
            f"{', '.join(f'{v:.3f}' for v in figures['mean_attribute_by_scale'])} | "
            f"{100 * figures['monotonic_share']:.1f}% | "
            f"{', '.join(f'{100 * v:.0f}%' for v in figures['label_kept_by_scale'])} |"
        )
    pair = results["class_pair"]
    lines += [
        "",
        *[f"![{name}]({results[name]['grid']})" for name in STROKE_ATTRIBUTES],
        "",
        f"Class pair {pair['pair'][0]} -> {pair['pair'][1]} ({pair['num_edited']} test digits): share classified as "
        f"{pair['pair'][1]} at scales {', '.join(f'{m:g}' for m in pair['multiples'])}: "
        f"{', '.join(f'{100 * v:.0f}%' for v in pair['share_classified_as_target'])}.",
        "",
        f"![class pair]({pair['grid']})",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    pipeline = PDAEPipeline.from_pretrained(args.pipeline)
    pipeline.set_progress_bar_config(disable=True)
    if pipeline.latent_sampler is None:
        raise ValueError(f"{args.pipeline} has no latent sampler; train one with examples/train_latent_sampler.py.")
    classifier = load_digit_classifier()
    train_images, train_labels = load_mnist_tensors("train")
    test_images, test_labels = load_mnist_tensors("test")
    edited = stratified_indices(test_labels, args.num_edited, args.seed + 1)
    results = {
        "command": shlex.join(
            ["python", "examples/mnist_paper/evaluate_generation.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "pipeline": "bundled pdae-mnist" if args.pipeline == checkpoint_path("pdae-mnist") else args.pipeline,
        "num_inference_steps": args.num_inference_steps,
        "samples": evaluate_samples(pipeline, classifier, args, out),
    }
    for name in STROKE_ATTRIBUTES:
        results[name] = evaluate_attribute(
            pipeline, classifier, name, train_images, test_images[edited], test_labels[edited], args, out
        )
    results["class_pair"] = evaluate_class_pair(
        pipeline, classifier, train_images, train_labels, test_images, test_labels, args, out
    )
    (out / "results.json").write_text(json.dumps(results, indent=1))
    write_readme(results, out / "README.md")
    print((out / "README.md").read_text())
    return results


if __name__ == "__main__":
    main()
