"""The optimiser, the learning-rate schedule, the run's length and the EMA, from a [`TrainingConfig`]."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

from .config import TrainingConfig


@dataclass
class TrainingSchedule:
    """How many optimiser steps and epochs a run takes."""

    max_train_steps: int
    num_epochs: int | None
    steps_per_epoch: int | None

    @classmethod
    def from_config(cls, config: TrainingConfig, num_batches_per_epoch: int | None) -> TrainingSchedule:
        """The run's length for `num_batches_per_epoch` batches per process in an epoch; a stream (None) has no
        known epoch length: it runs `--max_train_steps`, over as many passes as that takes (epochs are None)."""
        if num_batches_per_epoch is None:
            return cls(config.max_train_steps, None, None)
        steps_per_epoch = math.ceil(num_batches_per_epoch / config.gradient_accumulation_steps)
        if config.max_train_steps is None:
            return cls(config.num_epochs * steps_per_epoch, config.num_epochs, steps_per_epoch)
        return cls(config.max_train_steps, math.ceil(config.max_train_steps / steps_per_epoch), steps_per_epoch)


def make_optimization(
    config: TrainingConfig, parameters: list[torch.nn.Parameter], num_batches: int | None, num_processes: int
) -> tuple[torch.optim.Optimizer, object, TrainingSchedule]:
    """AdamW over `parameters`, the --lr_scheduler schedule, and the run's length.

    `num_batches` is the length of the un-prepared dataloader (all processes together); None for a stream.
    """
    optimizer = torch.optim.AdamW(
        parameters,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    schedule = TrainingSchedule.from_config(config, None if num_batches is None else num_batches // num_processes)
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * num_processes,
        num_training_steps=schedule.max_train_steps * num_processes,
    )
    return optimizer, lr_scheduler, schedule


def make_ema(model: torch.nn.Module, config: TrainingConfig) -> EMAModel:
    """An EMA of `model`'s weights with the --ema_* flags, able to `save_pretrained` as `type(model)`."""
    return EMAModel(
        model.parameters(),
        decay=config.ema_max_decay,
        use_ema_warmup=True,
        inv_gamma=config.ema_inv_gamma,
        power=config.ema_power,
        model_cls=type(model),
        model_config=model.config,
        # One fused update over all tensors instead of a few kernels per tensor: on a GPU a small model's step is
        # bound by kernel launches, and the per-tensor EMA update alone launched hundreds.
        foreach=True,
    )


def averaged_model(model: torch.nn.Module, ema: EMAModel | None) -> torch.nn.Module:
    """What a run releases: a fresh copy of `model` (a diffusers model, unwrapped) holding the EMA weights and the
    model's buffers (e.g. a latent sampler's code statistics, which an EMA does not track), or `model` itself without
    an EMA."""
    if ema is None:
        return model
    copy = type(model).from_config(model.config)
    copy.load_state_dict(model.state_dict())
    ema.copy_to(copy.parameters())
    return copy.to(model.device)
