"""Seconds and peak memory of a PDAE training step on Stable Diffusion 1.5's full-size UNet (random weights), with each
G design, against a plain fine-tuning step of the whole UNet on the same latents.

    python benchmarks/bench_sd.py --resolution 256 --json sd.json          # CPU, batch 1 (minutes per step)
    python benchmarks/bench_sd.py --device cuda --resolution 512 --batch_size 4
    python benchmarks/bench_sd.py --quick                                  # a narrow SD layout: a check that it runs

The UNet is SD 1.5's `UNet2DConditionModel` layout (`SD15_UNET`, 859.5M parameters: widths 320-640-1280-1280,
cross-attention at the three finer levels, 768-wide text embeddings), conditioned on a random `(B, 77, 768)` text
embedding (the plain step) or on the stored empty prompt's (PDAE). Both steps start from the same latents, `(B, 4,
resolution / 8, resolution / 8)` as SD's f=8 autoencoder makes them (the autoencoder itself is left out: it costs
both steps the same, or nothing with cached latents).
  - plain: the UNet's own noise loss, forward and backward, AdamW over all its parameters (fine-tuning SD);
  - pdae-<design>: `train_pdae.py`'s step (`pdae_training_loss`): the frozen UNet's one pass without gradient, the
    light encoder on the pixel images and G forward and backward, AdamW over encoder and G. Designs: `full` (G
    shaped like the UNet's up half, self-attention where SD cross-attends), `half` (half the widths) and `light` (half
    the widths, one resnet per level).
Each configuration runs in a fresh process (its peak memory is its own): the median of `--steps` steps after
`--warmup`, wall-clock and CPU seconds; memory as `measuring.MemoryProbe` takes it (CPU: peak RSS over the RSS once
built; CUDA: max_memory_allocated over what was allocated once built). Prints a Markdown table, writes `--json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from ldm_layouts import light_pixel_encoder, parameter_count
from measuring import MemoryProbe, run_isolated, timed
from step_timing import training_step

from diffusers_pdae.models import GradientEstimator, PromptEmbedding, frozen_denoiser
from diffusers_pdae.training.objective import pdae_training_loss

# runwayml/stable-diffusion-v1-5's unet/config.json (the entries that differ from UNet2DConditionModel's defaults).
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
QUICK_UNET = {**SD15_UNET, "block_out_channels": [32, 64, 64, 64], "cross_attention_dim": 32, "attention_head_dim": 2}
# SD 1.x's schedule: scaled_linear betas 0.00085-0.012 over 1000 steps.
SD_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
G_DESIGNS = {
    "full": {},
    "half": {"width_multiplier": 0.5},
    "light": {"width_multiplier": 0.5, "resnets_per_up_block": 1},
}
CONFIGS = ("plain", *(f"pdae-{name}" for name in G_DESIGNS))
SEQUENCE = 77  # CLIP's tokens


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=256, help="Pixel size (latents are 1/8 of it).")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=2, help="Timed steps (the median is reported).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps first (AdamW's state is made there).")
    parser.add_argument("--latent_dim", type=int, default=512, help="Width of the code z.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="A narrow SD layout at 128 px, one timed step.")
    parser.add_argument("--json", type=str, default=None, help="Write the figures here too.")
    parser.add_argument("--worker_json", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.resolution, args.steps, args.warmup = 128, 1, 0
    if args.resolution % 8:
        parser.error(f"--resolution must be a multiple of 8 (SD's latents are 1/8 of it), got {args.resolution}")
    return args


def build_unet(args: argparse.Namespace) -> UNet2DConditionModel:
    torch.manual_seed(args.seed)
    layout = QUICK_UNET if args.quick else SD15_UNET
    return UNet2DConditionModel.from_config({**layout, "sample_size": args.resolution // 8}).to(args.device)


def inputs(args: argparse.Namespace, unet: UNet2DConditionModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The same latents for every configuration, and the pixel images the PDAE encoder reads."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    size = unet.config.sample_size
    latents = torch.randn(args.batch_size, 4, size, size, generator=generator)
    pixels = torch.rand(args.batch_size, 3, args.resolution, args.resolution, generator=generator) * 2 - 1
    return latents.to(args.device), pixels.to(args.device)


def plain_step(args: argparse.Namespace, unet, scheduler, latents: torch.Tensor):
    """Fine-tuning the whole UNet: its noise loss under a text embedding, AdamW over its parameters."""
    unet.train().requires_grad_(True)
    width = unet.config.cross_attention_dim
    text = torch.randn(args.batch_size, SEQUENCE, width, generator=torch.Generator().manual_seed(2)).to(args.device)

    def loss(noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        prediction = unet(scheduler.add_noise(latents, noise, timesteps), timesteps, encoder_hidden_states=text).sample
        return (prediction.float() - noise.float()).pow(2).mean(dim=(1, 2, 3))

    return training_step(loss, unet.parameters(), latents.shape, 1000, latents.device, seed=args.seed), {}


def pdae_step(args: argparse.Namespace, design: str, unet, scheduler, latents: torch.Tensor, pixels: torch.Tensor):
    """`train_pdae.py`'s step on the frozen UNet under the empty prompt's (random) embedding, with G of `design`."""
    unet.eval().requires_grad_(False)
    width = unet.config.cross_attention_dim
    embeds = torch.randn(1, SEQUENCE, width, generator=torch.Generator().manual_seed(3))
    condition = PromptEmbedding.from_embeds(embeds).to(args.device)
    torch.manual_seed(args.seed + 4)
    encoder = light_pixel_encoder(unet, args.latent_dim, 3, args.resolution).to(args.device).train()
    estimator = GradientEstimator.from_denoiser(
        unet, latent_dim=args.latent_dim, noise_scheduler=scheduler, **G_DESIGNS[design]
    ).to(args.device)
    denoiser = frozen_denoiser(unet, condition)

    def loss(noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return pdae_training_loss(
            denoiser, encoder, estimator.train(), scheduler, latents, noise, timesteps, encoder_input=pixels
        )

    trainable = [*encoder.parameters(), *estimator.parameters()]
    counts = {"encoder": parameter_count(encoder), "gradient_estimator": parameter_count(estimator)}
    return training_step(loss, trainable, latents.shape, 1000, latents.device, seed=args.seed), counts


def measure(config: str, args: argparse.Namespace) -> dict:
    """Build the UNet, the inputs and the step of `config`, then time it and take its peak memory, in this process."""
    if args.threads:
        torch.set_num_threads(args.threads)
    unet = build_unet(args)
    scheduler = DDPMScheduler(**SD_SCHEDULE)
    latents, pixels = inputs(args, unet)
    if config == "plain":
        step, counts = plain_step(args, unet, scheduler, latents)
    else:
        step, counts = pdae_step(args, config.removeprefix("pdae-"), unet, scheduler, latents, pixels)
    probe = MemoryProbe(torch.device(args.device))
    probe.start()
    times = timed(step, args.steps, args.warmup, torch.device(args.device))
    trainable = parameter_count(unet) if config == "plain" else sum(counts.values())
    return {**times, "parameters": {"unet": parameter_count(unet), **counts}, "trainable": trainable,
            "grads_and_adamw_mib": 3 * 4 * trainable / 2**20, **probe.result()}  # fmt: skip


def worker_argv(args: argparse.Namespace, config: str, out: str) -> list[str]:
    options = ["--configs", config, "--resolution", str(args.resolution), "--batch_size", str(args.batch_size),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--latent_dim", str(args.latent_dim),
               "--device", args.device, "--seed", str(args.seed), "--worker_json", out]  # fmt: skip
    if args.threads:
        options += ["--threads", str(args.threads)]
    if args.quick:
        options.append("--quick")
    return [sys.executable, str(Path(__file__).resolve()), *options]


def table(results: dict) -> str:
    plain = results["measured"].get("plain")
    lines = [
        "| step | trainable | seconds | CPU seconds | peak over build (MiB) | time vs plain | memory vs plain |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config, figures in results["measured"].items():
        ratio = {"time": "", "memory": ""}
        if plain and config != "plain":
            ratio["time"] = f"{figures['seconds'] / plain['seconds']:.2f}x"
            ratio["memory"] = f"{figures['peak_mib'] / plain['peak_mib']:.2f}x"
        lines.append(
            f"| {config} | {figures['trainable'] / 1e6:.1f}M | {figures['seconds']:.2f} | {figures['cpu_seconds']:.2f}"
            f" | {figures['peak_over_build_mib']:.0f} | {ratio['time']} | {ratio['memory']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker_json:
        Path(args.worker_json).write_text(json.dumps(measure(args.configs[0], args)))
        return {}
    results = {
        "setup": {
            **{key: getattr(args, key) for key in ("resolution", "batch_size", "steps", "warmup", "device")},
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
        },  # fmt: skip
        "measured": {},
    }
    for config in args.configs:
        results["measured"][config] = run_isolated(lambda out, c=config: worker_argv(args, c, out))
        print(f"{config}: {results['measured'][config]['seconds']:.2f} s", flush=True)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
