from .classifier_scores import classify, confident_fraction
from .critical_stage import CriticalStageResult, critical_stage_scores, mixed_sampling_sweep
from .diffusion_metrics import DiffusionCurves, diffusion_curves, one_step_predictions
from .digit_classifier import DigitClassifier, load_digit_classifier
from .frechet import classifier_frechet_distance, frechet_distance, gaussian_statistics
from .metrics import mse, psnr, ssim
from .probe import LinearProbeResult, linear_probe
from .subsets import stratified_indices

__all__ = [
    "CriticalStageResult",
    "DiffusionCurves",
    "DigitClassifier",
    "LinearProbeResult",
    "classifier_frechet_distance",
    "classify",
    "confident_fraction",
    "critical_stage_scores",
    "diffusion_curves",
    "frechet_distance",
    "gaussian_statistics",
    "linear_probe",
    "load_digit_classifier",
    "mixed_sampling_sweep",
    "mse",
    "one_step_predictions",
    "psnr",
    "ssim",
    "stratified_indices",
]
