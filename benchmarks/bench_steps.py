"""Seconds per training and sampling step, in one run on one machine and batch: DDPM, PDAE, the Diff-AE baseline.

    python benchmarks/bench_steps.py                                  # the bundled MNIST layout, this machine
    python benchmarks/bench_steps.py --layout docs/configs/ddpm-cifar10-32.json --batch_size 128 --precision bf16

Training steps (median seconds, optimiser step included, no data loading):
  - DDPM: the UNet trained on its own loss (what pre-training the DPM costs per step);
  - PDAE: the frozen UNet's one pass + encoder and G, for each G option (full, 1 resnet per up block, half width,
    both);
  - baseline: the Diff-AE-style conditional UNet of the same layout and the same encoder, trained jointly.
Sampling (seconds per DDIM step of a whole deterministic decoding run): plain DDIM, PDAE shifted at every step and
PDAE shifted only in the critical stage, for each G option; and encoder images per second.
With `--compile MODE ...` every model is also compiled in place with `torch.compile(mode=MODE)` and timed again.
Weights are random (timing does not depend on them). Prints a table and writes JSON if asked.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from step_timing import (
    COMPILE_MODES,
    GRADIENT_ESTIMATOR_OPTIONS,
    compiled,
    ddpm_loss_fn,
    decoding_run,
    diffae_loss_fn,
    encoding_run,
    median_seconds,
    pdae_loss_fn,
    training_step,
)

from diffusers_pdae import GradientEstimator, PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.evaluation.critical_stage import PAPER_CRITICAL_STAGE
from diffusers_pdae.models import DiffAEUNet2DModel
from diffusers_pdae.training.encoder_choice import light_encoder_for

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = {
    "mnist": str(Path(checkpoint_path("ddpm-mnist")) / "unet"),
    "cifar10": str(REPO / "docs" / "configs" / "ddpm-cifar10-32.json"),
}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--layout", default="mnist", help="mnist, cifar10 (google/ddpm-cifar10-32), or a UNet2DModel config file."
    )
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--latent_dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="Timed training steps (and sampling runs / 2).")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sampling_steps", type=int, default=20, help="DDIM steps of one decoding run.")
    parser.add_argument(
        "--critical_stage", type=int, nargs=2, default=list(PAPER_CRITICAL_STAGE), metavar=("T1", "T2")
    )
    parser.add_argument("--precision", nargs="+", choices=list(PRECISIONS), default=["fp32", "bf16"])
    parser.add_argument("--compile", nargs="+", choices=COMPILE_MODES, default=["none"])
    parser.add_argument(
        "--gradient_estimators",
        nargs="+",
        choices=list(GRADIENT_ESTIMATOR_OPTIONS),
        default=list(GRADIENT_ESTIMATOR_OPTIONS),
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU).")
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


class Models:
    """Freshly initialised models of one layout, on one device (seeded)."""

    def __init__(self, unet_config: dict, latent_dim: int, device: torch.device):
        torch.manual_seed(0)
        self.unet = UNet2DModel.from_config(unet_config).to(device)
        self.scheduler = DDPMScheduler(num_train_timesteps=1000)
        self.encoder = light_encoder_for(self.unet, latent_dim).to(device)
        self.gradient_estimators = {
            name: GradientEstimator.from_unet(self.unet, latent_dim, **options).to(device)
            for name, options in GRADIENT_ESTIMATOR_OPTIONS.items()
        }
        self.baseline = DiffAEUNet2DModel.from_unet_config(self.unet, latent_dim=latent_dim).to(device)

    def compile(self, mode: str) -> None:
        for module in (self.unet, self.encoder, self.baseline, *self.gradient_estimators.values()):
            compiled(module, mode)

    def pipeline(self, option: str) -> PDAEPipeline:
        pipe = PDAEPipeline(
            unet=self.unet,
            scheduler=self.scheduler,
            encoder=self.encoder,
            gradient_estimator=self.gradient_estimators[option],
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe


def parameter_counts(models: Models) -> dict[str, int]:
    def count(module: torch.nn.Module) -> int:
        return sum(parameter.numel() for parameter in module.parameters())

    counts = {"unet": count(models.unet), "encoder": count(models.encoder), "baseline": count(models.baseline)}
    counts.update({f"G {name}": count(module) for name, module in models.gradient_estimators.items()})
    return counts


def time_training(models: Models, images: torch.Tensor, args, autocast_dtype) -> dict[str, float]:
    device, scheduler = images.device, models.scheduler
    common = {"batch_shape": images.shape, "num_train_timesteps": 1000, "device": device}
    common["autocast_dtype"] = autocast_dtype
    steps = {"ddpm": training_step(ddpm_loss_fn(models.unet, scheduler, images), models.unet.parameters(), **common)}
    for name in args.gradient_estimators:
        estimator = models.gradient_estimators[name]
        trainable = [*models.encoder.parameters(), *estimator.parameters()]
        loss = pdae_loss_fn(models.unet, models.encoder, estimator, scheduler, images)
        steps[f"pdae {name}"] = training_step(loss, trainable, **common)
    loss = diffae_loss_fn(models.baseline, models.encoder, scheduler, images)
    steps["baseline"] = training_step(loss, [*models.baseline.parameters(), *models.encoder.parameters()], **common)

    seconds = {}
    for name, step in steps.items():
        models.unet.requires_grad_(name == "ddpm").train(name == "ddpm")
        seconds[name] = median_seconds(step, args.steps, args.warmup, device)
    models.unet.requires_grad_(False).eval()
    return seconds


@torch.no_grad()
def time_sampling(models: Models, images: torch.Tensor, args, autocast_dtype) -> dict[str, float]:
    device, runs = images.device, max(args.steps // 2, 1)
    for module in (models.unet, models.encoder, *models.gradient_estimators.values()):
        module.eval()
    generator = torch.Generator(device).manual_seed(1)
    latents = torch.randn(images.shape, generator=generator, device=device)
    z = models.encoder(images).z
    per_step = {}
    plain = decoding_run(models.pipeline("full"), latents, None, args.sampling_steps, None, autocast_dtype)
    per_step["plain ddim"] = median_seconds(plain, runs, 1, device) / args.sampling_steps
    for name in args.gradient_estimators:
        pipe = models.pipeline(name)
        for label, shift_range in (("every step", None), ("critical stage", tuple(args.critical_stage))):
            run = decoding_run(pipe, latents, z, args.sampling_steps, shift_range, autocast_dtype)
            per_step[f"pdae {name} {label}"] = median_seconds(run, runs, 1, device) / args.sampling_steps
    encode = encoding_run(models.encoder, images, autocast_dtype)
    per_step["encoder images/s"] = images.shape[0] / median_seconds(encode, args.steps, args.warmup, device)
    return per_step


def ratios(training: dict[str, float], sampling: dict[str, float]) -> dict[str, float]:
    """The issue's targets as ratios: PDAE / DDPM and / baseline per training step, PDAE / plain DDIM sampling."""
    out = {}
    for name, seconds in training.items():
        if name.startswith("pdae "):
            out[f"{name} / ddpm"] = seconds / training["ddpm"]
            out[f"{name} / baseline"] = seconds / training["baseline"]
    for name, seconds in sampling.items():
        if name.startswith("pdae "):
            out[f"{name} / plain ddim"] = seconds / sampling["plain ddim"]
    return out


def print_table(results: dict) -> None:
    print(
        f"{results['layout']} on {results['device_name']}, batch {results['batch_size']}, "
        f"{results['sampling_steps']} DDIM steps per sampling run, critical stage {results['critical_stage']}"
    )
    for key, figures in results["runs"].items():
        print(f"\n[{key}]")
        for name, value in figures["training"].items():
            print(f"  train   {name:<38} {1000 * value:9.2f} ms/step")
        for name, value in figures["sampling"].items():
            unit = "images/s" if name.endswith("images/s") else "ms/step"
            shown = value if unit == "images/s" else 1000 * value
            print(f"  sample  {name:<38} {shown:9.2f} {unit}")
        for name, value in figures["ratios"].items():
            print(f"  ratio   {name:<52} {value:6.3f}x")


def main(argv=None) -> dict:
    args = parse_args(argv)
    # Each model runs with and without autocast and gradients, in training and eval mode: more graphs than
    # torch.compile keeps by default, and past that limit it would fall back to eager silently.
    torch._dynamo.config.cache_size_limit = 64
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    layout = LAYOUTS.get(args.layout, args.layout)
    unet_config = UNet2DModel.load_config(layout)
    size = unet_config["sample_size"]
    results = {
        "layout": args.layout,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "sampling_steps": args.sampling_steps,
        "critical_stage": args.critical_stage,
        "runs": {},
    }
    images = torch.rand(args.batch_size, unet_config["in_channels"], size, size, device=device) * 2 - 1
    for mode in args.compile:
        models = Models(unet_config, args.latent_dim, device)
        results["parameters"] = parameter_counts(models)
        models.compile(mode)
        for precision in args.precision:
            autocast_dtype = PRECISIONS[precision]
            training = time_training(models, images, args, autocast_dtype)
            sampling = time_sampling(models, images, args, autocast_dtype)
            results["runs"][f"{precision}, compile {mode}"] = {
                "training": training,
                "sampling": sampling,
                "ratios": ratios(training, sampling),
            }
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
