"""`ImageAutoencoderPipelineMixin`: everything [`PDAEPipeline`] and [`DiffAEPipeline`] share.

Both autoencode images with a UNet, an encoder and a scheduler, and differ only in how they predict noise from x_t,
t and a code z: each supplies `predict_noise(sample, timestep, z, **options)`. The rest lives here once: taking
images, codes and latents; `encode`; deterministic DDIM inversion and decoding over that hook (exact mirrors of
each other); and what is built on them, `reconstruct`, `interpolate`, `manipulate` and `attribute_direction`.
The mixin reads the `unet`, `encoder` and `scheduler` components, the pipeline's `REQUIRED_COMPONENTS`, and what
`DiffusionPipeline` provides (`_execution_device`, `progress_bar`, `maybe_free_model_hooks`); it comes before
`DiffusionPipeline` among the bases, so its `from_pretrained` wraps diffusers' own.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from diffusers import DDIMScheduler, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from ..directions import AttributeDirection, fit_attribute_direction
from ..image_utils import ImageInput, images_to_tensor, postprocess_images
from ..pdae_math import ddim_step, ddim_transitions
from ..sampling import deterministic_scheduler, in_shift_range, slerp
from .input_checks import (
    check_batch_size,
    check_codes,
    check_generator,
    check_interpolation_count,
    check_latents,
    check_num_inference_steps,
    check_output_type,
    check_pipeline_folder,
    check_scales,
    check_timesteps,
)

if TYPE_CHECKING:
    from typing_extensions import Self

# One default for every public method: diffusers' DDIM pipeline samples with 50 steps.
DEFAULT_INFERENCE_STEPS = 50


class ImageAutoencoderPipelineMixin:
    """Images, codes and latents in and out, encoding, DDIM inversion and decoding, and checked loading.

    Use as `class MyPipeline(ImageAutoencoderPipelineMixin, DiffusionPipeline)` with `unet`, `encoder` and
    `scheduler` components, the component names a saved folder must hold in `REQUIRED_COMPONENTS`, and a
    `predict_noise(sample, timestep, z, **options)` returning the noise prediction `(B, C, H, W)` at x_t.
    """

    REQUIRED_COMPONENTS: tuple[str, ...]
    # Whether `predict_noise` takes z=None (PDAE's frozen DPM denoises alone; Diff-AE's UNet needs codes).
    decodes_without_codes: bool = False

    @property
    def latent_dim(self) -> int:
        """Width of the codes z (the encoder's `latent_dim`)."""
        return self.encoder.config.latent_dim

    @property
    def num_train_timesteps(self) -> int:
        """T of the training schedule: timesteps given to the pipeline (e.g. to `predict_noise`) are in [0, T)."""
        return self.scheduler.config.num_train_timesteps

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """`(C, H, W)` of what the UNet denoises: x_t, x_T and the `latents` the methods take."""
        size = self.unet.config.sample_size
        return (self.unet.config.in_channels, *((size, size) if isinstance(size, int) else size))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> Self:
        """`DiffusionPipeline.from_pretrained`, with two guards: a local folder is checked first, so a missing
        component or weight file is named; and weights are read from safetensors only (`use_safetensors=True` unless
        given), never from pickled `.bin` files."""
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(path):
            check_pipeline_folder(path, cls.REQUIRED_COMPONENTS, cls.__name__)
        elif os.path.isabs(path) or path.startswith((".", "~")):
            raise FileNotFoundError(f"No pipeline folder at {path}.")
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(path, **kwargs)

    # ------------------------------------------------------------------ public API

    @torch.no_grad()
    def encode(self, images: ImageInput) -> torch.Tensor:
        """Encode images to codes.

        Args:
            images (PIL image, list of PIL images, or `torch.Tensor` of shape `(B, C, H, W)` in [-1, 1]): PIL images
                are converted to the UNet's channels and size (smaller ones, e.g. 28x28 MNIST for a 32x32 UNet, are
                padded with black; larger ones centre-cropped and resized).

        Returns:
            `torch.Tensor` of shape `(B, latent_dim)`.
        """
        return self.encoder(self.prepare_images(images)).z

    @torch.no_grad()
    def invert(
        self, images: ImageInput, z: torch.Tensor | None = None, num_inference_steps: int = DEFAULT_INFERENCE_STEPS
    ) -> torch.Tensor:
        """Deterministic DDIM inversion x_0 -> x_T conditioned on z, the exact mirror of `decode`.

        Args:
            images: as for `encode`.
            z (`torch.Tensor` of shape `(B, latent_dim)`, *optional*): codes; computed with the encoder if omitted.
            num_inference_steps (`int`, defaults to 50): DDIM steps.

        Returns:
            `torch.Tensor` of shape `(B, C, H, W)`: x_T.
        """
        return self._invert(images, z, num_inference_steps)

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        z: torch.Tensor,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Deterministic DDIM decoding of x_T with codes, so `decode(invert(images, z, n), z, n)` gives the images
        back.

        Args:
            latents (`torch.Tensor` of shape `(B, C, H, W)`): x_T.
            z (`torch.Tensor` of shape `(B, latent_dim)`): codes.
            num_inference_steps (`int`, defaults to 50): DDIM steps.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` (in [0, 1]), or `"latent"` for the raw
                `(B, C, H, W)` result in the model's [-1, 1] space, unclipped.
            return_dict (`bool`, defaults to `True`): return an [`ImagePipelineOutput`] instead of a tuple.
        """
        return self._decode(latents, z, num_inference_steps, output_type, return_dict)

    @torch.no_grad()
    def reconstruct(
        self,
        images: ImageInput,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        invert: bool = True,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Autoencode images: encode, take x_T from DDIM inversion (or random noise), decode deterministically.

        Args:
            images (PIL image, list of PIL images, or `torch.Tensor` of shape `(B, C, H, W)` in [-1, 1]): as for
                `encode`.
            num_inference_steps (`int`, defaults to 50): DDIM steps of inversion and decoding.
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
            latents = self._invert_latents(sample, z, num_inference_steps)
        else:
            latents = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        return self._output(self._decode_latents(latents, z, num_inference_steps), output_type, return_dict)

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
        sample = torch.cat([self.prepare_images(image_a), self.prepare_images(image_b)])
        if sample.shape[0] != 2:
            raise ValueError("interpolate takes exactly one image for image_a and one for image_b.")
        z = self.encoder(sample).z
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
        if not isinstance(direction, torch.Tensor):
            raise ValueError(
                f"direction must be a tensor of shape ({self.latent_dim},), got {type(direction).__name__}."
            )
        sample = self.prepare_images(images)
        direction = self._check_codes(direction.reshape(1, -1), name="direction")[0]
        z = self.encoder(sample).z
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
            sample = self.prepare_images(images)
            codes.append(torch.cat([self.encoder(part).z.float().cpu() for part in sample.split(batch_size)]))
        return fit_attribute_direction(*codes)

    # ------------------------------------------------------------------ building blocks

    def prepare_images(self, images: ImageInput) -> torch.Tensor:
        """Convert PIL images or a tensor to `(B, C, H, W)` in [-1, 1] on the pipeline's device and dtype."""
        channels, height, _ = self.sample_shape
        tensor = images_to_tensor(images, channels, height)
        return tensor.to(device=self._execution_device, dtype=self.unet.dtype)

    def deterministic_scheduler(self, num_inference_steps: int) -> DDIMScheduler:
        """A DDIM scheduler from the pipeline's schedule, with `clip_sample=False` (inversion must not clip)."""
        return deterministic_scheduler(self.scheduler, num_inference_steps, self._execution_device)

    def _timesteps(self, timestep: int | torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """An int, `()` or `(B,)` timestep as checked training timesteps of shape `(B,)` on `sample`'s device."""
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        check_timesteps(timesteps, self.num_train_timesteps)
        return timesteps

    def _invert(
        self, images: ImageInput, z: torch.Tensor | None, num_inference_steps: int, condition: bool = True, **options
    ) -> torch.Tensor:
        """`invert`'s checks, then [`_invert_latents`]; `condition=False` inverts without codes."""
        num_inference_steps = self._check_steps(num_inference_steps)
        sample = self.prepare_images(images)
        if not condition:
            z = None
        elif z is None:
            z = self.encoder(sample).z
        else:
            z = self._check_codes(z, sample.shape[0])
        return self._invert_latents(sample, z, num_inference_steps, **options)

    def _decode(
        self,
        latents: torch.Tensor,
        z: torch.Tensor | None,
        num_inference_steps: int,
        output_type: str,
        return_dict: bool,
        shift_range: tuple[int, int] | None = None,
    ) -> ImagePipelineOutput | tuple:
        """`decode`'s checks, then [`_decode_latents`]."""
        output_type = check_output_type(output_type)
        num_inference_steps = self._check_steps(num_inference_steps)
        latents = self._check_latents(latents)
        if z is not None or not self.decodes_without_codes:
            z = self._check_codes(z, latents.shape[0])
        images = self._decode_latents(latents, z, num_inference_steps, shift_range)
        return self._output(images, output_type, return_dict)

    def _invert_latents(
        self, sample: torch.Tensor, z: torch.Tensor | None, num_inference_steps: int, **options
    ) -> torch.Tensor:
        """The inversion loop: x_0 `(B, C, H, W)` -> x_T over the transitions of `deterministic_scheduler`, walked
        backwards; each step predicts the noise at the current sample and the *target* timestep, as decoding does
        from there, so decoding with the same z and steps gives x_0 back."""
        transitions = ddim_transitions(self.deterministic_scheduler(num_inference_steps), sample.device)
        for t, alpha_t, alpha_next in self.progress_bar(list(reversed(transitions))):
            sample = ddim_step(sample, self.predict_noise(sample, t, z, **options), alpha_next, alpha_t)
        return sample

    def _decode_latents(
        self,
        latents: torch.Tensor,
        z: torch.Tensor | None,
        num_inference_steps: int,
        shift_range: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """The decoding loop: x_T `(B, C, H, W)` -> x_0 in model space with DDIM (eta = 0, no clipping), with the
        codes only at training timesteps inside `shift_range` (all when None)."""
        transitions = ddim_transitions(self.deterministic_scheduler(num_inference_steps), latents.device)
        for t, alpha_t, alpha_next in self.progress_bar(transitions):
            codes = z if in_shift_range(t, shift_range) else None
            latents = ddim_step(latents, self.predict_noise(latents, t, codes), alpha_t, alpha_next)
        return latents

    def _check_codes(self, z: torch.Tensor, batch_size: int | None = None, name: str = "z") -> torch.Tensor:
        z = check_codes(z, self.latent_dim, batch_size, name)
        return z.to(device=self._execution_device, dtype=self.unet.dtype)

    def _check_latents(self, latents: torch.Tensor) -> torch.Tensor:
        latents = check_latents(latents, self.sample_shape)
        return latents.to(device=self._execution_device, dtype=self.unet.dtype)

    def _check_steps(self, num_inference_steps) -> int:
        return check_num_inference_steps(num_inference_steps, self.num_train_timesteps)

    def _output(self, images: torch.Tensor, output_type: str, return_dict: bool):
        if output_type != "latent":
            images = postprocess_images(images, output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)
