"""`--push_to_hub` and the released folder: what is uploaded, `training_info.json`, the model card written by the
script's card builder (`cards`), and the upload itself."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from pathlib import Path

from huggingface_hub import HfApi

from .args import public_flags

# What a training run leaves in --output_dir that does not belong in the released model.
NOT_UPLOADED = [
    "checkpoint-*",
    "checkpoint-*/**",
    "logs/**",
    "ranks/**",
    "samples/**",
    "validation/**",
    "*.tmp/**",
    ".training.lock",
]


# Flags worth reporting in a card (the others are logistics).
def files_to_upload(output_dir: str) -> list[str]:
    """Relative paths of the files in `output_dir` that make up the released model (checkpoints, logs excluded)."""
    root = Path(output_dir)
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not any(fnmatch.fnmatch(relative, pattern) for pattern in NOT_UPLOADED):
            files.append(relative)
    return files


def write_training_info(output_dir: str, info: dict) -> None:
    with open(os.path.join(output_dir, "training_info.json"), "w") as f:
        json.dump(info, f, indent=2, default=str)


class HubError(RuntimeError):
    """The Hub could not be reached or refused: what failed and what to do."""


def create_hub_repo(args) -> str:
    """Create (or find) the `--push_to_hub` repo before training, so a run that cannot push fails at once.

    Returns:
        The repo id (`owner/name`).

    Raises:
        [`HubError`]: naming the repo, the reason and what to do.
    """
    wanted = args.hub_model_id or Path(args.output_dir).name
    try:
        return HfApi(token=args.hub_token).create_repo(wanted, exist_ok=True, private=args.hub_private_repo).repo_id
    except Exception as error:  # network, authentication, offline mode: all mean "cannot push"
        raise HubError(
            f"--push_to_hub: cannot create the Hub repo {wanted!r} ({type(error).__name__}: {error}). Log in with "
            "`huggingface-cli login` (or set HF_TOKEN), check the connection, or drop --push_to_hub."
        ) from error


def release_folder(
    args,
    card_builder,
    metrics: dict,
    summary: dict,
    grid_source: str | None = None,
    card_image: str = "validation.png",
    repo_id: str | None = None,
) -> list[str] | None:
    """Finish `args.output_dir` as a release: grid image, `training_info.json`, model card; then push if asked.

    Everything is written locally first; an upload failure leaves it in place and says how to upload it later.

    Args:
        card_builder (`Callable`): `dpm_model_card`, `pdae_model_card` or `latent_sampler_model_card`.
        metrics: final metrics for the card and `training_info.json`.
        summary: facts about the run (`TrainingLoop.summary()`).
        grid_source: a PNG to show in the card (copied into the folder as `card_image`).
        repo_id: the repo [`create_hub_repo`] made (with `--push_to_hub`); the card's snippets use it.

    Returns:
        The uploaded files with `--push_to_hub`, else None.

    Raises:
        [`HubError`]: if the upload fails (the folder is complete on disk).
    """
    output_dir = args.output_dir
    grid_file = None
    if grid_source is not None and os.path.isfile(grid_source):
        shutil.copyfile(grid_source, os.path.join(output_dir, card_image))
        grid_file = card_image
    write_training_info(output_dir, {**summary, "metrics": metrics, "flags": public_flags(args)})
    shown_id = repo_id or args.hub_model_id or Path(output_dir).name
    card_builder(args, shown_id, metrics, grid_file).save(os.path.join(output_dir, "README.md"))
    if not args.push_to_hub:
        return None
    files = files_to_upload(output_dir)
    try:
        HfApi(token=args.hub_token).upload_folder(
            repo_id=shown_id,
            folder_path=output_dir,
            allow_patterns=files,
            commit_message="Upload model trained with diffusers_pdae",
        )
    except Exception as error:
        excludes = " ".join(f"--exclude '{pattern}'" for pattern in NOT_UPLOADED)
        raise HubError(
            f"The upload to {shown_id} failed ({type(error).__name__}: {error}). Everything is saved in {output_dir}; "
            f"upload it later with: huggingface-cli upload {shown_id} {output_dir} . {excludes}"
        ) from error
    return files
