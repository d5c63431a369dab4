"""`DiffAEPipeline`: the Diff-AE-style baseline autoencoder (a conditional DPM and its encoder, trained together)."""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ModelMixin
from diffusers.schedulers import SchedulerMixin

from ..models.diffae_unet import DiffAEUNet2DModel
from ..models.frozen_denoiser import config_sample_shape
from .autoencoder import ImageAutoencoderPipelineMixin
from .code_space import CodeSpaceMixin
from .component_checks import check_diffae_components
from .folder_checks import ENCODER_CLASS_NAMES


class DiffAEPipeline(CodeSpaceMixin, ImageAutoencoderPipelineMixin, DiffusionPipeline):
    r"""
    The Diff-AE-style baseline (Preechakul et al., CVPR 2022): encoder z = Enc(x_0) and a conditional noise predictor
    eps_theta(x_t, t, z), trained together from scratch
    ([`~diffusers_pdae.training.diffae_objective.diffae_training_loss`]). Images are autoencoded as in
    [`PDAEPipeline`], by the same methods from [`ImageAutoencoderPipelineMixin`] (`encode`, `invert`, `decode`,
    `reconstruct`, `interpolate`, `manipulate`, `attribute_direction`): encode, invert x_0 -> x_T with deterministic
    DDIM conditioned on z, decode x_T with z. `benchmarks/sample_efficiency.py` compares it with PDAE.

    Parameters:
        unet ([`DiffAEUNet2DModel`]): the conditional noise predictor.
        encoder ([`PDAEEncoder`], [`PDAEResidualEncoder`] or [`PDAETransformersEncoder`]): image -> z.
        scheduler ([`SchedulerMixin`]): the training schedule (`DDPMScheduler` or `DDIMScheduler`,
            `prediction_type="epsilon"`). Inversion and decoding use a [`DDIMScheduler`] built from its config with
            `clip_sample=False`.
    """

    model_cpu_offload_seq = "encoder->unet"
    REQUIRED_COMPONENTS = COMPONENT_NAMES = ("unet", "encoder", "scheduler")
    COMPONENT_CLASSES = {"unet": ("DiffAEUNet2DModel",), "encoder": ENCODER_CLASS_NAMES}

    def __init__(self, unet: DiffAEUNet2DModel, encoder: ModelMixin, scheduler: SchedulerMixin):
        super().__init__()
        check_diffae_components(unet, encoder, scheduler)
        self.register_modules(unet=unet, encoder=encoder, scheduler=scheduler)
        self._components_ready = True

    check_components = staticmethod(check_diffae_components)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """`(C, H, W)` of what the conditional UNet denoises."""
        return config_sample_shape(self.unet.config)

    @property
    def model_dtype(self) -> torch.dtype:
        return self.unet.dtype

    def predict_noise(self, sample: torch.Tensor, timestep: int | torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t, z): `(B, C, H, W)` x_t, an int or `(B,)` training timesteps and `(B, latent_dim)` codes
        -> `(B, C, H, W)`."""
        return self.unet(sample, self._timesteps(timestep, sample), z).sample
