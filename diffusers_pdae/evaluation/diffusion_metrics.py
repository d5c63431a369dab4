"""Per-timestep diffusion loss and posterior-mean gap of the DPM, a class-conditional DPM and PDAE (paper figs. 1, 5).

For every t of a grid, every model sees the same x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (fixed, seeded eps):

- diffusion loss: mean over images and pixels of (eps - eps_pred)^2, unweighted;
- posterior-mean gap: mean over images and pixels of (mu_theta(x_t, t) - mu~(x_t, x_0))^2, where
  mu_theta = mu~(x0_hat, x_t) and x0_hat = (x_t - sqrt(1 - abar_t) eps_pred) / sqrt(abar_t) (not clipped).

eps_pred is eps_theta for the DPM, the conditional UNet's eps_theta(x_t, t, y) for the class-conditional DPM, and the
shifted eps_hat = eps_theta - c_t G(x_t, E(x_0), t) for PDAE.

Averages "over all t" are the mean over every training timestep of the curve interpolated linearly between the
measured ones: the curves change fastest at small t, where `curve_timesteps` measures densely, so a plain mean over an
evenly spaced grid starting at 0 would over-weight t = 0 (where c_0 = 0 and PDAE's shift vanishes by construction).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import ModelMixin
from tqdm.auto import tqdm

from ..pdae_math import cumulative_alphas, posterior_mean, predict_original_sample
from ..pipelines import PDAEPipeline

MODEL_NAMES = ("dpm", "conditional_dpm", "pdae")


def curve_timesteps(num_train_timesteps: int, stride: int, dense_points: int = 8) -> list[int]:
    """Every `stride`-th timestep, plus t = 0, log-spaced timesteps below `stride` and the last timestep.

    E.g. stride 20 of 1000: 0, 1, 2, 4, 6, 8, 13, 20, 40, ..., 980, 999.
    """
    dense = np.rint(np.geomspace(1, stride, dense_points)).astype(int).tolist()
    grid = {0, num_train_timesteps - 1, *dense, *range(stride, num_train_timesteps, stride)}
    return sorted(t for t in grid if t < num_train_timesteps)


def average_over_all_timesteps(
    timesteps: list[int], values: list[float], num_train_timesteps: int, t_range: tuple[int, int] | None = None
) -> float:
    """Mean over t = 0 .. T-1 (or over `t_range` = [low, high)) of the curve `values(timesteps)` interpolated
    linearly (constant beyond its ends)."""
    low, high = t_range if t_range is not None else (0, num_train_timesteps)
    return float(np.interp(np.arange(low, high), timesteps, values).mean())


@dataclass
class DiffusionCurves:
    """Per-timestep figures of each model, each list aligned with `timesteps`.

    Attributes:
        timesteps (`list[int]`): the training timesteps measured.
        loss (`dict[str, list[float]]`): mean squared noise-prediction error per model name.
        posterior_mean_gap (`dict[str, list[float]]`): mean squared gap to mu~(x_t, x_0) per model name.
        num_images (`int`): images averaged at each t.
        num_train_timesteps (`int`): T of the training schedule, for averages over all t.
    """

    timesteps: list[int]
    loss: dict[str, list[float]] = field(default_factory=dict)
    posterior_mean_gap: dict[str, list[float]] = field(default_factory=dict)
    num_images: int = 0
    num_train_timesteps: int = 1000

    def average_gap(self, name: str, t_range: tuple[int, int] | None = None) -> float:
        """The gap of model `name` averaged over all training timesteps, or those in `t_range` = [low, high) (see
        `average_over_all_timesteps`)."""
        values = self.posterior_mean_gap[name]
        return average_over_all_timesteps(self.timesteps, values, self.num_train_timesteps, t_range)

    def as_dict(self) -> dict:
        return {
            "timesteps": self.timesteps,
            "num_images": self.num_images,
            "loss": self.loss,
            "posterior_mean_gap": self.posterior_mean_gap,
            "average_posterior_mean_gap": {name: self.average_gap(name) for name in self.posterior_mean_gap},
        }


def noisy_samples(
    images: torch.Tensor, timestep: int, alphas_cumprod: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, eps) for images `(B, C, H, W)` at one training timestep, eps drawn from `generator`; abar in float64."""
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    abar = alphas_cumprod[timestep].item()
    return abar**0.5 * images + (1.0 - abar) ** 0.5 * noise, noise


@torch.no_grad()
def noise_predictions(
    pipeline: PDAEPipeline,
    conditional_unet: ModelMixin | None,
    sample: torch.Tensor,
    timestep: int,
    codes: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Each model's noise prediction `(B, C, H, W)` at x_t = `sample`, keyed by model name."""
    timesteps = torch.full((len(sample),), timestep, device=sample.device, dtype=torch.long)
    predictions = {
        "dpm": pipeline.predict_noise(sample, timestep).float(),
        "pdae": pipeline.predict_noise(sample, timestep, codes).float(),
    }
    if conditional_unet is not None:
        predictions["conditional_dpm"] = conditional_unet(sample, timesteps, class_labels=labels).sample.float()
    return predictions


@torch.no_grad()
def diffusion_curves(
    pipeline: PDAEPipeline,
    images: torch.Tensor,
    labels: torch.Tensor,
    timesteps: list[int],
    conditional_unet: ModelMixin | None = None,
    seed: int = 0,
    batch_size: int = 128,
) -> DiffusionCurves:
    """Diffusion loss and posterior-mean gap of each model at each timestep of `timesteps`.

    Args:
        pipeline ([`PDAEPipeline`]): gives the DPM (its frozen UNet) and PDAE.
        images (`torch.Tensor` of shape `(N, C, H, W)`): x_0 in [-1, 1].
        labels (`torch.Tensor` of shape `(N,)`): classes of `images`, for the conditional DPM.
        timesteps (`list[int]`): training timesteps in `[0, T)`.
        conditional_unet (`UNet2DModel`, *optional*): a class-conditional UNet on the same schedule; omitted, only
            "dpm" and "pdae" are measured.
        seed (`int`, defaults to 0): seed of the noise eps (one draw per image and timestep, shared by all models).
        batch_size (`int`, defaults to 128): images per network call.

    Returns:
        [`DiffusionCurves`].
    """
    betas = pipeline.scheduler.betas
    alphas_cumprod, _ = cumulative_alphas(betas)
    device = pipeline._execution_device
    generator = torch.Generator().manual_seed(seed)
    codes = torch.cat([pipeline.encode(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    names = MODEL_NAMES if conditional_unet is not None else ("dpm", "pdae")
    curves = DiffusionCurves(list(timesteps), {n: [] for n in names}, {n: [] for n in names}, num_images=len(images))
    for t in tqdm(timesteps, desc="diffusion loss / posterior gap per t", leave=False):
        loss_sums, gap_sums = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
        for start in range(0, len(images), batch_size):
            x0 = images[start : start + batch_size].to(device)
            x_t, noise = noisy_samples(x0, t, alphas_cumprod, generator)
            step = torch.full((len(x0),), t, dtype=torch.long)
            true_mean = posterior_mean(x0, x_t, step, betas)
            predictions = noise_predictions(
                pipeline,
                conditional_unet,
                x_t,
                t,
                codes[start : start + batch_size],
                labels[start : start + batch_size].to(device),
            )
            for name, noise_pred in predictions.items():
                loss_sums[name] += (noise - noise_pred).pow(2).flatten(1).mean(dim=1).sum().item()
                x0_hat = predict_original_sample(x_t, noise_pred, alphas_cumprod[t].item())
                gap = (posterior_mean(x0_hat, x_t, step, betas) - true_mean).pow(2)
                gap_sums[name] += gap.flatten(1).mean(dim=1).sum().item()
        for name in names:
            curves.loss[name].append(loss_sums[name] / len(images))
            curves.posterior_mean_gap[name].append(gap_sums[name] / len(images))
    return curves


@torch.no_grad()
def one_step_predictions(
    pipeline: PDAEPipeline, images: torch.Tensor, timesteps: list[int], seed: int = 0
) -> dict[int, dict[str, torch.Tensor]]:
    """The one-step predictions of x_0 of the DPM and of PDAE, for the paper's Figure 5 grid.

    Args:
        images (`torch.Tensor` of shape `(B, C, H, W)`): x_0 in [-1, 1].
        timesteps (`list[int]`): training timesteps.

    Returns:
        `{t: {"x_t", "dpm", "pdae"}}`, tensors `(B, C, H, W)` in [-1, 1] (predictions clamped for display).
    """
    alphas_cumprod, _ = cumulative_alphas(pipeline.scheduler.betas)
    generator = torch.Generator().manual_seed(seed)
    images = images.to(pipeline._execution_device)
    codes = pipeline.encode(images)
    grid = {}
    for t in timesteps:
        x_t, _ = noisy_samples(images, t, alphas_cumprod, generator)
        abar = alphas_cumprod[t].item()
        grid[t] = {
            "x_t": x_t.clamp(-1, 1),
            "dpm": predict_original_sample(x_t, pipeline.predict_noise(x_t, t).float(), abar).clamp(-1, 1),
            "pdae": predict_original_sample(x_t, pipeline.predict_noise(x_t, t, codes).float(), abar).clamp(-1, 1),
        }
    return grid
