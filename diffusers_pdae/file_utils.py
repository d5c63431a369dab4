"""Writing folders so that a crash or a concurrent reader never sees half of one save and half of another."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def write_folder_atomically(directory: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Run `write(temporary_folder)` and then put its result at `directory` with renames.

    The new files are written to a sibling folder first; entries of an existing `directory` that the new save does
    not replace (a training run's checkpoints and logs, say) are moved into it; then the old folder is renamed away
    and the new one renamed into place. A reader sees the old save or the new one, never a mixture (between the two
    renames the folder is briefly absent); if `write` fails, `directory` is left exactly as it was.

    Args:
        directory: the folder to (re)write.
        write: writes the complete new contents into the folder it is given (e.g. `pipeline.save_pretrained`).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"Cannot save into {directory}: it is a file, not a folder.")
    token = uuid.uuid4().hex[:8]
    staging = directory.with_name(f".{directory.name}.saving-{token}")
    retired = directory.with_name(f".{directory.name}.replaced-{token}")
    try:
        write(str(staging))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if directory.is_dir():
        replaced = {entry.name for entry in staging.iterdir()}
        for entry in directory.iterdir():
            if entry.name not in replaced:
                os.replace(entry, staging / entry.name)
        os.replace(directory, retired)
    os.replace(staging, directory)
    shutil.rmtree(retired, ignore_errors=True)
