"""The checkpoints shipped in `diffusers_pdae/bundled/`: found from anywhere, loaded with plain diffusers calls, and
doing what the README says."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, LDMPipeline, VQModel

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import BUNDLED_CHECKPOINTS, checkpoint_path, load_mnist_arrays, load_mnist_tensors
from diffusers_pdae.evaluation import psnr
from diffusers_pdae.latent_space import decode_latents, downsampling_factor, encode_images

REPO = Path(__file__).resolve().parents[2]
# pdae-ldm-mnist's gain on these 16 test digits at T=20 was 0.63 dB when it was bundled (docs/ldm.md: +0.81 dB on 256)
GAIN_OVER_PLAIN_INVERSION = 0.3


def test_bundled_ddpm_loads_and_samples():
    pipeline = DDPMPipeline.from_pretrained(checkpoint_path("ddpm-mnist"))
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(
        batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="np"
    )
    assert images.images.shape == (2, 32, 32, 1)


def test_bundled_ldm_loads_and_samples_with_diffusers_ldm_pipeline():
    pipeline = LDMPipeline.from_pretrained(checkpoint_path("ldm-mnist"))
    pipeline.set_progress_bar_config(disable=True)
    assert isinstance(pipeline.vqvae, VQModel) and downsampling_factor(pipeline.vqvae) == 4
    assert isinstance(pipeline.scheduler, DDIMScheduler) and not pipeline.scheduler.config.clip_sample
    assert pipeline.unet.config.sample_size == 8 and pipeline.unet.config.in_channels == 4
    generator = torch.Generator().manual_seed(0)
    images = pipeline(batch_size=2, num_inference_steps=5, generator=generator, output_type="np").images
    assert images.shape == (2, 32, 32, 1)


def test_bundled_ldm_autoencoder_is_a_sharp_ceiling_on_test_digits():
    """The autoencoder's own reconstruction bounds what PDAE on the LDM can reach (docs: ceiling PSNR)."""
    vae = VQModel.from_pretrained(checkpoint_path("ldm-mnist"), subfolder="vqvae")
    _, labels = load_mnist_arrays("test")  # sorted by class: take every class
    digits, _ = load_mnist_tensors("test", range(0, len(labels), len(labels) // 64))
    with torch.no_grad():
        latents = encode_images(vae, digits)
        reconstructions = (decode_latents(vae, latents) / 2 + 0.5).clamp(0, 1)
    assert psnr(reconstructions, digits / 2 + 0.5).mean() > 25
    assert abs(latents.std().item() - 1) < 0.1  # the scaling factor makes the latents unit-variance


def test_bundled_pdae_inferred_xt_beats_plain_ddim_inversion():
    pipeline = PDAEPipeline.from_pretrained(checkpoint_path("pdae-mnist"))
    pipeline.set_progress_bar_config(disable=True)
    _, labels = load_mnist_arrays("test")
    digits, _ = load_mnist_tensors("test", range(0, len(labels), len(labels) // 16)[:16])
    references = digits / 2 + 0.5
    steps = 20
    inferred = pipeline.reconstruct(digits, num_inference_steps=steps, output_type="pt").images
    x_T = pipeline.invert(digits, num_inference_steps=steps, apply_shift=False)
    plain = pipeline.decode(x_T, None, steps, output_type="pt").images  # the DPM alone from the inverted x_T
    gain = psnr(inferred, references).mean() - psnr(plain, references).mean()
    assert gain > 2.0, f"inferred x_T is only {gain:.2f} dB above plain DDIM inversion"


@pytest.mark.parametrize(
    "release, steps",
    [
        ("pdae-ldm-mnist", 20),  # docs/ldm.md: +0.81 dB at T=20 on 256 test digits
        ("pdae-sd-mnist", 10),  # docs/stable_diffusion.md: +2.27 dB at T=10, the empty prompt's branch of sd-mnist
        ("pdae-dit-mnist", 10),  # docs/dit.md: +2.62 dB at T=10, dit-mnist under the null class
    ],
)
def test_bundled_latent_pdae_beats_plain_inversion_through_its_model_and_generates(release, steps):
    """A latent PDAE release: its inferred x_T above plain DDIM inversion of its frozen model, pixel images in and
    out, 4x8x8 latents, and samples through its latent sampler."""
    pipeline = PDAEPipeline.from_pretrained(checkpoint_path(release))
    pipeline.set_progress_bar_config(disable=True)
    _, labels = load_mnist_arrays("test")
    digits, _ = load_mnist_tensors("test", range(0, len(labels), len(labels) // 16)[:16])
    references = digits / 2 + 0.5
    inferred = pipeline.reconstruct(digits, num_inference_steps=steps, output_type="pt").images
    x_T = pipeline.invert(digits, num_inference_steps=steps, apply_shift=False)
    assert x_T.shape == (16, 4, 8, 8)
    plain = pipeline.decode(x_T, None, steps, output_type="pt").images
    gain = psnr(inferred, references).mean() - psnr(plain, references).mean()
    assert gain > GAIN_OVER_PLAIN_INVERSION, f"inferred x_T is only {gain:.2f} dB above plain DDIM inversion"
    samples = pipeline(
        batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="pt"
    )
    assert samples.images.shape == (2, 1, 32, 32)


@pytest.mark.parametrize(
    "release, source, component_pairs",
    [
        ("pdae-ldm-mnist", "ldm-mnist", (("unet", "unet"), ("vqvae", "vae"))),
        ("pdae-sd-mnist", "sd-mnist", (("unet", "unet"), ("vae", "vae"))),
        ("pdae-dit-mnist", "dit-mnist", (("transformer", "transformer"), ("vae", "vae"))),
    ],
)
def test_a_latent_pdae_checkpoint_holds_the_model_it_was_trained_on(release, source, component_pairs):
    for source_component, bundled in component_pairs:
        for name in ("config.json", "diffusion_pytorch_model.safetensors"):
            original = Path(checkpoint_path(source), source_component, name).read_bytes()
            assert Path(checkpoint_path(release), bundled, name).read_bytes() == original, (bundled, name)


def test_checkpoint_path_names_what_is_bundled():
    for name in BUNDLED_CHECKPOINTS:
        assert Path(checkpoint_path(name), "model_index.json").is_file()
    with pytest.raises(ValueError, match="ddpm-mnist, pdae-mnist"):
        checkpoint_path("pdae-cifar10")


def test_the_pdae_checkpoint_holds_the_dpm_it_was_trained_on():
    """pdae-mnist carries its own copy of the frozen UNet (no link, so wheels and Windows keep it): the very weights
    of ddpm-mnist."""
    pdae_unet = Path(checkpoint_path("pdae-mnist"), "unet")
    dpm_unet = Path(checkpoint_path("ddpm-mnist"), "unet")
    assert not pdae_unet.is_symlink()
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        assert (pdae_unet / name).read_bytes() == (dpm_unet / name).read_bytes()


@pytest.mark.slow
def test_a_non_editable_install_loads_the_bundled_pipeline_from_any_directory(tmp_path):
    """`pip install .` (not editable) into a folder, then load the bundled pipeline and digits from elsewhere."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
         str(target), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    script = (
        "import diffusers_pdae, torch\n"
        "from diffusers_pdae import PDAEPipeline\n"
        "from diffusers_pdae.bundled import checkpoint_path, load_mnist_tensors\n"
        f"assert diffusers_pdae.__file__.startswith({str(target)!r}), diffusers_pdae.__file__\n"
        "pipe = PDAEPipeline.from_pretrained(checkpoint_path('pdae-mnist'))\n"
        "digits, _ = load_mnist_tensors('test', [0, 1])\n"
        "print(tuple(pipe.encode(digits).shape))\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("(2, 64)")


def test_bundled_pipeline_generates_through_its_latent_sampler():
    pipeline = PDAEPipeline.from_pretrained(checkpoint_path("pdae-mnist"))
    pipeline.set_progress_bar_config(disable=True)
    assert pipeline.latent_sampler is not None
    generator = torch.Generator().manual_seed(0)
    codes = pipeline.sample_codes(256, num_inference_steps=20, generator=generator)
    train, _ = load_mnist_tensors("train", range(0, 8000, 8))  # 1,000 train digits
    real = pipeline.encode(train)
    # the sampled codes follow the real ones: per-dimension means and spreads within a fraction of a spread
    assert ((codes.mean(0) - real.mean(0)).abs() / real.std(0)).max() < 0.35
    assert ((codes.std(0) / real.std(0)).log().abs()).max() < 0.35
