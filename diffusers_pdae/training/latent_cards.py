"""Model cards of the latent diffusion runs: an autoencoder trained by `examples/train_autoencoder.py` and an
`LDMPipeline` trained by `examples/train_dpm.py --pretrained_vae_model_name_or_path` (the cards of the pixel runs
are in `hub`)."""

from __future__ import annotations

from huggingface_hub import ModelCard

from .cards import DPM_TAGS, _model_card, _training_sections, dataset_description, shown_name

AUTOENCODER_TAGS = ["diffusers", "diffusers_pdae", "autoencoder", "latent-diffusion", "diffusers-training"]
LDM_TAGS = [*DPM_TAGS, "latent-diffusion"]

ENCODE = {
    "VQModel": "latents = vae.encode(images).latents * vae.config.scaling_factor  # unquantized, as LDMs train",
    "AutoencoderKL": "latents = vae.encode(images).latent_dist.mode() * vae.config.scaling_factor  # posterior mean",
}


def autoencoder_usage(repo_id: str, class_name: str, shape: tuple[int, int, int]) -> str:
    """The autoencoder card's snippet: encode images to diffusion latents and decode them, as `LDMPipeline` (a
    `VQModel`, which quantizes in `decode`) and `DiTPipeline` (an `AutoencoderKL`) do (runs as written; tested)."""
    channels, height, width = shape
    return f"""import torch
from diffusers import {class_name}

vae = {class_name}.from_pretrained("{repo_id}")
images = torch.rand(4, {channels}, {height}, {width}) * 2 - 1  # your images in [-1, 1]
with torch.no_grad():
    {ENCODE[class_name]}
    reconstructions = vae.decode(latents / vae.config.scaling_factor).sample"""


def autoencoder_model_card(
    args,
    repo_id: str,
    metrics: dict,
    grid_file: str | None,
    *,
    class_name: str,
    downsampling_factor: int,
    image_shape: tuple[int, int, int],
    num_scaling_images: int,
) -> ModelCard:
    """A model card for an autoencoder trained with `examples/train_autoencoder.py` (bind the keyword arguments with
    `functools.partial` to make it a `card_builder`)."""
    regulariser = (
        "VQModel's codebook and commitment loss"
        if class_name == "VQModel"
        else f"the KL term with weight {args.kl_weight} (per pixel)"
    )
    component = "`vqvae` of diffusers' `LDMPipeline`" if class_name == "VQModel" else "`vae` of `DiTPipeline`"
    grid = f"\n## Validation\n\nHeld-out images and their reconstructions:\n\n![validation grid]({grid_file})\n"
    description = f"""# {class_name} autoencoder trained with diffusers_pdae

A `{class_name}` (the {component}) trained with diffusers_pdae `examples/train_autoencoder.py` on
{dataset_description(args)}: {downsampling_factor}x downsampling, latents of {args.latent_channels} channels.
Loss: {args.reconstruction_loss.upper()} reconstruction plus {regulariser}; no adversarial or perceptual loss.

Its `scaling_factor` ({metrics.get("scaling_factor", 0):.6g}) is 1 / std of its latents over {num_scaling_images}
training images, the recipe of the LDM paper (Rombach et al. 2022, sec. 4.3.2 and D.1): a diffusion model on
`latents * scaling_factor` sees latents of unit variance.

```python
{autoencoder_usage(repo_id, class_name, image_shape)}
```

A latent DPM on it: `accelerate launch examples/train_dpm.py --pretrained_vae_model_name_or_path {repo_id}`.
{grid if grid_file else ""}
{_training_sections(args, metrics)}"""
    return _model_card(description, AUTOENCODER_TAGS)


def ldm_usage(repo_id: str) -> str:
    """The LDM card's snippet (runs as written; tested)."""
    return f"""from diffusers import LDMPipeline

images = LDMPipeline.from_pretrained("{repo_id}")(batch_size=16, num_inference_steps=50).images  # 16 PIL images"""


def ldm_model_card(
    args, repo_id: str, metrics: dict, grid_file: str | None, *, class_name: str, latent_shape: tuple[int, int, int]
) -> ModelCard:
    """A model card for a latent DPM trained with `examples/train_dpm.py --pretrained_vae_model_name_or_path` (bind
    the keyword arguments with `functools.partial` to make it a `card_builder`)."""
    channels, height, width = latent_shape
    kl_note = (
        ""
        if class_name == "VQModel"
        else "\n`LDMPipeline` names its autoencoder `vqvae` and expects a `VQModel`: it loads this `AutoencoderKL` "
        'with a warning ("Expected types for vqvae") and decodes it correctly, as `DiTPipeline` would.\n'
    )
    grid = f"\n## Samples\n\n![samples]({grid_file})\n" if grid_file else ""
    description = f"""# Latent diffusion model trained with diffusers_pdae

An unconditional latent diffusion model (diffusers' `LDMPipeline`: `vqvae`, `unet`, `scheduler`) trained with
diffusers_pdae `examples/train_dpm.py` on {dataset_description(args)}. The `UNet2DModel` denoises
{channels}x{height}x{width} latents of {args.resolution}-pixel images, made by the frozen `{class_name}`
`{shown_name(args.pretrained_vae_model_name_or_path)}`; the `DDIMScheduler` has `clip_sample=False` (latents are not
bounded to [-1, 1]). It can serve as the frozen DPM of a PDAE diffusion autoencoder.
{kl_note}
```python
{ldm_usage(repo_id)}
```
{grid}
{_training_sections(args, metrics)}"""
    return _model_card(description, LDM_TAGS)


TEXT_TO_IMAGE_TAGS = [*LDM_TAGS, "text-to-image", "stable-diffusion"]


def text_to_image_usage(repo_id: str, prompt: str) -> str:
    """The text-to-image card's snippet (runs as written; tested)."""
    return f"""from diffusers import StableDiffusionPipeline

pipe = StableDiffusionPipeline.from_pretrained("{repo_id}")
images = pipe("{prompt}", num_images_per_prompt=4, num_inference_steps=50, guidance_scale=3.0).images"""


def text_to_image_model_card(
    args, repo_id: str, metrics: dict, grid_file: str | None, *, latent_shape: tuple[int, int, int], prompt: str
) -> ModelCard:
    """A model card for a text-conditional latent DPM trained with `examples/train_dpm.py` and its captions (bind the
    keyword arguments with `functools.partial` to make it a `card_builder`)."""
    channels, height, width = latent_shape
    text_encoder = (
        f"the frozen text encoder of `{shown_name(args.pretrained_text_encoder_name_or_path)}`"
        if args.pretrained_text_encoder_name_or_path
        else "a small CLIP text encoder, randomly initialised (seeded) and frozen, over a tokenizer of the captions' "
        "words"
    )
    captions = "`a handwritten digit <name>` from each digit's label" if args.digit_captions else (
        f"the `{args.caption_column}` column"
    )  # fmt: skip
    grid = f"\n## Samples\n\nOne row per prompt:\n\n![samples]({grid_file})\n" if grid_file else ""
    description = f"""# Text-conditional latent diffusion model trained with diffusers_pdae

A Stable Diffusion-shaped model (diffusers' `StableDiffusionPipeline`: `vae`, `text_encoder`, `tokenizer`, `unet`,
`scheduler`; no safety checker) trained with diffusers_pdae `examples/train_dpm.py` on {dataset_description(args)}.
Its `UNet2DConditionModel` denoises {channels}x{height}x{width} latents of {args.resolution}-pixel images, made by
the frozen autoencoder `{shown_name(args.pretrained_vae_model_name_or_path)}`, conditioned through {text_encoder} on
the captions ({captions}); {args.proportion_empty_prompts:.0%} of them were replaced by the empty prompt, so the
empty prompt is a real unconditional model, as classifier-free guidance and PDAE need it.

```python
{text_to_image_usage(repo_id, prompt)}
```
{grid}
{_training_sections(args, metrics)}"""
    return _model_card(description, TEXT_TO_IMAGE_TAGS)


DIT_TAGS = [*LDM_TAGS, "class-conditional", "dit"]


def dit_usage(repo_id: str) -> str:
    """The DiT card's snippet (runs as written; tested)."""
    return f"""from diffusers import DiTPipeline

pipe = DiTPipeline.from_pretrained("{repo_id}")
images = pipe(class_labels=[7] * 4, num_inference_steps=50, guidance_scale=3.0).images  # four sevens"""


def dit_model_card(
    args, repo_id: str, metrics: dict, grid_file: str | None, *, latent_shape: tuple[int, int, int]
) -> ModelCard:
    """A model card for a class-conditional diffusion transformer trained with `examples/train_dpm.py --model_type
    dit` (bind `latent_shape` with `functools.partial` to make it a `card_builder`)."""
    channels, height, width = latent_shape
    grid = f"\n## Samples\n\nOne row per digit:\n\n![samples]({grid_file})\n" if grid_file else ""
    description = f"""# Class-conditional diffusion transformer trained with diffusers_pdae

A DiT (diffusers' `DiTPipeline`: `transformer`, `vae`, `scheduler`) trained with diffusers_pdae
`examples/train_dpm.py --model_type dit` on {dataset_description(args)}, conditioned on the digit labels. Its
`DiTTransformer2DModel` denoises {channels}x{height}x{width} latents of {args.resolution}-pixel images, made by the
frozen autoencoder `{shown_name(args.pretrained_vae_model_name_or_path)}`. In training, 10% of the labels were dropped
to the null class (label 1000, which `DiTPipeline`'s guidance uses; the digits are labels 0-9), so the null class is
a real unconditional model, as classifier-free guidance and PDAE need it.

```python
{dit_usage(repo_id)}
```
{grid}
{_training_sections(args, metrics)}"""
    return _model_card(description, DIT_TAGS)
