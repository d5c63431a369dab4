"""User images are read faithfully: bit depth, transparency, mixed sizes, and clear errors for unusable ones."""

import io

import numpy as np
import PIL.Image
import pytest
import torch

from diffusers_pdae.bundled import load_mnist, load_mnist_arrays, mnist_to_tensor
from diffusers_pdae.image_utils import images_to_tensor


def grey_level(image: PIL.Image.Image, channels: int = 1) -> int:
    """The 8-bit grey the centre pixel of `image` converts to."""
    return round((images_to_tensor(image, channels, 32)[0, 0, 16, 16].item() + 1) * 127.5)


def test_8_bit_digits_convert_exactly_as_the_bundled_tensors():
    digits = load_mnist("test")["image"][:4]
    assert torch.equal(images_to_tensor(digits, 1, 32), mnist_to_tensor(load_mnist_arrays("test")[0][:4]))


def test_high_bit_depth_images_are_scaled_by_their_real_range_not_clipped():
    twelve_bit = np.zeros((20, 20), np.uint16)
    twelve_bit[10, 10], twelve_bit[10, 11] = 4095, 2048
    tensor = images_to_tensor(PIL.Image.fromarray(twelve_bit), 1, 32)
    assert round((tensor[0, 0, 16, 16].item() + 1) * 127.5) == 255
    assert round((tensor[0, 0, 16, 17].item() + 1) * 127.5) == 128  # mid grey, not white
    assert grey_level(PIL.Image.fromarray(np.full((8, 8), 200, np.uint16))) == 200  # 8-bit values stay
    assert grey_level(PIL.Image.fromarray(np.full((8, 8), 0.5, np.float32))) == 128  # float in [0, 1]
    assert grey_level(PIL.Image.fromarray(np.full((8, 8), 1000.0, np.float32))) == 255
    assert PIL.Image.fromarray(np.zeros((8, 8), np.int32)).mode == "I"
    assert grey_level(PIL.Image.fromarray(np.zeros((8, 8), np.int32))) == 0


def test_transparency_is_composited_on_black():
    clear_white = PIL.Image.new("RGBA", (20, 20), (255, 255, 255, 0))
    opaque_white = PIL.Image.new("RGBA", (20, 20), (255, 255, 255, 255))
    half_white = PIL.Image.new("LA", (20, 20), (255, 128))
    assert grey_level(clear_white) == 0 and grey_level(opaque_white) == 255
    assert grey_level(half_white) == 128
    palette = PIL.Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.info["transparency"] = 1
    assert grey_level(palette, channels=3) == 0


def test_a_list_of_mixed_sizes_is_converted_image_by_image():
    images = [PIL.Image.new("L", (20, 20), 255), PIL.Image.new("L", (40, 40), 255), PIL.Image.new("RGB", (16, 24))]
    batch = images_to_tensor(images, 1, 32)
    assert batch.shape == (3, 1, 32, 32)
    assert batch[0, 0, 16, 16] == 1 and batch[0, 0, 0, 0] == -1  # padded with black
    assert batch[1].min() == 1  # cropped and resized, all white


def test_unusable_images_get_a_clear_error():
    with pytest.raises(ValueError, match="no pixels"):
        images_to_tensor(PIL.Image.new("L", (0, 0)), 1, 32)
    with pytest.raises(ValueError, match="1x500"):
        images_to_tensor(PIL.Image.new("L", (1, 500)), 1, 32)
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, "PNG")
    truncated = PIL.Image.open(io.BytesIO(buffer.getvalue()[:-40]))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        images_to_tensor(truncated, 3, 32)


def test_tensor_images_are_checked_for_non_finite_values_and_empty_batches():
    bad = torch.zeros(1, 1, 32, 32)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        images_to_tensor(bad, 1, 32)
    with pytest.raises(ValueError, match="batch size 0"):
        images_to_tensor(torch.zeros(0, 1, 32, 32), 1, 32)
