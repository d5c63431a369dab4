from .encoder import PDAEEncoder, PDAEEncoderOutput
from .gradient_estimator import GradientEstimator, GradientEstimatorOutput
from .gradient_estimator_blocks import GradientEstimatorUpBlock, ZShiftResnetBlock2D
from .unet_features import UNetFeatures, check_unet_supported, unet_forward_with_features

__all__ = [
    "GradientEstimator",
    "GradientEstimatorOutput",
    "GradientEstimatorUpBlock",
    "PDAEEncoder",
    "PDAEEncoderOutput",
    "UNetFeatures",
    "ZShiftResnetBlock2D",
    "check_unet_supported",
    "unet_forward_with_features",
]
