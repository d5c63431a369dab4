"""Checkpoints of a training run: written atomically, pruned, found again, and restored exactly.

A checkpoint is written to `checkpoint-N.tmp` and renamed to `checkpoint-N` only once complete, so
`--resume_from_checkpoint latest` never picks a half-written one. Each model (and EMA) is saved with
`save_pretrained` in its own safetensors subfolder through Accelerate's save/load hooks.
"""

from __future__ import annotations

import logging
import os
import re
import shutil

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoint folders in `output_dir`, oldest first (temporary `*.tmp` folders are ignored)."""
    if not os.path.isdir(output_dir):
        return []
    names = [name for name in os.listdir(output_dir) if CHECKPOINT_PATTERN.match(name)]
    return sorted(names, key=lambda name: int(CHECKPOINT_PATTERN.match(name).group(1)))


def save_checkpoint(accelerator: Accelerator, output_dir: str, global_step: int, total_limit: int | None) -> str:
    """Save the full training state to `output_dir/checkpoint-{global_step}` atomically and prune old ones."""
    final_dir = os.path.join(output_dir, f"checkpoint-{global_step}")
    temporary_dir = final_dir + ".tmp"
    if accelerator.is_main_process:
        shutil.rmtree(temporary_dir, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(temporary_dir)
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


def resolve_resume_path(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """The checkpoint folder to resume from: `latest` means the newest complete one in `output_dir` (or none)."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint != "latest":
        if not os.path.isdir(resume_from_checkpoint):
            raise FileNotFoundError(f"Checkpoint folder {resume_from_checkpoint!r} does not exist.")
        return resume_from_checkpoint
    checkpoints = list_checkpoints(output_dir)
    return os.path.join(output_dir, checkpoints[-1]) if checkpoints else None


def step_of_checkpoint(path: str) -> int:
    """The global step a `checkpoint-<step>` folder was saved at."""
    match = CHECKPOINT_PATTERN.match(os.path.basename(os.path.normpath(path)))
    if match is None:
        raise ValueError(f"{path!r} is not a checkpoint-<step> folder.")
    return int(match.group(1))


def register_checkpoint_hooks(
    accelerator: Accelerator, named_models: dict[str, torch.nn.Module], named_emas: dict[str, EMAModel]
) -> None:
    """Make `accelerator.save_state` write each model (and EMA) to its own safetensors subfolder, and load them back.

    Args:
        named_models: subfolder name -> model, as passed to `accelerator.prepare` (unwrapped or not).
        named_emas: subfolder name -> EMA (created with `model_cls` and `model_config`).
    """
    by_identity = {id(accelerator.unwrap_model(model)): name for name, model in named_models.items()}

    def name_of(model: torch.nn.Module) -> str:
        return by_identity[id(accelerator.unwrap_model(model))]

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for name, ema_model in named_emas.items():
                ema_model.save_pretrained(os.path.join(output_dir, name))
            for model in models:
                accelerator.unwrap_model(model).save_pretrained(os.path.join(output_dir, name_of(model)))
        # The weights are saved above; keep accelerate from writing them a second time.
        while weights:
            weights.pop()

    def load_model_hook(models, input_dir):
        for name, ema_model in named_emas.items():
            loaded = EMAModel.from_pretrained(os.path.join(input_dir, name), ema_model.model_cls)
            ema_model.load_state_dict(loaded.state_dict())
            ema_model.to(accelerator.device)
        while models:
            model = accelerator.unwrap_model(models.pop())
            loaded = type(model).from_pretrained(input_dir, subfolder=name_of(model))
            model.load_state_dict(loaded.state_dict())

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)


class GeneratorState:
    """Wraps a `torch.Generator` so `accelerator.save_state` saves and restores its state."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["state"])
