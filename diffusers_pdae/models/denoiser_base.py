"""What every frozen-model adapter is: the interface PDAE asks the frozen, pre-trained denoiser through (see
`frozen_denoiser` for the seam and its registry), and what one frozen pass yields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import FrozenDict


@dataclass
class UNetFeatures:
    """What G reads from one frozen UNet pass.

    Attributes:
        temb (`torch.Tensor` of shape `(B, time_embed_dim)`): the UNet's time embedding (after its MLP).
        down_block_res_samples (`tuple[torch.Tensor, ...]`): the skip features of the encoder half, in the order the
            UNet produces them (conv_in output first), each `(B, C_i, H_i, W_i)`.
        mid_block_res_sample (`torch.Tensor` of shape `(B, C_mid, H_mid, W_mid)`): output of the mid block (or of
            the last down block when the UNet has no mid block).
    """

    temb: torch.Tensor
    down_block_res_samples: tuple[torch.Tensor, ...]
    mid_block_res_sample: torch.Tensor

    def cloned(self) -> UNetFeatures:
        skips = tuple(skip.clone() for skip in self.down_block_res_samples)
        return UNetFeatures(self.temb.clone(), skips, self.mid_block_res_sample.clone())


@dataclass
class FrozenPass:
    """One frozen pass: the model's prediction and the features G reads.

    Attributes:
        model_output (`torch.Tensor` of shape `(B, C, H, W)`): what the model predicts (eps, v or x_0, as its
            scheduler's `prediction_type` says), asked with its fixed unconditional inputs.
        features ([`UNetFeatures`]): G's inputs.
    """

    model_output: torch.Tensor
    features: UNetFeatures


def config_sample_shape(config: dict | FrozenDict) -> tuple[int, int, int]:
    """`(C, H, W)` of the samples of a diffusers model config with `in_channels` and `sample_size` (int or pair)."""
    size = config["sample_size"]
    return (config["in_channels"], *((size, size) if isinstance(size, int) else size))


class FrozenDenoiser:
    """A frozen, pre-trained denoiser as PDAE sees it. Build one with [`frozen_denoiser`].

    Attributes:
        component_name (`str`): the pipeline component the model is saved under (diffusers' name for its family).
        model_class (`type`): the diffusers class served.
        model (`ModelMixin`): the wrapped model, never copied.
        condition (`PromptEmbedding`, *optional*): the fixed condition the model is asked with (a text-conditional
            UNet's prompt embedding), or None.
    """

    component_name: ClassVar[str] = "unet"
    model_class: ClassVar[type[ModelMixin]]
    # Whether the model is asked with a stored condition (a `PromptEmbedding`), and whether G may copy its attention.
    takes_condition: ClassVar[bool] = False
    warm_starts_attention: ClassVar[bool] = True
    # What G reads: a UNet's encoder-half features ("unet", UNetFeatures) or a transformer's tokens ("tokens").
    feature_kind: ClassVar[str] = "unet"

    def __init__(self, model: ModelMixin, condition: ModelMixin | None = None):
        self.check_config(model.config)
        self.check_condition(model, condition)
        self.model = model
        self.condition = condition

    @classmethod
    def check_condition(cls, model: ModelMixin, condition: ModelMixin | None) -> None:
        """Raise a `ValueError` if the stored condition does not fit the model (a model asked without one has
        none)."""
        if condition is not None and not cls.takes_condition:
            raise ValueError(
                f"A {type(model).__name__} is asked without a condition, but a prompt_embedding was given; drop it."
            )

    @classmethod
    def check_config(cls, config: dict | FrozenDict) -> None:
        """Raise a `ValueError` naming the first part of the config PDAE cannot serve."""
        raise NotImplementedError

    def require_condition(self) -> None:
        """Raise a `ValueError` if the model cannot be asked yet: it needs a condition it was not given."""

    @property
    def config(self) -> FrozenDict:
        return self.model.config

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """`(C, H, W)` of what the model denoises (x_t)."""
        return config_sample_shape(self.config)

    def bytes_per_sample(self) -> int:
        """A lower bound of the memory one sample takes in a pass: a few full-resolution feature maps."""
        _, height, width = self.sample_shape
        return 8 * self.feature_channels * height * width * (torch.finfo(self.dtype).bits // 8)

    @property
    def feature_channels(self) -> int:
        raise NotImplementedError

    def __call__(self, sample: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The model's prediction `(B, C, H, W)` at x_t `(B, C, H, W)` and training timesteps `(B,)`."""
        raise NotImplementedError

    def forward_with_features(self, sample: torch.Tensor, timesteps: torch.Tensor) -> FrozenPass:
        """One pass at x_t `(B, C, H, W)` and timesteps `(B,)` giving the prediction and G's features."""
        raise NotImplementedError

    def gradient_estimator_layout(self) -> dict:
        """The `GradientEstimator` config entries fixed by this model's layout."""
        raise NotImplementedError

    def decoder_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """State dicts of the up blocks and the output norm, which a G of the same layout may start from."""
        raise NotImplementedError
