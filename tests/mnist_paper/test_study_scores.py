"""The study's digit-specific scores: classifier FD, classifier labels for the critical stage, the ink attribute."""

import pytest
import torch
from classifier_scores import classifier_frechet_distance, classify, label_predictor
from digit_attributes import ink_targets
from digit_classifier import load_digit_classifier

from diffusers_pdae.bundled import load_mnist_tensors


@pytest.fixture(scope="module")
def classifier():
    return load_digit_classifier()


def test_classifier_frechet_distance_of_a_set_with_itself_is_zero(classifier):
    images = torch.rand(40, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert classifier_frechet_distance(classifier, images, images) == pytest.approx(0.0, abs=1e-3)


def test_classifier_frechet_distance_puts_real_digits_far_closer_than_noise(classifier):
    test_digits, _ = load_mnist_tensors("test", range(300))
    train_digits, _ = load_mnist_tensors("train", range(0, 8000, 27))
    noise = torch.rand(300, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real = classifier_frechet_distance(classifier, train_digits, test_digits)
    assert real * 10 < classifier_frechet_distance(classifier, noise, test_digits)


def test_label_predictor_gives_the_classifier_s_top_class(classifier):
    digits, labels = load_mnist_tensors("test", range(50))
    predicted = label_predictor(classifier)(digits)
    assert torch.equal(predicted, classify(classifier, digits).argmax(dim=1))
    assert (predicted == labels).float().mean() > 0.95


def test_ink_targets_pick_the_boldest_and_faintest_quarters():
    images = torch.linspace(-1, 1, 8)[:, None, None, None].expand(8, 1, 2, 2)
    indices, targets = ink_targets(images)
    assert indices.tolist() == [0, 1, 6, 7] and targets.tolist() == [0, 0, 1, 1]
