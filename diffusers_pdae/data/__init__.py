"""Training data for the example scripts: a Hub dataset, a local image folder, or the bundled MNIST digits, read
map-style (`training_data`) or streamed (`streaming`); `sources` picks between them."""

from .images import HeldOut, ImageConversion, load_image_dataset
from .sources import dataset_size, image_geometry, is_stream, load_training_dataset, validation_images
from .streaming import StreamedImages, load_streaming_dataset
from .training_data import (
    ImageFileDataset,
    TensorImageDataset,
    bundled_mnist_dataset,
    check_first_item,
    skip_unreadable_images,
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
    "is_stream",
    "load_image_dataset",
    "load_streaming_dataset",
    "load_training_dataset",
    "skip_unreadable_images",
    "validation_images",
]
