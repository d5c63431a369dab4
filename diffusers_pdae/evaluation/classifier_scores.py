"""Scores that use the bundled digit classifier to judge images."""

from __future__ import annotations

import torch

from .digit_classifier import DigitClassifier


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
