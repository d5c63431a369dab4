"""What a sampling loop needs from a diffusers scheduler, for images and codes alike: which schedulers PDAE can serve,
one step of any of them, and the spherical interpolation of noise.

It sits below both the pipelines and the training tool (they import it; it imports neither).
"""

from __future__ import annotations

import inspect

import torch
from diffusers import DDIMScheduler
from diffusers.schedulers import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from .pdae_math import PREDICTION_TYPES, ddim_step, ddim_transitions

# Schedulers with the discrete training schedule (betas, alphas_cumprod) PDAE's coefficients are computed from.
SERVING_SCHEDULERS = (
    "DDPMScheduler",
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "PNDMScheduler",
    "UniPCMultistepScheduler",
    "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "DEISMultistepScheduler",
    "DPMSolverSDEScheduler",
)


def has_discrete_schedule(scheduler: SchedulerMixin) -> bool:
    """Whether `scheduler` holds betas and alphas_cumprod over its `num_train_timesteps`."""
    num_train_timesteps = scheduler.config.get("num_train_timesteps")
    betas = getattr(scheduler, "betas", None)
    return (
        num_train_timesteps is not None
        and hasattr(scheduler, "alphas_cumprod")
        and betas is not None
        and len(betas) == num_train_timesteps
    )


def check_scheduler(scheduler: SchedulerMixin) -> None:
    """Raise a `ValueError` for a scheduler PDAE cannot serve: one without a discrete training schedule (c_t and
    lambda_t are computed from its betas) or with an unknown `prediction_type`."""
    if not has_discrete_schedule(scheduler):
        raise ValueError(
            f"{type(scheduler).__name__} has no discrete training schedule (betas and alphas_cumprod over "
            "num_train_timesteps), which PDAE's shift is computed from. Use one of "
            f"{', '.join(SERVING_SCHEDULERS)}, built from the DPM's scheduler config."
        )
    prediction_type = scheduler.config.get("prediction_type", "epsilon")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"The scheduler's prediction_type is {prediction_type!r}; PDAE serves DPMs predicting "
            f"{', '.join(PREDICTION_TYPES)}."
        )


def epsilon_scheduler(scheduler: SchedulerMixin) -> SchedulerMixin:
    """`scheduler`, or an `"epsilon"` copy of it when it is configured for v or x_0: the pipelines' noise
    predictions are always eps, whatever the DPM predicts."""
    if scheduler.config.get("prediction_type", "epsilon") == "epsilon":
        return scheduler
    return type(scheduler).from_config(scheduler.config, prediction_type="epsilon")


def deterministic_scheduler(scheduler: SchedulerMixin, num_inference_steps: int, device) -> DDIMScheduler:
    """A DDIM scheduler with `scheduler`'s training schedule and `clip_sample=False` (inversion must not clip), its
    timesteps set for `num_inference_steps`."""
    ddim = DDIMScheduler.from_config(scheduler.config, clip_sample=False)
    ddim.set_timesteps(num_inference_steps, device=device)
    return ddim


class SchedulerStepper:
    """One denoising step of `scheduler`, for images or codes: `step(i, t, noise_pred, sample) -> previous sample`.

    A `DDIMScheduler` is stepped with [`~pdae_math.ddim_transitions`] (neighbouring timesteps from
    `scheduler.timesteps`, see diffusers issue 12633); any other scheduler with its own `step`, given `eta` and the
    generator where its `step` takes them.
    """

    def __init__(
        self,
        scheduler: SchedulerMixin,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: torch.device | str = "cpu",
    ):
        self.scheduler, self.eta, self.generator = scheduler, eta, generator
        self.transitions = ddim_transitions(scheduler, device) if isinstance(scheduler, DDIMScheduler) else None
        accepted = set(inspect.signature(scheduler.step).parameters)
        self.step_kwargs = {
            name: value for name, value in (("eta", eta), ("generator", generator)) if name in accepted
        }

    def __call__(self, i: int, t: torch.Tensor, noise_pred: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        if self.transitions is None:
            return self.scheduler.step(noise_pred, t, sample, **self.step_kwargs).prev_sample
        _, alpha_from, alpha_to = self.transitions[i]
        variance_noise = None
        if self.eta > 0:
            variance_noise = randn_tensor(
                sample.shape, generator=self.generator, device=sample.device, dtype=sample.dtype
            )
        config = self.scheduler.config
        clip = config.clip_sample_range if config.clip_sample else None
        return ddim_step(sample, noise_pred, alpha_from, alpha_to, self.eta, variance_noise, clip)


def slerp(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """Spherical interpolation between two noise tensors of the same shape (the norm of Gaussian noise is kept)."""
    cos_angle = (a.flatten() @ b.flatten()) / (a.norm() * b.norm())
    angle = torch.arccos(cos_angle.clamp(-1.0, 1.0))
    if angle.abs() < 1e-4:
        return torch.lerp(a, b, weight)
    return (torch.sin((1 - weight) * angle) * a + torch.sin(weight * angle) * b) / torch.sin(angle)


def in_shift_range(timestep: int | torch.Tensor, shift_range: tuple[int, int] | None) -> bool:
    """Whether the code shifts the noise prediction at this training timestep: always when `shift_range` is None,
    else for t1 <= t <= t2 only (the paper's mixed sampling)."""
    return shift_range is None or shift_range[0] <= int(timestep) <= shift_range[1]
