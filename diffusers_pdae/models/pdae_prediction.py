"""PDAE's noise prediction, composed once: a frozen pass with features, its output as a noise prediction, G, the
shift. `PDAEPipeline.predict_noise`, the training objective and the benchmarks all call [`pdae_noise_prediction`]."""

from __future__ import annotations

import torch

from ..pdae_math import noise_from_model_output, shift_coefficients, shifted_noise_prediction
from .frozen_denoiser import FrozenDenoiser


def pdae_noise_prediction(
    denoiser: FrozenDenoiser,
    gradient_estimator: torch.nn.Module,
    sample: torch.Tensor,
    timesteps: torch.Tensor,
    z: torch.Tensor | None,
    betas: torch.Tensor,
    prediction_type: str = "epsilon",
    shift_coefficient: str = "posterior",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """eps_theta(x_t, t) when `z` is None, else eps_hat = eps_theta(x_t, t) - c_t G(x_t, z, t).

    The frozen model runs once, without gradient, and yields both its prediction (seen as a noise prediction
    whatever it predicts, see [`~pdae_math.noise_from_model_output`]) and G's features; gradients reach only G (and,
    through z, the encoder). `gradient_estimator` may be wrapped by `accelerator.prepare` (DDP): it is called.

    Args:
        denoiser ([`FrozenDenoiser`]): the frozen model.
        gradient_estimator (`GradientEstimator`): G; unused when `z` is None.
        sample (`torch.Tensor` of shape `(B, C, H, W)`): x_t (given to the model in its dtype).
        timesteps (`torch.Tensor` of shape `(B,)`): training timesteps.
        z (`torch.Tensor` of shape `(B, latent_dim)`, *optional*): codes.
        betas (`torch.Tensor` of shape `(T,)`): the training schedule's betas.
        prediction_type (`str`, defaults to `"epsilon"`): what the model predicts (the scheduler config's).
        shift_coefficient (`str`, defaults to `"posterior"`): c_t as trained (see [`~pdae_math.shift_coefficients`]).
        dtype (`torch.dtype`, *optional*): compute the noise and the shift in this dtype (training: float32) rather
            than the model's.

    Returns:
        `torch.Tensor` of shape `(B, C, H, W)`.
    """
    with torch.no_grad():
        model_input = sample.to(denoiser.dtype)
        if z is None:
            model_output, frozen = denoiser(model_input, timesteps), None
        else:
            frozen = denoiser.forward_with_features(model_input, timesteps)
            model_output = frozen.model_output
    model_output = model_output if dtype is None else model_output.to(dtype)
    noise_pred = noise_from_model_output(model_output, sample, timesteps, betas, prediction_type)
    if z is None:
        return noise_pred
    gradient = gradient_estimator(frozen.features, z).sample
    table = shift_coefficients(betas, shift_coefficient)
    return shifted_noise_prediction(noise_pred, gradient.to(noise_pred.dtype), timesteps, table)
