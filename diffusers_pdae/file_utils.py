"""Writing folders so that a crash or a concurrent reader never sees half of one save and half of another, and
finishing or discarding what a save killed midway left beside the folder."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

# The siblings a save of `<name>` makes: `.<name>.saving-<token>` while it writes (incomplete), renamed to
# `.<name>.saved-<token>` once written (complete), and `.<name>.replaced-<token>`, the previous folder, while the two
# swap. A save into one of them (a pipeline saved atomically inside an atomic save) adds a leading dot per level.
SAVE_STAGES = ("saving", "saved", "replaced")


def _sibling(directory: Path, stage: str, token: str) -> Path:
    return directory.with_name(f".{directory.name}.{stage}-{token}")


def write_folder_atomically(directory: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Run `write(temporary_folder)` and then put its result at `directory` with renames.

    The new files are written to a sibling folder first (`.<name>.saving-<token>`), which is renamed
    `.<name>.saved-<token>` once complete; entries of an existing `directory` that the new save does not replace (a
    training run's checkpoints and logs, say) are moved into it; then the old folder is renamed away and the new one
    renamed into place. A reader sees the old save or the new one, never a mixture (between the two renames the folder
    is briefly absent); if `write` fails, `directory` is left exactly as it was. A process killed midway leaves the
    siblings; [`recover_interrupted_saves`] finishes the save (or discards an incomplete one) without losing an entry.

    Args:
        directory: the folder to (re)write.
        write: writes the complete new contents into the folder it is given (e.g. `pipeline.save_pretrained`).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"Cannot save into {directory}: it is a file, not a folder.")
    token = uuid.uuid4().hex[:8]
    staging = _sibling(directory, "saving", token)
    try:
        write(str(staging))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    saved = _sibling(directory, "saved", token)
    os.replace(staging, saved)
    _swap_into_place(saved, directory, token)


def _swap_into_place(saved: Path, directory: Path, token: str) -> None:
    """Move the entries of `directory` that `saved` does not replace into it, and rename it into place."""
    retired = _sibling(directory, "replaced", token)
    if directory.is_dir():
        replaced = {entry.name for entry in saved.iterdir()}
        for entry in directory.iterdir():
            if entry.name not in replaced:
                os.replace(entry, saved / entry.name)
        os.replace(directory, retired)
    os.replace(saved, directory)
    shutil.rmtree(retired, ignore_errors=True)


def interrupted_saves(directory: str | os.PathLike) -> dict[str, list[Path]]:
    """The siblings interrupted saves of `directory` left, by stage ("saving", "saved", "replaced"), oldest first;
    entries of a save into an incomplete one (`..<name>.saving-<token>...`) count as "saving"."""
    directory = Path(directory)
    top = re.compile(rf"^\.{re.escape(directory.name)}\.({'|'.join(SAVE_STAGES)})-([0-9a-f]{{8}})$")
    nested = re.compile(rf"^\.\.+{re.escape(directory.name)}\.saving-[0-9a-f]{{8}}\.")
    found: dict[str, list[Path]] = {stage: [] for stage in SAVE_STAGES}
    if not directory.parent.is_dir():
        return found
    for entry in sorted(directory.parent.iterdir(), key=lambda path: path.stat().st_mtime):
        match = top.match(entry.name)
        if match:
            found[match.group(1)].append(entry)
        elif nested.match(entry.name):
            found["saving"].append(entry)
    return found


def recover_interrupted_saves(directory: str | os.PathLike) -> list[str]:
    """Finish or discard the saves of `directory` a killed process left midway: an incomplete one (`.saving-`) is
    removed; a complete one (`.saved-`, holding the new files and whatever had been moved into it) is swapped into
    place as [`write_folder_atomically`] would have, keeping every entry of `directory` it does not replace; a
    previous folder left renamed away (`.replaced-`) is removed once `directory` exists again, else renamed back.
    Only the process that owns `directory` may call it (a training run, under its lock).

    Returns:
        What was done, one line per sibling, for the log.
    """
    directory = Path(directory)
    found, done = interrupted_saves(directory), []
    for incomplete in found["saving"]:
        shutil.rmtree(incomplete, ignore_errors=True)
        done.append(f"removed {incomplete.name}, a save killed while it was written")
    for complete in found["saved"]:
        token = complete.name.rsplit("-", 1)[1]
        # Its previous folder, renamed away after everything it kept had been moved out: only replaced files remain.
        shutil.rmtree(_sibling(directory, "replaced", token), ignore_errors=True)
        _swap_into_place(complete, directory, token)
        done.append(f"finished {complete.name}, a save killed while it was put in place")
    for previous in found["replaced"]:
        if not previous.exists():
            continue
        if directory.exists():
            shutil.rmtree(previous, ignore_errors=True)
            done.append(f"removed {previous.name}, the folder a finished save replaced")
        else:
            os.replace(previous, directory)
            done.append(f"renamed {previous.name} back to {directory.name}")
    return done
