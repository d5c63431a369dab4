"""The training tool behind `examples/train_dpm.py`, `train_pdae.py` and `train_latent_sampler.py`, one module per
concern:

- `run`: [`TrainingRun`], a run's life from its parsed flags to its released folder, the scripts' one entry point;
- `config`: [`TrainingConfig`], the typed settings; `args`: the shared command-line flags that fill it;
- `accelerator`: the `Accelerator` and what follows from it (seeds, dtypes, compilation); `output_dir`: claiming the
  output folder; `hub`: model cards and uploads;
- `loop`: [`TrainingLoop`]; `optimization`: optimiser, schedule and EMA; `checkpointing`: checkpoint files;
  `export`: a checkpoint made a pipeline;
- `objective`: what a PDAE step computes; `encoder_choice`: `train_pdae.py`'s encoder designs; `validation`: when
  validation runs and what it leaves; `diagnostics`: per-process reports;
- `autoencoders`: a latent diffusion model's autoencoder (loading it, its training loss, the latent scaling factor,
  the geometry of a UNet on its latents); `latent_cards`: the model cards of autoencoders and LDMs.

This package exports what the scripts (`examples/`, `benchmarks/`) use; the rest is imported from its module.
"""

from .args import (
    add_data_args,
    add_optimization_args,
    add_output_args,
    add_streaming_args,
    add_vae_scaling_factor_arg,
    finalize_args,
    finite_float,
    make_parser,
    non_negative_float,
    positive_float,
    positive_int,
)
from .autoencoders import (
    AutoencoderObjective,
    encode_batch,
    latent_scaling_factor,
    latent_unet_geometry,
    load_autoencoder,
)
from .cards import dpm_model_card, latent_sampler_model_card, pdae_model_card
from .encoder_choice import add_encoder_args, build_encoder, check_encoder_args
from .latent_cards import autoencoder_model_card, ldm_model_card, text_to_image_model_card
from .objective import (
    as_stored_components,
    clean_samples,
    freeze,
    frozen_components,
    load_frozen_autoencoder,
    load_frozen_dpm,
    pdae_training_loss,
    sample_noise_and_timesteps,
)
from .paths import check_path_flags
from .run import TrainingRun
from .stored_config import as_stored

__all__ = [
    "as_stored",
    "as_stored_components",
    "AutoencoderObjective",
    "TrainingRun",
    "add_data_args",
    "add_encoder_args",
    "add_optimization_args",
    "add_output_args",
    "add_streaming_args",
    "add_vae_scaling_factor_arg",
    "autoencoder_model_card",
    "build_encoder",
    "check_path_flags",
    "check_encoder_args",
    "clean_samples",
    "dpm_model_card",
    "encode_batch",
    "finalize_args",
    "finite_float",
    "freeze",
    "latent_sampler_model_card",
    "latent_scaling_factor",
    "latent_unet_geometry",
    "ldm_model_card",
    "text_to_image_model_card",
    "load_autoencoder",
    "frozen_components",
    "load_frozen_autoencoder",
    "load_frozen_dpm",
    "make_parser",
    "non_negative_float",
    "pdae_model_card",
    "pdae_training_loss",
    "positive_float",
    "positive_int",
    "sample_noise_and_timesteps",
]
