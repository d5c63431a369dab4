"""Training helpers shared by the example scripts: flags, the Accelerate loop, checkpoints and the PDAE step."""

from .args import add_data_args, add_optimization_args, add_output_args, finalize_args
from .hub import dpm_model_card, files_to_upload, pdae_model_card, release_folder
from .loop import (
    GeneratorState,
    NonFiniteLossError,
    RankReport,
    TrainingLoop,
    TrainingSchedule,
    list_checkpoints,
    make_accelerator,
    make_ema,
    make_optimization,
    register_checkpoint_hooks,
    resolve_resume_path,
    save_checkpoint,
)
from .steps import freeze, pdae_training_loss, sample_timesteps

__all__ = [
    "GeneratorState",
    "NonFiniteLossError",
    "RankReport",
    "dpm_model_card",
    "files_to_upload",
    "pdae_model_card",
    "release_folder",
    "TrainingLoop",
    "TrainingSchedule",
    "add_data_args",
    "add_optimization_args",
    "add_output_args",
    "finalize_args",
    "freeze",
    "list_checkpoints",
    "make_accelerator",
    "make_ema",
    "make_optimization",
    "pdae_training_loss",
    "register_checkpoint_hooks",
    "resolve_resume_path",
    "sample_timesteps",
    "save_checkpoint",
]
