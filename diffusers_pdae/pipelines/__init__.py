from .pipeline_pdae import PDAEPipeline

__all__ = ["PDAEPipeline"]
