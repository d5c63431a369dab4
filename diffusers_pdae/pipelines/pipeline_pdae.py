"""`PDAEPipeline`: a frozen, pre-trained diffusion model turned into an autoencoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, ImagePipelineOutput, ModelMixin, VQModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers import SchedulerMixin
from diffusers.utils import replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor

from ..image_utils import ImageInput
from ..models.frozen_denoiser import (
    DENOISER_CLASSES_BY_COMPONENT,
    DENOISER_COMPONENT_NAMES,
    FrozenDenoiser,
    frozen_denoiser,
)
from ..models.pdae_prediction import pdae_noise_prediction
from ..sampling import SchedulerStepper, epsilon_scheduler, in_shift_range
from .autoencoder import DEFAULT_INFERENCE_STEPS, ImageAutoencoderPipelineMixin
from .code_space import CodeSpaceMixin
from .component_checks import check_pdae_components, frozen_model
from .folder_checks import ENCODER_CLASS_NAMES
from .input_checks import (
    check_batch_size,
    check_callback_inputs,
    check_callback_outputs,
    check_eta,
    check_generator,
    check_output_type,
    check_sample_count,
    check_shift_range,
)
from .remote_code import SavesCodeMixin

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> import diffusers_pdae  # registers the PDAE classes with diffusers
        >>> from diffusers_pdae import PDAEPipeline
        >>> from diffusers_pdae.bundled import checkpoint_path, load_mnist

        >>> pipe = PDAEPipeline.from_pretrained(checkpoint_path("pdae-mnist"))
        >>> digits = load_mnist("test")["image"][::500]  # 4 test digits, PIL images
        >>> z = pipe.encode(digits)  # (4, 64) codes
        >>> x_T = pipe.invert(digits, z, num_inference_steps=20)  # DDIM inversion with the shifted noise prediction
        >>> images = pipe(z=z, latents=x_T, num_inference_steps=20).images  # the 4 digits back, as PIL images
        >>> generator = torch.Generator().manual_seed(0)
        >>> samples = pipe(batch_size=4, num_inference_steps=20, generator=generator).images  # 4 new digits
        ```
"""


class PDAEPipeline(SavesCodeMixin, CodeSpaceMixin, ImageAutoencoderPipelineMixin, DiffusionPipeline):
    r"""
    Diffusion autoencoder built on a frozen, pre-trained unconditional DPM (Zhang, Zhao & Lin, NeurIPS 2022).

    The encoder maps an image to a code z; the gradient estimator G turns z into a shift of the UNet's noise
    prediction, eps_hat = eps_theta(x_t, t) - c_t G(x_t, z, t), which fills the information that denoising x_t
    alone cannot recover. `encode` and `reconstruct` come from [`ImageAutoencoderPipelineMixin`], `interpolate`,
    `manipulate`, `attribute_direction` and `sample_codes` from [`CodeSpaceMixin`], over this pipeline's
    `predict_noise`.

    Parameters:
        unet ([`UNet2DModel`] or [`UNet2DConditionModel`]): the frozen, pre-trained DPM (predicting eps, v or x_0),
            reached through its [`FrozenDenoiser`] adapter (`pipe.denoiser`), which asks it without a condition: a
            Stable Diffusion UNet with `prompt_embedding`, the empty prompt's by default. Omitted for a
            `transformer`.
        scheduler ([`SchedulerMixin`]): its training schedule; `__call__` samples with it. Inversion and the
            deterministic decoding of `decode`, `reconstruct`, `interpolate` and `manipulate` use a [`DDIMScheduler`]
            built from its config with `clip_sample=False`.
        encoder ([`PDAEEncoder`], [`PDAEResidualEncoder`] or [`PDAETransformersEncoder`]): image -> z.
        gradient_estimator ([`GradientEstimator`] or [`TransformerGradientEstimator`]): G(x_t, z, t), built for the
            frozen model with `from_denoiser` (`gradient_estimator_for` picks the design).
        latent_sampler ([`LatentSampler`], *optional*): a diffusion model over codes, trained on the encoder's codes
            of a dataset (`examples/train_latent_sampler.py`); with it, `__call__` without `z` samples codes first
            and so generates images unconditionally through the codes.
        latent_scheduler ([`SchedulerMixin`], *optional*): the latent sampler's scheduler (`clip_sample=False`).
        vae ([`VQModel`] or [`AutoencoderKL`], *optional*): for a latent DPM (e.g. an `LDMPipeline`'s `vqvae`), the
            frozen autoencoder whose latents the UNet and G work on, named `vae` as in every diffusers pipeline but
            the deprecated `LDMPipeline`. Every method still takes and returns pixel images (decoded as
            `LDMPipeline` and `DiTPipeline` decode); `latents`, inverted x_T and `output_type="latent"` are latents.
        prompt_embedding ([`PromptEmbedding`], *optional*): for a text-conditional UNet (Stable Diffusion), the
            embedding of the fixed prompt it is asked with (the empty prompt by default), stored instead of the text
            encoder and tokenizer.
        transformer ([`DiTTransformer2DModel`], *optional*): the frozen model when it is a diffusion transformer (a
            `DiTPipeline`'s, asked with its null class), instead of `unet`; named as diffusers names it.
    """

    # The UNet and G take turns at every denoising step: chaining G after the UNet would move the UNet off and on
    # the device every step. So G stays on the device and only the encoder and the UNet are offloaded in turn. The
    # autoencoder comes first: it encodes the pixels before the loop, and the encoder moves it off before the loop.
    model_cpu_offload_seq = "vae->encoder->latent_sampler->unet->transformer"
    _exclude_from_cpu_offload = ["gradient_estimator", "prompt_embedding"]
    # The frozen model is `unet` or `transformer` (by its family, as diffusers names it): each optional, one required.
    _optional_components = ["latent_sampler", "latent_scheduler", "vae", "prompt_embedding", "unet", "transformer"]
    _callback_tensor_inputs = ["latents", "z"]
    REQUIRED_COMPONENTS = ("scheduler", "encoder", "gradient_estimator")
    FROZEN_MODEL_COMPONENTS = DENOISER_COMPONENT_NAMES  # one of them, by the frozen model's family
    COMPONENT_NAMES = (*REQUIRED_COMPONENTS, *_optional_components)
    COMPONENT_CLASSES = {
        **DENOISER_CLASSES_BY_COMPONENT,
        "encoder": ENCODER_CLASS_NAMES,
        "gradient_estimator": ("GradientEstimator", "TransformerGradientEstimator"),
        "latent_sampler": ("LatentSampler",),
        "vae": ("VQModel", "AutoencoderKL"),
        "prompt_embedding": ("PromptEmbedding",),
    }
    decodes_without_codes = True

    def __init__(
        self,
        unet: ModelMixin | None,
        scheduler: SchedulerMixin,
        encoder: ModelMixin,
        gradient_estimator: ModelMixin,
        latent_sampler: ModelMixin | None = None,
        latent_scheduler: SchedulerMixin | None = None,
        vae: VQModel | AutoencoderKL | None = None,
        prompt_embedding: ModelMixin | None = None,
        transformer: ModelMixin | None = None,
    ):
        super().__init__()
        check_pdae_components(
            unet, scheduler, encoder, gradient_estimator, latent_sampler, latent_scheduler, vae, prompt_embedding,
            transformer,
        )  # fmt: skip
        self.register_modules(
            unet=unet,
            scheduler=scheduler,
            encoder=encoder,
            gradient_estimator=gradient_estimator,
            latent_sampler=latent_sampler,
            latent_scheduler=latent_scheduler,
            vae=vae,
            prompt_embedding=prompt_embedding,
            transformer=transformer,
        )
        self._components_ready = True

    check_components = staticmethod(check_pdae_components)

    @property
    def denoiser(self) -> FrozenDenoiser:
        """The frozen model behind its adapter: its unconditional prediction, G's features and its geometry."""
        return frozen_denoiser(frozen_model(self.unet, self.transformer), self.prompt_embedding)

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
        timesteps = self._timesteps(timestep, sample)
        prediction_type = self.scheduler.config.get("prediction_type", "epsilon")
        return pdae_noise_prediction(
            self.denoiser, self.gradient_estimator, sample, timesteps, z, self.scheduler.betas, prediction_type,
            shift_coefficient,
        )  # fmt: skip

    @torch.no_grad()
    def invert(
        self,
        images: ImageInput,
        z: torch.Tensor | None = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        apply_shift: bool = True,
        shift_coefficient: str = "posterior",
    ) -> torch.Tensor:
        """Deterministic DDIM inversion x_0 -> x_T with the shifted noise prediction, the exact mirror of `decode`:
        decoding the result with the same z and steps gives the images back.

        Args:
            images: as for [`~ImageAutoencoderPipelineMixin.encode`].
            z (`torch.Tensor` of shape `(B, latent_dim)`, *optional*): codes; computed with the encoder if omitted.
            num_inference_steps (`int`, defaults to 50): DDIM steps.
            apply_shift (`bool`, defaults to `True`): `False` gives plain DDIM inversion of the pre-trained DPM (no z).
            shift_coefficient (`str`, defaults to `"posterior"`): see [`~PDAEPipeline.predict_noise`].

        Returns:
            `torch.Tensor` of shape `(B, C, H, W)`: x_T.
        """
        return self._invert(images, z, num_inference_steps, apply_shift, shift_coefficient=shift_coefficient)

    def check_inputs(
        self,
        z: torch.Tensor | list[torch.Tensor] | None,
        latents: torch.Tensor | None,
        batch_size: int | None,
        num_images_per_prompt: int,
        num_inference_steps: int,
        generator: torch.Generator | list[torch.Generator] | None,
        shift_range: tuple[int, int] | None,
        eta: float,
        output_type: str,
        callback_on_step_end: Callable | None,
        callback_on_step_end_tensor_inputs: list[str],
    ) -> None:
        """Raise a `ValueError` (or `TypeError`) naming the first of `__call__`'s arguments that cannot be used."""
        check_output_type(output_type)
        self._check_steps(num_inference_steps)
        check_eta(eta)
        check_shift_range(shift_range, self.num_train_timesteps)
        check_batch_size(num_images_per_prompt, "num_images_per_prompt")
        check_callback_inputs(callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs)
        if batch_size is not None:
            check_batch_size(batch_size)
        if z is not None:
            num_codes = self._check_codes(z).shape[0]
            if batch_size is not None and batch_size != num_codes:
                raise ValueError(
                    f"batch_size={batch_size} conflicts with the {num_codes} codes in z: one sample is decoded per "
                    "code (times num_images_per_prompt); leave batch_size out."
                )
        if latents is not None:
            self._check_latents(latents)
        total = self._num_samples(z, latents, batch_size, num_images_per_prompt)
        if latents is not None and latents.shape[0] != total:
            raise ValueError(
                f"latents has {latents.shape[0]} samples but {total} are decoded (codes or batch_size times "
                f"num_images_per_prompt={num_images_per_prompt})."
            )
        check_generator(generator, total)
        requested = f"num_images_per_prompt={num_images_per_prompt} for {total // num_images_per_prompt} code(s)"
        check_sample_count(total, self.denoiser, self._execution_device, requested)

    def prepare_latents(
        self,
        batch_size: int,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x_T of shape `(batch_size, *sample_shape)`: `latents` on the pipeline's device and dtype, or noise drawn
        from `generator`."""
        if latents is None:
            latents = randn_tensor(
                (batch_size, *self.sample_shape),
                generator=generator,
                device=self._execution_device,
                dtype=self.model_dtype,
            )
        return self._check_latents(latents)

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        z: torch.Tensor | list[torch.Tensor] | None = None,
        latents: torch.Tensor | None = None,
        batch_size: int | None = None,
        num_images_per_prompt: int = 1,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        generator: torch.Generator | list[torch.Generator] | None = None,
        shift_range: tuple[int, int] | None = None,
        eta: float = 0.0,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        shift_coefficient: str = "posterior",
        code_num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
    ) -> ImagePipelineOutput | tuple:
        r"""
        Decode codes (or generate unconditionally when `z` is None) with the pipeline's scheduler.

        Args:
            z (`torch.Tensor` or `list[torch.Tensor]`, *optional*): codes from `encode`, of shape `(B, latent_dim)`,
                or a list of such tensors or of `(latent_dim,)` codes. Without them, a pipeline with a
                `latent_sampler` samples `batch_size` codes with it (see [`~PDAEPipeline.sample_codes`]) and decodes
                them; a pipeline without one lets the pre-trained DPM sample alone (no shift).
            latents (`torch.Tensor` of shape `(B * num_images_per_prompt, C, H, W)`, *optional*): x_T, e.g. from
                [`~PDAEPipeline.invert`]; drawn from `generator` if omitted.
            batch_size (`int`, *optional*): samples without `z` (default 1); with `z` it is the number of codes, and a
                different value is an error.
            num_images_per_prompt (`int`, defaults to 1): samples per code (each from its own x_T).
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
                holds the tensors named in `callback_on_step_end_tensor_inputs`, and a returned dict may replace them.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*): a subset of `pipe._callback_tensor_inputs`
                (`"latents"`, `"z"`); defaults to `["latents"]`.
            shift_coefficient (`str`, defaults to `"posterior"`): see [`~PDAEPipeline.predict_noise`].
            code_num_inference_steps (`int`, defaults to 50): the latent sampler's steps when codes are sampled.

        Examples:

        Returns:
            [`ImagePipelineOutput`] or `tuple`.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        tensor_inputs = list(callback_on_step_end_tensor_inputs or ["latents"])
        self.check_inputs(
            z, latents, batch_size, num_images_per_prompt, num_inference_steps, generator, shift_range, eta,
            output_type, callback_on_step_end, tensor_inputs,
        )  # fmt: skip
        total = self._num_samples(z, latents, batch_size, num_images_per_prompt)
        if z is None and self.latent_sampler is not None:
            batch_size = total // num_images_per_prompt
            code_generator = generator[::num_images_per_prompt] if isinstance(generator, list) else generator
            z = self.sample_codes(batch_size, code_num_inference_steps, code_generator)
        if z is not None:
            z = self._check_codes(z).repeat_interleave(num_images_per_prompt, dim=0)
        latents = self.prepare_latents(total, generator, latents)

        scheduler = epsilon_scheduler(self.scheduler)
        scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        self._num_timesteps = len(scheduler.timesteps)
        self._interrupt = False
        latents = latents * scheduler.init_noise_sigma

        step = SchedulerStepper(scheduler, eta, generator, latents.device)
        for i, t in enumerate(self.progress_bar(scheduler.timesteps)):
            if self.interrupt:
                continue
            codes = z if in_shift_range(t, shift_range) else None
            # Identity for DDPM/DDIM/DPM-Solver; Euler-type schedulers keep latents at sigma scale.
            model_input = scheduler.scale_model_input(latents, t)
            latents = step(i, t, self.predict_noise(model_input, t, codes, shift_coefficient), latents)
            if callback_on_step_end is not None:
                available = {"latents": latents, "z": z}
                outputs = callback_on_step_end(self, i, t, {name: available[name] for name in tensor_inputs})
                outputs = check_callback_outputs(outputs, available)
                latents, z = outputs.get("latents", latents), outputs.get("z", z)
        return self._output(latents, output_type, return_dict)

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        z: torch.Tensor | None = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        shift_range: tuple[int, int] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Deterministic DDIM decoding of x_T with codes, whatever scheduler the pipeline holds: the exact mirror of
        [`~PDAEPipeline.invert`], so `decode(invert(images, z, n), z, n)` gives the images back.

        Args:
            latents (`torch.Tensor` of shape `(B, C, H, W)`): x_T.
            z (`torch.Tensor` of shape `(B, latent_dim)`, *optional*): codes; None decodes with the DPM alone.
            num_inference_steps (`int`, defaults to 50): DDIM steps.
            shift_range (`tuple[int, int]`, *optional*): shift only for training timesteps t1 <= t <= t2.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` (in [0, 1]), or `"latent"` for the raw
                `(B, C, H, W)` result in the model's [-1, 1] space, unclipped.
            return_dict (`bool`, defaults to `True`): return an [`ImagePipelineOutput`] instead of a tuple.
        """
        shift_range = check_shift_range(shift_range, self.num_train_timesteps)
        return self._decode(latents, z, num_inference_steps, output_type, return_dict, shift_range)

    @property
    def num_timesteps(self) -> int:
        """Steps of the last `__call__` (as diffusers' pipelines report it to callbacks)."""
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` in a step callback to skip the remaining steps, as in diffusers."""
        return getattr(self, "_interrupt", False)

    def _num_samples(self, z, latents: torch.Tensor | None, batch_size: int | None, copies: int) -> int:
        """How many samples `__call__` decodes: codes (given or to sample) times `copies`, or the given latents."""
        if z is not None:
            return self._check_codes(z).shape[0] * copies
        if self.latent_sampler is not None:
            return (batch_size or (1 if latents is None else max(latents.shape[0] // copies, 1))) * copies
        return latents.shape[0] if latents is not None else (batch_size or 1) * copies
