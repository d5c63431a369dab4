"""PDAE on a latent DPM at the full-size `CompVis/ldm-celebahq-256` layout (random weights): seconds and peak memory
of a PDAE training step against a plain LDM training step, and seconds per reconstruction.

    python benchmarks/bench_ldm.py                         # full size, this machine, batch 1
    python benchmarks/bench_ldm.py --layout scaled         # the scaled-down copy: a quick run
    python benchmarks/bench_ldm.py --threads 1 --json ldm.json   # on a shared CPU: read the CPU seconds
    python benchmarks/bench_ldm.py --device cuda --steps 10 --json ldm.json

Configurations, each measured in a fresh process of its own (`--isolation subprocess`, the default), so that one does
not inherit another's allocations:
  - `plain step`: one LDM training step as diffusers' `train_unconditional.py` runs it on latents: the 256x256x3
    images encoded by the frozen VQModel (`encode_images`, no gradient), noise added at random t, the UNet's forward
    with gradients, MSE to the noise, backward, AdamW over the UNet;
  - `pdae step`: one PDAE training step on the same LDM, the images encoded the same way: the frozen UNet's one pass
    without gradient, the default light encoder on the 256-pixel images, G (`GradientEstimator.from_unet`),
    `pdae_training_loss`, backward, AdamW over encoder + G;
  - `pdae reconstruct`: `PDAEPipeline(..., vae=vqvae).reconstruct(image, T)` (encode, PDAE inversion, decode);
  - `plain reconstruct`: the LDM alone: `invert(image, T, apply_shift=False)` then `decode(x_T, None, T)`;
  - `breakdown`: where the time goes: each part of the two steps (VQ encode, UNet forward + backward, AdamW, the
    frozen UNet pass with features, encoder and G forward + backward) and of a reconstruction (VQ decode, one plain
    or shifted noise prediction, i.e. one DDIM step) timed on its own.
Time: the median of `--steps` calls after `--warmup` untimed ones (`step_timing.median_seconds`, the device
synchronised around each); reconstructions: the median of `--reconstruct_runs` after `--warmup` untimed ones. Each
is given as wall-clock seconds and as this process's CPU seconds (`time.process_time`) over the same calls: on a CPU
shared with other processes, run with `--threads 1` and read the CPU seconds, which their load does not inflate (two
threads contending for two busy cores made even tiny steps up to 10x slower in wall time here).
Memory: on the CPU, the process's peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss`) at the end, over warm-up and timed
calls, minus its current RSS (`/proc/self/statm`) once the models and inputs are built; the peak RSS at that point is
recorded too (`peak_at_build_mib`), so a build transient above the steps' peak shows. On CUDA,
`torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` once built, minus the memory then allocated.
Prints a Markdown table and writes JSON with `--json`.
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
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from ldm_layouts import IMAGE_SIZE, LDMComponents, full_size_ldm, light_pixel_encoder, parameter_count, scaled_down_ldm
from measuring import MemoryProbe, run_isolated, timed
from step_timing import ddpm_loss_fn, training_step

from diffusers_pdae.latent_space import decode_latents, encode_images
from diffusers_pdae.models import GradientEstimator, PDAEEncoder
from diffusers_pdae.models.frozen_denoiser import frozen_denoiser
from diffusers_pdae.pipelines import PDAEPipeline
from diffusers_pdae.training.objective import pdae_training_loss

LAYOUTS = {"full": full_size_ldm, "scaled": scaled_down_ldm}
CONFIGS = ("plain step", "pdae step", "pdae reconstruct", "plain reconstruct", "breakdown")
# Wall-clock seconds, and this process's CPU seconds (the robust figure with one thread on a shared CPU).
TIME_KINDS = ("seconds", "cpu_seconds")
# The scaling factor the original CompVis VQ LDMs were trained with (see ldm_layouts.py); timing does not depend on it.
SCALING_FACTOR = 1.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=list(LAYOUTS), default="full", help="full-size or scaled-down copy.")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--latent_dim", type=int, default=512, help="Width of PDAE's code z.")
    parser.add_argument("--steps", type=int, default=3, help="Timed calls per measurement (median).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed calls before them.")
    parser.add_argument("--num_inference_steps", type=int, default=5, help="T: DDIM steps of each reconstruction.")
    parser.add_argument("--reconstruct_runs", type=int, default=2, help="Timed reconstructions (after --warmup).")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument(
        "--isolation",
        choices=("subprocess", "none"),
        default="subprocess",
        help="subprocess: each configuration in a fresh process (its peak memory is its own); none: all in this "
        "process (peak memory then accumulates: for quick checks only).",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    # Internal: run one configuration in this process and write its figures to a file.
    parser.add_argument("--worker", choices=CONFIGS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker_json", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- models


class LDMBench(NamedTuple):
    """One configuration's models on one device: the LDM's components, and PDAE's encoder and G (None where the
    configuration does not use them)."""

    ldm: LDMComponents
    train_scheduler: DDPMScheduler
    encoder: PDAEEncoder | None
    gradient_estimator: GradientEstimator | None
    pixels: torch.Tensor


def build(layout: str, device: torch.device, latent_dim: int, batch_size: int, seed: int, pdae: bool) -> LDMBench:
    """The LDM of `layout` (random seeded weights, VQ scaling factor 1.0), and with `pdae` the light pixel encoder
    and G; the frozen VQModel in eval mode without gradients; a batch of random pixel images in [-1, 1]."""
    ldm = LAYOUTS[layout](seed, scaling_factor=SCALING_FACTOR)
    ldm.vqvae.requires_grad_(False).eval().to(device)
    ldm.unet.to(device)
    # The training scripts' noise schedule: the same betas as the LDM's DDIMScheduler (scaled_linear).
    train_scheduler = DDPMScheduler.from_config(ldm.scheduler.config)
    encoder = gradient_estimator = None
    if pdae:
        torch.manual_seed(seed + 2)
        encoder = light_pixel_encoder(ldm.unet, latent_dim, ldm.vqvae.config.in_channels).to(device)
        gradient_estimator = GradientEstimator.from_unet(
            ldm.unet, latent_dim=latent_dim, noise_scheduler=train_scheduler
        ).to(device)
    generator = torch.Generator().manual_seed(seed + 3)
    shape = (batch_size, ldm.vqvae.config.in_channels, IMAGE_SIZE, IMAGE_SIZE)
    pixels = (torch.rand(shape, generator=generator) * 2 - 1).to(device)
    return LDMBench(ldm, train_scheduler, encoder, gradient_estimator, pixels)


def parameter_counts(bench: LDMBench) -> dict[str, int]:
    modules = {"unet": bench.ldm.unet, "vqvae": bench.ldm.vqvae, "encoder": bench.encoder}
    modules["gradient_estimator"] = bench.gradient_estimator
    return {name: parameter_count(module) for name, module in modules.items() if module is not None}


def latent_shape(bench: LDMBench) -> torch.Size:
    """The shape of the batch's diffusion latents (what the noise is drawn for), without encoding anything."""
    factor = 2 ** (len(bench.ldm.vqvae.config.block_out_channels) - 1)
    channels = bench.ldm.vqvae.config.latent_channels
    return torch.Size((bench.pixels.shape[0], channels, IMAGE_SIZE // factor, IMAGE_SIZE // factor))


def pipeline(bench: LDMBench) -> PDAEPipeline:
    """`PDAEPipeline` over the LDM with its VQModel, decoding deterministically with DDIM (`clip_sample=False`)."""
    scheduler = DDIMScheduler.from_config(bench.ldm.scheduler.config, clip_sample=False)
    pipe = PDAEPipeline(
        unet=bench.ldm.unet,
        scheduler=scheduler,
        encoder=bench.encoder,
        gradient_estimator=bench.gradient_estimator,
        vae=bench.ldm.vqvae,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------------------------------------------- steps


def plain_ldm_step(bench: LDMBench, seed: int = 0) -> Callable[[], None]:
    """One plain LDM training step (diffusers' `train_unconditional.py` on latents): VQ-encode the pixels without
    gradient, then the DPM's own loss (`step_timing.ddpm_loss_fn`) on the latents, backward, AdamW on the UNet."""
    unet, vqvae, scheduler = bench.ldm.unet, bench.ldm.vqvae, bench.train_scheduler
    unet.requires_grad_(True).train()

    def loss(noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            latents = encode_images(vqvae, bench.pixels)
        return ddpm_loss_fn(unet, scheduler, latents)(noise, timesteps)

    return training_step(loss, unet.parameters(), latent_shape(bench), 1000, bench.pixels.device, seed=seed)


def pdae_ldm_step(bench: LDMBench, seed: int = 0) -> Callable[[], None]:
    """One PDAE training step on the LDM (as `train_pdae.py` runs it on a latent DPM): VQ-encode the pixels without
    gradient, `pdae_training_loss` with the frozen UNet and the encoder reading the pixels, backward, AdamW over
    encoder + G."""
    unet, vqvae, scheduler = bench.ldm.unet, bench.ldm.vqvae, bench.train_scheduler
    encoder, estimator = bench.encoder, bench.gradient_estimator
    unet.requires_grad_(False).eval()
    encoder.train()
    estimator.train()

    def loss(noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            latents = encode_images(vqvae, bench.pixels)
        return pdae_training_loss(
            unet, encoder, estimator, scheduler, latents, noise, timesteps, encoder_input=bench.pixels
        )

    trainable = [*encoder.parameters(), *estimator.parameters()]
    return training_step(loss, trainable, latent_shape(bench), 1000, bench.pixels.device, seed=seed)


def pdae_reconstruction(bench: LDMBench, num_inference_steps: int) -> Callable[[], torch.Tensor]:
    """One PDAE reconstruction of the pixel batch: encode, PDAE inversion, decode, as `"pt"` images."""
    pipe = pipeline(bench)
    for module in (bench.ldm.unet, bench.encoder, bench.gradient_estimator):
        module.eval()

    def run() -> torch.Tensor:
        return pipe.reconstruct(bench.pixels, num_inference_steps=num_inference_steps, output_type="pt").images

    return run


def plain_reconstruction(bench: LDMBench, num_inference_steps: int) -> Callable[[], torch.Tensor]:
    """The LDM alone: plain DDIM inversion of the pixel batch's latents, then plain DDIM decoding, as `"pt"`."""
    pipe = pipeline(bench)
    bench.ldm.unet.eval()

    def run() -> torch.Tensor:
        x_T = pipe.invert(bench.pixels, num_inference_steps=num_inference_steps, apply_shift=False)
        return pipe.decode(x_T, None, num_inference_steps, output_type="pt").images

    return run


def breakdown_parts(bench: LDMBench) -> dict[str, Callable[[], object]]:
    """Each part of the two training steps and of one reconstruction step, as a call to time on its own."""
    unet, vqvae, scheduler = bench.ldm.unet, bench.ldm.vqvae, bench.train_scheduler
    encoder, estimator, pixels = bench.encoder, bench.gradient_estimator, bench.pixels
    device = pixels.device
    with torch.no_grad():
        latents = encode_images(vqvae, pixels)
    generator = torch.Generator(device).manual_seed(0)
    noise = torch.randn(latents.shape, generator=generator, device=device)
    timesteps = torch.randint(0, 1000, latents.shape[:1], generator=generator, device=device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    with torch.no_grad():
        features = frozen_denoiser(unet.eval()).forward_with_features(noisy, timesteps).features
        z_fixed = encoder.eval()(pixels).z
    unet_optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    pdae_optimizer = torch.optim.AdamW([*encoder.parameters(), *estimator.parameters()], lr=1e-4)

    def unet_forward_backward() -> None:
        unet.requires_grad_(True).train()
        F.mse_loss(unet(noisy, timesteps).sample, noise).backward()
        unet.zero_grad(set_to_none=True)

    def adamw(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:  # gradients of zeros, kept: AdamW's cost does not depend on their values
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    if parameter.grad is None:
                        parameter.grad = torch.zeros_like(parameter)
            optimizer.step()

        return step

    @torch.no_grad()
    def frozen_unet_pass() -> None:
        unet.requires_grad_(False).eval()
        frozen_denoiser(unet).forward_with_features(noisy, timesteps)

    def encoder_forward_backward() -> None:
        encoder.train()(pixels).z.square().mean().backward()
        encoder.zero_grad(set_to_none=True)

    def gradient_estimator_forward_backward() -> None:
        z = z_fixed.clone().requires_grad_(True)
        output = estimator.train()(features, z)
        output.sample.square().mean().backward()
        estimator.zero_grad(set_to_none=True)

    pipe = pipeline(bench)

    def noise_prediction(z: torch.Tensor | None) -> Callable[[], torch.Tensor]:
        @torch.no_grad()
        def run() -> torch.Tensor:
            for module in (unet, encoder, estimator):
                module.eval()
            return pipe.predict_noise(noisy, timesteps, z)

        return run

    return {
        "vq encode (no grad)": torch.no_grad()(lambda: encode_images(vqvae, pixels)),
        "unet forward + backward": unet_forward_backward,
        "adamw step, unet": adamw(unet_optimizer),
        "frozen unet pass with features (no grad)": frozen_unet_pass,
        "encoder forward + backward (pixels)": encoder_forward_backward,
        "G forward + backward": gradient_estimator_forward_backward,
        "adamw step, encoder + G": adamw(pdae_optimizer),
        "vq decode (no grad)": torch.no_grad()(lambda: decode_latents(vqvae, latents)),
        "encoder forward (no grad)": torch.no_grad()(lambda: encoder.eval()(pixels).z),
        "plain noise prediction (1 DDIM step)": noise_prediction(None),
        "shifted noise prediction (1 DDIM step)": noise_prediction(z_fixed),
    }


# ---------------------------------------------------------------------------------------------------- measuring


def measure(config: str, args: argparse.Namespace) -> dict:
    """Build what `config` needs, then time it (and take its peak memory) in this process."""
    device = torch.device(args.device)
    bench = build(args.layout, device, args.latent_dim, args.batch_size, args.seed, pdae=config != "plain step")
    result: dict = {"parameters": parameter_counts(bench)}
    probe = MemoryProbe(device)
    if config in ("plain step", "pdae step"):
        step = (plain_ldm_step if config == "plain step" else pdae_ldm_step)(bench, seed=args.seed)
        probe.start()
        result.update(timed(step, args.steps, args.warmup, device))
        result["timed_calls"] = {"warmup": args.warmup, "timed": args.steps}
    elif config in ("pdae reconstruct", "plain reconstruct"):
        build_run = pdae_reconstruction if config == "pdae reconstruct" else plain_reconstruction
        reconstruct, shapes = build_run(bench, args.num_inference_steps), []

        def run() -> None:
            shapes.append(list(reconstruct().shape))

        probe.start()
        result.update(timed(run, args.reconstruct_runs, args.warmup, device))
        result["output_shape"] = shapes[-1]
        result["num_inference_steps"] = args.num_inference_steps
        result["timed_calls"] = {"warmup": args.warmup, "timed": args.reconstruct_runs}
    elif config == "breakdown":
        parts = breakdown_parts(bench)
        probe.start()
        figures = {name: timed(call, args.steps, args.warmup, device) for name, call in parts.items()}
        result["seconds"] = {name: value["seconds"] for name, value in figures.items()}
        result["cpu_seconds"] = {name: value["cpu_seconds"] for name, value in figures.items()}
        result["timed_calls"] = {"warmup": args.warmup, "timed": args.steps}
    else:
        raise ValueError(f"Unknown configuration {config!r}; choose one of {CONFIGS}.")
    result.update(probe.result())
    return result


def worker_argv(args: argparse.Namespace, config: str, out: str) -> list[str]:
    """The command line that measures `config` alone in a fresh process and writes its figures to `out`."""
    options = {
        "--layout": args.layout,
        "--batch_size": args.batch_size,
        "--latent_dim": args.latent_dim,
        "--steps": args.steps,
        "--warmup": args.warmup,
        "--num_inference_steps": args.num_inference_steps,
        "--reconstruct_runs": args.reconstruct_runs,
        "--device": args.device,
        "--seed": args.seed,
        "--worker": config,
        "--worker_json": out,
    }
    if args.threads:
        options["--threads"] = args.threads
    return [sys.executable, str(Path(__file__).resolve()), *(str(item) for pair in options.items() for item in pair)]


def measure_isolated(config: str, args: argparse.Namespace) -> dict:
    """[`measure`] in a fresh Python process, so its peak memory is its own."""
    return run_isolated(lambda out: worker_argv(args, config, out))


# ---------------------------------------------------------------------------------------------------- report


def summary(measured: dict[str, dict], num_inference_steps: int) -> dict[str, float]:
    """The issue's targets as ratios (PDAE / plain step: wall and CPU seconds, peak memory over build and in all),
    PDAE / plain reconstruction, and each reconstruction's seconds per DDIM step: its total less the breakdown's
    autoencoder round trip (and encoder pass), over the 2T noise predictions of inversion and decoding."""
    out: dict[str, float] = {}
    plain, pdae = measured.get("plain step"), measured.get("pdae step")
    if plain and pdae:
        for kind in TIME_KINDS:
            out[f"pdae / plain step, {kind}"] = pdae[kind] / plain[kind]
        out["pdae / plain step, peak memory over build"] = pdae["peak_over_build_mib"] / plain["peak_over_build_mib"]
        out["pdae / plain step, peak memory in all"] = pdae["peak_mib"] / plain["peak_mib"]
    plain, pdae = measured.get("plain reconstruct"), measured.get("pdae reconstruct")
    if plain and pdae:
        for kind in TIME_KINDS:
            out[f"pdae / plain reconstruct, {kind}"] = pdae[kind] / plain[kind]
    breakdown = measured.get("breakdown")
    for kind in TIME_KINDS if breakdown else ():
        parts = breakdown[kind]
        shifted = parts["shifted noise prediction (1 DDIM step)"]
        out[f"shifted / plain noise prediction, {kind}"] = shifted / parts["plain noise prediction (1 DDIM step)"]
        autoencoder = parts["vq encode (no grad)"] + parts["vq decode (no grad)"]
        for name, fixed in (("plain", autoencoder), ("pdae", autoencoder + parts["encoder forward (no grad)"])):
            if f"{name} reconstruct" in measured:
                total = measured[f"{name} reconstruct"][kind]
                out[f"{name} reconstruct, {kind} per DDIM step (est.)"] = (total - fixed) / (2 * num_inference_steps)
    return out


def markdown(results: dict) -> str:
    """The results as Markdown tables."""
    measured, unit = results["measured"], "GPU allocated" if results["device"].startswith("cuda") else "RSS"
    lines = [
        f"{results['layout']} `CompVis/ldm-celebahq-256` layout (random weights) on {results['device_name']}, "
        f"batch {results['batch_size']}, {results['threads']} threads, torch {results['torch']}; "
        f"T = {results['num_inference_steps']} DDIM steps per reconstruction",
        "",
        f"| configuration | wall s (median) | CPU s (median) | calls (warm-up + timed) | peak {unit} over build "
        f"(MiB) | peak {unit} (MiB) |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for config in ("plain step", "pdae step", "plain reconstruct", "pdae reconstruct"):
        if config in measured:
            figures = measured[config]
            calls = figures["timed_calls"]
            lines.append(
                f"| {config} | {figures['seconds']:.2f} | {figures['cpu_seconds']:.2f} | "
                f"{calls['warmup']} + {calls['timed']} | {figures['peak_over_build_mib']:.0f} | "
                f"{figures['peak_mib']:.0f} |"
            )
    if results["summary"]:
        lines += ["", "| ratio or figure | value |", "| --- | ---: |"]
        lines += [f"| {name} | {value:.3f} |" for name, value in results["summary"].items()]
    if "breakdown" in measured:
        parts = measured["breakdown"]
        lines += ["", "| part (timed alone) | wall s (median) | CPU s (median) |", "| --- | ---: | ---: |"]
        lines += [
            f"| {name} | {value:.3f} | {parts['cpu_seconds'][name]:.3f} |" for name, value in parts["seconds"].items()
        ]
    counts = results.get("parameters", {})
    if counts:
        lines += ["", "parameters: " + ", ".join(f"{name} {count / 1e6:.1f}M" for name, count in counts.items())]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        result = measure(args.worker, args)
        Path(args.worker_json).write_text(json.dumps(result) + "\n")
        return result
    device = torch.device(args.device)
    results = {
        "layout": args.layout,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
        "batch_size": args.batch_size,
        "latent_dim": args.latent_dim,
        "num_inference_steps": args.num_inference_steps,
        "isolation": args.isolation,
        "measured": {},
    }
    for config in args.configs:
        print(f"measuring {config} ...", flush=True)
        measured = measure_isolated(config, args) if args.isolation == "subprocess" else measure(config, args)
        results["measured"][config] = measured
        print(json.dumps({config: measured}), flush=True)  # kept in the log should a later configuration fail
        results.setdefault("parameters", {}).update(measured.pop("parameters"))
    results["summary"] = summary(results["measured"], args.num_inference_steps)
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
