"""figures.py: every NaN or infinite number of a nested report is found and named by its keys; nothing else is."""

import math

import numpy as np
import pytest
import torch

from diffusers_pdae.figures import check_finite_figures, non_finite_figures


def test_non_finite_entries_are_named_by_their_keys_wherever_they_are():
    figures = {
        20: {"inferred_xT": {"psnr": {"mean": 31.2, "sem": math.nan}}, "z_only": {"ssim": {"mean": math.inf}}},
        "probe": [0.9, -math.inf, {"width": 8}],
        "loss": torch.tensor(float("nan")),
        "count": np.float32(3.0),
        "name": "pdae-mnist",
        "flag": True,
        "missing": None,
    }
    assert non_finite_figures(figures) == [
        "20/inferred_xT/psnr/sem=nan", "20/z_only/ssim/mean=inf", "probe/1=-inf", "loss=nan",
    ]  # fmt: skip
    assert non_finite_figures({"mse": 1e-3, "psnr": [30.0, 31.5]}) == []


def test_check_finite_figures_raises_naming_them_and_the_fix():
    with pytest.raises(ValueError, match=r"^The figures are not all finite \(a/b=nan\)\. Check the weights\.$"):
        check_finite_figures({"a": {"b": math.nan}, "c": 1.0}, "The figures", "Check the weights.")
    check_finite_figures({"a": 1.0}, "The figures", "unused")
