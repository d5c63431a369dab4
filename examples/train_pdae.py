"""Train PDAE's encoder and gradient estimator on a frozen, pre-trained diffusers UNet2DModel.

    accelerate launch examples/train_pdae.py --output_dir pdae-mnist --max_train_steps 20000   # on the bundled DPM

Flags follow diffusers' `examples/unconditional_image_generation/train_unconditional.py`. Without
--pretrained_model_name_or_path it trains on the bundled MNIST DPM; without --dataset_name or --train_data_dir on the
bundled MNIST "train" split (offline). Only the encoder and G are optimised; the
UNet stays frozen in the weight dtype. The output folder is a complete `PDAEPipeline`.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

import diffusers_pdae  # noqa: F401  (registers the PDAE classes for saving/loading)
from diffusers_pdae import GradientEstimator, PDAEEncoder, PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.data import load_training_dataset, validation_images
from diffusers_pdae.image_utils import labelled_rows
from diffusers_pdae.models.gradient_estimator import noise_schedule_of
from diffusers_pdae.training import (
    RankReport,
    TrainingConfig,
    TrainingLoop,
    add_data_args,
    add_optimization_args,
    add_output_args,
    averaged_model,
    claim_output_dir,
    finalize_args,
    finish_run,
    finite_float,
    freeze,
    make_accelerator,
    make_ema,
    make_optimization,
    pdae_model_card,
    pdae_training_loss,
    positive_int,
    register_training_state,
    sample_noise_and_timesteps,
    seed_run,
    start_trackers,
    weight_dtype,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        default=checkpoint_path("ddpm-mnist"),
        help="A diffusers DDPM/DDIM pipeline folder or Hub id with `unet/` and `scheduler/` (default: the bundled "
        "MNIST DPM).",
    )
    parser.add_argument("--latent_dim", type=positive_int, default=64, help="Width of the code z.")
    parser.add_argument(
        "--encoder_block_out_channels",
        type=positive_int,
        nargs="+",
        default=[32, 64, 128, 128],
        help="Encoder widths.",
    )
    parser.add_argument("--encoder_norm_num_groups", type=positive_int, default=8)
    parser.add_argument(
        "--lambda_gamma", type=finite_float, default=0.1, help="gamma in lambda_t = SNR^gamma / (1 + SNR)."
    )
    parser.add_argument(
        "--warm_start_from_unet", action="store_true", help="Initialise G's decoder half from the UNet's up blocks."
    )
    parser.add_argument(
        "--init_from_pipeline",
        type=str,
        default=None,
        help="Start from the encoder and gradient estimator of a trained PDAEPipeline (folder or Hub id) for the same "
        "UNet, e.g. to train a released checkpoint further.",
    )
    parser.add_argument("--num_validation_images", type=positive_int, default=8, help="Held-out images in the grid.")
    parser.add_argument(
        "--validation_inference_steps", type=positive_int, default=20, help="DDIM steps for validation."
    )
    add_data_args(parser)
    add_optimization_args(parser, learning_rate=1e-4)
    add_output_args(parser, output_dir="pdae-model")
    return finalize_args(parser.parse_args(argv))


def build_trainable_models(
    args, unet: UNet2DModel, noise_scheduler: DDPMScheduler
) -> tuple[PDAEEncoder, GradientEstimator]:
    """A fresh encoder and G for `unet`, or the ones of --init_from_pipeline (checked against `unet`)."""
    if args.init_from_pipeline is not None:
        encoder = PDAEEncoder.from_pretrained(args.init_from_pipeline, subfolder="encoder")
        gradient_estimator = GradientEstimator.from_pretrained(args.init_from_pipeline, subfolder="gradient_estimator")
        gradient_estimator.check_compatible(unet)
        gradient_estimator.check_schedule(noise_scheduler)
        gradient_estimator.register_to_config(train_noise_schedule=noise_schedule_of(noise_scheduler))
    else:
        encoder = PDAEEncoder(
            in_channels=unet.config.in_channels,
            sample_size=unet.config.sample_size,
            latent_dim=args.latent_dim,
            block_out_channels=tuple(args.encoder_block_out_channels),
            norm_num_groups=args.encoder_norm_num_groups,
        )
        gradient_estimator = GradientEstimator.from_unet(
            unet, latent_dim=args.latent_dim, warm_start=args.warm_start_from_unet, noise_scheduler=noise_scheduler
        )
    # Weights copied from a frozen UNet may arrive with requires_grad=False; both models must train.
    encoder.requires_grad_(True)
    gradient_estimator.requires_grad_(True)
    return encoder.train(), gradient_estimator.train()


def main(argv=None):
    args = parse_args(argv)
    config = TrainingConfig.from_args(args)
    accelerator = make_accelerator(config)
    claim_output_dir(accelerator, args)
    noise_generator = seed_run(accelerator, config.seed)

    unet = freeze(UNet2DModel.from_pretrained(args.pretrained_model_name_or_path, subfolder="unet"))
    unet.to(accelerator.device, dtype=weight_dtype(accelerator))
    noise_scheduler = DDPMScheduler.from_pretrained(args.pretrained_model_name_or_path, subfolder="scheduler")
    args.resolution = args.resolution or unet.config.sample_size
    if args.resolution != unet.config.sample_size:
        raise ValueError(
            f"--resolution {args.resolution} differs from the UNet's sample_size {unet.config.sample_size}; PDAE "
            "trains at the resolution of the pre-trained DPM."
        )

    encoder, gradient_estimator = build_trainable_models(args, unet, noise_scheduler)

    dataset = load_training_dataset(
        args.dataset_name, args.dataset_config_name, args.train_data_dir, args.image_column,
        unet.config.in_channels, args.resolution, args.center_crop, args.random_flip, args.cache_dir,
        check_images=not args.skip_image_check,
    )  # fmt: skip
    held_out = validation_images(dataset, args.num_validation_images)
    train_dataloader = torch.utils.data.DataLoader(
        held_out.train_dataset, batch_size=config.train_batch_size, shuffle=True,
        num_workers=args.dataloader_num_workers,
    )  # fmt: skip

    named_emas = {}
    if config.use_ema:
        named_emas = {
            "encoder_ema": make_ema(encoder, config),
            "gradient_estimator_ema": make_ema(gradient_estimator, config),
        }
    optimizer, lr_scheduler, schedule = make_optimization(
        config,
        list(encoder.parameters()) + list(gradient_estimator.parameters()),
        len(train_dataloader),
        accelerator.num_processes,
    )
    encoder, gradient_estimator, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        encoder, gradient_estimator, optimizer, train_dataloader, lr_scheduler
    )
    register_training_state(
        accelerator, {"encoder": encoder, "gradient_estimator": gradient_estimator}, named_emas, noise_generator
    )
    start_trackers(accelerator, "train_pdae", args)

    def compute_loss(batch):
        clean_images = batch["pixel_values"]
        noise, timesteps = sample_noise_and_timesteps(
            clean_images, noise_scheduler.config.num_train_timesteps, noise_generator
        )
        return pdae_training_loss(
            unet, encoder, gradient_estimator, noise_scheduler, clean_images, noise, timesteps, args.lambda_gamma
        )

    def build_pipeline() -> PDAEPipeline:
        final_encoder = averaged_model(accelerator.unwrap_model(encoder), named_emas.get("encoder_ema"))
        final_estimator = averaged_model(
            accelerator.unwrap_model(gradient_estimator), named_emas.get("gradient_estimator_ema")
        )
        scheduler = DDIMScheduler.from_config(noise_scheduler.config, clip_sample=False)
        pipeline = PDAEPipeline(unet, scheduler, final_encoder.eval(), final_estimator.eval())
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    last_validation = {}

    def validate(global_step: int) -> dict:
        pipeline = build_pipeline()
        images = held_out.images.to(accelerator.device)
        steps = args.validation_inference_steps
        inferred = pipeline.reconstruct(images, num_inference_steps=steps, output_type="pt").images
        generator = torch.Generator().manual_seed(0)
        random_xt = pipeline.reconstruct(
            images, num_inference_steps=steps, invert=False, generator=generator, output_type="pt"
        ).images
        originals = (images / 2 + 0.5).clamp(0, 1)
        grid = labelled_rows([("original", originals), ("inferred x_T", inferred), ("random x_T", random_xt)])
        grid_path = os.path.join(args.output_dir, "validation", f"step-{global_step:06d}.png")
        os.makedirs(os.path.dirname(grid_path), exist_ok=True)
        grid.save(grid_path)
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_image("reconstructions", np.asarray(grid), global_step, dataformats="HWC")
        last_validation.update(
            grid=grid_path,
            metrics={
                "val_mse_inferred_xT": (inferred - originals).pow(2).mean().item(),
                "val_mse_random_xT": (random_xt - originals).pow(2).mean().item(),
            },
        )
        return last_validation["metrics"]

    def on_step_end(global_step: int) -> dict | None:
        if args.validation_steps and global_step % args.validation_steps == 0 and accelerator.is_main_process:
            return validate(global_step)
        return None

    def on_epoch_end(epoch: int, global_step: int) -> None:
        last_epoch = global_step >= schedule.max_train_steps
        if accelerator.is_main_process and (last_epoch or (epoch + 1) % args.save_images_epochs == 0):
            accelerator.log(validate(global_step), step=global_step)

    loop = TrainingLoop(
        accelerator, config, [encoder, gradient_estimator], optimizer, lr_scheduler, train_dataloader, compute_loss,
        schedule, ema_models=list(named_emas.values()), on_step_end=on_step_end, on_epoch_end=on_epoch_end,
        rank_report=RankReport() if args.report_ranks else None,
    )  # fmt: skip
    loop.resume()
    loop.run()

    def release_pipeline() -> PDAEPipeline:
        pipeline = build_pipeline()
        pipeline.unet.to(dtype=torch.float32)
        return pipeline

    finish_run(
        accelerator, args, loop, release_pipeline, pdae_model_card,
        last_validation.get("metrics"), last_validation.get("grid"),
    )  # fmt: skip


if __name__ == "__main__":
    main()
