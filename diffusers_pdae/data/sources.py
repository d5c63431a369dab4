"""The training data a script asks for, map-style or streamed, and the few things a script asks of either: the
held-out validation batch, the size (None for a stream) and the images' geometry. A stream is a
`torch.utils.data.IterableDataset` ([`StreamedImages`]); everything else here is map-style."""

from __future__ import annotations

from torch.utils.data import Dataset, IterableDataset

from .images import GREY_MODES, HeldOut, ImageConversion, check_columns, load_image_dataset
from .streaming import load_streaming_dataset, resolve_image_column
from .training_data import (
    ImageFileDataset,
    bundled_mnist_dataset,
    check_first_item,
    hold_out_evenly,
    skip_unreadable_images,
)


def is_stream(dataset) -> bool:
    """Whether training data is streamed (an iterable dataset, read in order, of unknown size) or map-style."""
    return isinstance(dataset, IterableDataset)


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
    caption_column: str | None = None,
    folder_flag: str = "--train_data_dir",
) -> Dataset:
    """The training images the flags ask for: a Hub dataset, an image folder, or (neither given) bundled MNIST.

    With `check_images` every image is decoded once before training and unreadable ones are left out, named (see
    [`skip_unreadable_images`]); without it only the first is tried, and a bad one later stops the run naming its file.
    With `streaming` the images are a [`~diffusers_pdae.data.streaming.StreamedImages`] stream, never materialised
    (an unreadable image is named and left out when the stream reaches it). With `caption_column` each item also has
    its `"caption"` (map-style data only). `folder_flag` names `train_data_dir` in messages (`--validation_data_dir`
    when it is that folder).
    """
    if caption_column is not None and (streaming or (dataset_name is None and train_data_dir is None)):
        where = "a stream (--streaming)" if streaming else "the bundled MNIST digits (use --digit_captions)"
        raise ValueError(f"--caption_column cannot be read from {where}; it reads a dataset's text column.")
    if dataset_name is None and train_data_dir is None:
        if channels != 1:
            raise ValueError(
                f"The bundled MNIST digits have 1 channel but the UNet expects {channels}; pass --dataset_name or "
                "--train_data_dir with images for this UNet."
            )
        return bundled_mnist_dataset(resolution)
    if streaming:
        conversion = ImageConversion(channels, resolution, center_crop, random_flip)
        return load_streaming_dataset(
            dataset_name, dataset_config_name, train_data_dir, image_column, conversion, cache_dir
        )
    dataset = load_image_dataset(dataset_name, dataset_config_name, train_data_dir, cache_dir, folder_flag=folder_flag)
    images = ImageFileDataset(
        dataset, image_column, channels, resolution, center_crop, random_flip, caption_column=caption_column
    )
    return skip_unreadable_images(images) if check_images else check_first_item(images)


def validation_images(dataset: Dataset, num_images: int, keep_rest: bool = True) -> HeldOut:
    """Hold out `num_images` items as a fixed validation batch and train on the rest: evenly spaced over a map-style
    dataset ([`hold_out_evenly`]; with `keep_rest=False` they are only read), the first readable images of a stream
    ([`~diffusers_pdae.data.streaming.StreamedImages.hold_out`])."""
    if is_stream(dataset):
        return dataset.hold_out(num_images)
    return hold_out_evenly(dataset, num_images, keep_rest)


def dataset_size(dataset) -> int | None:
    """How many training examples `dataset` holds, for the log; None for a stream, whose size is unknown."""
    return None if is_stream(dataset) else len(dataset)


def image_geometry(dataset, image_column: str) -> tuple[int, int]:
    """`(channels, shorter side)` of a dataset's (or a stream's) first image: 1 channel for grey modes, else 3."""
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        image = next(iter(dataset))[resolve_image_column(dataset.features, image_column)]
    else:
        check_columns(dataset.column_names, image_column)
        image = dataset[0][image_column]
    return (1 if image.mode in GREY_MODES else 3), min(image.size)
