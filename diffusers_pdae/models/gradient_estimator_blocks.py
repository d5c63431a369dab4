"""The building blocks of [`GradientEstimator`]: a resnet block that also sees the code z, and an up block of them."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn


class ZShiftResnetBlock2D(ResnetBlock2D):
    """A diffusers `ResnetBlock2D` whose second normalisation is also modulated by the code z.

    PDAE's shift block (Zhang et al. 2022, appendix): h = (1 + z_s) * (GN(h) (1 + s) + b) + z_b, where (s, b) come from
    the time embedding ((0, 0) and an additive shift before GN for `time_embedding_norm="default"`, as in
    diffusers) and (z_s, z_b) from a linear projection of the code embedding. The parameter names are those of
    `ResnetBlock2D`, so the block can be warm-started from the pre-trained UNet's up blocks.
    """

    def __init__(self, *, z_channels: int, **resnet_kwargs):
        super().__init__(**resnet_kwargs)
        self.z_proj = nn.Linear(z_channels, 2 * self.out_channels)

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor, zemb: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input_tensor (`torch.Tensor` of shape `(B, in_channels, H, W)`): features.
            temb (`torch.Tensor` of shape `(B, temb_channels)`): the frozen UNet's time embedding.
            zemb (`torch.Tensor` of shape `(B, z_channels)`): the code embedding.

        Returns:
            `torch.Tensor` of shape `(B, out_channels, H', W')` (`H' = 2H` with `up=True`).
        """
        # Adapted from diffusers `ResnetBlock2D.forward` (diffusers 0.42): the same steps in the same order, plus the
        # z scale/shift after the second normalisation. Keep it in step with diffusers; the test that this block
        # equals `ResnetBlock2D` when `z_proj` is zero guards it.
        hidden_states = self.nonlinearity(self.norm1(input_tensor))
        if self.upsample is not None:
            # diffusers' fix for upsample_nearest_nhwc failing on large batches (diffusers issue 984).
            if hidden_states.shape[0] >= 64:
                input_tensor = input_tensor.contiguous()
                hidden_states = hidden_states.contiguous()
            input_tensor = self.upsample(input_tensor)
            hidden_states = self.upsample(hidden_states)
        elif self.downsample is not None:
            input_tensor = self.downsample(input_tensor)
            hidden_states = self.downsample(hidden_states)
        hidden_states = self.conv1(hidden_states)

        if self.time_emb_proj is not None:
            if not self.skip_time_act:
                temb = self.nonlinearity(temb)
            temb = self.time_emb_proj(temb)[:, :, None, None]
        if self.time_embedding_norm == "default":
            hidden_states = self.norm2(hidden_states if temb is None else hidden_states + temb)
        elif self.time_embedding_norm == "scale_shift":
            time_scale, time_shift = temb.chunk(2, dim=1)
            hidden_states = self.norm2(hidden_states) * (1 + time_scale) + time_shift
        else:
            hidden_states = self.norm2(hidden_states)

        z_scale, z_shift = self.z_proj(self.nonlinearity(zemb))[:, :, None, None].chunk(2, dim=1)
        hidden_states = hidden_states * (1 + z_scale) + z_shift

        hidden_states = self.conv2(self.dropout(self.nonlinearity(hidden_states)))
        if self.conv_shortcut is not None:
            # As diffusers: contiguous in training only, for DDP's gradient-stride check (diffusers issue 12975).
            if self.training:
                input_tensor = input_tensor.contiguous()
            input_tensor = self.conv_shortcut(input_tensor)
        return (input_tensor + hidden_states) / self.output_scale_factor


def zshift_resnet_kwargs(
    temb_channels: int,
    z_channels: int,
    resnet_eps: float,
    resnet_groups: int,
    dropout: float,
    resnet_time_scale_shift: str,
    resnet_act_fn: str,
) -> dict:
    """The [`ZShiftResnetBlock2D`] arguments a block passes to each of its resnets, from diffusers' block arguments."""
    return {
        "temb_channels": temb_channels,
        "z_channels": z_channels,
        "eps": resnet_eps,
        "groups": resnet_groups,
        "dropout": dropout,
        "time_embedding_norm": resnet_time_scale_shift,
        "non_linearity": resnet_act_fn,
    }


def unet_attention(
    channels: int, attention_head_dim: int, eps: float, groups: int | None, output_scale_factor: float = 1.0
) -> Attention:
    """The self-attention layer of `UNet2DModel`'s blocks over `(B, channels, H, W)` feature maps (same names and
    settings, so its weights load from the UNet's)."""
    return Attention(
        channels,
        heads=channels // attention_head_dim,
        dim_head=attention_head_dim,
        rescale_output_factor=output_scale_factor,
        eps=eps,
        norm_num_groups=groups,
        residual_connection=True,
        bias=True,
        upcast_softmax=True,
        _from_deprecated_attn_block=True,
    )


class GradientEstimatorUpBlock(nn.Module):
    """One up block of G, laid out like diffusers' `UpBlock2D` / `AttnUpBlock2D` (same channels, same names).

    A lighter G may have fewer resnets than the UNet has skips at this level (`num_layers < num_skips`): resnet i
    still takes the i-th skip from the end, and the remaining (earliest) skips are not used. Its width
    (`out_channels`) may also differ from the UNet's (`skip_channels`).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        temb_channels: int,
        z_channels: int,
        num_layers: int,
        add_attention: bool,
        add_upsample: bool,
        upsample_type: str,
        resnet_eps: float,
        resnet_groups: int,
        resnet_act_fn: str,
        resnet_time_scale_shift: str,
        attention_head_dim: int,
        dropout: float,
        skip_channels: int | None = None,
        num_skips: int | None = None,
    ):
        super().__init__()
        skip_channels = skip_channels or out_channels
        num_skips = num_skips or num_layers
        resnet_kwargs = zshift_resnet_kwargs(
            temb_channels, z_channels, resnet_eps, resnet_groups, dropout, resnet_time_scale_shift, resnet_act_fn
        )
        resnets, attentions = [], []
        for i in range(num_layers):
            res_skip_channels = in_channels if i == num_skips - 1 else skip_channels
            resnet_in_channels = prev_output_channel if i == 0 else out_channels
            resnets.append(
                ZShiftResnetBlock2D(
                    in_channels=resnet_in_channels + res_skip_channels, out_channels=out_channels, **resnet_kwargs
                )
            )
            if add_attention:
                attentions.append(unet_attention(out_channels, attention_head_dim, resnet_eps, resnet_groups))
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions) if add_attention else None

        self.upsample_type = upsample_type if add_upsample else None
        if self.upsample_type == "resnet":
            self.upsamplers = nn.ModuleList(
                [ZShiftResnetBlock2D(in_channels=out_channels, out_channels=out_channels, up=True, **resnet_kwargs)]
            )
        elif self.upsample_type == "conv":
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])
        else:
            self.upsamplers = None

        # Set, with `_gradient_checkpointing_func`, by the model's `enable_gradient_checkpointing()` (diffusers').
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        res_hidden_states_tuple: tuple[torch.Tensor, ...],
        temb: torch.Tensor,
        zemb: torch.Tensor,
    ) -> torch.Tensor:
        # With gradient checkpointing every resnet, attention and upsampler is one checkpointed segment: only its
        # inputs are kept for the backward pass, which runs it again. z's embedding is an input of each resnet, so its
        # gradient (and the encoder's) flows through the segments as through the plain calls.
        run = self._gradient_checkpointing_func if torch.is_grad_enabled() and self.gradient_checkpointing else _call
        for i, resnet in enumerate(self.resnets):
            hidden_states = torch.cat([hidden_states, res_hidden_states_tuple[-1 - i]], dim=1)
            hidden_states = run(resnet, hidden_states, temb, zemb)
            if self.attentions is not None:
                hidden_states = run(self.attentions[i], hidden_states)
        if self.upsample_type == "resnet":
            hidden_states = run(self.upsamplers[0], hidden_states, temb, zemb)
        elif self.upsample_type == "conv":
            hidden_states = run(self.upsamplers[0], hidden_states)
        return hidden_states


def _call(module: nn.Module, *args) -> torch.Tensor:
    """`module(*args)`: a block's layer run without checkpointing (the signature of `_gradient_checkpointing_func`)."""
    return module(*args)
