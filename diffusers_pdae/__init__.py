"""diffusers-pdae: PDAE (Zhang, Zhao & Lin, NeurIPS 2022) for Hugging Face diffusers.

Importing this package makes `PDAEEncoder`, `GradientEstimator` and `PDAEPipeline` importable under the module paths
that saved pipelines record in their `model_index.json`, so `PDAEPipeline.from_pretrained(...)` can load them.
"""

from .data import load_mnist, load_mnist_arrays, mnist_to_tensor
from .models import GradientEstimator, PDAEEncoder, unet_forward_with_features
from .pdae_math import loss_weights, pdae_loss, shift_coefficients
from .pipelines import PDAEPipeline

__version__ = "0.1.0"

__all__ = [
    "GradientEstimator",
    "PDAEEncoder",
    "load_mnist",
    "load_mnist_arrays",
    "mnist_to_tensor",
    "PDAEPipeline",
    "loss_weights",
    "pdae_loss",
    "shift_coefficients",
    "unet_forward_with_features",
]
