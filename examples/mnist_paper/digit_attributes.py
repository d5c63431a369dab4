"""Attributes of digits computed from the pixels alone (no labels), for attribute manipulation."""

from __future__ import annotations

import numpy as np
import torch


def ink_targets(images: torch.Tensor, quantile: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """A stroke-thickness attribute: images with the most ink (top `quantile`) vs the least (bottom `quantile`).

    Args:
        images (`torch.Tensor` of shape `(N, 1, H, W)`): in [-1, 1], background -1.

    Returns:
        `(indices, targets)`: indices of the selected images and their binary targets (1 = bold).
    """
    ink = (images.flatten(1) + 1).mean(dim=1).numpy()
    low, high = np.quantile(ink, quantile), np.quantile(ink, 1 - quantile)
    indices = np.flatnonzero((ink <= low) | (ink >= high))
    return indices, (ink[indices] >= high).astype(int)
