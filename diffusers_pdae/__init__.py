"""diffusers-pdae: PDAE (Zhang, Zhao & Lin, NeurIPS 2022) for Hugging Face diffusers.

Importing this package makes `PDAEEncoder`, `GradientEstimator` and `PDAEPipeline` (and the Diff-AE baseline's
`DiffAEUNet2DModel` and `DiffAEPipeline`) importable under the module paths that saved pipelines record in their
`model_index.json`, so `PDAEPipeline.from_pretrained(...)` and `DiffusionPipeline.from_pretrained(...)` can load them.

The top level holds the method only. Around it: `diffusers_pdae.training` (the Accelerate training tool),
`diffusers_pdae.evaluation` (dataset-agnostic metrics), `diffusers_pdae.data` (training datasets) and
`diffusers_pdae.bundled` (the MNIST digits and checkpoints that ship with the package).
"""

from .directions import AttributeDirection, fit_attribute_direction
from .models import (
    DiffAEUNet2DModel,
    FrozenDenoiser,
    GradientEstimator,
    LatentSampler,
    PDAEEncoder,
    PDAEResidualEncoder,
    PDAETransformersEncoder,
    TransformerGradientEstimator,
    frozen_denoiser,
    gradient_estimator_for,
    load_encoder,
    pdae_noise_prediction,
)
from .pdae_math import loss_weights, pdae_loss, shift_coefficients
from .pipelines import DiffAEPipeline, PDAEPipeline
from .pipelines.remote_code import register_with_diffusers

__version__ = "0.1.0"

# `DiffusionPipeline.from_pretrained(folder)` resolves saved pipelines to these installed classes.
register_with_diffusers(PDAEPipeline)
register_with_diffusers(DiffAEPipeline)

__all__ = [
    "AttributeDirection",
    "DiffAEPipeline",
    "DiffAEUNet2DModel",
    "FrozenDenoiser",
    "GradientEstimator",
    "LatentSampler",
    "PDAEEncoder",
    "PDAEPipeline",
    "PDAEResidualEncoder",
    "PDAETransformersEncoder",
    "TransformerGradientEstimator",
    "fit_attribute_direction",
    "frozen_denoiser",
    "gradient_estimator_for",
    "load_encoder",
    "loss_weights",
    "pdae_loss",
    "pdae_noise_prediction",
    "shift_coefficients",
]
