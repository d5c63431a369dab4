"""Streamed training images (`--streaming`): a `datasets.IterableDataset` read shard by shard and never materialised,
decoded and converted as the map-style datasets are ([`ImageConversion`]).

[`load_streaming_dataset`] opens the stream (a Hub dataset, or a local folder of webdataset `.tar` shards, parquet or
image files); [`StreamedImages.hold_out`] takes the first readable images as the validation batch and leaves them out
of training; [`StreamedImages.for_process`] gives each training process its shuffled share of the shards
(`.shuffle(seed, buffer_size)`, then `datasets.distributed.split_dataset_by_node`). An image that cannot be read or
converted is named in a warning and left out (counted in the stream's state), never a crash.
"""

from __future__ import annotations

import hashlib
import logging

import torch

from .images import HeldOut, ImageConversion, check_columns, image_name, load_image_dataset

logger = logging.getLogger(__name__)

# How many items at the head of a stream may be unreadable before it is refused as unusable.
FIRST_ITEMS_TRIED = 20


class StreamedImages(torch.utils.data.IterableDataset):
    """The images of a `datasets.IterableDataset`, as `{"pixel_values": (C, H, W)}` items in [-1, 1].

    Stateful as `torchdata`'s `StatefulDataLoader` expects: [`state_dict`] is the stream's position after the last item
    yielded (`datasets`' own `IterableDataset.state_dict()`) with the count of images left out so far, and
    [`load_state_dict`] continues from it.

    Attributes:
        stream: the `datasets.IterableDataset`, its image column not decoded by `datasets`.
        image_column: the column holding the images.
        conversion: how an image becomes the UNet's input.
        held_out: keys ([`item_key`]) of items never yielded: the validation images.
        skipped: unreadable images left out in this pass (of this reader: each DataLoader worker counts its own).
    """

    def __init__(self, stream, image_column: str, conversion: ImageConversion, held_out: frozenset = frozenset()):
        self.stream = stream
        self.image_column = image_column
        self.conversion = conversion
        self.held_out = held_out
        self.skipped = 0
        self._starting_skipped = 0

    @property
    def channels(self) -> int:
        return self.conversion.channels

    @property
    def resolution(self) -> int:
        return self.conversion.resolution

    def name_of(self, example: dict, position: int) -> str:
        """Where an item comes from, for messages: its shard and file when the stream says, else its position."""
        shard = example.get("__url__")
        name = image_name(example[self.image_column], f"item {position}")
        return f"{shard}/{name}" if shard else name

    def item_key(self, example: dict) -> tuple:
        """What identifies an item whatever the order it comes in: its shard, its file and a hash of its bytes."""
        value = example[self.image_column]
        data = value.get("bytes") if isinstance(value, dict) else None
        digest = hashlib.sha1(data).hexdigest() if data else None
        return example.get("__url__"), image_name(value, ""), digest

    def convert(self, example: dict, position: int) -> dict[str, torch.Tensor]:
        """The item of `example`; a `ValueError` naming it when it cannot be read or converted."""
        return {"pixel_values": self.conversion(example[self.image_column], self.name_of(example, position))}

    def __iter__(self):
        self.skipped, self._starting_skipped = self._starting_skipped, 0
        for position, example in enumerate(self.stream):
            if self.held_out and self.item_key(example) in self.held_out:
                continue
            try:
                item = self.convert(example, position)
            except ValueError as error:
                self.skipped += 1
                logger.warning(f"Skipping it: {error} ({self.skipped} unreadable image(s) left out of this pass)")
                continue
            yield item

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for pass `epoch` (shard order and buffer, as `datasets` does), like a sampler's `set_epoch`."""
        self.stream.set_epoch(epoch)

    def state_dict(self) -> dict:
        return {"stream": self.stream.state_dict(), "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["stream"])
        self._starting_skipped = state.get("skipped", 0)

    def _with_stream(self, stream, held_out: frozenset | None = None) -> StreamedImages:
        return StreamedImages(
            stream, self.image_column, self.conversion, self.held_out if held_out is None else held_out
        )

    def for_process(self, rank: int, world_size: int, seed: int, shuffle_buffer_size: int) -> StreamedImages:
        """This process's share of the stream, shuffled: the shard order by `seed` and each pass's epoch, and the
        items through a buffer of `shuffle_buffer_size` (1: shard order only), then split by node (whole shards when
        their number divides by `world_size`, else every `world_size`-th item), so no two processes read an item
        twice in a pass. Accelerate must not shard it again (the training run prepares it for one process)."""
        from datasets.distributed import split_dataset_by_node

        stream = self.stream.shuffle(seed=seed, buffer_size=shuffle_buffer_size, max_buffer_input_shards=1)
        return self._with_stream(split_dataset_by_node(stream, rank=rank, world_size=world_size))

    def first_items(self, count: int) -> tuple[list[dict], list[tuple], list[str]]:
        """The first `count` readable items of the stream (in its stored order), their keys, and the problems of the
        unreadable ones met on the way (at most [`FIRST_ITEMS_TRIED`] of those are tried)."""
        items, keys, problems = [], [], []
        for position, example in enumerate(self.stream):
            if len(items) == count or len(problems) >= FIRST_ITEMS_TRIED:
                break
            try:
                items.append(self.convert(example, position))
            except ValueError as error:
                problems.append(str(error))
                continue
            keys.append(self.item_key(example))
        return items, keys, problems

    def check(self) -> None:
        """Convert the first readable image before training starts, so a stream the UNet cannot take fails at once,
        clearly (as `check_first_item` does for a map-style dataset)."""
        items, _, problems = self.first_items(1)
        if not items:
            first = problems[0] if problems else "the stream is empty"
            raise ValueError(
                f"The training stream's first images cannot be converted to the UNet's input ({self.channels} "
                f"channels, {self.resolution}x{self.resolution}): {first}"
            )

    def hold_out(self, count: int) -> HeldOut:
        """The first `count` readable images as a fixed validation batch, and the stream without them for training
        (every pass leaves them out, whatever the shuffle)."""
        items, keys, problems = self.first_items(count)
        for problem in problems:
            logger.warning(f"Skipping it for validation: {problem}")
        if len(items) < count:
            raise ValueError(
                f"Cannot hold out {count} validation images from the head of the stream: found {len(items)} readable "
                "ones; lower --num_validation_images or pass --validation_data_dir."
            )
        images = torch.stack([item["pixel_values"] for item in items])
        source = f"the first {count} readable images of the stream (left out of training)"
        return HeldOut(images=images, train_dataset=self._with_stream(self.stream, frozenset(keys)), source=source)


def resolve_image_column(features, image_column: str) -> str:
    """`image_column`, or the stream's only image column when the default "image" is absent (a webdataset folder's
    images are named by their extension: `png`, `jpg`); refuses a missing column naming the ones there are."""
    import datasets

    if features is None or image_column in features:
        return image_column
    images = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    if image_column == "image" and len(images) == 1:
        logger.info(f"Reading the images of column {images[0]!r} (the stream's only image column).")
        return images[0]
    check_columns(list(features), image_column)
    return image_column


def load_streaming_dataset(
    dataset_name: str | None,
    dataset_config_name: str | None,
    train_data_dir: str | None,
    image_column: str,
    conversion: ImageConversion,
    cache_dir: str | None = None,
) -> StreamedImages:
    """The images of a Hub dataset, a local dataset folder (webdataset `.tar` shards, parquet or image files: what
    `datasets.load_dataset` reads) or an image folder (`--train_data_dir`), streamed (`streaming=True`) and checked by
    converting the first readable image."""
    import datasets

    stream = load_image_dataset(dataset_name, dataset_config_name, train_data_dir, cache_dir, streaming=True)
    image_column = resolve_image_column(stream.features, image_column)
    if isinstance((stream.features or {}).get(image_column), datasets.Image):
        stream = stream.cast_column(image_column, datasets.Image(decode=False))
    images = StreamedImages(stream, image_column, conversion)
    images.check()
    return images
