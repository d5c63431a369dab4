"""A residual encoder for PDAE, shaped like the encoder half of a U-Net (as in the official PDAE and Diff-AE code)."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.activations import get_activation
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block
from torch import nn

from .encoder import PDAEEncoderMixin
from .frozen_denoiser import SUPPORTED_DOWN_BLOCKS

# UNet2DModel config entries that fix the shape of the down half and its mid block.
UNET_DOWN_HALF_KEYS = (
    "in_channels",
    "sample_size",
    "down_block_types",
    "block_out_channels",
    "layers_per_block",
    "norm_num_groups",
    "norm_eps",
    "act_fn",
    "attention_head_dim",
    "downsample_padding",
    "add_attention",
)


class PDAEResidualEncoder(PDAEEncoderMixin, ModelMixin, ConfigMixin):
    r"""
    An encoder built from diffusers' own U-Net blocks: a 3x3 input convolution, down blocks of `ResnetBlock2D`s (with
    self-attention in `AttnDownBlock2D`s) that halve the resolution between levels, a `UNetMidBlock2D`, then
    GroupNorm -> activation -> global average pooling -> a linear projection to z. No block takes a time embedding.

    Build one shaped like a pre-trained UNet's down half with [`PDAEResidualEncoder.from_unet`], optionally
    initialised from its weights.

    Parameters:
        in_channels (`int`, defaults to 3): image channels.
        sample_size (`int`, defaults to 32): image height and width.
        latent_dim (`int`, defaults to 64): width of the code z.
        down_block_types (`tuple[str]`, defaults to `("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")`): one
            `"DownBlock2D"` or `"AttnDownBlock2D"` per level; every level but the last halves the resolution.
        block_out_channels (`tuple[int]`, defaults to `(64, 128, 256)`): channels of each level.
        layers_per_block (`int`, defaults to 2): resnet blocks per level.
        norm_num_groups (`int`, defaults to 32): groups of every GroupNorm (must divide every channel count).
        norm_eps (`float`, defaults to 1e-5): GroupNorm epsilon.
        act_fn (`str`, defaults to `"silu"`): activation.
        attention_head_dim (`int`, *optional*, defaults to 8): channels per attention head (None: one head).
        downsample_padding (`int`, defaults to 1): padding of the downsampling convolutions.
        add_attention (`bool`, defaults to `True`): self-attention in the mid block.

    Gradient checkpointing (`enable_gradient_checkpointing()`, a runtime setting) is that of diffusers' own blocks:
    their resnets are recomputed in the backward pass instead of keeping their activations.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        sample_size: int = 32,
        latent_dim: int = 64,
        down_block_types: tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        block_out_channels: tuple[int, ...] = (64, 128, 256),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        act_fn: str = "silu",
        attention_head_dim: int | None = 8,
        downsample_padding: int = 1,
        add_attention: bool = True,
    ):
        super().__init__()
        _check_layout(sample_size, down_block_types, block_out_channels, norm_num_groups)
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList()
        channels = block_out_channels[0]
        for level, (block_type, out_channels) in enumerate(zip(down_block_types, block_out_channels, strict=True)):
            self.down_blocks.append(
                get_down_block(
                    block_type,
                    num_layers=layers_per_block,
                    in_channels=channels,
                    out_channels=out_channels,
                    temb_channels=None,
                    add_downsample=level < len(block_out_channels) - 1,
                    resnet_eps=norm_eps,
                    resnet_act_fn=act_fn,
                    resnet_groups=norm_num_groups,
                    attention_head_dim=attention_head_dim if attention_head_dim is not None else out_channels,
                    downsample_padding=downsample_padding,
                )
            )
            channels = out_channels
        self.mid_block = UNetMidBlock2D(
            in_channels=channels,
            temb_channels=None,
            resnet_eps=norm_eps,
            resnet_act_fn=act_fn,
            resnet_groups=norm_num_groups,
            attention_head_dim=attention_head_dim if attention_head_dim is not None else channels,
            add_attention=add_attention,
        )
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, channels, eps=norm_eps)
        self.conv_act = get_activation(act_fn)
        self.proj_out = nn.Linear(channels, latent_dim)

    @classmethod
    def from_unet(
        cls, unet: ModelMixin, latent_dim: int = 64, warm_start: bool = False, **kwargs
    ) -> PDAEResidualEncoder:
        """An encoder shaped like `unet`'s down blocks and mid block.

        Args:
            unet (`UNet2DModel`): the pre-trained noise predictor whose layout is copied.
            latent_dim (`int`, defaults to 64): width of the code z.
            warm_start (`bool`, defaults to `False`): copy the UNet's input convolution, down blocks and mid block
                (all but their time-embedding projections, which the encoder has not); only with the UNet's own
                widths and depth.
            kwargs (`dict[str, Any]`, *optional*): overrides of the copied layout, e.g. `block_out_channels`.

        Raises:
            `ValueError`: if the UNet has a down block other than `DownBlock2D` / `AttnDownBlock2D`, or `warm_start`
                is asked for with a layout that differs from the UNet's.
        """
        config = {key: unet.config[key] for key in UNET_DOWN_HALF_KEYS}
        changed = sorted(key for key, value in kwargs.items() if key in config and not _same(value, config[key]))
        config.update(kwargs)
        encoder = cls(latent_dim=latent_dim, **config)
        if warm_start:
            if changed:
                raise ValueError(
                    f"warm_start copies the UNet's weights, so the encoder must keep its layout; {', '.join(changed)} "
                    "differ. Drop the overrides or warm_start."
                )
            encoder.warm_start_from(unet)
        return encoder

    def warm_start_from(self, unet: ModelMixin) -> None:
        """Copy `unet`'s input convolution, down blocks and mid block into this encoder, then make it trainable."""
        for name in ("conv_in", "down_blocks", "mid_block"):
            source = {
                key: value for key, value in getattr(unet, name).state_dict().items() if "time_emb_proj" not in key
            }
            missing, unexpected = getattr(self, name).load_state_dict(source, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"The UNet's {name} does not match this encoder (missing {missing[:3]}, unexpected "
                    f"{unexpected[:3]}); build it with PDAEResidualEncoder.from_unet(unet)."
                )
        self.requires_grad_(True)

    def compute_codes(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.conv_in(images)
        for block in self.down_blocks:
            hidden, _ = block(hidden)
        hidden = self.conv_act(self.conv_norm_out(self.mid_block(hidden)))
        return self.proj_out(hidden.mean(dim=(2, 3)))


def _check_layout(
    sample_size: int, down_block_types: tuple[str, ...], block_out_channels: tuple[int, ...], norm_num_groups: int
) -> None:
    if len(down_block_types) != len(block_out_channels):
        raise ValueError(
            f"down_block_types has {len(down_block_types)} entries but block_out_channels {len(block_out_channels)}; "
            "give one of each per level."
        )
    unsupported = [block for block in down_block_types if block not in SUPPORTED_DOWN_BLOCKS]
    if unsupported:
        raise ValueError(f"Unsupported down blocks {unsupported}; use {' or '.join(SUPPORTED_DOWN_BLOCKS)}.")
    halvings = len(block_out_channels) - 1
    if sample_size % 2**halvings:
        raise ValueError(
            f"sample_size {sample_size} cannot be halved {halvings} times ({len(block_out_channels)} levels); use "
            f"fewer levels or a size divisible by {2**halvings}."
        )
    if any(channels % norm_num_groups for channels in block_out_channels):
        raise ValueError(f"norm_num_groups={norm_num_groups} must divide every block_out_channels entry.")


def _same(a, b) -> bool:
    """Config values compare equal, lists and tuples alike."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return tuple(a) == tuple(b)
    return a == b
