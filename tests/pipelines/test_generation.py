"""PDAEPipeline with and without a latent sampler: unconditional generation through codes, and attribute directions."""

import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor

from diffusers_pdae import LatentSampler, PDAEPipeline

from ..conftest import LATENT_DIM, tiny_images, tiny_pipeline


def with_sampler(pipeline: PDAEPipeline, seed: int = 5) -> PDAEPipeline:
    torch.manual_seed(seed)
    sampler = LatentSampler(latent_dim=LATENT_DIM, hidden_dim=32, num_layers=2, time_embed_dim=16).eval()
    sampler.set_code_statistics(torch.randn(64, LATENT_DIM, generator=torch.Generator().manual_seed(seed)) + 1)
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    pipe = PDAEPipeline(**{**pipeline.components, "latent_sampler": sampler, "latent_scheduler": scheduler})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sampled_codes_have_the_codes_shape_and_are_seeded():
    pipe = with_sampler(tiny_pipeline())
    codes = pipe.sample_codes(3, num_inference_steps=5, generator=seeded(0))
    assert codes.shape == (3, LATENT_DIM) and torch.isfinite(codes).all()
    assert torch.equal(codes, pipe.sample_codes(3, num_inference_steps=5, generator=seeded(0)))
    assert not torch.equal(codes, pipe.sample_codes(3, num_inference_steps=5, generator=seeded(1)))
    per_sample = pipe.sample_codes(3, num_inference_steps=5, generator=[seeded(0), seeded(1), seeded(2)])
    alone = pipe.sample_codes(1, num_inference_steps=5, generator=[seeded(1)])[0]
    torch.testing.assert_close(per_sample[1], alone, rtol=1e-5, atol=1e-4)  # batched matmuls round differently


def test_call_without_codes_samples_codes_then_decodes_them():
    pipe = with_sampler(tiny_pipeline())
    images = pipe(batch_size=2, num_inference_steps=3, code_num_inference_steps=4, generator=seeded(0),
                  output_type="latent").images  # fmt: skip
    generator = seeded(0)  # the same draws in the same order: codes first, then x_T
    codes = pipe.sample_codes(2, num_inference_steps=4, generator=generator)
    latents = randn_tensor((2, 1, 16, 16), generator=generator)
    by_hand = pipe(z=codes, latents=latents, num_inference_steps=3, output_type="latent").images
    assert torch.equal(images, by_hand)
    dpm_alone = pipe(z=None, latents=latents, num_inference_steps=3, output_type="latent")  # samples codes again
    assert not torch.equal(dpm_alone.images, by_hand)


def test_call_without_sampler_keeps_sampling_the_dpm_alone():
    pipe = tiny_pipeline()
    latents = randn_tensor((2, 1, 16, 16), generator=seeded(0))
    images = pipe(batch_size=2, num_inference_steps=3, generator=seeded(0), output_type="latent").images
    assert torch.equal(images, pipe.decode(latents, None, 3, output_type="latent").images)
    with pytest.raises(ValueError, match="no latent_sampler.*train_latent_sampler"):
        pipe.sample_codes(2)


def test_several_decodings_per_sampled_code():
    pipe = with_sampler(tiny_pipeline())
    images = pipe(batch_size=2, num_images_per_prompt=3, num_inference_steps=2, code_num_inference_steps=3,
                  generator=seeded(0), output_type="pt").images  # fmt: skip
    assert images.shape == (6, 1, 16, 16)


def test_pipeline_with_sampler_saves_and_loads_bit_for_bit(tmp_path):
    pipe = with_sampler(tiny_pipeline())
    pipe.save_pretrained(tmp_path)
    loaded = PDAEPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    generic = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)  # the Hub's generic form
    assert isinstance(generic.latent_sampler, LatentSampler)
    kwargs = {"batch_size": 2, "num_inference_steps": 3, "code_num_inference_steps": 4, "output_type": "latent"}
    expected = pipe(generator=seeded(0), **kwargs).images
    assert torch.equal(loaded(generator=seeded(0), **kwargs).images, expected)
    assert (tmp_path / "latent_sampler" / "pdae_latent_sampler.py").is_file()


def test_a_pipeline_saved_without_sampler_loads_without_one(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path)
    loaded = PDAEPipeline.from_pretrained(tmp_path)
    assert loaded.latent_sampler is None and loaded.latent_scheduler is None


def test_sampler_components_are_checked_together():
    cleared = with_sampler(tiny_pipeline())
    cleared.latent_sampler = None  # optional components are cleared one at a time, as diffusers' tests do
    cleared.latent_scheduler = None
    assert cleared.latent_sampler is None and cleared.latent_scheduler is None
    pipe = tiny_pipeline()
    sampler = LatentSampler(latent_dim=LATENT_DIM, hidden_dim=8, num_layers=1, time_embed_dim=8)
    with pytest.raises(ValueError, match="latent_sampler is given without latent_scheduler"):
        PDAEPipeline(**{**pipe.components, "latent_sampler": sampler})
    wrong_width = LatentSampler(latent_dim=LATENT_DIM + 1, hidden_dim=8, num_layers=1, time_embed_dim=8)
    with pytest.raises(ValueError, match="width 9 but the encoder's are 8"):
        PDAEPipeline(**{**pipe.components, "latent_sampler": wrong_width, "latent_scheduler": DDIMScheduler()})
    with pytest.raises(ValueError, match="clip_sample=False"):
        PDAEPipeline(**{**pipe.components, "latent_sampler": sampler, "latent_scheduler": DDIMScheduler()})


def test_attribute_direction_points_from_the_second_set_towards_the_first():
    pipe = tiny_pipeline()
    bright = tiny_images(8, seed=1).clamp(-1, 1) * 0.2 + 0.6
    dark = tiny_images(8, seed=2).clamp(-1, 1) * 0.2 - 0.6
    result = pipe.attribute_direction(bright, dark, batch_size=3)
    assert result.direction.shape == (LATENT_DIM,) and result.separation > 0
    codes_bright, codes_dark = pipe.encode(bright), pipe.encode(dark)
    assert (codes_bright @ result.direction).mean() > (codes_dark @ result.direction).mean()
    assert torch.allclose(result.code_mean, torch.cat([codes_bright, codes_dark]).mean(dim=0), atol=1e-6)
    edited = pipe.manipulate(bright[:1], result.direction, result.scales([-1, 0, 1]), num_inference_steps=2)
    assert len(edited.images) == 3
