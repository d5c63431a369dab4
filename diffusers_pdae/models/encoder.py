"""PDAE's semantic encoder E_phi: image -> code z."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.activations import get_activation
from diffusers.utils import BaseOutput
from torch import nn

# PDAEEncoder.down holds three layers per level: GroupNorm, activation, then a strided convolution (a Flatten last).
LAYERS_PER_LEVEL = 3


@dataclass
class PDAEEncoderOutput(BaseOutput):
    """
    Args:
        z (`torch.Tensor` of shape `(batch_size, latent_dim)`): the codes of the images.
    """

    z: torch.Tensor


def check_image_batch(encoder: ModelMixin, images: torch.Tensor) -> None:
    """Raise a `ValueError` unless `images` is a batch `(B, in_channels, sample_size, sample_size)` for `encoder`."""
    expected = (encoder.config.in_channels, encoder.config.sample_size, encoder.config.sample_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"{type(encoder).__name__} expects images of shape (batch_size, {expected[0]}, {expected[1]}, "
            f"{expected[2]}), got {tuple(images.shape)}."
        )


class PDAEEncoderMixin:
    """What every encoder design shares: `forward` checks the images, casts them to the model's dtype and wraps the
    codes of the design's `compute_codes` in a [`PDAEEncoderOutput`]."""

    def compute_codes(self, images: torch.Tensor) -> torch.Tensor:
        """Images `(B, in_channels, sample_size, sample_size)` in [-1, 1], already checked -> codes
        `(B, latent_dim)`."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, return_dict: bool = True) -> PDAEEncoderOutput | tuple:
        """
        Args:
            images (`torch.Tensor` of shape `(B, in_channels, sample_size, sample_size)`): images in [-1, 1].
            return_dict (`bool`, defaults to `True`): return a [`PDAEEncoderOutput`] instead of a tuple.

        Returns:
            [`PDAEEncoderOutput`] with `z` of shape `(B, latent_dim)`, or `(z,)`.

        Raises:
            `ValueError`: if `images` is not a batch of the encoder's channels and size.
        """
        check_image_batch(self, images)
        z = self.compute_codes(images.to(self.dtype))
        return PDAEEncoderOutput(z=z) if return_dict else (z,)


class PDAEEncoder(PDAEEncoderMixin, ModelMixin, ConfigMixin):
    r"""
    The light encoder: a plain convolutional stack mapping an image to a flat code z (Zhang, Zhao & Lin 2022, section
    3.2). For encoders shaped like the official one see [`PDAEResidualEncoder`]; for pre-trained vision backbones,
    [`PDAETransformersEncoder`].

    Each level halves the resolution: GroupNorm -> activation -> 3x3 convolution with stride 2. A final linear layer
    maps the flattened features to `latent_dim`.

    Parameters:
        in_channels (`int`, defaults to 3): image channels.
        sample_size (`int`, defaults to 32): image height and width.
        latent_dim (`int`, defaults to 64): width of the code z.
        block_out_channels (`tuple[int]`, defaults to `(64, 128, 256, 256)`): channels after each downsampling; with
            `sample_size=32` four levels give `(B, 256, 2, 2)` before the linear layer.
        norm_num_groups (`int`, defaults to 32): groups of every GroupNorm (must divide every channel count).
        act_fn (`str`, defaults to `"silu"`): activation.

    Gradient checkpointing (`enable_gradient_checkpointing()`, a runtime setting) recomputes each level (norm,
    activation, strided convolution) in the backward pass instead of keeping its activations.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        sample_size: int = 32,
        latent_dim: int = 64,
        block_out_channels: tuple[int, ...] = (64, 128, 256, 256),
        norm_num_groups: int = 32,
        act_fn: str = "silu",
    ):
        super().__init__()
        final_size = sample_size // 2 ** len(block_out_channels)
        if final_size < 1 or sample_size % 2 ** len(block_out_channels):
            raise ValueError(
                f"sample_size {sample_size} cannot be halved {len(block_out_channels)} times "
                f"(block_out_channels={tuple(block_out_channels)}); use fewer levels or a size divisible by "
                f"{2 ** len(block_out_channels)}."
            )
        for channels in block_out_channels:
            if channels % norm_num_groups:
                raise ValueError(f"norm_num_groups={norm_num_groups} must divide every block_out_channels entry.")

        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        layers = []
        channels = block_out_channels[0]
        for out_channels in block_out_channels:
            layers += [
                nn.GroupNorm(norm_num_groups, channels),
                get_activation(act_fn),
                nn.Conv2d(channels, out_channels, kernel_size=3, stride=2, padding=1),
            ]
            channels = out_channels
        layers += [nn.GroupNorm(norm_num_groups, channels), get_activation(act_fn), nn.Flatten()]
        self.down = nn.Sequential(*layers)
        self.proj_out = nn.Linear(channels * final_size * final_size, latent_dim)
        self.gradient_checkpointing = False

    def compute_codes(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.conv_in(images)
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            # `down` is (norm, activation, layer) per level, the last layer a Flatten: one checkpointed segment each
            # (a slice of an nn.Sequential shares its layers, so the weights and their names stay the same).
            for start in range(0, len(self.down), LAYERS_PER_LEVEL):
                hidden = self._gradient_checkpointing_func(self.down[start : start + LAYERS_PER_LEVEL], hidden)
        else:
            hidden = self.down(hidden)
        return self.proj_out(hidden)
