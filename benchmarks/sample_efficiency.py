"""PDAE on a frozen pre-trained DPM vs the Diff-AE-style baseline trained from scratch: quality per training image.

    # the CPU-sized configuration (about 45 minutes on 2 cores)
    python benchmarks/sample_efficiency.py --out work_dirs/sample_efficiency
    # the GPU run of docs/results/efficiency (one process per method, at the same time, then merged)
    python benchmarks/sample_efficiency.py --methods pdae --max_steps 1000 --eval_every 125 --batch_size 128 \
        --mixed_precision bf16 --eval_images 64 --out work_dirs/efficiency/pdae   # and --methods baseline
    python benchmarks/sample_efficiency.py --combine work_dirs/efficiency/pdae work_dirs/efficiency/baseline \
        --out work_dirs/efficiency

Both methods train on the bundled MNIST train split with the same batch size, learning rate, seed and encoder design
(`train_pdae.py`'s default light encoder): PDAE learns the encoder and G (warm-started from the UNet's up blocks, as
`--warm_start_from_unet`) on the frozen bundled DPM; the baseline learns a `DiffAEUNet2DModel` of the DPM's layout and
its encoder jointly, with the plain noise loss. Every `--eval_every` steps each is measured on held-out test digits
(class-balanced): inferred-x_T reconstruction PSNR and z-only (random x_T) SSIM with `--inference_steps` DDIM steps,
and a linear probe on z (stratified train/test subsets). The DPM's own pre-training is not in PDAE's curve: it is
reported separately (`dpm_pretraining_images`; the bundled DPM saw 3,282 x 256 images).

Writes `results.json` and `sample_efficiency.png` (each metric vs training images and vs wall-clock seconds) to
`--out`, and prints the training images each method needs to reach the baseline's final value of each metric.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from step_timing import autocast, synchronize

from diffusers_pdae import GradientEstimator, PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.data import bundled_mnist_dataset
from diffusers_pdae.evaluation import linear_probe, psnr, ssim, stratified_indices
from diffusers_pdae.models import DiffAEUNet2DModel
from diffusers_pdae.pipelines.pipeline_diffae import DiffAEPipeline
from diffusers_pdae.training import load_frozen_dpm, pdae_training_loss, sample_noise_and_timesteps
from diffusers_pdae.training.diffae_objective import diffae_training_loss
from diffusers_pdae.training.encoder_choice import light_encoder_for

METRICS = ("psnr_inferred", "ssim_z_only", "probe_accuracy")
METHODS = ("pdae", "baseline")
# The bundled DPM's pre-training: 3,282 steps at batch 256 (docs/bundled_checkpoints.md).
BUNDLED_DPM_IMAGES = 3282 * 256


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", default=checkpoint_path("ddpm-mnist"), help="The frozen DPM PDAE uses.")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--max_steps", type=int, default=1000)
    parser.add_argument("--eval_every", type=int, default=250)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--latent_dim", type=int, default=64)
    parser.add_argument("--mixed_precision", choices=["no", "bf16"], default="no")
    parser.add_argument("--eval_images", type=int, default=32, help="Class-balanced test digits reconstructed.")
    parser.add_argument("--inference_steps", type=int, default=50, help="DDIM steps of inversion and decoding.")
    parser.add_argument("--probe_train", type=int, default=2000, help="Stratified train digits the probe fits on.")
    parser.add_argument("--probe_test", type=int, default=1000, help="Stratified test digits the probe scores.")
    parser.add_argument(
        "--dpm_pretraining_images",
        type=int,
        default=BUNDLED_DPM_IMAGES,
        help="Images the frozen DPM was pre-trained on, reported beside PDAE's curve (default: the bundled one's).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="sample-efficiency")
    parser.add_argument(
        "--combine",
        nargs="+",
        default=None,
        metavar="FOLDER",
        help="Train nothing: merge the curves of runs made separately (e.g. each method in its own process, at the "
        "same time) from their --out folders into --out.",
    )
    args = parser.parse_args(argv)
    if args.eval_every <= 0 or args.max_steps < args.eval_every:
        parser.error("--eval_every must be positive and at most --max_steps.")
    return args


class HeldOutDigits:
    """The test digits every evaluation uses, and the probe's train/test subsets."""

    def __init__(self, args, device: torch.device):
        train, test = bundled_mnist_dataset(args.resolution, "train"), bundled_mnist_dataset(args.resolution, "test")
        pick = stratified_indices(test.labels, args.eval_images, seed=args.seed)
        self.images = test.images[pick].to(device)
        probe_train = stratified_indices(train.labels, args.probe_train, seed=args.seed)
        probe_test = stratified_indices(test.labels, args.probe_test, seed=args.seed + 1)
        self.probe_sets = (
            (train.images[probe_train], train.labels[probe_train]),
            (test.images[probe_test], test.labels[probe_test]),
        )


def train_batches(batch_size: int, resolution: int, seed: int, device: torch.device):
    """Endless shuffled batches `(B, 1, resolution, resolution)` of the bundled train split, the same order for every
    method."""
    images = bundled_mnist_dataset(resolution, "train").images
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield images[order[start : start + batch_size]].to(device)


class PDAEMethod:
    """Encoder + G on the frozen DPM."""

    name = "pdae"

    def __init__(self, args, device: torch.device):
        denoiser, self.scheduler = load_frozen_dpm(args.pretrained)
        self.unet = denoiser.model.to(device)
        self.encoder = light_encoder_for(self.unet, args.latent_dim).to(device)
        self.gradient_estimator = GradientEstimator.from_unet(
            self.unet, args.latent_dim, warm_start=True, noise_scheduler=self.scheduler
        ).to(device)
        self.trainable = [*self.encoder.parameters(), *self.gradient_estimator.parameters()]

    def loss(self, images, noise, timesteps) -> torch.Tensor:
        return pdae_training_loss(
            self.unet, self.encoder, self.gradient_estimator, self.scheduler, images, noise, timesteps
        )

    def pipeline(self) -> PDAEPipeline:
        scheduler = DDIMScheduler.from_config(self.scheduler.config, clip_sample=False)
        return PDAEPipeline(self.unet, scheduler, self.encoder.eval(), self.gradient_estimator.eval())

    def train(self) -> None:
        self.encoder.train()
        self.gradient_estimator.train()


class BaselineMethod:
    """A conditional DPM of the bundled DPM's layout and its encoder, from scratch."""

    name = "baseline"

    def __init__(self, args, device: torch.device):
        layout = UNet2DModel.load_config(args.pretrained, subfolder="unet")
        self.scheduler = DDPMScheduler.from_pretrained(args.pretrained, subfolder="scheduler")
        self.unet = DiffAEUNet2DModel.from_unet_config(layout, latent_dim=args.latent_dim).to(device)
        self.encoder = light_encoder_for(self.unet, args.latent_dim).to(device)
        self.trainable = [*self.unet.parameters(), *self.encoder.parameters()]

    def loss(self, images, noise, timesteps) -> torch.Tensor:
        return diffae_training_loss(self.unet, self.encoder, self.scheduler, images, noise, timesteps)

    def pipeline(self) -> DiffAEPipeline:
        scheduler = DDIMScheduler.from_config(self.scheduler.config, clip_sample=False)
        return DiffAEPipeline(self.unet.eval(), self.encoder.eval(), scheduler)

    def train(self) -> None:
        self.unet.train()
        self.encoder.train()


@torch.no_grad()
def evaluate(method, held_out: HeldOutDigits, args) -> dict[str, float]:
    pipe = method.pipeline()
    pipe.set_progress_bar_config(disable=True)
    originals = held_out.images / 2 + 0.5
    steps = args.inference_steps
    inferred = pipe.reconstruct(held_out.images, num_inference_steps=steps, output_type="pt").images
    generator = torch.Generator().manual_seed(args.seed)
    z_only = pipe.reconstruct(
        held_out.images, num_inference_steps=steps, invert=False, generator=generator, output_type="pt"
    ).images
    (train_images, train_labels), (test_images, test_labels) = held_out.probe_sets
    probe = linear_probe(
        encode_all(pipe, train_images), train_labels, encode_all(pipe, test_images), test_labels, seed=args.seed
    )
    method.train()
    return {
        "psnr_inferred": psnr(inferred.cpu(), originals.cpu()).mean().item(),
        "ssim_z_only": ssim(z_only.cpu(), originals.cpu()).mean().item(),
        "probe_accuracy": probe.test_accuracy,
    }


def encode_all(pipe, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Codes `(N, latent_dim)` of `images` `(N, C, H, W)`, in batches."""
    chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    return torch.cat([pipe.encode(chunk).float().cpu() for chunk in chunks])


def run_method(method, held_out: HeldOutDigits, args, device: torch.device, on_record=None) -> list[dict]:
    """Train `method` for `--max_steps`, evaluating every `--eval_every` steps; the curve as a list of records.
    `on_record(curve)` runs after each evaluation (to save what is measured so far)."""
    optimizer = torch.optim.AdamW(method.trainable, lr=args.learning_rate)
    noise_generator = torch.Generator().manual_seed(args.seed)
    batches = train_batches(args.batch_size, args.resolution, args.seed, device)
    dtype = torch.bfloat16 if args.mixed_precision == "bf16" else None
    curve, train_seconds = [], 0.0
    method.train()
    for step in range(1, args.max_steps + 1):
        synchronize(device)
        started = time.perf_counter()
        images = next(batches)
        noise, timesteps = sample_noise_and_timesteps(images, 1000, noise_generator)
        with autocast(device, dtype):
            loss = method.loss(images, noise, timesteps).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(method.trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        train_seconds += time.perf_counter() - started
        if step % args.eval_every == 0:
            record = {"step": step, "images_seen": step * args.batch_size, "train_seconds": train_seconds}
            record.update(loss=loss.item(), **evaluate(method, held_out, args))
            curve.append(record)
            if on_record is not None:
                on_record(curve)
            print(f"{method.name:>8} step {step:>6}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()))
    return curve


def images_to_reach(curve: list[dict], metric: str, target: float) -> int | None:
    """Training images at the first evaluation where `metric` >= `target` (None if never)."""
    return next((record["images_seen"] for record in curve if record[metric] >= target), None)


def summarise(curves: dict[str, list[dict]]) -> dict:
    """For each metric, the baseline's final value and the images each method needed to reach it."""
    if "baseline" not in curves:
        return {}
    summary = {}
    for metric in METRICS:
        target = curves["baseline"][-1][metric]
        reached = {name: images_to_reach(curve, metric, target) for name, curve in curves.items()}
        entry = {"baseline_final": target, "images_to_reach": reached}
        if reached.get("pdae") and reached.get("baseline"):
            entry["pdae_over_baseline_images"] = reached["pdae"] / reached["baseline"]
        summary[metric] = entry
    return summary


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    figure = Figure(figsize=(12, 6.5), layout="constrained")
    axes = figure.subplots(2, len(METRICS))
    for column, metric in enumerate(METRICS):
        for row, x_key in enumerate(("images_seen", "train_seconds")):
            axis = axes[row][column]
            for name, curve in curves.items():
                axis.plot([r[x_key] for r in curve], [r[metric] for r in curve], marker="o", label=name)
            axis.set_xlabel("training images" if x_key == "images_seen" else "training seconds (evaluation excluded)")
            axis.xaxis.set_major_formatter(EngFormatter(sep=""))
            axis.set_ylabel(metric.replace("_", " "))
            axis.grid(alpha=0.3)
            axis.legend()
    figure.savefig(path, dpi=110)


def train_and_measure(args, device: torch.device) -> dict:
    held_out = HeldOutDigits(args, device)
    builders = {"pdae": PDAEMethod, "baseline": BaselineMethod}
    results = {
        "config": {key: value for key, value in vars(args).items() if key not in ("out", "combine")},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dpm_pretraining_images": args.dpm_pretraining_images,
        "curves": {},
    }
    for name in args.methods:

        def save_so_far(curve: list[dict], name: str = name) -> None:
            results["curves"][name] = curve
            write_results(results, Path(args.out))

        torch.manual_seed(args.seed)  # the same initialisation of the encoder (and fresh layers) for every run
        results["curves"][name] = run_method(builders[name](args, device), held_out, args, device, save_so_far)
    return results


def write_results(results: dict, out: Path) -> None:
    """`results.json` in `out`, replaced atomically (a run stopped mid-way keeps the last complete one)."""
    partial = out / "results.json.tmp"
    partial.write_text(json.dumps(results, indent=2, default=_plain) + "\n")
    os.replace(partial, out / "results.json")


def combine(runs: list[dict]) -> dict:
    """One result from runs of the same configuration that each trained some of the methods."""
    configs = [{key: value for key, value in run["config"].items() if key != "methods"} for run in runs]
    if any(config != configs[0] for config in configs):
        raise ValueError("The runs to combine were made with different settings; only --methods may differ.")
    merged = {**runs[0], "curves": {}}
    merged["config"]["methods"] = [name for run in runs for name in run["curves"]]
    for run in runs:
        merged["curves"].update(run["curves"])
    return merged


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.resolution = UNet2DModel.load_config(args.pretrained, subfolder="unet")["sample_size"]
    if args.combine:
        results = combine([json.loads((Path(folder) / "results.json").read_text()) for folder in args.combine])
    else:
        results = train_and_measure(args, device)
    results["summary"] = summarise(results["curves"])
    write_results(results, out)
    plot(results["curves"], out / "sample_efficiency.png")
    for metric, entry in results["summary"].items():
        print(f"{metric}: baseline final {entry['baseline_final']:.4g}; images to reach it {entry['images_to_reach']}")
    return results


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


if __name__ == "__main__":
    main()
