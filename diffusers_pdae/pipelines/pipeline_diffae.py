"""`DiffAEPipeline`: the Diff-AE-style baseline autoencoder (a conditional DPM and its encoder, trained together)."""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, ModelMixin
from diffusers.schedulers import SchedulerMixin

from ..image_utils import ImageInput
from ..models.diffae_unet import DiffAEUNet2DModel
from ..pdae_math import ddim_step, ddim_transitions
from .autoencoder import ImageAutoencoderPipelineMixin
from .input_checks import check_output_type, check_timesteps


class DiffAEPipeline(ImageAutoencoderPipelineMixin, DiffusionPipeline):
    r"""
    The Diff-AE-style baseline (Preechakul et al., CVPR 2022): encoder z = Enc(x_0) and a conditional noise predictor
    eps_theta(x_t, t, z), trained together from scratch
    ([`~diffusers_pdae.training.diffae_objective.diffae_training_loss`]). Images are autoencoded as in
    [`PDAEPipeline`]: encode, invert x_0 -> x_T with deterministic DDIM conditioned on z, decode x_T with z.
    `benchmarks/sample_efficiency.py` compares it with PDAE.

    Parameters:
        unet ([`DiffAEUNet2DModel`]): the conditional noise predictor.
        encoder ([`PDAEEncoder`], [`PDAEResidualEncoder`] or [`PDAETransformersEncoder`]): image -> z.
        scheduler ([`SchedulerMixin`]): the training schedule (`DDPMScheduler` or `DDIMScheduler`,
            `prediction_type="epsilon"`). Inversion and decoding use a [`DDIMScheduler`] built from its config with
            `clip_sample=False`.
    """

    model_cpu_offload_seq = "encoder->unet"
    REQUIRED_COMPONENTS = ("unet", "encoder", "scheduler")

    def __init__(self, unet: DiffAEUNet2DModel, encoder: ModelMixin, scheduler: SchedulerMixin):
        super().__init__()
        check_components(unet, encoder, scheduler)
        self.register_modules(unet=unet, encoder=encoder, scheduler=scheduler)

    @torch.no_grad()
    def encode(self, images: ImageInput) -> torch.Tensor:
        """Encode images to codes.

        Args:
            images (PIL image, list of PIL images, or `torch.Tensor` of shape `(B, C, H, W)` in [-1, 1]): converted as
                by [`~PDAEPipeline.encode`].

        Returns:
            `torch.Tensor` of shape `(B, latent_dim)`.
        """
        return self.encoder(self.prepare_images(images)).z

    def predict_noise(self, sample: torch.Tensor, timestep: int | torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t, z): `(B, C, H, W)` x_t, an int or `(B,)` training timesteps and `(B, latent_dim)` codes
        -> `(B, C, H, W)`."""
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        check_timesteps(timesteps, self.num_train_timesteps)
        return self.unet(sample, timesteps, z).sample

    @torch.no_grad()
    def invert(
        self, images: ImageInput, z: torch.Tensor | None = None, num_inference_steps: int = 100
    ) -> torch.Tensor:
        """Deterministic DDIM inversion x_0 -> x_T conditioned on z, the exact mirror of [`~DiffAEPipeline.decode`].

        Args:
            images: as for [`~DiffAEPipeline.encode`].
            z (`torch.Tensor` of shape `(B, latent_dim)`, *optional*): codes; computed with the encoder if omitted.
            num_inference_steps (`int`, defaults to 100): DDIM steps.

        Returns:
            `torch.Tensor` of shape `(B, C, H, W)`: x_T.
        """
        num_inference_steps = self._check_steps(num_inference_steps)
        sample = self.prepare_images(images)
        z = self.encoder(sample).z if z is None else self._check_codes(z, sample.shape[0])
        transitions = ddim_transitions(self.deterministic_scheduler(num_inference_steps), sample.device)
        # Each step predicts the noise at the *target* timestep, as decoding does from there.
        for t, alpha_t, alpha_next in self.progress_bar(list(reversed(transitions))):
            sample = ddim_step(sample, self.predict_noise(sample, t, z), alpha_next, alpha_t)
        return sample

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        z: torch.Tensor,
        num_inference_steps: int = 100,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Deterministic DDIM decoding of x_T with codes, so `decode(invert(images, z, n), z, n)` gives the images
        back.

        Args:
            latents (`torch.Tensor` of shape `(B, C, H, W)`): x_T.
            z (`torch.Tensor` of shape `(B, latent_dim)`): codes.
            num_inference_steps (`int`, defaults to 100): DDIM steps.
            output_type (`str`, defaults to `"pt"`): `"pt"` (in [0, 1]), `"np"`, `"pil"`, or `"latent"` for the raw
                `(B, C, H, W)` result in the model's [-1, 1] space, unclipped.
            return_dict (`bool`, defaults to `True`): return an [`ImagePipelineOutput`] instead of a tuple.
        """
        output_type = check_output_type(output_type)
        num_inference_steps = self._check_steps(num_inference_steps)
        latents = self._check_latents(latents)
        z = self._check_codes(z, latents.shape[0])
        return self._output(self._decode_deterministically(latents, z, num_inference_steps), output_type, return_dict)

    def _decode_deterministically(
        self, latents: torch.Tensor, z: torch.Tensor, num_inference_steps: int
    ) -> torch.Tensor:
        """x_T `(B, C, H, W)` -> x_0 in model space with DDIM (eta = 0, no clipping): the body of `decode`."""
        transitions = ddim_transitions(self.deterministic_scheduler(num_inference_steps), latents.device)
        for t, alpha_t, alpha_next in self.progress_bar(transitions):
            latents = ddim_step(latents, self.predict_noise(latents, t, z), alpha_t, alpha_next)
        return latents


def check_components(unet: DiffAEUNet2DModel, encoder: ModelMixin, scheduler: SchedulerMixin) -> None:
    """Raise a `ValueError` for a missing component, a non-noise-predicting scheduler, or an encoder that does not fit
    the UNet."""
    components = {"unet": unet, "encoder": encoder, "scheduler": scheduler}
    missing = [name for name, component in components.items() if component is None]
    if missing:
        raise ValueError(f"DiffAEPipeline is missing {', '.join(missing)}; it needs unet, encoder and scheduler.")
    betas = getattr(scheduler, "betas", None)
    if (
        betas is None
        or len(betas) != scheduler.config.get("num_train_timesteps")
        or not hasattr(scheduler, "alphas_cumprod")
    ):
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
    mismatches = [
        f"{key}: unet {unet.config[key]!r} vs encoder {encoder.config[key]!r}"
        for key in ("in_channels", "sample_size", "latent_dim")
        if unet.config[key] != encoder.config[key]
    ]
    if mismatches:
        raise ValueError(
            "The encoder does not fit the conditional UNet (" + "; ".join(mismatches) + "); build both with the same "
            "image size, channels and latent_dim."
        )
