from .diffae_unet import DiffAEUNet2DModel
from .encoder import PDAEEncoder, PDAEEncoderOutput
from .encoders import ENCODER_CLASSES, load_encoder
from .gradient_estimator import GradientEstimator, GradientEstimatorOutput
from .gradient_estimator_blocks import GradientEstimatorUpBlock, ZShiftResnetBlock2D
from .latent_sampler import LatentSampler, LatentSamplerOutput
from .residual_encoder import PDAEResidualEncoder
from .transformers_encoder import PDAETransformersEncoder
from .unet_features import UNetFeatures, check_unet_supported, unet_forward_with_features

__all__ = [
    "ENCODER_CLASSES",
    "DiffAEUNet2DModel",
    "GradientEstimator",
    "GradientEstimatorOutput",
    "GradientEstimatorUpBlock",
    "LatentSampler",
    "LatentSamplerOutput",
    "PDAEEncoder",
    "PDAEEncoderOutput",
    "PDAEResidualEncoder",
    "PDAETransformersEncoder",
    "UNetFeatures",
    "ZShiftResnetBlock2D",
    "check_unet_supported",
    "load_encoder",
    "unet_forward_with_features",
]
