"""`ImageAutoencoderPipelineMixin`: the building blocks [`PDAEPipeline`] and [`DiffAEPipeline`] share.

Both autoencode images with a UNet, an encoder and a scheduler: they take images, codes and latents the same way,
invert and decode with the same deterministic DDIM schedule and return images the same way. The mixin reads only
`unet`, `encoder` and `scheduler`, the pipeline's `REQUIRED_COMPONENTS`, and what `DiffusionPipeline` provides
(`_execution_device`, `maybe_free_model_hooks`); it comes before `DiffusionPipeline` among the bases, so that its
`from_pretrained` wraps diffusers' own.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from diffusers import DDIMScheduler, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from ..image_utils import ImageInput, images_to_tensor, postprocess_images
from .input_checks import (
    check_finite,
    check_generator,
    check_num_inference_steps,
    check_output_type,
    check_pipeline_folder,
)

if TYPE_CHECKING:
    from typing_extensions import Self


class ImageAutoencoderPipelineMixin:
    """Image, code and latent handling, the DDIM schedule and checked loading for autoencoder pipelines.

    Use as `class MyPipeline(ImageAutoencoderPipelineMixin, DiffusionPipeline)` with `unet`, `encoder` and
    `scheduler` components and the component names a saved folder must hold in `REQUIRED_COMPONENTS`.
    """

    REQUIRED_COMPONENTS: tuple[str, ...]

    @property
    def latent_dim(self) -> int:
        """Width of the codes z (the encoder's `latent_dim`)."""
        return self.encoder.config.latent_dim

    @property
    def num_train_timesteps(self) -> int:
        """T of the training schedule: timesteps given to the pipeline (e.g. to `predict_noise`) are in [0, T)."""
        return self.scheduler.config.num_train_timesteps

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> Self:
        """`DiffusionPipeline.from_pretrained`, with two guards: a local folder is checked first, so a missing
        component or weight file is named; and weights are read from safetensors only (`use_safetensors=True` unless
        given), never from pickled `.bin` files."""
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(path):
            check_pipeline_folder(path, cls.REQUIRED_COMPONENTS)
        elif os.path.isabs(path) or path.startswith((".", "~")):
            raise FileNotFoundError(f"No pipeline folder at {path}.")
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(path, **kwargs)

    def prepare_images(self, images: ImageInput) -> torch.Tensor:
        """Convert PIL images or a tensor to `(B, C, H, W)` in [-1, 1] on the pipeline's device and dtype."""
        size = self.unet.config.sample_size
        tensor = images_to_tensor(images, self.unet.config.in_channels, size if isinstance(size, int) else size[0])
        return tensor.to(device=self._execution_device, dtype=self.unet.dtype)

    def deterministic_scheduler(self, num_inference_steps: int) -> DDIMScheduler:
        """A DDIM scheduler from the pipeline's schedule, with `clip_sample=False` (inversion must not clip)."""
        scheduler = DDIMScheduler.from_config(self.scheduler.config, clip_sample=False)
        scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        return scheduler

    def _check_codes(self, z: torch.Tensor, batch_size: int | None = None, name: str = "z") -> torch.Tensor:
        codes = z if isinstance(z, (list, tuple)) else ()
        if codes and all(isinstance(code, torch.Tensor) and code.ndim in (1, 2) for code in codes):
            if len({code.shape[-1] for code in codes}) == 1:
                # a list of codes, each (latent_dim,) or (n, latent_dim), as from several `encode` calls
                z = torch.cat([code.reshape(-1, code.shape[-1]) for code in codes])
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z)
            raise ValueError(
                f"{name} must be a tensor of shape (batch_size, {self.latent_dim}) as returned by pipe.encode, got "
                f"{shape}."
            )
        if not z.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {z.dtype}.")
        if batch_size is not None and z.shape[0] != batch_size:
            raise ValueError(f"{name} has {z.shape[0]} codes but there are {batch_size} images or latents.")
        check_finite(z, name)
        return z.to(device=self._execution_device, dtype=self.unet.dtype)

    def _check_latents(self, latents: torch.Tensor) -> torch.Tensor:
        size = self.unet.config.sample_size
        expected = (self.unet.config.in_channels, *((size, size) if isinstance(size, int) else size))
        if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or tuple(latents.shape[1:]) != expected:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents must have shape (batch_size, {', '.join(map(str, expected))}), got {shape}.")
        if latents.shape[0] == 0:
            raise ValueError("latents holds no sample (batch size 0).")
        check_finite(latents, "latents")
        return latents.to(device=self._execution_device, dtype=self.unet.dtype)

    def _check_steps(self, num_inference_steps) -> int:
        return check_num_inference_steps(num_inference_steps, self.num_train_timesteps)

    def _output(self, images: torch.Tensor, output_type: str, return_dict: bool):
        if output_type != "latent":
            images = postprocess_images(images, output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @torch.no_grad()
    def reconstruct(
        self,
        images: ImageInput,
        num_inference_steps: int = 100,
        invert: bool = True,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Autoencode images: encode, take x_T from DDIM inversion (or random noise), decode deterministically.

        The pipeline's own `invert` and deterministic decoding do the work, with the same steps both ways.

        Args:
            images (PIL image, list of PIL images, or `torch.Tensor` of shape `(B, C, H, W)` in [-1, 1]): as for the
                pipeline's `encode`.
            num_inference_steps (`int`, defaults to 100): DDIM steps of inversion and decoding.
            invert (`bool`, defaults to `True`): infer x_T by inversion; `False` decodes from z alone with random x_T.
            generator (`torch.Generator` or a list of one per image, *optional*): for the random x_T.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` (in [0, 1]) or `"latent"` (the raw
                `(B, C, H, W)` result in the model's [-1, 1] space, unclipped).
            return_dict (`bool`, defaults to `True`): return an `ImagePipelineOutput` instead of a tuple.
        """
        output_type = check_output_type(output_type)
        num_inference_steps = self._check_steps(num_inference_steps)
        sample = self.prepare_images(images)
        if not invert:
            check_generator(generator, sample.shape[0])
        z = self.encoder(sample).z
        if invert:
            latents = self.invert(sample, z, num_inference_steps)
        else:
            latents = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        return self._output(self._decode_deterministically(latents, z, num_inference_steps), output_type, return_dict)
