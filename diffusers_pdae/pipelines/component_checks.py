"""Checks of the autoencoder pipelines' components, run when a pipeline is built or a component swapped: each raises a
`ValueError` that names the component and says what fits, instead of a wrong number deep inside the loop."""

from __future__ import annotations

from diffusers import ModelMixin
from diffusers.schedulers import SchedulerMixin

from ..latent_space import check_autoencoder, downsampling_factor, encoder_reads_pixels
from ..models.frozen_denoiser import frozen_denoiser
from ..sampling import check_scheduler, has_discrete_schedule


def check_no_missing_components(pipeline_name: str, components: dict) -> None:
    """Every named component is given (not None)."""
    missing = [name for name, component in components.items() if component is None]
    if missing:
        raise ValueError(
            f"{pipeline_name} is missing {', '.join(missing)}; it needs {', '.join(components)} (a saved pipeline "
            "folder has one subfolder for each)."
        )


def config_mismatches(first: tuple[str, ModelMixin], second: tuple[str, ModelMixin], keys: tuple[str, ...]) -> list:
    """`"key: first a vs second b"` for each config entry in `keys` on which two named models disagree."""
    (first_name, first_model), (second_name, second_model) = first, second
    return [
        f"{key}: {first_name} {first_model.config[key]!r} vs {second_name} {second_model.config[key]!r}"
        for key in keys
        if first_model.config[key] != second_model.config[key]
    ]


def check_pdae_components(
    unet: ModelMixin,
    scheduler: SchedulerMixin,
    encoder: ModelMixin,
    gradient_estimator: ModelMixin,
    latent_sampler: ModelMixin | None = None,
    latent_scheduler: SchedulerMixin | None = None,
    vae: ModelMixin | None = None,
    prompt_embedding: ModelMixin | None = None,
    transformer: ModelMixin | None = None,
) -> None:
    """`PDAEPipeline`'s four components are there, the scheduler can be served, the encoder and G fit the UNet (G's
    layout and noise schedule, the encoder's image size, channels and code width), the optional latent sampler fits
    the codes, and the optional autoencoder the UNet (its latents are the UNet's samples; the encoder reads its pixel
    images, or its latents)."""
    components = {"scheduler": scheduler, "encoder": encoder, "gradient_estimator": gradient_estimator}
    check_no_missing_components("PDAEPipeline", components)
    denoiser = frozen_denoiser(frozen_model(unet, transformer), prompt_embedding)
    if denoiser.component_name != ("unet" if unet is not None else "transformer"):
        given = "unet" if unet is not None else "transformer"
        raise ValueError(
            f"A {type(denoiser.model).__name__} is the pipeline's {denoiser.component_name} (as diffusers names it), "
            f"not its {given}; pass it as {denoiser.component_name}=."
        )
    denoiser.require_condition()
    check_scheduler(scheduler)
    gradient_estimator.check_compatible(denoiser)
    gradient_estimator.check_schedule(scheduler)
    sample_channels, sample_size = denoiser.sample_shape[:2]
    image = None
    check_trained_autoencoder(gradient_estimator, vae)
    if vae is not None:
        check_autoencoder_fits(vae, sample_channels)
        image = (vae.config.in_channels, sample_size * downsampling_factor(vae))
    if image is not None and encoder_reads_pixels(encoder.config, (image[0], image[1], image[1])):
        expected = image  # an encoder of the pixel images a latent pipeline takes
    else:
        expected = (sample_channels, sample_size)
    mismatches = [
        f"{key}: UNet {want!r} vs encoder {encoder.config[key]!r}"
        for key, want in zip(("in_channels", "sample_size"), expected, strict=True)
        if encoder.config[key] != want
    ]
    mismatches += config_mismatches(("encoder", encoder), ("gradient_estimator", gradient_estimator), ("latent_dim",))
    if mismatches:
        pixels = "" if image is None else f" (or the autoencoder's pixel images: {image[0]} channels, {image[1]} px)"
        larger = vae is None and encoder.config["sample_size"] > sample_size
        latent = (
            " An encoder of images larger than the UNet's samples reads a latent DPM's pixel images: is the "
            "autoencoder missing (pass vae; a saved folder lists it in model_index.json as 'vae')?"
            if larger else ""
        )  # fmt: skip
        raise ValueError(
            "The encoder does not fit the UNet and gradient estimator (" + "; ".join(mismatches) + "). Build the "
            f"encoder with the UNet's in_channels and sample_size{pixels} and the estimator's latent_dim.{latent}"
        )
    check_latent_sampler(latent_sampler, latent_scheduler, encoder.config.latent_dim)


def frozen_model(unet: ModelMixin | None, transformer: ModelMixin | None) -> ModelMixin:
    """The pipeline's one frozen model: its `unet` or its `transformer`; a `ValueError` for neither or both."""
    if (unet is None) == (transformer is None):
        what = "neither" if unet is None else "both"
        raise ValueError(
            "PDAEPipeline takes one frozen model, its unet (a UNet2DModel or UNet2DConditionModel) or its "
            f"transformer (a DiTTransformer2DModel); got {what}."
        )
    return unet if unet is not None else transformer


def check_trained_autoencoder(gradient_estimator: ModelMixin, vae: ModelMixin | None) -> None:
    """A G trained on an autoencoder's latents (a saved one records its scaling factor) needs that autoencoder, with
    the same scaling factor (its weights digest is checked when a folder is loaded)."""
    trained = gradient_estimator.config.get("autoencoder_scaling_factor")
    if trained is None:
        return
    if vae is None:
        raise ValueError(
            f"The gradient estimator was trained on an autoencoder's latents (scaling_factor {trained:g}), but the "
            "pipeline has no vae: pass the latent DPM's autoencoder as vae."
        )
    factor = vae.config.get("scaling_factor")
    if isinstance(factor, (int, float)) and not isinstance(factor, bool) and abs(factor - trained) > 1e-6 * trained:
        raise ValueError(
            f"The vae's scaling_factor {factor:g} is not the {trained:g} the encoder and gradient estimator were "
            "trained with (gradient_estimator.config.autoencoder_scaling_factor): use the autoencoder they were "
            "trained with, unchanged."
        )


def check_autoencoder_fits(vae: ModelMixin, sample_channels: int) -> None:
    """A `VQModel` or `AutoencoderKL` whose latents have the channels the frozen model denoises."""
    check_autoencoder(vae)
    if vae.config.latent_channels != sample_channels:
        raise ValueError(
            f"The autoencoder's latents have {vae.config.latent_channels} channels but the UNet denoises "
            f"{sample_channels}: a latent DPM's UNet and its autoencoder come from the same LDM."
        )


def check_latent_sampler(latent_sampler: ModelMixin | None, latent_scheduler: SchedulerMixin | None, latent_dim: int):
    """The optional latent sampler comes with its scheduler and fits the codes (a scheduler alone is unused, so
    harmless: diffusers' own tests clear optional components one at a time)."""
    if latent_sampler is None:
        return
    if latent_scheduler is None:
        raise ValueError("latent_sampler is given without latent_scheduler; pass both (or neither).")
    if latent_sampler.config.latent_dim != latent_dim:
        raise ValueError(
            f"The latent sampler makes codes of width {latent_sampler.config.latent_dim} but the encoder's are "
            f"{latent_dim}; train the sampler on this pipeline's codes."
        )
    if latent_scheduler.config.get("clip_sample", False):
        raise ValueError(
            "The latent scheduler clips samples to [-1, 1], which normalised codes exceed; build it with "
            "clip_sample=False."
        )
    if latent_scheduler.config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError("The latent sampler predicts noise; its scheduler's prediction_type must be 'epsilon'.")


def check_diffae_components(unet: ModelMixin, encoder: ModelMixin, scheduler: SchedulerMixin) -> None:
    """`DiffAEPipeline`'s three components are there, the scheduler is a discrete noise-predicting schedule, and the
    encoder fits the conditional UNet."""
    check_no_missing_components("DiffAEPipeline", {"unet": unet, "encoder": encoder, "scheduler": scheduler})
    if not has_discrete_schedule(scheduler):
        raise ValueError(
            f"{type(scheduler).__name__} has no discrete training schedule (betas and alphas_cumprod over "
            "num_train_timesteps), which the baseline is trained and inverted with; use one that has, e.g. "
            "DDPMScheduler or DDIMScheduler."
        )
    if scheduler.config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(
            f"The Diff-AE baseline predicts noise, but the scheduler's prediction_type is "
            f"{scheduler.config.prediction_type!r}; build it with prediction_type='epsilon'."
        )
    mismatches = config_mismatches(("unet", unet), ("encoder", encoder), ("in_channels", "sample_size", "latent_dim"))
    if mismatches:
        raise ValueError(
            "The encoder does not fit the conditional UNet (" + "; ".join(mismatches) + "); build both with the same "
            "image size, channels and latent_dim."
        )
