"""The life of a training run around the loop: Accelerate set-up, seeded noise, state to checkpoint, trackers, and
the release of the trained pipeline at the end. Both training scripts go through these, so they cannot drift apart.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
from collections.abc import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DynamoBackend, ProjectConfiguration, broadcast_object_list
from diffusers import DiffusionPipeline
from diffusers.training_utils import EMAModel

from ..file_utils import write_folder_atomically
from ..import_utils import require
from ..pipelines import PDAEPipeline
from .args import public_flags
from .checkpointing import register_checkpoint_hooks, resolve_resume_path
from .config import TrainingConfig
from .hub import HubError, create_hub_repo, release_folder
from .loop import TrainingLoop

logger = logging.getLogger(__name__)

TRACKER_VALUE_TYPES = (int, float, str, bool)
LOCK_FILE = ".training.lock"
# What --overwrite_output_dir removes of an earlier run before training (its pipeline files are replaced at the end).
EARLIER_RUN_ENTRIES = re.compile(r"^(checkpoint-\d+(\.tmp)?|ranks|validation|samples)$")
# Lock files this process holds (open handle, whether it created the file), kept referenced so that the locks last
# as long as the process.
_held_locks: dict[str, tuple] = {}


def make_accelerator(config: TrainingConfig) -> Accelerator:
    """An `Accelerator` configured from the shared flags, with a seedable sampler so data order can be resumed."""
    project_config = ProjectConfiguration(project_dir=config.output_dir, logging_dir=config.logging_path)
    require(config.logger, f"--logger {config.logger}")  # before anything runs, not at the first log
    return Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=config.logger,
        project_config=project_config,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )


def configure_logging(accelerator: Accelerator) -> None:
    """INFO logging on the main process (warnings and errors elsewhere), and the Accelerate state, as diffusers'
    training scripts print them."""
    import datasets
    import diffusers

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", force=True
    )
    main = accelerator.is_local_main_process
    logging.getLogger().setLevel(logging.INFO if main else logging.ERROR)
    datasets.utils.logging.set_verbosity_warning() if main else datasets.utils.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_info() if main else diffusers.utils.logging.set_verbosity_error()
    logger.info(accelerator.state)


def check_on_main_process(accelerator: Accelerator, check: Callable[[], str]) -> None:
    """Run `check` (returning an error message, or "" when all is well) on the main process only, and raise that
    `ValueError` on every process, so that all stop together instead of waiting for the main one forever."""
    message = [check() if accelerator.is_main_process else ""]
    if accelerator.num_processes > 1:
        broadcast_object_list(message, from_process=0)
    if message[0]:
        raise ValueError(message[0])


def start_hub_repo(accelerator: Accelerator, args: argparse.Namespace) -> str | None:
    """With `--push_to_hub`, create the repo now (as diffusers' scripts do), so a run that could not push stops
    before training. Returns the repo id (None without `--push_to_hub`)."""
    if not args.push_to_hub:
        return None
    repo_id = []

    def create() -> str:
        try:
            repo_id.append(create_hub_repo(args))
        except HubError as error:
            return str(error)
        return ""

    check_on_main_process(accelerator, create)
    return repo_id[0] if repo_id else None


def log_run_start(
    accelerator: Accelerator, config: TrainingConfig, schedule, num_examples: int, held_out: str | None = None
) -> None:
    """diffusers' "***** Running training *****" block, plus what is held out for validation."""
    total_batch = config.train_batch_size * accelerator.num_processes * config.gradient_accumulation_steps
    logger.info("***** Running training *****")
    logger.info(f"  Num examples = {num_examples}")
    if held_out:
        logger.info(f"  Held out for validation = {held_out}")
    logger.info(f"  Num Epochs = {schedule.num_epochs}")
    logger.info(f"  Instantaneous batch size per device = {config.train_batch_size}")
    logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch}")
    logger.info(f"  Gradient Accumulation steps = {config.gradient_accumulation_steps}")
    logger.info(f"  Total optimization steps = {schedule.max_train_steps}")


def claim_output_dir(accelerator: Accelerator, args: argparse.Namespace) -> None:
    """Make `args.output_dir` this run's, before anything is loaded or written, on every process alike.

    - A folder that already holds files (another run, or anything else) is refused unless `--resume_from_checkpoint`
      finds a checkpoint there to continue, or `--overwrite_output_dir` is given; the latter first deletes the earlier
      run's checkpoints, rank reports and validation images, so they cannot be pruned in place of the new run's or
      resumed by `latest` (its pipeline files and logs stay until this run replaces them).
    - The main process then holds an exclusive lock on `output_dir/.training.lock` until it exits (the operating
      system releases it even on SIGKILL), so a second trainer on the same folder stops with a clear error.

    Raises:
        `ValueError`: for a folder in use or holding something else, with what to do.
    """
    output_dir = args.output_dir
    existing = (
        sorted(name for name in os.listdir(output_dir) if name != LOCK_FILE) if os.path.isdir(output_dir) else []
    )
    resuming = args.resume_from_checkpoint is not None and resolve_resume_path(args.resume_from_checkpoint, output_dir)
    refusal = ""
    if existing and not resuming and not args.overwrite_output_dir:
        shown = ", ".join(existing[:5]) + (f", ... ({len(existing)} entries)" if len(existing) > 5 else "")
        refusal = (
            f"--output_dir {output_dir} is not empty ({shown}). Continue a run there with --resume_from_checkpoint "
            "latest, replace it with --overwrite_output_dir, or choose a new folder."
        )

    def claim() -> str:
        os.makedirs(output_dir, exist_ok=True)
        # The lock first, so a folder in use is reported as such rather than as merely "not empty".
        error = _acquire_lock(output_dir) or refusal
        if error:
            _release_lock(output_dir)  # leave a folder we refuse as we found it
            return error
        _held_locks[os.path.abspath(output_dir)][0].write(f"{os.getpid()}\n")
        _held_locks[os.path.abspath(output_dir)][0].flush()
        if existing and args.overwrite_output_dir and not resuming:
            for name in existing:
                if EARLIER_RUN_ENTRIES.match(name):
                    shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
        return ""

    check_on_main_process(accelerator, claim)


def release_output_dir(output_dir: str) -> None:
    """Drop this process's lock on `output_dir` and remove the lock file (at the end of a run)."""
    entry = _held_locks.pop(os.path.abspath(output_dir), None)
    if entry is not None:
        entry[0].close()
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(output_dir, LOCK_FILE))


def _acquire_lock(output_dir: str) -> str:
    """Take the folder's lock for this process; return an error message if another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        return ""
    key = os.path.abspath(output_dir)
    if key in _held_locks:  # this process holds it already
        return ""
    path = os.path.join(output_dir, LOCK_FILE)
    created = not os.path.exists(path)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        return (
            f"Another training run (process {owner}) is using --output_dir {output_dir}: wait for it to finish or "
            "choose another folder."
        )
    handle.seek(0)
    handle.truncate()
    _held_locks[key] = (handle, created)
    return ""


def _release_lock(output_dir: str) -> None:
    """Undo [`_acquire_lock`]: unlock, and remove the lock file if this process created it."""
    entry = _held_locks.pop(os.path.abspath(output_dir), None)
    if entry is None:
        return
    handle, created = entry
    handle.close()
    if created:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(output_dir, LOCK_FILE))


def seed_run(accelerator: Accelerator, seed: int) -> torch.Generator:
    """Seed the global RNG identically on every process (same initial weights) and return this process's own
    generator for training noise and timesteps (`seed + process_index`, so processes draw different noise)."""
    generator = torch.Generator().manual_seed(seed + accelerator.process_index)
    torch.manual_seed(seed)
    return generator


def weight_dtype(accelerator: Accelerator) -> torch.dtype:
    """The dtype frozen models are kept in under the run's mixed precision."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def compile_frozen_model(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """Apply Accelerate's dynamo setting (`accelerate launch --dynamo_backend ...`, or `ACCELERATE_DYNAMO_*`) to a
    model that is not passed to `accelerator.prepare`, such as the frozen UNet (nothing to train or wrap in DDP).

    `accelerator.prepare` compiles the trained models when dynamo is on; this compiles `model` the same way, in place
    (`nn.Module.compile`), so its class, weights and forward hooks stay those of the model.
    """
    if compiles(accelerator):
        model.compile(**accelerator.state.dynamo_plugin.to_kwargs())
    return model


def compiles(accelerator: Accelerator) -> bool:
    """Whether Accelerate's dynamo option is on, so `accelerator.prepare` compiles the models."""
    return accelerator.state.dynamo_plugin.backend != DynamoBackend.NO


def drop_last_batch(accelerator: Accelerator, dataset_size: int, batch_size: int) -> bool:
    """Whether the training DataLoader should drop an epoch's last, smaller batch: yes when Accelerate's dynamo
    option compiles the models, where a batch of another size recompiles them (a minute or more, each epoch start on
    CUDA graphs), as long as a full batch per process remains."""
    return compiles(accelerator) and dataset_size >= batch_size * accelerator.num_processes


def register_training_state(
    accelerator: Accelerator,
    named_models: dict[str, torch.nn.Module],
    named_emas: dict[str, EMAModel],
    noise_generator: torch.Generator,
    write_extras: Callable[[str], None] | None = None,
) -> None:
    """Make checkpoints hold every model, every EMA and each process's noise generator (all as safetensors) and the
    extras that turn one into a pipeline (see `examples/export_checkpoint.py`), and put the EMAs on the device."""
    register_checkpoint_hooks(accelerator, named_models, named_emas, noise_generator, write_extras)
    for ema_model in named_emas.values():
        ema_model.to(accelerator.device)


def tracker_config(args: argparse.Namespace) -> dict:
    """The flags as trackers can record them (tensorboard's hparams take numbers, strings and booleans only), without
    secrets."""
    return {
        name: value if isinstance(value, TRACKER_VALUE_TYPES) else str(value)
        for name, value in public_flags(args).items()
        if value is not None
    }


def start_trackers(accelerator: Accelerator, project_name: str, args: argparse.Namespace) -> None:
    """Start the trackers, on the main process (after [`claim_output_dir`])."""
    if accelerator.is_main_process:
        accelerator.init_trackers(project_name, config=tracker_config(args))


def save_trained_pipeline(
    accelerator: Accelerator, args: argparse.Namespace, build_pipeline: Callable[[], DiffusionPipeline]
) -> None:
    """Save the trained pipeline to `args.output_dir`, atomically, on the main process (after all processes are
    done); a `PDAEPipeline` with its code beside the weights."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        pipeline = build_pipeline()
        if isinstance(pipeline, PDAEPipeline):
            pipeline.save_pretrained(args.output_dir)
        else:
            write_folder_atomically(args.output_dir, pipeline.save_pretrained)
        logger.info(f"Saved {type(pipeline).__name__} to {args.output_dir}")


def release_run(
    accelerator: Accelerator,
    args: argparse.Namespace,
    loop: TrainingLoop,
    card_builder: Callable,
    extra_metrics: dict | None = None,
    grid_source: str | None = None,
    card_image: str = "validation.png",
    repo_id: str | None = None,
) -> None:
    """Finish the saved folder as a release (model card, `training_info.json`, `--push_to_hub`) on the main process,
    end the trackers and give the folder back. A failed upload raises [`HubError`] after everything is on disk.

    Args:
        card_builder: `pdae_model_card` or `dpm_model_card`.
        extra_metrics: figures for the card beside the final training loss (e.g. the last validation's).
        grid_source: a PNG to show in the card, copied into the folder as `card_image`.
        repo_id: from [`start_hub_repo`].
    """
    try:
        if accelerator.is_main_process:
            metrics = {"train_loss": loop.last_logs.get("loss"), **(extra_metrics or {})}
            release_folder(args, card_builder, metrics, loop.summary(), grid_source, card_image, repo_id)
    finally:
        accelerator.end_training()
        if accelerator.is_main_process:
            release_output_dir(args.output_dir)


def finish_run(
    accelerator: Accelerator,
    args: argparse.Namespace,
    loop: TrainingLoop,
    build_pipeline: Callable[[], DiffusionPipeline],
    card_builder: Callable,
    extra_metrics: dict | None = None,
    grid_source: str | None = None,
    card_image: str = "validation.png",
    repo_id: str | None = None,
) -> None:
    """[`save_trained_pipeline`], then [`release_run`]."""
    save_trained_pipeline(accelerator, args, build_pipeline)
    release_run(accelerator, args, loop, card_builder, extra_metrics, grid_source, card_image, repo_id)
