"""PDAE on a Stable Diffusion model: the conditional UNet asked with the empty prompt's stored embedding is the frozen
model, and every pipeline method works on it as on an unconditional one."""

import json
import subprocess
import sys

import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline

from diffusers_pdae import GradientEstimator, PDAEPipeline
from diffusers_pdae.models import PromptEmbedding, frozen_denoiser

from ..conftest import LATENT_DIM, perturb_output, tiny_images, tiny_sd_components, tiny_sd_pdae_pipeline


def sd_pipeline(components: dict) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("prompt", ["", "a handwritten digit seven"])
def test_the_stored_embedding_is_stable_diffusions_own_encoding_of_the_prompt(prompt):
    components = tiny_sd_components()
    expected, _ = sd_pipeline(components).encode_prompt(prompt, "cpu", 1, do_classifier_free_guidance=False)
    embedding = PromptEmbedding.from_prompt(components["text_encoder"], components["tokenizer"], prompt)
    assert embedding.config.prompt == prompt
    assert torch.equal(embedding(1), expected)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_predict_noise_without_z_is_the_source_unet_under_the_empty_prompt(prediction_type):
    pipe = tiny_sd_pdae_pipeline(prediction_type)
    components = tiny_sd_components(prediction_type)
    _, negative = sd_pipeline(components).encode_prompt("", "cpu", 2, do_classifier_free_guidance=True,
                                                         negative_prompt="")  # fmt: skip
    x_t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for t in (1, 500, 999):
        output = components["unet"](x_t, t, encoder_hidden_states=negative).sample
        if prediction_type == "v_prediction":  # the noise a v-prediction stands for
            abar = pipe.scheduler.alphas_cumprod[t]
            output = abar.sqrt() * output + (1 - abar).sqrt() * x_t
        torch.testing.assert_close(pipe.predict_noise(x_t, t), output, rtol=0, atol=1e-5)


def test_g_reads_the_conditional_unets_features_and_starts_at_zero():
    components = tiny_sd_components()
    unet = components["unet"]
    estimator = GradientEstimator.from_denoiser(unet, latent_dim=LATENT_DIM, warm_start=True)
    assert estimator.config.up_block_types == ["UpBlock2D", "AttnUpBlock2D"]  # self-attention where SD cross-attends
    copied = estimator.up_blocks[0].resnets[0].conv1.weight
    assert torch.equal(copied, unet.up_blocks[0].resnets[0].conv1.weight)
    pipe = tiny_sd_pdae_pipeline(shift=False)
    x_t, z = torch.randn(2, 4, 8, 8), torch.randn(2, LATENT_DIM)
    assert torch.equal(pipe.predict_noise(x_t, 400, z), pipe.predict_noise(x_t, 400))
    frozen = pipe.denoiser.forward_with_features(x_t, torch.tensor([400, 400]))
    estimator.train()(frozen.features, z.requires_grad_(True)).sample.square().mean().backward()
    assert frozen.features.temb.shape == (2, unet.time_embedding.linear_2.out_features)
    assert all(p.grad is not None for p in estimator.parameters() if p.requires_grad)


def test_every_method_works_on_a_stable_diffusion_pdae():
    pipe = tiny_sd_pdae_pipeline(shift=False)
    perturb_output(pipe.gradient_estimator, scale=0.001)  # a smooth shift: few-step DDIM round trips stay close
    pixels = tiny_images(2, size=32)
    z = pipe.encode(pixels)
    assert z.shape == (2, LATENT_DIM)
    x_T = pipe.invert(pixels, z, num_inference_steps=5)
    assert x_T.shape == (2, 4, 8, 8)
    decoded = pipe.decode(x_T, z, num_inference_steps=5, output_type="latent").images
    latents = pipe._to_latents(pipe.prepare_images(pixels))
    assert (decoded - latents).abs().max() < 0.05  # inversion and decoding mirror each other (5 steps)
    assert pipe.reconstruct(pixels, num_inference_steps=5, output_type="pt").images.shape == (2, 1, 32, 32)
    assert pipe(z=z, num_inference_steps=3, output_type="latent").images.shape == (2, 4, 8, 8)
    assert len(pipe(z=z, num_inference_steps=3, shift_range=(300, 700)).images) == 2
    assert pipe.interpolate(pixels[0], pixels[1], num=3, num_inference_steps=3, output_type="pt").images.shape[0] == 3
    edits = pipe.manipulate(pixels, z[0] - z[1], scales=[-1.0, 1.0], num_inference_steps=3, output_type="np")
    assert edits.images.shape == (4, 32, 32, 1)
    seen = []
    pipe(z=z, num_inference_steps=3, callback_on_step_end=lambda p, i, t, kw: seen.append(i) or kw)
    assert seen == [0, 1, 2]


def test_a_saved_stable_diffusion_pdae_reloads_bit_for_bit_without_a_text_encoder(tmp_path):
    pipe = tiny_sd_pdae_pipeline()
    pipe.save_pretrained(tmp_path / "pdae-sd")
    index = json.loads((tmp_path / "pdae-sd" / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"] and index["prompt_embedding"][1] == "PromptEmbedding"
    assert "text_encoder" not in index and not (tmp_path / "pdae-sd" / "text_encoder").exists()
    loaded = PDAEPipeline.from_pretrained(tmp_path / "pdae-sd")
    loaded.set_progress_bar_config(disable=True)
    pixels = tiny_images(2, size=32)
    assert torch.equal(loaded.reconstruct(pixels, num_inference_steps=3, output_type="latent").images,
                       pipe.reconstruct(pixels, num_inference_steps=3, output_type="latent").images)  # fmt: skip


def test_the_saved_code_loads_a_stable_diffusion_pdae_in_a_process_without_the_package(tmp_path):
    pipe = tiny_sd_pdae_pipeline()
    pipe.save_pretrained(tmp_path / "pdae-sd")
    pixels = tiny_images(1, size=32)
    torch.save(pipe.encode(pixels), tmp_path / "z.pt")
    torch.save(pixels, tmp_path / "pixels.pt")
    script = f"""
import sys, torch
sys.modules["diffusers_pdae"] = None  # the package cannot be imported
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({str(tmp_path / "pdae-sd")!r}, trust_remote_code=True)
z = pipe.encode(torch.load({str(tmp_path / "pixels.pt")!r}))
assert torch.equal(z, torch.load({str(tmp_path / "z.pt")!r})), "codes differ"
print(type(pipe).__module__, type(pipe.denoiser).__name__)
"""
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "UNet2DConditionDenoiser" in done.stdout and "diffusers_pdae" not in done.stdout.split()[0]


def test_a_diffusion_pipeline_from_the_generic_loader_names_its_frozen_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    tiny_sd_pdae_pipeline().save_pretrained(tmp_path / "pdae-sd")
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "pdae-sd", trust_remote_code=True)
    assert type(loaded.unet).__name__ == "UNet2DConditionModel"
    assert type(frozen_denoiser(loaded.unet, loaded.prompt_embedding)).__name__ == "UNet2DConditionDenoiser"
