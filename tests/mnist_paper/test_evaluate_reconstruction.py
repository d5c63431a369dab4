"""examples/mnist_paper/evaluate_reconstruction.py on the bundled pipeline with a few digits and steps."""

import json

import torch

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_arrays
from diffusers_pdae.evaluation import RECONSTRUCTION_KINDS, psnr

from .conftest import load_study_script

PIPELINE = checkpoint_path("pdae-mnist")


def load_script():
    return load_study_script("evaluate_reconstruction")


def test_balanced_test_digits_are_class_balanced_test_digits():
    digits = load_script().balanced_test_digits(20, seed=0)
    images, labels = load_mnist_arrays("test")
    assert digits.shape == (20, 1, 32, 32)
    assert load_script().balanced_test_digits(4, seed=0, size=16).shape == (4, 1, 16, 16)  # a smaller UNet's size
    assert digits.min() >= -1 and digits.max() <= 1
    # each digit (without its 2-pixel padding) is a test digit, and every class appears twice
    flat = torch.as_tensor(images).reshape(len(images), -1).float() / 127.5 - 1
    distances = torch.stack([(flat - d.reshape(1, -1)).abs().amax(dim=1) for d in digits[:, :, 2:30, 2:30]])
    assert distances.amin(dim=1).max() < 1e-6
    matches = distances.argmin(dim=1).tolist()
    assert sorted(torch.bincount(torch.as_tensor(labels)[matches], minlength=10).tolist()) == [2] * 10


def test_script_reports_every_kind_and_matches_a_direct_reconstruction(tmp_path, capsys):
    script = load_script()
    out = tmp_path / "figures.json"
    figures = script.main(["--pipeline", PIPELINE, "--num_digits", "10", "--steps", "3", "--json", str(out)])
    assert set(figures["3"]) == set(RECONSTRUCTION_KINDS)
    assert json.loads(out.read_text())["figures"] == figures
    printed = capsys.readouterr().out
    assert all(name in printed for name in RECONSTRUCTION_KINDS.values())

    pipeline = PDAEPipeline.from_pretrained(PIPELINE)
    pipeline.set_progress_bar_config(disable=True)
    digits = script.balanced_test_digits(10, seed=0)
    inferred = pipeline.reconstruct(digits, num_inference_steps=3, output_type="pt").images
    expected = psnr(inferred, (digits / 2 + 0.5).clamp(0, 1)).mean().item()
    assert abs(figures["3"]["pdae_inferred_xT"]["psnr"]["mean"] - expected) < 0.05
