"""`LatentSampler`: a small diffusion model over codes z, for unconditional generation (sample z, then decode it)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.activations import get_activation
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class LatentSamplerOutput(BaseOutput):
    """
    Args:
        sample (`torch.Tensor` of shape `(batch_size, latent_dim)`): the predicted noise of the normalised codes.
    """

    sample: torch.Tensor


class TimeModulatedLinear(nn.Module):
    """Linear -> times (1 + the time embedding's projection) -> LayerNorm -> activation (Diff-AE's MLP layer)."""

    def __init__(self, in_features: int, out_features: int, time_embed_dim: int, act_fn: str, dropout: float):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.time_proj = nn.Linear(time_embed_dim, out_features)
        self.norm = nn.LayerNorm(out_features)
        self.act = get_activation(act_fn)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        hidden = self.linear(hidden) * (1 + self.time_proj(time_embedding))
        return self.dropout(self.act(self.norm(hidden)))


class LatentSampler(ModelMixin, ConfigMixin):
    r"""
    A noise predictor over normalised codes: an MLP whose every hidden layer sees the noisy code again (a skip
    connection from the input, as in Diff-AE's latent DPM) and is modulated by the timestep embedding.

    Codes are normalised with the statistics of the codes it was trained on (`code_mean`, `code_std`, saved with the
    weights): the model denoises `(z - code_mean) / code_std`; [`~LatentSampler.denormalize`] maps a sample back.

    Parameters:
        latent_dim (`int`, defaults to 64): width of the codes z.
        hidden_dim (`int`, defaults to 512): width of the hidden layers.
        num_layers (`int`, defaults to 6): hidden layers (each followed by the skip concatenation of the input).
        time_embed_dim (`int`, defaults to 256): width of the timestep embedding.
        act_fn (`str`, defaults to `"silu"`): activation.
        dropout (`float`, defaults to 0.0): dropout after each hidden layer.
    """

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 64,
        hidden_dim: int = 512,
        num_layers: int = 6,
        time_embed_dim: int = 256,
        act_fn: str = "silu",
        dropout: float = 0.0,
    ):
        super().__init__()
        if min(latent_dim, hidden_dim, num_layers, time_embed_dim) < 1:
            raise ValueError("latent_dim, hidden_dim, num_layers and time_embed_dim must all be positive.")
        self.time_proj = Timesteps(time_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(time_embed_dim, time_embed_dim, act_fn=act_fn)
        self.layers = nn.ModuleList(
            TimeModulatedLinear(
                latent_dim if index == 0 else hidden_dim + latent_dim, hidden_dim, time_embed_dim, act_fn, dropout
            )
            for index in range(num_layers)
        )
        self.proj_out = nn.Linear(hidden_dim + latent_dim, latent_dim)
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_std", torch.ones(latent_dim))

    @torch.no_grad()
    def set_code_statistics(self, codes: torch.Tensor) -> None:
        """Normalise with the per-dimension mean and standard deviation of `codes` `(N, latent_dim)`, N >= 2."""
        if codes.ndim != 2 or codes.shape[1] != self.config.latent_dim or codes.shape[0] < 2:
            raise ValueError(f"Expected codes of shape (N >= 2, {self.config.latent_dim}), got {tuple(codes.shape)}.")
        if not torch.isfinite(codes).all():
            raise ValueError("The codes contain NaN or inf; check the encoder and the images.")
        codes = codes.double()
        self.code_mean.copy_(codes.mean(dim=0))
        self.code_std.copy_(codes.std(dim=0).clamp_min(1e-6))

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Codes `(B, latent_dim)` -> the normalised space the model denoises."""
        return (z - self.code_mean.to(z.dtype)) / self.code_std.to(z.dtype)

    def denormalize(self, sample: torch.Tensor) -> torch.Tensor:
        """Normalised samples `(B, latent_dim)` -> codes for the gradient estimator."""
        return sample * self.code_std.to(sample.dtype) + self.code_mean.to(sample.dtype)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float | int, return_dict: bool = True
    ) -> LatentSamplerOutput | tuple:
        """
        Args:
            sample (`torch.Tensor` of shape `(B, latent_dim)`): noisy normalised codes.
            timestep (`torch.Tensor` of shape `(B,)` or `()`, or a number): training timesteps.
            return_dict (`bool`, defaults to `True`): return a [`LatentSamplerOutput`] instead of a tuple.

        Returns:
            [`LatentSamplerOutput`] with the predicted noise `(B, latent_dim)`, or `(noise,)`.
        """
        if sample.ndim != 2 or sample.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"LatentSampler expects codes of shape (batch_size, {self.config.latent_dim}), got "
                f"{tuple(sample.shape)}."
            )
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        time_embedding = self.time_embedding(self.time_proj(timesteps).to(self.dtype))
        sample = sample.to(self.dtype)
        hidden = sample
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden if index == 0 else torch.cat([hidden, sample], dim=1), time_embedding)
        noise = self.proj_out(torch.cat([hidden, sample], dim=1))
        return LatentSamplerOutput(sample=noise) if return_dict else (noise,)
