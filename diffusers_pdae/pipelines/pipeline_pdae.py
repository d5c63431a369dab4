"""`PDAEPipeline`: a pre-trained unconditional UNet2DModel turned into an autoencoder."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, ModelMixin, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers import SchedulerMixin
from diffusers.utils.hub_utils import load_or_create_model_card, populate_model_card
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import create_repo

from ..directions import AttributeDirection, fit_attribute_direction
from ..file_utils import write_folder_atomically
from ..image_utils import ImageInput
from ..models.gradient_estimator import GradientEstimator
from ..models.latent_sampler import LatentSampler
from ..models.unet_features import unet_forward_with_features
from ..pdae_math import (
    ddim_step,
    ddim_transitions,
    noise_from_model_output,
    shift_coefficients,
    shifted_noise_prediction,
)
from ..sampling import SchedulerStepper, check_scheduler, slerp
from .autoencoder import ImageAutoencoderPipelineMixin
from .input_checks import (
    check_batch_size,
    check_callback_inputs,
    check_eta,
    check_generator,
    check_interpolation_count,
    check_num_inference_steps,
    check_output_type,
    check_scales,
    check_shift_range,
    check_timesteps,
)
from .remote_code import write_remote_code

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


class PDAEPipeline(ImageAutoencoderPipelineMixin, DiffusionPipeline):
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
        encoder ([`PDAEEncoder`], [`PDAEResidualEncoder`] or [`PDAETransformersEncoder`]): image -> z.
        gradient_estimator ([`GradientEstimator`]): G(x_t, z, t), built for `unet` with `GradientEstimator.from_unet`.
        latent_sampler ([`LatentSampler`], *optional*): a diffusion model over codes, trained on the encoder's codes
            of a dataset (`examples/train_latent_sampler.py`); with it, `__call__` without `z` samples codes first
            and so generates images unconditionally through the codes.
        latent_scheduler ([`SchedulerMixin`], *optional*): the latent sampler's scheduler (`clip_sample=False`).
    """

    # The UNet and G take turns at every denoising step: chaining G after the UNet would move the UNet off and on
    # the device every step. So G stays on the device and only the encoder and the UNet are offloaded in turn.
    model_cpu_offload_seq = "encoder->latent_sampler->unet"
    _exclude_from_cpu_offload = ["gradient_estimator"]
    _optional_components = ["latent_sampler", "latent_scheduler"]
    _callback_tensor_inputs = ["latents", "z"]
    REQUIRED_COMPONENTS = ("unet", "scheduler", "encoder", "gradient_estimator")

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        encoder: ModelMixin,
        gradient_estimator: GradientEstimator,
        latent_sampler: LatentSampler | None = None,
        latent_scheduler: SchedulerMixin | None = None,
    ):
        super().__init__()
        check_components(unet, scheduler, encoder, gradient_estimator)
        check_latent_sampler(latent_sampler, latent_scheduler, encoder.config.latent_dim)
        self.register_modules(
            unet=unet,
            scheduler=scheduler,
            encoder=encoder,
            gradient_estimator=gradient_estimator,
            latent_sampler=latent_sampler,
            latent_scheduler=latent_scheduler,
        )

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        push_to_hub: bool = False,
        **kwargs,
    ) -> None:
        """`DiffusionPipeline.save_pretrained`, atomic and with the pipeline's code beside the weights.

        The pipeline is written to a temporary folder and renamed into place, so a crash mid-save or a concurrent
        reader never pairs an encoder of one save with a gradient estimator of another (see
        [`~diffusers_pdae.file_utils.write_folder_atomically`]); other files already in `save_directory` are kept.
        The folder also gets `pipeline_pdae.py`, `encoder/pdae_encoder.py` and
        `gradient_estimator/pdae_gradient_estimator.py` (see [`~diffusers_pdae.pipelines.remote_code`]), so that
        `DiffusionPipeline.from_pretrained(folder, custom_pipeline="pipeline_pdae", trust_remote_code=True)` loads it
        without diffusers-pdae installed. `push_to_hub` and its keyword arguments work as in diffusers, after the
        code is written.
        """

        def write(folder: str) -> None:
            DiffusionPipeline.save_pretrained(self, folder, safe_serialization=safe_serialization, variant=variant)
            write_remote_code(folder, self)

        write_folder_atomically(save_directory, write)
        if push_to_hub:
            self._push_folder_to_hub(os.fspath(save_directory), **kwargs)

    def _push_folder_to_hub(self, folder: str, **kwargs) -> None:
        """What `DiffusionPipeline.save_pretrained(push_to_hub=True)` does after saving: repo, card, upload."""
        token = kwargs.pop("token", None)
        repo_id = kwargs.pop("repo_id", os.path.basename(os.path.normpath(folder)))
        repo_id = create_repo(repo_id, exist_ok=True, private=kwargs.pop("private", None), token=token).repo_id
        model_card = populate_model_card(load_or_create_model_card(repo_id, token=token, is_pipeline=True))
        model_card.save(os.path.join(folder, "README.md"))
        self._upload_folder(
            folder,
            repo_id,
            token=token,
            commit_message=kwargs.pop("commit_message", None),
            create_pr=kwargs.pop("create_pr", False),
        )

    # ------------------------------------------------------------------ building blocks
    # (latent_dim, from_pretrained, prepare_images, deterministic_scheduler and the input checks come from
    # ImageAutoencoderPipelineMixin, shared with DiffAEPipeline)

    def predict_noise(
        self,
        sample: torch.Tensor,
        timestep: int | torch.Tensor,
        z: torch.Tensor | None = None,
        shift_coefficient: str = "posterior",
    ) -> torch.Tensor:
        """The noise prediction at x_t: eps_theta(x_t, t) when `z` is None, else eps_theta - c_t G(x_t, z, t).

        eps_theta is the UNet's output seen as a noise prediction whatever the DPM predicts (eps, v or x_0, from the
        scheduler config's `prediction_type`, see [`~pdae_math.noise_from_model_output`]).

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
        betas, prediction_type = self.scheduler.betas, self.scheduler.config.get("prediction_type", "epsilon")
        if z is None:
            return noise_from_model_output(
                self.unet(sample, timesteps).sample, sample, timesteps, betas, prediction_type
            )
        features = unet_forward_with_features(self.unet, sample, timesteps)
        noise_pred = noise_from_model_output(features.noise_pred, sample, timesteps, betas, prediction_type)
        gradient = self.gradient_estimator.from_features(features, z)
        table = shift_coefficients(betas, shift_coefficient)
        return shifted_noise_prediction(noise_pred, gradient.to(noise_pred.dtype), timesteps, table)

    def _denoise(
        self,
        latents: torch.Tensor,
        z: torch.Tensor | None,
        scheduler: SchedulerMixin,
        shift_range: tuple[int, int] | None = None,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        shift_coefficient: str = "posterior",
        on_step_end: Callable | None = None,
    ) -> torch.Tensor:
        """Run `scheduler`'s timesteps from x_T down to x_0, shifting the noise prediction by z where asked.

        `on_step_end(step, timestep, latents, z) -> (latents, z)` runs after each step (the `__call__` callbacks).
        Steps are taken by [`~diffusers_pdae.sampling.SchedulerStepper`].
        """
        step = SchedulerStepper(scheduler, eta, generator, latents.device)
        for i, t in enumerate(self.progress_bar(scheduler.timesteps)):
            if self.interrupt:
                continue
            in_stage = shift_range is None or shift_range[0] <= int(t) <= shift_range[1]
            # Identity for DDPM/DDIM/DPM-Solver; Euler-type schedulers keep latents at sigma scale.
            model_input = scheduler.scale_model_input(latents, t)
            noise_pred = self.predict_noise(model_input, t, z if in_stage else None, shift_coefficient)
            latents = step(i, t, noise_pred, latents)
            if on_step_end is not None:
                latents, z = on_step_end(i, t, latents, z)
        return latents

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
    def sample_codes(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 50,
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
        if self.latent_sampler is None:
            raise ValueError(
                "This pipeline has no latent_sampler: train one on your pipeline's codes with "
                "examples/train_latent_sampler.py, or pass codes z from pipe.encode."
            )
        batch_size = check_batch_size(batch_size)
        eta = check_eta(eta)
        num_inference_steps = check_num_inference_steps(
            num_inference_steps, self.latent_scheduler.config.num_train_timesteps
        )
        check_generator(generator, batch_size)
        device = self._execution_device
        scheduler = type(self.latent_scheduler).from_config(self.latent_scheduler.config)
        scheduler.set_timesteps(num_inference_steps, device=device)
        sample = randn_tensor(
            (batch_size, self.latent_dim), generator=generator, device=device, dtype=self.latent_sampler.dtype
        )
        sample = sample * scheduler.init_noise_sigma
        step = SchedulerStepper(scheduler, eta, generator, device)
        for i, t in enumerate(self.progress_bar(scheduler.timesteps)):
            noise_pred = self.latent_sampler(scheduler.scale_model_input(sample, t), t).sample
            sample = step(i, t, noise_pred, sample)
        codes = self.latent_sampler.denormalize(sample)
        self.maybe_free_model_hooks()
        return codes.to(dtype=self.unet.dtype)

    @torch.no_grad()
    def attribute_direction(
        self, images_a: ImageInput, images_b: ImageInput, batch_size: int = 256
    ) -> AttributeDirection:
        """Fit the direction in code space from images without an attribute (`images_b`) towards images with it
        (`images_a`): the normal of a logistic-regression boundary between their codes (needs scikit-learn, the
        `[eval]` extra). No labels beyond the split into the two sets are needed.

        Args:
            images_a: as for [`~PDAEPipeline.encode`] (at least 2 images): the images with the attribute, e.g.
                bold digits.
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
            z = self.encoder(sample).z if z is None else self._check_codes(z, sample.shape[0])
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
        z: torch.Tensor | list[torch.Tensor] | None = None,
        latents: torch.Tensor | None = None,
        batch_size: int | None = None,
        num_images_per_prompt: int = 1,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        shift_range: tuple[int, int] | None = None,
        eta: float = 0.0,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        shift_coefficient: str = "posterior",
        code_num_inference_steps: int = 50,
    ) -> ImagePipelineOutput | tuple:
        r"""
        Decode codes (or generate unconditionally when `z` is None) with the pipeline's scheduler.

        Args:
            z (`torch.Tensor` or `list[torch.Tensor]`, *optional*): codes from [`~PDAEPipeline.encode`], of shape
                `(B, latent_dim)`, or a list of such tensors or of `(latent_dim,)` codes. Without them, a pipeline
                with a `latent_sampler` samples `batch_size` codes with it (see [`~PDAEPipeline.sample_codes`]) and
                decodes them; a pipeline without one lets the pre-trained DPM sample alone (no shift).
            latents (`torch.Tensor` of shape `(B * num_images_per_prompt, C, H, W)`, *optional*): x_T, e.g. from
                [`~PDAEPipeline.invert`]; drawn from `generator` if omitted.
            batch_size (`int`, *optional*): samples without `z` (default 1); with `z` it is the number of codes, and a
                different value is an error.
            num_images_per_prompt (`int`, defaults to 1): samples per code (each from its own x_T): several
                stochastic decodings of one z.
            num_inference_steps (`int`, defaults to 50): denoising steps.
            generator (`torch.Generator` or a list of one per sample, *optional*): makes x_T (and DDIM's noise when
                eta > 0) reproducible.
            shift_range (`tuple[int, int]`, *optional*): apply the shift only at training timesteps t1 <= t <= t2
                (the paper's mixed sampling: the class is carried by a critical stage, e.g. (400, 700) on MNIST).
            eta (`float`, defaults to 0.0): DDIM's eta (ignored by schedulers that have none).
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` (tensor in [0, 1]) or `"latent"` (the
                raw `(B, C, H, W)` result in the model's [-1, 1] space, unclipped).
            return_dict (`bool`, defaults to `True`): return an [`ImagePipelineOutput`] instead of a tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): called
                after each step as `callback_on_step_end(pipe, step, timestep, callback_kwargs)`; `callback_kwargs`
                holds the tensors named in `callback_on_step_end_tensor_inputs`, and a returned dict may replace
                them.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*): a subset of `pipe._callback_tensor_inputs`
                (`"latents"`, `"z"`); defaults to `["latents"]`.
            shift_coefficient (`str`, defaults to `"posterior"`): see [`~PDAEPipeline.predict_noise`].
            code_num_inference_steps (`int`, defaults to 50): the latent sampler's steps when codes are sampled.

        Returns:
            [`ImagePipelineOutput`] or `tuple`.
        """
        output_type = check_output_type(output_type)
        num_inference_steps = self._check_steps(num_inference_steps)
        eta = check_eta(eta)
        shift_range = check_shift_range(shift_range, self.num_train_timesteps)
        copies = check_batch_size(num_images_per_prompt, "num_images_per_prompt")
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        tensor_inputs = check_callback_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs or ["latents"], self._callback_tensor_inputs
        )
        if z is None and self.latent_sampler is not None:
            if batch_size is None:
                batch_size = 1 if latents is None else max(latents.shape[0] // copies, 1)
            batch_size = check_batch_size(batch_size)
            check_generator(generator, batch_size * copies)
            code_generator = generator[::copies] if isinstance(generator, list) else generator
            z = self.sample_codes(batch_size, code_num_inference_steps, code_generator)
        if z is not None:
            z = self._check_codes(z)
            if batch_size is not None and batch_size != z.shape[0]:
                raise ValueError(
                    f"batch_size={batch_size} conflicts with the {z.shape[0]} codes in z: one sample is decoded per "
                    "code (times num_images_per_prompt); leave batch_size out."
                )
            z = z.repeat_interleave(copies, dim=0)
            total = z.shape[0]
        else:
            batch_size = check_batch_size(1 if batch_size is None else batch_size)
            total = latents.shape[0] if latents is not None else batch_size * copies
        if latents is not None and latents.shape[0] != total:
            raise ValueError(
                f"latents has {latents.shape[0]} samples but {total} are decoded (codes or batch_size times "
                f"num_images_per_prompt={copies})."
            )
        check_generator(generator, total)
        if latents is None:
            size = self.unet.config.sample_size
            shape = (total, self.unet.config.in_channels, *((size, size) if isinstance(size, int) else size))
            latents = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)
        latents = self._check_latents(latents)

        scheduler = self._noise_prediction_scheduler()
        scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        self._num_timesteps = len(scheduler.timesteps)
        self._interrupt = False
        latents = latents * scheduler.init_noise_sigma

        def on_step_end(step: int, timestep, latents: torch.Tensor, z: torch.Tensor | None):
            if callback_on_step_end is None:
                return latents, z
            available = {"latents": latents, "z": z}
            outputs = callback_on_step_end(self, step, timestep, {name: available[name] for name in tensor_inputs})
            outputs = outputs or {}
            return outputs.get("latents", latents), outputs.get("z", z)

        images = self._denoise(latents, z, scheduler, shift_range, eta, generator, shift_coefficient, on_step_end)
        return self._output(images, output_type, return_dict)

    @property
    def num_timesteps(self) -> int:
        """Steps of the last `__call__` (as diffusers' pipelines report it to callbacks)."""
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` in a step callback to skip the remaining steps, as in diffusers."""
        return getattr(self, "_interrupt", False)

    def _noise_prediction_scheduler(self) -> SchedulerMixin:
        """The pipeline's scheduler to step with noise predictions: `predict_noise` always returns eps (whatever
        the DPM predicts), so a scheduler configured for v or x_0 is stepped through an "epsilon" copy of itself."""
        if self.scheduler.config.get("prediction_type", "epsilon") == "epsilon":
            return self.scheduler
        return type(self.scheduler).from_config(self.scheduler.config, prediction_type="epsilon")

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        z: torch.Tensor | None,
        num_inference_steps: int = 100,
        shift_range: tuple[int, int] | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
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
            return_dict (`bool`, defaults to `True`): return an [`ImagePipelineOutput`] instead of a tuple.

        Returns:
            [`ImagePipelineOutput`] or `tuple`.
        """
        output_type = check_output_type(output_type)
        num_inference_steps = self._check_steps(num_inference_steps)
        shift_range = check_shift_range(shift_range, self.num_train_timesteps)
        latents = self._check_latents(latents)
        z = None if z is None else self._check_codes(z, latents.shape[0])
        images = self._decode_deterministically(latents, z, num_inference_steps, shift_range)
        return self._output(images, output_type, return_dict)

    def _decode_deterministically(
        self,
        latents: torch.Tensor,
        z: torch.Tensor | None,
        num_inference_steps: int,
        shift_range: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """x_T `(B, C, H, W)` -> x_0 in model space with DDIM (eta = 0, no clipping): the body of `decode`."""
        return self._denoise(latents, z, self.deterministic_scheduler(num_inference_steps), shift_range=shift_range)

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
        z = self.encoder(sample).z
        x_T = self.invert(sample, z, num_inference_steps)
        weights = torch.linspace(0, 1, num).tolist()
        latents = torch.stack([slerp(x_T[0], x_T[1], w) for w in weights])
        codes = torch.stack([torch.lerp(z[0], z[1], w) for w in weights])
        images = self._decode_deterministically(latents, codes, num_inference_steps)
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
        z = self.encoder(sample).z
        x_T = self.invert(sample, z, num_inference_steps)
        scales = torch.as_tensor(scales, device=z.device, dtype=z.dtype)
        codes = (z[:, None, :] + scales[None, :, None] * direction).flatten(0, 1)
        latents = x_T.repeat_interleave(len(scales), dim=0)
        images = self._decode_deterministically(latents, codes, num_inference_steps)
        return self._output(images, output_type, return_dict)


def check_components(
    unet: UNet2DModel, scheduler: SchedulerMixin, encoder: ModelMixin, gradient_estimator: GradientEstimator
) -> None:
    """Raise a `ValueError` for a missing component or one that does not fit the UNet."""
    components = {"unet": unet, "scheduler": scheduler, "encoder": encoder, "gradient_estimator": gradient_estimator}
    missing = [name for name, component in components.items() if component is None]
    if missing:
        raise ValueError(
            f"PDAEPipeline is missing {', '.join(missing)}; it needs unet, scheduler, encoder and gradient_estimator "
            "(a saved pipeline folder has one subfolder for each)."
        )
    check_scheduler(scheduler)
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


def check_latent_sampler(
    latent_sampler: LatentSampler | None, latent_scheduler: SchedulerMixin | None, latent_dim: int
) -> None:
    """Raise a `ValueError` unless the optional latent sampler and its scheduler come together and fit the codes."""
    if latent_sampler is None and latent_scheduler is None:
        return
    if latent_sampler is None or latent_scheduler is None:
        given, missing = ("latent_sampler", "latent_scheduler")[:: 1 if latent_scheduler is None else -1]
        raise ValueError(f"{given} is given without {missing}; pass both (or neither).")
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
