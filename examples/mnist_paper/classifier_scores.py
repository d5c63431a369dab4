"""Scores that use the bundled digit classifier to judge images: labels, confidence, and a classifier FD.

"Classifier FD" is the Frechet distance of `diffusers_pdae.evaluation.frechet_distance` between the classifier's
penultimate features of two image sets. We call it that, never FID: there are no Inception weights here, and the
numbers are not comparable with published FIDs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from digit_classifier import DigitClassifier

from diffusers_pdae.evaluation import frechet_distance, gaussian_statistics


@torch.no_grad()
def classify(classifier: DigitClassifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Class probabilities `(B, 10)` of images `(B, 1, H, W)` in [-1, 1], in batches."""
    device = next(classifier.parameters()).device
    return torch.cat(
        [
            classifier.predict_proba(images[i : i + batch_size].to(device)).cpu()
            for i in range(0, len(images), batch_size)
        ]
    )


def confident_fraction(classifier: DigitClassifier, images: torch.Tensor, threshold: float = 0.9) -> float:
    """Fraction of images `(B, 1, H, W)` in [-1, 1] whose top class probability exceeds `threshold`."""
    return (classify(classifier, images).max(dim=1).values > threshold).float().mean().item()


def label_predictor(classifier: DigitClassifier) -> Callable[[torch.Tensor], torch.Tensor]:
    """`images (B, 1, H, W) in [-1, 1] -> predicted digits (B,)`, e.g. for `critical_stage_scores`."""
    return lambda images: classify(classifier, images).argmax(dim=1)


@torch.no_grad()
def classifier_features(classifier: DigitClassifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Penultimate classifier features `(B, feature_dim)` of images `(B, 1, H, W)` in [-1, 1], in batches."""
    device = next(classifier.parameters()).device
    return torch.cat(
        [
            classifier.features(images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    )


def classifier_statistics(classifier: DigitClassifier, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean `(D,)` and covariance `(D, D)` of the classifier features of images `(N, 1, H, W)` in [-1, 1]."""
    return gaussian_statistics(classifier_features(classifier, images))


def classifier_frechet_distance(
    classifier: DigitClassifier,
    images: torch.Tensor,
    reference: torch.Tensor | tuple[np.ndarray, np.ndarray],
) -> float:
    """Classifier FD between images `(N, 1, H, W)` in [-1, 1] and reference images `(M, 1, H, W)` (or their
    precomputed `classifier_statistics`)."""
    if isinstance(reference, torch.Tensor):
        reference = classifier_statistics(classifier, reference)
    return frechet_distance(*classifier_statistics(classifier, images), *reference)
