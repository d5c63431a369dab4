"""The training tool behind `examples/train_dpm.py` and `examples/train_pdae.py`, one module per concern:

- `config`: [`TrainingConfig`], the typed settings; `args`: the shared command-line flags that fill it;
- `run`: Accelerate set-up, seeding, trackers, and the release of the trained pipeline;
- `loop`: [`TrainingLoop`]; `optimization`: optimiser, schedule and EMA; `checkpointing`: checkpoint files;
- `objective`: what a PDAE step computes; `diagnostics`: per-process reports; `hub`: model cards and uploads.
"""

from .args import add_data_args, add_optimization_args, add_output_args, finalize_args
from .checkpointing import (
    GeneratorState,
    list_checkpoints,
    register_checkpoint_hooks,
    resolve_resume_path,
    save_checkpoint,
)
from .config import TrainingConfig
from .diagnostics import RankReport
from .hub import dpm_model_card, files_to_upload, pdae_model_card, release_folder
from .loop import NonFiniteLossError, TrainingLoop
from .objective import freeze, pdae_training_loss, sample_noise_and_timesteps, sample_timesteps
from .optimization import TrainingSchedule, averaged_model, make_ema, make_optimization
from .run import (
    finish_run,
    make_accelerator,
    register_training_state,
    seed_run,
    start_trackers,
    tracker_config,
    weight_dtype,
)

__all__ = [
    "GeneratorState",
    "NonFiniteLossError",
    "RankReport",
    "TrainingConfig",
    "TrainingLoop",
    "TrainingSchedule",
    "add_data_args",
    "add_optimization_args",
    "add_output_args",
    "averaged_model",
    "dpm_model_card",
    "files_to_upload",
    "finalize_args",
    "finish_run",
    "freeze",
    "list_checkpoints",
    "make_accelerator",
    "make_ema",
    "make_optimization",
    "pdae_model_card",
    "pdae_training_loss",
    "register_checkpoint_hooks",
    "register_training_state",
    "release_folder",
    "resolve_resume_path",
    "sample_noise_and_timesteps",
    "sample_timesteps",
    "save_checkpoint",
    "seed_run",
    "start_trackers",
    "tracker_config",
    "weight_dtype",
]
