from .diffae_unet import DiffAEUNet2DModel
from .encoder import PDAEEncoder, PDAEEncoderOutput
from .encoders import ENCODER_CLASSES, load_encoder
from .frozen_denoiser import (
    FrozenDenoiser,
    FrozenPass,
    TokenFeatures,
    UNetFeatures,
    frozen_denoiser,
    load_denoiser_model,
)
from .gradient_estimator import GradientEstimator, GradientEstimatorOutput
from .gradient_estimator_blocks import GradientEstimatorUpBlock, ZShiftResnetBlock2D
from .gradient_estimators import gradient_estimator_for, load_gradient_estimator
from .latent_sampler import LatentSampler, LatentSamplerOutput
from .pdae_prediction import pdae_noise_prediction
from .prompt_embedding import PromptEmbedding
from .residual_encoder import PDAEResidualEncoder
from .transformer_gradient_estimator import TransformerGradientEstimator
from .transformers_encoder import PDAETransformersEncoder

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
    "PromptEmbedding",
    "TokenFeatures",
    "TransformerGradientEstimator",
    "FrozenDenoiser",
    "FrozenPass",
    "UNetFeatures",
    "ZShiftResnetBlock2D",
    "frozen_denoiser",
    "gradient_estimator_for",
    "load_gradient_estimator",
    "load_encoder",
    "load_denoiser_model",
    "pdae_noise_prediction",
]
