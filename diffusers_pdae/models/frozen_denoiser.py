"""The seam between PDAE and the frozen, pre-trained denoiser it serves: one adapter per model family.

PDAE needs three things from the frozen model: its prediction at (x_t, t) asked *without* a condition, the features
the gradient estimator G reads (taken during that same pass, so the model never runs twice), and its geometry (what
it denoises, in which dtype, under which pipeline component name). Everything that knows the model's class lives in
its adapter, as k-diffusion's `external.py` wraps each model family: the classes and configs it serves (a clear
error otherwise), the model's fixed unconditional inputs, its feature capture, the layout G copies and the weights G
may be warm-started from. Pipelines, training and evaluation reach the frozen model only through a
[`FrozenDenoiser`]; this is the only module that imports the frozen model classes.

Served today: diffusers' `UNet2DModel` (no condition; features by forward hooks on its time embedding, `conv_in`,
down blocks and mid block).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import ModelMixin, UNet2DModel
from diffusers.configuration_utils import FrozenDict

SUPPORTED_DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D")
SUPPORTED_UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D")
SUPPORTED_MID_BLOCKS = ("UNetMidBlock2D", None)
SUPPORTED_TIME_EMBEDDINGS = ("positional", "learned")

# UNet2DModel config entries a GradientEstimator copies from its UNet (and requires equal when checked against it).
UNET_LAYOUT_KEYS = (
    "sample_size",
    "out_channels",
    "block_out_channels",
    "up_block_types",
    "layers_per_block",
    "norm_num_groups",
    "resnet_time_scale_shift",
    "upsample_type",
)


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
    """

    component_name: ClassVar[str] = "unet"
    model_class: ClassVar[type[ModelMixin]]

    def __init__(self, model: ModelMixin):
        self.check_config(model.config)
        self.model = model

    @classmethod
    def check_config(cls, config: dict | FrozenDict) -> None:
        """Raise a `ValueError` naming the first part of the config PDAE cannot serve."""
        raise NotImplementedError

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


class UNetDenoiser(FrozenDenoiser):
    """A diffusers UNet: G reads its time embedding and encoder-half features, captured with forward hooks during
    the one ordinary call, so the prediction is bit for bit the UNet's and the encoder half never runs twice."""

    @property
    def feature_channels(self) -> int:
        return max(self.config.in_channels, self.config.block_out_channels[0])

    def fixed_inputs(self, batch_size: int) -> dict:
        """The keyword arguments that make the model unconditional, for a batch of `batch_size`."""
        return {}

    def __call__(self, sample: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.model(sample, timesteps, **self.fixed_inputs(sample.shape[0])).sample

    def forward_with_features(self, sample: torch.Tensor, timesteps: torch.Tensor) -> FrozenPass:
        unet = self.model
        captured: dict[str, object] = {"down": []}

        def keep_temb(module, args, output):
            captured["temb"] = output

        def keep_conv_in(module, args, output):
            captured["down"].append(output)
            captured["last"] = output

        def keep_down(module, args, output):
            hidden_states, res_samples = output[0], output[1]
            captured["down"].extend(res_samples)
            captured["last"] = hidden_states

        def keep_mid(module, args, output):
            captured["last"] = output

        handles = [
            unet.time_embedding.register_forward_hook(keep_temb),
            unet.conv_in.register_forward_hook(keep_conv_in),
            *(block.register_forward_hook(keep_down) for block in unet.down_blocks),
        ]
        if unet.mid_block is not None:
            handles.append(unet.mid_block.register_forward_hook(keep_mid))
        try:
            model_output = self(sample, timesteps)
        finally:
            for handle in handles:
                handle.remove()
        features = UNetFeatures(captured["temb"], tuple(captured["down"]), captured["last"])
        if getattr(unet, "_compiled_call_impl", None) is not None:
            # Compiled with CUDA graphs (mode="reduce-overhead"), the UNet's outputs live in the graph's memory pool
            # and the next graph replay (G's, in the same step) may overwrite them: hand G copies.
            return FrozenPass(model_output.clone(), features.cloned())
        return FrozenPass(model_output, features)

    def gradient_estimator_layout(self) -> dict:
        layout = {key: self.config[key] for key in UNET_LAYOUT_KEYS}
        layout.update(
            norm_eps=self.config.norm_eps,
            act_fn=self.config.act_fn,
            attention_head_dim=self.config.attention_head_dim,
            dropout=self.config.dropout,
            temb_channels=self.model.time_embedding.linear_2.out_features,
        )
        return layout

    def decoder_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return self.model.up_blocks.state_dict(), self.model.conv_norm_out.state_dict()


class UNet2DDenoiser(UNetDenoiser):
    """diffusers' unconditional `UNet2DModel` (`DDPMPipeline`, `DDIMPipeline`, `LDMPipeline`), asked as it is."""

    model_class = UNet2DModel

    @classmethod
    def check_config(cls, config: dict | FrozenDict) -> None:
        if config.get("time_embedding_type", "positional") not in SUPPORTED_TIME_EMBEDDINGS:
            raise ValueError(
                f"PDAE needs a UNet2DModel with time_embedding_type in {SUPPORTED_TIME_EMBEDDINGS}, got "
                f"{config['time_embedding_type']!r} (a 'fourier' UNet rescales its output by the timestep)."
            )
        if config.get("class_embed_type") is not None or config.get("num_class_embeds") is not None:
            raise ValueError(
                "PDAE turns an *unconditional* UNet2DModel into an autoencoder; this UNet has a class embedding "
                f"(class_embed_type={config.get('class_embed_type')!r}, "
                f"num_class_embeds={config.get('num_class_embeds')})."
            )
        check_block_types(config, "UNet2DModel")


def check_block_types(config: dict | FrozenDict, class_name: str, up_blocks=SUPPORTED_UP_BLOCKS) -> None:
    """Raise a `ValueError` naming a down, up or mid block of a UNet config that G cannot serve."""
    for kind, types, supported in (
        ("down", config["down_block_types"], SUPPORTED_DOWN_BLOCKS),
        ("up", config["up_block_types"], up_blocks),
    ):
        for block_type in types:
            if block_type not in supported:
                raise ValueError(
                    f"GradientEstimator cannot serve a {class_name} with {kind} block {block_type!r}; "
                    f"supported {kind} blocks are {supported}."
                )
    if config.get("mid_block_type", "UNetMidBlock2D") not in SUPPORTED_MID_BLOCKS:
        raise ValueError(
            f"GradientEstimator cannot serve a {class_name} with mid block {config['mid_block_type']!r}; "
            f"supported: {SUPPORTED_MID_BLOCKS}."
        )


# The adapters by the name of the class they serve: the one place a new family is added.
DENOISERS: dict[str, type[FrozenDenoiser]] = {"UNet2DModel": UNet2DDenoiser}
DENOISER_CLASS_NAMES = tuple(DENOISERS)
DENOISER_COMPONENT_NAMES = tuple(dict.fromkeys(adapter.component_name for adapter in DENOISERS.values()))


def denoiser_adapter(class_name: str) -> type[FrozenDenoiser]:
    """The adapter class for a model class name; a `ValueError` listing the served classes otherwise."""
    if class_name not in DENOISERS:
        raise ValueError(
            f"PDAE cannot serve a frozen {class_name}; it serves {', '.join(DENOISER_CLASS_NAMES)} (pre-trained "
            "diffusion models whose unconditional prediction can be asked for)."
        )
    return DENOISERS[class_name]


def frozen_denoiser(model: ModelMixin | FrozenDenoiser) -> FrozenDenoiser:
    """The adapter of a frozen model (an adapter is returned as it is)."""
    # By name: a saved folder's code files each bundle their own copy of this module (see remote_code).
    names = [cls.__name__ for cls in type(model).__mro__]
    if "FrozenDenoiser" in names:
        return model
    served = next((name for name in names if name in DENOISERS), type(model).__name__)  # subclasses too
    return denoiser_adapter(served)(model)


def stored_denoiser_class(pretrained_model_name_or_path: str, **load_kwargs) -> tuple[str, str]:
    """`(component name, class name)` of the frozen model a pipeline folder or Hub id holds, read from its
    `model_index.json` (the first served component listed there), else from `unet/config.json`."""
    index_path = os.path.join(pretrained_model_name_or_path, "model_index.json")
    if os.path.isdir(pretrained_model_name_or_path) and os.path.isfile(index_path):
        with open(index_path) as f:
            index = json.load(f)
        for name in DENOISER_COMPONENT_NAMES:
            entry = index.get(name)
            if isinstance(entry, list) and len(entry) == 2 and entry[1] is not None:
                return name, entry[1]
    component = DENOISER_COMPONENT_NAMES[0]
    config = UNet2DModel.load_config(pretrained_model_name_or_path, subfolder=component, **load_kwargs)
    return component, config.get("_class_name", "UNet2DModel")


def load_denoiser_model(pretrained_model_name_or_path: str, **load_kwargs) -> tuple[ModelMixin, dict]:
    """The frozen model of a pipeline folder or Hub id, loaded with its own class, and its config as stored.

    Raises:
        `OSError`: from diffusers, for what cannot be read.
        `ValueError`: for a config diffusers refuses, or a class PDAE does not serve (naming those it does).
    """
    component, class_name = stored_denoiser_class(pretrained_model_name_or_path, **load_kwargs)
    adapter = denoiser_adapter(class_name)
    stored = adapter.model_class.load_config(pretrained_model_name_or_path, subfolder=component, **load_kwargs)
    adapter.check_config(stored)
    model = adapter.model_class.from_pretrained(pretrained_model_name_or_path, subfolder=component, **load_kwargs)
    return model, stored


__all__ = [
    "DENOISERS",
    "DENOISER_CLASS_NAMES",
    "DENOISER_COMPONENT_NAMES",
    "FrozenDenoiser",
    "FrozenPass",
    "UNet2DDenoiser",
    "UNetDenoiser",
    "UNetFeatures",
    "config_sample_shape",
    "denoiser_adapter",
    "frozen_denoiser",
    "load_denoiser_model",
    "stored_denoiser_class",
]
