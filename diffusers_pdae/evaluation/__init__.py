"""Dataset-agnostic measurements of a PDAE pipeline: image metrics, linear probes, Frechet distance, reconstruction,
per-timestep diffusion loss and posterior-mean gap and mixed sampling (the critical stage). Attribute directions are
part of the method: `diffusers_pdae.directions`.

Nothing here knows a dataset: images are tensors in [-1, 1] (or [0, 1] for the image metrics), labels are integer
tensors. scikit-learn (the `[eval]` extra) is imported only by the functions that fit a linear model.
"""

from .critical_stage import PAPER_CRITICAL_STAGE, CriticalStageResult, critical_stage_scores, mixed_sampling_sweep
from .diffusion_metrics import DiffusionCurves, curve_timesteps, diffusion_curves, one_step_predictions
from .frechet import features_frechet_distance, frechet_distance, gaussian_statistics
from .metrics import mse, psnr, ssim
from .probe import LinearProbeResult, linear_probe
from .reconstruction import RECONSTRUCTION_KINDS, format_reconstruction_table, reconstruction_study
from .subsets import stratified_indices

__all__ = [
    "PAPER_CRITICAL_STAGE",
    "RECONSTRUCTION_KINDS",
    "CriticalStageResult",
    "DiffusionCurves",
    "LinearProbeResult",
    "critical_stage_scores",
    "curve_timesteps",
    "diffusion_curves",
    "format_reconstruction_table",
    "features_frechet_distance",
    "frechet_distance",
    "gaussian_statistics",
    "linear_probe",
    "mixed_sampling_sweep",
    "mse",
    "one_step_predictions",
    "psnr",
    "reconstruction_study",
    "ssim",
    "stratified_indices",
]
