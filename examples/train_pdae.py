"""Train PDAE's encoder and gradient estimator on a frozen, pre-trained diffusers diffusion model.

    accelerate launch examples/train_pdae.py --output_dir pdae-mnist --max_train_steps 20000   # on the bundled DPM

Flags follow diffusers' `examples/unconditional_image_generation/train_unconditional.py`. Without
--pretrained_model_name_or_path it trains on the bundled MNIST DPM; without --dataset_name or --train_data_dir on the
bundled MNIST "train" split (offline). Only the encoder and G are optimised; the
frozen model stays frozen in the weight dtype. The output folder is a complete `PDAEPipeline`.

A latent DPM (an `LDMPipeline` folder or Hub id: `unet`, `vqvae` or `vae`, `scheduler`) is trained in its latent
space: the frozen autoencoder encodes each batch, the UNet and G work on the latents, the encoder reads the pixel
images (--resolution is their size), and the released pipeline carries the autoencoder as its `vae`.

A Stable Diffusion folder or Hub id (a `StableDiffusionPipeline`: `unet` a `UNet2DConditionModel`, `vae`,
`text_encoder`, `tokenizer`, `scheduler`) is a latent DPM whose UNet is asked with a fixed prompt's embedding, the
empty prompt by default (--prompt): its unconditional branch. The embedding is computed once and released as the
pipeline's `prompt_embedding`; the text encoder and tokenizer are not kept.
"""

from __future__ import annotations

import argparse

import PIL.Image
import torch
from diffusers import DDIMScheduler, DDPMScheduler

import diffusers_pdae  # noqa: F401  (registers the PDAE classes for saving/loading)
from diffusers_pdae import PDAEPipeline, load_encoder
from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.data import HeldOut, dataset_size, load_training_dataset, validation_images
from diffusers_pdae.data.latent_cache import CachedLatentDataset
from diffusers_pdae.image_utils import labelled_rows
from diffusers_pdae.latent_space import downsampling_factor, encoder_reads_pixels
from diffusers_pdae.models import gradient_estimator_for, load_gradient_estimator
from diffusers_pdae.models.encoders import EncoderModel
from diffusers_pdae.models.frozen_denoiser import FrozenDenoiser, frozen_denoiser
from diffusers_pdae.models.gradient_estimator import noise_schedule_of
from diffusers_pdae.models.gradient_estimators import GradientEstimatorModel
from diffusers_pdae.training import (
    TrainingRun,
    add_data_args,
    add_encoder_args,
    add_optimization_args,
    add_output_args,
    add_streaming_args,
    add_vae_scaling_factor_arg,
    as_stored,
    build_encoder,
    check_encoder_args,
    clean_samples,
    finalize_args,
    finite_float,
    frozen_components,
    load_frozen_autoencoder,
    load_frozen_dpm,
    make_parser,
    pdae_model_card,
    pdae_training_loss,
    positive_float,
    positive_int,
    sample_noise_and_timesteps,
)
from diffusers_pdae.training.args import non_negative_int


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        default=checkpoint_path("ddpm-mnist"),
        help="A diffusers DDPM/DDIM pipeline folder or Hub id with `unet/` and `scheduler/`, or a latent DPM's (an "
        "LDMPipeline: also `vqvae/` or `vae/`) (default: the bundled MNIST DPM).",
    )
    parser.add_argument(
        "--cache_latents",
        action="store_true",
        help="For a latent DPM: encode the training images with the frozen autoencoder once, before training, "
        "instead of at every step (both orientations with --random_flip); needs --center_crop for image files.",
    )
    add_vae_scaling_factor_arg(parser, "a latent DPM's autoencoder: the one its UNet was trained with")
    parser.add_argument(
        "--prompt",
        type=str,
        default=None,
        help="For a text-conditional DPM (Stable Diffusion): the fixed prompt its UNet is asked with, embedded as "
        "StableDiffusionPipeline embeds a prompt (default: the empty prompt, the unconditional branch).",
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
        "--gradient_estimator_layers",
        type=positive_int,
        default=None,
        help="For a diffusion transformer (DiT): the transformer G's blocks (default 4).",
    )
    parser.add_argument(
        "--gradient_estimator_feature_layers",
        type=non_negative_int,
        nargs="+",
        default=None,
        help="For a diffusion transformer (DiT): the frozen model's blocks whose tokens G reads (default: four, "
        "evenly spaced, the last included).",
    )
    parser.add_argument(
        "--gradient_checkpointing",
        action="store_true",
        help="Recompute the activations of G and the encoder in the backward pass instead of keeping them: less "
        "memory for a slower step (docs/training.md, 'Memory: what fits where').",
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
    add_streaming_args(parser)
    add_optimization_args(parser, learning_rate=1e-4)
    add_output_args(parser, output_dir="pdae-model")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    args = finalize_args(build_parser().parse_args(argv))
    check_encoder_args(args)
    if args.cache_latents and args.streaming:
        raise ValueError("--cache_latents encodes the whole dataset before training; drop it with --streaming.")
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


def check_image_geometry(args, denoiser: FrozenDenoiser, vae) -> None:
    """--resolution is the size of the images the DPM makes: the UNet's samples, or for a latent DPM what its
    autoencoder decodes them to (set it when not given; refuse another value naming the right one)."""
    sample_size = frozen_denoiser(denoiser).sample_shape[1]
    size = sample_size if vae is None else sample_size * downsampling_factor(vae)
    what = "the UNet's sample_size" if vae is None else (
        f"the UNet's sample_size {sample_size} times the autoencoder's downsampling factor "
        f"{downsampling_factor(vae)}: a latent DPM's --resolution is its pixel size"
    )  # fmt: skip
    for flag in ("vae_scaling_factor", "cache_latents"):
        if getattr(args, flag) not in (None, False) and vae is None:
            raise ValueError(f"--{flag} applies to a latent DPM (a folder with vqvae/ or vae/); drop it.")
    if args.cache_latents and not args.center_crop and (args.train_data_dir or args.dataset_name):
        raise ValueError(
            "--cache_latents encodes each image once, which random crops would change every epoch: add --center_crop."
        )
    args.resolution = args.resolution or size
    if args.resolution != size:
        raise ValueError(
            f"--resolution {args.resolution} does not fit the pre-trained DPM: pass --resolution {size} ({what}); "
            "PDAE trains at the resolution of the DPM."
        )
    args.autoencoder = None if vae is None else type(vae).__name__  # recorded in training_info.json and the card


def build_trainable_models(
    args, denoiser: FrozenDenoiser, noise_scheduler: DDPMScheduler, image_channels: int
) -> tuple[EncoderModel, GradientEstimatorModel]:
    """A fresh encoder (of `image_channels`-channel images at --resolution) and G for the frozen model, or the ones of
    --init_from_pipeline (checked against it)."""
    denoiser = frozen_denoiser(denoiser)
    if args.init_from_pipeline is not None:
        encoder = load_encoder(args.init_from_pipeline, subfolder="encoder")
        gradient_estimator = load_gradient_estimator(args.init_from_pipeline, subfolder="gradient_estimator")
        for model, subfolder in ((encoder, "encoder"), (gradient_estimator, "gradient_estimator")):
            as_stored(model, type(model).load_config(args.init_from_pipeline, subfolder=subfolder))
        gradient_estimator.check_compatible(denoiser)
        gradient_estimator.check_schedule(noise_scheduler)
        gradient_estimator.register_to_config(train_noise_schedule=noise_schedule_of(noise_scheduler))
    else:
        encoder = build_encoder(args, denoiser, (image_channels, args.resolution))
        gradient_estimator = gradient_estimator_for(
            denoiser,
            latent_dim=args.latent_dim,
            warm_start=args.warm_start_from_unet,
            noise_scheduler=noise_scheduler,
            width_multiplier=args.gradient_estimator_width_multiplier,
            **gradient_estimator_options(args, denoiser),
        )
    # Weights copied from a frozen UNet may arrive with requires_grad=False; both models must train (a backbone
    # frozen by --freeze_encoder_backbone stays frozen: PDAETransformersEncoder.requires_grad_ keeps it so).
    encoder.requires_grad_(True)
    gradient_estimator.requires_grad_(True)
    if args.gradient_checkpointing:  # diffusers' runtime setting: neither config nor weights change
        for model in (encoder, gradient_estimator):
            model.enable_gradient_checkpointing()
    return encoder.train(), gradient_estimator.train()


def gradient_estimator_options(args, denoiser: FrozenDenoiser) -> dict:
    """The --gradient_estimator_* flags of G's design for the frozen model (refusing those of the other design)."""
    unet_options = {"resnets_per_up_block": args.gradient_estimator_resnets_per_block}
    token_options = {
        "num_layers": args.gradient_estimator_layers,
        "feature_layers": args.gradient_estimator_feature_layers,
    }
    own, other = (token_options, unet_options) if denoiser.feature_kind == "tokens" else (unet_options, token_options)
    given = [name for name, value in other.items() if value is not None]
    if given:
        flag = {"resnets_per_up_block": "resnets_per_block", "num_layers": "layers"}.get(given[0], given[0])
        raise ValueError(
            f"--gradient_estimator_{flag} does not apply to the G of a {type(denoiser.model).__name__}; drop it."
        )
    return {name: value for name, value in own.items() if value is not None}


def main(argv=None):
    args = parse_args(argv)
    run = TrainingRun(args, "train_pdae")

    denoiser, noise_scheduler = load_frozen_dpm(args.pretrained_model_name_or_path, args.prompt)
    vae = load_frozen_autoencoder(args.pretrained_model_name_or_path, args.vae_scaling_factor)
    check_image_geometry(args, denoiser, vae)
    args.frozen_model = type(denoiser.model).__name__  # recorded in training_info.json and the card
    frozen = ((denoiser.component_name, denoiser.model), ("vae", vae), ("prompt_embedding", denoiser.condition))
    for name, model in frozen:
        if model is not None:
            run.prepare_frozen(model, name)

    image_channels = denoiser.sample_shape[0] if vae is None else vae.config.in_channels
    encoder, gradient_estimator = build_trainable_models(args, denoiser, noise_scheduler, image_channels)
    image_shape = (image_channels, args.resolution, args.resolution)
    reads_pixels = vae is not None and encoder_reads_pixels(encoder.config, image_shape)

    def images_from(train_data_dir: str | None, dataset_name: str | None = None, random_flip: bool = False, **kw):
        return load_training_dataset(
            dataset_name, args.dataset_config_name, train_data_dir, args.image_column,
            image_channels, args.resolution, args.center_crop, random_flip, args.cache_dir,
            check_images=not args.skip_image_check, **kw,
        )  # fmt: skip

    random_flip = args.random_flip and not args.cache_latents
    dataset = images_from(args.train_data_dir, args.dataset_name, random_flip, streaming=args.streaming)
    if args.validation_data_dir is not None:
        validation_set = images_from(args.validation_data_dir, folder_flag="--validation_data_dir")
        held_out = HeldOut(
            validation_images(validation_set, args.num_validation_images, keep_rest=False).images, dataset
        )
        held_out_text = f"{len(held_out.images)} images of --validation_data_dir (nothing taken from training)"
    else:
        held_out = validation_images(dataset, args.num_validation_images)
        held_out_text = f"{held_out.source} (--num_validation_images)"
    train_dataset = held_out.train_dataset
    if args.cache_latents:
        show = run.accelerator.is_local_main_process
        train_dataset = CachedLatentDataset(train_dataset, vae, args.random_flip, show_progress=show)
    encoder, gradient_estimator = run.prepare(
        {"encoder": encoder, "gradient_estimator": gradient_estimator}, train_dataset, "pdae",
        noise_scheduler, args.pretrained_model_name_or_path,
    )  # fmt: skip

    def compute_loss(batch):
        images = batch["pixel_values"]
        clean = clean_samples(batch, vae, run.noise_generator)  # a latent DPM's x_0: the autoencoder's latents
        noise, timesteps = sample_noise_and_timesteps(
            clean, noise_scheduler.config.num_train_timesteps, run.noise_generator
        )
        return pdae_training_loss(
            denoiser, encoder, gradient_estimator, noise_scheduler, clean, noise, timesteps, args.lambda_gamma,
            encoder_input=images if reads_pixels else None,
        )  # fmt: skip

    def build_pipeline(frozen: tuple = (denoiser, vae)) -> PDAEPipeline:
        scheduler = DDIMScheduler.from_config(noise_scheduler.config, clip_sample=False)
        final_encoder, final_estimator = run.final_model("encoder"), run.final_model("gradient_estimator")
        pipeline = PDAEPipeline(
            **frozen_components(frozen[0]), scheduler=scheduler, encoder=final_encoder.eval(),
            gradient_estimator=final_estimator.eval(), vae=frozen[1],
        )  # fmt: skip
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def release_pipeline() -> PDAEPipeline:
        if denoiser.dtype == torch.float32:
            return build_pipeline()
        # The frozen models ran in the weight dtype (bf16/fp16): release the pre-trained weights themselves, not
        # their rounding, and leave the training copies as they are.
        original, _ = load_frozen_dpm(args.pretrained_model_name_or_path, args.prompt)
        original_vae = load_frozen_autoencoder(args.pretrained_model_name_or_path, args.vae_scaling_factor)
        return build_pipeline((original, original_vae))

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
        compute_loss, dataset_size(held_out.train_dataset), held_out_text, validation=validation,
        save_pipeline=release_pipeline,
    )  # fmt: skip
    run.finish(release_pipeline, pdae_model_card, validation)


if __name__ == "__main__":
    main()
