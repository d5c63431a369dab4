"""PDAE on a diffusion transformer: a DiTTransformer2DModel asked with its null class is the frozen model, a
transformer G reads its tokens, and every pipeline method works on it."""

import json
import subprocess
import sys

import pytest
import torch

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.models import TransformerGradientEstimator, frozen_denoiser, gradient_estimator_for

from ..conftest import LATENT_DIM, tiny_dit, tiny_dit_pdae_pipeline, tiny_images


@pytest.mark.parametrize("learned_sigma", [True, False], ids=["learned-sigma", "eps-only"])
def test_predict_noise_without_z_is_the_null_class_noise_half_of_the_source(learned_sigma):
    pipe = tiny_dit_pdae_pipeline(learned_sigma=learned_sigma)
    source = tiny_dit(learned_sigma=learned_sigma)
    x_t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    null = torch.full((2,), source.config.num_embeds_ada_norm)  # 10 here: read from the config, not 1000
    for t in (1, 500, 999):
        expected = source(x_t, torch.tensor([t, t]), class_labels=null).sample[:, :4]
        torch.testing.assert_close(pipe.predict_noise(x_t, t), expected, rtol=0, atol=1e-5)


def test_the_transformer_g_reads_chosen_depths_and_starts_at_zero():
    transformer = tiny_dit()
    estimator = TransformerGradientEstimator.from_denoiser(transformer, latent_dim=LATENT_DIM, num_layers=2,
                                                           num_attention_heads=2)  # fmt: skip
    assert estimator.config.feature_layers == (0, 1, 2) and estimator.config.feature_dim == 16
    with torch.no_grad():
        frozen = frozen_denoiser(transformer).forward_with_features(torch.randn(2, 4, 8, 8), torch.tensor([5, 700]))
    assert len(frozen.features.tokens) == 3 and frozen.features.tokens[0].shape == (2, 16, 16)
    z = torch.randn(2, LATENT_DIM)
    assert torch.equal(estimator(frozen.features, z).sample, torch.zeros(2, 4, 8, 8))
    optimizer = torch.optim.SGD(estimator.parameters(), lr=0.1)
    target = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(2):  # the zero output layer moves first, then everything behind it gets a gradient
        optimizer.zero_grad()
        (estimator.train()(frozen.features, z).sample - target).square().mean().backward()
        optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in estimator.parameters())
    assert type(gradient_estimator_for(transformer, latent_dim=LATENT_DIM)) is TransformerGradientEstimator


def test_every_method_works_on_a_dit_pdae():
    pipe = tiny_dit_pdae_pipeline()
    pixels = tiny_images(2, size=32)
    z = pipe.encode(pixels)
    x_T = pipe.invert(pixels, z, num_inference_steps=4)
    assert x_T.shape == (2, 4, 8, 8)
    assert pipe.decode(x_T, z, num_inference_steps=4, output_type="pt").images.shape == (2, 1, 32, 32)
    assert pipe.reconstruct(pixels, num_inference_steps=3, output_type="latent").images.shape == (2, 4, 8, 8)
    assert len(pipe(z=z, num_inference_steps=3, shift_range=(300, 700)).images) == 2
    assert pipe.interpolate(pixels[0], pixels[1], num=3, num_inference_steps=2, output_type="pt").images.shape[0] == 3
    edits = pipe.manipulate(pixels, z[0] - z[1], scales=[1.0], num_inference_steps=2, output_type="np").images
    assert edits.shape == (2, 32, 32, 1)


def test_a_saved_dit_pdae_names_its_transformer_and_reloads_bit_for_bit(tmp_path):
    pipe = tiny_dit_pdae_pipeline()
    pipe.save_pretrained(tmp_path / "pdae-dit")
    index = json.loads((tmp_path / "pdae-dit" / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "DiTTransformer2DModel"] and index["unet"] == [None, None]
    assert index["gradient_estimator"][1] == "TransformerGradientEstimator"
    loaded = PDAEPipeline.from_pretrained(tmp_path / "pdae-dit")
    loaded.set_progress_bar_config(disable=True)
    pixels = tiny_images(2, size=32)
    assert torch.equal(loaded.reconstruct(pixels, num_inference_steps=3, output_type="latent").images,
                       pipe.reconstruct(pixels, num_inference_steps=3, output_type="latent").images)  # fmt: skip
    torch.save(pipe.encode(pixels), tmp_path / "z.pt")
    torch.save(pixels, tmp_path / "pixels.pt")
    script = f"""
import sys, torch
sys.modules["diffusers_pdae"] = None
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({str(tmp_path / "pdae-dit")!r}, trust_remote_code=True)
assert torch.equal(pipe.encode(torch.load({str(tmp_path / "pixels.pt")!r})), torch.load({str(tmp_path / "z.pt")!r}))
print(type(pipe.denoiser).__name__)
"""
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DiTDenoiser" in done.stdout
