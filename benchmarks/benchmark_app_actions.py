"""What each action of the interactive demo (examples/app.py) costs: the seconds a person waits after a click.

    python benchmarks/benchmark_app_actions.py --num_inference_steps 50 --repeats 2

Times `PDAEPlayground`'s actions on the bundled pipeline (or --pipeline), on test digits of different classes:
fitting the two stroke directions at start-up, a reconstruction (encode, invert, decode twice), an edit of the same
picture (its inversion cached: one decoding), an interpolation strip, a grid of samples. Prints a table (median and
range over the repeats, each on a new picture) and writes JSON if asked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import PIL.Image
import torch

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_arrays, load_mnist_tensors
from diffusers_pdae.evaluation import stratified_indices
from diffusers_pdae.interactive import PDAEPlayground, fit_stroke_directions


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=checkpoint_path("pdae-mnist"), help="A one-channel PDAEPipeline.")
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--num_reference_images", type=int, default=2000)
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--num_samples", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="Timed calls per action, each on another picture.")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's).")
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


def seconds(action, *inputs, **options) -> float:
    start = time.perf_counter()
    action(*inputs, **options)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipeline = PDAEPipeline.from_pretrained(args.pipeline)
    pipeline.set_progress_bar_config(disable=True)
    _, train_labels = load_mnist_arrays("train")
    references, _ = load_mnist_tensors("train", stratified_indices(train_labels, args.num_reference_images))
    start = time.perf_counter()
    playground = PDAEPlayground(pipeline, args.num_inference_steps, fit_stroke_directions(pipeline, references))
    times = {"directions": [time.perf_counter() - start]}
    images, labels = load_mnist_arrays("test")
    pictures = [PIL.Image.fromarray(images[i]) for i in stratified_indices(labels, 2 * args.repeats)]
    for repeat in range(args.repeats):
        picture, other = pictures[2 * repeat], pictures[2 * repeat + 1]
        measured = {
            "reconstruct": seconds(playground.reconstruct, picture, seed=repeat),
            "edit (inversion cached)": seconds(playground.edit, picture, {"thickness": 1.0}),
            f"interpolate ({args.num_frames} frames)": seconds(
                playground.interpolate, picture, other, num=args.num_frames
            ),
            f"sample ({args.num_samples})": seconds(playground.sample, args.num_samples, seed=repeat),
        }
        for name, value in measured.items():
            times.setdefault(name, []).append(value)
    print(f"{args.num_inference_steps} DDIM steps, {torch.get_num_threads()} threads, {args.repeats} repeats")
    print(f"{'action':<28} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, values in times.items():
        print(f"{name:<28} {statistics.median(values):>9.2f} {min(values):>7.2f} {max(values):>7.2f}")
    results = {"num_inference_steps": args.num_inference_steps, "threads": torch.get_num_threads(), "seconds": times}
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)
    return results


if __name__ == "__main__":
    main()
