"""Command-line flags shared by the training scripts, named as in diffusers'
`examples/unconditional_image_generation/train_unconditional.py` wherever the meaning is the same.

The defaults of the flags that [`TrainingConfig`] holds come from it, so the two cannot disagree.
"""

from __future__ import annotations

import argparse
import os

from .config import DEFAULTS


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
        "--resolution", type=int, default=None, help="Image size; defaults to the UNet's sample_size (32 for MNIST)."
    )
    group.add_argument("--center_crop", action="store_true", help="Centre-crop instead of random-crop.")
    group.add_argument("--random_flip", action="store_true", help="Flip images horizontally at random.")
    group.add_argument("--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes.")


def add_optimization_args(parser: argparse.ArgumentParser, learning_rate: float) -> None:
    group = parser.add_argument_group("optimisation")
    group.add_argument(
        "--train_batch_size", type=int, default=DEFAULTS["train_batch_size"], help="Batch size per device."
    )
    group.add_argument("--num_epochs", type=int, default=DEFAULTS["num_epochs"])
    group.add_argument(
        "--max_train_steps",
        type=int,
        default=DEFAULTS["max_train_steps"],
        help="Total optimiser steps; overrides --num_epochs if set.",
    )
    group.add_argument("--gradient_accumulation_steps", type=int, default=DEFAULTS["gradient_accumulation_steps"])
    group.add_argument("--learning_rate", type=float, default=learning_rate)
    group.add_argument(
        "--lr_scheduler",
        type=str,
        default=DEFAULTS["lr_scheduler"],
        help='One of diffusers\' schedules: "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", '
        '"constant_with_warmup".',
    )
    group.add_argument("--lr_warmup_steps", type=int, default=DEFAULTS["lr_warmup_steps"])
    group.add_argument("--adam_beta1", type=float, default=DEFAULTS["adam_beta1"])
    group.add_argument("--adam_beta2", type=float, default=DEFAULTS["adam_beta2"])
    group.add_argument("--adam_weight_decay", type=float, default=DEFAULTS["adam_weight_decay"])
    group.add_argument("--adam_epsilon", type=float, default=DEFAULTS["adam_epsilon"])
    group.add_argument("--max_grad_norm", type=float, default=DEFAULTS["max_grad_norm"])
    group.add_argument("--use_ema", action="store_true", help="Keep an exponential moving average of the weights.")
    group.add_argument("--ema_inv_gamma", type=float, default=DEFAULTS["ema_inv_gamma"])
    group.add_argument("--ema_power", type=float, default=DEFAULTS["ema_power"])
    group.add_argument("--ema_max_decay", type=float, default=DEFAULTS["ema_max_decay"])
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
        type=float,
        default=DEFAULTS["max_train_minutes"],
        help="Stop cleanly (and save) after this much wall-clock time, e.g. to fit a time-boxed job.",
    )


def add_output_args(parser: argparse.ArgumentParser, output_dir: str) -> None:
    group = parser.add_argument_group("outputs, logging and checkpoints")
    group.add_argument("--output_dir", type=str, default=output_dir)
    group.add_argument("--overwrite_output_dir", action="store_true")
    group.add_argument("--logger", type=str, default=DEFAULTS["logger"], choices=["tensorboard", "wandb"])
    group.add_argument("--logging_dir", type=str, default=DEFAULTS["logging_dir"], help="Relative to --output_dir.")
    group.add_argument("--save_images_epochs", type=int, default=10, help="Validation images every N epochs.")
    group.add_argument(
        "--validation_steps", type=int, default=None, help="Validation every N steps as well (for short runs)."
    )
    group.add_argument("--checkpointing_steps", type=int, default=DEFAULTS["checkpointing_steps"])
    group.add_argument("--checkpoints_total_limit", type=int, default=DEFAULTS["checkpoints_total_limit"])
    group.add_argument(
        "--resume_from_checkpoint",
        type=str,
        default=DEFAULTS["resume_from_checkpoint"],
        help='A checkpoint folder, or "latest" in --output_dir.',
    )
    group.add_argument("--push_to_hub", action="store_true")
    group.add_argument("--hub_token", type=str, default=None)
    group.add_argument("--hub_model_id", type=str, default=None)
    group.add_argument("--hub_private_repo", action="store_true")
    group.add_argument("--local_rank", type=int, default=-1, help="Set by the launcher.")
    group.add_argument(
        "--report_ranks",
        action="store_true",
        help="Write what each process trained on and its final weight checksum to output_dir/ranks/ (to check that "
        "a multi-process run really is distributed).",
    )


def finalize_args(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve defaults that depend on other flags or the environment."""
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
    return args
