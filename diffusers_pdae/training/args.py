"""Command-line flags shared by the training scripts, named as in diffusers'
`examples/unconditional_image_generation/train_unconditional.py` wherever the meaning is the same.

The defaults of the flags that [`TrainingConfig`] holds come from it, so the two cannot disagree.
"""

from __future__ import annotations

import argparse
import math
import os

from ..latent_space import scaling_factor_problem
from .config import DEFAULTS
from .paths import check_path_flags

# Flags whose value is a secret: never written to any file a run makes, never sent to a tracker.
SECRET_FLAGS = ("hub_token",)
# Trackers that send what they log to a remote service.
REMOTE_LOGGERS = ("wandb",)


def _number(kind: type, text: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a run with 0 steps, batch 0 or accumulation 0 would do nothing)."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: any finite number."""
    return _number(float, text)


def scaling_factor(text: str) -> float:
    """argparse type: a latent scaling factor (a finite number in `latent_space.SCALING_FACTOR_BOUNDS`)."""
    value = _number(float, text)
    problem = scaling_factor_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"the scaling factor {problem}")
    return value


def add_vae_scaling_factor_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """`--vae_scaling_factor`: the latent scaling to use in place of the autoencoder config's (`what` says whose)."""
    parser.add_argument(
        "--vae_scaling_factor",
        type=scaling_factor,
        default=None,
        help=f"The scaling factor of {what}, in place of its config's; needed when the config has none (diffusers "
        "would assume 0.18215): 1.0 for CompVis' VQ LDMs such as CompVis/ldm-celebahq-256.",
    )


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1) (Adam's betas)."""
    value = _number(float, text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {value}")
    return value


def decay(text: str) -> float:
    """argparse type: a number in [0, 1] (an EMA decay)."""
    value = _number(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """`--help` keeps the script's docstring as written and shows every flag's default."""


def make_parser(description: str | None) -> argparse.ArgumentParser:
    """The scripts' parser: their docstring as description, defaults in `--help`."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def add_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset_name", type=str, default=None, help="A dataset on the Hub (or a local dataset).")
    group.add_argument("--dataset_config_name", type=str, default=None, help="The dataset's config name.")
    group.add_argument(
        "--train_data_dir", type=str, default=None, help="A folder of training images (loaded as `imagefolder`)."
    )
    group.add_argument(
        "--bundled_mnist",
        action="store_true",
        help="Train on the bundled MNIST 'train' split (the default when no dataset is given; runs offline).",
    )
    group.add_argument("--image_column", type=str, default="image", help="The dataset column holding the images.")
    group.add_argument("--cache_dir", type=str, default=None, help="Where to cache downloaded datasets.")
    group.add_argument(
        "--resolution",
        type=positive_int,
        default=None,
        help="Image size; defaults to the UNet's sample_size (32 for MNIST).",
    )
    group.add_argument("--center_crop", action="store_true", help="Centre-crop instead of random-crop.")
    group.add_argument("--random_flip", action="store_true", help="Flip images horizontally at random.")
    group.add_argument(
        "--skip_image_check",
        action="store_true",
        help="Do not decode every training image before step 1 (for very large datasets); an unreadable image then "
        "stops the run when it is drawn, naming its file. By default unreadable images are named and left out.",
    )
    group.add_argument(
        "--dataloader_num_workers", type=non_negative_int, default=0, help="DataLoader worker processes."
    )


def add_streaming_args(parser: argparse.ArgumentParser) -> None:
    """`--streaming` and its shuffle buffer, for the scripts that can train on a stream (docs/training.md)."""
    group = parser.add_argument_group("streaming")
    group.add_argument(
        "--streaming",
        action="store_true",
        help="Stream --dataset_name (a Hub id, or a local folder of webdataset .tar shards, parquet or image files) "
        "or --train_data_dir instead of loading it: nothing is materialised, each process reads its own shards, and "
        "unreadable images are named and left out as the stream reaches them. Needs --max_train_steps.",
    )
    group.add_argument(
        "--shuffle_buffer_size",
        type=positive_int,
        default=DEFAULTS["shuffle_buffer_size"],
        help="With --streaming: the shard order is shuffled each pass, and the items through a buffer of this many "
        "(1: shard order only). A resume is exact either way; with a buffer it reads the interrupted pass again up "
        "to its position (without decoding), with 1 only the current shard.",
    )


def add_optimization_args(parser: argparse.ArgumentParser, learning_rate: float) -> None:
    group = parser.add_argument_group("optimisation")
    group.add_argument(
        "--train_batch_size", type=positive_int, default=DEFAULTS["train_batch_size"], help="Batch size per device."
    )
    group.add_argument(
        "--num_epochs", type=positive_int, default=DEFAULTS["num_epochs"], help="Passes over the training data."
    )
    group.add_argument(
        "--max_train_steps",
        type=positive_int,
        default=DEFAULTS["max_train_steps"],
        help="Total optimiser steps; overrides --num_epochs if set.",
    )
    group.add_argument(
        "--gradient_accumulation_steps",
        type=positive_int,
        default=DEFAULTS["gradient_accumulation_steps"],
        help="Batches accumulated per optimiser step.",
    )
    group.add_argument("--learning_rate", type=positive_float, default=learning_rate, help="AdamW's learning rate.")
    group.add_argument(
        "--lr_scheduler",
        type=str,
        default=DEFAULTS["lr_scheduler"],
        choices=["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"],
        help="diffusers' learning-rate schedule.",
    )
    group.add_argument(
        "--lr_warmup_steps", type=non_negative_int, default=DEFAULTS["lr_warmup_steps"], help="Warm-up steps."
    )
    group.add_argument("--adam_beta1", type=fraction, default=DEFAULTS["adam_beta1"], help="AdamW's beta1.")
    group.add_argument("--adam_beta2", type=fraction, default=DEFAULTS["adam_beta2"], help="AdamW's beta2.")
    group.add_argument(
        "--adam_weight_decay", type=non_negative_float, default=DEFAULTS["adam_weight_decay"], help="Weight decay."
    )
    group.add_argument("--adam_epsilon", type=positive_float, default=DEFAULTS["adam_epsilon"], help="AdamW's eps.")
    group.add_argument(
        "--max_grad_norm", type=positive_float, default=DEFAULTS["max_grad_norm"], help="Gradient clipping norm."
    )
    group.add_argument("--use_ema", action="store_true", help="Keep an exponential moving average of the weights.")
    group.add_argument(
        "--ema_inv_gamma", type=positive_float, default=DEFAULTS["ema_inv_gamma"], help="EMA warm-up's inv_gamma."
    )
    group.add_argument("--ema_power", type=positive_float, default=DEFAULTS["ema_power"], help="EMA warm-up's power.")
    group.add_argument("--ema_max_decay", type=decay, default=DEFAULTS["ema_max_decay"], help="The EMA's decay cap.")
    group.add_argument(
        "--mixed_precision",
        type=str,
        default=DEFAULTS["mixed_precision"],
        choices=["no", "fp16", "bf16"],
        help="Defaults to the value of `accelerate config`.",
    )
    group.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="Seed for reproducible training.")
    group.add_argument(
        "--allow_tf32", action="store_true", help="Allow TF32 matmuls on Ampere and newer GPUs (faster training)."
    )
    group.add_argument(
        "--max_train_minutes",
        type=positive_float,
        default=DEFAULTS["max_train_minutes"],
        help="Stop cleanly (and save) after this much wall-clock time, e.g. to fit a time-boxed job.",
    )


def add_output_args(parser: argparse.ArgumentParser, output_dir: str) -> None:
    group = parser.add_argument_group("outputs, logging and checkpoints")
    group.add_argument("--output_dir", type=str, default=output_dir, help="Where the trained pipeline is written.")
    group.add_argument(
        "--overwrite_output_dir",
        action="store_true",
        help="Train into an --output_dir that already holds another run: its checkpoints are deleted first (its "
        "pipeline files are replaced at the end). Without it such a folder is refused, unless resuming.",
    )
    group.add_argument(
        "--logger",
        type=str,
        default=DEFAULTS["logger"],
        choices=["tensorboard", "wandb"],
        help="Where scalars and images are logged (must be installed).",
    )
    group.add_argument("--logging_dir", type=str, default=DEFAULTS["logging_dir"], help="Relative to --output_dir.")
    group.add_argument("--save_images_epochs", type=positive_int, default=10, help="Validation images every N epochs.")
    group.add_argument(
        "--save_model_epochs",
        type=positive_int,
        default=None,
        help="Also save the pipeline to --output_dir every N epochs (it is always saved at the end).",
    )
    group.add_argument(
        "--validation_steps", type=positive_int, default=None, help="Validation every N steps as well (short runs)."
    )
    group.add_argument(
        "--checkpointing_steps",
        type=positive_int,
        default=DEFAULTS["checkpointing_steps"],
        help="Save the full training state every N steps (to resume; see examples/export_checkpoint.py).",
    )
    group.add_argument(
        "--checkpoints_total_limit",
        type=positive_int,
        default=DEFAULTS["checkpoints_total_limit"],
        help="Keep only the newest N checkpoints.",
    )
    group.add_argument(
        "--resume_from_checkpoint",
        type=str,
        default=DEFAULTS["resume_from_checkpoint"],
        help='"latest", a checkpoint-<step> name inside --output_dir, or a checkpoint folder.',
    )
    group.add_argument(
        "--push_to_hub",
        action="store_true",
        help="Upload the trained pipeline, card and figures to the Hub (the repo is created before training).",
    )
    group.add_argument(
        "--hub_token",
        type=str,
        default=None,
        help="A Hub token; prefer `huggingface-cli login` or the HF_TOKEN variable. Never written to any file.",
    )
    group.add_argument(
        "--hub_model_id", type=str, default=None, help="The Hub repo (defaults to the name of --output_dir)."
    )
    group.add_argument("--hub_private_repo", action="store_true", help="Create the Hub repo as private.")
    group.add_argument("--local_rank", type=int, default=-1, help="Set by the launcher.")
    group.add_argument(
        "--nccl_timeout",
        type=positive_int,
        default=DEFAULTS["nccl_timeout"],
        help="Seconds the processes of a distributed run wait for each other (NCCL or gloo): to form the process "
        "group at start-up (a machine that never started) and at every step and checkpoint after (one that died); "
        "default torch's 1800. The launcher's own wait for the machines is `accelerate launch --rdzv_conf "
        "timeout=<seconds>` (docs/training.md, 'Several machines').",
    )
    group.add_argument(
        "--report_ranks",
        action="store_true",
        help="Write what each process trained on and its final weight checksum to output_dir/ranks/ (to check that "
        "a multi-process run really is distributed).",
    )


def finalize_args(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve defaults that depend on other flags or the environment, and check the path flags
    ([`check_path_flags`])."""
    check_path_flags(args)
    env_local_rank = int(os.environ.get("LOCAL_RANK", -1))
    if env_local_rank != -1 and env_local_rank != args.local_rank:
        args.local_rank = env_local_rank
    if args.dataset_name is not None and args.train_data_dir is not None:
        raise ValueError("Pass either --dataset_name or --train_data_dir, not both.")
    if args.allow_tf32:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.bundled_mnist and (args.dataset_name is not None or args.train_data_dir is not None):
        raise ValueError("--bundled_mnist cannot be combined with --dataset_name or --train_data_dir.")
    if getattr(args, "streaming", False):
        check_streaming_args(args)
    if args.hub_token is not None and args.logger in REMOTE_LOGGERS:
        raise ValueError(
            f"--hub_token cannot be combined with --logger {args.logger}: the tracker would send the token to a "
            "remote service. Log in with `huggingface-cli login` (or set HF_TOKEN) and drop --hub_token."
        )
    return args


def check_streaming_args(args: argparse.Namespace) -> None:
    """`--streaming` needs a dataset to stream and a run length that does not depend on the dataset's size."""
    if args.dataset_name is None and args.train_data_dir is None:
        raise ValueError(
            "--streaming reads --dataset_name or --train_data_dir as a stream; pass one (the bundled MNIST is "
            "loaded whole)."
        )
    if args.max_train_steps is None:
        raise ValueError(
            "--streaming needs --max_train_steps: a stream's length is unknown, so --num_epochs cannot set the run's "
            "length (each pass over the stream still counts as an epoch)."
        )


def public_flags(args: argparse.Namespace) -> dict:
    """The flags as a dict without secrets: what `training_info.json`, trackers and model cards may record."""
    return {name: value for name, value in vars(args).items() if name not in SECRET_FLAGS}
