"""A PDAE encoder backed by a `transformers` vision model (ViT, DINOv2, ConvNeXt, ResNet, ...)."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from .encoder import PDAEEncoderMixin

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PDAETransformersEncoder(PDAEEncoderMixin, ModelMixin, ConfigMixin):
    r"""
    An encoder whose features come from a `transformers` vision backbone (`AutoModel`), pooled and projected to z by
    a trainable LayerNorm -> Linear head.

    Images in [-1, 1] are brought to what the backbone expects: to [0, 1], grey channels repeated to the backbone's
    `num_channels`, normalised with `image_mean` / `image_std`, and resized (bilinear) to `backbone_image_size`. The
    backbone's `pooler_output` is used when it has one, otherwise the mean of `last_hidden_state` over tokens or
    positions.

    The backbone is built from `backbone_config` alone, so a saved encoder loads offline and never runs code from a
    Hub repo; its weights are saved with the head's. Every argument is keyword-only: diffusers records positional
    arguments as defaults, and `from_config` (which EMA copies and checkpoint export rely on) would then drop
    `backbone_config`. Start from pre-trained Hub weights with
    [`PDAETransformersEncoder.from_backbone`].

    Parameters:
        backbone_config (`dict`): a `transformers` config as a dict (`PretrainedConfig.to_dict()`), with its
            `model_type`.
        in_channels (`int`, defaults to 3): image channels (1 or the backbone's `num_channels`).
        sample_size (`int`, defaults to 32): image height and width.
        latent_dim (`int`, defaults to 64): width of the code z.
        backbone_image_size (`int`, *optional*): the size images are resized to (default: the backbone config's
            `image_size` when it has one, else `sample_size`).
        image_mean (`tuple[float]`, defaults to ImageNet's): per-channel mean the backbone was trained with.
        image_std (`tuple[float]`, defaults to ImageNet's): per-channel standard deviation.
        freeze_backbone (`bool`, defaults to `False`): keep the backbone's weights fixed (no gradient, eval mode);
            only the head trains.
        pretrained_backbone (`str`, *optional*): where the initial backbone weights came from (recorded only).

    Gradient checkpointing (`enable_gradient_checkpointing()`, a runtime setting) uses the backbone's own
    (`transformers`' activation checkpointing of each layer) where it has it (ViT, DINOv2, ...); a backbone without
    it (ConvNeXt, ResNet, ...) runs as one checkpointed segment, recomputed in the backward pass. A frozen backbone
    runs without gradients, so there is nothing to recompute.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        *,
        backbone_config: dict,
        in_channels: int = 3,
        sample_size: int = 32,
        latent_dim: int = 64,
        backbone_image_size: int | None = None,
        image_mean: tuple[float, ...] = IMAGENET_MEAN,
        image_std: tuple[float, ...] = IMAGENET_STD,
        freeze_backbone: bool = False,
        pretrained_backbone: str | None = None,
    ):
        super().__init__()
        config = _backbone_config_from_dict(backbone_config)
        channels = getattr(config, "num_channels", 3)
        if in_channels not in (1, channels):
            raise ValueError(
                f"The backbone takes {channels}-channel images; in_channels={in_channels} can be 1 (repeated) or "
                f"{channels}."
            )
        if len(image_mean) != channels or len(image_std) != channels or min(image_std) <= 0:
            raise ValueError(
                f"image_mean and image_std need {channels} entries (the backbone's num_channels) and a positive std; "
                f"got {tuple(image_mean)} and {tuple(image_std)}."
            )
        self.backbone = AutoModel.from_config(config)
        self.image_size = backbone_image_size or getattr(config, "image_size", None) or sample_size
        width = _feature_width(config)
        self.proj_out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, latent_dim))
        self.register_buffer("pixel_mean", torch.tensor(image_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(image_std).view(1, -1, 1, 1), persistent=False)
        self.requires_grad_(True)
        self.gradient_checkpointing = False  # the whole backbone as one segment (a backbone without its own)

    @classmethod
    def from_backbone(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        in_channels: int = 3,
        sample_size: int = 32,
        latent_dim: int = 64,
        freeze_backbone: bool = False,
        **kwargs,
    ) -> PDAETransformersEncoder:
        """An encoder around a pre-trained `transformers` backbone, with a fresh head.

        The backbone is loaded with `AutoModel.from_pretrained(..., use_safetensors=True)`: safetensors weights only,
        and no code from the repo is run (`trust_remote_code` stays off).

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`): a Hub id (e.g. `"facebook/dinov2-small"`) or a
                local folder saved with `save_pretrained`.
            in_channels (`int`, defaults to 3): image channels (1 or the backbone's `num_channels`).
            sample_size (`int`, defaults to 32): image height and width.
            latent_dim (`int`, defaults to 64): width of the code z.
            freeze_backbone (`bool`, defaults to `False`): train only the head.
            kwargs (`dict[str, Any]`, *optional*): `backbone_image_size`, `image_mean`, `image_std`.

        Raises:
            `OSError`: if the folder or repo has no config or no safetensors weights (from `transformers`).
        """
        backbone = AutoModel.from_pretrained(os.fspath(pretrained_model_name_or_path), use_safetensors=True)
        encoder = cls(
            backbone_config=backbone.config.to_dict(),
            in_channels=in_channels,
            sample_size=sample_size,
            latent_dim=latent_dim,
            freeze_backbone=freeze_backbone,
            pretrained_backbone=os.fspath(pretrained_model_name_or_path),
            **kwargs,
        )
        encoder.backbone.load_state_dict(backbone.state_dict())
        return encoder

    def requires_grad_(self, requires_grad: bool = True) -> PDAETransformersEncoder:
        """As `nn.Module.requires_grad_`, except that a frozen backbone (`freeze_backbone`) stays frozen."""
        super().requires_grad_(requires_grad)
        if self.config.freeze_backbone:
            self.backbone.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> PDAETransformersEncoder:
        """As `nn.Module.train`, except that a frozen backbone stays in eval mode (dropout off, norms fixed)."""
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval()
        return self

    def enable_gradient_checkpointing(self, gradient_checkpointing_func: Callable | None = None) -> None:
        """Recompute the backbone's activations in the backward pass instead of keeping them (see the class doc).

        Args:
            gradient_checkpointing_func (`Callable`, *optional*): `(module, *args) -> output`, as diffusers takes it;
                only for a backbone without its own checkpointing (the default: non-reentrant
                `torch.utils.checkpoint.checkpoint`).
        """
        if self.backbone.supports_gradient_checkpointing and gradient_checkpointing_func is None:
            # transformers >= 5 names it activation checkpointing; 4.x, gradient checkpointing (reentrant by default).
            if hasattr(self.backbone, "activation_checkpointing_enable"):
                self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            return
        self._gradient_checkpointing_func = gradient_checkpointing_func or _checkpoint
        self.gradient_checkpointing = True

    def disable_gradient_checkpointing(self) -> None:
        """Keep the backbone's activations again (the default)."""
        self.gradient_checkpointing = False
        if self.backbone.supports_gradient_checkpointing:
            if hasattr(self.backbone, "activation_checkpointing_disable"):
                self.backbone.activation_checkpointing_disable()
            else:
                self.backbone.gradient_checkpointing_disable()

    def backbone_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Images `(B, in_channels, sample_size, sample_size)` in [-1, 1] -> the backbone's `pixel_values`
        `(B, num_channels, image_size, image_size)`."""
        pixels = (images + 1) / 2
        if pixels.shape[1] != self.pixel_mean.shape[1]:
            pixels = pixels.expand(-1, self.pixel_mean.shape[1], -1, -1)
        pixels = (pixels - self.pixel_mean) / self.pixel_std
        if pixels.shape[-1] != self.image_size:
            pixels = F.interpolate(
                pixels, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        return pixels

    def compute_codes(self, images: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbone):
            pixel_values = self.backbone_inputs(images)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                features = self._gradient_checkpointing_func(_PooledBackbone(self.backbone), pixel_values)
            else:
                features = _pooled(self.backbone(pixel_values=pixel_values))
        return self.proj_out(features)


class _PooledBackbone(nn.Module):
    """The backbone's pooled features of `pixel_values` as one module: the segment that gradient checkpointing
    recomputes for a backbone without its own. Built per call around the encoder's backbone (not registered, so the
    weights and their names stay the encoder's)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _pooled(self.backbone(pixel_values=pixel_values))


def _checkpoint(module: nn.Module, *args) -> torch.Tensor:
    """diffusers' default checkpointing function: non-reentrant `torch.utils.checkpoint.checkpoint`."""
    return torch.utils.checkpoint.checkpoint(module.__call__, *args, use_reentrant=False)


def _backbone_config_from_dict(backbone_config: dict) -> PretrainedConfig:
    settings = dict(backbone_config)
    model_type = settings.pop("model_type", None)
    if model_type is None:
        raise ValueError(
            "backbone_config needs a 'model_type' (e.g. 'vit', 'dinov2', 'convnext'); pass a transformers config's "
            "to_dict()."
        )
    settings.pop("transformers_version", None)
    return AutoConfig.for_model(model_type, **settings)


def _feature_width(config: PretrainedConfig) -> int:
    """Width of the pooled features: the last stage of staged models (ConvNeXt, ResNet), else `hidden_size`."""
    hidden_sizes = getattr(config, "hidden_sizes", None)
    if hidden_sizes:
        return hidden_sizes[-1]
    if getattr(config, "hidden_size", None):
        return config.hidden_size
    raise ValueError(
        f"Cannot tell the feature width of a {config.model_type!r} backbone (its config has neither hidden_sizes nor "
        "hidden_size); use a ViT, DINOv2, ConvNeXt or ResNet-style model."
    )


def _pooled(outputs) -> torch.Tensor:
    """`(B, width)` features: `pooler_output`, else the mean of `last_hidden_state` over tokens or positions."""
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    hidden = outputs.last_hidden_state
    return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.mean(dim=(2, 3))
