"""Train the autoencoder of a latent diffusion model: a diffusers `VQModel` (as `LDMPipeline`'s `vqvae`) or an
`AutoencoderKL` (as `DiTPipeline`'s `vae`), without adversarial or perceptual losses.

    accelerate launch examples/train_autoencoder.py --output_dir vq-mnist --max_train_steps 3000

Flags follow `examples/train_dpm.py` (diffusers' `train_unconditional.py`). Without --dataset_name or
--train_data_dir it trains on the bundled MNIST "train" split (offline). The loss is the L1 reconstruction error (as
the LDM autoencoders' pixel term: sharper than MSE, which averages plausible edges into blur; --reconstruction_loss mse
optimises PSNR directly) plus the VQ codebook/commitment loss, or a KL term of small weight for an AutoencoderKL.
After training, the config's `scaling_factor` is set to 1 / std of the latents of a batch of training images (the
LDM paper's recipe), and the output folder is the model itself (`VQModel.from_pretrained(output_dir)`), ready for
`examples/train_dpm.py --pretrained_vae_model_name_or_path output_dir`.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os

import PIL.Image
import torch
from diffusers import AutoencoderKL, VQModel

from diffusers_pdae.data import image_geometry, load_image_dataset, load_training_dataset, validation_images
from diffusers_pdae.evaluation import psnr, ssim
from diffusers_pdae.image_utils import labelled_rows
from diffusers_pdae.latent_space import decode_latents, downsampling_factor, encode_images
from diffusers_pdae.training import (
    AutoencoderObjective,
    TrainingRun,
    add_data_args,
    add_optimization_args,
    add_output_args,
    autoencoder_model_card,
    finalize_args,
    latent_scaling_factor,
    make_parser,
    non_negative_float,
    positive_int,
)
from diffusers_pdae.training.autoencoders import AUTOENCODER_CLASSES, COMPONENT_NAME, RECONSTRUCTION_LOSSES

AUTOENCODER_TYPES = {"vq": VQModel, "kl": AutoencoderKL}
# The default layout: 4x downsampling (three levels; 32-px MNIST -> 8x8 latents), 0.9M parameters as a VQModel.
SMALL_AUTOENCODER_CONFIG = {
    "in_channels": 1,
    "out_channels": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 3,
    "norm_num_groups": 8,
    "sample_size": 32,
    "mid_block_add_attention": False,
}
VQ_ONLY_KEYS = ("num_vq_embeddings", "vq_embed_dim", "norm_type", "lookup_from_codebook")
# The smallest images an SSIM window fits (validation reports SSIM from this size on).
SSIM_WINDOW = 11


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--autoencoder_type",
        type=str,
        default="vq",
        choices=sorted(AUTOENCODER_TYPES),
        help="vq: a VQModel, LDMPipeline's `vqvae`; kl: an AutoencoderKL, DiTPipeline's `vae`.",
    )
    parser.add_argument(
        "--model_config_name_or_path",
        type=str,
        default=None,
        help="A VQModel or AutoencoderKL config (folder or JSON file); without it a small layout with 4x "
        "downsampling, with the channels and size of the training images.",
    )
    parser.add_argument(
        "--latent_channels", type=positive_int, default=None, help="Latent channels (default: the layout's, 3)."
    )
    parser.add_argument(
        "--num_vq_embeddings", type=positive_int, default=None, help="VQModel codebook size (default: the layout's)."
    )
    parser.add_argument(
        "--reconstruction_loss",
        type=str,
        default="l1",
        choices=RECONSTRUCTION_LOSSES,
        help="Pixel loss: l1 (the LDM autoencoders' choice, sharper) or mse (optimises PSNR directly).",
    )
    parser.add_argument(
        "--kl_weight", type=non_negative_float, default=1e-6, help="AutoencoderKL: weight of the KL term (LDM's)."
    )
    parser.add_argument(
        "--codebook_weight", type=non_negative_float, default=1.0, help="VQModel: weight of the codebook loss."
    )
    parser.add_argument(
        "--num_validation_images",
        type=positive_int,
        default=8,
        help="Training images held out (evenly spaced) for the validation grid and PSNR.",
    )
    parser.add_argument(
        "--scaling_factor_num_images",
        type=positive_int,
        default=512,
        help="Training images whose latents set the scaling factor (1 / their std).",
    )
    add_data_args(parser)
    add_optimization_args(parser, learning_rate=5e-4)
    add_output_args(parser, output_dir="autoencoder-model")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return finalize_args(build_parser().parse_args(argv))


def layout(args) -> dict:
    """The autoencoder config: --model_config_name_or_path or the small layout, with the flags' overrides."""
    model_class = AUTOENCODER_TYPES[args.autoencoder_type]
    if args.model_config_name_or_path is None:
        config = dict(SMALL_AUTOENCODER_CONFIG, num_vq_embeddings=256)
    elif os.path.isfile(args.model_config_name_or_path):
        with open(args.model_config_name_or_path) as f:
            config = json.load(f)
    else:
        config = dict(model_class.load_config(args.model_config_name_or_path))
    named = config.get("_class_name")
    if named is not None and AUTOENCODER_CLASSES.get(named) is not model_class:
        raise ValueError(
            f"--model_config_name_or_path holds a {named} config but --autoencoder_type is {args.autoencoder_type}: "
            f"pass --autoencoder_type {'kl' if named == 'AutoencoderKL' else 'vq'} (or another config)."
        )
    if model_class is AutoencoderKL:
        config = {key: value for key, value in config.items() if key not in VQ_ONLY_KEYS}
    for flag in ("latent_channels", "num_vq_embeddings"):
        if getattr(args, flag) is not None:
            config[flag] = getattr(args, flag)
    return config


def autoencoder_config(args) -> dict:
    """The config of the autoencoder to train, sized for the training images (their channels; --resolution or their
    size); records in `args` what the run uses (resolution, latent channels, ...), before the run checks a resume."""
    config = layout(args)
    if args.model_config_name_or_path is None:
        channels, size = 1, args.resolution or SMALL_AUTOENCODER_CONFIG["sample_size"]
        if args.dataset_name is not None or args.train_data_dir is not None:
            raw = load_image_dataset(args.dataset_name, args.dataset_config_name, args.train_data_dir, args.cache_dir)
            channels, side = image_geometry(raw, args.image_column)
            size = args.resolution or side
        config.update(in_channels=channels, out_channels=channels, sample_size=size)
    args.resolution = args.resolution or config.get("sample_size", SMALL_AUTOENCODER_CONFIG["sample_size"])
    config["sample_size"] = args.resolution
    # What the run uses, for the card, training_info.json and resuming (the other type's weight is unused: None)
    is_vq = AUTOENCODER_TYPES[args.autoencoder_type] is VQModel
    defaults = inspect.signature(AUTOENCODER_TYPES[args.autoencoder_type].__init__).parameters
    args.latent_channels = config.get("latent_channels", defaults["latent_channels"].default)
    if is_vq:
        args.num_vq_embeddings = config.get("num_vq_embeddings", defaults["num_vq_embeddings"].default)
        args.kl_weight = None
    else:
        args.num_vq_embeddings = args.codebook_weight = None
    return config


@torch.no_grad()
def measure_reconstructions(vae: VQModel | AutoencoderKL, images: torch.Tensor) -> tuple[dict, PIL.Image.Image]:
    """PSNR (and SSIM) of `vae`'s reconstructions of `images` `(N, C, H, W)` in [-1, 1], decoded as `LDMPipeline`
    and `DiTPipeline` decode latents (a VQModel quantizes; an AutoencoderKL takes the posterior mean), and the grid.
    For a VQModel, also the fraction of its codebook these images use."""
    latents = encode_images(vae, images)
    originals, reconstructions = (images / 2 + 0.5).clamp(0, 1), (decode_latents(vae, latents) / 2 + 0.5).clamp(0, 1)
    metrics = {"val_psnr": psnr(reconstructions, originals).mean().item()}
    if min(images.shape[-2:]) >= SSIM_WINDOW:
        metrics["val_ssim"] = ssim(reconstructions, originals).mean().item()
    if isinstance(vae, VQModel):
        _, _, (_, _, indices) = vae.quantize(latents / vae.config.scaling_factor)
        metrics["val_codebook_usage"] = indices.unique().numel() / vae.config.num_vq_embeddings
    grid = labelled_rows([("original", originals.float().cpu()), ("reconstruction", reconstructions.float().cpu())])
    return metrics, grid


def main(argv=None):
    args = parse_args(argv)
    config = autoencoder_config(args)
    run = TrainingRun(args, "train_autoencoder")

    autoencoder = AUTOENCODER_TYPES[args.autoencoder_type].from_config(config)
    factor = downsampling_factor(autoencoder)
    if args.resolution % factor:
        raise ValueError(
            f"--resolution {args.resolution} is not a multiple of the autoencoder's downsampling factor {factor}: "
            f"pass --resolution {(args.resolution // factor + 1) * factor}."
        )
    name = COMPONENT_NAME[type(autoencoder)]
    dataset = load_training_dataset(
        args.dataset_name, args.dataset_config_name, args.train_data_dir, args.image_column,
        autoencoder.config.in_channels, args.resolution, args.center_crop, args.random_flip, args.cache_dir,
        check_images=not args.skip_image_check,
    )  # fmt: skip
    held_out = validation_images(dataset, args.num_validation_images)
    train_set = held_out.train_dataset
    count = min(args.scaling_factor_num_images, len(train_set))
    scaling_images = torch.stack([train_set[i * len(train_set) // count]["pixel_values"] for i in range(count)])
    objective = AutoencoderObjective(autoencoder, args.reconstruction_loss, args.kl_weight, args.codebook_weight)
    model = run.prepare({name: autoencoder}, train_set, "autoencoder", None)

    def compute_loss(batch):
        return objective(model, batch["pixel_values"], run.noise_generator)

    def measure(global_step: int) -> tuple[dict, PIL.Image.Image]:
        return measure_reconstructions(run.final_model(name), held_out.images.to(run.accelerator.device))

    scaling = {}

    def release_model() -> VQModel | AutoencoderKL:
        """The trained autoencoder with the LDM scaling factor of its latents."""
        vae = run.final_model(name)
        images = scaling_images.to(run.accelerator.device)
        generator = torch.Generator(run.accelerator.device).manual_seed(args.seed)
        scaling["scaling_factor"], scaling["latent_std"] = latent_scaling_factor(
            vae, images, generator, batch_size=args.train_batch_size
        )
        vae.register_to_config(scaling_factor=scaling["scaling_factor"])
        return vae

    validation = run.periodic_validation(measure, "reconstructions", f"{len(held_out.images)} held-out images")
    held_out_text = f"{len(held_out.images)} of the {len(dataset)} training images (--num_validation_images)"
    run.train(compute_loss, len(train_set), held_out_text, validation=validation, save_pipeline=release_model)
    run.save_pipeline(release_model)
    card = functools.partial(
        autoencoder_model_card, class_name=type(autoencoder).__name__, downsampling_factor=factor,
        image_shape=tuple(held_out.images.shape[1:]), num_scaling_images=count,
    )  # fmt: skip
    run.release(card, {**(validation.metrics or {}), **scaling}, validation.grid_path)


if __name__ == "__main__":
    main()
