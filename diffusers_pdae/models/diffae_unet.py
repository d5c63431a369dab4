"""A Diff-AE-style conditional UNet eps_theta(x_t, t, z): the baseline PDAE is compared against.

Diff-AE (Preechakul et al., CVPR 2022) trains a whole conditional DPM jointly with its semantic encoder, from scratch,
on the plain noise loss ||eps - eps_theta(x_t, t, Enc(x_0))||^2; the code reaches every resnet block through an
adaptive group norm. PDAE keeps a pre-trained DPM frozen and learns only the encoder and a gradient estimator.
[`DiffAEUNet2DModel.from_unet_config`] builds the baseline with exactly the layout of a given `UNet2DModel`, so the
two methods can be compared at the same network size (see `benchmarks/sample_efficiency.py`).
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import FrozenDict, register_to_config
from diffusers.models.activations import get_activation
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

from .diffae_blocks import DiffAEDownBlock, DiffAEMidBlock
from .frozen_denoiser import SUPPORTED_DOWN_BLOCKS, SUPPORTED_UP_BLOCKS
from .gradient_estimator_blocks import GradientEstimatorUpBlock

# `UNet2DModel` config entries that define the layout: the ones `from_unet_config` copies to mirror a UNet.
MIRRORED_UNET_CONFIG_KEYS = (
    "sample_size",
    "in_channels",
    "out_channels",
    "flip_sin_to_cos",
    "freq_shift",
    "time_embedding_dim",
    "down_block_types",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "mid_block_scale_factor",
    "downsample_padding",
    "downsample_type",
    "upsample_type",
    "dropout",
    "act_fn",
    "attention_head_dim",
    "norm_num_groups",
    "attn_norm_num_groups",
    "norm_eps",
    "resnet_time_scale_shift",
    "add_attention",
)

# `UNet2DModel` options this model does not have, with the only value it can mirror.
UNSUPPORTED_UNET_OPTIONS = {
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "mid_block_type": "UNetMidBlock2D",
    "class_embed_type": None,
    "num_class_embeds": None,
}


class DiffAEUNet2DModel(ModelMixin, ConfigMixin):
    r"""
    A `UNet2DModel`-shaped noise predictor conditioned on a code z: eps_theta(x_t, t, z) (Diff-AE's conditional DPM).

    The layout, parameter names and time embedding are those of diffusers' `UNet2DModel` (positional time embedding,
    `DownBlock2D` / `AttnDownBlock2D` down blocks, a `UNetMidBlock2D`, `UpBlock2D` / `AttnUpBlock2D` up blocks). The
    code is embedded once, `zemb = z_embedding(z)`, and every resnet block, down, mid and up, is a
    [`ZShiftResnetBlock2D`] that modulates its second group norm with it: h = (1 + z_s) (GN(h) ...) + z_b (Diff-AE's
    adaptive group norm). Trained from scratch with the encoder on the plain noise loss
    ([`~diffusers_pdae.training.diffae_objective.diffae_training_loss`]), it is the baseline PDAE's sample efficiency
    is measured against. Build one of the same size as a pre-trained DPM with [`DiffAEUNet2DModel.from_unet_config`].

    All arguments are keyword-only. Those shared with `UNet2DModel` mean the same there:

    Parameters:
        latent_dim (`int`, defaults to 64): width of the code z.
        z_embed_dim (`int`, *optional*): width of the code embedding every resnet block sees (defaults to the time
            embedding's width).
        sample_size (`int`, *optional*): image height and width.
        in_channels (`int`, defaults to 3): image channels of x_t.
        out_channels (`int`, defaults to 3): channels of the noise prediction.
        flip_sin_to_cos (`bool`, defaults to `True`): of the sinusoidal timestep projection.
        freq_shift (`int`, defaults to 0): of the sinusoidal timestep projection.
        time_embedding_dim (`int`, *optional*): width of the time embedding (defaults to `4 * block_out_channels[0]`).
        down_block_types (`tuple[str]`): `"DownBlock2D"` or `"AttnDownBlock2D"` per resolution.
        up_block_types (`tuple[str]`): `"UpBlock2D"` or `"AttnUpBlock2D"` per resolution.
        block_out_channels (`tuple[int]`): channels per resolution.
        layers_per_block (`int`, defaults to 2): resnets per down block (up blocks have one more).
        mid_block_scale_factor (`float`, defaults to 1): the mid block's output scale factor.
        downsample_padding (`int`, defaults to 1): padding of the strided downsampling convolution.
        downsample_type (`str`, defaults to `"conv"`): `"conv"` or `"resnet"` (attention blocks only, as in diffusers).
        upsample_type (`str`, defaults to `"conv"`): `"conv"` or `"resnet"` (attention blocks only, as in diffusers).
        dropout (`float`, defaults to 0.0): in every resnet block.
        act_fn (`str`, defaults to `"silu"`): activation.
        attention_head_dim (`int`, *optional*): width of one attention head (defaults to the block's channels).
        norm_num_groups (`int`, defaults to 32): groups of every GroupNorm.
        attn_norm_num_groups (`int`, *optional*): groups of the mid block attention's GroupNorm.
        norm_eps (`float`, defaults to 1e-5): epsilon of every GroupNorm.
        resnet_time_scale_shift (`str`, defaults to `"default"`): `"default"` (additive) or `"scale_shift"`.
        add_attention (`bool`, defaults to `True`): self-attention in the mid block.
    """

    @register_to_config
    def __init__(
        self,
        *,
        latent_dim: int = 64,
        z_embed_dim: int | None = None,
        sample_size: int | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embedding_dim: int | None = None,
        down_block_types: tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types: tuple[str, ...] = ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        block_out_channels: tuple[int, ...] = (224, 448, 672, 896),
        layers_per_block: int = 2,
        mid_block_scale_factor: float = 1,
        downsample_padding: int = 1,
        downsample_type: str = "conv",
        upsample_type: str = "conv",
        dropout: float = 0.0,
        act_fn: str = "silu",
        attention_head_dim: int | None = 8,
        norm_num_groups: int = 32,
        attn_norm_num_groups: int | None = None,
        norm_eps: float = 1e-5,
        resnet_time_scale_shift: str = "default",
        add_attention: bool = True,
    ):
        super().__init__()
        _check_layout(block_out_channels, down_block_types, up_block_types)
        time_embed_dim = time_embedding_dim or 4 * block_out_channels[0]
        z_embed_dim = z_embed_dim or time_embed_dim
        block_kwargs = {
            "temb_channels": time_embed_dim,
            "z_channels": z_embed_dim,
            "resnet_eps": norm_eps,
            "resnet_groups": norm_num_groups,
            "resnet_act_fn": act_fn,
            "resnet_time_scale_shift": resnet_time_scale_shift,
            "dropout": dropout,
        }

        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim)
        self.z_embedding = nn.Linear(latent_dim, z_embed_dim)

        # diffusers' DownBlock2D and UpBlock2D always resample with a convolution: only its attention blocks follow
        # downsample_type and upsample_type.
        self.down_blocks = nn.ModuleList()
        output_channel = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            input_channel, output_channel = output_channel, block_out_channels[i]
            self.down_blocks.append(
                DiffAEDownBlock(
                    in_channels=input_channel,
                    out_channels=output_channel,
                    num_layers=layers_per_block,
                    add_attention=block_type == "AttnDownBlock2D",
                    add_downsample=i < len(block_out_channels) - 1,
                    downsample_type=downsample_type if block_type == "AttnDownBlock2D" else "conv",
                    downsample_padding=downsample_padding,
                    attention_head_dim=attention_head_dim or output_channel,
                    **block_kwargs,
                )
            )

        if attn_norm_num_groups is None and resnet_time_scale_shift == "default":
            attn_norm_num_groups = norm_num_groups  # as UNetMidBlock2D decides it
        self.mid_block = DiffAEMidBlock(
            in_channels=block_out_channels[-1],
            add_attention=add_attention,
            attn_groups=attn_norm_num_groups,
            output_scale_factor=mid_block_scale_factor,
            attention_head_dim=attention_head_dim or block_out_channels[-1],
            **block_kwargs,
        )

        self.up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(block_out_channels))
        output_channel = reversed_channels[0]
        for i, block_type in enumerate(up_block_types):
            prev_output_channel, output_channel = output_channel, reversed_channels[i]
            self.up_blocks.append(
                GradientEstimatorUpBlock(
                    in_channels=reversed_channels[min(i + 1, len(block_out_channels) - 1)],
                    prev_output_channel=prev_output_channel,
                    out_channels=output_channel,
                    num_layers=layers_per_block + 1,
                    add_attention=block_type == "AttnUpBlock2D",
                    add_upsample=i < len(block_out_channels) - 1,
                    upsample_type=upsample_type if block_type == "AttnUpBlock2D" else "conv",
                    attention_head_dim=attention_head_dim or output_channel,
                    **block_kwargs,
                )
            )

        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[0], num_groups=norm_num_groups, eps=norm_eps)
        self.conv_act = get_activation(act_fn)
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, kernel_size=3, padding=1)

    @classmethod
    def from_unet_config(
        cls, unet_config_or_model: ModelMixin | dict | FrozenDict, latent_dim: int = 64, **overrides
    ) -> DiffAEUNet2DModel:
        """A freshly initialised baseline with exactly the layout of a `UNet2DModel` (its config or the model).

        Its parameters are the UNet's, under the same names, plus the code embedding `z_embedding` and one
        `z_proj` per resnet block; so `model.load_state_dict(unet.state_dict(), strict=False)` fills everything else.

        Args:
            unet_config_or_model (`UNet2DModel`, `dict` or `FrozenDict`): the DPM whose size the baseline takes.
            latent_dim (`int`, defaults to 64): width of the code z.
            overrides (`dict[str, Any]`, *optional*): other config entries to change (e.g. `z_embed_dim`).

        Raises:
            `ValueError`: if the UNet uses an option this model cannot mirror (a class embedding, a non-positional
                time embedding, input centring, no mid block, other block types).
        """
        config = unet_config_or_model.config if isinstance(unet_config_or_model, ModelMixin) else unet_config_or_model
        unsupported = [
            f"{key}={config[key]!r}"
            for key, value in UNSUPPORTED_UNET_OPTIONS.items()
            if key in config and config[key] != value
        ]
        if unsupported:
            raise ValueError(
                f"DiffAEUNet2DModel cannot mirror a UNet2DModel with {', '.join(unsupported)}; it supports "
                f"{', '.join(f'{key}={value!r}' for key, value in UNSUPPORTED_UNET_OPTIONS.items())}."
            )
        layout = {key: config[key] for key in MIRRORED_UNET_CONFIG_KEYS if key in config}
        return cls(**{**layout, "latent_dim": latent_dim, **overrides})

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        z: torch.Tensor,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple:
        r"""
        Args:
            sample (`torch.Tensor` of shape `(B, in_channels, H, W)`): x_t.
            timestep (`torch.Tensor` of shape `(B,)` or `()`, or `int`): training timesteps.
            z (`torch.Tensor` of shape `(B, latent_dim)`): codes of the clean images from the encoder.
            return_dict (`bool`, defaults to `True`): return a diffusers `UNet2DOutput` instead of a tuple.

        Returns:
            `UNet2DOutput` with `sample` of shape `(B, out_channels, H, W)` (the noise prediction), or `(sample,)`.

        Raises:
            `ValueError`: if `z` is not `(B, latent_dim)` for the batch of `sample`.
        """
        if z.ndim != 2 or z.shape != (sample.shape[0], self.config.latent_dim):
            raise ValueError(
                f"z must have shape (batch_size, latent_dim) = ({sample.shape[0]}, {self.config.latent_dim}) for a "
                f"batch of {sample.shape[0]} samples, got {tuple(z.shape)}; it should come from the encoder trained "
                "with this model."
            )
        temb = self.time_embedding(self.time_proj(self._batch_timesteps(timestep, sample)).to(self.dtype))
        zemb = self.z_embedding(z.to(self.dtype))

        sample = self.conv_in(sample)
        skips = (sample,)
        for block in self.down_blocks:
            sample, block_skips = block(sample, temb, zemb)
            skips += block_skips
        sample = self.mid_block(sample, temb, zemb)
        for block in self.up_blocks:
            block_skips, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
            sample = block(sample, block_skips, temb, zemb)
        sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))

        if not return_dict:
            return (sample,)
        return UNet2DOutput(sample=sample)

    @staticmethod
    def _batch_timesteps(timestep: torch.Tensor | int, sample: torch.Tensor) -> torch.Tensor:
        """One timestep per sample, shape `(B,)`, from an int, a 0-dim tensor or a `(B,)` tensor."""
        timesteps = torch.as_tensor(timestep, device=sample.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(sample.shape[0])
        return timesteps


def _check_layout(
    block_out_channels: tuple[int, ...], down_block_types: tuple[str, ...], up_block_types: tuple[str, ...]
) -> None:
    """Raise a `ValueError` unless there is one supported down and up block per entry of `block_out_channels`."""
    if not len(block_out_channels) == len(down_block_types) == len(up_block_types):
        raise ValueError(
            f"block_out_channels {tuple(block_out_channels)}, down_block_types {tuple(down_block_types)} and "
            f"up_block_types {tuple(up_block_types)} must have the same length (one block per resolution)."
        )
    for kind, types, supported in (
        ("down", down_block_types, SUPPORTED_DOWN_BLOCKS),
        ("up", up_block_types, SUPPORTED_UP_BLOCKS),
    ):
        for block_type in types:
            if block_type not in supported:
                raise ValueError(f"Unsupported {kind} block {block_type!r}; supported: {supported}.")
