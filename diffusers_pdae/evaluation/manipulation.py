"""Directions in code space for attribute manipulation: the normal of a linear classifier trained on z."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def linear_direction(
    codes: torch.Tensor, targets: np.ndarray | torch.Tensor, C: float = 1.0, max_iter: int = 1000
) -> tuple[torch.Tensor, float]:
    """Unit normal of a logistic-regression boundary between `targets == 1` and `targets == 0` codes.

    The classifier is fit on standardised codes; its weights are mapped back to the raw code space (w / scale), so
    moving z along the returned direction moves it across the boundary.

    Args:
        codes (`torch.Tensor` of shape `(N, D)`): codes z (e.g. of the train split).
        targets (`(N,)`): binary attribute of each code.

    Returns:
        `(direction (D,), separation)`: the unit direction (pointing towards `targets == 1`) and the distance along it
        between the mean codes of the two groups, a natural unit for the manipulation scales (moving a code by one
        separation moves it from the average negative to the average positive along the direction).
    """
    features = codes.detach().cpu().double().numpy()
    targets = np.asarray(targets).astype(int).ravel()
    scaler = StandardScaler().fit(features)
    classifier = LogisticRegression(C=C, max_iter=max_iter).fit(scaler.transform(features), targets)
    weights = classifier.coef_[0] / scaler.scale_
    direction = weights / np.linalg.norm(weights)
    projections = features @ direction
    separation = float(projections[targets == 1].mean() - projections[targets == 0].mean())
    return torch.from_numpy(direction).float(), separation


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
