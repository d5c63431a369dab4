"""The checkpoints shipped in pretrained/: they load with plain diffusers calls and do what the README says."""

from pathlib import Path

import torch
from diffusers import DDPMPipeline

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.data import load_mnist_arrays, mnist_to_tensor
from diffusers_pdae.evaluation import psnr

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"


def test_bundled_ddpm_loads_and_samples():
    pipeline = DDPMPipeline.from_pretrained(PRETRAINED / "ddpm-mnist")
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(
        batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="np"
    )
    assert images.images.shape == (2, 32, 32, 1)


def test_bundled_pdae_inferred_xt_beats_plain_ddim_inversion():
    pipeline = PDAEPipeline.from_pretrained(PRETRAINED / "pdae-mnist")
    pipeline.set_progress_bar_config(disable=True)
    images, _ = load_mnist_arrays("test")
    digits = mnist_to_tensor(images[:: len(images) // 16][:16])
    references = digits / 2 + 0.5
    steps = 20
    inferred = pipeline.reconstruct(digits, num_inference_steps=steps, output_type="pt").images
    x_T = pipeline.invert(digits, num_inference_steps=steps, apply_shift=False)
    plain = pipeline(latents=x_T, num_inference_steps=steps, output_type="pt").images
    gain = psnr(inferred, references).mean() - psnr(plain, references).mean()
    assert gain > 2.0, f"inferred x_T is only {gain:.2f} dB above plain DDIM inversion"
