"""Directions in code space for attribute manipulation: the normal of a linear classifier trained on z."""

from __future__ import annotations

import numpy as np
import torch

from ..import_utils import require


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
    linear_model = require("sklearn.linear_model", "linear_direction")
    preprocessing = require("sklearn.preprocessing", "linear_direction")
    features = codes.detach().cpu().double().numpy()
    targets = np.asarray(targets).astype(int).ravel()
    scaler = preprocessing.StandardScaler().fit(features)
    classifier = linear_model.LogisticRegression(C=C, max_iter=max_iter).fit(scaler.transform(features), targets)
    weights = classifier.coef_[0] / scaler.scale_
    direction = weights / np.linalg.norm(weights)
    projections = features @ direction
    separation = float(projections[targets == 1].mean() - projections[targets == 0].mean())
    return torch.from_numpy(direction).float(), separation
