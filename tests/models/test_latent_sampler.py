"""LatentSampler: shapes, normalisation, saving and loading, and the direction fit on synthetic codes."""

import pytest
import torch

from diffusers_pdae import LatentSampler, fit_attribute_direction


def tiny_sampler(latent_dim: int = 8, seed: int = 0) -> LatentSampler:
    torch.manual_seed(seed)
    return LatentSampler(latent_dim=latent_dim, hidden_dim=32, num_layers=3, time_embed_dim=16).eval()


def test_sampler_predicts_noise_of_the_codes_shape_for_any_timestep_form():
    sampler = tiny_sampler()
    codes = torch.randn(5, 8)
    per_sample = sampler(codes, torch.tensor([0, 10, 100, 500, 999])).sample
    assert per_sample.shape == (5, 8) and torch.isfinite(per_sample).all()
    shared = sampler(codes, 10).sample
    assert torch.equal(shared[1], sampler(codes, torch.full((5,), 10)).sample[1])
    assert sampler(codes, 10, return_dict=False)[0].shape == (5, 8)
    with pytest.raises(ValueError, match=r"\(batch_size, 8\)"):
        sampler(torch.randn(5, 7), 10)


def test_code_statistics_normalise_and_denormalise_exactly():
    sampler = tiny_sampler()
    codes = torch.randn(100, 8, dtype=torch.float64).float() * torch.arange(1, 9) + 5
    sampler.set_code_statistics(codes)
    normalised = sampler.normalize(codes)
    assert normalised.mean(dim=0).abs().max() < 1e-4
    assert (normalised.std(dim=0) - 1).abs().max() < 1e-4
    assert torch.allclose(sampler.denormalize(normalised), codes, atol=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        sampler.set_code_statistics(torch.full((4, 8), float("nan")))
    with pytest.raises(ValueError, match=r"N >= 2, 8"):
        sampler.set_code_statistics(torch.randn(1, 8))


def test_saved_sampler_loads_bit_for_bit_with_its_statistics(tmp_path):
    sampler = tiny_sampler()
    sampler.set_code_statistics(torch.randn(50, 8) * 3 + 2)
    sampler.save_pretrained(tmp_path)
    loaded = LatentSampler.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.code_mean, sampler.code_mean) and torch.equal(loaded.code_std, sampler.code_std)
    codes = torch.randn(4, 8)
    assert torch.equal(loaded(codes, 321).sample, sampler(codes, 321).sample)


def test_direction_fit_recovers_a_planted_boundary_in_raw_code_space():
    generator = torch.Generator().manual_seed(0)
    scales = torch.linspace(0.2, 5.0, 16)  # anisotropic codes: the fit must map its weights back to raw space
    codes = torch.randn(4000, 16, generator=generator) * scales
    planted = torch.randn(16, generator=generator)
    planted /= planted.norm()
    has_attribute = codes @ planted > 0
    fit = fit_attribute_direction(codes[has_attribute], codes[~has_attribute])
    assert fit.direction.shape == (16,) and fit.direction.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.dot(fit.direction, planted).item() > 0.97
    assert fit.separation > 0 and fit.train_accuracy > 0.9
    assert fit.scales([-1, 0, 2]) == pytest.approx([-fit.separation, 0.0, 2 * fit.separation])
    swapped = fit_attribute_direction(codes[~has_attribute], codes[has_attribute])
    assert torch.dot(swapped.direction, fit.direction).item() < -0.99


def test_direction_fit_refuses_unusable_code_sets():
    with pytest.raises(ValueError, match="at least 2 codes"):
        fit_attribute_direction(torch.randn(1, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="differ in width"):
        fit_attribute_direction(torch.randn(5, 4), torch.randn(5, 3))
    with pytest.raises(ValueError, match="NaN"):
        fit_attribute_direction(torch.full((5, 4), float("inf")), torch.randn(5, 4))


def test_the_released_ema_model_keeps_the_code_statistics():
    # An EMA tracks parameters only: the released copy must carry the buffers over, or the sampler would denormalise
    # with mean 0 / std 1 (a bug the first trained sampler had: classifier FD 27 instead of near the floor).
    from diffusers_pdae.training.config import TrainingConfig
    from diffusers_pdae.training.optimization import averaged_model, make_ema

    sampler = tiny_sampler()
    sampler.set_code_statistics(torch.randn(50, 8) * 3 + 2)
    ema = make_ema(sampler, TrainingConfig(output_dir="unused"))
    with torch.no_grad():
        for parameter in sampler.parameters():
            parameter.add_(1.0)  # the live weights move on; the EMA still holds the initial ones
    released = averaged_model(sampler, ema)
    assert torch.equal(released.code_mean, sampler.code_mean) and torch.equal(released.code_std, sampler.code_std)
    assert torch.allclose(released.proj_out.weight, sampler.proj_out.weight - 1.0, atol=1e-6)
