"""Pre-train a small unconditional DDPM (UNet2DModel + DDPMScheduler) to serve as PDAE's frozen DPM.

    accelerate launch examples/train_dpm.py --output_dir ddpm-mnist --max_train_steps 20000 --use_ema

Flags follow diffusers' `examples/unconditional_image_generation/train_unconditional.py`. Without --dataset_name or
--train_data_dir it trains on the bundled MNIST "train" split (offline). The output folder is an ordinary diffusers
`DDPMPipeline`.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from diffusers_pdae.data import image_geometry, load_image_dataset, load_training_dataset
from diffusers_pdae.image_utils import make_grid
from diffusers_pdae.training import (
    TrainingRun,
    add_data_args,
    add_optimization_args,
    add_output_args,
    dpm_model_card,
    finalize_args,
    make_parser,
    positive_int,
    sample_noise_and_timesteps,
)

# The bundled MNIST DPM: 1.6M parameters, 32x32 (28x28 digits padded), attention at 8x8.
MNIST_UNET_CONFIG = {
    "sample_size": 32,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": (32, 64, 64),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 8,
    "attention_head_dim": 32,
}


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--model_config_name_or_path",
        type=str,
        default=None,
        help="A UNet2DModel config (folder or JSON file, e.g. docs/configs/unet-rgb-32.json); without it the bundled "
        "MNIST layout, with the channels and size of the training images.",
    )
    parser.add_argument("--ddpm_num_steps", type=positive_int, default=1000, help="Training timesteps T.")
    parser.add_argument(
        "--ddpm_num_inference_steps", type=positive_int, default=1000, help="DDPM steps of the sample grids."
    )
    parser.add_argument("--ddpm_beta_schedule", type=str, default="linear", help="diffusers' beta schedule.")
    parser.add_argument("--eval_batch_size", type=positive_int, default=16, help="Samples in each sample grid.")
    parser.add_argument(
        "--num_class_embeds",
        type=positive_int,
        default=None,
        help="Train a class-conditional DPM with this many classes (the bundled MNIST has 10 digit labels); used to "
        "compare conditional and unconditional diffusion losses.",
    )
    add_data_args(parser)
    add_optimization_args(parser, learning_rate=2e-4)
    add_output_args(parser, output_dir="ddpm-model")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return finalize_args(build_parser().parse_args(argv))


# The bundled layout's UNet halves the image twice: sizes must be multiples of 4, and it is meant for small images.
LARGEST_DEFAULT_SIZE = 64


def data_geometry(args) -> tuple[int, int]:
    """`(channels, sample size)` for the default layout, from the training images (or refuse, naming the flag)."""
    if args.dataset_name is None and args.train_data_dir is None:
        return 1, args.resolution or MNIST_UNET_CONFIG["sample_size"]
    raw = load_image_dataset(args.dataset_name, args.dataset_config_name, args.train_data_dir, args.cache_dir)
    channels, side = image_geometry(raw, args.image_column)
    size = args.resolution or side
    if size % 4 or size > LARGEST_DEFAULT_SIZE:
        raise ValueError(
            f"The training images are {side} px on their shorter side; the default UNet layout needs a size that is "
            f"a multiple of 4 and at most {LARGEST_DEFAULT_SIZE}. Pass --resolution (e.g. 32), or "
            "--model_config_name_or_path for a larger UNet."
        )
    return channels, size


def build_unet(args) -> UNet2DModel:
    if args.model_config_name_or_path is None:
        channels, size = data_geometry(args)
        config = {**MNIST_UNET_CONFIG, "in_channels": channels, "out_channels": channels, "sample_size": size}
    elif os.path.isfile(args.model_config_name_or_path):
        with open(args.model_config_name_or_path) as f:
            config = json.load(f)
    else:
        config = UNet2DModel.load_config(args.model_config_name_or_path)
    if args.resolution is not None:
        config["sample_size"] = args.resolution
    if args.num_class_embeds is not None:
        config["num_class_embeds"] = args.num_class_embeds
    return UNet2DModel.from_config(config)


@torch.no_grad()
def sample_class_conditional(unet: UNet2DModel, noise_scheduler: DDPMScheduler, args, generator) -> np.ndarray:
    """DDPM samples of a class-conditional UNet, classes in turn (DDPMPipeline has no class labels)."""
    scheduler = DDPMScheduler.from_config(noise_scheduler.config)
    scheduler.set_timesteps(args.ddpm_num_inference_steps)
    size = unet.config.sample_size
    shape = (args.eval_batch_size, unet.config.in_channels, size, size)
    sample = torch.randn(shape, generator=generator).to(unet.device)
    labels = (torch.arange(args.eval_batch_size) % args.num_class_embeds).to(unet.device)
    for t in scheduler.timesteps:
        noise_pred = unet(sample, t, class_labels=labels).sample
        sample = scheduler.step(noise_pred, t, sample, generator=generator).prev_sample
    return (sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def main(argv=None):
    args = parse_args(argv)
    run = TrainingRun(args, "train_dpm")

    unet = build_unet(args)
    args.resolution = unet.config.sample_size
    noise_scheduler = DDPMScheduler(num_train_timesteps=args.ddpm_num_steps, beta_schedule=args.ddpm_beta_schedule)
    dataset = load_training_dataset(
        args.dataset_name, args.dataset_config_name, args.train_data_dir, args.image_column,
        unet.config.in_channels, args.resolution, args.center_crop, args.random_flip, args.cache_dir,
        check_images=not args.skip_image_check,
    )  # fmt: skip
    unet = run.prepare({"unet": unet}, dataset, "ddpm", noise_scheduler)

    def compute_loss(batch):
        clean_images = batch["pixel_values"]
        noise, timesteps = sample_noise_and_timesteps(clean_images, args.ddpm_num_steps, run.noise_generator)
        noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)
        class_labels = batch["class_labels"] if args.num_class_embeds is not None else None
        noise_pred = unet(noisy_images, timesteps, class_labels=class_labels).sample
        return F.mse_loss(noise_pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))

    def final_pipeline() -> DDPMPipeline:
        return DDPMPipeline(unet=run.final_model("unet"), scheduler=noise_scheduler)

    last_grid = {}

    def save_samples(global_step: int) -> None:
        generator = torch.Generator().manual_seed(0)
        if args.num_class_embeds is None:
            pipeline = final_pipeline()
            pipeline.set_progress_bar_config(desc=f"sampling at step {global_step}", leave=False)
            images = pipeline(
                generator=generator, batch_size=args.eval_batch_size,
                num_inference_steps=args.ddpm_num_inference_steps, output_type="np",
            ).images  # fmt: skip
        else:
            images = sample_class_conditional(run.final_model("unet"), noise_scheduler, args, generator)
        grid = make_grid(torch.from_numpy(images).permute(0, 3, 1, 2), nrow=min(8, args.eval_batch_size))
        last_grid["path"] = os.path.join(args.output_dir, "samples", f"step-{global_step:06d}.png")
        os.makedirs(os.path.dirname(last_grid["path"]), exist_ok=True)
        grid.save(last_grid["path"])
        for tracker in run.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_images("samples", images.transpose(0, 3, 1, 2), global_step)

    def on_epoch_end(epoch: int, global_step: int, last_epoch: bool) -> None:
        # after the last epoch the final pipeline is saved first, then sampled (below)
        if not last_epoch and run.accelerator.is_main_process and (epoch + 1) % args.save_images_epochs == 0:
            save_samples(global_step)

    loop = run.train(compute_loss, len(dataset), on_epoch_end=on_epoch_end, save_pipeline=final_pipeline)
    run.save_pipeline(final_pipeline)  # before sampling, which can take long on a CPU
    if run.accelerator.is_main_process:
        save_samples(loop.global_step)
    run.release(dpm_model_card, grid_source=last_grid.get("path"), card_image="samples.png")


if __name__ == "__main__":
    main()
