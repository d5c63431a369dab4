"""benchmarks/ldm_layouts.py: the published CompVis/ldm-celebahq-256 layout (docs/configs/ldm-celebahq-256/) and its
scaled-down copy, which must keep everything but the channel widths and load as an LDMPipeline folder."""

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel, VQModel

from diffusers_pdae.latent_space import decode_latents, downsampling_factor, encode_images

from .conftest import load_script

layouts = load_script("ldm_layouts", folder="benchmarks")


@pytest.fixture(scope="module")
def full_size():
    """The full-size layout without allocating its weights (parameters on the meta device): structure only."""
    with init_empty_weights():
        return layouts.full_size_ldm()


@pytest.fixture(scope="module")
def scaled_down():
    return layouts.scaled_down_ldm()


def test_published_configs_name_the_ldm_pipeline_components():
    model_index = layouts.published_config("model_index")
    assert model_index["_class_name"] == "LDMPipeline"
    assert {name: model_index[name][1] for name in ("vqvae", "unet", "scheduler")} == {
        "vqvae": "VQModel",
        "unet": "UNet2DModel",
        "scheduler": "DDIMScheduler",
    }
    # The published VQ config has no scaling_factor: diffusers' default applies (the original LDM used 1.0).
    assert "scaling_factor" not in layouts.published_config("vqvae")


def test_scheduler_reads_the_pre_release_keys_as_diffusers_did():
    as_published = DDIMScheduler.from_config(layouts.published_config("scheduler"))
    resolved = DDIMScheduler.from_config(layouts.scheduler_config())
    assert torch.equal(as_published.betas, resolved.betas)
    assert resolved.config.num_train_timesteps == 1000 and resolved.config.beta_schedule == "scaled_linear"
    config = resolved.config
    assert (config.beta_start, config.beta_end, config.clip_sample) == (0.0015, 0.0195, False)
    # The original LDM's "linear" schedule: linspace(sqrt(0.0015), sqrt(0.0195), 1000) ** 2.
    reference = torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=torch.float64) ** 2
    assert torch.allclose(resolved.betas.double(), reference, atol=1e-8)


def test_full_size_layout_matches_the_published_checkpoint(full_size):
    assert layouts.parameter_count(full_size.unet) == 274_056_163
    assert layouts.parameter_count(full_size.vqvae) == 55_322_782
    layout = layouts.layout_of(full_size)
    assert layout["downsampling_factor"] == 4 and layout["latent_channels"] == 3 and layout["unet_sample_size"] == 64
    assert [level["attention"] for level in layout["attention"]["unet_down"]] == [False, True, True, True]
    assert [level["resolution"] for level in layout["attention"]["unet_down"]] == [64, 32, 16, 8]
    assert layout["scaling_factor"] == 0.18215  # what LDMPipeline.from_pretrained builds from the published config


def test_scaled_down_copy_keeps_the_full_size_layout(full_size, scaled_down):
    assert layouts.layout_of(scaled_down) == layouts.layout_of(full_size)
    assert layouts.parameter_count(scaled_down.unet) < 1_000_000
    assert layouts.parameter_count(scaled_down.vqvae) < 100_000
    assert downsampling_factor(scaled_down.vqvae) == 2 ** (len(full_size.vqvae.config.block_out_channels) - 1) == 4
    assert scaled_down.unet.config.block_out_channels != full_size.unet.config.block_out_channels


def test_scaling_factor_can_follow_the_original_ldm():
    with init_empty_weights():
        components = layouts.full_size_ldm(scaling_factor=1.0)
    assert components.vqvae.config.scaling_factor == 1.0


def test_scaled_down_copy_saves_as_an_ldm_pipeline_and_round_trips_256_pixel_images(scaled_down, tmp_path):
    folder = layouts.save_ldm_pipeline(scaled_down, tmp_path / "ldm")
    pipe = LDMPipeline.from_pretrained(folder)
    assert isinstance(pipe.unet, UNet2DModel) and isinstance(pipe.vqvae, VQModel)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert layouts.layout_of(pipe) == layouts.layout_of(scaled_down)  # the scheduler config among the rest
    for loaded, built in ((pipe.unet, scaled_down.unet), (pipe.vqvae, scaled_down.vqvae)):
        loaded_state, built_state = loaded.state_dict(), built.state_dict()
        assert loaded_state.keys() == built_state.keys()
        assert all(torch.equal(loaded_state[key], built_state[key]) for key in built_state)

    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = encode_images(pipe.vqvae, images)
        assert latents.shape == (1, 3, 64, 64)
        unet_config = pipe.unet.config
        assert latents.shape[1:] == (unet_config.in_channels, unet_config.sample_size, unet_config.sample_size)
        assert pipe.unet(latents, 10).sample.shape == latents.shape
        decoded = decode_latents(pipe.vqvae, latents)
    assert decoded.shape == images.shape
