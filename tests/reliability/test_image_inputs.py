"""PIL images as users have them (16-bit, float, transparent, mixed sizes, odd modes): converted faithfully by what
the pipeline feeds its models (`pipe.prepare_images`, i.e. `image_utils.images_to_tensor`), or refused by name."""

import io

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler

from diffusers_pdae import GradientEstimator, PDAEPipeline

from ..conftest import LATENT_DIM, tiny_encoder, tiny_unet
from .conftest import CLEAR, HANDLED, SIZE, assert_clear_error

pytestmark = pytest.mark.reliability(area="images")


def pipeline_for(channels: int) -> PDAEPipeline:
    """A tiny 16x16 pipeline whose UNet and encoder take `channels` channels."""
    unet = tiny_unet(in_channels=channels, attention=False)
    estimator = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM)
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    pipeline = PDAEPipeline(unet, scheduler, tiny_encoder(in_channels=channels), estimator)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def converted(image_or_list, channels: int = 1) -> torch.Tensor:
    """What the pipeline feeds its models for PIL input, for a UNet taking `channels` channels."""
    return pipeline_for(channels).prepare_images(image_or_list)


def bands(values, dtype, mode: str | None = None) -> PIL.Image.Image:
    """A 16x16 image of three vertical bands (columns 0-4, 5-10, 11-15) holding `values`."""
    array = np.zeros((SIZE, SIZE), dtype=dtype)
    array[:, :5], array[:, 5:11], array[:, 11:] = values
    image = PIL.Image.fromarray(array)
    return image.convert(mode) if mode is not None and image.mode != mode else image


@HANDLED
@pytest.mark.parametrize(
    "what, values, dtype, mode",
    [
        pytest.param("16-bit 'I;16' image holding 12-bit data", (0, 2048, 4095), np.uint16, None,
                     id="16bit-12bit-values"),
        pytest.param("16-bit 'I;16' image", (0, 32768, 65535), np.uint16, None, id="16bit-full-range"),
        pytest.param("32-bit 'I' image holding 16-bit data (many 16-bit PNGs open so)", (0, 32768, 65535), np.int32,
                     "I", id="32bit-int"),
        pytest.param("float 'F' image in [0, 1]", (0.0, 0.5, 1.0), np.float32, "F", id="float-unit-range"),
        pytest.param("float 'F' image in [0, 1000]", (0.0, 500.0, 1000.0), np.float32, "F", id="float-0-1000"),
    ],
)  # fmt: skip
def test_high_bit_depth_and_float_images_are_scaled_by_their_real_range(what, values, dtype, mode):
    """{what}, values {values}: scaled by its real range to black / mid grey / white."""
    tensor = converted(bands(values, dtype, mode))
    assert tuple(tensor.shape) == (1, 1, SIZE, SIZE)
    low, mid, high = (tensor[0, 0, :, s].mean().item() for s in (slice(0, 5), slice(5, 11), slice(11, 16)))
    assert low < -0.9 and abs(mid) < 0.1 and high > 0.9, f"bands -> {low:.3f} / {mid:.3f} / {high:.3f}"


def transparent_background(mode: str) -> PIL.Image.Image:
    """A transparent white background with an opaque white square in the middle."""
    channels = {"RGBA": 4, "LA": 2}[mode]
    array = np.full((SIZE, SIZE, channels), 255, dtype=np.uint8)
    array[..., -1] = 0
    array[4:12, 4:12, -1] = 255
    return PIL.Image.fromarray(array, mode)


def palette_with_transparency() -> PIL.Image.Image:
    """A palette image: the transparent white index as background, an opaque grey square in the middle."""
    image = PIL.Image.new("P", (SIZE, SIZE), 0)
    image.putpalette([255, 255, 255, 128, 128, 128] + [0, 0, 0] * 254)
    image.paste(1, (4, 4, 12, 12))
    image.info["transparency"] = 0
    return image


@HANDLED
@pytest.mark.parametrize(
    "what, image, centre",
    [
        pytest.param("RGBA, transparent white background, opaque white square", transparent_background("RGBA"), 1.0,
                     id="rgba"),
        pytest.param("LA, transparent white background, opaque white square", transparent_background("LA"), 1.0,
                     id="la"),
        pytest.param("P, transparent white index as background, opaque grey square", palette_with_transparency(),
                     128 / 127.5 - 1, id="palette"),
    ],
)  # fmt: skip
def test_transparency_is_composited_on_black(what, image, centre):
    """{what}: the transparent part becomes black (-1), the opaque part keeps its grey."""
    tensor = converted(image)
    corner, middle = tensor[0, 0, :3, :3].mean().item(), tensor[0, 0, 6:10, 6:10].mean().item()
    assert corner < -0.9 and abs(middle - centre) < 0.05, f"corner -> {corner:.3f}, centre -> {middle:.3f}"


@HANDLED
@pytest.mark.parametrize(
    "sizes", [pytest.param((20, 40, 16), id="larger"), pytest.param((12, 20, 14), id="some-smaller")]
)
def test_a_list_of_mixed_sizes_is_converted_image_by_image(sizes):
    """One list of images of sizes {sizes}: each converted as it would be on its own (padded or resized)."""
    generator = np.random.default_rng(0)
    pictures = [PIL.Image.fromarray(generator.integers(0, 256, (s, s), dtype=np.uint8)) for s in sizes]
    batch = converted(pictures)
    assert tuple(batch.shape) == (len(sizes), 1, SIZE, SIZE)
    for i, picture in enumerate(pictures):
        assert torch.allclose(batch[i : i + 1], converted(picture), atol=1e-6)


@CLEAR
def test_encode_refuses_a_0x0_image(pipe):
    """encode a 0x0 image: refused as having no pixels."""
    assert_clear_error(lambda: pipe.encode(PIL.Image.new("L", (0, 0))), ["0x0", "empty", "zero", "no pixels"], pipe)


@CLEAR
def test_encode_refuses_an_extreme_aspect_ratio(pipe):
    """encode a 1x500 image: refused naming its size."""
    assert_clear_error(lambda: pipe.encode(PIL.Image.new("L", (1, 500), 255)), ["aspect", "1x500", "500x1"], pipe)


@CLEAR
def test_encode_refuses_a_truncated_png_naming_the_file(pipe, tmp_path):
    """encode a lazily opened PNG whose file is truncated: refused naming the file."""
    buffer = io.BytesIO()
    generator = np.random.default_rng(0)
    PIL.Image.fromarray(generator.integers(0, 256, (64, 64), dtype=np.uint8)).save(buffer, format="PNG")
    path = tmp_path / "truncated_digit.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    image = PIL.Image.open(path)
    assert_clear_error(lambda: pipe.encode(image), ["truncated", "cannot read", "corrupt", "truncated_digit"], pipe)


@HANDLED
def test_a_bilevel_image_maps_white_and_black_to_the_ends():
    """A 1-bit '1' image: white -> +1, black -> -1."""
    image = PIL.Image.new("1", (SIZE, SIZE), 0)
    image.paste(1, (8, 0, 16, 16))
    tensor = converted(image)
    assert tensor[0, 0, :, :8].mean() < -0.99 and tensor[0, 0, :, 8:].mean() > 0.99


@HANDLED
def test_an_rgb_image_is_converted_to_luminance_for_a_one_channel_unet():
    """An RGB image for a 1-channel UNet: converted to luminance."""
    array = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    array[:, 8:] = 255
    tensor = converted(PIL.Image.fromarray(array))
    assert tuple(tensor.shape) == (1, 1, SIZE, SIZE)
    assert tensor[0, 0, :, :8].mean() < -0.99 and tensor[0, 0, :, 8:].mean() > 0.99


@HANDLED
def test_a_grey_image_gives_three_equal_channels_for_an_rgb_unet():
    """An 'L' image for a 3-channel UNet: three equal channels."""
    image = PIL.Image.fromarray(np.arange(SIZE * SIZE, dtype=np.uint8).reshape(SIZE, SIZE))
    tensor = converted(image, channels=3)
    assert tuple(tensor.shape) == (1, 3, SIZE, SIZE)
    assert torch.equal(tensor[0, 0], tensor[0, 1]) and torch.equal(tensor[0, 0], tensor[0, 2])


@HANDLED
def test_a_smaller_image_is_padded_with_black():
    """A 12x12 white image is padded with black to 16x16 (as documented)."""
    tensor = converted(PIL.Image.new("L", (12, 12), 255))
    assert tuple(tensor.shape) == (1, 1, SIZE, SIZE)
    assert tensor[0, 0, 0, :].mean() < -0.99 and tensor[0, 0, 2:14, 2:14].mean() > 0.99


@HANDLED
def test_a_wide_image_is_centre_cropped_to_a_square_and_resized():
    """A 64x32 image is centre-cropped to a square and resized."""
    array = np.zeros((32, 64), dtype=np.uint8)
    array[:, 32:] = 255  # the centre square (columns 16..47) is half black, half white
    tensor = converted(PIL.Image.fromarray(array))
    assert tuple(tensor.shape) == (1, 1, SIZE, SIZE)
    assert tensor[0, 0, :, :6].mean() < -0.9 and tensor[0, 0, :, 10:].mean() > 0.9


@CLEAR
def test_encode_refuses_a_numpy_array_naming_the_accepted_inputs(pipe):
    """encode a numpy uint8 array instead of a PIL image or tensor: refused naming what images may be."""
    array = np.zeros((SIZE, SIZE), dtype=np.uint8)
    assert_clear_error(lambda: pipe.encode(array), ["images", "numpy", "ndarray", "PIL"], pipe)


@CLEAR
def test_pil_images_for_a_two_channel_unet_are_refused():
    """PIL images for a 2-channel UNet: refused naming the channels."""
    pipe = pipeline_for(channels=2)
    assert_clear_error(lambda: pipe.encode(PIL.Image.new("L", (SIZE, SIZE))), ["channel"], pipe)
