"""`PDAEPipeline`: a pre-trained unconditional UNet2DModel turned into an autoencoder."""

from __future__ import annotations

import inspect
import os

import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from ..file_utils import write_folder_atomically
from ..image_utils import ImageInput, images_to_tensor, postprocess_images
from ..models.encoder import PDAEEncoder
from ..models.gradient_estimator import GradientEstimator
from ..models.unet_features import unet_forward_with_features
from ..pdae_math import ddim_step, ddim_transitions, shift_coefficients, shifted_noise_prediction
from .input_checks import (
    check_batch_size,
    check_eta,
    check_finite,
    check_generator,
    check_interpolation_count,
    check_num_inference_steps,
    check_output_type,
    check_pipeline_folder,
    check_scales,
    check_shift_range,
    check_timesteps,
)

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import diffusers_pdae  # registers the PDAE classes with diffusers
        >>> from diffusers_pdae import PDAEPipeline
        >>> from diffusers_pdae.bundled import checkpoint_path, load_mnist

        >>> pipe = PDAEPipeline.from_pretrained(checkpoint_path("pdae-mnist"))
        >>> digits = load_mnist("test")["image"][:8]
        >>> z = pipe.encode(digits)  # (8, latent_dim)
        >>> images = pipe.reconstruct(digits, num_inference_steps=50).images
        ```
"""


def slerp(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """Spherical interpolation between two noise tensors of the same shape (the norm of Gaussian noise is kept)."""
    cos_angle = (a.flatten() @ b.flatten()) / (a.norm() * b.norm())
    angle = torch.arccos(cos_angle.clamp(-1.0, 1.0))
    if angle.abs() < 1e-4:
        return torch.lerp(a, b, weight)
    return (torch.sin((1 - weight) * angle) * a + torch.sin(weight * angle) * b) / torch.sin(angle)


class PDAEPipeline(DiffusionPipeline):
    r"""
    Diffusion autoencoder built on a frozen, pre-trained unconditional DPM (Zhang, Zhao & Lin, NeurIPS 2022).

    The encoder maps an image to a code z; the gradient estimator G turns z into a shift of the UNet's noise
    prediction, eps_hat = eps_theta(x_t, t) - c_t G(x_t, z, t), which fills the information that denoising x_t
    alone cannot recover.

    Parameters:
        unet ([`UNet2DModel`]): the frozen, pre-trained unconditional noise predictor (`prediction_type="epsilon"`).
        scheduler ([`SchedulerMixin`]): its training schedule; `__call__` samples with it. Inversion and the
            deterministic decoding of `reconstruct`, `interpolate` and `manipulate` use a [`DDIMScheduler`] built from
            its config with `clip_sample=False`.
        encoder ([`PDAEEncoder`]): image -> z.
        gradient_estimator ([`GradientEstimator`]): G(x_t, z, t), built for `unet` with `GradientEstimator.from_unet`.
    """

    model_cpu_offload_seq = "encoder->unet->gradient_estimator"
    REQUIRED_COMPONENTS = ("unet", "scheduler", "encoder", "gradient_estimator")

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        encoder: PDAEEncoder,
        gradient_estimator: GradientEstimator,
    ):
        super().__init__()
        check_components(unet, scheduler, encoder, gradient_estimator)
        self.register_modules(unet=unet, scheduler=scheduler, encoder=encoder, gradient_estimator=gradient_estimator)

    @property
    def latent_dim(self) -> int:
        return self.encoder.config.latent_dim

    @property
    def num_train_timesteps(self) -> int:
        """T of the training schedule: `shift_range` and `predict_noise` take timesteps in [0, T)."""
        return self.scheduler.config.num_train_timesteps

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> PDAEPipeline:
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

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """`DiffusionPipeline.save_pretrained`, made atomic: the pipeline is written to a temporary folder and renamed
        into place, so a crash mid-save or a concurrent reader never pairs an encoder of one save with a gradient
        estimator of another (see [`~diffusers_pdae.file_utils.write_folder_atomically`]). Other files already in
        `save_directory` are kept."""
        if kwargs.get("push_to_hub"):
            kwargs.setdefault("repo_id", os.path.basename(os.path.normpath(save_directory)))
        write_folder_atomically(
            save_directory, lambda folder: super(PDAEPipeline, self).save_pretrained(folder, **kwargs)
        )

    # ------------------------------------------------------------------ building blocks

    def prepare_images(self, images: ImageInput) -> torch.Tensor:
        """Convert PIL images or a tensor to `(B, C, H, W)` in [-1, 1] on the pipeline's device and dtype."""
        size = self.unet.config.sample_size
        tensor = images_to_tensor(images, self.unet.config.in_channels, size if isinstance(size, int) else size[0])
        return tensor.to(device=self._execution_device, dtype=self.unet.dtype)

    def predict_noise(
        self,
        sample: torch.Tensor,
        timestep: int | torch.Tensor,
        z: torch.Tensor | None = None,
        shift_coefficient: str = "posterior",
    ) -> torch.Tensor:
        """The noise prediction at x_t: eps_theta(x_t, t) when `z` is None, else eps_theta - c_t G(x_t, z, t).

        Args:
            sample (`torch.Tensor` of shape `(B, C, H, W)`): x_t.
            timestep (`int` or `torch.Tensor` of shape `()` or `(B,)`): training timesteps.
            z (`torch.Tensor` of shape `(B, latent_dim)`, *optional*): codes.
            shift_coefficient (`str`, defaults to `"posterior"`): c_t as trained; `"sqrt_one_minus_alpha_bar"`
                reproduces the official code's DDIM coefficient, for comparison only (see `pdae_math`).

        Returns:
            `torch.Tensor` of shape `(B, C, H, W)`.
        """
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        check_timesteps(timesteps, self.num_train_timesteps)
        if z is None:
            return self.unet(sample, timesteps).sample
        features = unet_forward_with_features(self.unet, sample, timesteps)
        gradient = self.gradient_estimator.from_features(features, z)
        table = shift_coefficients(self.scheduler.betas, shift_coefficient)
        return shifted_noise_prediction(features.noise_pred, gradient.to(features.noise_pred.dtype), timesteps, table)

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

    def _denoise(
        self,
        latents: torch.Tensor,
        z: torch.Tensor | None,
        scheduler: SchedulerMixin,
        shift_range: tuple[int, int] | None = None,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        shift_coefficient: str = "posterior",
    ) -> torch.Tensor:
        """Run `scheduler`'s timesteps from x_T down to x_0, shifting the noise prediction by z where asked.

        A `DDIMScheduler` is stepped with [`~pdae_math.ddim_transitions`] (neighbouring timesteps from
        `scheduler.timesteps`, see diffusers issue 12633); any other scheduler with its own `step`.
        """
        is_ddim = isinstance(scheduler, DDIMScheduler)
        transitions = ddim_transitions(scheduler, latents.device) if is_ddim else None
        step_kwargs = _step_kwargs(scheduler, eta, generator)
        for i, t in enumerate(self.progress_bar(scheduler.timesteps)):
            in_stage = shift_range is None or shift_range[0] <= int(t) <= shift_range[1]
            # Identity for DDPM/DDIM/DPM-Solver; Euler-type schedulers keep latents at sigma scale.
            model_input = scheduler.scale_model_input(latents, t)
            noise_pred = self.predict_noise(model_input, t, z if in_stage else None, shift_coefficient)
            if not is_ddim:
                latents = scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
                continue
            _, alpha_from, alpha_to = transitions[i]
            variance_noise = None
            if eta > 0:
                variance_noise = randn_tensor(
                    latents.shape, generator=generator, device=latents.device, dtype=latents.dtype
                )
            clip = scheduler.config.clip_sample_range if scheduler.config.clip_sample else None
            latents = ddim_step(latents, noise_pred, alpha_from, alpha_to, eta, variance_noise, clip)
        return latents

    def _output(self, images: torch.Tensor, output_type: str, return_dict: bool):
        if output_type != "latent":
            images = postprocess_images(images, output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

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
        return self.encoder(self.prepare_images(images))

    @torch.no_grad()
    def invert(
        self,
        images: ImageInput,
        z: torch.Tensor | None = None,
        num_inference_steps: int = 100,
        apply_shift: bool = True,
        shift_coefficient: str = "posterior",
    ) -> torch.Tensor:
        """Deterministic DDIM inversion x_0 -> x_T with the shifted noise prediction.

        Runs the DDIM ODE backwards over the timesteps of `deterministic_scheduler(num_inference_steps)`; each step
        evaluates the noise prediction at the current sample and the *target* timestep, the mirror image of the
        decoding step, so decoding the result with the same z and steps gives the images back.

        Args:
            images: as for [`~PDAEPipeline.encode`].
            z (`torch.Tensor` of shape `(B, latent_dim)`, *optional*): codes; computed with the encoder if omitted.
            num_inference_steps (`int`, defaults to 100): DDIM steps.
            apply_shift (`bool`, defaults to `True`): `False` gives plain DDIM inversion of the pre-trained DPM (no z).
            shift_coefficient (`str`, defaults to `"posterior"`): see [`~PDAEPipeline.predict_noise`].

        Returns:
            `torch.Tensor` of shape `(B, C, H, W)`: x_T.
        """
        num_inference_steps = self._check_steps(num_inference_steps)
        sample = self.prepare_images(images)
        if apply_shift:
            z = self.encoder(sample) if z is None else self._check_codes(z, sample.shape[0])
        else:
            z = None
        transitions = ddim_transitions(self.deterministic_scheduler(num_inference_steps), sample.device)
        for t, alpha_t, alpha_next in self.progress_bar(list(reversed(transitions))):
            noise_pred = self.predict_noise(sample, t, z, shift_coefficient)
            sample = ddim_step(sample, noise_pred, alpha_next, alpha_t)
        return sample

    @torch.no_grad()
    def __call__(
        self,
        z: torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
        batch_size: int = 1,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        shift_range: tuple[int, int] | None = None,
        eta: float = 0.0,
        output_type: str = "pil",
        return_dict: bool = True,
        shift_coefficient: str = "posterior",
    ) -> ImagePipelineOutput | tuple:
        r"""
        Decode codes (or sample unconditionally when `z` is None) with the pipeline's scheduler.

        Args:
            z (`torch.Tensor` of shape `(B, latent_dim)` or a list of such tensors or of `(latent_dim,)` codes,
                *optional*): codes from [`~PDAEPipeline.encode`]. Without them the pre-trained DPM samples alone.
            latents (`torch.Tensor` of shape `(B, C, H, W)`, *optional*): x_T, e.g. from [`~PDAEPipeline.invert`];
                drawn from `generator` if omitted.
            batch_size (`int`, defaults to 1): used only when neither `z` nor `latents` is given.
            num_inference_steps (`int`, defaults to 50): denoising steps.
            generator (`torch.Generator`, *optional*): makes x_T (and DDIM's noise when eta > 0) reproducible.
            shift_range (`tuple[int, int]`, *optional*): apply the shift only at training timesteps t1 <= t <= t2
                (the paper's mixed sampling: the class is carried by a critical stage, e.g. (400, 700) on MNIST).
            eta (`float`, defaults to 0.0): DDIM's eta (ignored by schedulers that have none).
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` (tensor in [0, 1]) or `"latent"` (the
                raw `(B, C, H, W)` result in the model's [-1, 1] space, unclipped).
            return_dict (`bool`, defaults to `True`): return an [`ImagePipelineOutput`] instead of a tuple.
            shift_coefficient (`str`, defaults to `"posterior"`): see [`~PDAEPipeline.predict_noise`].

        Returns:
            [`ImagePipelineOutput`] or `tuple`.
        """
        output_type = check_output_type(output_type)
        num_inference_steps = self._check_steps(num_inference_steps)
        eta = check_eta(eta)
        shift_range = check_shift_range(shift_range, self.num_train_timesteps)
        batch_size = check_batch_size(batch_size)
        if z is not None:
            z = self._check_codes(z, latents.shape[0] if latents is not None else None)
            batch_size = z.shape[0]
        if latents is not None:
            batch_size = latents.shape[0]
        check_generator(generator, batch_size)
        if latents is None:
            size = self.unet.config.sample_size
            shape = (batch_size, self.unet.config.in_channels, *((size, size) if isinstance(size, int) else size))
            latents = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)
        latents = self._check_latents(latents)

        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        latents = latents * self.scheduler.init_noise_sigma
        images = self._denoise(latents, z, self.scheduler, shift_range, eta, generator, shift_coefficient)
        return self._output(images, output_type, return_dict)

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        z: torch.Tensor | None,
        num_inference_steps: int = 100,
        shift_range: tuple[int, int] | None = None,
        output_type: str = "pt",
    ):
        """Deterministic DDIM decoding of x_T with codes: the exact mirror of [`~PDAEPipeline.invert`].

        Uses `deterministic_scheduler(num_inference_steps)` whatever scheduler the pipeline holds, so
        `decode(invert(images, z, n), z, n)` gives the images back.

        Args:
            latents (`torch.Tensor` of shape `(B, C, H, W)`): x_T.
            z (`torch.Tensor` of shape `(B, latent_dim)`, *optional*): codes; None decodes with the DPM alone.
            num_inference_steps (`int`, defaults to 100): DDIM steps.
            shift_range (`tuple[int, int]`, *optional*): shift only for training timesteps t1 <= t <= t2.
            output_type (`str`, defaults to `"pt"`): `"pt"` (in [0, 1]), `"np"`, `"pil"`, or `"latent"` for the raw
                `(B, C, H, W)` result in the model's [-1, 1] space, unclipped.
        """
        output_type = check_output_type(output_type)
        num_inference_steps = self._check_steps(num_inference_steps)
        shift_range = check_shift_range(shift_range, self.num_train_timesteps)
        latents = self._check_latents(latents)
        z = None if z is None else self._check_codes(z, latents.shape[0])
        scheduler = self.deterministic_scheduler(num_inference_steps)
        images = self._denoise(latents, z, scheduler, shift_range=shift_range)
        return images if output_type == "latent" else postprocess_images(images, output_type)

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

        Args:
            images: as for [`~PDAEPipeline.encode`].
            num_inference_steps (`int`, defaults to 100): DDIM steps of inversion and decoding.
            invert (`bool`, defaults to `True`): infer x_T by inversion; `False` decodes from z alone with random x_T.
            generator (`torch.Generator`, *optional*): for the random x_T.
            output_type, return_dict: as for `__call__`.
        """
        output_type = check_output_type(output_type)
        num_inference_steps = self._check_steps(num_inference_steps)
        sample = self.prepare_images(images)
        if not invert:
            check_generator(generator, sample.shape[0])
        z = self.encoder(sample)
        if invert:
            latents = self.invert(sample, z, num_inference_steps)
        else:
            latents = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        return self._output(
            self.decode(latents, z, num_inference_steps, output_type="latent"), output_type, return_dict
        )

    @torch.no_grad()
    def interpolate(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        num: int = 8,
        num_inference_steps: int = 100,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Decode `num` images between two images: slerp on their inverted x_T, lerp on their codes.

        Returns `num` images, the first reconstructing `image_a` and the last `image_b`.
        """
        output_type = check_output_type(output_type)
        num = check_interpolation_count(num)
        num_inference_steps = self._check_steps(num_inference_steps)
        sample = torch.cat([self.prepare_images(image_a), self.prepare_images(image_b)])
        if sample.shape[0] != 2:
            raise ValueError("interpolate takes exactly one image for image_a and one for image_b.")
        z = self.encoder(sample)
        x_T = self.invert(sample, z, num_inference_steps)
        weights = torch.linspace(0, 1, num).tolist()
        latents = torch.stack([slerp(x_T[0], x_T[1], w) for w in weights])
        codes = torch.stack([torch.lerp(z[0], z[1], w) for w in weights])
        images = self.decode(latents, codes, num_inference_steps, output_type="latent")
        return self._output(images, output_type, return_dict)

    @torch.no_grad()
    def manipulate(
        self,
        images: ImageInput,
        direction: torch.Tensor,
        scales: list[float],
        num_inference_steps: int = 100,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Edit images by moving their codes along `direction`: decode z + s * direction from their own inverted x_T.

        Args:
            images: as for [`~PDAEPipeline.encode`] (B images).
            direction (`torch.Tensor` of shape `(latent_dim,)`): e.g. the normal of a linear classifier on z.
            scales (`list[float]`): the steps s to take (0 reconstructs).

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
        z = self.encoder(sample)
        x_T = self.invert(sample, z, num_inference_steps)
        scales = torch.as_tensor(scales, device=z.device, dtype=z.dtype)
        codes = (z[:, None, :] + scales[None, :, None] * direction).flatten(0, 1)
        latents = x_T.repeat_interleave(len(scales), dim=0)
        images = self.decode(latents, codes, num_inference_steps, output_type="latent")
        return self._output(images, output_type, return_dict)


def check_components(
    unet: UNet2DModel, scheduler: SchedulerMixin, encoder: PDAEEncoder, gradient_estimator: GradientEstimator
) -> None:
    """Raise a `ValueError` for a missing component or one that does not fit the UNet."""
    components = {"unet": unet, "scheduler": scheduler, "encoder": encoder, "gradient_estimator": gradient_estimator}
    missing = [name for name, component in components.items() if component is None]
    if missing:
        raise ValueError(
            f"PDAEPipeline is missing {', '.join(missing)}; it needs unet, scheduler, encoder and gradient_estimator "
            "(a saved pipeline folder has one subfolder for each)."
        )
    if scheduler.config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(
            f"PDAE shifts a noise prediction; the scheduler's prediction_type is "
            f"{scheduler.config.prediction_type!r}, it must be 'epsilon'."
        )
    gradient_estimator.check_compatible(unet)
    gradient_estimator.check_schedule(scheduler)
    mismatches = [
        f"{key}: UNet {unet_value!r} vs encoder {encoder_value!r}"
        for key, unet_value, encoder_value in (
            ("in_channels", unet.config.in_channels, encoder.config.in_channels),
            ("sample_size", unet.config.sample_size, encoder.config.sample_size),
        )
        if unet_value != encoder_value
    ]
    if encoder.config.latent_dim != gradient_estimator.config.latent_dim:
        mismatches.append(
            f"latent_dim: encoder {encoder.config.latent_dim} vs gradient_estimator "
            f"{gradient_estimator.config.latent_dim}"
        )
    if mismatches:
        raise ValueError(
            "The encoder does not fit the UNet and gradient estimator (" + "; ".join(mismatches) + "). Build the "
            "encoder with the UNet's in_channels and sample_size and the estimator's latent_dim."
        )


def _step_kwargs(scheduler: SchedulerMixin, eta: float, generator) -> dict:
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs
