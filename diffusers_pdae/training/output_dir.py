"""A run's `--output_dir`: claimed before anything is written (refusing a folder that holds another run, locking it
against a second trainer, finishing a save a killed run left midway, starting anew where a run was killed before its
first checkpoint) and given back at the end."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil

from accelerate import Accelerator

from ..file_utils import recover_interrupted_saves
from .accelerator import check_on_main_process
from .checkpointing import resolve_resume_path

logger = logging.getLogger(__name__)

LOCK_FILE = ".training.lock"
# What --overwrite_output_dir removes of an earlier run before training (its pipeline files are replaced at the end).
EARLIER_RUN_ENTRIES = re.compile(r"^(checkpoint-\d+(\.tmp)?|ranks|validation|samples)$")
# Lock files this process holds (open handle, whether it created the file), kept referenced so that the locks last
# as long as the process.
_held_locks: dict[str, tuple] = {}


def claim_output_dir(accelerator: Accelerator, args: argparse.Namespace) -> None:
    """Make `args.output_dir` this run's, before anything is loaded or written, on every process alike.

    - The main process first takes an exclusive lock on `output_dir/.training.lock`, held until it exits (the
      operating system releases it even on SIGKILL), so a second trainer on the same folder stops with a clear error.
    - A save of the folder that a killed run left midway beside it is finished or discarded
      ([`~diffusers_pdae.file_utils.recover_interrupted_saves`]): no entry is lost, no `.saving-` folder stays.
    - A folder that already holds files (another run, or anything else) is refused unless `--resume_from_checkpoint`
      finds a checkpoint there to continue, or `--overwrite_output_dir` is given; the latter first deletes the earlier
      run's checkpoints, rank reports and validation images, so they cannot be pruned in place of the new run's or
      resumed by `latest` (its pipeline files and logs stay until this run replaces them).
    - With `--resume_from_checkpoint` and no complete checkpoint, a folder holding only what a run writes before its
      first checkpoint ([`only_before_first_checkpoint`]: its logs, a half-written `checkpoint-N.tmp`, validation
      grids) belongs to a run killed that early: the run starts there anew (the half-written checkpoint removed), so
      a resubmitted job needs no hand in the folder.

    Raises:
        `ValueError`: for a folder in use or holding something else, with what to do.
    """
    output_dir = args.output_dir
    if args.resume_from_checkpoint not in (None, "latest"):  # a named checkpoint that is nowhere: before any write
        resolve_resume_path(args.resume_from_checkpoint, output_dir)

    def claim() -> str:
        os.makedirs(output_dir, exist_ok=True)
        # The lock first, so a folder in use is reported as such rather than as merely "not empty".
        error = _acquire_lock(output_dir)
        if not error:
            for line in recover_interrupted_saves(output_dir):
                logger.warning(f"--output_dir {output_dir}: {line}.")
            error = _check_contents(args)
        if error:
            _release_lock(output_dir)  # leave a folder we refuse as we found it
            return error
        _held_locks[os.path.abspath(output_dir)][0].write(f"{os.getpid()}\n")
        _held_locks[os.path.abspath(output_dir)][0].flush()
        return ""

    check_on_main_process(accelerator, claim)


def only_before_first_checkpoint(names: list[str], logging_dir: str) -> bool:
    """Whether a folder's `names` are all what a run writes before its first complete checkpoint: the logging
    folder, a half-written `checkpoint-N.tmp`, rank reports, validation grids and samples."""
    logs = {os.path.normpath(logging_dir).split(os.sep)[0]} if not os.path.isabs(logging_dir) else set()
    return all(name in logs or EARLIER_RUN_ENTRIES.match(name) for name in names)


def _check_contents(args: argparse.Namespace) -> str:
    """The refusal of what `--output_dir` holds (see [`claim_output_dir`]), or "" after clearing what this run
    replaces; on the main process, under the lock."""
    output_dir = args.output_dir
    existing = sorted(name for name in os.listdir(output_dir) if name != LOCK_FILE)
    resume = args.resume_from_checkpoint
    try:
        resuming = resume is not None and resolve_resume_path(resume, output_dir) is not None
    except FileNotFoundError as error:
        return str(error)
    interrupted = resume is not None and not resuming and only_before_first_checkpoint(existing, args.logging_dir)
    if existing and not (resuming or interrupted or args.overwrite_output_dir):
        shown = ", ".join(existing[:5]) + (f", ... ({len(existing)} entries)" if len(existing) > 5 else "")
        if resume is not None:
            return (
                f"--resume_from_checkpoint {resume} found no complete checkpoint in --output_dir {output_dir}, which "
                f"holds files a training run does not write before its first checkpoint ({shown}). Pass "
                "--overwrite_output_dir to train there anyway (the earlier run's checkpoints and images are deleted, "
                "its pipeline files replaced at the end), or choose a new folder."
            )
        return (
            f"--output_dir {output_dir} is not empty ({shown}). Continue a run there with --resume_from_checkpoint "
            "latest, replace it with --overwrite_output_dir, or choose a new folder."
        )
    if interrupted and existing:
        logger.warning(
            f"--output_dir {output_dir} holds no complete checkpoint, only what a run killed before its first one "
            f"wrote ({', '.join(existing)}): starting the run anew there."
        )
    if existing and not resuming:
        for name in existing:
            if EARLIER_RUN_ENTRIES.match(name):
                shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
    return ""


def release_output_dir(output_dir: str) -> None:
    """Drop this process's lock on `output_dir` and remove the lock file (at the end of a run)."""
    entry = _held_locks.pop(os.path.abspath(output_dir), None)
    if entry is not None:
        entry[0].close()
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(output_dir, LOCK_FILE))


def _acquire_lock(output_dir: str) -> str:
    """Take the folder's lock for this process; return an error message if another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        return ""
    key = os.path.abspath(output_dir)
    if key in _held_locks:  # this process holds it already
        return ""
    path = os.path.join(output_dir, LOCK_FILE)
    created = not os.path.exists(path)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        return (
            f"Another training run (process {owner}) is using --output_dir {output_dir}: wait for it to finish or "
            "choose another folder."
        )
    handle.seek(0)
    handle.truncate()
    _held_locks[key] = (handle, created)
    return ""


def _release_lock(output_dir: str) -> None:
    """Undo [`_acquire_lock`]: unlock, and remove the lock file if this process created it."""
    entry = _held_locks.pop(os.path.abspath(output_dir), None)
    if entry is None:
        return
    handle, created = entry
    handle.close()
    if created:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(output_dir, LOCK_FILE))
