"""Model cards and `--push_to_hub` for the training scripts."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
from pathlib import Path

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
LATENT_SAMPLER_TAGS = [*PDAE_TAGS, "unconditional-image-generation"]
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
    "pretrained_vae_model_name_or_path",
    "autoencoder_type",
    "latent_channels",
    "num_vq_embeddings",
    "reconstruction_loss",
    "kl_weight",
    "dataset_name",
    "dataset_config_name",
    "train_data_dir",
    "resolution",
    "latent_dim",
    "hidden_dim",
    "num_layers",
    "lambda_gamma",
    "warm_start_from_unet",
    "gradient_estimator_resnets_per_block",
    "gradient_estimator_width_multiplier",
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


# Flags whose values may be local paths, which a public card shows by name only.
PATH_FLAGS = (
    "pretrained_model_name_or_path",
    "pretrained_vae_model_name_or_path",
    "train_data_dir",
    "init_from_pipeline",
    "validation_data_dir",
)


def is_hub_id(name: str | None) -> bool:
    """Whether `name` reads as a Hub repo id (`owner/name` or `name`) rather than a local folder."""
    return bool(name) and not os.path.exists(name) and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None


def shown_name(value: str | None) -> str | None:
    """A Hub id as it is; a local path by its last component (a card is public: no local directories in it)."""
    if value is None or is_hub_id(value):
        return value
    return f"{os.path.basename(os.path.normpath(value))} (local)"


def _flags_table(args) -> str:
    # With --max_train_steps the steps set the run's length; an epoch count beside them would contradict it.
    steps_given = getattr(args, "max_train_steps", None) is not None
    given = [
        name
        for name in CARD_FLAGS
        if getattr(args, name, None) is not None and not (name == "num_epochs" and steps_given)
    ]
    rows = [
        f"| `--{name}` | `{shown_name(getattr(args, name)) if name in PATH_FLAGS else getattr(args, name)}` |"
        for name in given
    ]
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
    """A card of `description` under its metadata: library diffusers, `tags`, and `base_model` when it is a Hub id
    (diffusers' template would add sections of TODOs; every section here is filled)."""
    data = ModelCardData(library_name="diffusers", base_model=base_model if is_hub_id(base_model) else None)
    data.tags = list(tags)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{description}")


USAGE_EXAMPLE = """
images = torch.rand(4, *pipe.image_shape) * 2 - 1  # your images as a tensor in [-1, 1], or a list of PIL images
z = pipe.encode(images)  # the codes, (4, latent_dim)
reconstructions = pipe.reconstruct(images, num_inference_steps=50).images"""


GENERATION_EXAMPLE = """
samples = pipe(batch_size=4, num_inference_steps=50).images  # new codes from the latent sampler, decoded"""


def usage_with_package(repo_id: str, example: str = USAGE_EXAMPLE) -> str:
    """The card's snippet for users who have diffusers-pdae installed (runs as written; tested)."""
    return (
        f"""import torch
from diffusers_pdae import PDAEPipeline

pipe = PDAEPipeline.from_pretrained("{repo_id}")  # the installed classes; no code from the repo runs"""
        + example
    )


def usage_without_package(repo_id: str, example: str = USAGE_EXAMPLE) -> str:
    """The card's snippet for users without diffusers-pdae: the code saved beside the weights (tested)."""
    return f"""import torch
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{repo_id}", trust_remote_code=True)""" + (example)


def _usage_section(repo_id: str, example: str) -> str:
    return f"""## Usage

With the diffusers-pdae package installed (`pip install diffusers-pdae`, or `pip install .` in its repository):

```python
{usage_with_package(repo_id, example)}
```

Without it: the pipeline's code ships in this repository, so diffusers alone loads it once you trust that code:

```python
{usage_without_package(repo_id, example)}
```
"""


def pdae_model_card(args, repo_id: str, metrics: dict, grid_file: str | None) -> ModelCard:
    """A model card for a trained `PDAEPipeline`: base model, data, flags, final metrics, grid, tags and usage."""
    grid = (
        f"\n## Validation\n\nHeld-out images | reconstructions from inferred x_T | from z alone (random x_T):\n\n"
        f"![validation grid]({grid_file})\n"
        if grid_file
        else ""
    )
    dpm = shown_name(args.pretrained_model_name_or_path)
    description = f"""# PDAE on {dpm}

A [PDAE](https://arxiv.org/abs/2212.12990) diffusion autoencoder (Zhang, Zhao & Lin, NeurIPS 2022; official code at
github.com/ckczzj/PDAE) trained with diffusers_pdae `examples/train_pdae.py`. The pre-trained DPM
`{dpm}` is frozen; only the encoder ({encoder_description(args)}; image -> z, {args.latent_dim} dims) and the
gradient estimator G(x_t, z, t) were trained, on {dataset_description(args)}.{latent_description(args)}

{_usage_section(repo_id, USAGE_EXAMPLE)}{grid}
{_training_sections(args, metrics)}"""
    return _model_card(description, PDAE_TAGS, base_model=args.pretrained_model_name_or_path)


def latent_description(args) -> str:
    """For PDAE on a latent DPM: what runs in latent space and what the user sees."""
    autoencoder = getattr(args, "autoencoder", None)
    if autoencoder is None:
        return ""
    dpm = shown_name(args.pretrained_model_name_or_path)
    return (
        f"\n\n`{dpm}` is a latent diffusion model: its UNet, and G, work on the latents of its frozen "
        f"`{autoencoder}`, which the pipeline carries as `vae`. The encoder reads the pixel images, and every "
        'pipeline method takes and returns pixel images; `output_type="latent"` returns the diffusion latents.'
    )


def encoder_description(args) -> str:
    """The encoder design of a `train_pdae.py` run, in words, naming a pre-trained backbone (and so its licence's
    source) when one was used."""
    design = getattr(args, "encoder_type", "light")
    if design == "residual":
        warm = " and initialised from its weights" if args.encoder_warm_start_from_unet else ""
        return f"a residual encoder shaped like the DPM's down half{warm}"
    if design == "transformers":
        if args.encoder_backbone is None:
            return "a transformers vision backbone trained from scratch, with a projection head"
        frozen = "frozen" if args.freeze_encoder_backbone else "fine-tuned"
        backbone = shown_name(args.encoder_backbone)
        return f"the pre-trained transformers backbone `{backbone}`, {frozen}, with a projection head"
    return "a light convolutional encoder"


def latent_sampler_model_card(args, repo_id: str, metrics: dict, grid_file: str | None) -> ModelCard:
    """A model card for a `PDAEPipeline` with a latent sampler trained by `examples/train_latent_sampler.py`."""
    grid = f"\n## Samples\n\nSampled codes, decoded:\n\n![samples]({grid_file})\n" if grid_file else ""
    base = shown_name(args.pretrained_model_name_or_path)
    description = f"""# PDAE with a latent sampler, on {base}

The [PDAE](https://arxiv.org/abs/2212.12990) pipeline `{base}` with a latent sampler: a small diffusion model over
its codes z (an MLP with skip connections, as Diff-AE's latent DPM), trained with diffusers_pdae
`examples/train_latent_sampler.py` on the codes of {dataset_description(args)}. `pipe(batch_size=n)` samples n codes
with it and decodes them from random x_T: unconditional generation through the codes. Everything else (encode,
reconstruct, interpolate, manipulate) is the PDAE pipeline's.

{_usage_section(repo_id, USAGE_EXAMPLE + GENERATION_EXAMPLE)}{grid}
{_training_sections(args, metrics)}"""
    return _model_card(description, LATENT_SAMPLER_TAGS, base_model=args.pretrained_model_name_or_path)


def dpm_usage(repo_id: str) -> str:
    """The DPM card's snippet (runs as written; tested)."""
    return f"""from diffusers import DDPMPipeline

images = DDPMPipeline.from_pretrained("{repo_id}")(batch_size=16).images  # 16 PIL images"""


def dpm_model_card(args, repo_id: str, metrics: dict, grid_file: str | None) -> ModelCard:
    """A model card for a DDPM pre-trained with `examples/train_dpm.py`."""
    grid = f"\n## Samples\n\n![samples]({grid_file})\n" if grid_file else ""
    description = f"""# DDPM trained with diffusers_pdae

An unconditional DDPM (`UNet2DModel` + `DDPMScheduler`) trained with diffusers_pdae `examples/train_dpm.py` on
{dataset_description(args)}, to serve as the frozen DPM of a PDAE diffusion autoencoder.

```python
{dpm_usage(repo_id)}
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
