"""Checkpoints of a training run: written atomically, pruned, found again, and restored exactly.

A checkpoint is written to `checkpoint-N.tmp` and renamed to `checkpoint-N` only once complete, so
`--resume_from_checkpoint latest` never picks a half-written one. Each model (and EMA) is saved with
`save_pretrained` in its own safetensors subfolder through Accelerate's save/load hooks, and so is each process's
noise generator (`noise_generator_<rank>.safetensors`): nothing of ours is pickled. (Accelerate's own optimizer,
scheduler and RNG files are read with `torch.load(weights_only=True)`, which refuses code; we never register custom
objects with `accelerator.register_for_checkpointing`, whose pickles Accelerate reads with `weights_only=False`.)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
PICKLED_CUSTOM_STATE = re.compile(r"^custom_checkpoint_\d+\.pkl$")
PIPELINE_FILE = "pipeline.json"


RUN_FLAGS_FILE = "training_flags.json"
# Flags a resumed run may change: how long it runs, where and how often it saves and reports, not what it trains.
FLAGS_A_RESUME_MAY_CHANGE = frozenset(
    {
        "max_train_steps", "num_epochs", "max_train_minutes", "resume_from_checkpoint", "overwrite_output_dir",
        "output_dir", "logging_dir", "logger", "report_ranks", "dataloader_num_workers", "cache_dir",
        "skip_image_check", "checkpointing_steps", "checkpoints_total_limit", "save_images_epochs",
        "save_model_epochs", "validation_steps", "validation_inference_steps", "num_validation_images",
        "eval_batch_size", "ddpm_num_inference_steps", "num_validation_codes", "push_to_hub", "hub_model_id",
        "hub_private_repo", "local_rank", "shuffle_buffer_size", "nccl_timeout",
    }
)  # fmt: skip


def write_run_flags(folder: str, flags: dict) -> None:
    """Record the run's flags (public ones only) in a checkpoint, so that a resume with other flags is named."""
    with open(os.path.join(folder, RUN_FLAGS_FILE), "w") as f:
        json.dump(flags, f, indent=2, sort_keys=True, default=str)


def read_run_flags(folder: str) -> dict:
    """The flags recorded in a checkpoint by [`write_run_flags`] (empty for checkpoints written before)."""
    path = os.path.join(folder, RUN_FLAGS_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def check_resume(path: str, flags: dict, max_train_steps: int | None) -> None:
    """Before anything is built: `path` is a checkpoint folder itself, the resumed run trains what the checkpoint's
    run trained (its flags, but for `FLAGS_A_RESUME_MAY_CHANGE`), and it does not end before the checkpoint's step.

    Raises:
        `ValueError`: naming the flag or path and what to pass instead.
    """
    path = os.path.normpath(path)
    if CHECKPOINT_PATTERN.match(os.path.basename(path)) is None:
        inside = next((p for p in _parents(path) if CHECKPOINT_PATTERN.match(os.path.basename(p))), None)
        where = f"points inside {inside}: pass {inside} itself" if inside else "is not a checkpoint-<step> folder"
        raise ValueError(f"--resume_from_checkpoint {path} {where} (or 'latest', or a checkpoint's name).")
    step = step_of_checkpoint(path)
    if max_train_steps is not None and step > max_train_steps:
        raise ValueError(
            f"{path} is at step {step}, past --max_train_steps {max_train_steps}: resuming would train nothing and "
            f"release that run's weights under this run's flags. Pass --max_train_steps above {step} to train further."
        )
    recorded = read_run_flags(path)
    recorded_path = os.path.join(path, RUN_FLAGS_FILE)
    now = json.loads(json.dumps(flags, default=str))
    changed = [
        f"--{name} {now.get(name)!r} (the run's: {value!r})"
        for name, value in sorted(recorded.items())
        if name not in FLAGS_A_RESUME_MAY_CHANGE and name in now and now[name] != value
    ]
    if changed:
        raise ValueError(
            f"Resuming {path} with other training flags: {'; '.join(changed)}. A resumed run continues the same "
            f"training: pass the run's flags (in {recorded_path}), or start a new run in another --output_dir."
        )


def random_states_readable(path: str, process_index: int) -> bool:
    """Whether this process's `random_states_<rank>.pkl` in a checkpoint loads, read as Accelerate reads it (its
    `load`: `torch.load(weights_only=True)`, which refuses any object that could run code)."""
    from accelerate.utils import load

    try:
        load(os.path.join(path, f"random_states_{process_index}.pkl"))
    except Exception:  # whatever Accelerate itself would fail on (missing, truncated, not a pickle)
        return False
    return True


def _parents(path: str) -> list[str]:
    parents = []
    while os.path.dirname(path) not in ("", path):
        path = os.path.dirname(path)
        parents.append(path)
    return parents


def generator_state_file(folder: str, process_index: int) -> str:
    return os.path.join(folder, f"noise_generator_{process_index}.safetensors")


def write_checkpoint_description(folder: str, kind: str, scheduler, pretrained_model_name_or_path: str | None) -> None:
    """What [`~diffusers_pdae.training.export.export_checkpoint`] needs besides the trained weights: the pipeline
    `kind` ("pdae", "ddpm", "ldm", "latent_sampler" or "autoencoder"), the training scheduler's config (an autoencoder
    has none) and, for PDAE, the frozen DPM it was trained on (for a latent sampler, the PDAE pipeline it samples
    codes for; for an LDM, its frozen autoencoder)."""
    if scheduler is not None:
        scheduler.save_pretrained(os.path.join(folder, "scheduler"))
    with open(os.path.join(folder, PIPELINE_FILE), "w") as f:
        json.dump({"kind": kind, "pretrained_model_name_or_path": pretrained_model_name_or_path}, f, indent=2)


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoint folders in `output_dir`, oldest first (temporary `*.tmp` folders are ignored)."""
    if not os.path.isdir(output_dir):
        return []
    names = [name for name in os.listdir(output_dir) if CHECKPOINT_PATTERN.match(name)]
    return sorted(names, key=lambda name: int(CHECKPOINT_PATTERN.match(name).group(1)))


class OutputWriteError(OSError):
    """A checkpoint or the pipeline could not be written (a full disk, a quota, a vanished file system); what was
    there before is kept."""


def is_write_failure(error: BaseException) -> bool:
    """Whether `error` is a file that could not be written: an `OSError` (no space, quota, I/O), safetensors'
    `SafetensorError`, or `torch.save`'s `RuntimeError` ("file write failed")."""
    if isinstance(error, (OSError, SafetensorError)):
        return True
    return isinstance(error, RuntimeError) and "write" in str(error).lower()


def save_checkpoint(accelerator: Accelerator, output_dir: str, global_step: int, total_limit: int | None) -> str:
    """Save the full training state to `output_dir/checkpoint-{global_step}` atomically and prune old ones.

    Raises:
        [`OutputWriteError`]: on every process, when some process could not write its part (the half-written
            folder is removed, earlier checkpoints are kept), naming the cause and how to go on.
    """
    final_dir = os.path.join(output_dir, f"checkpoint-{global_step}")
    temporary_dir = final_dir + ".tmp"
    if accelerator.is_main_process:
        shutil.rmtree(temporary_dir, ignore_errors=True)
    accelerator.wait_for_everyone()
    failure = ""
    try:
        accelerator.save_state(temporary_dir)
    except (OSError, SafetensorError, RuntimeError) as error:  # every process must hear of it, or the others wait
        if not is_write_failure(error):
            raise
        failure = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else error!r}"
    failed = torch.tensor([float(bool(failure))], device=accelerator.device)
    if accelerator.num_processes > 1:
        failed = accelerator.reduce(failed, reduction="max")
    if failed.item():
        raise_checkpoint_write_error(accelerator, output_dir, temporary_dir, failure)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final_dir, ignore_errors=True)
        os.replace(temporary_dir, final_dir)
        if total_limit is not None:
            for name in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(os.path.join(output_dir, name))
        logger.info(f"Saved state to {final_dir}")
    accelerator.wait_for_everyone()
    return final_dir


def raise_checkpoint_write_error(accelerator: Accelerator, output_dir: str, temporary_dir: str, failure: str) -> None:
    """Remove a checkpoint that could not be written completely and raise [`OutputWriteError`] saying why, what is
    kept and how to go on."""
    if accelerator.is_main_process:
        shutil.rmtree(temporary_dir, ignore_errors=True)
    kept = list_checkpoints(output_dir)
    last = f"the last complete one, {kept[-1]}, is kept" if kept else "no earlier checkpoint exists"
    cause = failure or "another process failed to write its part"
    raise OutputWriteError(
        f"Could not write {os.path.basename(temporary_dir)[:-4]} to --output_dir {output_dir} ({cause}); the "
        f"half-written folder was removed and {last}. Free space on that disk (or raise the quota), then rerun with "
        "--resume_from_checkpoint latest."
    )


def resolve_resume_path(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """The checkpoint folder to resume from: `latest` means the newest complete one in `output_dir` (or none); a
    bare name such as `checkpoint-6` is looked up in `output_dir` first, as diffusers' scripts do."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return os.path.join(output_dir, checkpoints[-1]) if checkpoints else None
    inside = os.path.join(output_dir, resume_from_checkpoint)
    if os.path.isdir(inside):
        return inside
    if os.path.isdir(resume_from_checkpoint):
        return resume_from_checkpoint
    available = ", ".join(list_checkpoints(output_dir)) or "none"
    raise FileNotFoundError(
        f"Checkpoint {resume_from_checkpoint!r} is neither in --output_dir {output_dir} (checkpoints there: "
        f"{available}) nor a folder; pass one of those names, 'latest', or a checkpoint folder."
    )


def step_of_checkpoint(path: str) -> int:
    """The global step a `checkpoint-<step>` folder was saved at."""
    match = CHECKPOINT_PATTERN.match(os.path.basename(os.path.normpath(path)))
    if match is None:
        raise ValueError(f"{path!r} is not a checkpoint-<step> folder.")
    return int(match.group(1))


def check_resumable(path: str, num_processes: int) -> None:
    """Refuse, with a message saying why and what to do, a checkpoint this version cannot resume exactly and safely.

    Raises:
        `ValueError`: if the folder holds a pickled custom state (`custom_checkpoint_*.pkl`, written by versions that
            registered the noise generator with Accelerate, or planted: unpickling it could run code, so it is never
            read), or lacks the noise-generator state of one of the `num_processes` processes.
    """
    names = os.listdir(path)
    pickled = sorted(name for name in names if PICKLED_CUSTOM_STATE.match(name))
    if pickled:
        raise ValueError(
            f"{path} holds {', '.join(pickled)}: a pickle, which can run code when loaded, so it is never read. "
            "Checkpoints of this version keep that state in noise_generator_<rank>.safetensors; start a new run (or "
            "resume from a checkpoint this version wrote)."
        )
    missing = [
        os.path.basename(generator_state_file(path, rank))
        for rank in range(num_processes)
        if not os.path.isfile(generator_state_file(path, rank))
    ]
    if missing:
        raise ValueError(
            f"{path} lacks {', '.join(missing)}, the noise-generator state of each training process, so it cannot be "
            f"resumed exactly with {num_processes} process(es). It was written by another version or another number "
            "of processes; resume with the number of processes that wrote it, or start a new run."
        )


def save_generator_state(generator: torch.Generator, folder: str, process_index: int) -> None:
    """Write a generator's state to `noise_generator_<process_index>.safetensors` in `folder`."""
    os.makedirs(folder, exist_ok=True)
    save_file({"state": generator.get_state()}, generator_state_file(folder, process_index))


def load_generator_state(generator: torch.Generator, folder: str, process_index: int) -> None:
    """Restore a generator saved by [`save_generator_state`], refusing a file that is not such a state."""
    path = generator_state_file(folder, process_index)
    expected = generator.get_state()
    try:
        state = load_file(path).get("state")
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}); the checkpoint is damaged.") from error
    if state is None or state.dtype != expected.dtype or state.shape != expected.shape:
        raise ValueError(
            f"{path} does not hold a torch.Generator state (expected a {expected.dtype} tensor of shape "
            f"{tuple(expected.shape)}); the checkpoint is damaged or was altered."
        )
    try:
        generator.set_state(state)
    except RuntimeError as error:
        raise ValueError(f"{path} holds an invalid generator state ({error}); the checkpoint is damaged.") from error


def unwrap_model(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """The model itself: without the DDP / mixed-precision wrappers of `accelerator.prepare` and without the
    `torch.compile` wrapper it adds under `--dynamo_backend`, as diffusers' training scripts unwrap it."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def register_checkpoint_hooks(
    accelerator: Accelerator,
    named_models: dict[str, torch.nn.Module],
    named_emas: dict[str, EMAModel],
    noise_generator: torch.Generator | None = None,
    write_extras: Callable[[str], None] | None = None,
) -> None:
    """Make `accelerator.save_state` write each model (and EMA) to its own safetensors subfolder and each process's
    noise generator to its own safetensors file, and load them back.

    Args:
        named_models: subfolder name -> model, as passed to `accelerator.prepare` (unwrapped or not).
        named_emas: subfolder name -> EMA (created with `model_cls` and `model_config`).
        noise_generator: this process's generator of training noise and timesteps, if any.
        write_extras: writes what else a checkpoint needs to become a pipeline (scheduler config, the frozen DPM's
            name), into the checkpoint folder it is given, on the main process.
    """
    by_identity = {id(unwrap_model(accelerator, model)): name for name, model in named_models.items()}

    def name_of(model: torch.nn.Module) -> str:
        return by_identity[id(unwrap_model(accelerator, model))]

    def save_model_hook(models, weights, output_dir):
        if noise_generator is not None:
            save_generator_state(noise_generator, output_dir, accelerator.process_index)
        if accelerator.is_main_process:
            for name, ema_model in named_emas.items():
                ema_model.save_pretrained(os.path.join(output_dir, name))
            for model in models:
                unwrap_model(accelerator, model).save_pretrained(os.path.join(output_dir, name_of(model)))
            if write_extras is not None:
                write_extras(output_dir)
        # The weights are saved above; keep accelerate from writing them a second time.
        while weights:
            weights.pop()

    def load_model_hook(models, input_dir):
        if noise_generator is not None:
            load_generator_state(noise_generator, input_dir, accelerator.process_index)
        for name, ema_model in named_emas.items():
            loaded = EMAModel.from_pretrained(os.path.join(input_dir, name), ema_model.model_cls)
            ema_model.load_state_dict(loaded.state_dict())
            ema_model.to(accelerator.device)
        while models:
            model = unwrap_model(accelerator, models.pop())
            loaded = type(model).from_pretrained(input_dir, subfolder=name_of(model))
            model.load_state_dict(loaded.state_dict())

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
