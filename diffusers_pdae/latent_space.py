"""The autoencoder of a latent diffusion model: pixel images to diffusion latents and back, exactly as diffusers'
pipelines do it.

A latent DPM's UNet denoises `latents = vae_latents * scaling_factor`. Decoding follows `LDMPipeline` (a `VQModel`,
its component `vqvae`) and `DiTPipeline` (an `AutoencoderKL`, its component `vae`): `vae.decode(latents /
vae.config.scaling_factor).sample`, where `VQModel.decode` quantizes first. Encoding is the inverse: `VQModel.encode`
returns the unquantized latents (as the LDM paper trains on them); `AutoencoderKL.encode` a posterior, whose mean
is taken for inversion and a seeded sample for training (as diffusers' training scripts do).

It sits below the pipelines and the training tool, which both import it.
"""

from __future__ import annotations

import math

import torch
from diffusers import AutoencoderKL, ModelMixin, VQModel

AUTOENCODER_TYPES = (VQModel, AutoencoderKL)
AUTOENCODER_CLASS_NAMES = tuple(cls.__name__ for cls in AUTOENCODER_TYPES)
# The component names diffusers' pipelines give an autoencoder: LDMPipeline's `vqvae`, every other pipeline's `vae`.
AUTOENCODER_COMPONENT_NAMES = ("vae", "vqvae")
# A scaling factor brings the latents to about unit spread (1 / their std): published autoencoders use 0.13 to 1.53
# (SDXL 0.13025, SD 0.18215, CompVis' VQ LDMs 1.0, SD3 1.5305). A value outside these bounds is an edit, a typo or a
# collapsed autoencoder, and makes the UNet see latents it never saw (zeros, or overflow to inf and NaN).
SCALING_FACTOR_BOUNDS = (1e-3, 1e3)


def scaling_factor_problem(value) -> str:
    """Why `value` cannot be an autoencoder's `scaling_factor` ("" when it can): not a number (null, a string, a
    boolean), not finite, or outside [`SCALING_FACTOR_BOUNDS`] (zero and negative values included)."""
    low, high = SCALING_FACTOR_BOUNDS
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"is {value!r}, not a number"
    if not math.isfinite(value):
        return f"is {value}, not a finite number"
    if not low <= value <= high:
        return f"is {value:g}, outside [{low:g}, {high:g}] (published autoencoders use 0.13 to 1.53)"
    return ""


def check_scaling_factor(value, where: str, fix: str) -> float:
    """`value` as a float if it can be an autoencoder's `scaling_factor`, else a `ValueError` saying that `where`'s
    scaling_factor (e.g. "vae/config.json of my-ldm") is unusable, why, and `fix`."""
    problem = scaling_factor_problem(value)
    if problem:
        raise ValueError(
            f"The scaling_factor of {where} {problem}: latents are multiplied by it before the UNet sees them and "
            f"divided by it before decoding. {fix}"
        )
    return float(value)


def listed_autoencoder(index: dict) -> str | None:
    """The component of a pipeline's `model_index.json` (as a dict) that lists a `VQModel` or `AutoencoderKL`, if
    any (`vae`, or LDMPipeline's `vqvae`)."""
    for name in AUTOENCODER_COMPONENT_NAMES:
        entry = index.get(name)
        if isinstance(entry, list) and len(entry) == 2 and entry[1] in AUTOENCODER_CLASS_NAMES:
            return name
    return None


def is_autoencoder(model) -> bool:
    """Whether `model` is an autoencoder a latent DPM can sit on (`VQModel` or `AutoencoderKL`)."""
    return isinstance(model, AUTOENCODER_TYPES)


def downsampling_factor(vae: ModelMixin) -> int:
    """How many pixels one latent covers along each side: 2 ** (number of down blocks - 1)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def check_autoencoder(vae: ModelMixin) -> None:
    """Raise a `ValueError` unless `vae` is a `VQModel` or an `AutoencoderKL` with a usable `scaling_factor`."""
    if not is_autoencoder(vae):
        raise ValueError(
            f"The autoencoder must be a diffusers VQModel (as in LDMPipeline) or AutoencoderKL (as in DiTPipeline), "
            f"got {type(vae).__name__}."
        )
    check_scaling_factor(
        vae.config.get("scaling_factor"), f"the autoencoder (vae, a {type(vae).__name__})",
        "Set vae.config.scaling_factor to the factor its latent UNet was trained with.",
    )  # fmt: skip


def encode_images(
    vae: ModelMixin, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pixel images `(B, C, H, W)` in [-1, 1] -> diffusion latents `(B, latent_channels, H / f, W / f)`.

    Args:
        vae (`VQModel` or `AutoencoderKL`): the frozen autoencoder.
        images (`torch.Tensor`): in [-1, 1], in `vae`'s dtype and device.
        sample (`bool`, defaults to `False`): for an `AutoencoderKL`, draw from the posterior (training) instead
            of taking its mean (inversion); a `VQModel` encodes deterministically either way.
        generator (`torch.Generator`, *optional*): for the posterior sample.

    Returns:
        `torch.Tensor`: the latents times `vae.config.scaling_factor`.
    """
    if isinstance(vae, VQModel):
        latents = vae.encode(images).latents
    else:
        posterior = vae.encode(images).latent_dist
        latents = posterior.sample(generator) if sample else posterior.mode()
    return latents * vae.config.scaling_factor


@torch.no_grad()
def latent_moments(vae: ModelMixin, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The scaled latents of `pixels` `(B, C, H, W)`: a `VQModel`'s (and None), or an `AutoencoderKL` posterior's
    mean and standard deviation, both times the scaling factor (a sample is `mean + std * eps`)."""
    if isinstance(vae, VQModel):
        return encode_images(vae, pixels), None
    posterior = vae.encode(pixels).latent_dist
    return posterior.mean * vae.config.scaling_factor, posterior.std * vae.config.scaling_factor


def decode_latents(vae: ModelMixin, latents: torch.Tensor) -> torch.Tensor:
    """Diffusion latents -> pixel images `(B, C, H, W)` in about [-1, 1] (unclipped), as `LDMPipeline` and
    `DiTPipeline` decode them: `vae.decode(latents / scaling_factor)` (a `VQModel` quantizes first)."""
    return vae.decode(latents / vae.config.scaling_factor).sample


def encoder_reads_pixels(encoder_config, image_shape: tuple[int, int, int]) -> bool:
    """Whether a PDAE encoder reads the pixel images rather than the diffusion model's samples: the one rule, by size.

    For a pixel DPM both are the same images. For a latent DPM the encoder reads the pixels (the default of
    `train_pdae.py`: the code describes the picture) when its `sample_size` is the pixel height `image_shape[1]`,
    else the autoencoder's latents.
    """
    return encoder_config["sample_size"] == image_shape[1]
