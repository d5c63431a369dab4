"""Training data for the example scripts: a Hub dataset, a local image folder, or the bundled MNIST digits."""

from .streaming import StreamedImages, load_streaming_dataset
from .training_data import (
    HeldOut,
    ImageConversion,
    ImageFileDataset,
    TensorImageDataset,
    bundled_mnist_dataset,
    check_first_item,
    dataset_size,
    image_geometry,
    load_image_dataset,
    load_training_dataset,
    skip_unreadable_images,
    validation_images,
)

__all__ = [
    "HeldOut",
    "ImageConversion",
    "ImageFileDataset",
    "StreamedImages",
    "TensorImageDataset",
    "bundled_mnist_dataset",
    "check_first_item",
    "dataset_size",
    "image_geometry",
    "load_image_dataset",
    "load_streaming_dataset",
    "load_training_dataset",
    "skip_unreadable_images",
    "validation_images",
]
