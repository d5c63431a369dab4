"""Training data for the example scripts: a Hub dataset, a local image folder, or the bundled MNIST digits."""

from .training_data import (
    HeldOut,
    ImageFileDataset,
    TensorImageDataset,
    bundled_mnist_dataset,
    check_first_item,
    image_geometry,
    load_image_dataset,
    load_training_dataset,
    skip_unreadable_images,
    validation_images,
)

__all__ = [
    "HeldOut",
    "ImageFileDataset",
    "TensorImageDataset",
    "bundled_mnist_dataset",
    "check_first_item",
    "image_geometry",
    "load_image_dataset",
    "load_training_dataset",
    "skip_unreadable_images",
    "validation_images",
]
