"""The study's stroke-thickness target for the probe; the pixel attributes themselves live in the library
(`diffusers_pdae.evaluation.attributes`), where the interactive demo uses them too."""

from __future__ import annotations

import numpy as np
import torch

from diffusers_pdae.evaluation.attributes import extreme_groups, ink_mass


def ink_targets(images: torch.Tensor, quantile: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """A stroke-thickness attribute: images with the most ink (top `quantile`) vs the least (bottom `quantile`).

    Returns:
        `(indices, targets)`: indices of the selected images (ascending) and their binary targets (1 = bold).
    """
    ink = ink_mass(images)
    high, low = extreme_groups(ink, quantile)
    indices = np.union1d(high, low)
    return indices, np.isin(indices, high).astype(int)
