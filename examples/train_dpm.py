"""Pre-train a small unconditional DDPM (UNet2DModel + DDPMScheduler) to serve as PDAE's frozen DPM, on images or, as
a latent diffusion model, on the latents of a frozen autoencoder.

    accelerate launch examples/train_dpm.py --output_dir ddpm-mnist --max_train_steps 20000 --use_ema
    accelerate launch examples/train_dpm.py --pretrained_vae_model_name_or_path vq-mnist --output_dir ldm-mnist

Flags follow diffusers' `examples/unconditional_image_generation/train_unconditional.py`. Without --dataset_name or
--train_data_dir it trains on the bundled MNIST "train" split (offline). The output folder is an ordinary diffusers
`DDPMPipeline`; with --pretrained_vae_model_name_or_path (the flag of diffusers' text-to-image training scripts) an
`LDMPipeline` (`vqvae`, `unet`, `scheduler`: a DDIMScheduler without clipping), whose UNet denoises the autoencoder's
latents, encoded on the fly (an AutoencoderKL's posterior sampled), while --resolution stays the pixel size.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, LDMPipeline, UNet2DModel

from diffusers_pdae.data import dataset_size, image_geometry, load_image_dataset, load_training_dataset
from diffusers_pdae.image_utils import make_grid
from diffusers_pdae.latent_space import downsampling_factor
from diffusers_pdae.training import (
    TrainingRun,
    add_data_args,
    add_optimization_args,
    add_output_args,
    add_streaming_args,
    add_vae_scaling_factor_arg,
    dpm_model_card,
    encode_batch,
    finalize_args,
    freeze,
    latent_unet_geometry,
    ldm_model_card,
    load_autoencoder,
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
    parser.add_argument(
        "--pretrained_vae_model_name_or_path",
        type=str,
        default=None,
        help="Train a latent diffusion model on the latents of this frozen autoencoder: a VQModel or AutoencoderKL "
        "folder or Hub id (e.g. from examples/train_autoencoder.py), or an LDM pipeline folder with vqvae/ or vae/. "
        "--resolution stays the pixel size; the output is an LDMPipeline.",
    )
    add_vae_scaling_factor_arg(parser, "--pretrained_vae_model_name_or_path: the latents are scaled by it")
    parser.add_argument("--ddpm_num_steps", type=positive_int, default=1000, help="Training timesteps T.")
    parser.add_argument(
        "--ddpm_num_inference_steps",
        type=positive_int,
        default=1000,
        help="Steps of the sample grids (DDPM steps; DDIM steps for a latent diffusion model).",
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
    add_streaming_args(parser)
    add_optimization_args(parser, learning_rate=2e-4)
    add_output_args(parser, output_dir="ddpm-model")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    args = finalize_args(build_parser().parse_args(argv))
    if args.vae_scaling_factor is not None and args.pretrained_vae_model_name_or_path is None:
        raise ValueError(
            "--vae_scaling_factor scales an autoencoder's latents: pass --pretrained_vae_model_name_or_path too."
        )
    if args.pretrained_vae_model_name_or_path is not None and args.num_class_embeds is not None:
        raise ValueError(
            "--num_class_embeds cannot be combined with --pretrained_vae_model_name_or_path: diffusers' LDMPipeline "
            "samples unconditionally."
        )
    return args


# The bundled layout's UNet halves the image twice: sizes must be multiples of 4, and it is meant for small images.
LARGEST_DEFAULT_SIZE = 64


def image_geometry_of(args) -> tuple[int, int]:
    """`(channels, shorter side)` of the training images (the bundled MNIST: 1 and 32)."""
    if args.dataset_name is None and args.train_data_dir is None:
        return 1, MNIST_UNET_CONFIG["sample_size"]
    raw = load_image_dataset(
        args.dataset_name, args.dataset_config_name, args.train_data_dir, args.cache_dir, streaming=args.streaming
    )
    return image_geometry(raw, args.image_column)


def data_geometry(args) -> tuple[int, int]:
    """`(channels, sample size)` for the default layout, from the training images (or refuse, naming the flag)."""
    if args.dataset_name is None and args.train_data_dir is None:
        return 1, args.resolution or MNIST_UNET_CONFIG["sample_size"]
    channels, side = image_geometry_of(args)
    size = args.resolution or side
    if size % 4 or size > LARGEST_DEFAULT_SIZE:
        raise ValueError(
            f"The training images are {side} px on their shorter side; the default UNet layout needs a size that is "
            f"a multiple of 4 and at most {LARGEST_DEFAULT_SIZE}. Pass --resolution (e.g. 32), or "
            "--model_config_name_or_path for a larger UNet."
        )
    return channels, size


def unet_layout(args) -> dict:
    """The UNet config of --model_config_name_or_path (a JSON file or a folder), or the bundled MNIST layout."""
    if args.model_config_name_or_path is None:
        return dict(MNIST_UNET_CONFIG)
    if os.path.isfile(args.model_config_name_or_path):
        with open(args.model_config_name_or_path) as f:
            return json.load(f)
    return dict(UNet2DModel.load_config(args.model_config_name_or_path))


def latent_sample_size(args, config: dict, vae) -> int:
    """The UNet's sample size on `vae`'s latents, with `args.resolution` set to the pixel size: --resolution, or the
    given layout's sample size times the downsampling, or the training images' size (or refuse, naming the flag)."""
    given = args.model_config_name_or_path is not None
    if args.resolution is None and given and config.get("sample_size") is None:
        raise ValueError("The UNet config of --model_config_name_or_path has no sample_size: pass --resolution.")
    if args.resolution is None:
        args.resolution = config["sample_size"] * downsampling_factor(vae) if given else image_geometry_of(args)[1]
    defaults = inspect.signature(UNet2DModel.__init__).parameters
    channels = tuple(config.get(key, defaults[key].default) for key in ("in_channels", "out_channels"))
    size = latent_unet_geometry(vae, args.resolution, channels if given else None)
    if not given and (size % 4 or size > LARGEST_DEFAULT_SIZE):
        raise ValueError(
            f"The latents of {args.resolution}-px images are {size}x{size}; the default UNet layout needs a latent "
            f"size that is a multiple of 4 and at most {LARGEST_DEFAULT_SIZE}. Pass --resolution (e.g. "
            f"{8 * downsampling_factor(vae)}), or --model_config_name_or_path for a larger UNet."
        )
    return size


def unet_config(args, vae=None) -> dict:
    """The config of the UNet to train, on the training images or on `vae`'s latents, checked before any work; sets
    `args.resolution` to the pixel size."""
    config = unet_layout(args)
    default_layout = args.model_config_name_or_path is None
    if vae is not None:
        config["sample_size"] = latent_sample_size(args, config, vae)
        if default_layout:
            config.update(in_channels=vae.config.latent_channels, out_channels=vae.config.latent_channels)
    else:
        if default_layout:
            channels, size = data_geometry(args)
            config.update(in_channels=channels, out_channels=channels, sample_size=size)
        if args.resolution is not None:
            config["sample_size"] = args.resolution
        args.resolution = config.get("sample_size")
    if args.num_class_embeds is not None:
        config["num_class_embeds"] = args.num_class_embeds
    return config


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
    vae_path = args.pretrained_vae_model_name_or_path
    vae = None if vae_path is None else freeze(load_autoencoder(vae_path, scaling_factor=args.vae_scaling_factor))
    config = unet_config(args, vae)
    run = TrainingRun(args, "train_dpm")

    unet = UNet2DModel.from_config(config)
    # An LDM's latents are not bounded to [-1, 1]: its schedulers must not clip them (as CompVis/ldm-celebahq-256's)
    latent_options = {} if vae is None else {"clip_sample": False}
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=args.ddpm_num_steps, beta_schedule=args.ddpm_beta_schedule, **latent_options
    )
    dataset = load_training_dataset(
        args.dataset_name, args.dataset_config_name, args.train_data_dir, args.image_column,
        unet.config.in_channels if vae is None else vae.config.in_channels, args.resolution, args.center_crop,
        args.random_flip, args.cache_dir, check_images=not args.skip_image_check, streaming=args.streaming,
    )  # fmt: skip
    latent_shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    if vae is not None:
        run.prepare_frozen(vae, "vae")
    unet = run.prepare({"unet": unet}, dataset, "ddpm" if vae is None else "ldm", noise_scheduler, vae_path)

    def compute_loss(batch):
        clean_images = batch["pixel_values"]
        if vae is not None:
            clean_images = encode_batch(vae, clean_images, run.noise_generator)
        noise, timesteps = sample_noise_and_timesteps(clean_images, args.ddpm_num_steps, run.noise_generator)
        noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)
        class_labels = batch["class_labels"] if args.num_class_embeds is not None else None
        noise_pred = unet(noisy_images, timesteps, class_labels=class_labels).sample
        return F.mse_loss(noise_pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))

    released_vae = []

    def final_pipeline() -> DDPMPipeline | LDMPipeline:
        if vae is None:
            return DDPMPipeline(unet=run.final_model("unet"), scheduler=noise_scheduler)
        if not released_vae:  # the source weights in float32, not the training copy in the run's weight dtype
            released = load_autoencoder(vae_path, scaling_factor=args.vae_scaling_factor)
            released_vae.append(released.to(run.accelerator.device))
        scheduler = DDIMScheduler.from_config(noise_scheduler.config, clip_sample=False)
        return LDMPipeline(vqvae=released_vae[0], unet=run.final_model("unet"), scheduler=scheduler)

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

    loop = run.train(compute_loss, dataset_size(dataset), on_epoch_end=on_epoch_end, save_pipeline=final_pipeline)
    run.save_pipeline(final_pipeline)  # before sampling, which can take long on a CPU
    if run.accelerator.is_main_process:
        save_samples(loop.global_step)
    card = dpm_model_card
    if vae is not None:
        card = functools.partial(ldm_model_card, class_name=type(vae).__name__, latent_shape=latent_shape)
    run.release(card, grid_source=last_grid.get("path"), card_image="samples.png")


if __name__ == "__main__":
    main()
