"""Directions in code space for attribute manipulation: the normal of a linear classifier trained on z.

scikit-learn (the `[eval]` extra) fits the classifier; it is imported only when a direction is fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils import BaseOutput

from .import_utils import require


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


@dataclass
class AttributeDirection(BaseOutput):
    """
    A direction in code space, ready for [`~PDAEPipeline.manipulate`]: `scales=direction.scales([-1, 0, 1])` moves
    codes by -1, 0 and +1 separations.

    Args:
        direction (`torch.Tensor` of shape `(latent_dim,)`): unit vector pointing from set B towards set A.
        separation (`float`): distance along `direction` between the mean codes of A and B (the natural unit of a
            scale).
        code_mean (`torch.Tensor` of shape `(latent_dim,)`): mean of all the codes the direction was fit on.
        code_std (`torch.Tensor` of shape `(latent_dim,)`): their per-dimension standard deviation.
        train_accuracy (`float`): share of those codes on the right side of the midpoint between the two means: how
            linearly the attribute separates in code space (0.5 is chance).
    """

    direction: torch.Tensor
    separation: float
    code_mean: torch.Tensor
    code_std: torch.Tensor
    train_accuracy: float

    def scales(self, multiples: list[float]) -> list[float]:
        """Manipulation scales in units of the separation: `[m * separation for m in multiples]`."""
        return [float(multiple) * self.separation for multiple in multiples]


def fit_attribute_direction(codes_a: torch.Tensor, codes_b: torch.Tensor) -> AttributeDirection:
    """The [`AttributeDirection`] separating codes that have an attribute (`codes_a` `(N_a, D)`) from codes that have
    not (`codes_b` `(N_b, D)`), from [`linear_direction`]."""
    for name, codes in (("codes_a", codes_a), ("codes_b", codes_b)):
        if codes.ndim != 2 or codes.shape[0] < 2:
            raise ValueError(f"{name} must hold at least 2 codes of shape (N, D), got {tuple(codes.shape)}.")
        if not torch.isfinite(codes).all():
            raise ValueError(f"{name} contains NaN or inf.")
    if codes_a.shape[1] != codes_b.shape[1]:
        raise ValueError(f"codes_a and codes_b differ in width: {codes_a.shape[1]} vs {codes_b.shape[1]}.")
    codes = torch.cat([codes_a, codes_b]).detach().float().cpu()
    gap = (codes_a.float().mean(dim=0) - codes_b.float().mean(dim=0)).norm().item()
    if gap <= 1e-6 * max(codes.norm(dim=1).mean().item(), 1e-12):
        raise ValueError(
            "The two sets (images_a and images_b, or codes_a and codes_b) have the same mean code, so no direction "
            "leads from one to the other: are they the same images? Pass one set with the attribute and one without."
        )
    targets = np.concatenate([np.ones(len(codes_a), dtype=int), np.zeros(len(codes_b), dtype=int)])
    direction, separation = linear_direction(codes, targets)
    projections = (codes @ direction).numpy()
    midpoint = (projections[targets == 1].mean() + projections[targets == 0].mean()) / 2
    accuracy = float(((projections > midpoint) == (targets == 1)).mean())
    return AttributeDirection(
        direction=direction,
        separation=separation,
        code_mean=codes.mean(dim=0),
        code_std=codes.std(dim=0),
        train_accuracy=accuracy,
    )
