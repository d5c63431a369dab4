"""PDAEPipeline on a latent DPM (UNet2DModel + VQModel or AutoencoderKL): pixel images in and out, latents inside,
decoded exactly as diffusers' LDMPipeline / DiTPipeline decode them."""

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, LDMPipeline

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.latent_space import decode_latents, encode_images

from ..conftest import LATENT_DIM, tiny_images, tiny_latent_pipeline, tiny_unet, tiny_vqvae


def tiny_kl_vae(seed: int = 7) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 8), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.7,
    ).eval()  # fmt: skip


@pytest.fixture(params=["vq", "kl"])
def pipe(request) -> PDAEPipeline:
    return tiny_latent_pipeline(tiny_vqvae() if request.param == "vq" else tiny_kl_vae())


def test_pixels_in_and_out_latents_inside(pipe):
    images = tiny_images(2, size=32)
    channels = pipe.vae.config.latent_channels
    assert pipe.image_shape == (1, 32, 32) and pipe.sample_shape == (channels, 8, 8)
    z = pipe.encode(images)
    x_T = pipe.invert(images, z, num_inference_steps=3)
    assert z.shape == (2, LATENT_DIM) and x_T.shape == (2, channels, 8, 8)
    assert pipe.decode(x_T, z, 3, output_type="pt").images.shape == (2, 1, 32, 32)
    assert pipe.decode(x_T, z, 3, output_type="latent").images.shape == (2, channels, 8, 8)
    assert pipe.reconstruct(images, 3, output_type="np").images.shape == (2, 32, 32, 1)
    assert pipe(z=z, num_inference_steps=2, output_type="pt").images.shape == (2, 1, 32, 32)
    frames = pipe.interpolate(images[0], images[1], num=3, num_inference_steps=2, output_type="latent").images
    assert frames.shape == (3, channels, 8, 8)
    edits = pipe.manipulate(images, torch.ones(LATENT_DIM), [0.0, 1.0], num_inference_steps=2, output_type="pt")
    assert edits.images.shape == (4, 1, 32, 32)


def test_inversion_starts_from_the_autoencoders_deterministic_latents(pipe, monkeypatch):
    """x_0 of the inversion is the autoencoder's latents of the image (unquantized VQ latents, the KL posterior's
    mean) times the scaling factor, the same on every call."""
    images = tiny_images(2, size=32)
    seen = []
    original = pipe._invert_latents
    monkeypatch.setattr(
        pipe, "_invert_latents", lambda sample, *args, **kw: seen.append(sample) or original(sample, *args, **kw)
    )
    first, second = pipe.invert(images, num_inference_steps=2), pipe.invert(images, num_inference_steps=2)
    assert torch.equal(first, second)
    assert torch.equal(seen[0], encode_images(pipe.vae, images))


def test_decoding_is_ldm_pipelines_bit_for_bit(monkeypatch):
    """Our decoding of a latent and diffusers' LDMPipeline's (scaling factor, VQ quantization, clamping) agree
    exactly: LDMPipeline is made to end its loop on our final latents, then both decode them."""
    pipe = tiny_latent_pipeline()
    images = tiny_images(2, size=32)
    z = pipe.encode(images)
    x_T = pipe.invert(images, z, num_inference_steps=3)
    ours_latent = pipe.decode(x_T, z, 3, output_type="latent").images
    ours = pipe.decode(x_T, z, 3, output_type="np").images
    ldm = LDMPipeline(vqvae=pipe.vae, unet=pipe.unet, scheduler=DDIMScheduler.from_config(pipe.scheduler.config))
    ldm.set_progress_bar_config(disable=True)

    class Ends:
        prev_sample = ours_latent

    monkeypatch.setattr(ldm.scheduler, "step", lambda *args, **kwargs: Ends)
    theirs = ldm(batch_size=2, num_inference_steps=1, output_type="np").images
    assert (ours == theirs).all()
    assert torch.equal(decode_latents(pipe.vae, ours_latent), pipe.vae.decode(ours_latent / 0.5).sample)


def test_pixels_where_latents_belong_and_the_reverse_are_named_before_any_work(pipe):
    calls = []
    pipe.unet.conv_in.register_forward_pre_hook(lambda *args: calls.append(1))
    pixels, latents = tiny_images(2, size=32), torch.randn(2, pipe.vae.config.latent_channels, 8, 8)
    with pytest.raises(ValueError, match=r"size of this latent pipeline's pixel images"):
        pipe.decode(pixels, pipe.encode(pixels), 2)
    with pytest.raises(ValueError, match=r"size of this latent pipeline's pixel images"):
        pipe(latents=pixels, num_inference_steps=2)
    with pytest.raises(ValueError, match=r"have the shape of this latent pipeline's diffusion latents"):
        pipe.encode(latents)
    with pytest.raises(ValueError, match=r"have the shape of this latent pipeline's diffusion latents"):
        pipe.reconstruct(latents, 2)
    assert not calls


def test_an_autoencoder_that_does_not_fit_the_unet_is_refused():
    pipe = tiny_latent_pipeline()
    with pytest.raises(ValueError, match="latents have 4 channels but the UNet denoises 3"):
        PDAEPipeline(**{**pipe.components, "vae": tiny_vqvae(latent_channels=4)})
    with pytest.raises(ValueError, match="VQModel .* or AutoencoderKL"):
        PDAEPipeline(**{**pipe.components, "vae": tiny_unet()})
    with pytest.raises(ValueError, match=r"or the autoencoder's pixel images: 3 channels, 32 px"):
        PDAEPipeline(**{**pipe.components, "vae": tiny_vqvae(in_channels=3, latent_channels=3)})


def test_a_latent_pipeline_saves_and_loads_bit_for_bit(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = PDAEPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.vae) is type(pipe.vae)
    images = tiny_images(2, size=32)
    expected = pipe.reconstruct(images, 3, output_type="pt").images
    assert torch.equal(loaded.reconstruct(images, 3, output_type="pt").images, expected)
