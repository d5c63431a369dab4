"""The Accelerate training loop of `examples/train_dpm.py`, `train_pdae.py` and `train_latent_sampler.py`.

It runs a per-sample loss over the data for the configured number of optimiser steps, with gradient accumulation and
clipping, EMA updates, checkpoints every `checkpointing_steps`, exact resume, a stop with a clear message on a
non-finite loss, a wall-clock limit, a progress bar on the main process and scalar logging. What surrounds it lives
next door: `checkpointing` (the files), `optimization` (optimiser, schedule, EMA), `objective` (what a step
computes), `diagnostics` (rank reports) and `run` (the run that builds it, and its set-up and release).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from .checkpointing import (
    check_resumable,
    list_checkpoints,
    random_states_readable,
    resolve_resume_path,
    save_checkpoint,
    step_of_checkpoint,
    unwrap_model,
)
from .config import TrainingConfig
from .diagnostics import RankReport
from .optimization import TrainingSchedule
from .streaming import StreamPosition

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite."""


@dataclass
class TrainingLoop:
    """Runs `compute_loss` over the data until `schedule.max_train_steps` optimiser steps are done.

    Attributes:
        compute_loss: `batch -> (B,)` per-sample loss, run inside `accelerator.accumulate`.
        models: the trainable (prepared) models.
        ema_models: EMA copies updated after each optimiser step.
        on_step_end: `global_step -> dict` of extra scalars to log (or None), e.g. validation every N steps.
        on_epoch_end: `(epoch, global_step) -> None`, e.g. validation images every N epochs.
        stream: with a streamed dataset, its [`StreamPosition`]: epochs are passes over the stream, until
            `schedule.max_train_steps`, and a resumed run continues the stream from its saved position (no batch is
            skipped by reading it again).
    """

    accelerator: Accelerator
    config: TrainingConfig
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
    stream: StreamPosition | None = None
    global_step: int = 0
    train_seconds: float = 0.0
    steady_steps_per_second: float | None = None
    last_logs: dict = field(default_factory=dict)
    resumed_from: str | None = None
    resumed_exactly: bool = True

    def resume(self) -> None:
        """Load the checkpoint named by `config.resume_from_checkpoint`, if any, and continue from its step."""
        path = resolve_resume_path(self.config.resume_from_checkpoint, self.config.output_dir)
        if path is None:
            if self.config.resume_from_checkpoint is not None:
                self.accelerator.print("No complete checkpoint found; starting a new training run.")
            return
        check_resumable(path, self.accelerator.num_processes)
        self.accelerator.print(f"Resuming from checkpoint {path}")
        readable = random_states_readable(path, self.accelerator.process_index)
        self.accelerator.load_state(path)
        self.global_step, self.resumed_from = step_of_checkpoint(path), path
        # Accelerate only logs (at INFO) a random-state file it cannot read; the run then differs from an
        # uninterrupted one (data order, dropout), which the user must hear about, and training_info.json records.
        every_rank_read = torch.tensor([float(readable)], device=self.accelerator.device)
        self.resumed_exactly = self.accelerator.reduce(every_rank_read, reduction="mean").item() == 1.0
        if not self.resumed_exactly:
            logger.warning(
                f"The random states in {path} (random_states_<rank>.pkl) could not all be read: the run goes on, but "
                "its data order and random draws differ from an uninterrupted run's (recorded as resumed_exactly: "
                "false in training_info.json). Resume from an intact checkpoint to reproduce it exactly."
            )
        if self.stream is not None and not self.stream.exact:  # the stream's files changed (StreamPosition said so)
            self.resumed_exactly = False
        if self.global_step >= self.schedule.max_train_steps:
            self.accelerator.print(
                f"{path} is at --max_train_steps {self.schedule.max_train_steps}: nothing is left to train; the run "
                "releases that checkpoint's weights again."
            )

    def _checkpoint(self) -> None:
        save_checkpoint(
            self.accelerator, self.config.output_dir, self.global_step, self.config.checkpoints_total_limit
        )

    def _mean_finite_loss(self, loss: torch.Tensor) -> float:
        """The loss averaged over processes; raises `NonFiniteLossError` on every process if any has NaN/inf."""
        mean = self.accelerator.reduce(loss.detach().float().reshape(1), reduction="mean").item()
        if not math.isfinite(mean):
            last = list_checkpoints(self.config.output_dir)
            kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint had been saved yet"
            raise NonFiniteLossError(
                f"Training loss became {mean} at step {self.global_step + 1}; stopping before the update ({kept}). "
                "Lower --learning_rate or --max_grad_norm, or check the data for NaN/inf pixels."
            )
        return mean

    def _out_of_time(self, started: float) -> bool:
        if self.config.max_train_minutes is None:
            return False
        # Every process must agree to stop, or the others would wait for it forever.
        elapsed = torch.tensor([time.monotonic() - started], device=self.accelerator.device)
        return self.accelerator.reduce(elapsed, reduction="max").item() > 60 * self.config.max_train_minutes

    def run(self) -> int:
        accelerator, config = self.accelerator, self.config
        started = time.monotonic()
        # Speed over the second half of the run, past warm-up and compilation.
        halfway_step = self.global_step + (self.schedule.max_train_steps - self.global_step) // 2
        halfway_time = None
        if self.stream is None:
            first_epoch = self.global_step // self.schedule.steps_per_epoch
            batches_to_skip = (self.global_step % self.schedule.steps_per_epoch) * config.gradient_accumulation_steps
            epochs = range(first_epoch, self.schedule.num_epochs)
        else:  # the stream's position came with the checkpoint
            first_epoch, batches_to_skip = self.stream.epoch, 0
            epochs = itertools.count(first_epoch)
        progress_bar = tqdm(
            total=self.schedule.max_train_steps,
            initial=self.global_step,
            disable=not accelerator.is_local_main_process,
            desc="Steps",
        )
        for epoch in epochs:
            if self.global_step >= self.schedule.max_train_steps:  # resumed from the last step: nothing left
                break
            for model in self.models:
                model.train()
            self.train_dataloader.set_epoch(epoch)
            dataloader = self.train_dataloader if self.stream is None else self.stream.batches(epoch)
            if epoch == first_epoch and batches_to_skip:
                dataloader = accelerator.skip_first_batches(self.train_dataloader, batches_to_skip)
                # A fresh loader would re-seed its shuffle with epoch 0 when iterated.
                dataloader.set_epoch(epoch)
            for batch in dataloader:
                if self.rank_report is not None:
                    self.rank_report.add_batch(next(iter(batch.values())), epoch)  # the images (or codes)
                with accelerator.accumulate(*self.models):
                    loss = self.compute_loss(batch).mean()
                    mean_loss = self._mean_finite_loss(loss)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(
                            [p for model in self.models for p in model.parameters()], config.max_grad_norm
                        )
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                if not accelerator.sync_gradients:
                    continue
                for ema_model, model in zip(self.ema_models, self.models, strict=False):
                    ema_model.step(unwrap_model(accelerator, model).parameters())
                self.global_step += 1
                if self.global_step == halfway_step:
                    halfway_time = time.monotonic()
                progress_bar.update(1)
                logs = {"loss": mean_loss, "lr": self.lr_scheduler.get_last_lr()[0]}
                if self.ema_models:
                    logs["ema_decay"] = self.ema_models[0].cur_decay_value
                if config.checkpointing_steps and self.global_step % config.checkpointing_steps == 0:
                    self._checkpoint()
                if self.on_step_end is not None:
                    logs.update(self.on_step_end(self.global_step) or {})
                progress_bar.set_postfix(loss=f"{logs['loss']:.4g}", lr=f"{logs['lr']:.2e}")
                accelerator.log(logs, step=self.global_step)
                self.last_logs = logs
                if self._out_of_time(started):
                    accelerator.print(f"Stopping after {config.max_train_minutes} minutes at step {self.global_step}.")
                    self.schedule.max_train_steps = self.global_step
                if self.global_step >= self.schedule.max_train_steps:
                    break
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch, self.global_step)
            if self.global_step >= self.schedule.max_train_steps:
                break
        progress_bar.close()
        finished = time.monotonic()
        self.train_seconds = finished - started
        if halfway_time is not None and self.global_step > halfway_step:
            self.steady_steps_per_second = (self.global_step - halfway_step) / (finished - halfway_time)
        if self.rank_report is not None:
            self.rank_report.write(accelerator, self.models, self.config.output_dir)
        return self.global_step

    def summary(self) -> dict:
        """Facts about the finished run, for `training_info.json` and the model card."""
        state = self.accelerator.state
        return {
            "global_step": self.global_step,
            "train_seconds_this_run": round(self.train_seconds, 1),
            "steps_per_second_second_half": self.steady_steps_per_second and round(self.steady_steps_per_second, 2),
            "final_logs": self.last_logs,
            "resumed_from": self.resumed_from,
            "resumed_exactly": self.resumed_exactly,
            "distributed_type": str(state.distributed_type).split(".")[-1],
            "num_processes": state.num_processes,
            "mixed_precision": str(state.mixed_precision),
            "dynamo_backend": str(state.dynamo_plugin.backend).split(".")[-1],
            "total_batch_size": (
                self.config.train_batch_size * state.num_processes * self.config.gradient_accumulation_steps
            ),
        }
