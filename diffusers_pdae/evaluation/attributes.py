"""Attributes of stroke images (digits, sketches) computed from the pixels alone, with no labels: what the attribute
directions of the MNIST study and of the interactive demo are fit on.

Images are `(N, C, H, W)` tensors in [-1, 1] with background -1; ink is `(x + 1) / 2` in [0, 1], averaged over the
channels.
"""

from __future__ import annotations

import numpy as np
import torch


def _ink(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1) / 2).clamp(0, 1).mean(dim=1)


def ink_mass(images: torch.Tensor) -> np.ndarray:
    """Stroke thickness: the mean ink per pixel `(N,)` (a bolder stroke of the same digit holds more ink)."""
    return _ink(images).flatten(1).mean(dim=1).numpy()


def slant(images: torch.Tensor) -> np.ndarray:
    """Slant from the second image moments `(N,)`: -mu11 / mu02, the horizontal shift of the ink per row upwards
    (0 for an upright digit, positive when the top leans right; rows grow downwards)."""
    ink = _ink(images).double()
    height, width = ink.shape[1:]
    rows = torch.arange(height, dtype=ink.dtype)[None, :, None]
    columns = torch.arange(width, dtype=ink.dtype)[None, None, :]
    mass = ink.sum(dim=(1, 2)).clamp_min(1e-8)
    row_mean = (ink * rows).sum(dim=(1, 2)) / mass
    column_mean = (ink * columns).sum(dim=(1, 2)) / mass
    row_offsets = rows - row_mean[:, None, None]
    mu11 = (ink * row_offsets * (columns - column_mean[:, None, None])).sum(dim=(1, 2))
    mu02 = (ink * row_offsets**2).sum(dim=(1, 2)).clamp_min(1e-8)
    return (-mu11 / mu02).numpy()


STROKE_ATTRIBUTES = {"thickness": ink_mass, "slant": slant}


def extreme_groups(values: np.ndarray, quantile: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the top `quantile` (`high`) and the bottom `quantile` (`low`) of `values`: `(high, low)`."""
    low, high = np.quantile(values, quantile), np.quantile(values, 1 - quantile)
    return np.flatnonzero(values >= high), np.flatnonzero(values <= low)
