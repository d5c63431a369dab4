from .autoencoder import ImageAutoencoderPipelineMixin
from .pipeline_diffae import DiffAEPipeline
from .pipeline_pdae import PDAEPipeline

__all__ = ["DiffAEPipeline", "ImageAutoencoderPipelineMixin", "PDAEPipeline"]
