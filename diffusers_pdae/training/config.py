"""`TrainingConfig`: the typed settings the training tool runs on, one field per shared command-line flag."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields


@dataclass
class TrainingConfig:
    """What the Accelerate set-up, the optimiser, the EMA, the checkpoints and the loop need to know.

    Each field is the flag of the same name in `diffusers_pdae.training.args` (named as in diffusers'
    `train_unconditional.py`), and its default is that flag's default. Script-specific flags (the model, the data,
    PDAE's own settings) stay on the argparse namespace of each script.
    """

    output_dir: str
    # optimisation
    train_batch_size: int = 64
    num_epochs: int = 100
    max_train_steps: int | None = None
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    lr_scheduler: str = "constant_with_warmup"
    lr_warmup_steps: int = 500
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 0.0
    adam_epsilon: float = 1e-08
    max_grad_norm: float | None = 1.0
    use_ema: bool = False
    ema_inv_gamma: float = 1.0
    ema_power: float = 3 / 4
    ema_max_decay: float = 0.9999
    mixed_precision: str | None = None
    seed: int = 0
    max_train_minutes: float | None = None
    # data read as a stream (--streaming)
    streaming: bool = False
    shuffle_buffer_size: int = 1000
    # outputs, logging and checkpoints
    logger: str = "tensorboard"
    logging_dir: str = "logs"
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = None
    resume_from_checkpoint: str | None = None
    # several processes or machines
    nccl_timeout: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainingConfig:
        """The config of the parsed flags (fields a namespace lacks keep their defaults)."""
        return cls(**{field.name: getattr(args, field.name) for field in fields(cls) if hasattr(args, field.name)})

    @property
    def logging_path(self) -> str:
        """Where the trackers write: `logging_dir` relative to `output_dir`."""
        return os.path.join(self.output_dir, self.logging_dir)


DEFAULTS = {field.name: field.default for field in fields(TrainingConfig) if field.name != "output_dir"}
