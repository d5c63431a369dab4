"""Model cards and `--push_to_hub` for the training scripts."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from pathlib import Path

from diffusers.utils.hub_utils import MODEL_CARD_TEMPLATE_PATH, populate_model_card
from huggingface_hub import HfApi, ModelCard, ModelCardData

from .args import public_flags

PDAE_TAGS = [
    "diffusers",
    "diffusers_pdae",
    "pdae",
    "diffusion-autoencoder",
    "representation-learning",
    "diffusers-training",
]
DPM_TAGS = ["diffusers", "diffusers_pdae", "unconditional-image-generation", "diffusers-training"]

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
CARD_FLAGS = (
    "pretrained_model_name_or_path",
    "dataset_name",
    "dataset_config_name",
    "train_data_dir",
    "resolution",
    "latent_dim",
    "lambda_gamma",
    "warm_start_from_unet",
    "init_from_pipeline",
    "num_class_embeds",
    "train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "lr_scheduler",
    "lr_warmup_steps",
    "max_train_steps",
    "num_epochs",
    "use_ema",
    "ema_max_decay",
    "mixed_precision",
    "seed",
)


def dataset_description(args) -> str:
    if getattr(args, "dataset_name", None):
        return f"[{args.dataset_name}](https://huggingface.co/datasets/{args.dataset_name})"
    if getattr(args, "train_data_dir", None):
        return f"a local image folder (`{os.path.basename(os.path.normpath(args.train_data_dir))}`)"
    return "the MNIST digits bundled with diffusers_pdae (8,000-image train split; MNIST is CC BY-SA 3.0)"


def _flags_table(args) -> str:
    given = [name for name in CARD_FLAGS if getattr(args, name, None) is not None]
    rows = [f"| `--{name}` | `{getattr(args, name)}` |" for name in given]
    return "\n".join(["| flag | value |", "| --- | --- |", *rows])


def _metrics_table(metrics: dict) -> str:
    rows = []
    for name, value in metrics.items():
        shown = f"{value:.6g}" if isinstance(value, float) else f"{value}"
        rows.append(f"| {name} | {shown} |")
    return "\n".join(["| metric | value |", "| --- | --- |", *rows])


def _training_sections(args, metrics: dict) -> str:
    return f"""## Training

{_flags_table(args)}

## Final metrics

{_metrics_table(metrics)}
"""


def _model_card(description: str, tags: list[str], base_model: str | None = None) -> ModelCard:
    """diffusers' model-card template filled with `description`, tagged with `tags`."""
    card = ModelCard.from_template(
        card_data=ModelCardData(library_name="diffusers", base_model=base_model),
        template_path=MODEL_CARD_TEMPLATE_PATH,
        model_description=description,
    )
    return populate_model_card(card, tags=list(tags))


USAGE_EXAMPLE = """
images = torch.rand(4, pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
images = images * 2 - 1  # your images as a tensor in [-1, 1], or a list of PIL images
z = pipe.encode(images)  # the codes, (4, latent_dim)
reconstructions = pipe.reconstruct(images, num_inference_steps=50).images"""


def usage_with_package(repo_id: str) -> str:
    """The card's snippet for users who have diffusers-pdae installed (runs as written; tested)."""
    return (
        f"""import torch
import diffusers_pdae  # noqa: F401  (diffusers then loads the installed PDAE classes)
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{repo_id}")"""
        + USAGE_EXAMPLE
    )


def usage_without_package(repo_id: str) -> str:
    """The card's snippet for users without diffusers-pdae: the code saved beside the weights (tested)."""
    return f"""import torch
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{repo_id}", custom_pipeline="pipeline_pdae", trust_remote_code=True)""" + (
        USAGE_EXAMPLE
    )


def pdae_model_card(args, repo_id: str, metrics: dict, grid_file: str | None) -> ModelCard:
    """A model card for a trained `PDAEPipeline`: base model, data, flags, final metrics, grid, tags and usage."""
    grid = (
        f"\n## Validation\n\nHeld-out images | reconstructions from inferred x_T | from z alone (random x_T):\n\n"
        f"![validation grid]({grid_file})\n"
        if grid_file
        else ""
    )
    description = f"""# PDAE on {args.pretrained_model_name_or_path}

A [PDAE](https://arxiv.org/abs/2212.12990) diffusion autoencoder (Zhang, Zhao & Lin, NeurIPS 2022; official code at
github.com/ckczzj/PDAE) trained with diffusers_pdae `examples/train_pdae.py`. The pre-trained DPM
`{args.pretrained_model_name_or_path}` is frozen; only the encoder (image -> z, {args.latent_dim} dims) and the
gradient estimator G(x_t, z, t) were trained, on {dataset_description(args)}.

## Usage

With the diffusers-pdae package installed (`pip install diffusers-pdae`, or `pip install .` in its repository):

```python
{usage_with_package(repo_id)}
```

Without it: the pipeline's code ships in this repository, so diffusers alone loads it once you trust that code:

```python
{usage_without_package(repo_id)}
```
{grid}
{_training_sections(args, metrics)}"""
    return _model_card(description, PDAE_TAGS, base_model=args.pretrained_model_name_or_path)


def dpm_model_card(args, repo_id: str, metrics: dict, grid_file: str | None) -> ModelCard:
    """A model card for a DDPM pre-trained with `examples/train_dpm.py`."""
    grid = f"\n## Samples\n\n![samples]({grid_file})\n" if grid_file else ""
    description = f"""# DDPM trained with diffusers_pdae

An unconditional DDPM (`UNet2DModel` + `DDPMScheduler`) trained with diffusers_pdae `examples/train_dpm.py` on
{dataset_description(args)}, to serve as the frozen DPM of a PDAE diffusion autoencoder.

```python
from diffusers import DDPMPipeline

images = DDPMPipeline.from_pretrained("{repo_id}")(batch_size=16).images
```
{grid}
{_training_sections(args, metrics)}"""
    return _model_card(description, DPM_TAGS)


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


def release_folder(
    args,
    card_builder,
    metrics: dict,
    summary: dict,
    grid_source: str | None = None,
    card_image: str = "validation.png",
) -> list[str] | None:
    """Finish `args.output_dir` as a release: grid image, `training_info.json`, model card; push if asked.

    Args:
        card_builder: `pdae_model_card` or `dpm_model_card`.
        metrics: final metrics for the card and `training_info.json`.
        summary: facts about the run (`TrainingLoop.summary()`).
        grid_source: a PNG to show in the card (copied into the folder as `card_image`).

    Returns:
        The uploaded files with `--push_to_hub`, else None.
    """
    output_dir = args.output_dir
    grid_file = None
    if grid_source is not None and os.path.isfile(grid_source):
        shutil.copyfile(grid_source, os.path.join(output_dir, card_image))
        grid_file = card_image
    write_training_info(output_dir, {**summary, "metrics": metrics, "flags": public_flags(args)})
    repo_id = args.hub_model_id or Path(output_dir).name
    api = HfApi(token=args.hub_token) if args.push_to_hub else None
    if api is not None:
        repo_id = api.create_repo(repo_id=repo_id, exist_ok=True, private=args.hub_private_repo).repo_id
    card_builder(args, repo_id, metrics, grid_file).save(os.path.join(output_dir, "README.md"))
    if api is None:
        return None
    files = files_to_upload(output_dir)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=output_dir,
        allow_patterns=files,
        commit_message="Upload model trained with diffusers_pdae",
    )
    return files
