"""The files of a local dataset folder, as a stream's checkpoints record them: which there are (so a resume can tell
shards added, removed or rewritten since) and whether each webdataset `.tar` shard is whole (a truncated tar is read
by `datasets` as a shorter one, silently)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

# What `datasets` reads as data in a local folder: shards and tables, and images (imagefolder's extensions, lower case)
DATA_EXTENSIONS = (".tar", ".parquet", ".arrow", ".jsonl", ".json", ".csv")
# A listing of more files than this is recorded by its digest only (a folder of loose images can hold millions).
LISTED_FILES = 10_000
TAR_BLOCK = 512


def image_extensions() -> set[str]:
    """The file extensions `datasets`' imagefolder reads as images."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return {extension.lower() for extension in ImageFolder.EXTENSIONS}


def is_data_file(name: str) -> bool:
    """Whether `datasets` would read the file `name` as data (a shard, a table or an image)."""
    extension = os.path.splitext(name)[1].lower()
    return extension in DATA_EXTENSIONS or extension in image_extensions()


@dataclass(frozen=True)
class DataFiles:
    """The data files of a local dataset folder: relative path -> size in bytes.

    Attributes:
        folder: the dataset folder.
        sizes: each data file's size, by its path relative to `folder` (hidden files and folders left out).
    """

    folder: str
    sizes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, folder: str) -> DataFiles:
        sizes = {}
        for root, folders, names in os.walk(folder):
            folders[:] = sorted(name for name in folders if not name.startswith("."))
            for name in names:
                if not name.startswith(".") and is_data_file(name):
                    path = os.path.join(root, name)
                    sizes[os.path.relpath(path, folder)] = os.path.getsize(path)
        return cls(folder, dict(sorted(sizes.items())))

    @property
    def digest(self) -> str:
        return hashlib.sha256("".join(f"{name}\t{size}\n" for name, size in self.sizes.items()).encode()).hexdigest()

    def record(self) -> dict:
        """What a checkpoint keeps: the count and digest, and the listing itself up to [`LISTED_FILES`] files."""
        record = {"count": len(self.sizes), "digest": self.digest}
        if len(self.sizes) <= LISTED_FILES:
            record["files"] = self.sizes
        return record

    def changes_since(self, record: dict) -> str:
        """What changed since `record` ([`record`] of an earlier listing), for a message; "" when nothing did."""
        if record.get("digest") == self.digest:
            return ""
        then = record.get("files")
        if then is None:
            return f"{record.get('count')} data files then, {len(self.sizes)} now (a listing too long to name them)"
        parts = []
        for what, names in (
            ("added", [name for name in self.sizes if name not in then]),
            ("removed", [name for name in then if name not in self.sizes]),
            ("rewritten", [name for name in self.sizes if name in then and then[name] != self.sizes[name]]),
        ):
            if names:
                parts.append(f"{what} {', '.join(names[:5])}" + (f" (+{len(names) - 5})" if len(names) > 5 else ""))
        return "; ".join(parts)


def check_tar_shards(files: DataFiles, flag: str) -> None:
    """Every webdataset `.tar` shard of `files` ends as a whole tar archive does: a size in 512-byte blocks and two
    zero blocks after the last member. Reads the last 1 kB of each shard, nothing more.

    Raises:
        `ValueError`: naming the first damaged shard, its size and what to do.
    """
    for name, size in files.sizes.items():
        if not name.lower().endswith(".tar"):
            continue
        path = os.path.join(files.folder, name)
        with open(path, "rb") as f:
            f.seek(max(size - 2 * TAR_BLOCK, 0))
            end = f.read()
        if size % TAR_BLOCK or size < 2 * TAR_BLOCK or end.strip(b"\0"):
            raise ValueError(
                f"{flag} {files.folder}: the shard {name} is truncated or damaged ({size} bytes, "
                f"{'not a whole number of 512-byte blocks' if size % TAR_BLOCK else 'no end-of-archive blocks'}); "
                "datasets would read it as a shorter shard, silently. Write it again, or move it out of the folder."
            )
