"""Streamed training images (`--streaming`): a `datasets.IterableDataset` read shard by shard and never materialised,
decoded and converted as the map-style datasets are ([`ImageConversion`]).

[`load_streaming_dataset`] opens the stream (a Hub dataset, or a local folder of webdataset `.tar` shards, parquet or
image files); [`StreamedImages.hold_out`] takes the first readable images as the validation batch and leaves them out
of training; [`StreamedImages.for_process`] gives each training process its shuffled share of the shards
(`.shuffle(seed, buffer_size)`, then `datasets.distributed.split_dataset_by_node`). An image that cannot be read or
converted is named in a warning and left out (counted in the stream's state), never a crash.

A share's position is exact whatever the shuffle buffer: a pass's order depends only on the seed, the pass and the
share, so a resumed pass is read again from its start and the examples already taken are passed over unconverted
(`datasets` keeps no buffer content in its state). With a buffer of 1, `datasets`' own state finds the place
instead, reading only the current shard again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import torch

from .images import HeldOut, ImageConversion, check_columns, image_name, load_image_dataset
from .shards import DataFiles

logger = logging.getLogger(__name__)

# How many items at the head of a stream may be unreadable before it is refused as unusable.
FIRST_ITEMS_TRIED = 20


@dataclass(frozen=True)
class ProcessShare:
    """Which part of a stream a training process reads, and how each pass of it is shuffled."""

    rank: int
    world_size: int
    seed: int
    shuffle_buffer_size: int

    def of(self, stream, epoch: int, shuffle_buffer_size: int | None = None):
        """This share of `stream` in pass `epoch`: the shard order shuffled by the seed and the pass, the items
        through a buffer (`shuffle_buffer_size`, else the share's own), then split by node."""
        from datasets.distributed import split_dataset_by_node

        buffer_size = shuffle_buffer_size or self.shuffle_buffer_size
        shuffled = stream.shuffle(seed=self.seed, buffer_size=buffer_size, max_buffer_input_shards=1)
        share = split_dataset_by_node(shuffled, rank=self.rank, world_size=self.world_size)
        share.set_epoch(epoch)
        return share


class StreamedImages(torch.utils.data.IterableDataset):
    """The images of a `datasets.IterableDataset`, as `{"pixel_values": (C, H, W)}` items in [-1, 1].

    Stateful as `torchdata`'s `StatefulDataLoader` expects: [`state_dict`] is the position after the last item yielded
    (the pass, how many of its examples were taken, the buffer it is shuffled with, `datasets`' own state when that
    buffer is 1) with the count of images left out so far, and [`load_state_dict`] continues the same pass from it,
    with the buffer it began with.

    Attributes:
        stream: the `datasets.IterableDataset`, its image column not decoded by `datasets`.
        image_column: the column holding the images.
        conversion: how an image becomes the UNet's input.
        held_out: keys ([`item_key`]) of items never yielded: the validation images.
        skipped: unreadable images left out in this pass (of this reader: each DataLoader worker counts its own).
        share: the process's share and shuffle ([`for_process`]); None for the whole stream in its stored order.
        files: the data files of a local folder's stream (None for a Hub stream), which its checkpoints record.
        consumed: examples of the pass taken from the stream so far (held-out and unreadable ones included).
    """

    def __init__(
        self,
        stream,
        image_column: str,
        conversion: ImageConversion,
        held_out: frozenset = frozenset(),
        share: ProcessShare | None = None,
        files: DataFiles | None = None,
    ):
        self.stream = stream
        self.files = files
        self.image_column = image_column
        self.conversion = conversion
        self.held_out = held_out
        self.share = share
        self.skipped = self.consumed = 0
        # The pass, in shared memory: a DataLoader may start its workers before `set_epoch` (as `datasets` shares it).
        self._shared_epoch = torch.zeros((), dtype=torch.long).share_memory_()
        self._pass_buffer_size = share.shuffle_buffer_size if share is not None else None
        self._current = None  # the datasets stream of the pass being read
        self._resume: dict | None = None  # a loaded state, applied when the next pass starts

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
        resume, self._resume = self._resume, None
        stream, start, replay = self._open_pass(resume)
        self.skipped = resume.get("skipped", 0) if resume else 0
        self.consumed = start
        for index, example in enumerate(stream):
            position = index if replay else start + index
            self.consumed = position + 1
            if position < start:  # taken before the checkpoint: read again, not converted
                continue
            if self.held_out and self.item_key(example) in self.held_out:
                continue
            try:
                item = self.convert(example, position)
            except ValueError as error:
                self.skipped += 1
                logger.warning(f"Skipping it: {error} ({self.skipped} unreadable image(s) left out of this pass)")
                continue
            yield item

    def _open_pass(self, resume: dict | None) -> tuple:
        """The datasets stream of the current pass, how many of its examples were taken before (`resume`), and
        whether they must be read again (`True`) or `datasets` has found the place itself (`False`)."""
        if resume is not None and resume.get("epoch", self._epoch) != self._epoch:
            resume = None  # the position of another pass
        if self.share is None:
            stream = self.stream
        else:
            self._pass_buffer_size = (resume or {}).get("shuffle_buffer_size", self.share.shuffle_buffer_size)
            stream = self.share.of(self.stream, self._epoch, self._pass_buffer_size)
        self._current = stream
        if resume is None:
            return stream, 0, False
        consumed = resume.get("consumed", 0)
        # datasets' own position, exact without a buffer (a worker saved before it read anything has none)
        if "stream" in resume and ("consumed" not in resume or self._pass_buffer_size == 1):
            stream.load_state_dict(resume["stream"])
            return stream, consumed, False
        return stream, consumed, True

    @property
    def _epoch(self) -> int:
        return int(self._shared_epoch)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for pass `epoch` (shard order and buffer, as `datasets` does), like a sampler's `set_epoch`."""
        self._shared_epoch.fill_(epoch)
        if self.share is None:
            self.stream.set_epoch(epoch)

    def state_dict(self) -> dict:
        if self._resume is not None:  # loaded, not yet read from
            return dict(self._resume)
        state = {
            "epoch": self._epoch,
            "consumed": self.consumed,
            "skipped": self.skipped,
            "shuffle_buffer_size": self._pass_buffer_size,
        }
        if self._current is not None and self._pass_buffer_size in (None, 1):
            state["stream"] = self._current.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state)

    def _with_stream(self, stream, held_out: frozenset | None = None, share: ProcessShare | None = None):
        held_out = self.held_out if held_out is None else held_out
        return StreamedImages(stream, self.image_column, self.conversion, held_out, share, self.files)

    def for_process(self, rank: int, world_size: int, seed: int, shuffle_buffer_size: int) -> StreamedImages:
        """This process's share of the stream, shuffled: the shard order by `seed` and each pass's epoch, and the
        items through a buffer of `shuffle_buffer_size` (1: shard order only), then split by node (whole shards when
        their number divides by `world_size`, else every `world_size`-th item), so no two processes read an item
        twice in a pass. Accelerate must not shard it again (the training run prepares it for one process)."""
        return self._with_stream(self.stream, share=ProcessShare(rank, world_size, seed, shuffle_buffer_size))

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
    folder = dataset_name if dataset_name is not None and os.path.isdir(dataset_name) else train_data_dir
    images = StreamedImages(stream, image_column, conversion, files=None if folder is None else DataFiles.of(folder))
    images.check()
    return images
