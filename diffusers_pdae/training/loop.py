"""The Accelerate training loop shared by `examples/train_dpm.py` and `examples/train_pdae.py`.

It owns what both scripts need and would otherwise copy: checkpoints written atomically (a folder is renamed into
place only once complete, so `--resume_from_checkpoint latest` never picks a half-written one) and pruned to
`--checkpoints_total_limit`, resume that continues exactly (optimizer, scheduler, EMA, RNG and data order), a stop
with a clear message on a non-finite loss, a progress bar on the main process, and scalar logging.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite."""


def make_accelerator(args) -> Accelerator:
    """An `Accelerator` configured from the shared flags, with a seedable sampler so data order can be resumed."""
    logging_dir = os.path.join(args.output_dir, args.logging_dir)
    project_config = ProjectConfiguration(project_dir=args.output_dir, logging_dir=logging_dir)
    log_with = args.logger
    if log_with == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            logger.warning("tensorboard is not installed (pip install tensorboard); scalars will not be logged.")
            log_with = None
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=log_with,
        project_config=project_config,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )


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


def make_ema(model: torch.nn.Module, args) -> EMAModel:
    """An EMA of `model`'s weights with the --ema_* flags, able to `save_pretrained` as `type(model)`."""
    return EMAModel(
        model.parameters(),
        decay=args.ema_max_decay,
        use_ema_warmup=True,
        inv_gamma=args.ema_inv_gamma,
        power=args.ema_power,
        model_cls=type(model),
        model_config=model.config,
    )


def make_optimization(
    args, parameters: list[torch.nn.Parameter], num_batches: int, num_processes: int
) -> tuple[torch.optim.Optimizer, object, TrainingSchedule]:
    """AdamW over `parameters`, the --lr_scheduler schedule, and the run's length, from the shared flags.

    `num_batches` is the length of the un-prepared dataloader (all processes together).
    """
    optimizer = torch.optim.AdamW(
        parameters,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    schedule = TrainingSchedule.from_args(args, num_batches // num_processes)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * num_processes,
        num_training_steps=schedule.max_train_steps * num_processes,
    )
    return optimizer, lr_scheduler, schedule


class GeneratorState:
    """Wraps a `torch.Generator` so `accelerator.save_state` saves and restores its state."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["state"])


class RankReport:
    """What one process saw and ended with, written by `--report_ranks` to check a distributed set-up.

    Each process records a fingerprint of every batch it trained on and, at the end, a checksum of its models'
    weights, its distributed type and the number of processes, in `output_dir/ranks/rank-{i}.json`.
    """

    def __init__(self):
        self.batch_fingerprints: list[str] = []

    def add_batch(self, pixel_values: torch.Tensor) -> None:
        self.batch_fingerprints.append(_fingerprint([pixel_values]))

    def write(self, accelerator: Accelerator, models: list[torch.nn.Module], output_dir: str) -> None:
        weights = [tensor for model in models for tensor in accelerator.unwrap_model(model).state_dict().values()]
        report = {
            "process_index": accelerator.process_index,
            "num_processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type).split(".")[-1],
            "batch_fingerprints": self.batch_fingerprints,
            "weights_checksum": _fingerprint(weights),
        }
        os.makedirs(os.path.join(output_dir, "ranks"), exist_ok=True)
        with open(os.path.join(output_dir, "ranks", f"rank-{accelerator.process_index}.json"), "w") as f:
            json.dump(report, f, indent=1)


def _fingerprint(tensors: list[torch.Tensor]) -> str:
    """First 16 hex digits of the SHA-256 of the tensors' float32 bytes, in order."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class TrainingSchedule:
    """How many optimiser steps and epochs a run takes."""

    max_train_steps: int
    num_epochs: int
    steps_per_epoch: int

    @classmethod
    def from_args(cls, args, num_batches_per_epoch: int) -> TrainingSchedule:
        steps_per_epoch = math.ceil(num_batches_per_epoch / args.gradient_accumulation_steps)
        if args.max_train_steps is None:
            return cls(args.num_epochs * steps_per_epoch, args.num_epochs, steps_per_epoch)
        return cls(args.max_train_steps, math.ceil(args.max_train_steps / steps_per_epoch), steps_per_epoch)


@dataclass
class TrainingLoop:
    """Runs `compute_loss` over the data until `schedule.max_train_steps` optimiser steps are done.

    Attributes:
        compute_loss: `batch -> (B,)` per-sample loss, run inside `accelerator.accumulate`.
        models: the trainable (prepared) models.
        ema_models: EMA copies updated after each optimiser step.
        on_step_end: `global_step -> dict` of extra scalars to log (or None), e.g. validation every N steps.
        on_epoch_end: `(epoch, global_step) -> None`, e.g. validation images every N epochs.
    """

    accelerator: Accelerator
    args: object
    models: list[torch.nn.Module]
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    train_dataloader: torch.utils.data.DataLoader
    compute_loss: Callable[[dict], torch.Tensor]
    schedule: TrainingSchedule
    ema_models: list[EMAModel] = field(default_factory=list)
    on_step_end: Callable[[int], dict | None] | None = None
    on_epoch_end: Callable[[int, int], None] | None = None
    rank_report: RankReport | None = None
    global_step: int = 0
    train_seconds: float = 0.0
    last_logs: dict = field(default_factory=dict)

    def resume(self) -> None:
        """Load the checkpoint named by --resume_from_checkpoint, if any, and continue from its step."""
        path = resolve_resume_path(self.args.resume_from_checkpoint, self.args.output_dir)
        if path is None:
            if self.args.resume_from_checkpoint is not None:
                self.accelerator.print("No complete checkpoint found; starting a new training run.")
            return
        self.accelerator.print(f"Resuming from checkpoint {path}")
        self.accelerator.load_state(path)
        self.global_step = step_of_checkpoint(path)

    def _checkpoint(self) -> None:
        save_checkpoint(self.accelerator, self.args.output_dir, self.global_step, self.args.checkpoints_total_limit)

    def _mean_finite_loss(self, loss: torch.Tensor) -> float:
        """The loss averaged over processes; raises `NonFiniteLossError` on every process if any has NaN/inf."""
        mean = self.accelerator.reduce(loss.detach().float().reshape(1), reduction="mean").item()
        if not math.isfinite(mean):
            last = list_checkpoints(self.args.output_dir)
            kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint had been saved yet"
            raise NonFiniteLossError(
                f"Training loss became {mean} at step {self.global_step + 1}; stopping before the update ({kept}). "
                "Lower --learning_rate or --max_grad_norm, or check the data for NaN/inf pixels."
            )
        return mean

    def _out_of_time(self, started: float) -> bool:
        if self.args.max_train_minutes is None:
            return False
        # Every process must agree to stop, or the others would wait for it forever.
        elapsed = torch.tensor([time.monotonic() - started], device=self.accelerator.device)
        return self.accelerator.reduce(elapsed, reduction="max").item() > 60 * self.args.max_train_minutes

    def run(self) -> int:
        accelerator, args = self.accelerator, self.args
        started = time.monotonic()
        first_epoch = self.global_step // self.schedule.steps_per_epoch
        batches_to_skip = (self.global_step % self.schedule.steps_per_epoch) * args.gradient_accumulation_steps
        progress_bar = tqdm(
            total=self.schedule.max_train_steps,
            initial=self.global_step,
            disable=not accelerator.is_local_main_process,
            desc="Steps",
        )
        for epoch in range(first_epoch, self.schedule.num_epochs):
            for model in self.models:
                model.train()
            self.train_dataloader.set_epoch(epoch)
            dataloader = self.train_dataloader
            if epoch == first_epoch and batches_to_skip:
                dataloader = accelerator.skip_first_batches(self.train_dataloader, batches_to_skip)
                # A fresh loader would re-seed its shuffle with epoch 0 when iterated.
                dataloader.set_epoch(epoch)
            for batch in dataloader:
                if self.rank_report is not None:
                    self.rank_report.add_batch(batch["pixel_values"])
                with accelerator.accumulate(*self.models):
                    loss = self.compute_loss(batch).mean()
                    mean_loss = self._mean_finite_loss(loss)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and args.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(
                            [p for model in self.models for p in model.parameters()], args.max_grad_norm
                        )
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                if not accelerator.sync_gradients:
                    continue
                for ema_model, model in zip(self.ema_models, self.models, strict=False):
                    ema_model.step(accelerator.unwrap_model(model).parameters())
                self.global_step += 1
                progress_bar.update(1)
                logs = {"loss": mean_loss, "lr": self.lr_scheduler.get_last_lr()[0]}
                if self.ema_models:
                    logs["ema_decay"] = self.ema_models[0].cur_decay_value
                if args.checkpointing_steps and self.global_step % args.checkpointing_steps == 0:
                    self._checkpoint()
                if self.on_step_end is not None:
                    logs.update(self.on_step_end(self.global_step) or {})
                progress_bar.set_postfix(loss=f"{logs['loss']:.4g}", lr=f"{logs['lr']:.2e}")
                accelerator.log(logs, step=self.global_step)
                self.last_logs = logs
                if self._out_of_time(started):
                    accelerator.print(f"Stopping after {args.max_train_minutes} minutes at step {self.global_step}.")
                    self.schedule.max_train_steps = self.global_step
                if self.global_step >= self.schedule.max_train_steps:
                    break
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch, self.global_step)
            if self.global_step >= self.schedule.max_train_steps:
                break
        progress_bar.close()
        self.train_seconds = time.monotonic() - started
        if self.rank_report is not None:
            self.rank_report.write(accelerator, self.models, self.args.output_dir)
        return self.global_step

    def summary(self) -> dict:
        """Facts about the finished run, for `training_info.json` and the model card."""
        state = self.accelerator.state
        return {
            "global_step": self.global_step,
            "train_seconds_this_run": round(self.train_seconds, 1),
            "final_logs": self.last_logs,
            "distributed_type": str(state.distributed_type).split(".")[-1],
            "num_processes": state.num_processes,
            "mixed_precision": str(state.mixed_precision),
            "total_batch_size": (
                self.args.train_batch_size * state.num_processes * self.args.gradient_accumulation_steps
            ),
        }
