"""Per-t diffusion curves and the critical-stage sweep on tiny random models."""

import pytest
import torch
from diffusers import DDIMScheduler

from diffusers_pdae.evaluation import (
    CriticalStageResult,
    critical_stage_scores,
    diffusion_curves,
    mixed_sampling_sweep,
    reconstruction_study,
)
from diffusers_pdae.evaluation.diffusion_metrics import average_over_all_timesteps, curve_timesteps
from diffusers_pdae.pdae_math import cumulative_alphas

from ..conftest import tiny_images, tiny_pipeline, tiny_unet


def test_posterior_mean_gap_is_the_noise_error_scaled_by_beta_over_sqrt_alpha_one_minus_abar():
    # mu_theta - mu~ = -beta_t / (sqrt(alpha_t) sqrt(1 - abar_t)) (eps_pred - eps), for every model.
    pipeline = tiny_pipeline()
    images, labels = tiny_images(4), torch.tensor([0, 1, 2, 3])
    timesteps = [0, 10, 500, 999]
    conditional_unet = tiny_unet(seed=5, num_class_embeds=10)
    curves = diffusion_curves(pipeline, images, labels, timesteps, conditional_unet, seed=0, batch_size=3)
    betas = pipeline.scheduler.betas.double()
    abar, _ = cumulative_alphas(betas)
    assert set(curves.loss) == {"dpm", "conditional_dpm", "pdae"}
    for name in curves.loss:
        for i, t in enumerate(timesteps):
            scale = (betas[t] ** 2 / ((1 - betas[t]) * (1 - abar[t]))).item()
            assert curves.posterior_mean_gap[name][i] == pytest.approx(scale * curves.loss[name][i], rel=1e-3)
    expected = average_over_all_timesteps(timesteps, curves.posterior_mean_gap["dpm"], 1000)
    assert curves.average_gap("dpm") == pytest.approx(expected)
    assert curves.loss["pdae"] != curves.loss["dpm"]  # the tiny G is non-zero


def test_average_over_all_timesteps_interpolates_between_measured_ones():
    assert average_over_all_timesteps([0, 10], [0.0, 10.0], 11) == pytest.approx(5.0)
    # constant beyond the last measured timestep: (0 + 1 + ... + 10 + 9 * 10) / 20
    assert average_over_all_timesteps([0, 10], [0.0, 10.0], 20) == pytest.approx(7.25)
    assert average_over_all_timesteps([0, 10], [0.0, 10.0], 20, t_range=(2, 6)) == pytest.approx(3.5)


def test_curve_timesteps_are_dense_at_small_t_and_end_at_the_last_step():
    grid = curve_timesteps(1000, 20)
    assert grid[:8] == [0, 1, 2, 4, 6, 8, 13, 20] and grid[-2:] == [980, 999]
    assert len(grid) == len(set(grid)) == 7 + 49 + 1
    assert curve_timesteps(1000, 100)[:9] == [0, 1, 2, 4, 7, 14, 27, 52, 100]


def test_without_a_shift_pdae_curves_equal_the_dpm_and_noise_is_shared():
    pipeline = tiny_pipeline(shift=False)  # G = 0 exactly: eps_hat == eps_theta
    curves = diffusion_curves(pipeline, tiny_images(3), torch.tensor([1, 2, 3]), [5, 700], seed=1)
    assert curves.loss["pdae"] == curves.loss["dpm"]
    assert curves.posterior_mean_gap["pdae"] == curves.posterior_mean_gap["dpm"]
    again = diffusion_curves(pipeline, tiny_images(3), torch.tensor([1, 2, 3]), [5, 700], seed=1)
    assert again.loss == curves.loss


@torch.no_grad()
def test_the_shared_sweep_gives_exactly_what_the_pipeline_gives_for_each_stage():
    pipeline = tiny_pipeline(scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=False))
    codes = pipeline.encode(tiny_images(2))
    latents = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    results = {}
    mixed_sampling_sweep(
        pipeline, codes, latents, 5, lambda t1, t2, x0: results.__setitem__((t1, t2), x0), progress=False
    )
    assert sorted(results) == [(t1, t2) for t1 in range(0, 1000, 200) for t2 in range(0, 1000, 200) if t1 <= t2]
    for stage in [(0, 800), (400, 600), (200, 200), (800, 800)]:
        expected = pipeline(z=codes, latents=latents, num_inference_steps=5, shift_range=stage, output_type="pt")
        assert torch.allclose((results[stage] / 2 + 0.5).clamp(0, 1), expected.images, atol=1e-5), stage
        decoded = pipeline.decode(latents, codes, 5, stage, output_type="latent").images
        assert torch.allclose(results[stage], decoded, atol=1e-6)


def test_critical_stage_scores_count_every_stage_over_batches_with_any_label_predictor():
    pipeline = tiny_pipeline(scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=False))
    images = tiny_images(3)
    latents = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    seen = []

    def predict_ones(decoded: torch.Tensor) -> torch.Tensor:
        seen.append(decoded)
        return torch.ones(len(decoded), dtype=torch.long)

    result = critical_stage_scores(
        pipeline, predict_ones, pipeline.encode(images), torch.tensor([1, 0, 1]), latents, num_inference_steps=3,
        batch_size=2,
    )  # fmt: skip
    assert result.timesteps == [0, 333, 666] and result.num_samples == 3
    assert result.unconditional_score == pytest.approx(2 / 3)
    assert result.scores[1][0] is None
    assert all(score == pytest.approx(2 / 3) for row in result.scores for score in row if score is not None)
    # 2 batches x (1 unconditional + 6 stages) calls, on clamped float32 images
    assert len(seen) == 14 and all(d.dtype == torch.float32 and d.abs().max() <= 1 for d in seen)


def test_shortest_stage_keeps_the_fraction_of_the_full_shift_score():
    nan = None
    result = CriticalStageResult(
        timesteps=[0, 50, 100, 150],
        scores=[[0.1, 0.2, 0.5, 1.0], [nan, 0.1, 0.6, 0.96], [nan, nan, 0.3, 0.95], [nan, nan, nan, 0.2]],
        unconditional_score=0.1,
        num_samples=10,
    )
    assert result.full_shift_score == 1.0
    assert result.shortest_stage(0.95) == (100, 150, 0.95)  # 50 wide; (50, 150) is wider
    assert result.shortest_stage(0.99) == (0, 150, 1.0)
    assert result.as_dict()["shortest_stage"] == [100, 150]
    assert "paper_stage_score" not in result.as_dict()  # 400 and 700 are not on this grid


def test_reconstruction_study_scores_every_kind_and_step():
    pipeline = tiny_pipeline()
    images = tiny_images(3)
    figures, examples = reconstruction_study(pipeline, images, [2, 3], seed=0, batch_size=2, num_examples=2)
    assert set(figures) == {"2", "3"}
    for kinds in figures.values():
        assert set(kinds) == {"pdae_inferred_xT", "pdae_random_xT", "ddim_inversion", "dpm_random_xT"}
        for metrics in kinds.values():
            assert set(metrics) == {"mse", "psnr", "ssim"} and set(metrics["psnr"]) == {"mean", "sem"}
    assert examples[2]["original"].shape == (2, 1, 16, 16)
    assert examples[3]["pdae_random_xT"].min() >= 0 and examples[3]["pdae_random_xT"].max() <= 1
