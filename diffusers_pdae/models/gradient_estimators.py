"""The gradient estimator designs by what they read from the frozen model: a UNet's encoder-half features
([`GradientEstimator`], its decoder half) or a diffusion transformer's tokens ([`TransformerGradientEstimator`])."""

from __future__ import annotations

from diffusers import ModelMixin

from .frozen_denoiser import FrozenDenoiser, frozen_denoiser
from .gradient_estimator import GradientEstimator
from .transformer_gradient_estimator import TransformerGradientEstimator

GRADIENT_ESTIMATORS = {"unet": GradientEstimator, "tokens": TransformerGradientEstimator}
GRADIENT_ESTIMATOR_CLASSES = {cls.__name__: cls for cls in GRADIENT_ESTIMATORS.values()}
GradientEstimatorModel = GradientEstimator | TransformerGradientEstimator


def gradient_estimator_class(denoiser: FrozenDenoiser | ModelMixin) -> type[GradientEstimatorModel]:
    """The G design that reads what the frozen model yields."""
    return GRADIENT_ESTIMATORS[frozen_denoiser(denoiser).feature_kind]


def gradient_estimator_for(denoiser: FrozenDenoiser | ModelMixin, **kwargs) -> GradientEstimatorModel:
    """A fresh G for the frozen model (`from_denoiser` of its design, with `kwargs`)."""
    return gradient_estimator_class(denoiser).from_denoiser(denoiser, **kwargs)


def load_gradient_estimator(pretrained_model_name_or_path: str, **kwargs) -> GradientEstimatorModel:
    """Any design's saved folder (`subfolder=` as `from_pretrained` takes it), by the class its config names."""
    config = GradientEstimator.load_config(pretrained_model_name_or_path, **kwargs)
    name = config.get("_class_name", "GradientEstimator")
    if name not in GRADIENT_ESTIMATOR_CLASSES:
        raise ValueError(
            f"{pretrained_model_name_or_path} holds a {name}, not a gradient estimator "
            f"({', '.join(GRADIENT_ESTIMATOR_CLASSES)})."
        )
    return GRADIENT_ESTIMATOR_CLASSES[name].from_pretrained(pretrained_model_name_or_path, **kwargs)
