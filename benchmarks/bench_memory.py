"""Peak memory and seconds per PDAE training step, with and without gradient checkpointing, per layout and batch size
(random weights): what `train_pdae.py --gradient_checkpointing` saves and costs.

    python benchmarks/bench_memory.py                          # both 256-px layouts, batch 1, 2, 4, this machine
    python benchmarks/bench_memory.py --layouts ddpm-celebahq-256 --batch_sizes 1 2 --steps 2 --json memory.json
    python benchmarks/bench_memory.py --quick                  # tiny layouts, one timed step: a check that it runs

Layouts:
  - `ddpm-celebahq-256`: google/ddpm-celebahq-256's `UNet2DModel` (256x256x3 pixels); G from `from_unet`, and
    `train_pdae.py`'s default light encoder on the same images;
  - `ldm-celebahq-256`: CompVis/ldm-celebahq-256 (`ldm_layouts.full_size_ldm(scaling_factor=1.0)`): the UNet and G
    on the 64x64x3 VQ latents, the light encoder on the 256-pixel images (`pdae_training_loss(...,
    encoder_input=pixels)`); each step encodes the pixels with the frozen VQ model first (`encode_images`, no
    gradient), as `train_pdae.py` does without `--cache_latents` (`--cache_latents` here: the latents are given);
  - `tiny` and `tiny-ldm` (what `--quick` runs, with latent_dim 64): a small pixel UNet at 32 px, and a small latent
    DPM (32-pixel images, 8x8x3 latents); `ldm-scaled`: `ldm_layouts.scaled_down_ldm` (256 px, narrow widths).
The step is `train_pdae.py`'s without data loading (`step_timing.training_step`): the frozen UNet's one pass without
gradient, encoder and G forward and backward (`pdae_training_loss`), AdamW over encoder and G. With checkpointing,
`enable_gradient_checkpointing()` on the encoder and G, as `--gradient_checkpointing` does.

Time: the median of `--steps` steps after `--warmup` untimed ones (`step_timing.median_seconds`).
Memory, each (layout, batch, checkpointing) measured in a fresh process of its own (`--isolation subprocess`):
  - CPU: the process's peak resident set (`getrusage(RUSAGE_SELF).ru_maxrss`) after the steps, minus its resident set
    (`/proc/self/statm`) once the models and inputs are built: what the steps add, i.e. the activations kept for the
    backward pass, the gradients and AdamW's two moments of encoder and G (allocated at the first step; the
    table's `grads + AdamW` column is that part, computed as 3 x 4 bytes per trainable parameter), and transients;
  - CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` once built, minus the memory then
    allocated.
Prints a Markdown table (and writes JSON with `--json`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel, VQModel
from ldm_layouts import (
    SCALED_VQVAE_OVERRIDES,
    LDMComponents,
    downsampling_factor,
    full_size_ldm,
    light_pixel_encoder,
    parameter_count,
    published_config,
    scaled_down_ldm,
    scheduler_config,
)
from measuring import MemoryProbe, run_isolated, timed
from step_timing import training_step

from diffusers_pdae.latent_space import encode_images
from diffusers_pdae.models import GradientEstimator, PDAEEncoder
from diffusers_pdae.training.objective import pdae_training_loss

# google/ddpm-celebahq-256's UNet2DModel config (113.7M parameters), for random weights.
DDPM_CELEBAHQ_256 = {
    "sample_size": 256,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [128, 128, 256, 256, 512, 512],
    "layers_per_block": 2,
    "down_block_types": [
        "DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
    ],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "attention_head_dim": None,
}  # fmt: skip
# A small pixel layout for --quick: the same block types at 32 px.
TINY = {
    **DDPM_CELEBAHQ_256,
    "sample_size": 32,
    "block_out_channels": [16, 32],
    "norm_num_groups": 8,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
}


def tiny_ldm(seed: int = 0, scaling_factor: float | None = None) -> LDMComponents:
    """A small latent layout for --quick: CompVis/ldm-celebahq-256's VQ model scaled down (`ldm_layouts`) on 32-pixel
    images (8x8x3 latents), and the tiny UNet on those latents."""
    torch.manual_seed(seed)
    vqvae_config = {**published_config("vqvae"), **SCALED_VQVAE_OVERRIDES, "sample_size": 32}
    if scaling_factor is not None:
        vqvae_config["scaling_factor"] = scaling_factor
    vqvae = VQModel.from_config(vqvae_config)
    torch.manual_seed(seed + 1)
    unet = UNet2DModel.from_config({**TINY, "sample_size": 8})
    return LDMComponents(vqvae.eval(), unet.eval(), DDIMScheduler.from_config(scheduler_config()))


PIXEL_LAYOUTS = {"ddpm-celebahq-256": DDPM_CELEBAHQ_256, "tiny": TINY}
LATENT_LAYOUTS = {"ldm-celebahq-256": full_size_ldm, "ldm-scaled": scaled_down_ldm, "tiny-ldm": tiny_ldm}
LAYOUTS = (*PIXEL_LAYOUTS, *LATENT_LAYOUTS)
FULL_LAYOUTS = ("ddpm-celebahq-256", "ldm-celebahq-256")
QUICK = {"layouts": ["tiny", "tiny-ldm"], "batch_sizes": [1, 2], "steps": 1, "warmup": 1, "latent_dim": 64}
# The scaling factor CompVis' VQ LDMs were trained with (see ldm_layouts.py); timing and memory do not depend on it.
SCALING_FACTOR = 1.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(FULL_LAYOUTS))
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument(
        "--checkpointing", nargs="+", choices=("off", "on"), default=["off", "on"], help="Gradient checkpointing."
    )
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per configuration (median).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps before them (at least 1: AdamW state).")
    parser.add_argument(
        "--latent_dim", type=int, default=512, help="Width of the code z (512: the paper's at 256 px)."
    )
    parser.add_argument(
        "--cache_latents",
        action="store_true",
        help="Latent layouts: give the step its latents instead of VQ-encoding the pixels at every step.",
    )
    parser.add_argument("--quick", action="store_true", help="Tiny layouts, batch 1 and 2, one timed step.")
    parser.add_argument(
        "--isolation",
        choices=("subprocess", "none"),
        default="subprocess",
        help="subprocess: each configuration in a fresh process (its peak memory is its own); none: all in this "
        "process (CPU peak memory then carries over from one configuration to the next: for quick checks only).",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    # Internal: measure one configuration in this process and write its figures to a file.
    parser.add_argument("--worker_json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step allocates AdamW's state.")
    return args


# ---------------------------------------------------------------------------------------------------- models


class Bench(NamedTuple):
    """One layout's models on one device, and one batch of inputs."""

    unet: UNet2DModel
    scheduler: DDPMScheduler
    encoder: PDAEEncoder
    gradient_estimator: GradientEstimator
    pixels: torch.Tensor  # what the encoder reads: (B, 3, 256, 256) images in [-1, 1]
    clean: torch.Tensor | None  # the UNet's x_0 when given: the pixels, or cached latents; None: VQ-encode each step
    vqvae: VQModel | None


def build(layout: str, batch_size: int, args: argparse.Namespace) -> Bench:
    """Random seeded models of `layout` on `args.device`: the frozen UNet (and VQ model), the light encoder and G."""
    device = torch.device(args.device)
    vqvae = None
    if layout in PIXEL_LAYOUTS:
        torch.manual_seed(args.seed)
        unet = UNet2DModel.from_config(PIXEL_LAYOUTS[layout])
        scheduler = DDPMScheduler(num_train_timesteps=1000)  # google/ddpm-*: linear betas
        channels, size = unet.config.in_channels, unet.config.sample_size
    else:
        ldm = LATENT_LAYOUTS[layout](args.seed, scaling_factor=SCALING_FACTOR)
        unet, vqvae = ldm.unet, ldm.vqvae.requires_grad_(False).eval().to(device)
        scheduler = DDPMScheduler.from_config(ldm.scheduler.config)  # the LDM's betas (scaled_linear)
        channels, size = vqvae.config.in_channels, unet.config.sample_size * downsampling_factor(vqvae)
    unet.requires_grad_(False).eval().to(device)
    torch.manual_seed(args.seed + 2)
    encoder = light_pixel_encoder(unet, args.latent_dim, channels, size).to(device).train()
    estimator = GradientEstimator.from_unet(unet, latent_dim=args.latent_dim, noise_scheduler=scheduler)
    estimator.to(device).train()
    generator = torch.Generator().manual_seed(args.seed + 3)
    pixels = (torch.rand(batch_size, channels, size, size, generator=generator) * 2 - 1).to(device)
    clean = pixels
    if vqvae is not None:
        clean = None
        if args.cache_latents:
            with torch.no_grad():
                clean = encode_images(vqvae, pixels)
            vqvae = None
    return Bench(unet, scheduler, encoder, estimator, pixels, clean, vqvae)


def trainable_parameters(bench: Bench) -> int:
    return parameter_count(bench.encoder) + parameter_count(bench.gradient_estimator)


def pdae_step(bench: Bench, checkpointing: bool, seed: int = 0) -> Callable[[], None]:
    """One PDAE training step, as `train_pdae.py` runs it (with `--gradient_checkpointing` if `checkpointing`)."""
    for model in (bench.encoder, bench.gradient_estimator):
        if checkpointing:
            model.enable_gradient_checkpointing()
        else:
            model.disable_gradient_checkpointing()
    latent = bench.pixels is not bench.clean
    sample_size, channels = bench.unet.config.sample_size, bench.unet.config.in_channels
    batch_shape = torch.Size((bench.pixels.shape[0], channels, sample_size, sample_size))

    def loss(noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        clean = bench.clean
        if clean is None:
            with torch.no_grad():
                clean = encode_images(bench.vqvae, bench.pixels)
        return pdae_training_loss(
            bench.unet, bench.encoder, bench.gradient_estimator, bench.scheduler, clean, noise, timesteps,
            encoder_input=bench.pixels if latent else None,
        )  # fmt: skip

    trainable = [*bench.encoder.parameters(), *bench.gradient_estimator.parameters()]
    return training_step(loss, trainable, batch_shape, 1000, bench.pixels.device, seed=seed)


# ---------------------------------------------------------------------------------------------------- measuring


def measure(layout: str, batch_size: int, checkpointing: bool, args: argparse.Namespace) -> dict:
    """Build the layout's models and one batch, then time `args.steps` training steps and take the peak memory, in
    this process."""
    device = torch.device(args.device)
    bench = build(layout, batch_size, args)
    step = pdae_step(bench, checkpointing, seed=args.seed)
    probe = MemoryProbe(device)
    probe.start()
    times = timed(step, args.steps, args.warmup, device)
    parameters = {
        "unet": parameter_count(bench.unet),
        "encoder": parameter_count(bench.encoder),
        "gradient_estimator": parameter_count(bench.gradient_estimator),
    }
    return {
        # Wall-clock seconds, and this process's CPU time (all threads) per step: on a CPU that other processes
        # share, the work done, which wall-clock seconds are not.
        **times,
        "calls": {"warmup": args.warmup, "timed": args.steps},
        "parameters": parameters,
        # Gradients and AdamW's exp_avg and exp_avg_sq of encoder and G, in fp32: the part checkpointing leaves.
        "grads_and_adamw_mib": 3 * 4 * trainable_parameters(bench) / 2**20,
        **probe.result(),
    }


def worker_argv(args: argparse.Namespace, layout: str, batch_size: int, checkpointing: bool, out: str) -> list[str]:
    """The command line that measures one configuration alone in a fresh process and writes its figures to `out`."""
    options = {
        "--layouts": layout,
        "--batch_sizes": batch_size,
        "--checkpointing": "on" if checkpointing else "off",
        "--steps": args.steps,
        "--warmup": args.warmup,
        "--latent_dim": args.latent_dim,
        "--device": args.device,
        "--seed": args.seed,
        "--worker_json": out,
    }
    if args.threads:
        options["--threads"] = args.threads
    flags = ["--cache_latents"] if args.cache_latents else []
    pairs = [str(item) for pair in options.items() for item in pair]
    return [sys.executable, str(Path(__file__).resolve()), *pairs, *flags]


def measure_isolated(layout: str, batch_size: int, checkpointing: bool, args: argparse.Namespace) -> dict:
    """[`measure`] in a fresh Python process, so that its peak memory is its own."""
    return run_isolated(lambda out: worker_argv(args, layout, batch_size, checkpointing, out))


# ---------------------------------------------------------------------------------------------------- report


def rows(results: dict) -> list[dict]:
    """One row per (layout, batch size): both settings' figures side by side, the saving and the slowdowns."""
    out = []
    for layout, by_batch in results["measured"].items():
        for batch_size, figures in by_batch.items():
            row = {"layout": layout, "batch_size": int(batch_size), **figures}
            off, on = figures.get("off"), figures.get("on")
            if off and on:
                row["saving_mib"] = off["peak_over_build_mib"] - on["peak_over_build_mib"]
                row["saving_fraction"] = row["saving_mib"] / off["peak_over_build_mib"]
                row["slowdown"] = on["seconds"] / off["seconds"]
                row["cpu_slowdown"] = on["cpu_seconds"] / off["cpu_seconds"]
            out.append(row)
    return out


def markdown(results: dict) -> str:
    """The results as a Markdown table (on the CPU with the CPU time per step too)."""
    on_cpu = not results["device"].startswith("cuda")
    unit = "RSS" if on_cpu else "GPU allocated"

    def cell(figures: dict | None, key: str, digits: int = 0) -> str:
        return "-" if figures is None else f"{figures[key]:.{digits}f}"

    def ratio(row: dict, key: str) -> str:
        return f"{row[key]:.2f}x" if key in row else "-"

    isolation = "a fresh process" if results["isolation"] == "subprocess" else "one process"
    lines = [
        f"PDAE training step on {results['device_name']} ({results['device']}), {results['threads']} threads, torch "
        f"{results['torch']}, latent_dim {results['latent_dim']}, random weights; time: median of {results['steps']} "
        f"steps after {results['warmup']} (wall-clock s/step{', and CPU s/step of the process' if on_cpu else ''}); "
        f"memory: peak {unit} over the built models and inputs (MiB), each configuration in {isolation}; "
        "off / on: without / with gradient checkpointing",
        "",
    ]
    columns = ["layout", "batch", "s/step off", "s/step on", "slowdown"]
    columns += ["CPU s/step off", "CPU s/step on", "CPU slowdown"] if on_cpu else []
    columns += [f"peak {unit} off", f"peak {unit} on", "saving", "grads + AdamW"]
    lines += ["| " + " | ".join(columns) + " |", "| --- | " + " | ".join(["---:"] * (len(columns) - 1)) + " |"]
    for row in rows(results):
        off, on = row.get("off"), row.get("on")
        cells = [row["layout"], str(row["batch_size"])]
        cells += [cell(off, "seconds", 2), cell(on, "seconds", 2), ratio(row, "slowdown")]
        if on_cpu:
            cells += [cell(off, "cpu_seconds", 2), cell(on, "cpu_seconds", 2), ratio(row, "cpu_slowdown")]
        saving = f"{row['saving_mib']:.0f} ({100 * row['saving_fraction']:.0f}%)" if "saving_mib" in row else "-"
        cells += [cell(off, "peak_over_build_mib"), cell(on, "peak_over_build_mib"), saving]
        cells.append(f"{(off or on)['grads_and_adamw_mib']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "parameters (M): " + "; ".join(
        f"{layout}: " + ", ".join(f"{name} {count / 1e6:.1f}" for name, count in counts.items())
        for layout, counts in results["parameters"].items()
    )]  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker_json:
        result = measure(args.layouts[0], args.batch_sizes[0], args.checkpointing[0] == "on", args)
        Path(args.worker_json).write_text(json.dumps(result) + "\n")
        return result
    device = torch.device(args.device)
    results = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
        "latent_dim": args.latent_dim,
        "steps": args.steps,
        "warmup": args.warmup,
        "cache_latents": args.cache_latents,
        "isolation": args.isolation,
        "measured": {},
        "parameters": {},
    }
    for layout in args.layouts:
        for batch_size in args.batch_sizes:
            for setting in args.checkpointing:
                print(f"measuring {layout}, batch {batch_size}, checkpointing {setting} ...", flush=True)
                checkpointing = setting == "on"
                if args.isolation == "subprocess":
                    figures = measure_isolated(layout, batch_size, checkpointing, args)
                else:
                    figures = measure(layout, batch_size, checkpointing, args)
                results["parameters"][layout] = figures.pop("parameters")
                results["measured"].setdefault(layout, {}).setdefault(str(batch_size), {})[setting] = figures
                if args.json:  # after every configuration: a long run keeps what it measured
                    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
