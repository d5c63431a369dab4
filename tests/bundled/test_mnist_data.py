import numpy as np
import pytest
import torch
from PIL import Image

from diffusers_pdae.bundled import load_mnist, load_mnist_arrays, load_mnist_tensors, mnist_to_tensor
from diffusers_pdae.bundled.mnist import _load_npz
from diffusers_pdae.image_utils import pad_to_size


@pytest.fixture(scope="module")
def train_dataset():
    return load_mnist("train")


@pytest.fixture(scope="module")
def test_dataset():
    return load_mnist("test")


def test_split_sizes(train_dataset, test_dataset):
    assert len(train_dataset) == 8000
    assert len(test_dataset) == 2000
    assert len(load_mnist_arrays("train")[0]) == 8000
    assert len(load_mnist_arrays("test")[0]) == 2000


def test_per_digit_counts():
    _, train_labels = load_mnist_arrays("train")
    _, test_labels = load_mnist_arrays("test")
    assert np.bincount(train_labels, minlength=10).tolist() == [800] * 10
    test_counts = np.bincount(test_labels, minlength=10)
    assert len(test_counts) == 10
    assert test_counts.min() >= 63 and test_counts.max() <= 327
    assert test_counts.sum() == 2000


def test_stored_split_partitions_the_data():
    arrays = _load_npz()
    split, labels = arrays["split"], arrays["labels"]
    assert split.shape == labels.shape == (10000,)
    assert set(np.unique(split).tolist()) == {0, 1}
    # Ordered digit by digit; within each digit the first 800 samples are train, the rest test.
    assert np.all(np.diff(labels) >= 0)
    for digit in range(10):
        digit_split = split[labels == digit]
        assert np.all(digit_split[:800] == 0) and np.all(digit_split[800:] == 1)
    train_images, _ = load_mnist_arrays("train")
    test_images, _ = load_mnist_arrays("test")
    assert len(train_images) + len(test_images) == len(arrays["images"])
    np.testing.assert_array_equal(train_images, arrays["images"][split == 0])
    np.testing.assert_array_equal(test_images, arrays["images"][split == 1])


def test_arrays_dtype_and_range():
    for split in ("train", "test"):
        images, labels = load_mnist_arrays(split)
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
        assert labels.dtype == np.int64 and labels.shape == (len(images),)
        assert images.min() == 0 and images.max() == 255
        assert set(np.unique(labels).tolist()) == set(range(10))


def test_arrays_are_copies():
    images, labels = load_mnist_arrays("test")
    images[0] = 7
    labels[0] = 9
    fresh_images, fresh_labels = load_mnist_arrays("test")
    assert not np.all(fresh_images[0] == 7)
    assert fresh_labels[0] == 0


def test_dataset_rows(test_dataset):
    assert test_dataset.features["label"].names == [str(digit) for digit in range(10)]
    images, labels = load_mnist_arrays("test")
    for index in (0, 1234, 1999):
        row = test_dataset[index]
        assert isinstance(row["image"], Image.Image)
        assert row["image"].mode == "L" and row["image"].size == (28, 28)
        pixels = np.asarray(row["image"])
        assert pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, images[index])
        assert row["label"] == labels[index]
    assert sorted(set(test_dataset["label"])) == list(range(10))


@pytest.mark.parametrize("split", ["validation", "Train", "", "all"])
def test_bad_split_raises(split):
    with pytest.raises(ValueError, match="train"):
        load_mnist(split)
    with pytest.raises(ValueError, match="test"):
        load_mnist_arrays(split)


def test_mnist_to_tensor_pads_with_background():
    images, _ = load_mnist_arrays("test")
    tensor = mnist_to_tensor(images[:4])
    assert tensor.shape == (4, 1, 32, 32) and tensor.dtype == torch.float32
    assert tensor.min() >= -1 and tensor.max() <= 1
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.all(tensor[:, 0][:, border] == -1)
    expected = torch.from_numpy(images[:4]).float() / 127.5 - 1
    torch.testing.assert_close(tensor[:, 0, 2:30, 2:30], expected, rtol=0, atol=0)


def test_mnist_to_tensor_inputs_and_sizes(test_dataset):
    images, _ = load_mnist_arrays("test")
    from_pil = mnist_to_tensor([test_dataset[i]["image"] for i in range(3)])
    torch.testing.assert_close(from_pil, mnist_to_tensor(images[:3]), rtol=0, atol=0)
    assert mnist_to_tensor(images[0]).shape == (1, 1, 32, 32)
    assert mnist_to_tensor(images[:2], size=28).shape == (2, 1, 28, 28)
    small = mnist_to_tensor(images[:2], size=16)
    assert small.shape == (2, 1, 16, 16) and small.min() >= -1 and small.max() <= 1
    with pytest.raises(ValueError, match="uint8"):
        mnist_to_tensor(images[:2].astype(np.float32) / 255)


def test_pad_to_size():
    images = torch.zeros(2, 1, 28, 28)
    padded = pad_to_size(images, 33)
    assert padded.shape == (2, 1, 33, 33)
    assert padded[..., 2:30, 2:30].eq(0).all() and padded[..., 30:, :].eq(-1).all()
    with pytest.raises(ValueError):
        pad_to_size(images, 16)


def test_load_mnist_tensors_picks_digits_and_labels_in_the_given_order():
    images, labels = load_mnist_arrays("test")
    tensors, tensor_labels = load_mnist_tensors("test", [5, 0, 1999])
    assert torch.equal(tensors, mnist_to_tensor(images[[5, 0, 1999]]))
    assert tensor_labels.tolist() == labels[[5, 0, 1999]].tolist() and tensor_labels.dtype == torch.int64
    everything, _ = load_mnist_tensors("train", size=28)
    assert everything.shape == (8000, 1, 28, 28)
