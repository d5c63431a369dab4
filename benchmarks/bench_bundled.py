"""Seconds per training step and per reconstruction of the bundled pixel PDAE (`pdae-mnist`) against the bundled
latent one (`pdae-ldm-mnist`, PDAE on the latent DPM `ldm-mnist`), on the same test digits and the same machine.

    python benchmarks/bench_bundled.py --threads 1            # this CPU; on a shared one read the CPU seconds
    python benchmarks/bench_bundled.py --pipelines pdae-mnist my-pdae-folder --json bundled.json

For each pipeline (a bundled name or a PDAEPipeline folder), with its own trained encoder and G:
  - `train step`: one `train_pdae.py` step on `--batch_size` digits: for a latent pipeline the frozen autoencoder
    encodes the pixels first (no gradient), as training without `--cache_latents` does, and `train step, cached`
    leaves that out (`--cache_latents`); then the frozen UNet's one pass, encoder (on the pixels) and G forward and
    backward, AdamW over encoder and G;
  - `reconstruct`: `pipe.reconstruct(digits, T)` of `--num_images` digits (encode, PDAE inversion, decode; for a
    latent pipeline also the autoencoder's encoding and decoding).
Time: the median of `--steps` calls after `--warmup` untimed ones, as wall-clock seconds and this process's CPU
seconds (`time.process_time`) over the same calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
from step_timing import training_step

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import BUNDLED_CHECKPOINTS, checkpoint_path, load_mnist_tensors
from diffusers_pdae.latent_space import encode_images
from diffusers_pdae.training.objective import pdae_training_loss


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", nargs="+", default=["pdae-mnist", "pdae-ldm-mnist"])
    parser.add_argument("--batch_size", type=int, default=64, help="Digits per training step.")
    parser.add_argument("--num_images", type=int, default=16, help="Digits per reconstruction.")
    parser.add_argument("--num_inference_steps", type=int, default=50, help="T of each reconstruction.")
    parser.add_argument("--steps", type=int, default=5, help="Timed training steps (median).")
    parser.add_argument("--reconstruct_runs", type=int, default=2, help="Timed reconstructions (median).")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads.")
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


def median_times(call: Callable[[], object], runs: int, warmup: int) -> dict[str, float]:
    """Median wall-clock and CPU seconds of `call()` over `runs` calls after `warmup` untimed ones (CPU only)."""
    for _ in range(warmup):
        call()
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def train_step(pipe: PDAEPipeline, pixels: torch.Tensor, cached: bool) -> Callable[[], None]:
    """One PDAE training step of `pipe`'s encoder and G on `pixels` `(B, C, H, W)` (fresh AdamW state)."""
    scheduler = pipe.scheduler  # the DDIM form of the training schedule: the same alphas
    cached_latents = encode_images(pipe.vae, pixels) if pipe.vae is not None and cached else None

    def loss(noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        clean = pixels if pipe.vae is None else cached_latents
        if clean is None:
            clean = encode_images(pipe.vae, pixels)
        return pdae_training_loss(
            pipe.unet, pipe.encoder, pipe.gradient_estimator, scheduler, clean, noise, timesteps,
            encoder_input=None if pipe.vae is None else pixels,
        )  # fmt: skip

    shape = torch.Size((len(pixels), *pipe.sample_shape))
    parameters = [*pipe.encoder.parameters(), *pipe.gradient_estimator.parameters()]
    return training_step(loss, parameters, shape, scheduler.config.num_train_timesteps, torch.device("cpu"))


def measure(name: str, args: argparse.Namespace) -> dict:
    folder = checkpoint_path(name) if name in BUNDLED_CHECKPOINTS else name
    pipe = PDAEPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.requires_grad_(False)
    if pipe.vae is not None:
        pipe.vae.requires_grad_(False)
    pipe.encoder.train().requires_grad_(True)
    pipe.gradient_estimator.train().requires_grad_(True)
    train_digits, _ = load_mnist_tensors("train", range(args.batch_size))
    test_digits, _ = load_mnist_tensors("test", range(0, 2000, 2000 // args.num_images)[: args.num_images])
    figures = {"pipeline": os.path.basename(os.path.normpath(folder)), "latent": pipe.vae is not None}
    figures["train step"] = median_times(train_step(pipe, train_digits, cached=False), args.steps, args.warmup)
    if pipe.vae is not None:
        step = train_step(pipe, train_digits, cached=True)
        figures["train step, cached"] = median_times(step, args.steps, args.warmup)
    pipe.encoder.eval()
    pipe.gradient_estimator.eval()
    with torch.no_grad():
        figures["reconstruct"] = median_times(
            lambda: pipe.reconstruct(test_digits, args.num_inference_steps, output_type="pt"),
            args.reconstruct_runs, args.warmup,
        )  # fmt: skip
    return figures


def table(results: list[dict], args: argparse.Namespace) -> str:
    rows = [
        f"| measure ({torch.get_num_threads()} thread(s); wall / CPU seconds) | "
        + " | ".join(result["pipeline"] for result in results) + " |",
        "| --- |" + " ---: |" * len(results),
    ]  # fmt: skip
    measures = {
        "train step": f"training step, batch {args.batch_size}",
        "train step, cached": f"training step, batch {args.batch_size}, latents cached",
        "reconstruct": f"reconstruction of {args.num_images} digits, T={args.num_inference_steps}",
    }
    for key, label in measures.items():
        cells = [f"{r[key]['wall_s']:.3f} / {r[key]['cpu_s']:.3f}" if key in r else "n/a" for r in results]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = [measure(name, args) for name in args.pipelines]
    print(table(results, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "args": vars(args), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
