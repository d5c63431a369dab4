"""Autoencoding fidelity: PDAE with inferred x_T, PDAE from z alone, plain DDIM inversion of the DPM, the DPM alone,
and for a latent DPM its autoencoder alone (the ceiling every other kind is bounded by).

Every kind decodes deterministically (DDIM, eta = 0, `clip_sample=False`) with the same number of steps T as its
inversion; the random x_T is one seeded draw per digit shared by every T and by both kinds that use it.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..figures import check_finite_figures
from ..latent_space import decode_latents, encode_images
from ..pipelines import PDAEPipeline
from .metrics import mse, psnr, ssim

RECONSTRUCTION_KINDS = {
    "pdae_inferred_xT": "PDAE, inferred x_T",
    "pdae_random_xT": "PDAE, random x_T (z only)",
    "ddim_inversion": "DDIM inversion of the DPM, no z",
    "dpm_random_xT": "DPM alone, random x_T",
}
# A latent pipeline's ceiling: its autoencoder's own reconstruction (encode, decode), which no x_T can beat.
AUTOENCODER_KIND = {"autoencoder": "autoencoder alone (the ceiling)"}


@torch.no_grad()
def reconstruct_every_kind(
    pipeline: PDAEPipeline, images: torch.Tensor, noise: torch.Tensor, num_inference_steps: int
) -> dict[str, torch.Tensor]:
    """Reconstructions of images `(B, C, H, W)` in [-1, 1] by every kind of `RECONSTRUCTION_KINDS`.

    Args:
        noise (`torch.Tensor` of shape `(B, *pipeline.sample_shape)`): the random x_T of the "random" kinds (the
            diffusion latents of a latent pipeline).

    Returns:
        `{kind: (B, C, H, W) in [0, 1]}`, with the `"autoencoder"` ceiling too for a latent pipeline.
    """
    steps = num_inference_steps
    codes = pipeline.encode(images)
    latents = {
        "pdae_inferred_xT": (pipeline.invert(images, codes, steps), codes),
        "pdae_random_xT": (noise, codes),
        "ddim_inversion": (pipeline.invert(images, num_inference_steps=steps, apply_shift=False), None),
        "dpm_random_xT": (noise, None),
    }
    outputs = {
        kind: pipeline.decode(x_T, z, steps, output_type="pt").images.float().cpu()
        for kind, (x_T, z) in latents.items()
    }
    if getattr(pipeline, "vae", None) is not None:
        pixels = decode_latents(pipeline.vae, encode_images(pipeline.vae, images.to(pipeline.vae.dtype)))
        outputs["autoencoder"] = (pixels.float().cpu() / 2 + 0.5).clamp(0, 1)
    return outputs


def image_scores(images: torch.Tensor, references: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image MSE, PSNR (dB) and SSIM, each `(B,)`, of images against references `(B, C, H, W)` in [0, 1]."""
    return {"mse": mse(images, references), "psnr": psnr(images, references), "ssim": ssim(images, references)}


def summarise(values: torch.Tensor) -> dict[str, float]:
    """Mean and standard error of the mean of per-image values `(B,)`."""
    values = values.double()
    sem = values.std(unbiased=True) / len(values) ** 0.5 if len(values) > 1 else torch.tensor(0.0)
    return {"mean": values.mean().item(), "sem": sem.item()}


@torch.no_grad()
def reconstruction_study(
    pipeline: PDAEPipeline,
    images: torch.Tensor,
    steps: list[int],
    seed: int = 0,
    batch_size: int = 128,
    num_examples: int = 10,
) -> tuple[dict[str, dict[str, dict[str, dict[str, float]]]], dict[int, dict[str, torch.Tensor]]]:
    """Score every kind of reconstruction at every number of steps.

    Args:
        images (`torch.Tensor` of shape `(N, C, H, W)`): test digits in [-1, 1].
        steps (`list[int]`): numbers of DDIM steps T (inversion and decoding).
        seed (`int`, defaults to 0): seed of the random x_T.
        batch_size (`int`, defaults to 128): images per network call.
        num_examples (`int`, defaults to 10): reconstructions of the first images kept for grids.

    Returns:
        `(figures, examples)`: `figures[str(T)][kind][metric] = {"mean", "sem"}` for metric in mse, psnr, ssim;
        `examples[T][kind]` the first `num_examples` reconstructions `(n, C, H, W)` in [0, 1] (plus
        `examples[T]["original"]`).
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(images), *pipeline.sample_shape), generator=generator)  # x_T (latents of a latent DPM)
    device = pipeline._execution_device
    figures, examples = {}, {}
    progress = tqdm(total=len(steps) * len(images), desc="reconstruction", leave=False)
    for num_steps in steps:
        per_image, kept = {}, {}
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device)
            references = (batch.float().cpu() / 2 + 0.5).clamp(0, 1)
            outputs = reconstruct_every_kind(pipeline, batch, noise[start : start + batch_size].to(device), num_steps)
            for kind, reconstructed in outputs.items():
                for metric, values in image_scores(reconstructed, references).items():
                    per_image.setdefault(kind, {}).setdefault(metric, []).append(values)
                kept.setdefault(kind, []).append(reconstructed)
            progress.update(len(batch))
        figures[str(num_steps)] = {
            kind: {metric: summarise(torch.cat(values)) for metric, values in metrics.items()}
            for kind, metrics in per_image.items()
        }
        examples[num_steps] = {kind: torch.cat(batches)[:num_examples] for kind, batches in kept.items()}
        examples[num_steps]["original"] = (images[:num_examples].float() / 2 + 0.5).clamp(0, 1)
    progress.close()
    return figures, examples


def format_reconstruction_table(figures: dict) -> str:
    """A plain-text table of `reconstruction_study`'s figures: one line per T and kind, MSE, PSNR +- s.e.m., SSIM.

    Raises:
        `ValueError`: naming the figures that are NaN or infinite (a pipeline that makes non-finite images), so that
            no script prints a table of `nan` and ends as if it had worked.
    """
    check_finite_figures(
        figures, "The reconstruction figures", "The pipeline makes non-finite images: check its weights, its vae's "
        "scaling_factor, and the images (NaN pixels).",
    )  # fmt: skip
    lines = [f"{'T':>4}  {'reconstruction':<34}{'MSE':>10}{'PSNR (dB)':>16}{'SSIM':>8}"]
    for steps, kinds in figures.items():
        for kind, scores in kinds.items():
            psnr_text = f"{scores['psnr']['mean']:.2f} +- {scores['psnr']['sem']:.2f}"
            name = {**RECONSTRUCTION_KINDS, **AUTOENCODER_KIND}[kind]
            lines.append(
                f"{steps:>4}  {name:<34}{scores['mse']['mean']:>10.6f}{psnr_text:>16}{scores['ssim']['mean']:>8.3f}"
            )
    return "\n".join(lines)
