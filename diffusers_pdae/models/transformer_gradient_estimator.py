"""PDAE's gradient estimator for a diffusion transformer: G_psi(x_t, z, t) as a few transformer blocks over the frozen
model's token features."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.normalization import AdaLayerNormZero
from diffusers.schedulers import SchedulerMixin
from torch import nn

from .dit_denoiser import TokenFeatures
from .frozen_denoiser import FrozenDenoiser, frozen_denoiser
from .gradient_estimator import GradientEstimatorOutput, check_schedule_against, noise_schedule_of

# Config entries a TransformerGradientEstimator shares with its frozen transformer's layout (`from_denoiser` copies
# them, `check_compatible` requires them equal).
TRANSFORMER_LAYOUT_KEYS = ("sample_size", "patch_size", "out_channels", "feature_dim", "num_feature_layers")


class TransformerGBlock(nn.Module):
    """A DiT block conditioned on one embedding `c` (t and z) by adaLN-Zero: self-attention and an MLP over tokens."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = AdaLayerNormZero(hidden_size)
        self.attn = Attention(query_dim=hidden_size, heads=num_heads, dim_head=hidden_size // num_heads, bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(hidden_size, mult=mlp_ratio, activation_fn="gelu-approximate")

    def forward(self, hidden_states: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        """`(B, N, hidden_size)` tokens and `(B, hidden_size)` conditioning -> `(B, N, hidden_size)`."""
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(hidden_states, emb=conditioning)
        hidden_states = hidden_states + gate_msa[:, None] * self.attn(normed)
        normed = self.norm2(hidden_states) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        return hidden_states + gate_mlp[:, None] * self.ff(normed)


class TransformerGradientEstimator(ModelMixin, ConfigMixin):
    r"""
    PDAE's gradient estimator for a frozen diffusion transformer (a DiT), which has no decoder half to mirror.

    It reads the frozen model's token features at chosen depths (a [`TokenFeatures`]: the hidden states after the
    blocks `feature_layers`), each layer-normed and projected to G's width and summed, runs `num_layers` transformer
    blocks conditioned on t and z by adaLN-Zero (as DiT conditions on t and y: `c = W_t temb + W_z z`, with `temb` the
    frozen model's embedding of the timestep and the null class), and a final adaLN layer, zero-initialised, whose
    patches are put back into the latent shape. So G = 0 at the start and the shifted prediction is the frozen
    model's. Nothing here is specific to DiT beyond tokens and an embedding: it fits any transformer denoiser whose
    adapter yields `TokenFeatures`. Build it with [`TransformerGradientEstimator.from_denoiser`].

    Parameters:
        latent_dim (`int`, defaults to 64): width of the code z.
        sample_size (`int`, defaults to 32): the latent height and width.
        patch_size (`int`, defaults to 2): the frozen model's patch size.
        out_channels (`int`, defaults to 4): the latent channels (the noise half of a learned-sigma output).
        feature_dim (`int`, defaults to 1152): the frozen model's token width.
        num_feature_layers (`int`, defaults to 28): the frozen model's depth (checked against it).
        feature_layers (`tuple[int]`, *optional*): the blocks whose output G reads (defaults to four, evenly spaced,
            the last included).
        hidden_size (`int`, *optional*): G's width (defaults to `feature_dim`).
        num_layers (`int`, defaults to 4): G's blocks.
        num_attention_heads (`int`, defaults to 8): heads of each block (must divide `hidden_size`).
        train_noise_schedule (`dict`, *optional*): the noise schedule G was trained with (as `GradientEstimator`'s).
        unet_weights_digest (`str`, *optional*): sha256 of the frozen model's weights, written when a pipeline is
            saved (the name is the UNet G's, kept for one check of every folder).
        autoencoder_weights_digest (`str`, *optional*), autoencoder_scaling_factor (`float`, *optional*): the
            autoencoder's weights digest and `scaling_factor`, written at every save and checked at every load, as
            on `GradientEstimator`.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 64,
        sample_size: int = 32,
        patch_size: int = 2,
        out_channels: int = 4,
        feature_dim: int = 1152,
        num_feature_layers: int = 28,
        feature_layers: tuple[int, ...] | None = None,
        hidden_size: int | None = None,
        num_layers: int = 4,
        num_attention_heads: int = 8,
        train_noise_schedule: dict | None = None,
        unet_weights_digest: str | None = None,
        autoencoder_weights_digest: str | None = None,
        autoencoder_scaling_factor: float | None = None,
    ):
        super().__init__()
        feature_layers = tuple(feature_layers or default_feature_layers(num_feature_layers))
        hidden_size = hidden_size or feature_dim
        check_transformer_layout(num_feature_layers, feature_layers, hidden_size, num_attention_heads, sample_size,
                                 patch_size)  # fmt: skip
        self.register_to_config(feature_layers=feature_layers, hidden_size=hidden_size)  # the defaults, resolved
        self.feature_layers = feature_layers
        self.feature_norms = nn.ModuleList(
            nn.LayerNorm(feature_dim, elementwise_affine=False, eps=1e-6) for _ in feature_layers
        )
        self.feature_proj = nn.ModuleList(nn.Linear(feature_dim, hidden_size) for _ in feature_layers)
        self.time_embedding = nn.Sequential(nn.SiLU(), nn.Linear(feature_dim, hidden_size))
        self.z_embedding = nn.Linear(latent_dim, hidden_size)
        self.blocks = nn.ModuleList(TransformerGBlock(hidden_size, num_attention_heads) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.modulation_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.proj_out = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        self.gradient_checkpointing = False

    @classmethod
    def from_denoiser(
        cls,
        denoiser: FrozenDenoiser | ModelMixin,
        latent_dim: int = 64,
        warm_start: bool = False,
        noise_scheduler: SchedulerMixin | None = None,
        width_multiplier: float = 1.0,
        **kwargs,
    ) -> TransformerGradientEstimator:
        """A G for a frozen transformer: its layout copied, `hidden_size` its token width times `width_multiplier`
        (rounded to a multiple of the heads), `kwargs` overriding the rest (`num_layers`, `feature_layers`, ...).

        Raises:
            `ValueError`: for `warm_start` (a DiT has no decoder half to copy) or a layout that cannot be built.
        """
        denoiser = frozen_denoiser(denoiser)
        if warm_start:
            denoiser.decoder_weights()  # raises, naming why
        config = denoiser.gradient_estimator_layout()
        heads = kwargs.get("num_attention_heads", 8)
        config["hidden_size"] = max(heads, heads * round(config["feature_dim"] * width_multiplier / heads))
        if noise_scheduler is not None:
            config["train_noise_schedule"] = noise_schedule_of(noise_scheduler)
        return cls(latent_dim=latent_dim, **{**config, **kwargs})

    def check_compatible(self, denoiser: FrozenDenoiser | ModelMixin) -> None:
        """Raise a `ValueError` if this estimator was not built for the frozen transformer's layout."""
        denoiser = frozen_denoiser(denoiser)
        if denoiser.feature_kind != "tokens":
            raise ValueError(
                f"A TransformerGradientEstimator reads a diffusion transformer's tokens; the frozen model is a "
                f"{type(denoiser.model).__name__}: build G with GradientEstimator.from_denoiser for it."
            )
        layout = denoiser.gradient_estimator_layout()
        mismatches = [
            f"{key}: transformer {layout[key]!r} vs gradient_estimator {self.config[key]!r}"
            for key in TRANSFORMER_LAYOUT_KEYS
            if layout[key] != self.config[key]
        ]
        if mismatches:
            raise ValueError(
                "The gradient estimator does not fit the frozen transformer (" + "; ".join(mismatches) + "). Build "
                "one with TransformerGradientEstimator.from_denoiser and train it on this model."
            )

    def check_schedule(self, scheduler: SchedulerMixin) -> None:
        """Raise a `ValueError` naming both schedules if `scheduler` is not the noise schedule G was trained with."""
        check_schedule_against(self.config.get("train_noise_schedule"), scheduler)

    def forward(self, features: TokenFeatures, z: torch.Tensor, return_dict: bool = True):
        r"""
        Args:
            features ([`TokenFeatures`]): the frozen transformer's pass over x_t (its tokens after every block and
                its conditioning embedding).
            z (`torch.Tensor` of shape `(B, latent_dim)`): codes from the encoder.
            return_dict (`bool`, defaults to `True`): return a [`GradientEstimatorOutput`] instead of a tuple.

        Returns:
            [`GradientEstimatorOutput`] with `sample` of shape `(B, out_channels, sample_size, sample_size)`.
        """
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"z must have shape (batch_size, {self.config.latent_dim}), got {tuple(z.shape)}; it should come from "
                "the PDAEEncoder trained with this gradient estimator."
            )
        if len(features.tokens) != self.config.num_feature_layers:
            raise ValueError(
                f"{len(features.tokens)} token maps came from the frozen model, which this gradient estimator expects "
                f"to have {self.config.num_feature_layers} blocks."
            )
        hidden_states = sum(
            proj(norm(features.tokens[layer].to(self.dtype)))
            for layer, norm, proj in zip(self.feature_layers, self.feature_norms, self.feature_proj, strict=True)
        )
        conditioning = self.time_embedding(features.conditioning.to(self.dtype)) + self.z_embedding(z.to(self.dtype))
        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(block, hidden_states, conditioning)
            else:
                hidden_states = block(hidden_states, conditioning)
        shift, scale = self.modulation_out(conditioning).chunk(2, dim=1)
        hidden_states = self.norm_out(hidden_states) * (1 + scale[:, None]) + shift[:, None]
        sample = self.unpatchify(self.proj_out(hidden_states))
        return GradientEstimatorOutput(sample=sample) if return_dict else (sample,)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """`(B, N, p * p * C)` patches -> `(B, C, H, W)`, in DiT's order."""
        size, channels = self.config.patch_size, self.config.out_channels
        side = self.config.sample_size // size
        patches = patches.reshape(-1, side, side, size, size, channels)
        return torch.einsum("nhwpqc->nchpwq", patches).reshape(-1, channels, side * size, side * size)


def default_feature_layers(num_feature_layers: int, count: int = 4) -> tuple[int, ...]:
    """`count` block indices evenly spaced over the depth, the last block included (e.g. 6, 13, 20, 27 of 28)."""
    count = min(count, num_feature_layers)
    return tuple(sorted({round((i + 1) * num_feature_layers / count) - 1 for i in range(count)}))


def check_transformer_layout(
    num_feature_layers: int,
    feature_layers: tuple[int, ...],
    hidden_size: int,
    num_attention_heads: int,
    sample_size: int,
    patch_size: int,
) -> None:
    """Raise a `ValueError` naming a setting of a TransformerGradientEstimator that cannot be built."""
    if not feature_layers or any(not 0 <= layer < num_feature_layers for layer in feature_layers):
        raise ValueError(
            f"feature_layers must name blocks of the frozen transformer, 0 to {num_feature_layers - 1}; got "
            f"{list(feature_layers)}."
        )
    if hidden_size % num_attention_heads:
        raise ValueError(f"hidden_size {hidden_size} must be divisible by num_attention_heads {num_attention_heads}.")
    if sample_size % patch_size:
        raise ValueError(f"sample_size {sample_size} must be divisible by patch_size {patch_size}.")
