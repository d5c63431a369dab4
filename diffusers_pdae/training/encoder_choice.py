"""`train_pdae.py`'s choice of encoder design: its flags, their checks, and the encoder they build."""

from __future__ import annotations

import argparse
import os

from diffusers import ModelMixin
from transformers import AutoConfig

from ..models.encoder import PDAEEncoder
from ..models.encoders import EncoderModel
from ..models.frozen_denoiser import FrozenDenoiser, config_sample_shape, frozen_denoiser
from ..models.residual_encoder import PDAEResidualEncoder
from ..models.transformers_encoder import PDAETransformersEncoder
from .args import positive_int

# --encoder_type -> the model class it builds.
ENCODER_TYPES = {"light": PDAEEncoder, "residual": PDAEResidualEncoder, "transformers": PDAETransformersEncoder}
LIGHT_DEFAULTS = {"encoder_block_out_channels": [32, 64, 128, 128], "encoder_norm_num_groups": 8}
# Flags that only one or two designs read, and which designs those are.
DESIGN_FLAGS = {
    "encoder_block_out_channels": ("light", "residual"),
    "encoder_norm_num_groups": ("light", "residual"),
    "encoder_layers_per_block": ("residual",),
    "encoder_warm_start_from_unet": ("residual",),
    "encoder_backbone": ("transformers",),
    "encoder_backbone_config": ("transformers",),
    "freeze_encoder_backbone": ("transformers",),
    "encoder_backbone_image_size": ("transformers",),
}


def add_encoder_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("encoder design (docs/results/encoders/README.md compares them)")
    group.add_argument(
        "--encoder_type",
        choices=list(ENCODER_TYPES),
        default="light",
        help="light: a strided-convolution stack (PDAEEncoder); residual: the UNet's down half with resnet and "
        "attention blocks, pooled (PDAEResidualEncoder); transformers: a transformers vision backbone "
        "(PDAETransformersEncoder, with --encoder_backbone or --encoder_backbone_config).",
    )
    group.add_argument(
        "--encoder_block_out_channels",
        type=positive_int,
        nargs="+",
        default=None,
        help="Widths per level (light default: 32 64 128 128; residual default: the UNet's).",
    )
    group.add_argument(
        "--encoder_norm_num_groups",
        type=positive_int,
        default=None,
        help="GroupNorm groups (light default: 8; residual default: the UNet's).",
    )
    group.add_argument(
        "--encoder_layers_per_block",
        type=positive_int,
        default=None,
        help="Resnets per level (residual; default: the UNet's).",
    )
    group.add_argument(
        "--encoder_warm_start_from_unet",
        action="store_true",
        help="Initialise the residual encoder from the UNet's down blocks (needs the UNet's layout).",
    )
    group.add_argument(
        "--encoder_backbone",
        type=str,
        default=None,
        help="Pre-trained transformers vision model (Hub id or folder, safetensors weights), e.g. "
        "facebook/dinov2-small.",
    )
    group.add_argument(
        "--encoder_backbone_config",
        type=str,
        default=None,
        help="A transformers config (config.json, its folder, or a Hub id) for a randomly initialised backbone.",
    )
    group.add_argument(
        "--freeze_encoder_backbone", action="store_true", help="Train only the backbone encoder's projection head."
    )
    group.add_argument(
        "--encoder_backbone_image_size",
        type=positive_int,
        default=None,
        help="Resize images to this for the backbone (default: its config's image_size, else the UNet's).",
    )


def check_encoder_args(args: argparse.Namespace) -> None:
    """Raise a `ValueError` for flags that do not fit `--encoder_type` (before anything is loaded)."""
    stray = [
        f"--{flag}"
        for flag, designs in DESIGN_FLAGS.items()
        if args.encoder_type not in designs and getattr(args, flag) not in (None, False)
    ]
    if stray:
        raise ValueError(f"{', '.join(stray)} do not apply to --encoder_type {args.encoder_type}; drop them.")
    backbone_sources = [args.encoder_backbone, args.encoder_backbone_config]
    if args.encoder_type == "transformers" and backbone_sources.count(None) != 1:
        raise ValueError(
            "--encoder_type transformers needs exactly one of --encoder_backbone (pre-trained weights) or "
            "--encoder_backbone_config (random initialisation)."
        )
    for flag in ("encoder_backbone", "encoder_backbone_config"):
        value = getattr(args, flag)
        looks_local = value is not None and (value.endswith(".json") or value.startswith(("/", ".", "~")))
        if looks_local and not os.path.exists(os.path.expanduser(value)):
            raise ValueError(f"--{flag} {value}: no such file or folder (give a local path that exists, or a Hub id).")
        if value is not None and not looks_local and not os.path.exists(value):
            check_hub_reachable(flag, value)
    if args.encoder_type == "light":
        for flag, default in LIGHT_DEFAULTS.items():
            if getattr(args, flag) is None:
                setattr(args, flag, default)


def check_hub_reachable(flag: str, repo_id: str) -> None:
    """A Hub id can be fetched: online, or offline (`HF_HUB_OFFLINE=1`) with its config in the local cache."""
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        raise ValueError(
            f"--{flag} {repo_id}: not a local folder, and the Hub is off (HF_HUB_OFFLINE=1) with no cached copy. "
            "Pass a local folder saved with save_pretrained, or allow the download (unset HF_HUB_OFFLINE)."
        )


def light_encoder_for(model: ModelMixin | FrozenDenoiser, latent_dim: int) -> PDAEEncoder:
    """The encoder `train_pdae.py` builds by default (`--encoder_type light`, default widths) for the samples of a
    diffusion model (or its adapter)."""
    channels, size, _ = config_sample_shape(model.config)
    return light_encoder(channels, size, latent_dim)


def light_encoder(channels: int, sample_size: int, latent_dim: int) -> PDAEEncoder:
    """`train_pdae.py`'s default encoder (`--encoder_type light`, default widths) on `channels`-channel images of
    `sample_size` pixels."""
    return PDAEEncoder(
        in_channels=channels,
        sample_size=sample_size,
        latent_dim=latent_dim,
        block_out_channels=tuple(LIGHT_DEFAULTS["encoder_block_out_channels"]),
        norm_num_groups=LIGHT_DEFAULTS["encoder_norm_num_groups"],
    )


def build_encoder(
    args: argparse.Namespace, denoiser: FrozenDenoiser | ModelMixin, image_geometry: tuple[int, int] | None = None
) -> EncoderModel:
    """A fresh encoder of the design `args` asks for, for the frozen model's samples, or for the images of
    `image_geometry` `(channels, size)` (a latent DPM's pixel images)."""
    denoiser = frozen_denoiser(denoiser)
    sample_geometry = denoiser.sample_shape[:2]
    channels, sample_size = image_geometry or sample_geometry
    size = {"in_channels": channels, "sample_size": sample_size}
    if args.encoder_type == "light":
        return PDAEEncoder(
            **size,
            latent_dim=args.latent_dim,
            block_out_channels=tuple(args.encoder_block_out_channels),
            norm_num_groups=args.encoder_norm_num_groups,
        )
    if args.encoder_type == "residual":
        if (channels, sample_size) != sample_geometry:
            raise ValueError(
                "--encoder_type residual is shaped like the UNet's down half, which reads a latent DPM's latents, "
                "not its pixel images; use --encoder_type light or transformers with a latent DPM."
            )
        overrides = {
            key: value
            for key, value in (
                ("block_out_channels", args.encoder_block_out_channels),
                ("norm_num_groups", args.encoder_norm_num_groups),
                ("layers_per_block", args.encoder_layers_per_block),
            )
            if value is not None
        }
        return PDAEResidualEncoder.from_unet(
            denoiser.model, latent_dim=args.latent_dim, warm_start=args.encoder_warm_start_from_unet, **overrides
        )
    options = {
        "freeze_backbone": args.freeze_encoder_backbone,
        "backbone_image_size": args.encoder_backbone_image_size,
    }
    try:
        if args.encoder_backbone is not None:
            return PDAETransformersEncoder.from_backbone(
                args.encoder_backbone, **size, latent_dim=args.latent_dim, **options
            )
        backbone_config = AutoConfig.from_pretrained(os.fspath(args.encoder_backbone_config))
    except OSError as error:  # transformers' "not found" and connection errors name neither the flag nor what to do
        flag = "--encoder_backbone" if args.encoder_backbone is not None else "--encoder_backbone_config"
        source = args.encoder_backbone or args.encoder_backbone_config
        raise ValueError(
            f"{flag} {source} cannot be loaded ({str(error).splitlines()[0]}). Pass a local folder saved with "
            "save_pretrained, or a Hub id that can be reached."
        ) from error
    return PDAETransformersEncoder(
        backbone_config=backbone_config.to_dict(), **size, latent_dim=args.latent_dim, **options
    )
