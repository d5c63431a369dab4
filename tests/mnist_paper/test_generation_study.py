"""The label-free digit attributes and examples/mnist_paper/evaluate_generation.py on the bundled pipeline, tiny."""

import json

import numpy as np
import torch

from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.evaluation.attributes import extreme_groups, ink_mass, slant

from .conftest import load_study_script


def bar(shear: float, width: int = 1) -> torch.Tensor:
    """A (1, 1, 32, 32) vertical stroke whose top is shifted right by `shear` pixels per row upwards."""
    image = -torch.ones(1, 1, 32, 32)
    for row in range(6, 26):
        column = 16 + round(shear * (16 - row))
        image[0, 0, row, column : column + width] = 1
    return image


def test_slant_is_zero_upright_and_signed_by_the_lean():
    assert abs(slant(bar(0.0))[0]) < 1e-6
    assert slant(bar(0.3))[0] > 0.2 and slant(bar(-0.3))[0] < -0.2
    assert slant(bar(0.3))[0] < slant(bar(0.5))[0]


def test_ink_mass_grows_with_the_stroke_width():
    assert ink_mass(bar(0.0, width=1))[0] < ink_mass(bar(0.0, width=3))[0]
    assert ink_mass(-torch.ones(1, 1, 32, 32))[0] == 0.0


def test_extreme_groups_are_the_top_and_bottom_quarters():
    high, low = extreme_groups(np.arange(100.0))
    assert high.tolist() == list(range(75, 100)) and low.tolist() == list(range(0, 25))


def test_generation_study_reports_every_figure(tmp_path):
    script = load_study_script("evaluate_generation")
    results = script.main([
        "--pipeline", checkpoint_path("pdae-mnist"), "--out", str(tmp_path), "--num_samples", "20", "--num_edited",
        "4", "--num_inference_steps", "2", "--code_num_inference_steps", "3", "--batch_size", "20",
    ])  # fmt: skip
    samples = results["samples"]
    assert set(samples["classifier_fd"]) == {
        "PDAE samples (sampled z, random x_T)", "DPM samples (same x_T, no z)", "train digits (floor)"
    }  # fmt: skip
    assert all(len(shares) == 10 and abs(sum(shares) - 1) < 1e-6 for shares in samples["class_histogram"].values())
    for name in ("thickness", "slant"):
        figures = results[name]
        assert len(figures["mean_attribute_by_scale"]) == len(figures["multiples"]) == 5
        assert 0 <= figures["monotonic_share"] <= 1 and (tmp_path / figures["grid"]).is_file()
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert "Classifier FD" in (tmp_path / "README.md").read_text()
