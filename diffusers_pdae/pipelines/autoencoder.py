"""`ImageAutoencoderPipelineMixin`: everything [`PDAEPipeline`] and [`DiffAEPipeline`] share.

Both autoencode images with a UNet, an encoder and a scheduler, and differ only in how they predict noise from x_t,
t and a code z: each supplies `predict_noise(sample, timestep, z, **options)`. The rest lives here once: taking
images, codes and latents; `encode`; deterministic DDIM inversion and decoding over that hook (exact mirrors of
each other); and `reconstruct`, built on them (the editing methods are in [`ImageEditingMixin`]).
The mixin reads the `encoder` and `scheduler` components, the diffusion model through `sample_shape` and
`model_dtype` (PDAE's frozen one through its adapter, `denoiser`), the pipeline's `REQUIRED_COMPONENTS`, and what
`DiffusionPipeline` provides (`_execution_device`, `progress_bar`, `maybe_free_model_hooks`); it comes before
`DiffusionPipeline` among the bases, so its `from_pretrained` wraps diffusers' own.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from diffusers import DDIMScheduler, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from ..image_utils import ImageInput, images_to_tensor, postprocess_images
from ..latent_space import (
    AUTOENCODER_COMPONENT_NAMES,
    AUTOENCODER_TYPES,
    decode_latents,
    downsampling_factor,
    encode_images,
    encoder_reads_pixels,
)
from ..models.frozen_denoiser import DENOISER_COMPONENT_NAMES
from ..pdae_math import ddim_step, ddim_transitions
from ..sampling import deterministic_scheduler, in_shift_range
from .autoencoder_checks import check_autoencoder_config, check_autoencoder_identity
from .folder_checks import (
    LOAD_ATTEMPTS,
    check_loaded_weights,
    check_pipeline_folder,
    check_unet_digest,
    check_weights_fit_config,
    folder_identity,
    name_components_after,
    naming_folder,
    package_model_classes,
    resolve_pipeline_folder,
    stable_snapshot,
)
from .input_checks import (
    check_codes,
    check_generator,
    check_latents,
    check_not_latents,
    check_num_inference_steps,
    check_output_type,
    check_safe_serialization,
    check_timesteps,
)

if TYPE_CHECKING:
    from typing_extensions import Self

# One default for every public method: diffusers' DDIM pipeline samples with 50 steps.
DEFAULT_INFERENCE_STEPS = 50


class ImageAutoencoderPipelineMixin:
    """Images, codes and latents in and out, encoding, DDIM inversion and decoding, and checked loading.

    Use as `class MyPipeline(ImageAutoencoderPipelineMixin, DiffusionPipeline)` with `encoder` and `scheduler`
    components, a `denoiser` (a [`FrozenDenoiser`]) or `sample_shape` and `model_dtype` of its own, the component
    names a saved folder must hold in `REQUIRED_COMPONENTS` (all of them in `COMPONENT_NAMES`), a
    `check_components(**components)` that raises for unusable ones, and a `predict_noise(sample, timestep, z,
    **options)` returning the noise prediction `(B, C, H, W)` at x_t. Set `self._components_ready = True` after
    `register_modules`: from then on a swapped component is checked.
    """

    REQUIRED_COMPONENTS: tuple[str, ...]
    COMPONENT_NAMES: tuple[str, ...]  # the required and the optional ones, as `check_components` takes them
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
        """`(C, H, W)` of what the diffusion model denoises: x_t, x_T and the `latents` the methods take."""
        return self.denoiser.sample_shape

    @property
    def model_dtype(self) -> torch.dtype:
        """The dtype the diffusion model runs in, which images, codes and latents are given in."""
        return self.denoiser.dtype

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """`(C, H, W)` of the pixel images the methods take and return: the UNet's samples, or for a latent DPM
        (a `vae` component) what the autoencoder decodes them to."""
        vae = getattr(self, "vae", None)
        if vae is None:
            return self.sample_shape
        factor, (_, height, width) = downsampling_factor(vae), self.sample_shape
        return (vae.config.in_channels, height * factor, width * factor)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> Self:
        """`DiffusionPipeline.from_pretrained`, guarded: weights are read from safetensors only (`use_safetensors=True`
        unless given), never from pickled files; a Hub repo is first fetched without its pickles; the folder is
        checked before anything is loaded (every component, file and class there; each of our models' weights fit
        its config; PDAE's UNet is the one its encoder and G were trained with) and the loaded weights after (no NaN
        or infinite value); no code from the folder runs (its `pipeline_pdae.py` is for loaders without the
        package); and a folder replaced by a concurrent save while it was read is read again, so one load never
        pairs components of two saves."""
        path = resolve_pipeline_folder(os.fspath(pretrained_model_name_or_path), kwargs)
        kwargs.setdefault("use_safetensors", True)
        for _ in range(LOAD_ATTEMPTS):
            with stable_snapshot(path) as folder:
                identity = folder_identity(folder)
                try:
                    cls.check_folder(folder, kwargs.get("variant"), overridden=set(kwargs))
                    pipeline = super().from_pretrained(folder, **kwargs)
                except (OSError, ValueError) as error:
                    if folder_identity(folder) == identity:
                        renamed = naming_folder(error, folder, path)
                        if renamed is error:
                            raise
                        raise renamed from error
                    continue  # the folder was swapped mid-read (no snapshot could be made): read the new save
            if folder_identity(folder) == identity or folder != path:
                check_loaded_weights(pipeline)
                name_components_after(pipeline, folder, path)
                pipeline.register_to_config(_name_or_path=path)
                return pipeline
        raise RuntimeError(f"{path} was replaced {LOAD_ATTEMPTS} times while being read; stop the process saving it.")

    @classmethod
    def check_folder(cls, folder: str, variant: str | None = None, overridden: set[str] = frozenset()) -> None:
        """Check a saved pipeline folder before loading it (see `from_pretrained`); components passed to
        `from_pretrained` (`overridden`) are not read from it."""
        optional = tuple(getattr(cls, "_optional_components", ()))
        one_of = tuple(getattr(cls, "FROZEN_MODEL_COMPONENTS", ()))
        index = check_pipeline_folder(
            folder, cls.REQUIRED_COMPONENTS, cls.__name__, optional, cls.COMPONENT_CLASSES, one_of
        )
        model_classes = package_model_classes()
        autoencoders = {cls.__name__: cls for cls in AUTOENCODER_TYPES}
        for name, entry in index.items():
            if not isinstance(entry, list) or name in overridden:
                continue
            if entry[1] in autoencoders:  # diffusers' class: its scaling factor, then its weights against its config
                check_autoencoder_config(os.path.join(folder, name))
            if entry[1] in model_classes or entry[1] in autoencoders:
                model_class = model_classes.get(entry[1]) or autoencoders[entry[1]]
                check_weights_fit_config(os.path.join(folder, name), model_class, variant)
        if "gradient_estimator" in index and not overridden & {*DENOISER_COMPONENT_NAMES, "gradient_estimator"}:
            check_unet_digest(folder, variant)
        if "gradient_estimator" in index and not overridden & {*AUTOENCODER_COMPONENT_NAMES, "gradient_estimator"}:
            check_autoencoder_identity(folder, index, variant)

    @classmethod
    def load_config(cls, *args, **kwargs):
        """`ConfigMixin.load_config`; a saved folder's `_class_name` names its code file too (`["pipeline_pdae",
        "PDAEPipeline"]`, for loaders without the package), which this class, being that code, reads as its name."""
        loaded = super().load_config(*args, **kwargs)
        config = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(config.get("_class_name"), (list, tuple)):
            config["_class_name"] = config["_class_name"][1]
        return loaded

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True, **kwargs) -> None:
        """`DiffusionPipeline.save_pretrained`, in safetensors only (what `from_pretrained` reads)."""
        check_safe_serialization(safe_serialization)
        super().save_pretrained(save_directory, safe_serialization=safe_serialization, **kwargs)

    def __setattr__(self, name: str, value) -> None:
        # A component swapped in after construction (`pipe.scheduler = ...`) is checked as the constructor checks it,
        # so an unusable one is refused now, not by a failure deep in the next call.
        if getattr(self, "_components_ready", False) and name in self.config and not name.startswith("_"):
            components = {key: getattr(self, key, None) for key in self.COMPONENT_NAMES}
            self.check_components(**{**components, name: value})
        super().__setattr__(name, value)

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
        return self._encode_codes(self.prepare_images(images))

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
        pixels = self.prepare_images(images)
        if not invert:
            check_generator(generator, pixels.shape[0])
        sample = self._to_latents(pixels)
        z = self._encode_codes(pixels, sample)
        if invert:
            latents = self._invert_latents(sample, z, num_inference_steps)
        else:
            latents = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        return self._output(self._decode_latents(latents, z, num_inference_steps), output_type, return_dict)

    # ------------------------------------------------------------------ building blocks

    def prepare_images(self, images: ImageInput) -> torch.Tensor:
        """Convert PIL images or a tensor to pixels `(B, *image_shape)` in [-1, 1] on the pipeline's device and
        dtype."""
        if self.image_shape != self.sample_shape:
            check_not_latents(images, self.image_shape, self.sample_shape)
        channels, height, _ = self.image_shape
        tensor = images_to_tensor(images, channels, height)
        return tensor.to(device=self._execution_device, dtype=self.model_dtype)

    def _to_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """x_0 as the UNet sees it: the pixels, or for a latent DPM the autoencoder's latents of them (deterministic:
        the posterior mean of an `AutoencoderKL`, the unquantized latents of a `VQModel`) `(B, *sample_shape)`."""
        vae = getattr(self, "vae", None)
        if vae is None:
            return pixels
        return encode_images(vae, pixels.to(vae.dtype)).to(self.model_dtype)

    def _encode_codes(self, pixels: torch.Tensor, latents: torch.Tensor | None = None) -> torch.Tensor:
        """z `(B, latent_dim)` from the pixels, or from their latents for an encoder built on the latent shape."""
        if encoder_reads_pixels(self.encoder.config, self.image_shape):
            return self.encoder(pixels).z
        return self.encoder(self._to_latents(pixels) if latents is None else latents).z

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
        pixels = self.prepare_images(images)
        sample = self._to_latents(pixels)
        if not condition:
            z = None
        elif z is None:
            z = self._encode_codes(pixels, sample)
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
        return z.to(device=self._execution_device, dtype=self.model_dtype)

    def _check_latents(self, latents: torch.Tensor) -> torch.Tensor:
        latents = check_latents(latents, self.sample_shape, self.image_shape)
        return latents.to(device=self._execution_device, dtype=self.model_dtype)

    def _check_steps(self, num_inference_steps) -> int:
        return check_num_inference_steps(num_inference_steps, self.num_train_timesteps)

    def _output(self, samples: torch.Tensor, output_type: str, return_dict: bool):
        """The denoised samples as `output_type` asks: the diffusion latents themselves (`"latent"`), else images
        (decoded by the autoencoder first for a latent DPM)."""
        images = samples
        if output_type != "latent":
            vae = getattr(self, "vae", None)
            if vae is not None:
                images = decode_latents(vae, samples.to(vae.dtype))
            images = postprocess_images(images, output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)
