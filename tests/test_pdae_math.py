"""c_t, lambda_t and the loss against hand computations on diffusers' beta schedules."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffusers_pdae.pdae_math import (
    cumulative_alphas,
    ddim_step,
    ddim_transitions,
    loss_weights,
    pdae_loss,
    posterior_mean,
    posterior_variance,
    predict_original_sample,
    shift_coefficients,
    shifted_noise_prediction,
)

SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"]


def hand_values(betas: list[float], t: int, gamma: float = 0.1) -> dict[str, float]:
    """Everything from the raw betas with plain Python floats, straight from the formulas in DESIGN.md."""
    abar = 1.0
    for s in range(t + 1):
        abar *= 1.0 - betas[s]
    abar_prev = abar / (1.0 - betas[t])  # abar_{t-1}, equal to 1 at t = 0
    alpha = 1.0 - betas[t]
    sigma = betas[t] * (1.0 - abar_prev) / (1.0 - abar)
    snr = abar / (1.0 - abar)
    return {
        "c": math.sqrt(alpha) * math.sqrt(1.0 - abar) / betas[t] * sigma,
        "c_closed_form": math.sqrt(alpha) * (1.0 - abar_prev) / math.sqrt(1.0 - abar),
        "lambda": snr**gamma / (1.0 + snr),
        "sigma": sigma,
        "abar": abar,
    }


@pytest.mark.parametrize("beta_schedule", SCHEDULES)
@pytest.mark.parametrize("t", [0, 1, 10, 250, 500, 999])
def test_tables_match_hand_computation(beta_schedule, t):
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule)
    expected = hand_values(scheduler.betas.double().tolist(), t)
    assert expected["c"] == pytest.approx(expected["c_closed_form"], rel=1e-9, abs=1e-15)
    assert shift_coefficients(scheduler.betas)[t].item() == pytest.approx(expected["c"], rel=1e-9, abs=1e-15)
    assert loss_weights(scheduler.betas)[t].item() == pytest.approx(expected["lambda"], rel=1e-9)
    assert posterior_variance(scheduler.betas)[t].item() == pytest.approx(expected["sigma"], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("beta_schedule", SCHEDULES)
def test_tables_from_betas_agree_with_the_schedulers_alphas_cumprod(beta_schedule):
    # DESIGN.md builds the tables from alphas_cumprod, the issue from betas: both routes must give the same abar_t.
    scheduler = DDPMScheduler(beta_schedule=beta_schedule)
    alphas_cumprod, _ = cumulative_alphas(scheduler.betas)
    assert alphas_cumprod.dtype == torch.float64
    torch.testing.assert_close(alphas_cumprod, scheduler.alphas_cumprod.double(), rtol=0, atol=1e-6)


def test_shift_is_zero_at_t0_and_official_coefficient_differs():
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    posterior = shift_coefficients(scheduler.betas)
    official = shift_coefficients(scheduler.betas, "sqrt_one_minus_alpha_bar")
    assert posterior[0].item() == 0.0
    assert official[0].item() == pytest.approx(math.sqrt(1e-4), rel=1e-3)
    # the official DDIM coefficient over-weights the shift by (1 - abar_t) / (sqrt(alpha_t) (1 - abar_{t-1}))
    t = 100
    values = hand_values(scheduler.betas.double().tolist(), t)
    abar, alpha = values["abar"], 1 - scheduler.betas[t].item()
    ratio = (1 - abar) / (alpha**0.5 * (1 - abar / alpha))
    assert (official[t] / posterior[t]).item() == pytest.approx(ratio, rel=1e-6)
    with pytest.raises(ValueError, match="shift coefficient kind"):
        shift_coefficients(scheduler.betas, "bogus")


def test_shift_is_zero_when_gradient_is_zero():
    table = shift_coefficients(DDPMScheduler(num_train_timesteps=1000).betas)
    noise_pred = torch.randn(3, 1, 4, 4)
    out = shifted_noise_prediction(noise_pred, torch.zeros_like(noise_pred), torch.tensor([0, 500, 999]), table)
    assert torch.equal(out, noise_pred)


def test_loss_matches_hand_computation():
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    generator = torch.Generator().manual_seed(0)
    noise, noise_pred, gradient = (torch.randn(3, 2, 4, 4, generator=generator) for _ in range(3))
    timesteps = torch.tensor([0, 37, 999])
    loss = pdae_loss(noise, noise_pred, gradient, timesteps, scheduler.betas, gamma=0.1)
    assert loss.shape == (3,)
    betas = scheduler.betas.double().tolist()
    for i, t in enumerate(timesteps.tolist()):
        values = hand_values(betas, t)
        eps_hat = noise_pred[i].double() - values["c"] * gradient[i].double()
        expected = values["lambda"] * (noise[i].double() - eps_hat).pow(2).mean().item()
        assert loss[i].item() == pytest.approx(expected, rel=1e-5)


def test_ddim_step_runs_both_ways_exactly_for_a_fixed_noise_prediction():
    generator = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 1, 4, 4, generator=generator), torch.randn(2, 1, 4, 4, generator=generator)
    xt = ddim_step(x0, eps, 1.0, 0.3)
    assert torch.allclose(xt, 0.3**0.5 * x0 + 0.7**0.5 * eps)
    assert torch.allclose(ddim_step(xt, eps, 0.3, 1.0), x0, atol=1e-6)
    assert torch.allclose(predict_original_sample(xt, eps, 0.3), x0, atol=1e-6)


def test_ddim_step_with_eta_matches_diffusers_formula():
    generator = torch.Generator().manual_seed(2)
    x, eps, noise = (torch.randn(1, 1, 4, 4, generator=generator) for _ in range(3))
    a_t, a_prev, eta = 0.2, 0.5, 1.0
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
    x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5
    expected = a_prev**0.5 * x0 + (1 - a_prev - sigma**2) ** 0.5 * eps + sigma * noise
    assert torch.allclose(ddim_step(x, eps, a_t, a_prev, eta=eta, variance_noise=noise), expected, atol=1e-6)
    with pytest.raises(ValueError, match="variance_noise"):
        ddim_step(x, eps, a_t, a_prev, eta=eta)


def test_posterior_mean_of_true_x0_is_the_ddpm_posterior():
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    generator = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(2, 1, 4, 4, generator=generator), torch.randn(2, 1, 4, 4, generator=generator)
    t = torch.tensor([10, 600])
    xt = scheduler.add_noise(x0, noise, t)
    mean = posterior_mean(x0, xt, t, scheduler.betas)
    betas = scheduler.betas.double()
    for i, step in enumerate(t.tolist()):
        values = hand_values(betas.tolist(), step)
        abar_prev = values["abar"] / (1 - betas[step].item())
        expected = (abar_prev**0.5 * betas[step].item() / (1 - values["abar"])) * x0[i].double() + (
            (1 - betas[step].item()) ** 0.5 * (1 - abar_prev) / (1 - values["abar"])
        ) * xt[i].double()
        assert torch.allclose(mean[i].double(), expected, atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_ddim_transitions_take_the_next_timestep_from_the_schedule_not_t_minus_T_over_N(spacing):
    scheduler = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing, set_alpha_to_one=False)
    scheduler.set_timesteps(7)
    timesteps = scheduler.timesteps.tolist()
    transitions = ddim_transitions(scheduler)
    assert [t for t, _, _ in transitions] == timesteps
    for (t, alpha_t, alpha_next), following in zip(transitions, [*timesteps[1:], None], strict=True):
        assert alpha_t == scheduler.alphas_cumprod[t]
        expected = scheduler.final_alpha_cumprod if following is None else scheduler.alphas_cumprod[following]
        assert alpha_next == expected
    if spacing == "linspace":
        # 999, 832, ...: steps of 166 or 167, so t - T // N (= t - 142) would be wrong
        assert timesteps[0] - timesteps[1] != 1000 // 7
