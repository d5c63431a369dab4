"""What a PDAE training step costs next to a DDPM training step of the same UNet (the cost of training the DPM).

    python benchmarks/benchmark_training_step.py --batch_size 64 --steps 20

On the bundled MNIST DPM: times (median seconds per step after warm-up) of
  - a DDPM step: UNet forward + backward + AdamW on the UNet;
  - a PDAE step: frozen UNet forward without grad (one pass, features captured), encoder and G forward + backward,
    AdamW on encoder and G;
each in fp32 and with bf16 autocast, and the process's peak RSS. With `--encoders light residual transformers`, the
PDAE step of each encoder design of `train_pdae.py --encoder_type` (the transformers one with --backbone_config).
Prints a table and writes JSON if asked.
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from step_timing import ddpm_loss_fn, median_seconds, pdae_loss_fn, training_step

from diffusers_pdae import GradientEstimator
from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.data import bundled_mnist_dataset
from diffusers_pdae.training import freeze
from diffusers_pdae.training.encoder_choice import ENCODER_TYPES, add_encoder_args, build_encoder, check_encoder_args

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BACKBONE_CONFIG = REPO / "examples" / "mnist_paper" / "encoder_designs" / "convnext-mnist.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", default=checkpoint_path("ddpm-mnist"), help="A DDPM pipeline folder.")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="Timed steps per configuration.")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's).")
    parser.add_argument(
        "--encoders",
        nargs="+",
        choices=list(ENCODER_TYPES),
        default=["light"],
        help="Encoder designs of the PDAE step.",
    )
    parser.add_argument(
        "--backbone_config", default=str(DEFAULT_BACKBONE_CONFIG), help="transformers config of that design."
    )
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


def ddpm_step_fn(pretrained: str, batch: torch.Tensor, autocast_dtype):
    unet = UNet2DModel.from_pretrained(pretrained, subfolder="unet").train()
    scheduler = DDPMScheduler.from_pretrained(pretrained, subfolder="scheduler")
    loss = ddpm_loss_fn(unet, scheduler, batch)
    return training_step(loss, unet.parameters(), batch.shape, 1000, batch.device, autocast_dtype)


def encoder_args(design: str, backbone_config: str) -> argparse.Namespace:
    """The encoder flags `train_pdae.py --encoder_type design` would get (latent_dim 64, the defaults otherwise)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--latent_dim", type=int, default=64)
    add_encoder_args(parser)
    argv = ["--encoder_type", design]
    if design == "transformers":
        argv += ["--encoder_backbone_config", backbone_config]
    args = parser.parse_args(argv)
    check_encoder_args(args)
    return args


def pdae_step_fn(pretrained: str, batch: torch.Tensor, autocast_dtype, encoder_flags: argparse.Namespace):
    unet = freeze(UNet2DModel.from_pretrained(pretrained, subfolder="unet"))
    scheduler = DDPMScheduler.from_pretrained(pretrained, subfolder="scheduler")
    encoder = build_encoder(encoder_flags, unet).train()
    estimator = GradientEstimator.from_unet(unet, latent_dim=64, warm_start=True).train()
    trainable = [param for model in (encoder, estimator) for param in model.parameters() if param.requires_grad]
    loss = pdae_loss_fn(unet, encoder, estimator, scheduler, batch)
    return training_step(loss, trainable, batch.shape, 1000, batch.device, autocast_dtype)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = bundled_mnist_dataset(32).images[: args.batch_size]
    results = {"batch_size": args.batch_size, "threads": torch.get_num_threads(), "seconds_per_step": {}}
    seconds = results["seconds_per_step"]
    cpu = torch.device("cpu")
    for precision, autocast_dtype in (("fp32", None), ("bf16-autocast", torch.bfloat16)):
        step = ddpm_step_fn(args.pretrained, batch, autocast_dtype)
        seconds[f"ddpm {precision}"] = median_seconds(step, args.steps, args.warmup, cpu)
        for design in args.encoders:
            step = pdae_step_fn(args.pretrained, batch, autocast_dtype, encoder_args(design, args.backbone_config))
            seconds[f"pdae {precision} {design}"] = median_seconds(step, args.steps, args.warmup, cpu)
    # By encoder class, at the precision of the bundled runs: what compare_encoders.py reads.
    results["pdae_step_by_encoder"] = {
        ENCODER_TYPES[design].__name__: seconds[f"pdae bf16-autocast {design}"] for design in args.encoders
    }
    first = args.encoders[0]
    results["pdae_over_ddpm_fp32"] = seconds[f"pdae fp32 {first}"] / seconds["ddpm fp32"]
    results["pdae_over_ddpm_bf16"] = seconds[f"pdae bf16-autocast {first}"] / seconds["ddpm bf16-autocast"]
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"batch {args.batch_size}, {results['threads']} threads, median of {args.steps} steps")
    for key, value in seconds.items():
        print(f"  {key:<32} {value:.3f} s/step")
    fp32, bf16 = results["pdae_over_ddpm_fp32"], results["pdae_over_ddpm_bf16"]
    print(f"  PDAE ({args.encoders[0]} encoder) / DDPM step: {fp32:.2f}x (fp32), {bf16:.2f}x (bf16)")
    print(f"  peak RSS: {results['peak_rss_mib']:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
