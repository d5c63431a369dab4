"""The life of a training run around the loop: Accelerate set-up, seeded noise, state to checkpoint, trackers, and
the release of the trained pipeline at the end. Both training scripts go through these, so they cannot drift apart.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration
from diffusers import DiffusionPipeline
from diffusers.training_utils import EMAModel

from .checkpointing import GeneratorState, register_checkpoint_hooks
from .config import TrainingConfig
from .hub import release_folder
from .loop import TrainingLoop

logger = logging.getLogger(__name__)

TRACKER_VALUE_TYPES = (int, float, str, bool)


def make_accelerator(config: TrainingConfig) -> Accelerator:
    """An `Accelerator` configured from the shared flags, with a seedable sampler so data order can be resumed."""
    project_config = ProjectConfiguration(project_dir=config.output_dir, logging_dir=config.logging_path)
    log_with = config.logger
    if log_with == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            logger.warning("tensorboard is not installed (pip install tensorboard); scalars will not be logged.")
            log_with = None
    return Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=log_with,
        project_config=project_config,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )


def seed_run(accelerator: Accelerator, seed: int) -> torch.Generator:
    """Seed the global RNG identically on every process (same initial weights) and return this process's own
    generator for training noise and timesteps (`seed + process_index`, so processes draw different noise)."""
    generator = torch.Generator().manual_seed(seed + accelerator.process_index)
    torch.manual_seed(seed)
    return generator


def weight_dtype(accelerator: Accelerator) -> torch.dtype:
    """The dtype frozen models are kept in under the run's mixed precision."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def register_training_state(
    accelerator: Accelerator,
    named_models: dict[str, torch.nn.Module],
    named_emas: dict[str, EMAModel],
    noise_generator: torch.Generator,
) -> None:
    """Make checkpoints hold every model, every EMA and the noise generator, and put the EMAs on the device."""
    register_checkpoint_hooks(accelerator, named_models, named_emas)
    accelerator.register_for_checkpointing(GeneratorState(noise_generator))
    for ema_model in named_emas.values():
        ema_model.to(accelerator.device)


def tracker_config(args: argparse.Namespace) -> dict:
    """The flags as trackers can record them (tensorboard's hparams take numbers, strings and booleans only)."""
    return {
        name: value if isinstance(value, TRACKER_VALUE_TYPES) else str(value)
        for name, value in vars(args).items()
        if value is not None
    }


def start_trackers(accelerator: Accelerator, project_name: str, args: argparse.Namespace) -> None:
    """Create the output folder and start the trackers, on the main process."""
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        accelerator.init_trackers(project_name, config=tracker_config(args))


def finish_run(
    accelerator: Accelerator,
    args: argparse.Namespace,
    loop: TrainingLoop,
    build_pipeline: Callable[[], DiffusionPipeline],
    card_builder: Callable,
    extra_metrics: dict | None = None,
    grid_source: str | None = None,
    card_image: str = "validation.png",
) -> None:
    """Save the trained pipeline to `args.output_dir` and finish the folder as a release (model card,
    `training_info.json`, `--push_to_hub`), on the main process; then end the trackers.

    Args:
        build_pipeline: returns the pipeline to save (float32, EMA weights where kept).
        card_builder: `pdae_model_card` or `dpm_model_card`.
        extra_metrics: figures for the card beside the final training loss.
        grid_source: a PNG to show in the card, copied into the folder as `card_image`.
    """
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        pipeline = build_pipeline()
        pipeline.save_pretrained(args.output_dir)
        metrics = {"train_loss": loop.last_logs.get("loss"), **(extra_metrics or {})}
        release_folder(args, card_builder, metrics, loop.summary(), grid_source, card_image)
        accelerator.print(f"Saved {type(pipeline).__name__} to {args.output_dir}")
    accelerator.end_training()
