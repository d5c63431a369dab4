"""What the map-style and the streamed training data share: how an image becomes the model's input, where an image
comes from (for messages), the dataset sources `datasets` reads, and the held-out validation batch."""

from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass

import PIL.Image
import torch
from torch.utils.data import Dataset

from ..image_utils import images_to_tensor
from .shards import DataFiles, check_tar_shards, image_extensions


def image_name(value, fallback: str) -> str:
    """The file an image value (a `datasets.Image(decode=False)` dict, a PIL image or a path) comes from, for
    messages."""
    if isinstance(value, str):
        return value
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
        """The image of `value` (a `{"bytes", "path"}` dict, a PIL image, or, from a column of another type, encoded
        image bytes or a path to an image file), fully decoded; a `ValueError` naming `name` if it cannot be read."""
        if not isinstance(value, (dict, bytes, bytearray, str, PIL.Image.Image)):
            raise ValueError(
                f"Cannot read training image {name}: the image column holds a {type(value).__name__} ({value!r:.40}), "
                "not an image, image bytes or a path. Pass the column that holds the images with --image_column."
            )
        if isinstance(value, str) and not os.path.isfile(value):
            raise ValueError(
                f"Cannot read training image {name}: the image column holds the text {value!r:.80}, which is no image "
                "file (a path must be absolute, or relative to the working directory)."
            )
        try:
            if isinstance(value, (dict, bytes, bytearray)):
                data = value.get("bytes") if isinstance(value, dict) else value
                value = PIL.Image.open(io.BytesIO(data) if data else value["path"])
            elif isinstance(value, str):
                value = PIL.Image.open(value)
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


def check_columns(
    column_names: list[str], image_column: str, label_column: str | None = None, caption_column: str | None = None
) -> None:
    """Refuse an image (label, caption) column the dataset lacks, naming its columns and the flag to pass."""
    named = ((image_column, "--image_column"), (label_column, "--label_column"), (caption_column, "--caption_column"))
    for column, flag in named:
        if column is not None and column not in column_names:
            raise ValueError(
                f"Column {column!r} not found; the dataset has columns {column_names}. Pass the right one with {flag}."
            )


def load_image_dataset(
    dataset_name: str | None,
    dataset_config_name: str | None,
    train_data_dir: str | None,
    cache_dir: str | None,
    split: str = "train",
    streaming: bool = False,
    folder_flag: str = "--train_data_dir",
):
    """The `datasets.Dataset` (one split) of a Hub dataset or of a local image folder, checked for existence; a
    `datasets.IterableDataset` with `streaming`."""
    import datasets

    if dataset_name is not None:
        if os.path.isdir(dataset_name):  # a local folder: something to read, and whole shards
            check_dataset_folder(DataFiles.of(dataset_name), "--dataset_name")
        return datasets.load_dataset(
            dataset_name, dataset_config_name, cache_dir=cache_dir, split=split, streaming=streaming
        )
    if not os.path.isdir(train_data_dir):
        raise FileNotFoundError(f"{folder_flag} {train_data_dir} is not a folder.")
    files = [name for _, _, names in os.walk(train_data_dir) for name in names]
    if not files:
        raise ValueError(f"{folder_flag} {train_data_dir} holds no files.")
    readable = image_extensions()
    if not any(os.path.splitext(name)[1].lower() in readable for name in files):
        found = sorted({os.path.splitext(name)[1].lower() or "(none)" for name in files})
        raise ValueError(
            f"{folder_flag} {train_data_dir} holds {len(files)} files but no image (extensions found: "
            f"{', '.join(found[:10])}); put PNG, JPEG or other image files there, in subfolders if you like."
        )
    return datasets.load_dataset(
        "imagefolder", data_dir=train_data_dir, cache_dir=cache_dir, split=split, streaming=streaming
    )


def check_dataset_folder(files: DataFiles, flag: str) -> None:
    """A local dataset folder holds data files `datasets` reads, and its webdataset shards are whole; a
    `ValueError` naming `flag` and the folder (or the damaged shard) otherwise."""
    if not files.sizes:
        found = sorted({os.path.splitext(name)[1].lower() or "(none)" for _, _, names in os.walk(files.folder)
                        for name in names})  # fmt: skip
        what = f"files of other kinds only ({', '.join(found[:10])})" if found else "no files"
        raise ValueError(
            f"{flag} {files.folder} holds {what}: put webdataset .tar shards, parquet files or images there (a local "
            "folder is read by datasets.load_dataset), or pass a Hub dataset id."
        )
    check_tar_shards(files, flag)


GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclass
class HeldOut:
    """A fixed validation batch and the rest of the data for training."""

    images: torch.Tensor  # (n, C, H, W) in [-1, 1]
    train_dataset: Dataset
    source: str = ""  # where the images come from, for the log
