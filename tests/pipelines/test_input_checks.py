"""Bad arguments to the pipeline fail at once, naming the argument, before any denoising: no silent wrong numbers."""

import time

import pytest
import torch

from ..conftest import LATENT_DIM, tiny_images, tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def images():
    return tiny_images(2)


def nan_like(tensor: torch.Tensor) -> torch.Tensor:
    bad = tensor.clone()
    bad.view(-1)[0] = float("nan")
    return bad


@pytest.mark.parametrize("steps", [0, -3, 2.5, "10", True, 1001])
def test_num_inference_steps_outside_1_to_T_is_refused_everywhere(pipe, images, steps):
    latents, z = torch.randn(2, 1, 16, 16), torch.randn(2, LATENT_DIM)
    calls = [
        lambda: pipe(z=z, num_inference_steps=steps),
        lambda: pipe.invert(images, num_inference_steps=steps),
        lambda: pipe.decode(latents, z, num_inference_steps=steps),
        lambda: pipe.reconstruct(images, num_inference_steps=steps),
        lambda: pipe.interpolate(images[0], images[1], num_inference_steps=steps),
        lambda: pipe.manipulate(images, torch.ones(LATENT_DIM), [1.0], num_inference_steps=steps),
    ]
    for call in calls:
        with pytest.raises((ValueError, TypeError), match="num_inference_steps"):
            call()


def test_reconstruct_with_negative_steps_no_longer_returns_the_input_as_a_perfect_score(pipe, images):
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe.reconstruct(images, num_inference_steps=-3, output_type="pt")


def test_non_finite_inputs_are_refused_by_name(pipe, images):
    z, latents = pipe.encode(images), torch.randn(2, 1, 16, 16)
    with pytest.raises(ValueError, match="NaN"):
        pipe.encode(nan_like(images))
    with pytest.raises(ValueError, match="z has 1 NaN"):
        pipe(z=nan_like(z), num_inference_steps=2)
    with pytest.raises(ValueError, match="latents has 1 NaN"):
        pipe.decode(nan_like(latents), z, num_inference_steps=2)
    with pytest.raises(ValueError, match="direction has 1 NaN"):
        pipe.manipulate(images, nan_like(torch.ones(LATENT_DIM)), [1.0], num_inference_steps=2)
    with pytest.raises(ValueError, match="scales"):
        pipe.manipulate(images, torch.ones(LATENT_DIM), [1.0, float("nan")], num_inference_steps=2)


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan"), "0.5"])
def test_eta_outside_0_1_is_refused(pipe, eta):
    with pytest.raises(ValueError, match="eta"):
        pipe(batch_size=1, num_inference_steps=2, eta=eta)


def test_counts_batches_and_generators_are_checked(pipe, images):
    with pytest.raises(ValueError, match="num must be"):
        pipe.interpolate(images[0], images[1], num=1, num_inference_steps=2)
    with pytest.raises(ValueError, match="scales"):
        pipe.manipulate(images, torch.ones(LATENT_DIM), [], num_inference_steps=2)
    for batch_size in (0, -1, 1.5):
        with pytest.raises(ValueError, match="batch_size"):
            pipe(batch_size=batch_size, num_inference_steps=2)
    with pytest.raises(ValueError, match="batch size 0"):
        pipe.encode(torch.zeros(0, 1, 16, 16))
    with pytest.raises(ValueError, match="non-empty list"):
        pipe.encode([])
    three = [torch.Generator().manual_seed(i) for i in range(3)]
    with pytest.raises(ValueError, match="3 generators but the batch has 2"):
        pipe(batch_size=2, generator=three, num_inference_steps=2)
    with pytest.raises(ValueError, match="3 generators but the batch has 2"):
        pipe.reconstruct(images, invert=False, generator=three, num_inference_steps=2)
    two = three[:2]
    assert pipe(batch_size=2, generator=two, num_inference_steps=2, output_type="pt").images.shape == (2, 1, 16, 16)


@pytest.mark.parametrize("timestep", [-1, 1000, torch.tensor([3, 1000])])
def test_predict_noise_refuses_timesteps_outside_0_to_T(pipe, timestep):
    with pytest.raises(ValueError, match="timestep"):
        pipe.predict_noise(torch.zeros(2, 1, 16, 16), timestep)


def test_an_unknown_output_type_fails_before_the_loop(pipe, images):
    started = time.perf_counter()
    for call in (
        lambda: pipe(batch_size=1, num_inference_steps=1000, output_type="jpg"),
        lambda: pipe.reconstruct(images, num_inference_steps=1000, output_type="jpg"),
        lambda: pipe.decode(torch.zeros(1, 1, 16, 16), None, num_inference_steps=1000, output_type="jpg"),
    ):
        with pytest.raises(ValueError, match="output_type"):
            call()
    assert time.perf_counter() - started < 1.0  # 1000 steps would take many seconds


def test_latent_output_is_the_raw_model_space_result(pipe, images):
    z = pipe.encode(images)
    latents = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    raw = pipe(z=z, latents=latents, num_inference_steps=3, output_type="latent").images
    assert torch.equal(raw, pipe.decode(latents, z, 3, output_type="latent").images)
    assert torch.allclose(pipe(z=z, latents=latents, num_inference_steps=3, output_type="pt").images,
                          (raw / 2 + 0.5).clamp(0, 1))  # fmt: skip


def test_codes_may_come_as_a_list_of_tensors(pipe, images):
    z = pipe.encode(images)
    latents = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    expected = pipe(z=z, latents=latents, num_inference_steps=2, output_type="pt").images
    for codes in ([z[0], z[1]], [z[:1], z[1:]]):
        assert torch.equal(pipe(z=codes, latents=latents, num_inference_steps=2, output_type="pt").images, expected)
    with pytest.raises(ValueError, match=r"z is a list of codes of widths \[3, 8\]; every code must have width 8"):
        pipe(z=[z[0], torch.zeros(3)], latents=latents, num_inference_steps=2)
    with pytest.raises(ValueError, match="floating-point"):
        pipe(z=z.long(), latents=latents, num_inference_steps=2)
