"""What one training step computes: the noise and timesteps it draws, and PDAE's loss with one frozen UNet pass."""

from __future__ import annotations

import os

import torch
from diffusers import DDPMScheduler, UNet2DModel

from ..models.encoders import EncoderModel
from ..models.gradient_estimator import GradientEstimator
from ..models.unet_features import check_unet_supported, unet_forward_with_features
from ..pdae_math import noise_from_model_output, pdae_loss
from ..sampling import check_scheduler


def sample_timesteps(
    batch_size: int, num_train_timesteps: int, device: torch.device | str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """t ~ U{0, ..., T-1}, shape `(batch_size,)`, long."""
    return torch.randint(0, num_train_timesteps, (batch_size,), generator=generator, device="cpu").to(device)


def sample_noise_and_timesteps(
    clean_images: torch.Tensor, num_train_timesteps: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """eps ~ N(0, I) shaped like `clean_images` `(B, C, H, W)` and t ~ U{0, ..., T-1} `(B,)`, both drawn on the CPU
    from `generator` (so a resumed run draws the same numbers) and moved to the images' device."""
    noise = torch.randn(clean_images.shape, generator=generator).to(clean_images.device)
    timesteps = sample_timesteps(clean_images.shape[0], num_train_timesteps, clean_images.device, generator)
    return noise, timesteps


def load_frozen_dpm(pretrained_model_name_or_path: str) -> tuple[UNet2DModel, DDPMScheduler]:
    """The pre-trained DPM's UNet (frozen) and training scheduler, checked before anything else runs.

    Raises:
        `ValueError`: naming what cannot be loaded or served (no connection for a Hub id, a folder without `unet/`
            or `scheduler/`, a UNet layout or scheduler PDAE cannot serve), and what to do.
    """
    try:
        unet = UNet2DModel.from_pretrained(pretrained_model_name_or_path, subfolder="unet")
        scheduler = DDPMScheduler.from_pretrained(pretrained_model_name_or_path, subfolder="scheduler")
    except (OSError, ValueError) as error:
        where = (
            "a local folder: it needs unet/ and scheduler/ as a DDPMPipeline saves them"
            if os.path.isdir(pretrained_model_name_or_path)
            else "a Hub id: loading it needs the network (or HF_HUB_OFFLINE=0 and a cached copy)"
        )
        raise ValueError(
            f"Cannot load the DPM --pretrained_model_name_or_path {pretrained_model_name_or_path!r}, {where}. "
            f"({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from error
    check_unet_supported(unet.config)
    check_scheduler(scheduler)
    return freeze(unet), scheduler


def freeze(unet: UNet2DModel) -> UNet2DModel:
    """Put the pre-trained UNet in eval mode with no trainable parameters (PDAE never updates it)."""
    unet.requires_grad_(False)
    return unet.eval()


def pdae_training_loss(
    unet: UNet2DModel,
    encoder: EncoderModel,
    gradient_estimator: GradientEstimator,
    noise_scheduler: DDPMScheduler,
    clean_images: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    gamma: float = 0.1,
) -> torch.Tensor:
    """Per-sample PDAE loss for one batch, with a single frozen UNet pass.

    The frozen UNet runs once without gradient and yields both eps_theta (its output seen as a noise prediction,
    whatever `noise_scheduler.config.prediction_type` says it predicts) and the features G needs; gradients reach
    only the encoder and G. `encoder` and `gradient_estimator` may be wrapped by `accelerator.prepare` (DDP), so they
    are called through `__call__`.

    Args:
        clean_images (`torch.Tensor` of shape `(B, C, H, W)`): x_0 in [-1, 1].
        noise (`torch.Tensor` of shape `(B, C, H, W)`): eps ~ N(0, I).
        timesteps (`torch.Tensor` of shape `(B,)`): training timesteps.
        gamma (`float`, defaults to 0.1): exponent of the SNR in the loss weight.

    Returns:
        `torch.Tensor` of shape `(B,)`.
    """
    with torch.no_grad():
        noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)
        features = unet_forward_with_features(unet, noisy_images.to(unet.dtype), timesteps)
    z = encoder(clean_images).z
    gradient = gradient_estimator(
        features.down_block_res_samples, features.mid_block_res_sample, features.temb, z
    ).sample
    prediction_type = noise_scheduler.config.get("prediction_type", "epsilon")
    noise_pred = noise_from_model_output(
        features.noise_pred.float(), noisy_images, timesteps, noise_scheduler.betas, prediction_type
    )
    return pdae_loss(noise, noise_pred, gradient, timesteps, noise_scheduler.betas, gamma)
