"""Frechet distance between Gaussian fits of features, here the bundled digit classifier's penultimate features.

We call it "classifier FD", never FID: there are no Inception weights here, and the numbers are not comparable with
published FIDs. Lower is better; the distance between two disjoint sets of real digits (e.g. train vs test) is the
floor that sampling noise alone gives at the same sample sizes.

    FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})

Tr (S_a S_b)^{1/2} is computed as the sum of the square roots of the eigenvalues of the symmetric positive
semi-definite matrix S_a^{1/2} S_b S_a^{1/2} (same eigenvalues as S_a S_b), which avoids the complex round-off of a
general matrix square root.
"""

from __future__ import annotations

import numpy as np
import torch

from .digit_classifier import DigitClassifier


def gaussian_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean `(D,)` and unbiased covariance `(D, D)` of features `(N, D)` (rows are samples), float64."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"Expected features of shape (N >= 2, D), got {features.shape}.")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mean_a, cov_a) and N(mean_b, cov_b). Means `(D,)`,
    covariances `(D, D)`."""
    mean_a, mean_b = np.atleast_1d(mean_a).astype(np.float64), np.atleast_1d(mean_b).astype(np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    sqrt_a = _psd_sqrt(cov_a)
    cross = np.clip(np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a), 0.0, None)
    trace_term = np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.sqrt(cross).sum()
    return float(((mean_a - mean_b) ** 2).sum() + trace_term)


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
