"""Map-style training datasets: the bundled MNIST split, or the images of a `datasets.Dataset` (a Hub dataset or a
local image folder), as `(C, H, W)` tensors."""

from __future__ import annotations

import logging

import PIL.Image
import torch
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from ..bundled.mnist import load_mnist_arrays, mnist_to_tensor
from .images import HeldOut, ImageConversion, check_columns, image_name

logger = logging.getLogger(__name__)


class TensorImageDataset(Dataset):
    """Images already in the model's space, `(N, C, H, W)` in [-1, 1], with optional integer labels `(N,)`.

    Items are `{"pixel_values": (C, H, W)}`, plus `"class_labels"` (a long scalar) when labels are given.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"pixel_values": self.images[index]}
        if self.labels is not None:
            item["class_labels"] = self.labels[index]
        return item


def bundled_mnist_dataset(resolution: int = 32, split: str = "train") -> TensorImageDataset:
    """The bundled MNIST split as `(1, resolution, resolution)` tensors (28x28 digits padded) with digit labels."""
    images, labels = load_mnist_arrays(split)
    return TensorImageDataset(mnist_to_tensor(images, size=resolution), torch.from_numpy(labels))


class ImageFileDataset(Dataset):
    """A `datasets.Dataset` with an image column, converted on the fly to the UNet's channels and size.

    The conversion is [`ImageConversion`]'s. Images are decoded here (not by `datasets`), so an unreadable one is
    named by its file; [`skip_unreadable_images`] finds them all before training.
    """

    def __init__(
        self,
        dataset,
        image_column: str,
        channels: int,
        resolution: int,
        center_crop: bool = True,
        random_flip: bool = False,
        label_column: str | None = None,
        caption_column: str | None = None,
    ):
        check_columns(dataset.column_names, image_column, label_column, caption_column)
        import datasets

        if isinstance(dataset.features.get(image_column), datasets.Image):
            dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.dataset = dataset
        self.image_column = image_column
        self.conversion = ImageConversion(channels, resolution, center_crop, random_flip)
        self.channels = channels
        self.resolution = resolution
        self.label_column = label_column
        self.caption_column = caption_column

    def __len__(self) -> int:
        return len(self.dataset)

    def name_of(self, index: int) -> str:
        """The file (or row) an item comes from, for messages."""
        return image_name(self.dataset[index][self.image_column], f"row {index}")

    def load_image(self, index: int) -> PIL.Image.Image:
        """The item's image, fully decoded; a `ValueError` naming the file if it cannot be read."""
        return self.conversion.decode(self.dataset[index][self.image_column], self.name_of(index))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.dataset[index]
        item = {
            "pixel_values": self.conversion(row[self.image_column], image_name(row[self.image_column], f"row {index}"))
        }
        if self.label_column is not None:
            item["class_labels"] = torch.as_tensor(row[self.label_column])
        if self.caption_column is not None:
            item["caption"] = caption_text(
                row[self.caption_column], image_name(row[self.image_column], f"row {index}")
            )
        return item


def caption_text(value, name: str) -> str:
    """A caption cell as text: a string, or the first of a list of strings (datasets with several captions per
    image); None counts as the empty caption. A `ValueError` naming the image otherwise."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"The caption of training image {name} is a {type(value).__name__}, not text.")
    return value


def skip_unreadable_images(dataset: ImageFileDataset) -> Dataset:
    """Decode and convert every image once, before training, and leave out those that fail.

    A truncated or corrupt file, an empty image or one the UNet cannot take would otherwise stop the run at whatever
    step first draws it. Each one left out is named in a warning, with the count at the end.

    Returns:
        `dataset` itself when every image is fine, else a `Subset` of the readable ones.

    Raises:
        `ValueError`: if the dataset is empty or no image can be used.
    """
    if len(dataset) == 0:
        raise ValueError("The training dataset is empty.")
    readable, problems = [], []
    for index in tqdm(range(len(dataset)), desc="Checking training images", leave=False):
        try:
            dataset[index]
        except ValueError as error:
            problems.append(str(error))
        else:
            readable.append(index)
    if not readable:
        raise ValueError(
            f"None of the {len(dataset)} training images can be converted to the UNet's input ({dataset.channels} "
            f"channels, {dataset.resolution}x{dataset.resolution}); the first problem: {problems[0]}"
        )
    if not problems:
        return dataset
    for problem in problems[:20]:
        logger.warning(f"Skipping it: {problem}")
    logger.warning(
        f"Left out {len(problems)} of {len(dataset)} training images that cannot be read or converted"
        + (" (the first 20 are named above)." if len(problems) > 20 else " (named above).")
    )
    return Subset(dataset, readable)


def check_first_item(dataset: ImageFileDataset) -> ImageFileDataset:
    """Convert the first image before training starts, so a dataset the UNet cannot take fails at once, clearly."""
    if len(dataset) == 0:
        raise ValueError("The training dataset is empty.")
    try:
        pixel_values = dataset[0]["pixel_values"]
    except ValueError as error:
        raise ValueError(
            f"The training images cannot be converted to the UNet's input ({dataset.channels} channels, "
            f"{dataset.resolution}x{dataset.resolution}): {error}"
        ) from error
    expected = (dataset.channels, dataset.resolution, dataset.resolution)
    if tuple(pixel_values.shape) != expected:
        raise ValueError(f"Training images convert to shape {tuple(pixel_values.shape)}, the UNet needs {expected}.")
    return dataset


def hold_out_evenly(dataset: Dataset, num_images: int, keep_rest: bool = True) -> HeldOut:
    """Hold out `num_images` items, evenly spaced over a map-style dataset, as a fixed validation batch; train on the
    rest. With `keep_rest=False` (validation images from a folder of their own) the items are only read, and the
    training set is empty; the caller trains on its own data."""
    if keep_rest and not 0 < num_images < len(dataset):
        raise ValueError(
            f"Cannot hold out {num_images} validation images from a training set of {len(dataset)}; lower "
            "--num_validation_images or pass --validation_data_dir."
        )
    num_images = min(num_images, len(dataset))
    held_out = [i * len(dataset) // num_images for i in range(num_images)]
    images = torch.stack([dataset[i]["pixel_values"] for i in held_out])
    kept = sorted(set(range(len(dataset))) - set(held_out)) if keep_rest else []
    return HeldOut(images, Subset(dataset, kept), f"{num_images} of the {len(dataset)} training images")
