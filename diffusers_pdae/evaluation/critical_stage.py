"""Mixed sampling and the critical stage (paper Figure 3): does the shift in a window [t1, t2] alone carry the class?

Samples start from random x_T and use a code z of a labelled test image; the shift eps_theta -> eps_hat is applied
only at the DDIM timesteps t with t1 <= t <= t2, the DPM alone denoises elsewhere. A sample scores when a classifier
of the user's choice (any `images -> labels` function) gives it the label of the image z came from.

All (t1, t2) pairs on the DDIM grid share work: above t2 every pair follows the unconditional trajectory (computed
once, its state cached at every timestep); for each t2 the shifted segment runs downward once, and at each t1 an
unconditional tail branches off to x_0. One sample costs K(K+1)/2 shifted steps and about K^3/6 unconditional ones for
K DDIM steps, instead of about K^3/2 for independent runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..pdae_math import ddim_step, ddim_transitions
from ..pipelines import PDAEPipeline

PAPER_CRITICAL_STAGE = (400, 700)


@dataclass
class CriticalStageResult:
    """Classifier scores of mixed sampling on a grid of stages.

    Attributes:
        timesteps (`list[int]`): the DDIM timesteps, ascending (e.g. 0, 50, ..., 950 for 20 "leading" steps).
        scores (`list[list[float | None]]`): `scores[i][j]` is the score of the stage
            [timesteps[i], timesteps[j]]; None where i > j.
        unconditional_score (`float`): the score of the DPM alone (no shift at any t): chance level.
        num_samples (`int`): samples per stage.
    """

    timesteps: list[int]
    scores: list[list[float | None]]
    unconditional_score: float
    num_samples: int

    def score(self, t1: int, t2: int) -> float:
        """The score of the stage [t1, t2] (both on the grid)."""
        return self.scores[self.timesteps.index(t1)][self.timesteps.index(t2)]

    @property
    def full_shift_score(self) -> float:
        """The score with the shift at every timestep (decoding from z alone)."""
        return self.score(self.timesteps[0], self.timesteps[-1])

    def shortest_stage(self, fraction: float = 0.95) -> tuple[int, int, float]:
        """The shortest stage (t2 - t1, then the higher score) keeping `fraction` of the full-shift score.

        Returns:
            `(t1, t2, score)`.
        """
        threshold = fraction * self.full_shift_score
        candidates = [
            (self.timesteps[j] - self.timesteps[i], -score, self.timesteps[i], self.timesteps[j])
            for i, row in enumerate(self.scores)
            for j, score in enumerate(row)
            if score is not None and score >= threshold
        ]
        _, negative_score, t1, t2 = min(candidates)
        return t1, t2, -negative_score

    def as_dict(self, fraction: float = 0.95) -> dict:
        t1, t2, score = self.shortest_stage(fraction)
        figures = {
            "timesteps": self.timesteps,
            "scores": self.scores,
            "num_samples": self.num_samples,
            "full_shift_score": self.full_shift_score,
            "unconditional_score": self.unconditional_score,
            "fraction_of_full_shift": fraction,
            "shortest_stage": [t1, t2],
            "shortest_stage_score": score,
            "paper_stage": list(PAPER_CRITICAL_STAGE),
        }
        if all(t in self.timesteps for t in PAPER_CRITICAL_STAGE):
            figures["paper_stage_score"] = self.score(*PAPER_CRITICAL_STAGE)
        return figures


@torch.no_grad()
def mixed_sampling_sweep(
    pipeline: PDAEPipeline,
    codes: torch.Tensor,
    latents: torch.Tensor,
    num_inference_steps: int,
    on_stage: Callable[[int, int, torch.Tensor], None],
    on_unconditional: Callable[[torch.Tensor], None] | None = None,
    autocast: bool = False,
    progress: bool = True,
) -> None:
    """Decode `latents` with the shift confined to [t1, t2], for every pair t1 <= t2 of the DDIM timesteps.

    Deterministic DDIM (eta = 0) on `pipeline.deterministic_scheduler(num_inference_steps)`, neighbouring timesteps
    taken from its `timesteps`; each stage's result equals `pipeline(z=codes, latents=latents, shift_range=(t1, t2))`
    with that scheduler.

    Args:
        codes (`torch.Tensor` of shape `(B, latent_dim)`): z for each sample.
        latents (`torch.Tensor` of shape `(B, C, H, W)`): x_T.
        on_stage: called as `on_stage(t1, t2, x_0)` with x_0 `(B, C, H, W)` (unclipped model space) for every pair.
        on_unconditional: called once with the x_0 of the DPM alone.
        autocast (`bool`, defaults to `False`): run the networks under bfloat16 autocast (about 2x faster on CPUs
            with AMX/AVX-512 bf16; the DDIM updates stay in float32).
        progress (`bool`, defaults to `True`): show a progress bar over t2.
    """
    transitions = ddim_transitions(pipeline.deterministic_scheduler(num_inference_steps), latents.device)
    timesteps = [t for t, _, _ in transitions]  # descending
    device_type = latents.device.type

    def step(sample: torch.Tensor, index: int, z: torch.Tensor | None) -> torch.Tensor:
        t, alpha_t, alpha_next = transitions[index]
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            noise_pred = pipeline.predict_noise(sample, t, z)
        return ddim_step(sample, noise_pred.to(sample.dtype), alpha_t, alpha_next)

    def unconditional_tail(sample: torch.Tensor, start: int) -> torch.Tensor:
        for index in range(start, len(timesteps)):
            sample = step(sample, index, None)
        return sample

    # states[i]: the unconditional trajectory just before the step at timesteps[i].
    states = [latents]
    for index in range(len(timesteps)):
        states.append(step(states[-1], index, None))
    if on_unconditional is not None:
        on_unconditional(states[-1])
    for upper in tqdm(range(len(timesteps)), desc="critical stage: t2", leave=False, disable=not progress):
        sample = states[upper]
        for lower in range(upper, len(timesteps)):
            sample = step(sample, lower, codes)
            on_stage(timesteps[lower], timesteps[upper], unconditional_tail(sample, lower + 1))


@torch.no_grad()
def critical_stage_scores(
    pipeline: PDAEPipeline,
    predict_labels: Callable[[torch.Tensor], torch.Tensor],
    codes: torch.Tensor,
    labels: torch.Tensor,
    latents: torch.Tensor,
    num_inference_steps: int = 20,
    batch_size: int = 100,
    autocast: bool = False,
) -> CriticalStageResult:
    """Score mixed sampling for every stage [t1, t2] on the DDIM grid.

    Args:
        predict_labels: maps decoded images `(B, C, H, W)` in [-1, 1] (float32, clamped) to predicted labels `(B,)`.
        codes (`torch.Tensor` of shape `(N, latent_dim)`): z of labelled test images.
        labels (`torch.Tensor` of shape `(N,)`): those images' labels.
        latents (`torch.Tensor` of shape `(N, C, H, W)`): seeded random x_T.
        num_inference_steps (`int`, defaults to 20): DDIM steps; 20 "leading" steps of a 1000-step schedule give the
            grid 0, 50, ..., 950.
        batch_size (`int`, defaults to 100): samples per sweep.
        autocast (`bool`, defaults to `False`): bfloat16 autocast for the networks, see [`mixed_sampling_sweep`].

    Returns:
        [`CriticalStageResult`].
    """
    correct: dict[tuple[int, int], int] = {}
    unconditional_correct = 0
    device = pipeline._execution_device
    for start in range(0, len(codes), batch_size):
        batch_labels = labels[start : start + batch_size]

        def hits(images: torch.Tensor, batch_labels=batch_labels) -> int:
            predicted = predict_labels(images.float().clamp(-1, 1))
            return int((predicted.cpu() == batch_labels.cpu()).sum())

        def count_stage(t1: int, t2: int, images: torch.Tensor) -> None:
            correct[(t1, t2)] = correct.get((t1, t2), 0) + hits(images)

        def count_unconditional(images: torch.Tensor) -> None:
            nonlocal unconditional_correct
            unconditional_correct += hits(images)

        mixed_sampling_sweep(
            pipeline,
            codes[start : start + batch_size].to(device),
            latents[start : start + batch_size].to(device),
            num_inference_steps,
            count_stage,
            count_unconditional,
            autocast=autocast,
        )
    grid = sorted({t for pair in correct for t in pair})
    scores = [[correct[(t1, t2)] / len(codes) if t1 <= t2 else None for t2 in grid] for t1 in grid]
    return CriticalStageResult(grid, scores, unconditional_correct / len(codes), len(codes))
