import pytest
import torch
from digit_classifier import DigitClassifier, load_digit_classifier

from diffusers_pdae.bundled import load_mnist_arrays, mnist_to_tensor


@pytest.fixture(scope="module")
def classifier():
    return load_digit_classifier()


@pytest.fixture(scope="module")
def test_digits():
    """The first 500 test digits (as uint8 `(500, 28, 28)`) and their labels."""
    images, labels = load_mnist_arrays("test")
    return images[:500], torch.from_numpy(labels[:500])


def test_bundled_classifier_accuracy(classifier, test_digits):
    images, labels = test_digits
    assert not classifier.training
    probabilities = classifier.predict_proba(mnist_to_tensor(images))
    accuracy = (probabilities.argmax(dim=-1) == labels).float().mean().item()
    assert accuracy >= 0.98


def test_output_shapes_and_probabilities(classifier, test_digits):
    images = mnist_to_tensor(test_digits[0][:8])
    with torch.no_grad():
        logits = classifier(images)
        features = classifier.features(images)
    probabilities = classifier.predict_proba(images)
    assert logits.shape == (8, 10)
    assert features.shape == (8, classifier.config.feature_dim)
    assert probabilities.shape == (8, 10)
    assert probabilities.min() >= 0
    torch.testing.assert_close(probabilities.sum(dim=-1), torch.ones(8))
    torch.testing.assert_close(probabilities, logits.softmax(dim=-1))


def test_28x28_inputs_are_padded(classifier, test_digits):
    images = test_digits[0][:8]
    padded = mnist_to_tensor(images, size=32)
    unpadded = mnist_to_tensor(images, size=28)
    assert unpadded.shape == (8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(classifier(unpadded), classifier(padded), rtol=0, atol=0)
        torch.testing.assert_close(classifier.features(unpadded), classifier.features(padded), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 32, 32), (1, 2, 1, 32, 32), (2, 1, 30, 30)])
def test_bad_inputs_raise(shape):
    model = DigitClassifier(block_channels=(4, 8), feature_dim=8)
    with pytest.raises(ValueError):
        model(torch.zeros(shape))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = DigitClassifier(block_channels=(4, 8), feature_dim=8).eval()
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_digit_classifier(tmp_path)
    assert list(loaded.config.block_channels) == [4, 8]
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))
        assert torch.equal(model.features(images), loaded.features(images))


def test_missing_weights_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        load_digit_classifier(tmp_path / "missing")
