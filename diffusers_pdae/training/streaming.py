"""Training on a stream (`--streaming`): each process's shuffled share of a `datasets.IterableDataset`, a stateful
DataLoader over it, passes that end together on every process, and the stream's position in each checkpoint.

- Sharding: [`StreamedImages.for_process`] splits the stream by node (`datasets.distributed.split_dataset_by_node`),
  and the DataLoader is prepared for *one* process (Accelerate's `prepare_data_loader` with `num_processes=1`,
  `dispatch_batches=False`): Accelerate's own sharding of an iterable dataset (`IterableDatasetShard`, or process 0
  reading and dispatching every batch) would split it a second time. DataLoader workers split each process's shards
  among themselves (`datasets` does it).
- Passes: a process's share can run out a batch before another's; a pass ends on every process as soon as one of them
  has yielded its last batch (one small all-reduce per batch), so that all take the same optimiser steps, and no image
  is read twice in a pass. Gradient accumulation counts batches across passes (`sync_with_dataloader=False`).
- Resume: `torchdata`'s `StatefulDataLoader` (Accelerate's `use_stateful_dataloader`) records, per worker, the
  position of the stream ([`StreamedImages.state_dict`]: the examples of the pass taken so far) after the last batch
  the loop trained on, not after what the workers prefetched; each checkpoint keeps it as `stream_state_<rank>.json`.
  A resumed pass continues exactly, whatever the shuffle buffer; one that has nothing left ends, and the next begins.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader

from ..data.shards import DataFiles
from ..data.streaming import StreamedImages
from ..import_utils import require
from .accelerator import compiles
from .config import TrainingConfig

logger = logging.getLogger(__name__)


def _number(value):
    """JSON for the NumPy integers a `datasets` state may hold."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"A stream state holds a {type(value).__name__}, which JSON cannot store.")


STREAM_FILES = "stream_files.json"


def stream_state_file(folder: str, process_index: int) -> str:
    return os.path.join(folder, f"stream_state_{process_index}.json")


class StreamPosition:
    """A process's stream: its DataLoader, the pass it is in, and its position, saved with each checkpoint.

    Attributes:
        dataloader: the prepared, stateful DataLoader of this process's share.
        epoch: the pass over the stream the loop is in (or resumes).
        pass_over: whether the batch last yielded ended the pass (on some process).
        resumed: whether the next pass to read continues one a checkpoint interrupted.
        files: a local folder's data files ([`DataFiles`]), recorded in each checkpoint (`stream_files.json`).
        exact: False when a resume could not continue the interrupted pass (the files changed since).
    """

    def __init__(self, accelerator: Accelerator, dataloader, num_workers: int, files: DataFiles | None = None):
        self.accelerator, self.dataloader, self.num_workers, self.files = accelerator, dataloader, num_workers, files
        self.epoch, self.pass_over, self.resumed, self.exact = 0, False, False, True

    def batches(self, epoch: int) -> Iterator[dict]:
        """The batches of pass `epoch`, ending on every process when one has yielded its last. A resumed pass with
        nothing left simply ends (the loop goes on with the next pass); a whole pass without a batch is refused."""
        accelerator = self.accelerator
        self.epoch, self.pass_over, yielded = epoch, False, 0
        resumed, self.resumed = self.resumed, False
        iterator = iter(self.dataloader)
        while not self.pass_over:
            batch = next(iterator, None)
            flags = torch.tensor(
                [batch is None, batch is None or self.dataloader.end_of_dataloader], dtype=torch.float
            )
            if accelerator.num_processes > 1:
                flags = accelerator.reduce(flags.to(accelerator.device), reduction="max").cpu()
            if flags[0]:  # some process has nothing left: the pass is over, this batch is not trained on
                self.pass_over = True
                break
            self.pass_over = bool(flags[1])
            yielded += 1
            yield batch
        self.dataloader.end()  # a pass ended early leaves the loader registered with Accelerate's gradient state
        if not yielded and resumed:
            logger.info(
                f"Pass {epoch} over the stream had nothing left after the checkpoint; pass {epoch + 1} begins."
            )
        elif not yielded:
            raise ValueError(
                f"Pass {epoch} over the stream yielded no batch on some process: its share of the stream holds no "
                f"readable image ({accelerator.num_processes} process(es), --dataloader_num_workers "
                f"{self.num_workers}). Check the data (unreadable images are named above), or use fewer processes."
            )

    def save(self, folder: str) -> None:
        """Write this process's position to `stream_state_<rank>.json` in a checkpoint folder."""
        state = {
            "epoch": self.epoch,
            "pass_over": self.pass_over,
            "num_processes": self.accelerator.num_processes,
            "num_workers": self.num_workers,
            "dataloader": self.dataloader.state_dict(),
        }
        os.makedirs(folder, exist_ok=True)
        with open(stream_state_file(folder, self.accelerator.process_index), "w") as f:
            json.dump(state, f, default=_number)
        if self.files is not None and self.accelerator.is_main_process:
            with open(os.path.join(folder, STREAM_FILES), "w") as f:
                json.dump(self.files.record(), f)

    def load(self, folder: str) -> None:
        """Continue from the position saved in a checkpoint: the next pass after a finished one, else the same pass
        from the batch after the last one trained on."""
        path = stream_state_file(folder, self.accelerator.process_index)
        if not os.path.isfile(path):
            raise ValueError(
                f"{folder} lacks {os.path.basename(path)}, the stream position of this process: it was not written "
                "by a --streaming run with this number of processes; resume it without --streaming or start anew."
            )
        with open(path) as f:
            state = json.load(f)
        saved = (state["num_processes"], state["num_workers"])
        if saved != (self.accelerator.num_processes, self.num_workers):
            raise ValueError(
                f"{path} holds the stream positions of {saved[0]} process(es) with --dataloader_num_workers "
                f"{saved[1]} each; each process and worker reads its own shards, so resume with {saved[0]} "
                f"process(es) and --dataloader_num_workers {saved[1]}."
            )
        changes = self._files_changed_since(folder)
        if changes:  # the positions index shards that are no longer those of the folder
            logger.warning(
                f"The stream's data files changed since {os.path.basename(folder)} was saved ({changes}): its pass "
                f"{state['epoch']} cannot be continued, so pass {state['epoch'] + 1} begins, over the files there "
                "are now (the rest of the interrupted pass is not trained on)."
            )
            self.epoch, self.pass_over, self.resumed, self.exact = state["epoch"] + 1, False, False, False
            return
        self.epoch, self.pass_over, self.resumed = state["epoch"], False, not state["pass_over"]
        if state["pass_over"]:
            self.epoch += 1
        else:
            self.dataloader.load_state_dict(state["dataloader"])

    def _files_changed_since(self, folder: str) -> str:
        """What changed in the data files since the checkpoint `folder` recorded them ("" if nothing, or if either
        side has no record: a Hub stream, an older checkpoint)."""
        path = os.path.join(folder, STREAM_FILES)
        if self.files is None or not os.path.isfile(path):
            return ""
        with open(path) as f:
            return self.files.changes_since(json.load(f))

    def register(self) -> None:
        """Save and load the position with every `accelerator.save_state` / `load_state` (each process its own)."""
        self.accelerator.register_save_state_pre_hook(lambda models, weights, folder: self.save(folder))
        self.accelerator.register_load_state_pre_hook(lambda models, folder: self.load(folder))


def prepare_stream(
    accelerator: Accelerator, config: TrainingConfig, dataset: StreamedImages, num_workers: int
) -> StreamPosition:
    """This process's shuffled share of `dataset` in a stateful DataLoader on the accelerator's device, placed and
    tracked by Accelerate but not sharded again, with its position registered for the checkpoints."""
    require("torchdata.stateful_dataloader", "--streaming")
    share = dataset.for_process(
        accelerator.process_index, accelerator.num_processes, config.seed, config.shuffle_buffer_size
    )
    loader = torch.utils.data.DataLoader(
        share, batch_size=config.train_batch_size, num_workers=num_workers, drop_last=compiles(accelerator)
    )
    with warnings.catch_warnings():  # torchdata 0.11 calls torch.set_vital, deprecated in recent torch
        warnings.filterwarnings("ignore", message=".*set_vital.*")
        dataloader = prepare_data_loader(
            loader,
            device=accelerator.device,
            num_processes=1,  # already this process's share
            process_index=0,
            put_on_device=True,
            dispatch_batches=False,
            non_blocking=accelerator.dataloader_config.non_blocking,
            use_stateful_dataloader=True,
        )
    # Accelerate asks the new loader for its state, which makes torchdata start the workers of its first pass now,
    # before the loop sets the pass (`set_epoch`): they would read pass 0 whatever the pass. Drop that iterator.
    dataloader.load_state_dict({})
    position = StreamPosition(accelerator, dataloader, num_workers, dataset.files)
    position.register()
    return position
