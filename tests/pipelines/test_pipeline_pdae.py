"""PDAEPipeline on tiny random models: shapes, inversion, decoding, saving, and clear errors; its attached example
on the bundled checkpoint."""

import doctest

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, EDMEulerScheduler, EulerDiscreteScheduler

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline

from ..conftest import LATENT_DIM, perturb_output, smooth, tiny_encoder, tiny_images, tiny_pipeline, tiny_unet


def test_encode_accepts_tensors_and_pil_images(pipeline):
    assert pipeline.encode(tiny_images(3)).shape == (3, LATENT_DIM)
    digit = PIL.Image.fromarray(np.full((12, 12), 255, dtype=np.uint8))  # smaller than the UNet: padded with black
    z = pipeline.encode([digit, digit.convert("RGB")])
    assert z.shape == (2, LATENT_DIM)
    assert torch.allclose(z[0], z[1])
    padded = -torch.ones(1, 1, 16, 16)
    padded[..., 2:14, 2:14] = 1.0
    assert torch.allclose(pipeline.encode(padded)[0], z[0], atol=1e-6)


def test_call_shapes_and_output_types(pipeline):
    generator = torch.Generator().manual_seed(0)
    out = pipeline(batch_size=2, num_inference_steps=3, generator=generator, output_type="pt").images
    assert out.shape == (2, 1, 16, 16) and out.min() >= 0 and out.max() <= 1
    z = pipeline.encode(tiny_images(3))
    assert pipeline(z=z, num_inference_steps=3, output_type="np").images.shape == (3, 16, 16, 1)
    images = pipeline(z=z, num_inference_steps=3).images
    assert len(images) == 3 and images[0].mode == "L" and images[0].size == (16, 16)
    (as_tuple,) = pipeline(z=z, num_inference_steps=3, output_type="pt", return_dict=False)
    assert as_tuple.shape == (3, 1, 16, 16)


def test_same_seed_same_images_and_z_changes_them(pipeline):
    z = pipeline.encode(tiny_images(2))

    def run(codes):
        generator = torch.Generator().manual_seed(7)
        return pipeline(z=codes, num_inference_steps=4, generator=generator, output_type="pt").images

    assert torch.equal(run(z), run(z))
    assert not torch.equal(run(z), run(z + 1.0))


def test_shift_range_applies_the_shift_only_in_the_stage(pipeline):
    z = pipeline.encode(tiny_images(2))
    latents = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))

    def run(**kwargs):
        return pipeline(latents=latents, num_inference_steps=10, output_type="pt", **kwargs).images

    unconditional = run(z=None)
    assert torch.equal(run(z=z, shift_range=(101, 199)), unconditional)  # no grid timestep inside: no shift at all
    assert torch.equal(run(z=z, shift_range=(0, 999)), run(z=z))
    assert not torch.equal(run(z=z, shift_range=(400, 700)), unconditional)
    for bad in [(700, 400), (2000, 3000), (-5, 100), (0, 1000), 500, (1, 2, 3), (0.5, 10)]:
        with pytest.raises(ValueError, match="shift_range"):
            run(z=z, shift_range=bad)


@torch.no_grad()
def test_inversion_then_decoding_reproduces_the_input():
    pipeline = tiny_pipeline(unet=smooth(tiny_unet()))
    perturb_output(pipeline.gradient_estimator, scale=0.0005)
    images = tiny_images(2) * 0.8
    z = pipeline.encode(images)
    x_T = pipeline.invert(images, z, num_inference_steps=200)
    decoded = pipeline.decode(x_T, z, num_inference_steps=200, output_type="latent").images
    error = (decoded - images).pow(2).mean().item()
    assert error < 1e-3
    # the shift matters: decoding the same x_T with another code misses the input by far more
    wrong = pipeline.decode(x_T, torch.zeros_like(z), num_inference_steps=200, output_type="latent").images
    assert (wrong - images).pow(2).mean().item() > 5 * error
    # and the public API agrees with the building blocks
    reconstructed = pipeline.reconstruct(images, num_inference_steps=200, output_type="pt").images
    assert torch.allclose(reconstructed, (decoded / 2 + 0.5).clamp(0, 1), atol=1e-6)


def test_invert_uses_timesteps_from_the_scheduler_whatever_scheduler_was_saved():
    ddpm = tiny_pipeline(scheduler=DDPMScheduler(num_train_timesteps=1000, clip_sample=True))
    ddim = tiny_pipeline(scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=False))
    images = tiny_images(2)
    assert torch.equal(ddpm.invert(images, num_inference_steps=5), ddim.invert(images, num_inference_steps=5))
    linspace = tiny_pipeline(scheduler=DDIMScheduler(num_train_timesteps=1000, timestep_spacing="linspace"))
    scheduler = linspace.deterministic_scheduler(10)
    assert scheduler.timesteps[0] == 999 and not scheduler.config.clip_sample


def test_random_xt_reconstruction_is_seeded(pipeline):
    images = tiny_images(2)

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return pipeline.reconstruct(images, 5, invert=False, generator=generator, output_type="pt").images

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


def test_save_and_load_round_trip_bit_for_bit(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path)
    loaded = PDAEPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "encoder", "gradient_estimator", "model_index.json", "pipeline_pdae.py", "scheduler", "unet",
    ]  # fmt: skip
    assert not list(tmp_path.rglob("*.bin"))  # safetensors only
    images = tiny_images(2)
    assert torch.equal(loaded.encode(images), pipeline.encode(images))
    assert torch.equal(loaded.invert(images, num_inference_steps=4), pipeline.invert(images, num_inference_steps=4))
    generator = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)]
    a, b = (
        p.reconstruct(images, 4, invert=False, generator=g, output_type="pt").images
        for p, g in zip((pipeline, loaded), generator, strict=True)
    )
    assert torch.equal(a, b)


def test_bad_inputs_raise_clear_errors(pipeline):
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        pipeline.encode(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="Pass PIL images"):
        pipeline.encode(torch.zeros(2, 1, 20, 20))
    with pytest.raises(ValueError, match="floating point"):
        pipeline.encode(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        pipeline.encode(torch.full((1, 1, 16, 16), 255.0))
    with pytest.raises(ValueError, match=rf"\(batch_size, {LATENT_DIM}\)"):
        pipeline(z=torch.zeros(2, LATENT_DIM + 3), num_inference_steps=2)
    with pytest.raises(ValueError, match="latents must have shape"):
        pipeline(latents=torch.zeros(2, 1, 8, 8), num_inference_steps=2)
    with pytest.raises(ValueError, match="output_type"):
        pipeline(num_inference_steps=2, output_type="jpeg")


def test_mismatched_or_missing_components_raise():
    unet = tiny_unet()
    good = tiny_pipeline()
    with pytest.raises(ValueError, match="missing encoder"):
        PDAEPipeline(unet, good.scheduler, None, good.gradient_estimator)
    with pytest.raises(ValueError, match="sample_size"):
        PDAEPipeline(unet, good.scheduler, tiny_encoder(sample_size=32), good.gradient_estimator)
    with pytest.raises(ValueError, match="in_channels"):
        PDAEPipeline(unet, good.scheduler, tiny_encoder(in_channels=3), good.gradient_estimator)
    with pytest.raises(ValueError, match="does not fit the UNet"):
        PDAEPipeline(tiny_unet(in_channels=3), good.scheduler, tiny_encoder(in_channels=3), good.gradient_estimator)
    with pytest.raises(ValueError, match="prediction_type"):
        PDAEPipeline(unet, DDIMScheduler(prediction_type="flow"), good.encoder, good.gradient_estimator)
    with pytest.raises(ValueError, match="EDMEulerScheduler has no discrete training schedule.*DDIMScheduler"):
        PDAEPipeline(unet, EDMEulerScheduler(), good.encoder, good.gradient_estimator)


def test_euler_scheduler_gets_scaled_model_inputs_like_a_plain_diffusers_loop():
    # Euler keeps latents at sigma scale: without scale_model_input the UNet would see inputs ~sigma_max too large.
    scheduler = EulerDiscreteScheduler(num_train_timesteps=1000)
    pipeline = tiny_pipeline(scheduler=scheduler, shift=False)
    pipeline.set_progress_bar_config(disable=True)
    latents = torch.randn((2, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    ours = pipeline(latents=latents, num_inference_steps=5, output_type="pt").images

    reference = EulerDiscreteScheduler(num_train_timesteps=1000)
    reference.set_timesteps(5)
    sample = latents * reference.init_noise_sigma
    with torch.no_grad():
        for t in reference.timesteps:
            noise_pred = pipeline.unet(reference.scale_model_input(sample, t), t).sample
            sample = reference.step(noise_pred, t, sample).prev_sample
    torch.testing.assert_close(ours, (sample / 2 + 0.5).clamp(0, 1))


def test_the_example_attached_to_call_runs_as_written():
    """The `Examples:` section attached diffusers' way, run line by line on the bundled pipeline."""
    examples = doctest.DocTestParser().get_examples(PDAEPipeline.__call__.__doc__)
    assert len(examples) >= 6, "the example docstring was not attached to __call__"
    namespace = {}
    for example in examples:
        exec(compile(example.source, "<PDAEPipeline.__call__ example>", "exec"), namespace)
    pipe, digits, images = namespace["pipe"], namespace["digits"], namespace["images"]
    assert namespace["z"].shape == (4, pipe.latent_dim) and namespace["x_T"].shape == (4, *pipe.sample_shape)
    assert len(images) == 4 and all(isinstance(image, PIL.Image.Image) for image in images)
    # "the 4 digits back": decoding the inverted x_T with z reconstructs each digit closely
    originals = pipe.prepare_images(digits) / 2 + 0.5
    decoded = torch.from_numpy(np.stack([np.asarray(image) for image in images])).float()[:, None] / 255
    assert (decoded - originals).pow(2).mean() < 2e-3
    assert len(namespace["samples"]) == 4
