"""Fixtures of the training tests: a tiny DPM as a user's pre-trained one, and a folder of images to convert."""

import numpy as np
import PIL.Image
import pytest
from diffusers import DDPMPipeline, DDPMScheduler

from ..conftest import tiny_unet


@pytest.fixture(scope="package")
def tiny_dpm(tmp_path_factory) -> str:
    """A tiny 16x16 one-channel DDPM pipeline folder, as a user's pre-trained DPM would be."""
    folder = tmp_path_factory.mktemp("tiny-dpm")
    DDPMPipeline(unet=tiny_unet(sample_size=16), scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(
        folder
    )
    return str(folder)


@pytest.fixture(scope="package")
def image_folder(tmp_path_factory) -> str:
    """Twelve RGB 20x20 images: a different channel count and size than the UNet's, to be converted."""
    folder = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(0)
    for i in range(12):
        PIL.Image.fromarray(generator.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return str(folder)
