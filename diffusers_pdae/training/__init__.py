"""The training tool behind `examples/train_dpm.py`, `train_pdae.py` and `train_latent_sampler.py`, one module per
concern:

- `run`: [`TrainingRun`], a run's life from its parsed flags to its released folder, the scripts' one entry point;
- `config`: [`TrainingConfig`], the typed settings; `args`: the shared command-line flags that fill it;
- `accelerator`: the `Accelerator` and what follows from it (seeds, dtypes, compilation); `output_dir`: claiming the
  output folder; `hub`: model cards and uploads;
- `loop`: [`TrainingLoop`]; `optimization`: optimiser, schedule and EMA; `checkpointing`: checkpoint files;
  `export`: a checkpoint made a pipeline;
- `objective`: what a PDAE step computes; `encoder_choice`: `train_pdae.py`'s encoder designs; `validation`: when
  validation runs and what it leaves; `diagnostics`: per-process reports.

This package exports what the scripts (`examples/`, `benchmarks/`) use; the rest is imported from its module.
"""

from .args import (
    add_data_args,
    add_optimization_args,
    add_output_args,
    finalize_args,
    finite_float,
    make_parser,
    positive_float,
    positive_int,
)
from .encoder_choice import add_encoder_args, build_encoder, check_encoder_args
from .hub import dpm_model_card, latent_sampler_model_card, pdae_model_card
from .objective import freeze, load_frozen_dpm, pdae_training_loss, sample_noise_and_timesteps
from .run import TrainingRun

__all__ = [
    "TrainingRun",
    "add_data_args",
    "add_encoder_args",
    "add_optimization_args",
    "add_output_args",
    "build_encoder",
    "check_encoder_args",
    "dpm_model_card",
    "finalize_args",
    "finite_float",
    "freeze",
    "latent_sampler_model_card",
    "load_frozen_dpm",
    "make_parser",
    "pdae_model_card",
    "pdae_training_loss",
    "positive_float",
    "positive_int",
    "sample_noise_and_timesteps",
]
