"""What a PDAE training step costs next to a DDPM training step of the same UNet (the cost of training the DPM).

    python benchmarks/benchmark_training_step.py --batch_size 64 --steps 20

On the bundled MNIST DPM: times (median seconds per step after warm-up) of
  - a DDPM step: UNet forward + backward + AdamW on the UNet;
  - a PDAE step: frozen UNet forward without grad (one pass, features captured), encoder and G forward + backward,
    AdamW on encoder and G;
each in fp32 and with bf16 autocast, and the process's peak RSS. Prints a table and writes JSON if asked.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from diffusers_pdae import GradientEstimator, PDAEEncoder
from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.data import bundled_mnist_dataset
from diffusers_pdae.training import freeze, pdae_training_loss, sample_timesteps


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", default=checkpoint_path("ddpm-mnist"), help="A DDPM pipeline folder.")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="Timed steps per configuration.")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's).")
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


def time_steps(step, count: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        step()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def ddpm_step_fn(pretrained: str, batch: torch.Tensor, autocast: bool, generator: torch.Generator):
    unet = UNet2DModel.from_pretrained(pretrained, subfolder="unet").train()
    scheduler = DDPMScheduler.from_pretrained(pretrained, subfolder="scheduler")
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)

    def step():
        noise = torch.randn(batch.shape, generator=generator)
        timesteps = sample_timesteps(batch.shape[0], 1000, "cpu", generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            noise_pred = unet(scheduler.add_noise(batch, noise, timesteps), timesteps).sample
        F.mse_loss(noise_pred.float(), noise).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def pdae_step_fn(pretrained: str, batch: torch.Tensor, autocast: bool, generator: torch.Generator):
    unet = freeze(UNet2DModel.from_pretrained(pretrained, subfolder="unet"))
    scheduler = DDPMScheduler.from_pretrained(pretrained, subfolder="scheduler")
    encoder = PDAEEncoder(
        in_channels=1, sample_size=32, latent_dim=64, block_out_channels=(32, 64, 128, 128), norm_num_groups=8
    ).train()
    estimator = GradientEstimator.from_unet(unet, latent_dim=64, warm_start=True).train()
    optimizer = torch.optim.AdamW(list(encoder.parameters()) + list(estimator.parameters()), lr=1e-4)

    def step():
        noise = torch.randn(batch.shape, generator=generator)
        timesteps = sample_timesteps(batch.shape[0], 1000, "cpu", generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = pdae_training_loss(unet, encoder, estimator, scheduler, batch, noise, timesteps).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    batch = bundled_mnist_dataset(32).images[: args.batch_size]
    results = {"batch_size": args.batch_size, "threads": torch.get_num_threads(), "seconds_per_step": {}}
    for name, make_step in (("ddpm", ddpm_step_fn), ("pdae", pdae_step_fn)):
        for precision, autocast in (("fp32", False), ("bf16-autocast", True)):
            step = make_step(args.pretrained, batch, autocast, generator)
            results["seconds_per_step"][f"{name} {precision}"] = time_steps(step, args.steps, args.warmup)
    seconds = results["seconds_per_step"]
    results["pdae_over_ddpm_fp32"] = seconds["pdae fp32"] / seconds["ddpm fp32"]
    results["pdae_over_ddpm_bf16"] = seconds["pdae bf16-autocast"] / seconds["ddpm bf16-autocast"]
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"batch {args.batch_size}, {results['threads']} threads, median of {args.steps} steps")
    for key, value in seconds.items():
        print(f"  {key:<22} {value:.3f} s/step")
    fp32, bf16 = results["pdae_over_ddpm_fp32"], results["pdae_over_ddpm_bf16"]
    print(f"  PDAE / DDPM step: {fp32:.2f}x (fp32), {bf16:.2f}x (bf16)")
    print(f"  peak RSS: {results['peak_rss_mib']:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
