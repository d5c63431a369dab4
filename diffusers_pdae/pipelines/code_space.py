"""`CodeSpaceMixin`: what an autoencoder pipeline does in code space beyond reconstruction: interpolating between two
images, moving codes along an attribute direction, fitting such a direction, and sampling new codes with a latent
sampler (the pipeline's optional `latent_sampler` and `latent_scheduler`).

Built on [`ImageAutoencoderPipelineMixin`]'s encoder, inversion and decoding loops, so every autoencoder pipeline
(`PDAEPipeline`, `DiffAEPipeline`) edits images the same way: `class MyPipeline(CodeSpaceMixin,
ImageAutoencoderPipelineMixin, DiffusionPipeline)`.
"""

from __future__ import annotations

import torch
from diffusers import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from ..directions import AttributeDirection, fit_attribute_direction
from ..image_utils import ImageInput
from ..sampling import SchedulerStepper, slerp
from .autoencoder import DEFAULT_INFERENCE_STEPS
from .input_checks import (
    check_batch_size,
    check_eta,
    check_generator,
    check_interpolation_count,
    check_num_inference_steps,
    check_output_type,
    check_scales,
)


class CodeSpaceMixin:
    """`interpolate`, `manipulate`, `attribute_direction` and `sample_codes`, for a pipeline with
    [`ImageAutoencoderPipelineMixin`]."""

    @torch.no_grad()
    def interpolate(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        num: int = 8,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Decode `num` images between two images: slerp on their inverted x_T, lerp on their codes.

        Args:
            image_a: one image, as for `encode`: the first frame reconstructs it.
            image_b: one image: the last frame reconstructs it.
            num (`int`, defaults to 8): frames, the two ends included (at least 2).
            num_inference_steps (`int`, defaults to 50): DDIM steps of inversion and decoding.
            output_type (`str`, defaults to `"pil"`) and return_dict (`bool`, defaults to `True`): as for `decode`.
        """
        output_type = check_output_type(output_type)
        num = check_interpolation_count(num)
        num_inference_steps = self._check_steps(num_inference_steps)
        pixels = torch.cat([self.prepare_images(image_a), self.prepare_images(image_b)])
        if pixels.shape[0] != 2:
            raise ValueError("interpolate takes exactly one image for image_a and one for image_b.")
        sample = self._to_latents(pixels)
        z = self._encode_codes(pixels, sample)
        x_T = self._invert_latents(sample, z, num_inference_steps)
        weights = torch.linspace(0, 1, num).tolist()
        latents = torch.stack([slerp(x_T[0], x_T[1], w) for w in weights])
        codes = torch.stack([torch.lerp(z[0], z[1], w) for w in weights])
        return self._output(self._decode_latents(latents, codes, num_inference_steps), output_type, return_dict)

    @torch.no_grad()
    def manipulate(
        self,
        images: ImageInput,
        direction: torch.Tensor,
        scales: list[float],
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Edit images by moving their codes along `direction`: decode z + s * direction from their own inverted x_T.

        Args:
            images: as for `encode` (B images).
            direction (`torch.Tensor` of shape `(latent_dim,)`): e.g. from `attribute_direction`.
            scales (`list[float]`): the steps s to take (0 reconstructs).
            num_inference_steps (`int`, defaults to 50): DDIM steps of inversion and decoding.
            output_type (`str`, defaults to `"pil"`) and return_dict (`bool`, defaults to `True`): as for `decode`.

        Returns:
            `B * len(scales)` images, image-major: image 0 at every scale, then image 1, ...
        """
        output_type = check_output_type(output_type)
        num_inference_steps = self._check_steps(num_inference_steps)
        scales = check_scales(scales)
        if not isinstance(direction, torch.Tensor) or direction.shape != (self.latent_dim,):
            got = tuple(direction.shape) if isinstance(direction, torch.Tensor) else type(direction).__name__
            raise ValueError(f"direction must be a tensor of shape ({self.latent_dim},), got {got}.")
        pixels = self.prepare_images(images)
        direction = self._check_codes(direction[None], name="direction")[0]
        sample = self._to_latents(pixels)
        z = self._encode_codes(pixels, sample)
        x_T = self._invert_latents(sample, z, num_inference_steps)
        scales = torch.as_tensor(scales, device=z.device, dtype=z.dtype)
        codes = (z[:, None, :] + scales[None, :, None] * direction).flatten(0, 1)
        latents = x_T.repeat_interleave(len(scales), dim=0)
        return self._output(self._decode_latents(latents, codes, num_inference_steps), output_type, return_dict)

    @torch.no_grad()
    def attribute_direction(
        self, images_a: ImageInput, images_b: ImageInput, batch_size: int = 256
    ) -> AttributeDirection:
        """Fit the direction in code space from images without an attribute (`images_b`) towards images with it
        (`images_a`): the normal of a logistic-regression boundary between their codes (needs scikit-learn, the
        `[eval]` extra). No labels beyond the split into the two sets are needed.

        Args:
            images_a: as for `encode` (at least 2 images): the images with the attribute, e.g. bold digits.
            images_b: likewise (at least 2 images): the images without it, e.g. thin digits.
            batch_size (`int`, defaults to 256): images per encoder call.

        Returns:
            [`~diffusers_pdae.directions.AttributeDirection`]: `pipe.manipulate(images, out.direction,
            out.scales([-1, 0, 1]))` moves the codes by -1, 0 and +1 separations between the two sets' mean codes.
        """
        batch_size = check_batch_size(batch_size, "batch_size")
        codes = []
        for images in (images_a, images_b):
            pixels = self.prepare_images(images)
            codes.append(torch.cat([self._encode_codes(part).float().cpu() for part in pixels.split(batch_size)]))
        return fit_attribute_direction(*codes)

    @torch.no_grad()
    def sample_codes(
        self,
        batch_size: int = 1,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        generator: torch.Generator | list[torch.Generator] | None = None,
        eta: float = 0.0,
    ) -> torch.Tensor:
        """Sample new codes with the latent sampler (DDIM or any scheduler given as `latent_scheduler`).

        Args:
            batch_size (`int`, defaults to 1): codes to sample.
            num_inference_steps (`int`, defaults to 50): the latent scheduler's steps.
            generator (`torch.Generator` or a list of `batch_size`, *optional*): makes the samples reproducible.
            eta (`float`, defaults to 0.0): DDIM's eta (ignored by schedulers that have none).

        Returns:
            `torch.Tensor` of shape `(batch_size, latent_dim)`: codes for `__call__`, `decode` or `manipulate`.
        """
        if getattr(self, "latent_sampler", None) is None:
            raise ValueError(
                "This pipeline has no latent_sampler: train one on your pipeline's codes with "
                "examples/train_latent_sampler.py, or pass codes z from pipe.encode."
            )
        batch_size, eta = check_batch_size(batch_size), check_eta(eta)
        check_generator(generator, batch_size)
        scheduler = type(self.latent_scheduler).from_config(self.latent_scheduler.config)
        num_inference_steps = check_num_inference_steps(num_inference_steps, scheduler.config.num_train_timesteps)
        scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        device, dtype = self._execution_device, self.latent_sampler.dtype
        sample = randn_tensor((batch_size, self.latent_dim), generator=generator, device=device, dtype=dtype)
        sample = sample * scheduler.init_noise_sigma
        step = SchedulerStepper(scheduler, eta, generator, device)
        for i, t in enumerate(self.progress_bar(scheduler.timesteps)):
            noise_pred = self.latent_sampler(scheduler.scale_model_input(sample, t), t).sample
            sample = step(i, t, noise_pred, sample)
        codes = self.latent_sampler.denormalize(sample)
        self.maybe_free_model_hooks()
        return codes.to(dtype=self.model_dtype)
