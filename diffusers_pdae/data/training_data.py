"""Training datasets: the bundled MNIST split, a Hub dataset, or a local image folder, as `(C, H, W)` tensors."""

from __future__ import annotations

import io
import logging
import os
import random
from dataclasses import dataclass

import PIL.Image
import torch
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from ..bundled.mnist import load_mnist_arrays, mnist_to_tensor
from ..image_utils import images_to_tensor

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


def image_name(value, fallback: str) -> str:
    """The file an image value (a `datasets.Image(decode=False)` dict or a PIL image) comes from, for messages."""
    path = value.get("path") if isinstance(value, dict) else getattr(value, "filename", None)
    return path or fallback


@dataclass
class ImageConversion:
    """How a training image becomes the UNet's input, shared by the map-style and the streamed datasets.

    Images larger than `resolution` are cropped to a square (centre, or random unless `center_crop`) and resized;
    smaller ones are padded with black; modes, bit depths and transparency follow `images_to_tensor`. `random_flip`
    flips horizontally with p = 0.5.
    """

    channels: int
    resolution: int
    center_crop: bool = True
    random_flip: bool = False

    def decode(self, value, name: str) -> PIL.Image.Image:
        """The image of `value` (a `{"bytes", "path"}` dict or a PIL image), fully decoded; a `ValueError` naming
        `name` if it cannot be read."""
        try:
            if isinstance(value, dict):
                source = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
                value = PIL.Image.open(source)
            value.load()
        except (OSError, SyntaxError, ValueError, TypeError) as error:
            raise ValueError(f"Cannot read training image {name}: {error}") from error
        return value

    def _crop_square(self, image: PIL.Image.Image) -> PIL.Image.Image:
        width, height = image.size
        side = min(width, height)
        if side <= self.resolution or self.center_crop:
            return image
        left, top = random.randint(0, width - side), random.randint(0, height - side)
        return image.crop((left, top, left + side, top + side))

    def __call__(self, value, name: str) -> torch.Tensor:
        """`(channels, resolution, resolution)` in [-1, 1]; a `ValueError` naming `name` if the image cannot be read
        or converted."""
        image = self._crop_square(self.decode(value, name))
        try:
            pixel_values = images_to_tensor(image, self.channels, self.resolution)[0]
        except ValueError as error:
            raise ValueError(f"Training image {name}: {error}") from error
        if self.random_flip and random.random() < 0.5:
            pixel_values = pixel_values.flip(-1)
        return pixel_values


def check_columns(column_names: list[str], image_column: str, label_column: str | None = None) -> None:
    """Refuse an image (or label) column the dataset lacks, naming its columns and the flag to pass."""
    for column, flag in ((image_column, "--image_column"), (label_column, "--label_column")):
        if column is not None and column not in column_names:
            raise ValueError(
                f"Column {column!r} not found; the dataset has columns {column_names}. Pass the right one with {flag}."
            )


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
    ):
        check_columns(dataset.column_names, image_column, label_column)
        import datasets

        if isinstance(dataset.features.get(image_column), datasets.Image):
            dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.dataset = dataset
        self.image_column = image_column
        self.conversion = ImageConversion(channels, resolution, center_crop, random_flip)
        self.channels = channels
        self.resolution = resolution
        self.label_column = label_column

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
        return item


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


def load_image_dataset(
    dataset_name: str | None,
    dataset_config_name: str | None,
    train_data_dir: str | None,
    cache_dir: str | None,
    split: str = "train",
    streaming: bool = False,
):
    """The `datasets.Dataset` (one split) of a Hub dataset or of a local image folder, checked for existence; a
    `datasets.IterableDataset` with `streaming`."""
    import datasets

    if dataset_name is not None:
        return datasets.load_dataset(
            dataset_name, dataset_config_name, cache_dir=cache_dir, split=split, streaming=streaming
        )
    if not os.path.isdir(train_data_dir):
        raise FileNotFoundError(f"--train_data_dir {train_data_dir} is not a folder.")
    files = [name for _, _, names in os.walk(train_data_dir) for name in names]
    if not files:
        raise ValueError(f"--train_data_dir {train_data_dir} holds no files.")
    readable = image_extensions()
    if not any(os.path.splitext(name)[1].lower() in readable for name in files):
        found = sorted({os.path.splitext(name)[1].lower() or "(none)" for name in files})
        raise ValueError(
            f"--train_data_dir {train_data_dir} holds {len(files)} files but no image (extensions found: "
            f"{', '.join(found[:10])}); put PNG, JPEG or other image files there, in subfolders if you like."
        )
    return datasets.load_dataset(
        "imagefolder", data_dir=train_data_dir, cache_dir=cache_dir, split=split, streaming=streaming
    )


def image_extensions() -> set[str]:
    """The file extensions `datasets`' imagefolder reads as images."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return {extension.lower() for extension in ImageFolder.EXTENSIONS}


GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def image_geometry(dataset, image_column: str) -> tuple[int, int]:
    """`(channels, shorter side)` of a dataset's (or a stream's) first image: 1 channel for grey modes, else 3."""
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        from .streaming import resolve_image_column

        image = next(iter(dataset))[resolve_image_column(dataset.features, image_column)]
    else:
        check_columns(dataset.column_names, image_column)
        image = dataset[0][image_column]
    return (1 if image.mode in GREY_MODES else 3), min(image.size)


def load_training_dataset(
    dataset_name: str | None,
    dataset_config_name: str | None,
    train_data_dir: str | None,
    image_column: str,
    channels: int,
    resolution: int,
    center_crop: bool = True,
    random_flip: bool = False,
    cache_dir: str | None = None,
    check_images: bool = True,
    streaming: bool = False,
) -> Dataset:
    """The training images the flags ask for: a Hub dataset, an image folder, or (neither given) bundled MNIST.

    With `check_images` every image is decoded once before training and unreadable ones are left out, named (see
    [`skip_unreadable_images`]); without it only the first is tried, and a bad one later stops the run naming its file.
    With `streaming` the images are a [`~diffusers_pdae.data.streaming.StreamedImages`] stream, never materialised
    (an unreadable image is named and left out when the stream reaches it).
    """
    if dataset_name is None and train_data_dir is None:
        if channels != 1:
            raise ValueError(
                f"The bundled MNIST digits have 1 channel but the UNet expects {channels}; pass --dataset_name or "
                "--train_data_dir with images for this UNet."
            )
        return bundled_mnist_dataset(resolution)
    if streaming:
        from .streaming import load_streaming_dataset

        conversion = ImageConversion(channels, resolution, center_crop, random_flip)
        return load_streaming_dataset(
            dataset_name, dataset_config_name, train_data_dir, image_column, conversion, cache_dir
        )
    dataset = load_image_dataset(dataset_name, dataset_config_name, train_data_dir, cache_dir)
    images = ImageFileDataset(dataset, image_column, channels, resolution, center_crop, random_flip)
    return skip_unreadable_images(images) if check_images else check_first_item(images)


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


@dataclass
class HeldOut:
    """A fixed validation batch and the rest of the data for training."""

    images: torch.Tensor  # (n, C, H, W) in [-1, 1]
    train_dataset: Dataset
    source: str = ""  # where the images come from, for the log


def validation_images(dataset: Dataset, num_images: int, keep_rest: bool = True) -> HeldOut:
    """Hold out `num_images` items, evenly spaced over the dataset, as a fixed validation batch; train on the rest.

    With `keep_rest=False` (validation images from a folder of their own) the items are only read, and the training
    set is empty; the caller trains on its own data. A stream holds out its first readable images instead
    ([`~diffusers_pdae.data.streaming.StreamedImages.hold_out`]).
    """
    from .streaming import StreamedImages

    if isinstance(dataset, StreamedImages):
        return dataset.hold_out(num_images)
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


def dataset_size(dataset) -> int | None:
    """How many training examples `dataset` holds, for the log; None for a stream, whose size is unknown."""
    from .streaming import StreamedImages

    return None if isinstance(dataset, StreamedImages) else len(dataset)
