"""Frechet distance, linear probe, class-balanced subsets and manipulation directions on hand-made data."""

import numpy as np
import pytest
import torch

from diffusers_pdae.directions import linear_direction
from diffusers_pdae.evaluation import (
    features_frechet_distance,
    frechet_distance,
    gaussian_statistics,
    linear_probe,
    stratified_indices,
)


def test_frechet_distance_of_1d_gaussians():
    # (mu_a - mu_b)^2 + s_a^2 + s_b^2 - 2 s_a s_b = (0 - 1)^2 + 1 + 4 - 2 * 1 * 2 = 2
    assert frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(2.0)


def test_frechet_distance_of_diagonal_gaussians():
    # ||(0,0) - (1,2)||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2 = 5 + (1 - 2)^2 + (2 - 3)^2 = 7
    distance = frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([4.0, 9.0]))
    assert distance == pytest.approx(7.0)


def test_frechet_distance_is_zero_for_identical_and_symmetric_for_full_covariances():
    generator = np.random.default_rng(0)
    a, b = generator.normal(size=(5, 5)), generator.normal(size=(5, 5))
    cov_a, cov_b = a @ a.T, b @ b.T
    mean = generator.normal(size=5)
    assert frechet_distance(mean, cov_a, mean, cov_a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(mean, cov_a, -mean, cov_b) == pytest.approx(frechet_distance(-mean, cov_b, mean, cov_a))
    # the same value as the textbook formula with a general matrix square root
    from scipy.linalg import sqrtm

    textbook = 4 * mean @ mean + np.trace(cov_a + cov_b - 2 * sqrtm(cov_a @ cov_b).real)
    assert frechet_distance(mean, cov_a, -mean, cov_b) == pytest.approx(textbook, rel=1e-6)


def test_gaussian_statistics():
    features = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    mean, cov = gaussian_statistics(features)
    assert np.allclose(mean, [2.0, 2.0])
    assert np.allclose(cov, [[4.0, 3.0], [3.0, 3.0]])  # unbiased: divided by N - 1


def test_features_frechet_distance_fits_both_sets_then_compares_them():
    features = torch.randn(500, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert features_frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)
    # Shifting every one of the 4 dimensions by 2 moves the means by 4 * 2**2 and leaves the covariances alone.
    assert features_frechet_distance(features, features + 2) == pytest.approx(16.0, rel=1e-9)
    expected = frechet_distance(*gaussian_statistics(features), *gaussian_statistics(features.numpy() * 3))
    assert features_frechet_distance(features, features.numpy() * 3) == pytest.approx(expected)


def test_linear_probe_separates_a_trivially_separable_dataset():
    generator = np.random.default_rng(0)
    centres = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    labels = np.repeat(np.arange(3), 60)
    features = centres[labels] + 0.3 * generator.normal(size=(180, 3))
    train, test = np.arange(180) % 3 != 0, np.arange(180) % 3 == 0
    result = linear_probe(features[train], labels[train], features[test], labels[test], Cs=(0.01, 1.0))
    assert result.test_accuracy == 1.0 and result.train_accuracy == 1.0
    assert result.width == 3 and result.num_train == 120 and result.num_test == 60
    assert set(result.validation_accuracy) == {"0.01", "1.0"}


def test_linear_probe_is_at_chance_on_noise():
    generator = np.random.default_rng(1)
    features, labels = generator.normal(size=(400, 5)), generator.integers(0, 2, 400)
    result = linear_probe(features[:300], labels[:300], features[300:], labels[300:], Cs=(1.0,))
    assert 0.35 < result.test_accuracy < 0.65


def test_stratified_indices_are_balanced_seeded_and_distinct():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 5)
    indices = stratified_indices(labels, 20, seed=3)
    assert len(set(indices.tolist())) == 20
    counts = np.bincount(labels[indices], minlength=3)
    assert counts.tolist() == [8, 7, 5]  # class 2 runs out after 5 rounds
    assert np.bincount(labels[indices[:9]]).tolist() == [3, 3, 3]  # every prefix is balanced
    assert np.array_equal(indices, stratified_indices(labels, 20, seed=3))
    assert not np.array_equal(indices, stratified_indices(labels, 20, seed=4))


def test_linear_direction_points_towards_the_positive_class():
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(200, 4, generator=generator)
    targets = (codes[:, 2] > 0).numpy()
    direction, separation = linear_direction(codes, targets)
    assert direction.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert direction[2] > 0.95
    # half-normal means: E[x | x > 0] - E[x | x < 0] = 2 sqrt(2 / pi) ~ 1.6 along the true axis
    projections = codes @ direction
    assert separation == pytest.approx((projections[targets].mean() - projections[~targets].mean()).item(), rel=1e-5)
    assert 1.3 < separation < 1.9
