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

import torch
from diffusers import AutoencoderKL, ModelMixin, VQModel

AUTOENCODER_TYPES = (VQModel, AutoencoderKL)
# The component names diffusers' pipelines give an autoencoder: LDMPipeline's `vqvae`, every other pipeline's `vae`.
AUTOENCODER_COMPONENT_NAMES = ("vae", "vqvae")


def is_autoencoder(model) -> bool:
    """Whether `model` is an autoencoder a latent DPM can sit on (`VQModel` or `AutoencoderKL`)."""
    return isinstance(model, AUTOENCODER_TYPES)


def downsampling_factor(vae: ModelMixin) -> int:
    """How many pixels one latent covers along each side: 2 ** (number of down blocks - 1)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def check_autoencoder(vae: ModelMixin) -> None:
    """Raise a `ValueError` unless `vae` is a `VQModel` or an `AutoencoderKL`."""
    if not is_autoencoder(vae):
        raise ValueError(
            f"The autoencoder must be a diffusers VQModel (as in LDMPipeline) or AutoencoderKL (as in DiTPipeline), "
            f"got {type(vae).__name__}."
        )


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
