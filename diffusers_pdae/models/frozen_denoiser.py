"""The seam between PDAE and the frozen, pre-trained denoiser it serves: one adapter per model family.

PDAE needs three things from the frozen model: its prediction at (x_t, t) asked *without* a condition, the features
the gradient estimator G reads (taken during that same pass, so the model never runs twice), and its geometry (what
it denoises, in which dtype, under which pipeline component name). Everything that knows the model's class lives in
its adapter (`unet_denoisers`), as k-diffusion's `external.py` wraps each model family: the classes and configs it
serves (a clear error otherwise), the model's fixed unconditional inputs, its feature capture, the layout G copies
and the weights G may be warm-started from. Pipelines, training and evaluation reach the frozen model only through a
[`FrozenDenoiser`], built here by [`frozen_denoiser`].

Served today: diffusers' `UNet2DModel` (no condition), `UNet2DConditionModel` (Stable Diffusion: a fixed prompt's
embedding, the empty prompt by default, stored as a `PromptEmbedding`) and `DiTTransformer2DModel` (its null class).
"""

from __future__ import annotations

import json
import os

from diffusers import ModelMixin

from .denoiser_base import FrozenDenoiser, FrozenPass, UNetFeatures, config_sample_shape
from .dit_denoiser import DiTDenoiser, TokenFeatures
from .unet_denoisers import (
    SUPPORTED_DOWN_BLOCKS,
    SUPPORTED_MID_BLOCKS,
    SUPPORTED_UP_BLOCKS,
    UNET_LAYOUT_KEYS,
    UNet2DConditionDenoiser,
    UNet2DDenoiser,
)

# The adapters by the name of the class they serve: the one place a new family is added.
DENOISERS: dict[str, type[FrozenDenoiser]] = {
    "UNet2DModel": UNet2DDenoiser,
    "UNet2DConditionModel": UNet2DConditionDenoiser,
    "DiTTransformer2DModel": DiTDenoiser,
}

DENOISER_CLASS_NAMES = tuple(DENOISERS)

DENOISER_COMPONENT_NAMES = tuple(dict.fromkeys(adapter.component_name for adapter in DENOISERS.values()))
# The class names a pipeline's model_index.json may give each frozen-model component ("unet", "transformer").
DENOISER_CLASSES_BY_COMPONENT = {
    component: tuple(name for name, adapter in DENOISERS.items() if adapter.component_name == component)
    for component in DENOISER_COMPONENT_NAMES
}


def denoiser_adapter(class_name: str) -> type[FrozenDenoiser]:
    """The adapter class for a model class name; a `ValueError` listing the served classes otherwise."""
    if class_name not in DENOISERS:
        raise ValueError(
            f"PDAE cannot serve a frozen {class_name}; it serves {', '.join(DENOISER_CLASS_NAMES)} (pre-trained "
            "diffusion models whose unconditional prediction can be asked for)."
        )
    return DENOISERS[class_name]


def frozen_denoiser(model: ModelMixin | FrozenDenoiser, condition: ModelMixin | None = None) -> FrozenDenoiser:
    """The adapter of a frozen model (an adapter is returned as it is), asked with `condition` (a text-conditional
    UNet's `PromptEmbedding`; None for a model asked without one)."""
    # By name: a saved folder's code files each bundle their own copy of this module (see remote_code).
    names = [cls.__name__ for cls in type(model).__mro__]
    if "FrozenDenoiser" in names:
        return model
    served = next((name for name in names if name in DENOISERS), type(model).__name__)  # subclasses too
    return denoiser_adapter(served)(model, condition)


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
    config = UNet2DDenoiser.model_class.load_config(pretrained_model_name_or_path, subfolder=component, **load_kwargs)
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
    "DENOISER_CLASSES_BY_COMPONENT",
    "DENOISER_CLASS_NAMES",
    "DENOISER_COMPONENT_NAMES",
    "SUPPORTED_DOWN_BLOCKS",
    "SUPPORTED_MID_BLOCKS",
    "SUPPORTED_UP_BLOCKS",
    "UNET_LAYOUT_KEYS",
    "FrozenDenoiser",
    "FrozenPass",
    "TokenFeatures",
    "UNetFeatures",
    "config_sample_shape",
    "denoiser_adapter",
    "frozen_denoiser",
    "load_denoiser_model",
    "stored_denoiser_class",
]
