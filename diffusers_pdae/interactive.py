"""The actions behind the interactive demo (`examples/app.py`), kept free of any UI framework so they are tested
directly: bring a drawn or uploaded picture into the UNet's input space, reconstruct it, interpolate to a second one,
edit it along attribute directions, sample new images.

Every action takes and returns PIL images. Bad input raises a `ValueError` whose message is meant for the person at the
page (the app shows it as is).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers.utils.torch_utils import randn_tensor

from .directions import AttributeDirection
from .evaluation.attributes import STROKE_ATTRIBUTES, extreme_groups
from .image_utils import make_grid, postprocess_images
from .pipelines import PDAEPipeline

# MNIST digits fill a 20x20 box centred by their centre of mass in a 28x28 canvas, padded to the UNet's 32x32: the
# box is 20/32 of the side.
STROKE_BOX_FRACTION = 20 / 32
# Ink below this share of the brightest stroke pixel does not count when cropping to the strokes.
_STROKE_THRESHOLD = 0.2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _border(array: np.ndarray) -> np.ndarray:
    return np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])


def stroke_intensity(image: PIL.Image.Image) -> np.ndarray:
    """How much ink each pixel holds, `(H, W)` float in [0, 1] with the background at 0, whatever the picture's
    polarity: dark strokes on paper, bright strokes on black (MNIST), or strokes on a transparent canvas (a sketch)."""
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255.0
    luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
    alpha = rgba[..., 3]
    if (alpha < 0.5).mean() > 0.01:
        opaque = alpha >= 0.5
        dark_strokes = luminance[opaque].mean() < 0.5 if opaque.any() else True
        ink = alpha * ((1 - luminance) if dark_strokes else luminance)
    else:
        ink = luminance if np.median(_border(luminance)) < 0.5 else 1 - luminance
    background = np.median(_border(ink))
    peak = ink.max()
    if peak - background < 0.1:
        raise ValueError(
            "No strokes found: the picture is blank or has almost no contrast. Draw a digit, or upload a picture of "
            "one (dark on light or light on dark)."
        )
    return np.clip((ink - background) / (peak - background), 0, 1)


def center_strokes(image: PIL.Image.Image, size: int) -> PIL.Image.Image:
    """Bring a stroke picture into the MNIST convention: bright strokes on black, cropped to the strokes, scaled to fit
    a box of `STROKE_BOX_FRACTION * size` keeping the aspect ratio, centred by the centre of mass in a `size x size`
    canvas.

    Returns:
        A mode `"L"` PIL image of `size x size`.
    """
    ink = stroke_intensity(image)
    rows, columns = np.nonzero(ink > _STROKE_THRESHOLD)
    ink = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    box = max(round(size * STROKE_BOX_FRACTION), 1)
    scale = box / max(ink.shape)
    height, width = max(round(ink.shape[0] * scale), 1), max(round(ink.shape[1] * scale), 1)
    strokes = PIL.Image.fromarray((ink * 255).round().astype(np.uint8)).resize((width, height), PIL.Image.LANCZOS)
    pixels = np.asarray(strokes, dtype=np.float64)
    mass = pixels.sum()
    if mass == 0:
        raise ValueError("The strokes are too thin to see at the model's size; draw them bolder or larger.")
    centre_row = (pixels.sum(axis=1) * np.arange(height)).sum() / mass
    centre_column = (pixels.sum(axis=0) * np.arange(width)).sum() / mass
    top = int(np.clip(round(size / 2 - centre_row - 0.5), 0, size - height))
    left = int(np.clip(round(size / 2 - centre_column - 0.5), 0, size - width))
    canvas = PIL.Image.new("L", (size, size), 0)
    canvas.paste(strokes, (left, top))
    return canvas


def fit_stroke_directions(
    pipeline: PDAEPipeline, images: torch.Tensor, quantile: float = 0.25
) -> dict[str, AttributeDirection]:
    """Directions for stroke thickness and slant, fit without labels: the codes of the `quantile` of `images` with the
    most of the attribute against those with the least (see `diffusers_pdae.evaluation.attributes`).

    Args:
        images (`torch.Tensor` of shape `(N, C, H, W)` in [-1, 1]): reference images in the pipeline's input space.

    Returns:
        `{"thickness": AttributeDirection, "slant": AttributeDirection}`.
    """
    directions = {}
    for name, measure in STROKE_ATTRIBUTES.items():
        high, low = extreme_groups(measure(images), quantile)
        directions[name] = pipeline.attribute_direction(images[high], images[low])
    return directions


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name; an error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images.")
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 8:
        raise ValueError(f"{folder} holds {len(files)} images ({', '.join(IMAGE_SUFFIXES)}); give at least 8.")
    return files


class PDAEPlayground:
    """A `PDAEPipeline` wrapped for one person trying it out: PIL in, PIL out, inverted x_T cached per picture so that
    moving an attribute slider costs one decoding only.

    Args:
        pipeline ([`PDAEPipeline`]): the pipeline to demonstrate.
        num_inference_steps (`int`, defaults to 50): DDIM steps of every inversion and decoding.
        directions (`dict[str, AttributeDirection]`, *optional*): attribute directions for `edit`, by name.
        stroke_images (`bool`, *optional*): treat pictures as strokes (digits, sketches) and centre them MNIST-style
            with [`center_strokes`]; defaults to `True` for one-channel images. Otherwise pictures go to the pipeline
            as they are (centre-cropped and resized).
        display_size (`int`, defaults to 160): side of the pictures returned, scaled up without smoothing so the
            model's pixels stay visible.
    """

    def __init__(
        self,
        pipeline: PDAEPipeline,
        num_inference_steps: int = 50,
        directions: dict[str, AttributeDirection] | None = None,
        stroke_images: bool | None = None,
        display_size: int = 160,
    ):
        self.pipeline = pipeline
        self.num_inference_steps = pipeline._check_steps(num_inference_steps)
        self.directions = dict(directions or {})
        channels = pipeline.image_shape[0]
        self.stroke_images = channels == 1 if stroke_images is None else stroke_images
        if self.stroke_images and channels != 1:
            raise ValueError(f"stroke_images needs one-channel images; this pipeline takes {channels} channels.")
        self.display_size = display_size
        self._inversions: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @property
    def sample_size(self) -> int:
        """The side of the pictures the pipeline takes (its pixel images, for a latent pipeline too)."""
        return self.pipeline.image_shape[1]

    def prepare(self, image: PIL.Image.Image | None) -> PIL.Image.Image:
        """The picture as the model sees it (`sample_size` square), or a `ValueError` saying what is wrong with it."""
        if image is None:
            raise ValueError("No picture yet: upload one or draw a digit first.")
        if not isinstance(image, PIL.Image.Image):
            raise ValueError(f"Expected a picture, got {type(image).__name__}.")
        if min(image.size) < 4:
            raise ValueError(f"The picture is {image.size[0]}x{image.size[1]} pixels: too small to show anything.")
        if self.stroke_images:
            return center_strokes(image, self.sample_size)
        return postprocess_images(self.pipeline.prepare_images(image), "pil")[0]

    def _show(self, images: torch.Tensor, nrow: int | None = None) -> PIL.Image.Image:
        """`(B, C, H, W)` in [0, 1] -> one picture, a row of `nrow` per line, scaled up to `display_size` per image."""
        grid = make_grid(images.float().cpu(), nrow=nrow or images.shape[0], padding=1 if images.shape[0] > 1 else 0)
        factor = max(self.display_size // self.sample_size, 1)
        return grid.resize((grid.width * factor, grid.height * factor), PIL.Image.NEAREST)

    def _encode_and_invert(self, image: PIL.Image.Image) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(z, x_T, sample)` of one picture, `sample` `(1, C, H, W)` in [-1, 1]; z and x_T cached per picture."""
        sample = self.pipeline.prepare_images(self.prepare(image))
        key = hashlib.sha256(sample.cpu().numpy().tobytes() + str(self.num_inference_steps).encode()).hexdigest()
        if key not in self._inversions:
            z = self.pipeline.encode(sample)
            x_T = self.pipeline.invert(sample, z, self.num_inference_steps)
            self._inversions[key] = (z, x_T)
            while len(self._inversions) > 16:
                self._inversions.popitem(last=False)
        self._inversions.move_to_end(key)
        z, x_T = self._inversions[key]
        return z, x_T, sample

    def _decode(self, latents: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.pipeline.decode(latents, z, self.num_inference_steps, output_type="pt").images

    def reconstruct(self, image: PIL.Image.Image, seed: int = 0) -> dict[str, PIL.Image.Image]:
        """Autoencode one picture.

        Returns:
            `{"input": what the model sees, "inferred": decoded from z and the inverted x_T, "random": decoded from z
            and x_T drawn with `seed` (what z alone carries)}`.
        """
        z, x_T, sample = self._encode_and_invert(image)
        noise = randn_tensor(
            x_T.shape, generator=torch.Generator().manual_seed(int(seed)), device=x_T.device, dtype=x_T.dtype
        )
        decoded = self._decode(torch.cat([x_T, noise]), torch.cat([z, z]))
        shown = {"input": (sample / 2 + 0.5).clamp(0, 1), "inferred": decoded[:1], "random": decoded[1:]}
        return {name: self._show(images) for name, images in shown.items()}

    def interpolate(self, image_a: PIL.Image.Image, image_b: PIL.Image.Image, num: int = 8) -> PIL.Image.Image:
        """A strip of `num` images from `image_a` to `image_b`: slerp on their inverted x_T, lerp on their codes."""
        if image_b is None:
            raise ValueError("No second picture: upload or draw the digit to interpolate to.")
        first, second = self.prepare(image_a), self.prepare(image_b)
        frames = self.pipeline.interpolate(
            first, second, num=num, num_inference_steps=self.num_inference_steps, output_type="pt"
        )
        return self._show(frames.images)

    def edit(self, image: PIL.Image.Image, amounts: dict[str, float]) -> PIL.Image.Image:
        """Move the picture's code along the attribute directions and decode from its own inverted x_T.

        Args:
            amounts: multiples of each direction's separation (see [`AttributeDirection.scales`]) by name; 0 leaves
                the attribute alone, so all zeros gives the reconstruction.
        """
        unknown = sorted(set(amounts) - set(self.directions))
        if unknown:
            raise ValueError(f"No direction named {', '.join(unknown)}; this demo has {sorted(self.directions)}.")
        z, x_T, _ = self._encode_and_invert(image)
        shift = torch.zeros_like(z[0])
        for name, amount in amounts.items():
            direction = self.directions[name]
            shift += float(amount) * direction.separation * direction.direction.to(z.device, z.dtype)
        return self._show(self._decode(x_T, z + shift))

    def sample(self, num: int = 8, seed: int = 0, nrow: int = 8) -> PIL.Image.Image:
        """`num` new images: codes from the pipeline's latent sampler decoded from random x_T (the DPM alone when the
        pipeline has no sampler)."""
        images = self.pipeline(
            batch_size=num,
            num_inference_steps=self.num_inference_steps,
            generator=torch.Generator().manual_seed(int(seed)),
            output_type="pt",
        ).images
        return self._show(images, nrow=min(nrow, num))
