from .encoder import PDAEEncoder, PDAEEncoderOutput
from .gradient_estimator import GradientEstimator, GradientEstimatorOutput
from .gradient_estimator_blocks import GradientEstimatorUpBlock, ZShiftResnetBlock2D
from .latent_sampler import LatentSampler, LatentSamplerOutput
from .unet_features import UNetFeatures, check_unet_supported, unet_forward_with_features

__all__ = [
    "GradientEstimator",
    "GradientEstimatorOutput",
    "GradientEstimatorUpBlock",
    "LatentSampler",
    "LatentSamplerOutput",
    "PDAEEncoder",
    "PDAEEncoderOutput",
    "UNetFeatures",
    "ZShiftResnetBlock2D",
    "check_unet_supported",
    "unet_forward_with_features",
]
