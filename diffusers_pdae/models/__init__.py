from .encoder import PDAEEncoder
from .gradient_estimator import GradientEstimator, GradientEstimatorOutput
from .unet_features import UNetFeatures, check_unet_supported, unet_forward_with_features

__all__ = [
    "GradientEstimator",
    "GradientEstimatorOutput",
    "PDAEEncoder",
    "UNetFeatures",
    "check_unet_supported",
    "unet_forward_with_features",
]
