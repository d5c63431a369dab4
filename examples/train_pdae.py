"""Train PDAE's encoder and gradient estimator on a frozen, pre-trained diffusers UNet2DModel.

    accelerate launch examples/train_pdae.py --output_dir pdae-mnist --max_train_steps 20000   # on the bundled DPM

Flags follow diffusers' `examples/unconditional_image_generation/train_unconditional.py`. Without
--pretrained_model_name_or_path it trains on the bundled MNIST DPM; without --dataset_name or --train_data_dir on the
bundled MNIST "train" split (offline). Only the encoder and G are optimised; the
UNet stays frozen in the weight dtype. The output folder is a complete `PDAEPipeline`.
"""

from __future__ import annotations

import argparse

import PIL.Image
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

import diffusers_pdae  # noqa: F401  (registers the PDAE classes for saving/loading)
from diffusers_pdae import GradientEstimator, PDAEPipeline, load_encoder
from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.data import HeldOut, load_training_dataset, validation_images
from diffusers_pdae.image_utils import labelled_rows
from diffusers_pdae.models.encoders import EncoderModel
from diffusers_pdae.models.gradient_estimator import noise_schedule_of
from diffusers_pdae.training import (
    TrainingRun,
    add_data_args,
    add_encoder_args,
    add_optimization_args,
    add_output_args,
    build_encoder,
    check_encoder_args,
    finalize_args,
    finite_float,
    load_frozen_dpm,
    make_parser,
    pdae_model_card,
    pdae_training_loss,
    positive_float,
    positive_int,
    sample_noise_and_timesteps,
)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        default=checkpoint_path("ddpm-mnist"),
        help="A diffusers DDPM/DDIM pipeline folder or Hub id with `unet/` and `scheduler/` (default: the bundled "
        "MNIST DPM).",
    )
    parser.add_argument("--latent_dim", type=positive_int, default=64, help="Width of the code z.")
    parser.add_argument(
        "--lambda_gamma", type=finite_float, default=0.1, help="gamma in lambda_t = SNR^gamma / (1 + SNR)."
    )
    parser.add_argument(
        "--warm_start_from_unet", action="store_true", help="Initialise G's decoder half from the UNet's up blocks."
    )
    parser.add_argument(
        "--gradient_estimator_resnets_per_block",
        type=positive_int,
        default=None,
        help="Resnets in each of G's up blocks (default: the UNet's, layers_per_block + 1); fewer make G lighter.",
    )
    parser.add_argument(
        "--gradient_estimator_width_multiplier",
        type=positive_float,
        default=1.0,
        help="G's widths as a fraction of the UNet's (e.g. 0.5); not with --warm_start_from_unet.",
    )
    parser.add_argument(
        "--init_from_pipeline",
        type=str,
        default=None,
        help="Start from the encoder and gradient estimator of a trained PDAEPipeline (folder or Hub id) for the same "
        "UNet, e.g. to train a released checkpoint further.",
    )
    parser.add_argument(
        "--num_validation_images",
        type=positive_int,
        default=8,
        help="Images in the validation grid: taken out of the training data (evenly spaced), or from "
        "--validation_data_dir when given.",
    )
    parser.add_argument(
        "--validation_data_dir",
        type=str,
        default=None,
        help="A folder of validation images; then nothing is taken out of the training data.",
    )
    parser.add_argument(
        "--validation_inference_steps", type=positive_int, default=20, help="DDIM steps for validation."
    )
    add_encoder_args(parser)
    add_data_args(parser)
    add_optimization_args(parser, learning_rate=1e-4)
    add_output_args(parser, output_dir="pdae-model")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    args = finalize_args(build_parser().parse_args(argv))
    check_encoder_args(args)
    if args.init_from_pipeline is not None and args.encoder_type != "light":
        raise ValueError("--init_from_pipeline trains that pipeline's own encoder further; drop --encoder_type.")
    if args.init_from_pipeline is not None and (
        args.gradient_estimator_resnets_per_block is not None or args.gradient_estimator_width_multiplier != 1.0
    ):
        raise ValueError(
            "--init_from_pipeline trains that pipeline's own G further; drop the --gradient_estimator_* flags."
        )
    if args.warm_start_from_unet and args.gradient_estimator_width_multiplier != 1.0:
        raise ValueError(
            "--warm_start_from_unet copies the UNet's up blocks, which needs G at the UNet's widths; drop it or "
            "--gradient_estimator_width_multiplier."
        )
    return args


def build_trainable_models(
    args, unet: UNet2DModel, noise_scheduler: DDPMScheduler
) -> tuple[EncoderModel, GradientEstimator]:
    """A fresh encoder and G for `unet`, or the ones of --init_from_pipeline (checked against `unet`)."""
    if args.init_from_pipeline is not None:
        encoder = load_encoder(args.init_from_pipeline, subfolder="encoder")
        gradient_estimator = GradientEstimator.from_pretrained(args.init_from_pipeline, subfolder="gradient_estimator")
        gradient_estimator.check_compatible(unet)
        gradient_estimator.check_schedule(noise_scheduler)
        gradient_estimator.register_to_config(train_noise_schedule=noise_schedule_of(noise_scheduler))
    else:
        encoder = build_encoder(args, unet)
        gradient_estimator = GradientEstimator.from_unet(
            unet,
            latent_dim=args.latent_dim,
            warm_start=args.warm_start_from_unet,
            noise_scheduler=noise_scheduler,
            width_multiplier=args.gradient_estimator_width_multiplier,
            resnets_per_up_block=args.gradient_estimator_resnets_per_block,
        )
    # Weights copied from a frozen UNet may arrive with requires_grad=False; both models must train (a backbone
    # frozen by --freeze_encoder_backbone stays frozen: PDAETransformersEncoder.requires_grad_ keeps it so).
    encoder.requires_grad_(True)
    gradient_estimator.requires_grad_(True)
    return encoder.train(), gradient_estimator.train()


def main(argv=None):
    args = parse_args(argv)
    run = TrainingRun(args, "train_pdae")

    unet, noise_scheduler = load_frozen_dpm(args.pretrained_model_name_or_path)
    run.prepare_frozen(unet)
    args.resolution = args.resolution or unet.config.sample_size
    if args.resolution != unet.config.sample_size:
        raise ValueError(
            f"--resolution {args.resolution} differs from the UNet's sample_size {unet.config.sample_size}; PDAE "
            "trains at the resolution of the pre-trained DPM."
        )

    encoder, gradient_estimator = build_trainable_models(args, unet, noise_scheduler)

    def images_from(train_data_dir: str | None, dataset_name: str | None = None):
        return load_training_dataset(
            dataset_name, args.dataset_config_name, train_data_dir, args.image_column,
            unet.config.in_channels, args.resolution, args.center_crop, args.random_flip, args.cache_dir,
            check_images=not args.skip_image_check,
        )  # fmt: skip

    dataset = images_from(args.train_data_dir, args.dataset_name)
    if args.validation_data_dir is not None:
        validation_set = images_from(args.validation_data_dir)
        held_out = HeldOut(
            validation_images(validation_set, args.num_validation_images, keep_rest=False).images, dataset
        )
        held_out_text = f"{len(held_out.images)} images of --validation_data_dir (nothing taken from training)"
    else:
        held_out = validation_images(dataset, args.num_validation_images)
        held_out_text = f"{len(held_out.images)} of the {len(dataset)} training images (--num_validation_images)"
    encoder, gradient_estimator = run.prepare(
        {"encoder": encoder, "gradient_estimator": gradient_estimator}, held_out.train_dataset, "pdae",
        noise_scheduler, args.pretrained_model_name_or_path,
    )  # fmt: skip

    def compute_loss(batch):
        clean_images = batch["pixel_values"]
        noise, timesteps = sample_noise_and_timesteps(
            clean_images, noise_scheduler.config.num_train_timesteps, run.noise_generator
        )
        return pdae_training_loss(
            unet, encoder, gradient_estimator, noise_scheduler, clean_images, noise, timesteps, args.lambda_gamma
        )

    def build_pipeline() -> PDAEPipeline:
        scheduler = DDIMScheduler.from_config(noise_scheduler.config, clip_sample=False)
        final_encoder, final_estimator = run.final_model("encoder"), run.final_model("gradient_estimator")
        pipeline = PDAEPipeline(unet, scheduler, final_encoder.eval(), final_estimator.eval())
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def release_pipeline() -> PDAEPipeline:
        pipeline = build_pipeline()
        if pipeline.unet.dtype == torch.float32:
            return pipeline
        # The frozen UNet ran in the weight dtype (bf16/fp16): release the pre-trained weights themselves, not their
        # rounding, and leave the training copy as it is.
        original_unet, _ = load_frozen_dpm(args.pretrained_model_name_or_path)
        return PDAEPipeline(original_unet, pipeline.scheduler, pipeline.encoder, pipeline.gradient_estimator)

    def measure(global_step: int) -> tuple[dict, PIL.Image.Image]:
        pipeline = build_pipeline()
        pipeline.set_progress_bar_config(desc=f"validation at step {global_step}", leave=False)
        images = held_out.images.to(run.accelerator.device)
        steps = args.validation_inference_steps
        inferred = pipeline.reconstruct(images, num_inference_steps=steps, output_type="pt").images
        generator = torch.Generator().manual_seed(0)
        random_xt = pipeline.reconstruct(
            images, num_inference_steps=steps, invert=False, generator=generator, output_type="pt"
        ).images
        originals = (images / 2 + 0.5).clamp(0, 1)
        grid = labelled_rows([("original", originals), ("inferred x_T", inferred), ("random x_T", random_xt)])
        metrics = {
            "val_mse_inferred_xT": (inferred - originals).pow(2).mean().item(),
            "val_mse_random_xT": (random_xt - originals).pow(2).mean().item(),
        }
        return metrics, grid

    validation = run.periodic_validation(measure, "reconstructions", f"{len(held_out.images)} held-out images")
    run.train(
        compute_loss, len(held_out.train_dataset), held_out_text, validation=validation,
        save_pipeline=release_pipeline,
    )  # fmt: skip
    run.finish(release_pipeline, pdae_model_card, validation)


if __name__ == "__main__":
    main()
