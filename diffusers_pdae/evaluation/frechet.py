"""Frechet distance between Gaussian fits of features (as FID does with Inception features).

Any feature extractor can feed it; with anything but the Inception network of FID, call the result by what it is
(e.g. "classifier FD"), never FID: the numbers are not comparable with published FIDs. Lower is better; the distance
between two disjoint sets of real images (e.g. train vs test) is the floor that sampling noise alone gives at the same
sample sizes.

    FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})

Tr (S_a S_b)^{1/2} is computed as the sum of the square roots of the eigenvalues of the symmetric positive
semi-definite matrix S_a^{1/2} S_b S_a^{1/2} (same eigenvalues as S_a S_b), which avoids the complex round-off of a
general matrix square root.
"""

from __future__ import annotations

import numpy as np
import torch


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


def features_frechet_distance(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of two sets of features `(N, D)` (0 when they match), e.g. PDAE codes."""
    return frechet_distance(*gaussian_statistics(features_a), *gaussian_statistics(features_b))
