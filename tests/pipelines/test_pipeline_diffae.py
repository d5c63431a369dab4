"""DiffAEPipeline (the Diff-AE-style baseline) on tiny random models: shapes, inversion, saving, clear errors."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, EDMEulerScheduler

from diffusers_pdae import DiffAEPipeline, DiffAEUNet2DModel

from ..conftest import LATENT_DIM, tiny_encoder, tiny_images, tiny_unet


def tiny_diffae_pipeline(scheduler=None, output_scale: float = 1.0) -> DiffAEPipeline:
    """`output_scale` shrinks the random UNet's output so its noise prediction is a small, smooth function of x_t."""
    layout = tiny_unet()
    torch.manual_seed(5)
    unet = DiffAEUNet2DModel.from_unet_config(layout, latent_dim=LATENT_DIM).eval()
    with torch.no_grad():
        unet.conv_out.weight.mul_(output_scale)
        unet.conv_out.bias.mul_(output_scale)
    scheduler = scheduler or DDPMScheduler(num_train_timesteps=1000)
    pipeline = DiffAEPipeline(unet=unet, encoder=tiny_encoder(), scheduler=scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture
def pipeline() -> DiffAEPipeline:
    return tiny_diffae_pipeline()


def test_shapes_and_output_types(pipeline):
    images = tiny_images(3)
    z = pipeline.encode(images)
    assert z.shape == (3, LATENT_DIM)
    x_T = pipeline.invert(images, z, num_inference_steps=3)
    assert x_T.shape == (3, 1, 16, 16)
    assert torch.equal(pipeline.invert(images, num_inference_steps=3), x_T)  # z from the encoder by default
    decoded = pipeline.decode(x_T, z, num_inference_steps=3, output_type="pt").images
    assert decoded.shape == (3, 1, 16, 16) and decoded.min() >= 0 and decoded.max() <= 1
    assert pipeline.decode(x_T, z, 3, output_type="np").images.shape == (3, 16, 16, 1)
    reconstructions = pipeline.reconstruct(images, num_inference_steps=3).images
    assert len(reconstructions) == 3 and reconstructions[0].size == (16, 16)
    (latent,) = pipeline.reconstruct(images, 3, output_type="latent", return_dict=False)
    assert torch.allclose(latent, pipeline.decode(x_T, z, 3, output_type="latent").images)


@torch.no_grad()
def test_inversion_then_decoding_reproduces_the_input():
    pipeline = tiny_diffae_pipeline(output_scale=0.001)
    images = tiny_images(2) * 0.8
    z = pipeline.encode(images)

    def round_trip_error(steps: int, codes: torch.Tensor = z) -> float:
        x_T = pipeline.invert(images, z, steps)
        return (pipeline.decode(x_T, codes, steps, output_type="latent").images - images).abs().max().item()

    # Measured: 2.3e-2 at 25 steps, 1.2e-2 at 50 (float64 gives the same: it is DDIM's discretisation error).
    error = round_trip_error(50)
    assert error < 2e-2
    # First order in the step: an exact mirror converges, a mismatched one (wrong timestep or noise level) would not.
    assert round_trip_error(25) > 1.6 * error
    # z matters: decoding the same x_T with other codes misses the input by far more (measured 0.13).
    assert round_trip_error(50, z + 1.0) > 5 * error


def test_random_xt_reconstruction_is_seeded(pipeline):
    images = tiny_images(2)

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return pipeline.reconstruct(images, 3, invert=False, generator=generator, output_type="pt").images

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


def test_save_and_load_round_trip_bit_for_bit(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder", "model_index.json", "scheduler", "unet"]
    assert not list(tmp_path.rglob("*.bin"))  # safetensors only
    images = tiny_images(2)
    expected = pipeline.reconstruct(images, 4, output_type="latent").images
    loaded = DiffAEPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.unet, DiffAEUNet2DModel)
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(loaded.reconstruct(images, 4, output_type="latent").images, expected)


def test_generic_diffusion_pipeline_loads_a_saved_folder_bit_for_bit(pipeline, tmp_path):
    # `import diffusers_pdae` registers DiffAEPipeline where diffusers looks up a model_index.json's _class_name.
    pipeline.save_pretrained(tmp_path)
    images = tiny_images(2)
    expected = pipeline.reconstruct(images, 4, output_type="latent").images
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded) is DiffAEPipeline and type(loaded.unet) is DiffAEUNet2DModel
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(loaded.reconstruct(images, 4, output_type="latent").images, expected)


def test_a_missing_component_is_named(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path)
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="unet has no weights"):
        DiffAEPipeline.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="No pipeline folder"):
        DiffAEPipeline.from_pretrained(str(tmp_path / "nowhere"))


def test_bad_inputs_raise_clear_errors(pipeline):
    images = tiny_images(2)
    z = pipeline.encode(images)
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        pipeline.encode(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=rf"\(batch_size, {LATENT_DIM}\)"):
        pipeline.invert(images, torch.zeros(2, LATENT_DIM + 1), 2)
    with pytest.raises(ValueError, match="z has 2 codes but there are 3"):
        pipeline.decode(torch.zeros(3, 1, 16, 16), z, 2)
    with pytest.raises(ValueError, match="latents must have shape"):
        pipeline.decode(torch.zeros(2, 1, 8, 8), z, 2)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipeline.decode(torch.zeros(2, 1, 16, 16), z, 0)
    with pytest.raises(ValueError, match="output_type"):
        pipeline.reconstruct(images, 2, output_type="jpeg")


def test_mismatched_or_missing_components_raise(pipeline):
    unet, encoder, scheduler = pipeline.unet, pipeline.encoder, pipeline.scheduler
    with pytest.raises(ValueError, match="missing encoder"):
        DiffAEPipeline(unet=unet, encoder=None, scheduler=scheduler)
    with pytest.raises(ValueError, match="sample_size: unet 16 vs encoder 32"):
        DiffAEPipeline(unet=unet, encoder=tiny_encoder(sample_size=32), scheduler=scheduler)
    torch.manual_seed(0)
    wide = DiffAEUNet2DModel.from_unet_config(tiny_unet(), latent_dim=LATENT_DIM + 1)
    with pytest.raises(ValueError, match=f"latent_dim: unet {LATENT_DIM + 1} vs encoder {LATENT_DIM}"):
        DiffAEPipeline(unet=wide, encoder=encoder, scheduler=scheduler)
    with pytest.raises(ValueError, match="prediction_type is 'v_prediction'"):
        DiffAEPipeline(unet=unet, encoder=encoder, scheduler=DDIMScheduler(prediction_type="v_prediction"))
    with pytest.raises(ValueError, match="EDMEulerScheduler has no discrete training schedule"):
        DiffAEPipeline(unet=unet, encoder=encoder, scheduler=EDMEulerScheduler())
