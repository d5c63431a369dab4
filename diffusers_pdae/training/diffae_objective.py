"""The Diff-AE baseline's training loss: the plain noise loss of a conditional DPM trained jointly with its encoder."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from ..models.diffae_unet import DiffAEUNet2DModel
from ..models.encoders import EncoderModel


def diffae_training_loss(
    unet: DiffAEUNet2DModel,
    encoder: EncoderModel,
    noise_scheduler: DDPMScheduler,
    clean_images: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """Per-sample Diff-AE loss ||eps - eps_theta(x_t, t, Enc(x_0))||^2 for one batch (Preechakul et al. 2022).

    Unlike PDAE's loss nothing is frozen: gradients reach both the conditional UNet and the encoder. The squared
    norm is averaged over pixels, as in diffusers' training scripts and [`~diffusers_pdae.pdae_math.pdae_loss`], and
    unweighted (Diff-AE's "simple" loss). `unet` and `encoder` may be wrapped by `accelerator.prepare` (DDP), so they
    are called through `__call__`. Draw `noise` and `timesteps` with
    [`~diffusers_pdae.training.objective.sample_noise_and_timesteps`].

    Args:
        unet (`DiffAEUNet2DModel`): the conditional noise predictor.
        encoder (`EncoderModel`): image -> code z, e.g. a [`PDAEEncoder`].
        noise_scheduler (`DDPMScheduler`): the training schedule (`prediction_type="epsilon"`).
        clean_images (`torch.Tensor` of shape `(B, C, H, W)`): x_0 in [-1, 1].
        noise (`torch.Tensor` of shape `(B, C, H, W)`): eps ~ N(0, I).
        timesteps (`torch.Tensor` of shape `(B,)`): training timesteps.

    Returns:
        `torch.Tensor` of shape `(B,)`, float32.

    Raises:
        `ValueError`: if the scheduler's `prediction_type` is not `"epsilon"` (the loss is on the noise).
    """
    prediction_type = noise_scheduler.config.get("prediction_type", "epsilon")
    if prediction_type != "epsilon":
        raise ValueError(
            f"The Diff-AE baseline predicts noise, but the scheduler's prediction_type is {prediction_type!r}; build "
            "the scheduler with prediction_type='epsilon'."
        )
    noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)
    z = encoder(clean_images).z
    noise_pred = unet(noisy_images, timesteps, z).sample
    return (noise.float() - noise_pred.float()).pow(2).mean(dim=tuple(range(1, noise.ndim)))
