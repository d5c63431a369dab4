"""The path flags of the scripts: each names a folder (the output folder, data, a model folder or checkpoint) or a
file, and one naming the other kind of thing is refused before anything is loaded or written."""

from __future__ import annotations

import argparse
import os

# Path flags that name a folder (or a Hub id) when they name something on disk, and those that name a file; a
# script's positional arguments are named without dashes.
FOLDER_FLAGS = (
    "output_dir", "train_data_dir", "validation_data_dir", "dataset_name", "cache_dir",
    "pretrained_model_name_or_path", "pretrained_vae_model_name_or_path", "init_from_pipeline",
    "resume_from_checkpoint", "encoder_backbone", "pipeline", "checkpoint",
)  # fmt: skip
FILE_FLAGS = ("json",)
# The folder flags that may name a Hub id instead.
HUB_FLAGS = ("dataset_name", "pretrained_model_name_or_path", "pretrained_vae_model_name_or_path",
             "init_from_pipeline", "encoder_backbone", "pipeline")  # fmt: skip


def path_problem(path: str, folder: bool) -> str:
    """Why `path` cannot be the folder (`folder=True`) or the file a flag names ("" when it can): it is the other
    kind of thing, or it lies under a file, or (a file to write) its folder does not exist."""
    if os.path.exists(path):
        if folder and not os.path.isdir(path):
            return "is a file, not a folder"
        return "" if folder or not os.path.isdir(path) else "is a folder, not a file"
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        if not folder:
            return f"cannot be written: its folder {os.path.dirname(os.path.abspath(path))} does not exist"
        parent = os.path.dirname(parent)
    return "" if os.path.isdir(parent) else f"lies under {parent}, which is a file"


def check_path_flags(args: argparse.Namespace, positional: tuple[str, ...] = ()) -> None:
    """Refuse, before anything is loaded or written, a path flag naming the wrong kind of thing: a file where a
    folder belongs (the output folder, data, a model folder or checkpoint) or a folder where a file belongs.

    Raises:
        `ValueError`: naming the flag, the path and what it is.
    """
    kinds = [(name, True) for name in FOLDER_FLAGS] + [(name, False) for name in FILE_FLAGS]
    if isinstance(getattr(args, "output_dir", None), str) and isinstance(getattr(args, "logging_dir", None), str):
        kinds.append(("logging_dir", True))
    for name, folder in kinds:
        value = getattr(args, name, None)
        if not isinstance(value, str) or (name == "resume_from_checkpoint" and value == "latest"):
            continue
        path = os.path.normpath(os.path.join(args.output_dir, value)) if name == "logging_dir" else value
        problem = path_problem(path, folder)
        if problem:
            flag = name if name in positional else f"--{name}"
            wanted = "a folder" + (" or a Hub id" if name in HUB_FLAGS else "") if folder else "a file in a folder"
            raise ValueError(f"{flag} {value} {problem}: pass {wanted}.")
