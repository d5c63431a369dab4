"""What one training step computes: the noise and timesteps it draws, and PDAE's loss with one frozen model pass."""

from __future__ import annotations

import os

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiffusionPipeline, ModelMixin, VQModel
from diffusers.utils.torch_utils import randn_tensor

from ..latent_space import AUTOENCODER_COMPONENT_NAMES
from ..models.encoders import EncoderModel
from ..models.frozen_denoiser import FrozenDenoiser, frozen_denoiser, load_denoiser_model
from ..models.gradient_estimator import GradientEstimator
from ..models.pdae_prediction import pdae_noise_prediction
from ..pdae_math import weighted_noise_loss
from ..sampling import check_scheduler
from .autoencoders import encode_batch, load_autoencoder
from .stored_config import as_stored
from .text_conditioning import load_prompt_embedding


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


def load_frozen_dpm(
    pretrained_model_name_or_path: str, prompt: str | None = None
) -> tuple[FrozenDenoiser, DDPMScheduler]:
    """The pre-trained DPM's frozen model, behind its adapter, and training scheduler, checked before anything else
    runs. The model's class comes from the folder (`model_index.json`, else `unet/config.json`); a text-conditional
    UNet (Stable Diffusion) is asked with `prompt`'s embedding (the empty prompt by default), computed once with the
    folder's text encoder and tokenizer.

    Raises:
        `ValueError`: naming what cannot be loaded or served (no connection for a Hub id, a folder without the model
            or `scheduler/`, a model class, layout or scheduler PDAE cannot serve, a prompt for a model that takes
            none), and what to do.
    """
    flag = f"--pretrained_model_name_or_path {pretrained_model_name_or_path!r}"
    try:
        model, stored = load_denoiser_model(pretrained_model_name_or_path)
        scheduler = DDPMScheduler.from_pretrained(pretrained_model_name_or_path, subfolder="scheduler")
    except OSError as error:
        where = (
            "a local folder: it needs the frozen model (unet/ with config.json and safetensors weights) and "
            "scheduler/, as DDPMPipeline, LDMPipeline and StableDiffusionPipeline save them"
            if os.path.isdir(pretrained_model_name_or_path)
            else "a Hub id: loading it needs the network (or HF_HUB_OFFLINE=0 and a cached copy)"
        )
        raise ValueError(
            f"Cannot load the DPM {flag}, {where}. ({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from error
    except ValueError as error:
        raise ValueError(f"Cannot use the DPM {flag}: {error}") from error
    as_stored(model, stored)
    check_scheduler(scheduler)
    denoiser = frozen_denoiser(freeze(model))
    if denoiser.takes_condition:
        condition = load_prompt_embedding(pretrained_model_name_or_path, prompt or "")
        return frozen_denoiser(model, freeze(condition)), scheduler
    if prompt:
        raise ValueError(
            f"--prompt applies to a text-conditional DPM (a StableDiffusionPipeline's UNet2DConditionModel); the "
            f"{type(model).__name__} of {flag} is asked without a prompt. Drop --prompt."
        )
    return denoiser, scheduler


def frozen_components(denoiser: FrozenDenoiser) -> dict:
    """The frozen model as `PDAEPipeline` components: `unet` or `transformer` (the other None), and the stored
    condition (`prompt_embedding`) of a text-conditional UNet."""
    components = {"unet": None, "transformer": None, denoiser.component_name: denoiser.model}
    return {**components, "prompt_embedding": denoiser.condition}


def clean_samples(batch: dict, vae: ModelMixin | None, generator: torch.Generator) -> torch.Tensor:
    """x_0 of a training batch as the UNet sees it `(B, C, H, W)`: the pixels, or for a latent DPM the frozen
    autoencoder's latents of them: cached by `CachedLatentDataset` (`--cache_latents`) or encoded now; an
    `AutoencoderKL`'s posterior is sampled with `generator` either way, as diffusers' `DiagonalGaussianDistribution`
    samples it."""
    if "latents" not in batch:
        images = batch["pixel_values"]
        return images if vae is None else encode_batch(vae, images, generator)
    latents = batch["latents"]
    if "latent_std" in batch:
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        latents = latents + batch["latent_std"] * noise
    return latents


def load_frozen_autoencoder(
    pretrained_model_name_or_path: str, scaling_factor: float | None = None
) -> VQModel | AutoencoderKL | None:
    """The frozen autoencoder of a latent DPM's pipeline folder or Hub id (its `vqvae/` as `LDMPipeline` saves it,
    or `vae/`), or None for a pixel DPM.

    Args:
        scaling_factor (`float`, *optional*): the latent scaling the UNet was trained with, where the autoencoder's
            config lacks it (`--vae_scaling_factor`).

    Raises:
        `ValueError` / `FileNotFoundError`: for an autoencoder whose config has no `scaling_factor` (diffusers then
            assumes 0.18215, which CompVis' VQ LDMs were not trained with) and no `scaling_factor` given, or an
            unusable one (null, a string, zero, negative, NaN, huge), naming the flag to pass; for a listed `vqvae/`
            or `vae/` that is missing, or whose config does not fit its weights, naming it.
    """
    try:
        index = DiffusionPipeline.load_config(pretrained_model_name_or_path)
    except (OSError, ValueError):
        return None  # a folder without model_index.json: load_frozen_dpm names what is missing
    name = next((name for name in AUTOENCODER_COMPONENT_NAMES if index.get(name, [None, None])[1] is not None), None)
    if name is None:
        return None
    flag = "--pretrained_model_name_or_path"
    return freeze(load_autoencoder(pretrained_model_name_or_path, flag, scaling_factor))


def as_stored_components(pipeline: DiffusionPipeline, pretrained_model_name_or_path: str) -> DiffusionPipeline:
    """Each model component of a loaded pipeline with its config as its folder stores it (see [`as_stored`]), in
    place: a pipeline released from it (with a latent sampler added, say) keeps the source's frozen UNet and
    autoencoder byte for byte, configs included."""
    for name, component in pipeline.components.items():
        if isinstance(component, ModelMixin):
            as_stored(component, type(component).load_config(pretrained_model_name_or_path, subfolder=name))
    return pipeline


def freeze(model: ModelMixin) -> ModelMixin:
    """Put a pre-trained model (the UNet, the autoencoder) in eval mode with no trainable parameters (PDAE never
    updates it)."""
    model.requires_grad_(False)
    return model.eval()


def pdae_training_loss(
    denoiser: FrozenDenoiser | ModelMixin,
    encoder: EncoderModel,
    gradient_estimator: GradientEstimator,
    noise_scheduler: DDPMScheduler,
    clean_images: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    gamma: float = 0.1,
    encoder_input: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample PDAE loss for one batch, with a single frozen model pass ([`pdae_noise_prediction`]).

    The frozen model runs once without gradient and yields both eps_theta (its output seen as a noise prediction,
    whatever `noise_scheduler.config.prediction_type` says it predicts) and the features G needs; gradients reach
    only the encoder and G. `encoder` and `gradient_estimator` may be wrapped by `accelerator.prepare` (DDP), so they
    are called through `__call__`.

    Args:
        denoiser ([`FrozenDenoiser`] or the frozen model): the pre-trained DPM.
        clean_images (`torch.Tensor` of shape `(B, C, H, W)`): x_0 as the UNet sees it: images in [-1, 1], or for a
            latent DPM their autoencoder latents.
        noise (`torch.Tensor` of shape `(B, C, H, W)`): eps ~ N(0, I).
        timesteps (`torch.Tensor` of shape `(B,)`): training timesteps.
        gamma (`float`, defaults to 0.1): exponent of the SNR in the loss weight.
        encoder_input (`torch.Tensor`, *optional*): what the encoder reads, if not `clean_images`: a latent DPM's
            pixel images `(B, C', H', W')`.

    Returns:
        `torch.Tensor` of shape `(B,)`.
    """
    with torch.no_grad():
        noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)
    z = encoder(clean_images if encoder_input is None else encoder_input).z
    betas, prediction_type = noise_scheduler.betas, noise_scheduler.config.get("prediction_type", "epsilon")
    eps_hat = pdae_noise_prediction(
        frozen_denoiser(denoiser), gradient_estimator, noisy_images, timesteps, z, betas, prediction_type,
        dtype=torch.float32,
    )  # fmt: skip
    return weighted_noise_loss(noise, eps_hat, timesteps, betas, gamma)
