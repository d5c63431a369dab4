"""Fixtures of the training tests: a folder of images to convert, a reset Accelerator state, a folder's digest
(`tiny_dpm` is in tests/conftest.py)."""

import hashlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from accelerate.state import AcceleratorState


def write_random_pictures(folder: Path, count: int, size: int, generator: np.random.Generator) -> Path:
    """`count` random RGB `size`x`size` PNGs, 00.png, 01.png, ..., in `folder` (made if missing; rewrites them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        PIL.Image.fromarray(generator.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="package")
def image_folder(tmp_path_factory) -> str:
    """Twelve RGB 20x20 images: a different channel count and size than the UNet's, to be converted."""
    return str(write_random_pictures(tmp_path_factory.mktemp("images"), 12, 20, np.random.default_rng(0)))


@pytest.fixture
def fresh_accelerator_state():
    """Each in-process run makes its own Accelerator; the state behind it is a process-wide singleton. Modules that
    run the scripts in process use it for every test (`pytestmark = pytest.mark.usefixtures(...)`)."""
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def tree_digest(folder: Path) -> dict[str, str]:
    """The sha256 of every file below `folder`, by relative path: equal digests mean byte-identical folders."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip
