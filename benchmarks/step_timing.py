"""What a training or sampling step costs: the steps bench_steps.py and benchmark_training_step.py time.

A module beside the benchmark scripts, imported by plain name (`from step_timing import ...`), as running a script
from benchmarks/ puts this folder on the path.

Each builder returns a closure that runs one step on fixed inputs, drawing fresh noise and timesteps from a seeded
generator on the inputs' device; [`median_seconds`] times it with the device synchronised around every call. The
training steps are those of the training tools (the same losses, AdamW over the trainable parameters), without data
loading, checkpoints or logging.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from diffusers_pdae.models.diffae_unet import DiffAEUNet2DModel
from diffusers_pdae.models.encoders import EncoderModel
from diffusers_pdae.models.gradient_estimator import GradientEstimator
from diffusers_pdae.pipelines import PDAEPipeline
from diffusers_pdae.training.diffae_objective import diffae_training_loss
from diffusers_pdae.training.objective import pdae_training_loss

# Lighter gradient estimators to compare with the full one: `GradientEstimator.from_unet` keyword arguments.
GRADIENT_ESTIMATOR_OPTIONS = {
    "full": {},
    "1-resnet": {"resnets_per_up_block": 1},
    "half-width": {"width_multiplier": 0.5},
    "1-resnet-half-width": {"resnets_per_up_block": 1, "width_multiplier": 0.5},
}
# `torch.compile` modes by name; "none" runs eagerly.
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune-no-cudagraphs")

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """`torch.autocast` to `dtype` on the device, or a no-op context for None (full precision)."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def median_seconds(call: Callable[[], object], steps: int, warmup: int, device: torch.device) -> float:
    """Median wall-clock seconds of `call()` over `steps` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    durations = []
    for _ in range(steps):
        synchronize(device)
        started = time.perf_counter()
        call()
        synchronize(device)
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def compiled(module: torch.nn.Module, mode: str) -> torch.nn.Module:
    """`module` compiled in place with `torch.compile` (its class and attributes unchanged), or as is for "none"."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"Unknown compile mode {mode!r}; choose one of {COMPILE_MODES}.")
    if mode != "none":
        module.compile(mode=None if mode == "default" else mode)
    return module


def training_step(
    loss_fn: LossFunction,
    parameters: Iterable[torch.nn.Parameter],
    batch_shape: torch.Size,
    num_train_timesteps: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    seed: int = 0,
) -> Callable[[], None]:
    """One optimiser step: eps and t drawn for a batch of `batch_shape`, `loss_fn(noise, timesteps)` -> `(B,)`
    averaged and back-propagated, AdamW (torch's default implementation for the device) on `parameters`."""
    optimizer = torch.optim.AdamW(list(parameters), lr=1e-4)
    generator = torch.Generator(device).manual_seed(seed)

    def step() -> None:
        noise = torch.randn(batch_shape, generator=generator, device=device)
        timesteps = torch.randint(0, num_train_timesteps, batch_shape[:1], generator=generator, device=device)
        with autocast(device, autocast_dtype):
            loss = loss_fn(noise, timesteps).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def ddpm_loss_fn(unet: UNet2DModel, scheduler: DDPMScheduler, images: torch.Tensor) -> LossFunction:
    """The DPM's own training loss on `images` `(B, C, H, W)`: what pre-training the UNet costs per step."""

    def loss(noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        noise_pred = unet(scheduler.add_noise(images, noise, timesteps), timesteps).sample
        return F.mse_loss(noise_pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))

    return loss


def pdae_loss_fn(
    unet: UNet2DModel,
    encoder: EncoderModel,
    gradient_estimator: GradientEstimator,
    scheduler: DDPMScheduler,
    images: torch.Tensor,
) -> LossFunction:
    """PDAE's loss with the frozen `unet` (one pass without gradient), as `train_pdae.py` computes it."""

    def loss(noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return pdae_training_loss(unet, encoder, gradient_estimator, scheduler, images, noise, timesteps)

    return loss


def diffae_loss_fn(
    model: DiffAEUNet2DModel, encoder: EncoderModel, scheduler: DDPMScheduler, images: torch.Tensor
) -> LossFunction:
    """The Diff-AE baseline's loss: its conditional UNet and encoder trained jointly."""

    def loss(noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return diffae_training_loss(model, encoder, scheduler, images, noise, timesteps)

    return loss


def decoding_run(
    pipe: PDAEPipeline,
    latents: torch.Tensor,
    z: torch.Tensor | None,
    num_inference_steps: int,
    shift_range: tuple[int, int] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Callable[[], torch.Tensor]:
    """One whole deterministic DDIM decoding of `latents` `(B, C, H, W)`: plain (`z` None), shifted at every step,
    or shifted only in `shift_range` (the critical stage)."""
    device = latents.device

    def run() -> torch.Tensor:
        with autocast(device, autocast_dtype):
            return pipe.decode(latents, z, num_inference_steps, shift_range=shift_range, output_type="latent").images

    return run


def encoding_run(encoder: EncoderModel, images: torch.Tensor, autocast_dtype: torch.dtype | None = None):
    """One encoder pass over `images` `(B, C, H, W)` without gradient."""

    @torch.no_grad()
    def run() -> torch.Tensor:
        with autocast(images.device, autocast_dtype):
            return encoder(images).z

    return run
