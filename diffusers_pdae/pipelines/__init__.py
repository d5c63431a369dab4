from .autoencoder import ImageAutoencoderPipelineMixin
from .folder_checks import check_weights_fit_config, weights_digest
from .pipeline_diffae import DiffAEPipeline
from .pipeline_pdae import PDAEPipeline

__all__ = [
    "DiffAEPipeline",
    "ImageAutoencoderPipelineMixin",
    "PDAEPipeline",
    "check_weights_fit_config",
    "weights_digest",
]
