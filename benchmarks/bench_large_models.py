"""Seconds and peak memory of a PDAE training step on a large frozen model at its full size (random weights), with
each G design, against a plain training step of the whole model on the same latents: Stable Diffusion 1.5's UNet
(`--family sd15`) or DiT-XL/2-256 (`--family dit-xl-2`).

    python benchmarks/bench_large_models.py --resolution 256 --json sd.json     # SD 1.5, CPU, batch 1 (minutes)
    python benchmarks/bench_large_models.py --family dit-xl-2 --json dit.json   # DiT-XL/2 at 256 px
    python benchmarks/bench_large_models.py --device cuda --resolution 512 --batch_size 4
    python benchmarks/bench_large_models.py --quick                             # narrow layouts: a check that it runs

sd15: SD 1.5's `UNet2DConditionModel` layout (`SD15_UNET`, 859.5M parameters: widths 320-640-1280-1280,
cross-attention at the three finer levels, 768-wide text embeddings), conditioned on a random `(B, 77, 768)` text
embedding (the plain step) or on the stored empty prompt's (PDAE), latents `(B, 4, resolution / 8, resolution / 8)`
as SD's f=8 autoencoder makes them. dit-xl-2: facebook/DiT-XL-2-256's `DiTTransformer2DModel` (`DIT_XL_2`, 675M
parameters: 28 blocks of 16 heads x 72, patch 2, a learned sigma) on `(B, 4, 32, 32)` latents, asked with random
classes (plain) or the null class (PDAE). The autoencoder is left out: it costs both steps the same, or nothing with
cached latents.
  - plain: the model's own noise loss (on the noise half of a learned-sigma output), forward and backward, AdamW
    over all its parameters (fine-tuning it);
  - pdae-<design>: `train_pdae.py`'s step (`pdae_training_loss`): the frozen model's one pass without gradient, the
    light encoder on the pixel images and G forward and backward, AdamW over encoder and G. Designs: `full` (the
    UNet's up half, self-attention where SD cross-attends; for DiT, 4 blocks of its width reading 4 depths), `half`
    (half the widths) and `light` (half the widths and one resnet per level; for DiT, 2 blocks).
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
from diffusers import DDPMScheduler, DiTTransformer2DModel, ModelMixin, UNet2DConditionModel
from ldm_layouts import parameter_count
from measuring import MemoryProbe, run_isolated, timed
from step_timing import training_step

from diffusers_pdae.models import PromptEmbedding, frozen_denoiser, gradient_estimator_for
from diffusers_pdae.training.encoder_choice import light_encoder
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
# facebook/DiT-XL-2-256's transformer/config.json.
DIT_XL_2 = {
    "num_attention_heads": 16,
    "attention_head_dim": 72,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 28,
    "sample_size": 32,
    "patch_size": 2,
    "num_embeds_ada_norm": 1000,
}
QUICK = {
    "sd15": {**SD15_UNET, "block_out_channels": [32, 64, 64, 64], "cross_attention_dim": 32, "attention_head_dim": 2},
    "dit-xl-2": {**DIT_XL_2, "num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 4},
}
# SD 1.x's schedule (scaled_linear betas 0.00085-0.012); DiT's is diffusers' linear default.
SCHEDULES = {
    "sd15": {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"},
    "dit-xl-2": {"num_train_timesteps": 1000},
}
G_DESIGNS = {
    "full": {},
    "half": {"width_multiplier": 0.5},
    "light": {"width_multiplier": 0.5, "resnets_per_up_block": 1},
}
# The transformer G's options of each design (its width multiplier as above; `light` has two blocks, not four).
TOKEN_G_OPTIONS = {"full": {}, "half": {}, "light": {"num_layers": 2}}
CONFIGS = ("plain", *(f"pdae-{name}" for name in G_DESIGNS))
SEQUENCE = 77  # CLIP's tokens


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=tuple(QUICK), default="sd15", help="The frozen model's layout.")
    parser.add_argument("--resolution", type=int, default=256, help="Pixel size (SD's latents are 1/8 of it).")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=2, help="Timed steps (the median is reported).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps first (AdamW's state is made there).")
    parser.add_argument("--latent_dim", type=int, default=512, help="Width of the code z.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="A narrow layout at 128 px, one timed step.")
    parser.add_argument("--json", type=str, default=None, help="Write the figures here too.")
    parser.add_argument("--worker_json", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.resolution, args.steps, args.warmup = 128, 1, 0
    if args.family == "dit-xl-2":
        args.resolution = 256 if not args.quick else args.resolution  # DiT-XL/2-256's 32x32 latents
    if args.resolution % 8:
        parser.error(f"--resolution must be a multiple of 8 (the latents are 1/8 of it), got {args.resolution}")
    return args


def build_model(args: argparse.Namespace) -> ModelMixin:
    torch.manual_seed(args.seed)
    layout = QUICK[args.family] if args.quick else {"sd15": SD15_UNET, "dit-xl-2": DIT_XL_2}[args.family]
    model_class = UNet2DConditionModel if args.family == "sd15" else DiTTransformer2DModel
    return model_class.from_config({**layout, "sample_size": args.resolution // 8}).to(args.device)


def inputs(args: argparse.Namespace, model: ModelMixin) -> tuple[torch.Tensor, torch.Tensor]:
    """The same latents for every configuration, and the pixel images the PDAE encoder reads."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    size = model.config.sample_size
    latents = torch.randn(args.batch_size, 4, size, size, generator=generator)
    pixels = torch.rand(args.batch_size, 3, args.resolution, args.resolution, generator=generator) * 2 - 1
    return latents.to(args.device), pixels.to(args.device)


def condition(args: argparse.Namespace, model: ModelMixin) -> dict:
    """The plain step's conditioning: a random text embedding (SD) or random classes (DiT)."""
    generator = torch.Generator().manual_seed(2)
    if args.family == "sd15":
        text = torch.randn(args.batch_size, SEQUENCE, model.config.cross_attention_dim, generator=generator)
        return {"encoder_hidden_states": text.to(args.device)}
    classes = torch.randint(0, model.config.num_embeds_ada_norm, (args.batch_size,), generator=generator)
    return {"class_labels": classes.to(args.device)}


def plain_step(args: argparse.Namespace, model, scheduler, latents: torch.Tensor):
    """Training the whole model: its noise loss (on the noise half of a learned sigma), AdamW over its parameters."""
    model.train().requires_grad_(True)
    inputs_of_model = condition(args, model)

    def loss(noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        prediction = model(scheduler.add_noise(latents, noise, timesteps), timesteps, **inputs_of_model).sample
        return (prediction[:, : noise.shape[1]].float() - noise.float()).pow(2).mean(dim=(1, 2, 3))

    return training_step(loss, model.parameters(), latents.shape, 1000, latents.device, seed=args.seed), {}


def pdae_step(args: argparse.Namespace, design: str, model, scheduler, latents: torch.Tensor, pixels: torch.Tensor):
    """`train_pdae.py`'s step on the frozen model (SD under the empty prompt's random embedding, DiT under its null
    class), with G of `design`."""
    model.eval().requires_grad_(False)
    condition_module = None
    if args.family == "sd15":
        embeds = torch.randn(1, SEQUENCE, model.config.cross_attention_dim, generator=torch.Generator().manual_seed(3))
        condition_module = PromptEmbedding.from_embeds(embeds).to(args.device)
    denoiser = frozen_denoiser(model, condition_module)
    torch.manual_seed(args.seed + 4)
    encoder = light_encoder(3, args.resolution, args.latent_dim).to(args.device).train()
    options = dict(G_DESIGNS[design]) if denoiser.feature_kind == "unet" else {
        **{k: v for k, v in G_DESIGNS[design].items() if k == "width_multiplier"}, **TOKEN_G_OPTIONS[design]
    }  # fmt: skip
    estimator = gradient_estimator_for(denoiser, latent_dim=args.latent_dim, noise_scheduler=scheduler, **options)
    estimator.to(args.device)

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
    model = build_model(args)
    scheduler = DDPMScheduler(**SCHEDULES[args.family])
    latents, pixels = inputs(args, model)
    if config == "plain":
        step, counts = plain_step(args, model, scheduler, latents)
    else:
        step, counts = pdae_step(args, config.removeprefix("pdae-"), model, scheduler, latents, pixels)
    probe = MemoryProbe(torch.device(args.device))
    probe.start()
    times = timed(step, args.steps, args.warmup, torch.device(args.device))
    trainable = parameter_count(model) if config == "plain" else sum(counts.values())
    return {**times, "parameters": {"frozen_model": parameter_count(model), **counts}, "trainable": trainable,
            "grads_and_adamw_mib": 3 * 4 * trainable / 2**20, **probe.result()}  # fmt: skip


def worker_argv(args: argparse.Namespace, config: str, out: str) -> list[str]:
    values = {
        "--family": args.family,
        "--configs": config,
        "--resolution": args.resolution,
        "--batch_size": args.batch_size,
        "--steps": args.steps,
        "--warmup": args.warmup,
        "--latent_dim": args.latent_dim,
        "--device": args.device,
        "--seed": args.seed,
        "--worker_json": out,
    }
    options = [str(item) for pair in values.items() for item in pair]  # fmt: skip
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
