"""The training tool behind `examples/train_dpm.py`, `train_pdae.py` and `train_latent_sampler.py`, one module per
concern:

- `config`: [`TrainingConfig`], the typed settings; `args`: the shared command-line flags that fill it;
- `run`: Accelerate set-up, seeding, trackers, and the release of the trained pipeline;
- `loop`: [`TrainingLoop`]; `optimization`: optimiser, schedule and EMA; `checkpointing`: checkpoint files;
- `objective`: what a PDAE step computes; `validation`: when validation runs and what it leaves;
- `diagnostics`: per-process reports; `hub`: model cards and uploads.
"""

from .args import (
    SECRET_FLAGS,
    HelpFormatter,
    add_data_args,
    add_optimization_args,
    add_output_args,
    finalize_args,
    finite_float,
    make_parser,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    public_flags,
)
from .checkpointing import (
    check_resumable,
    list_checkpoints,
    load_generator_state,
    register_checkpoint_hooks,
    resolve_resume_path,
    save_checkpoint,
    save_generator_state,
    unwrap_model,
)
from .config import TrainingConfig
from .diagnostics import RankReport
from .hub import dpm_model_card, files_to_upload, latent_sampler_model_card, pdae_model_card, release_folder
from .loop import NonFiniteLossError, TrainingLoop
from .objective import freeze, load_frozen_dpm, pdae_training_loss, sample_noise_and_timesteps, sample_timesteps
from .optimization import TrainingSchedule, averaged_model, make_ema, make_optimization
from .run import (
    check_on_main_process,
    claim_output_dir,
    compile_frozen_model,
    configure_logging,
    drop_last_batch,
    finish_run,
    log_run_start,
    make_accelerator,
    register_training_state,
    release_run,
    save_trained_pipeline,
    seed_run,
    start_hub_repo,
    start_trackers,
    tracker_config,
    weight_dtype,
)
from .validation import PeriodicValidation

__all__ = [
    "PeriodicValidation",
    "SECRET_FLAGS",
    "HelpFormatter",
    "NonFiniteLossError",
    "RankReport",
    "TrainingConfig",
    "TrainingLoop",
    "TrainingSchedule",
    "add_data_args",
    "add_optimization_args",
    "add_output_args",
    "averaged_model",
    "check_resumable",
    "check_on_main_process",
    "claim_output_dir",
    "configure_logging",
    "drop_last_batch",
    "dpm_model_card",
    "files_to_upload",
    "finalize_args",
    "finite_float",
    "finish_run",
    "freeze",
    "list_checkpoints",
    "load_frozen_dpm",
    "log_run_start",
    "load_generator_state",
    "compile_frozen_model",
    "make_accelerator",
    "make_ema",
    "make_optimization",
    "make_parser",
    "non_negative_float",
    "non_negative_int",
    "latent_sampler_model_card",
    "pdae_model_card",
    "pdae_training_loss",
    "positive_float",
    "positive_int",
    "public_flags",
    "register_checkpoint_hooks",
    "register_training_state",
    "release_run",
    "release_folder",
    "resolve_resume_path",
    "sample_noise_and_timesteps",
    "sample_timesteps",
    "save_checkpoint",
    "save_trained_pipeline",
    "save_generator_state",
    "seed_run",
    "start_hub_repo",
    "start_trackers",
    "tracker_config",
    "unwrap_model",
    "weight_dtype",
]
