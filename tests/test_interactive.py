"""The demo's actions (diffusers_pdae.interactive) on the bundled pipeline: pictures in any polarity land in the MNIST
convention, reconstructions from the inferred x_T beat those from random x_T, edits move the attribute they name, and
bad pictures raise messages meant for a person."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_arrays, load_mnist_tensors
from diffusers_pdae.evaluation import psnr
from diffusers_pdae.evaluation.attributes import ink_mass, slant
from diffusers_pdae.interactive import PDAEPlayground, center_strokes, fit_stroke_directions, stroke_intensity

from .conftest import load_script

STEPS = 10


@pytest.fixture(scope="module")
def digits() -> list[PIL.Image.Image]:
    images, _ = load_mnist_arrays("test")
    return [PIL.Image.fromarray(image) for image in images[:4]]


@pytest.fixture(scope="module")
def playground() -> PDAEPlayground:
    pipeline = PDAEPipeline.from_pretrained(checkpoint_path("pdae-mnist"))
    pipeline.set_progress_bar_config(disable=True)
    references, _ = load_mnist_tensors("train", np.arange(0, 8000, 20))  # 40 of every class
    return PDAEPlayground(pipeline, STEPS, fit_stroke_directions(pipeline, references), display_size=64)


def pixels(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


def as_model_tensor(image: PIL.Image.Image, size: int = 32) -> torch.Tensor:
    """A display picture (scaled up without smoothing) back at the model's size, `(1, 1, size, size)` in [-1, 1]."""
    return torch.from_numpy(pixels(image.resize((size, size), PIL.Image.NEAREST)))[None, None].float() / 127.5 - 1


def test_polarity_and_transparency_do_not_change_the_model_input(digits):
    bright_on_black = digits[0]
    dark_on_paper = PIL.Image.fromarray(255 - np.asarray(bright_on_black)).resize((200, 200), PIL.Image.BICUBIC)
    sketch = PIL.Image.new("RGBA", (140, 140), (0, 0, 0, 0))
    sketch.putalpha(bright_on_black.resize((140, 140), PIL.Image.BICUBIC))  # black strokes, transparent canvas
    reference = pixels(center_strokes(bright_on_black, 32))
    for picture in (dark_on_paper, sketch):
        converted = pixels(center_strokes(picture, 32))
        assert converted.shape == (32, 32)
        # Up to the one-pixel rounding of the centre of mass, the same digit lands in the same pixels (0-255 scale).
        shifted = [np.roll(converted, (i, j), (0, 1)) for i in (-1, 0, 1) for j in (-1, 0, 1)]
        assert min(np.abs(candidate - reference).mean() for candidate in shifted) < 5


def test_strokes_are_boxed_and_centred_like_mnist(digits):
    off_centre = PIL.Image.new("L", (100, 60), 0)
    off_centre.paste(digits[1].resize((30, 30)), (65, 25))
    centred = pixels(center_strokes(off_centre, 32))
    rows, columns = np.nonzero(centred > 0.2 * 255)
    assert max(rows.max() - rows.min(), columns.max() - columns.min()) + 1 <= 21
    mass = centred.sum()
    centre = ((centred.sum(axis=1) * np.arange(32)).sum() / mass, (centred.sum(axis=0) * np.arange(32)).sum() / mass)
    assert np.allclose(centre, 15.5, atol=1.0)


@pytest.mark.parametrize("colour", ["white", "black", (128, 128, 128)])
def test_blank_pictures_are_refused_with_a_message(colour):
    with pytest.raises(ValueError, match="No strokes found"):
        stroke_intensity(PIL.Image.new("RGB", (50, 50), colour))


def test_prepare_refuses_missing_and_tiny_pictures(playground):
    with pytest.raises(ValueError, match="upload one or draw"):
        playground.prepare(None)
    with pytest.raises(ValueError, match="too small"):
        playground.prepare(PIL.Image.new("L", (2, 2), 255))
    with pytest.raises(ValueError, match="Expected a picture"):
        playground.prepare(np.zeros((28, 28)))


def test_reconstruction_from_inferred_x_T_beats_random_x_T(playground, digits):
    shown = playground.reconstruct(digits[0], seed=0)
    assert {name: image.size for name, image in shown.items()} == dict.fromkeys(shown, (64, 64))
    assert set(shown) == {"input", "inferred", "random"}
    original = as_model_tensor(shown["input"]) / 2 + 0.5
    inferred_psnr = psnr(as_model_tensor(shown["inferred"]) / 2 + 0.5, original).item()
    random_psnr = psnr(as_model_tensor(shown["random"]) / 2 + 0.5, original).item()
    assert inferred_psnr > 24 and inferred_psnr > random_psnr + 3


def test_edits_move_their_attribute_and_zero_is_the_reconstruction(playground, digits):
    reconstruction = playground.reconstruct(digits[2])["inferred"]
    assert np.array_equal(pixels(playground.edit(digits[2], {"thickness": 0, "slant": 0})), pixels(reconstruction))
    thicker = as_model_tensor(playground.edit(digits[2], {"thickness": 1.0}))
    thinner = as_model_tensor(playground.edit(digits[2], {"thickness": -1.0}))
    assert ink_mass(thicker)[0] > ink_mass(as_model_tensor(reconstruction))[0] > ink_mass(thinner)[0]
    right = as_model_tensor(playground.edit(digits[2], {"slant": 1.0}))
    left = as_model_tensor(playground.edit(digits[2], {"slant": -1.0}))
    assert slant(right)[0] > slant(left)[0]
    with pytest.raises(ValueError, match="No direction named colour"):
        playground.edit(digits[2], {"colour": 1.0})


def test_slider_moves_reuse_the_inversion(playground, digits, monkeypatch):
    playground.edit(digits[3], {"thickness": 0.5})
    calls = []
    invert = playground.pipeline.invert
    monkeypatch.setattr(playground.pipeline, "invert", lambda *a, **k: calls.append(1) or invert(*a, **k))
    playground.edit(digits[3], {"thickness": -0.5})
    playground.reconstruct(digits[3])
    assert calls == []


def test_interpolation_strip_and_samples(playground, digits):
    strip = playground.interpolate(digits[0], digits[1], num=5)
    assert strip.size == ((5 * 33 + 1) * 2, 34 * 2)  # five 32-pixel frames with one-pixel gaps, scaled by 2
    first_frame = as_model_tensor(strip.crop((2, 2, 66, 66)))
    assert psnr(first_frame / 2 + 0.5, as_model_tensor(playground.reconstruct(digits[0])["inferred"]) / 2 + 0.5) > 30
    with pytest.raises(ValueError, match="No second picture"):
        playground.interpolate(digits[0], None)
    grid = playground.sample(4, seed=1)
    assert grid.size == ((4 * 33 + 1) * 2, 34 * 2)
    assert np.array_equal(pixels(grid), pixels(playground.sample(4, seed=1)))


def test_stroke_directions_separate_the_reference_groups(playground):
    for name, direction in playground.directions.items():
        assert direction.train_accuracy > 0.8, name
        assert direction.direction.shape == (playground.pipeline.latent_dim,)


def test_the_action_benchmark_runs_and_reports_every_action(tmp_path):
    benchmark = load_script("benchmark_app_actions", folder="benchmarks")
    flags = ["--num_inference_steps", "2", "--num_reference_images", "40", "--repeats", "1", "--num_frames", "3"]
    results = benchmark.main([*flags, "--num_samples", "2", "--json", str(tmp_path / "times.json")])
    names = ["directions", "reconstruct", "edit (inversion cached)", "interpolate (3 frames)", "sample (2)"]
    assert list(results["seconds"]) == names
    assert all(len(values) == 1 and values[0] > 0 for values in results["seconds"].values())
    assert json.loads((tmp_path / "times.json").read_text()) == results
