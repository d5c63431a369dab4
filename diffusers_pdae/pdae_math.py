"""The arithmetic of PDAE, in one place.

Every coefficient is a pure function of the training schedule's betas (`scheduler.betas`, shape `(T,)`, turned into
abar_t in float64) and of training timesteps `t` in `[0, T)`, following diffusers' convention that `t = 0` is
the first noising step and abar_{-1} = 1. The pipeline, the training script and the evaluation all import these
functions; nothing else re-derives them.

Notation (Zhang, Zhao & Lin 2022, "Unsupervised Representation Learning from Pre-trained Diffusion Probabilistic
Models"; Ho et al. 2020 for the DDPM posterior):

    beta_t  = 1 - abar_t / abar_{t-1},   alpha_t = 1 - beta_t
    Sigma_t = beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)                   posterior variance
    c_t     = sqrt(alpha_t) sqrt(1 - abar_t) / beta_t * Sigma_t
            = sqrt(alpha_t) (1 - abar_{t-1}) / sqrt(1 - abar_t)                  noise-space shift coefficient
    eps_hat = eps_theta(x_t, t) - c_t G(x_t, z, t)                              shifted noise prediction
    lambda_t = SNR_t^gamma / (1 + SNR_t),   SNR_t = abar_t / (1 - abar_t)       loss weight (paper eq. 9)
    L       = E[lambda_t || eps - eps_hat ||^2]

Shifting the noise prediction by `-c_t G` moves the posterior mean by exactly `Sigma_t G` (paper eq. 7), and at the
optimum `eps_theta - c_t G = E[eps | x_t, z]`, so the same `c_t` is right for every sampler (DDPM, DDIM, ...).
"""

from __future__ import annotations

import torch

SHIFT_COEFFICIENT_KINDS = ("posterior", "sqrt_one_minus_alpha_bar")


def cumulative_alphas(betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(abar_t, abar_{t-1}) for every t from the scheduler's betas, in float64 (abar_{-1} = 1). Shapes `(T,)`.

    Working from the betas in float64 keeps 1 - abar_t accurate at small t, where the float32 `alphas_cumprod` of
    diffusers' schedulers loses most of its digits.
    """
    betas = torch.as_tensor(betas, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return alphas_cumprod, torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])


def posterior_variance(betas: torch.Tensor) -> torch.Tensor:
    """Sigma_t = beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t); zero at t = 0. Shape `(T,)`, float64."""
    abar, abar_prev = cumulative_alphas(betas)
    return torch.as_tensor(betas, dtype=torch.float64) * (1.0 - abar_prev) / (1.0 - abar)


def shift_coefficients(betas: torch.Tensor, kind: str = "posterior") -> torch.Tensor:
    """The coefficient of G in the shifted noise prediction `eps_hat = eps_theta - coef_t * G`.

    Args:
        betas (`torch.Tensor` of shape `(T,)`): the training schedule's betas (`scheduler.betas`).
        kind (`str`, defaults to `"posterior"`):
            `"posterior"`: c_t = sqrt(alpha_t) (1 - abar_{t-1}) / sqrt(1 - abar_t), the coefficient G is trained with
            (zero at t = 0). `"sqrt_one_minus_alpha_bar"`: sqrt(1 - abar_t), what the official PDAE code uses in its
            DDIM sampler; it over-weights the shift by (1 - abar_t) / (sqrt(alpha_t) (1 - abar_{t-1})) and is offered
            only to compare with that code.

    Returns:
        `torch.Tensor` of shape `(T,)`, float64.
    """
    abar, abar_prev = cumulative_alphas(betas)
    if kind == "posterior":
        alphas = 1.0 - torch.as_tensor(betas, dtype=torch.float64)
        return alphas.sqrt() * (1.0 - abar_prev) / (1.0 - abar).sqrt()
    if kind == "sqrt_one_minus_alpha_bar":
        return (1.0 - abar).sqrt()
    raise ValueError(f"Unknown shift coefficient kind {kind!r}; choose one of {SHIFT_COEFFICIENT_KINDS}.")


def signal_to_noise_ratio(betas: torch.Tensor) -> torch.Tensor:
    """SNR_t = abar_t / (1 - abar_t). Shape `(T,)`, float64."""
    abar, _ = cumulative_alphas(betas)
    return abar / (1.0 - abar)


def loss_weights(betas: torch.Tensor, gamma: float = 0.1) -> torch.Tensor:
    """lambda_t = SNR_t^gamma / (1 + SNR_t) (paper eq. 9, gamma = 0.1 in the paper). Shape `(T,)`, float64."""
    snr = signal_to_noise_ratio(betas)
    return snr.pow(gamma) / (1.0 + snr)


def gather_per_sample(table: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Pick `table[t]` for each sample and shape it to broadcast against `like`.

    Args:
        table (`torch.Tensor` of shape `(T,)`): a per-timestep coefficient.
        timesteps (`torch.Tensor` of shape `(B,)` or `()`): integer training timesteps.
        like (`torch.Tensor` of shape `(B, ...)`): the tensor the result multiplies.

    Returns:
        `torch.Tensor` of shape `(B, 1, ..., 1)` (or `(1, 1, ..., 1)` for a scalar timestep) in `like`'s dtype.
    """
    timesteps = torch.as_tensor(timesteps, device=table.device).long().reshape(-1)
    values = table[timesteps].to(device=like.device, dtype=like.dtype)
    return values.reshape(-1, *([1] * (like.ndim - 1)))


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def noise_from_model_output(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    timesteps: torch.Tensor,
    betas: torch.Tensor,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """The noise prediction eps_theta(x_t, t) of a UNet that predicts eps, v or x_0, from the schedule's own abar_t.

    With x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps and v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022):

        "epsilon":       eps = output
        "v_prediction":  eps = sqrt(abar) v + sqrt(1 - abar) x_t
        "sample":        eps = (x_t - sqrt(abar) x0_hat) / sqrt(1 - abar)

    PDAE shifts a noise prediction, so every frozen DPM is first seen through this function (in training, inversion
    and sampling alike), and the shift stays exact whatever the DPM predicts.

    Args:
        model_output (`torch.Tensor` of shape `(B, C, H, W)`): the UNet's output at x_t.
        sample (`torch.Tensor` of shape `(B, C, H, W)`): x_t, the UNet's input.
        timesteps (`torch.Tensor` of shape `(B,)` or `()`): training timesteps.
        betas (`torch.Tensor` of shape `(T,)`): the training schedule's betas.
        prediction_type (`str`, defaults to `"epsilon"`): the scheduler config's `prediction_type`.

    Returns:
        `torch.Tensor` of shape `(B, C, H, W)` (the output itself for `"epsilon"`).
    """
    if prediction_type == "epsilon":
        return model_output
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"Unknown prediction_type {prediction_type!r}; PDAE serves {', '.join(PREDICTION_TYPES)}.")
    abar, _ = cumulative_alphas(torch.as_tensor(betas, device=sample.device))
    signal = gather_per_sample(abar.sqrt(), timesteps, model_output)
    noise_level = gather_per_sample((1.0 - abar).sqrt(), timesteps, model_output)
    if prediction_type == "v_prediction":
        return signal * model_output + noise_level * sample.to(model_output.dtype)
    return (sample.to(model_output.dtype) - signal * model_output) / noise_level


def shifted_noise_prediction(
    noise_pred: torch.Tensor, gradient: torch.Tensor, timesteps: torch.Tensor, shift_table: torch.Tensor
) -> torch.Tensor:
    """eps_hat = eps_theta - c_t * G.

    Args:
        noise_pred (`torch.Tensor` of shape `(B, C, H, W)`): eps_theta(x_t, t) of the frozen UNet.
        gradient (`torch.Tensor` of shape `(B, C, H, W)`): G(x_t, z, t).
        timesteps (`torch.Tensor` of shape `(B,)` or `()`): training timesteps.
        shift_table (`torch.Tensor` of shape `(T,)`): c_t from `shift_coefficients`.

    Returns:
        `torch.Tensor` of shape `(B, C, H, W)`.
    """
    return noise_pred - gather_per_sample(shift_table, timesteps, noise_pred) * gradient


def pdae_loss(
    noise: torch.Tensor,
    noise_pred: torch.Tensor,
    gradient: torch.Tensor,
    timesteps: torch.Tensor,
    betas: torch.Tensor,
    gamma: float = 0.1,
) -> torch.Tensor:
    """Per-sample PDAE loss lambda_t * ||eps - eps_hat(x_t, t, z)||^2 (paper eq. 9).

    The squared norm is averaged over pixels (a constant factor C*H*W below the sum), as diffusers' training scripts
    do for the noise-prediction loss.

    Args:
        noise (`torch.Tensor` of shape `(B, C, H, W)`): eps used to make x_t.
        noise_pred (`torch.Tensor` of shape `(B, C, H, W)`): eps_theta(x_t, t) of the frozen UNet.
        gradient (`torch.Tensor` of shape `(B, C, H, W)`): G(x_t, E(x_0), t).
        timesteps (`torch.Tensor` of shape `(B,)`): training timesteps of each sample.
        betas (`torch.Tensor` of shape `(T,)`): the training schedule's betas (`scheduler.betas`).
        gamma (`float`, defaults to 0.1): exponent of the SNR in lambda_t.

    Returns:
        `torch.Tensor` of shape `(B,)`, in float32 or the inputs' dtype if wider.
    """
    betas = torch.as_tensor(betas, device=noise.device)
    eps_hat = shifted_noise_prediction(noise_pred.float(), gradient.float(), timesteps, shift_coefficients(betas))
    return weighted_noise_loss(noise, eps_hat, timesteps, betas, gamma)


def weighted_noise_loss(
    noise: torch.Tensor, eps_hat: torch.Tensor, timesteps: torch.Tensor, betas: torch.Tensor, gamma: float = 0.1
) -> torch.Tensor:
    """lambda_t * ||eps - eps_hat||^2 per sample, averaged over pixels: [`pdae_loss`] given the shifted prediction.

    Args:
        noise (`torch.Tensor` of shape `(B, C, H, W)`): eps used to make x_t.
        eps_hat (`torch.Tensor` of shape `(B, C, H, W)`): the shifted noise prediction.
        timesteps (`torch.Tensor` of shape `(B,)`): training timesteps of each sample.
        betas (`torch.Tensor` of shape `(T,)`): the training schedule's betas.
        gamma (`float`, defaults to 0.1): exponent of the SNR in lambda_t.

    Returns:
        `torch.Tensor` of shape `(B,)`, in float32 or the inputs' dtype if wider.
    """
    betas = torch.as_tensor(betas, device=noise.device)
    squared_error = (noise.float() - eps_hat.float()).pow(2).mean(dim=tuple(range(1, noise.ndim)))
    weights = gather_per_sample(loss_weights(betas, gamma), timesteps, squared_error)
    return weights * squared_error


def predict_original_sample(sample: torch.Tensor, noise_pred: torch.Tensor, alpha_prod: torch.Tensor) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (DDIM paper eq. 12, "predicted x_0").

    `alpha_prod` is abar_t, a scalar or a tensor broadcastable to `sample`.
    """
    return (sample - (1.0 - alpha_prod) ** 0.5 * noise_pred) / alpha_prod**0.5


def ddim_step(
    sample: torch.Tensor,
    noise_pred: torch.Tensor,
    alpha_prod_from: torch.Tensor | float,
    alpha_prod_to: torch.Tensor | float,
    eta: float = 0.0,
    variance_noise: torch.Tensor | None = None,
    clip_sample_range: float | None = None,
) -> torch.Tensor:
    """One DDIM update (Song et al. 2021, eq. 12) from noise level abar_from to abar_to.

    With eta = 0 the update is deterministic and the same formula runs forwards (sampling, abar_to > abar_from) and
    backwards (inversion, abar_to < abar_from):

        x_to = sqrt(abar_to) * x0_hat + sqrt(1 - abar_to - sigma^2) * eps + sigma * noise
        sigma = eta * sqrt((1 - abar_to) / (1 - abar_from) * (1 - abar_from / abar_to))   (sampling only)

    Args:
        sample (`torch.Tensor` of shape `(B, C, H, W)`): x at abar_from.
        noise_pred (`torch.Tensor` of shape `(B, C, H, W)`): the (shifted) noise prediction at x.
        alpha_prod_from (`torch.Tensor` or `float`): abar of the noise level of `sample` (a float or a tensor
            broadcastable to it).
        alpha_prod_to (`torch.Tensor` or `float`): abar of the noise level to step to (likewise).
        eta (`float`, defaults to 0): DDIM's stochasticity; 0 for inversion.
        variance_noise (`torch.Tensor`, *optional*): standard normal noise, required when eta > 0.
        clip_sample_range (`float`, *optional*): clip x0_hat to [-r, r] (never during inversion).

    Returns:
        `torch.Tensor` of shape `(B, C, H, W)`: x at abar_to.
    """
    original = predict_original_sample(sample, noise_pred, alpha_prod_from)
    if clip_sample_range is not None:
        original = original.clamp(-clip_sample_range, clip_sample_range)
        # Keep the update consistent with the clipped x0_hat, as diffusers' DDIMScheduler does.
        noise_pred = (sample - alpha_prod_from**0.5 * original) / (1.0 - alpha_prod_from) ** 0.5
    if eta == 0:
        return alpha_prod_to**0.5 * original + (1.0 - alpha_prod_to) ** 0.5 * noise_pred
    if variance_noise is None:
        raise ValueError("ddim_step with eta > 0 needs variance_noise.")
    variance = (1.0 - alpha_prod_to) / (1.0 - alpha_prod_from) * (1.0 - alpha_prod_from / alpha_prod_to)
    sigma = eta * variance**0.5
    direction = (1.0 - alpha_prod_to - sigma**2) ** 0.5 * noise_pred
    return alpha_prod_to**0.5 * original + direction + sigma * variance_noise


def ddim_transitions(
    scheduler, device: torch.device | str | None = None
) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """The steps of a DDIM schedule as `(t, abar_t, abar_next)`, in decoding order (x_T first).

    `abar_next` belongs to the *next entry of `scheduler.timesteps`* (and is `final_alpha_cumprod` after the last),
    not to `t - T // N` as `DDIMScheduler.step` assumes, which is wrong for `timestep_spacing="linspace"` (diffusers
    issue 12633). Every DDIM loop in the library walks these transitions: decoding goes from `abar_t` to
    `abar_next` with the noise predicted at `t`; inversion walks them in reverse, from `abar_next` to `abar_t`, with
    the noise predicted at `t` too, so it is the exact mirror of decoding.

    Args:
        scheduler (`DDIMScheduler`): after `set_timesteps` (anything with `timesteps`, `alphas_cumprod` and
            `final_alpha_cumprod` works).
        device (`torch.device` or `str`, *optional*): where the abar values should live (the scheduler's own device
            by default).

    Returns:
        `list[tuple[int, torch.Tensor, torch.Tensor]]`: one `(t, abar_t, abar_next)` per timestep (0-dim abar).
    """
    alphas_cumprod = scheduler.alphas_cumprod.to(device)
    timesteps = [int(t) for t in scheduler.timesteps]
    following = [alphas_cumprod[t] for t in timesteps[1:]] + [
        torch.as_tensor(scheduler.final_alpha_cumprod).to(device)
    ]
    return [(t, alphas_cumprod[t], alpha_next) for t, alpha_next in zip(timesteps, following, strict=True)]


def posterior_mean(
    original_sample: torch.Tensor, sample: torch.Tensor, timesteps: torch.Tensor, betas: torch.Tensor
) -> torch.Tensor:
    """mu~(x_t, x_0) = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t.

    With x_0 replaced by a prediction x0_hat this is the model's posterior mean mu_theta (Ho et al. 2020, eq. 7).
    Shapes: `(B, C, H, W)` in and out; `timesteps` of shape `(B,)`.
    """
    betas = torch.as_tensor(betas, dtype=torch.float64, device=sample.device)
    abar, abar_prev = cumulative_alphas(betas)
    coef_original = abar_prev.sqrt() * betas / (1.0 - abar)
    coef_sample = (1.0 - betas).sqrt() * (1.0 - abar_prev) / (1.0 - abar)
    return (
        gather_per_sample(coef_original, timesteps, sample) * original_sample
        + gather_per_sample(coef_sample, timesteps, sample) * sample
    )
