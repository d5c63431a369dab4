"""Conversions between user images (PIL or tensors) and the UNet's input space, shared by every entry point."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

ImageInput = PIL.Image.Image | list[PIL.Image.Image] | torch.Tensor

_PIL_MODES = {1: "L", 3: "RGB"}


def pad_to_size(images: torch.Tensor, size: int, value: float = -1.0) -> torch.Tensor:
    """Pad `(B, C, h, w)` images centrally to `(B, C, size, size)` with `value` (-1 is black in [-1, 1])."""
    height, width = images.shape[-2:]
    if height > size or width > size:
        raise ValueError(f"Cannot pad {height}x{width} images to {size}x{size}; they are larger.")
    top, left = (size - height) // 2, (size - width) // 2
    return F.pad(images, (left, size - width - left, top, size - height - top), value=value)


# A wider image would lose most of itself to the square centre crop; say so instead.
MAX_ASPECT_RATIO = 8.0
_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _describe(image: PIL.Image.Image) -> str:
    name = getattr(image, "filename", "") or ""
    return f"image {name!r}" if name else f"the {image.mode} image of size {image.size[0]}x{image.size[1]}"


def _to_8_bit(image: PIL.Image.Image) -> PIL.Image.Image:
    """A 16-bit, 32-bit integer or float image as 8-bit "L", scaled by its real range instead of clipped to white.

    Integers: by the bit depth the values use (a 12-bit scan stored as "I;16", maximum 4095, maps 4095 to 255 and
    2048 to 128; values up to 255 stay as they are). Floats: [0, 1] maps to [0, 255] when the values lie in it,
    otherwise [0, maximum]. Negative values shift the range to start at the minimum.
    """
    values = np.asarray(image, dtype=np.float64)
    low, peak = min(0.0, float(values.min())), float(values.max())
    if image.mode == "F":
        high = 1.0 if low == 0.0 and peak <= 1.0 else peak
    else:
        high = float(2 ** max(8, int(peak - low).bit_length()) - 1) + low
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return PIL.Image.fromarray(np.round(scaled).astype(np.uint8))  # 2-D uint8: mode "L"


def _flatten_alpha(image: PIL.Image.Image) -> PIL.Image.Image:
    """Composite an image with transparency onto black (the background of the bundled digits and of -1 in model
    space); images without transparency are returned as they are."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if not has_alpha:
        return image
    rgba = image.convert("RGBA")
    return PIL.Image.alpha_composite(PIL.Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")


def _pil_to_array(image: PIL.Image.Image, channels: int, size: int) -> np.ndarray:
    """One PIL image as a float32 array `(channels, size, size)` in [0, 255]."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"Cannot read {_describe(image)}: {error} (the file is truncated or corrupt).") from error
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"{_describe(image)} has no pixels ({width}x{height}).")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"{_describe(image)} is {width}x{height}: its centre square would keep under 1/{MAX_ASPECT_RATIO:g} of "
            "it. Crop it to the part you want first."
        )
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        image = _to_8_bit(image)
    image = _flatten_alpha(image).convert(_PIL_MODES[channels])
    if width > size or height > size:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), PIL.Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32)
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    if array.shape[-2:] != (size, size):
        # Smaller than the UNet (a 28x28 digit for a 32x32 UNet): pad with black, as the bundled models were trained.
        array = pad_to_size(torch.from_numpy(array)[None], size, value=0.0)[0].numpy()
    return array


def images_to_tensor(images: ImageInput, channels: int, size: int) -> torch.Tensor:
    """Bring user images into the UNet's input space.

    PIL images are converted one by one (a list may mix sizes and modes) to the UNet's channels ("L" for 1, "RGB" for
    3): an image smaller than `size` (such as a 28x28 MNIST digit for a 32x32 UNet) is padded centrally with black, as
    the bundled models were trained; a larger one is centre-cropped to a square and resized. 16-bit, 32-bit and float
    images are scaled to 8 bits by their real range; transparency is composited onto black. Empty, unreadable
    (truncated) and extremely elongated images (aspect ratio over 8) are refused. Tensors must already be
    `(B, channels, size, size)` finite floats in [-1, 1] (a single `(channels, size, size)` image is accepted too).

    Returns:
        `torch.Tensor` of shape `(B, channels, size, size)`, float32, in [-1, 1].

    Raises:
        `ValueError`: with what is wrong and what to pass instead.
    """
    if isinstance(images, PIL.Image.Image):
        images = [images]
    if isinstance(images, torch.Tensor):
        return _check_tensor_images(images, channels, size)
    if not isinstance(images, (list, tuple)) or not images or not all(isinstance(i, PIL.Image.Image) for i in images):
        raise ValueError(
            f"images must be a PIL image, a non-empty list of PIL images or a tensor (B, C, H, W); got {type(images)}."
        )
    if channels not in _PIL_MODES:
        raise ValueError(f"Cannot convert PIL images to {channels} channels; pass a tensor (B, {channels}, H, W).")
    batch = np.stack([_pil_to_array(image, channels, size) for image in images])
    # In NumPy, float32 as torch would compute it, but single-threaded: torch's intra-op threads cost more than they
    # save on one image, and far more in a DataLoader's main process competing with training (benchmarks/bench_data.py)
    return torch.from_numpy(batch / np.float32(127.5) - np.float32(1.0))


def _check_tensor_images(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"Image tensors must have shape (B, C, H, W), got {tuple(images.shape)}.")
    if images.shape[0] == 0:
        raise ValueError("The image tensor holds no image (batch size 0).")
    if images.device.type == "meta":
        raise ValueError("The image tensor is on the meta device: it has a shape but no values; pass real images.")
    if not images.is_floating_point():
        raise ValueError(
            f"Image tensors must be floating point in [-1, 1], got dtype {images.dtype}; "
            "convert uint8 images with images / 127.5 - 1."
        )
    if images.shape[1] != channels or tuple(images.shape[-2:]) != (size, size):
        raise ValueError(
            f"The UNet works on images of shape (B, {channels}, {size}, {size}), got {tuple(images.shape)}. "
            "Pass PIL images to have them converted, or resize/pad the tensor yourself."
        )
    if not torch.isfinite(images).all():
        raise ValueError(f"Image tensors hold {int((~torch.isfinite(images)).sum())} NaN or infinite values.")
    low, high = images.min().item(), images.max().item()
    if low < -1.001 or high > 1.001:
        raise ValueError(
            f"Image tensors must lie in [-1, 1], got values in [{low:.3g}, {high:.3g}]; "
            "for images in [0, 1] pass images * 2 - 1."
        )
    return images.float()


def postprocess_images(images: torch.Tensor, output_type: str = "pil"):
    """Map `(B, C, H, W)` images in [-1, 1] to `output_type`.

    `"pt"`: a tensor `(B, C, H, W)` in [0, 1]; `"np"`: an array `(B, H, W, C)` in [0, 1]; `"pil"`: a list of PIL
    images (mode "L" for one channel).
    """
    images = (images / 2 + 0.5).clamp(0, 1)
    if output_type == "pt":
        return images
    array = images.cpu().permute(0, 2, 3, 1).float().numpy()
    if output_type == "np":
        return array
    if output_type == "pil":
        array = (array * 255).round().astype("uint8")
        return [PIL.Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in array]
    raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}.")


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 1.0) -> PIL.Image.Image:
    """Tile `(B, C, H, W)` images in [0, 1] into one PIL image with `nrow` images per row."""
    batch, channels, height, width = images.shape
    rows = -(-batch // nrow)
    grid = images.new_full(
        (channels, rows * (height + padding) + padding, nrow * (width + padding) + padding), pad_value
    )
    for index in range(batch):
        top = padding + (index // nrow) * (height + padding)
        left = padding + (index % nrow) * (width + padding)
        grid[:, top : top + height, left : left + width] = images[index]
    array = (grid.clamp(0, 1).permute(1, 2, 0).cpu().float().numpy() * 255).round().astype("uint8")
    return PIL.Image.fromarray(array[..., 0] if channels == 1 else array)


def labelled_rows(rows: list[tuple[str, torch.Tensor]], scale: int = 3) -> PIL.Image.Image:
    """Stack image rows, each `(N, C, H, W)` in [0, 1], into one picture with the row's name on its left."""
    from PIL import ImageDraw

    grids = [make_grid(images, nrow=images.shape[0]) for _, images in rows]
    label_width = 8 + 7 * max(len(name) for name, _ in rows)
    width = label_width + max(grid.width for grid in grids)
    canvas = PIL.Image.new("RGB", (width, sum(grid.height for grid in grids)), "white")
    draw = ImageDraw.Draw(canvas)
    top = 0
    for (name, _), grid in zip(rows, grids, strict=True):
        canvas.paste(grid.convert("RGB"), (label_width, top))
        draw.text((4, top + grid.height // 2 - 5), name, fill="black")
        top += grid.height
    return canvas.resize((canvas.width * scale, canvas.height * scale), PIL.Image.NEAREST)
