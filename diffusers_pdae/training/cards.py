"""Model cards of what the training scripts release: the PDAE pipeline, its latent sampler and a DPM (the latent
DPM's and the autoencoder's are in `latent_cards`): what was trained on what, the flags, the final metrics, the
frozen model's license, and usage snippets that run as written."""

from __future__ import annotations

import os
import re

from huggingface_hub import ModelCard, ModelCardData

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


def _model_card(
    description: str, tags: list[str], base_model: str | None = None, license: str | None = None
) -> ModelCard:
    """A card of `description` under its metadata: library diffusers, `tags`, `base_model` when it is a Hub id and
    the `license` (diffusers' template would add sections of TODOs; every section here is filled)."""
    data = ModelCardData(
        library_name="diffusers", base_model=base_model if is_hub_id(base_model) else None, license=license
    )
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
    license = source_license(args.pretrained_model_name_or_path)
    description = f"""# PDAE on {dpm}

A [PDAE](https://arxiv.org/abs/2212.12990) diffusion autoencoder (Zhang, Zhao & Lin, NeurIPS 2022; official code at
github.com/ckczzj/PDAE) trained with diffusers_pdae `examples/train_pdae.py`. The pre-trained DPM
`{dpm}` is frozen; only the encoder ({encoder_description(args)}; image -> z, {args.latent_dim} dims) and the
gradient estimator G(x_t, z, t) were trained, on {dataset_description(args)}.{latent_description(args)}\
{prompt_description(args)}{license_description(license)}

{_usage_section(repo_id, USAGE_EXAMPLE)}{grid}
{_training_sections(args, metrics)}"""
    return _model_card(description, PDAE_TAGS, base_model=args.pretrained_model_name_or_path, license=license)


def prompt_description(args) -> str:
    """For PDAE on a text-conditional DPM (Stable Diffusion): the prompt its UNet is asked with."""
    if getattr(args, "frozen_model", None) != "UNet2DConditionModel":
        return ""
    prompt = args.prompt or ""
    what = "the empty prompt (its unconditional branch)" if not prompt else f'the prompt "{prompt}"'
    return (
        f"\n\nIts UNet is text-conditional: PDAE asks it with {what}, whose embedding the pipeline stores as "
        "`prompt_embedding`; the text encoder and tokenizer are not needed and not included."
    )


def source_license(name_or_path: str) -> str | None:
    """The license in a source model's card metadata (a local folder's README.md, or the Hub repo's card), or None
    where it has none or the card cannot be read (offline, no card)."""
    source = os.path.join(name_or_path, "README.md") if os.path.isdir(name_or_path) else name_or_path
    if os.path.isdir(name_or_path) and not os.path.isfile(source):
        return None
    try:
        return ModelCard.load(source).data.license
    except Exception:  # noqa: BLE001 (any failure to read a card means only: license unknown, said in the card)
        return None


def license_description(license: str | None) -> str:
    """What the card says of the frozen model's license, which the released pipeline carries with its weights."""
    if license is None:
        return (
            "\n\nThe pipeline carries the frozen model's weights unchanged: their own license applies (its card "
            "could not be read here; see the source)."
        )
    return f"\n\nThe pipeline carries the frozen model's weights unchanged, under their license: `{license}`."


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
