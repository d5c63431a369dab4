"""The `Accelerator` a training run works under, and what follows from it: checks every process agrees on, seeds,
the frozen models' dtype and compilation, and the shape of the last batch."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    DynamoBackend,
    GradientAccumulationPlugin,
    InitProcessGroupKwargs,
    ProjectConfiguration,
    broadcast_object_list,
)
from torch.distributed.constants import default_pg_timeout

from ..import_utils import require
from .config import TrainingConfig


def make_accelerator(config: TrainingConfig) -> Accelerator:
    """An `Accelerator` configured from the shared flags, with a seedable sampler so data order can be resumed.

    A stream's passes end at different batches on different processes, so with `--streaming` gradients are
    accumulated over a fixed number of batches, across passes, not up to the end of each pass. `--nccl_timeout`
    bounds how long the processes wait for each other (`InitProcessGroupKwargs(timeout=...)`, as diffusers' training
    scripts pass it); a launched process says what it joins before it waits, and a group that does not form in time
    is a clear `TimeoutError`.

    Raises:
        `TimeoutError`: when the other processes of the group did not join within the timeout.
    """
    project_config = ProjectConfiguration(project_dir=config.output_dir, logging_dir=config.logging_path)
    require(config.logger, f"--logger {config.logger}")  # before anything runs, not at the first log
    group = ProcessGroup.from_environment(config.nccl_timeout)
    group.announce()
    handlers = [] if config.nccl_timeout is None else [InitProcessGroupKwargs(timeout=group.timeout)]
    try:
        return Accelerator(
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=config.gradient_accumulation_steps, sync_with_dataloader=not config.streaming
            ),
            mixed_precision=config.mixed_precision,
            log_with=config.logger,
            project_config=project_config,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
            kwargs_handlers=handlers,
        )
    except (RuntimeError, ValueError) as error:  # torch's DistStoreError / DistNetworkError are RuntimeErrors
        if group.size > 1 and "timed out" in str(error).lower():
            raise group.timeout_error(error) from error
        raise


@dataclass(frozen=True)
class ProcessGroup:
    """The distributed process group a launcher (`accelerate launch`, `torchrun`) asks this process to join, from
    the environment it sets (`WORLD_SIZE`, `RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`)."""

    size: int
    rank: int
    local_size: int
    address: str
    timeout: timedelta

    @classmethod
    def from_environment(cls, timeout_seconds: int | None) -> ProcessGroup:
        environ = os.environ
        size, rank = int(environ.get("WORLD_SIZE", 1)), int(environ.get("RANK", 0))
        local_size = int(environ.get("LOCAL_WORLD_SIZE", size))
        address = f"{environ.get('MASTER_ADDR', '?')}:{environ.get('MASTER_PORT', '?')}"
        timeout = default_pg_timeout if timeout_seconds is None else timedelta(seconds=timeout_seconds)
        return cls(size, rank, local_size, address, timeout)

    @property
    def machines(self) -> int:
        return max(self.size // max(self.local_size, 1), 1)

    def describe(self) -> str:
        return (
            f"{self.size} processes on {self.machines} machine(s), the main one at {self.address} (this is process "
            f"{self.rank})"
        )

    def announce(self) -> None:
        """Say, once per machine, what the processes wait for, before they wait."""
        if self.size > 1 and self.rank % max(self.local_size, 1) == 0:
            print(
                f"Joining a process group of {self.describe()}: waiting up to {self.timeout.total_seconds():.0f} s "
                "(--nccl_timeout) for every process to join.",
                file=sys.stderr,
                flush=True,
            )

    def timeout_error(self, error: BaseException) -> TimeoutError:
        return TimeoutError(
            f"The process group of {self.describe()} did not form within --nccl_timeout "
            f"{self.timeout.total_seconds():.0f} s ({str(error).splitlines()[0]}). Start the same command on every "
            "machine (--num_machines counts them, --machine_rank numbers them from 0), make sure each reaches "
            f"--main_process_ip/--main_process_port ({self.address}), or raise --nccl_timeout."
        )


def check_on_main_process(accelerator: Accelerator, check: Callable[[], str]) -> None:
    """Run `check` (returning an error message, or "" when all is well) on the main process only, and raise that
    `ValueError` on every process, so that all stop together instead of waiting for the main one forever."""
    message = [check() if accelerator.is_main_process else ""]
    if accelerator.num_processes > 1:
        broadcast_object_list(message, from_process=0)
    if message[0]:
        raise ValueError(message[0])


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
