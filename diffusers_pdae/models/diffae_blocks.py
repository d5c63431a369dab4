"""The encoder half and mid block of [`DiffAEUNet2DModel`]: diffusers' `DownBlock2D` / `AttnDownBlock2D` and
`UNetMidBlock2D`, with every resnet block also conditioned on the code z (a [`ZShiftResnetBlock2D`])."""

from __future__ import annotations

import torch
from diffusers.models.downsampling import Downsample2D
from torch import nn

from .gradient_estimator_blocks import ZShiftResnetBlock2D, unet_attention, zshift_resnet_kwargs

DOWNSAMPLE_TYPES = ("conv", "resnet")


class DiffAEDownBlock(nn.Module):
    """One down block of the conditional UNet, laid out like diffusers' `DownBlock2D` (`add_attention=False`) or
    `AttnDownBlock2D` (`add_attention=True`): same channels, same parameter names, plus a `z_proj` in each resnet.

    Parameters:
        in_channels (`int`): channels of the input feature map.
        out_channels (`int`): channels of every resnet's output.
        temb_channels (`int`): width of the time embedding.
        z_channels (`int`): width of the code embedding.
        num_layers (`int`): resnet blocks (each followed by self-attention with `add_attention`).
        add_attention (`bool`): `AttnDownBlock2D` rather than `DownBlock2D`.
        add_downsample (`bool`): halve the resolution at the end (every block but the last).
        downsample_type (`str`): `"conv"` (a strided convolution) or `"resnet"` (a resnet block with `down=True`).
        downsample_padding (`int`): padding of the strided convolution.
        resnet_eps (`float`), resnet_groups (`int`), resnet_act_fn (`str`), resnet_time_scale_shift (`str`),
            dropout (`float`): as in diffusers' blocks.
        attention_head_dim (`int`): width of one attention head.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        z_channels: int,
        num_layers: int,
        add_attention: bool,
        add_downsample: bool,
        downsample_type: str,
        downsample_padding: int,
        resnet_eps: float,
        resnet_groups: int,
        resnet_act_fn: str,
        resnet_time_scale_shift: str,
        attention_head_dim: int,
        dropout: float,
    ):
        super().__init__()
        if downsample_type not in DOWNSAMPLE_TYPES:
            raise ValueError(f"Unsupported downsample_type {downsample_type!r}; supported: {DOWNSAMPLE_TYPES}.")
        resnet_kwargs = zshift_resnet_kwargs(
            temb_channels, z_channels, resnet_eps, resnet_groups, dropout, resnet_time_scale_shift, resnet_act_fn
        )
        self.resnets = nn.ModuleList(
            ZShiftResnetBlock2D(
                in_channels=in_channels if i == 0 else out_channels, out_channels=out_channels, **resnet_kwargs
            )
            for i in range(num_layers)
        )
        self.attentions = (
            nn.ModuleList(
                unet_attention(out_channels, attention_head_dim, resnet_eps, resnet_groups) for _ in range(num_layers)
            )
            if add_attention
            else None
        )

        self.downsample_type = downsample_type if add_downsample else None
        if self.downsample_type == "resnet":
            self.downsamplers = nn.ModuleList(
                [ZShiftResnetBlock2D(in_channels=out_channels, out_channels=out_channels, down=True, **resnet_kwargs)]
            )
        elif self.downsample_type == "conv":
            self.downsamplers = nn.ModuleList(
                [
                    Downsample2D(
                        out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding, name="op"
                    )
                ]
            )
        else:
            self.downsamplers = None

    def forward(
        self, hidden_states: torch.Tensor, temb: torch.Tensor, zemb: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """
        Args:
            hidden_states (`torch.Tensor` of shape `(B, in_channels, H, W)`): features.
            temb (`torch.Tensor` of shape `(B, temb_channels)`): the time embedding.
            zemb (`torch.Tensor` of shape `(B, z_channels)`): the code embedding.

        Returns:
            The block's output `(B, out_channels, H', W')` (`H' = H / 2` with a downsampler) and its skip features for
            the up half: one `(B, out_channels, H, W)` per resnet, then the downsampled output.
        """
        output_states = ()
        for i, resnet in enumerate(self.resnets):
            hidden_states = resnet(hidden_states, temb, zemb)
            if self.attentions is not None:
                hidden_states = self.attentions[i](hidden_states)
            output_states += (hidden_states,)
        if self.downsample_type == "resnet":
            hidden_states = self.downsamplers[0](hidden_states, temb, zemb)
        elif self.downsample_type == "conv":
            hidden_states = self.downsamplers[0](hidden_states)
        if self.downsamplers is not None:
            output_states += (hidden_states,)
        return hidden_states, output_states


class DiffAEMidBlock(nn.Module):
    """The mid block of the conditional UNet, laid out like diffusers' `UNetMidBlock2D` with one layer: resnet,
    optional self-attention, resnet (same parameter names, plus a `z_proj` in each resnet).

    Parameters:
        in_channels (`int`): channels in and out.
        temb_channels (`int`): width of the time embedding.
        z_channels (`int`): width of the code embedding.
        add_attention (`bool`): self-attention between the two resnets.
        attn_groups (`int`, *optional*): GroupNorm groups of the attention (None: no norm, as diffusers does for
            `resnet_time_scale_shift != "default"`).
        output_scale_factor (`float`): divides each resnet's and the attention's residual sum.
        resnet_eps (`float`), resnet_groups (`int`), resnet_act_fn (`str`), resnet_time_scale_shift (`str`),
            dropout (`float`): as in diffusers' blocks.
        attention_head_dim (`int`): width of one attention head.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        temb_channels: int,
        z_channels: int,
        add_attention: bool,
        attn_groups: int | None,
        output_scale_factor: float,
        resnet_eps: float,
        resnet_groups: int,
        resnet_act_fn: str,
        resnet_time_scale_shift: str,
        attention_head_dim: int,
        dropout: float,
    ):
        super().__init__()
        resnet_kwargs = zshift_resnet_kwargs(
            temb_channels, z_channels, resnet_eps, resnet_groups, dropout, resnet_time_scale_shift, resnet_act_fn
        )
        self.resnets = nn.ModuleList(
            ZShiftResnetBlock2D(
                in_channels=in_channels,
                out_channels=in_channels,
                output_scale_factor=output_scale_factor,
                **resnet_kwargs,
            )
            for _ in range(2)
        )
        attention = (
            unet_attention(in_channels, attention_head_dim, resnet_eps, attn_groups, output_scale_factor)
            if add_attention
            else None
        )
        # `UNetMidBlock2D` keeps a None entry when attention is off, so the names stay `attentions.0.*` either way.
        self.attentions = nn.ModuleList([attention])

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor, zemb: torch.Tensor) -> torch.Tensor:
        """`(B, in_channels, H, W)` features, `(B, temb_channels)` time and `(B, z_channels)` code embeddings ->
        `(B, in_channels, H, W)`."""
        hidden_states = self.resnets[0](hidden_states, temb, zemb)
        if self.attentions[0] is not None:
            hidden_states = self.attentions[0](hidden_states)
        return self.resnets[1](hidden_states, temb, zemb)
