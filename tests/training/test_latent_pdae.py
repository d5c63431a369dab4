"""train_pdae.py on a latent DPM (an LDMPipeline folder: unet + vqvae + scheduler): training in latent space with the
autoencoder frozen, --resolution as the pixel size, and a released PDAEPipeline that carries the autoencoder."""

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler, LDMPipeline
from safetensors.torch import load_file

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.interactive import PDAEPlayground
from diffusers_pdae.training.export import export_checkpoint

from ..conftest import load_script, tiny_images, tiny_unet, tiny_vqvae
from .conftest import write_random_pictures
from .test_train_scripts import FAST_FLAGS, TRAIN_PDAE, assert_ok, launch


def save_tiny_ldm(folder: Path, scaling_factor: float | None = 0.5) -> str:
    """An LDMPipeline folder: a VQModel (32x32 one-channel pixels <-> 3x8x8 latents) and a UNet on its latents;
    `scaling_factor=None` writes a VQ config without one (as CompVis/ldm-celebahq-256's)."""
    unet = tiny_unet(in_channels=3, sample_size=8)
    LDMPipeline(vqvae=tiny_vqvae(), unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000)).save_pretrained(
        folder
    )
    if scaling_factor is None:
        config_path = folder / "vqvae" / "config.json"
        config = json.loads(config_path.read_text())
        del config["scaling_factor"]
        config_path.write_text(json.dumps(config))
    return str(folder)


@pytest.fixture(scope="module")
def tiny_ldm(tmp_path_factory) -> str:
    return save_tiny_ldm(tmp_path_factory.mktemp("tiny-ldm"))


@pytest.fixture(scope="module")
def train_pdae():
    return load_script("train_pdae")


def test_training_on_a_latent_dpm_releases_a_latent_pipeline(train_pdae, tiny_ldm, tmp_path):
    out = tmp_path / "pdae-ldm"
    train_pdae.main(["--pretrained_model_name_or_path", tiny_ldm, "--output_dir", str(out),
                     "--max_train_steps", "2", *FAST_FLAGS])  # fmt: skip
    for source, released in (("vqvae", "vae"), ("unet", "unet")):  # the frozen models, byte for byte
        for name in ("diffusion_pytorch_model.safetensors", "config.json"):
            assert Path(tiny_ldm, source, name).read_bytes() == (out / released / name).read_bytes(), (source, name)
    pipe = PDAEPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    images = tiny_images(2, size=32)
    assert pipe.image_shape == (1, 32, 32) and pipe.sample_shape == (3, 8, 8)
    assert pipe.encoder.config.sample_size == 32  # the encoder reads the pixel images
    assert pipe.reconstruct(images, 2, output_type="pt").images.shape == (2, 1, 32, 32)
    assert pipe.reconstruct(images, 2, output_type="latent").images.shape == (2, 3, 8, 8)
    info = json.loads((out / "training_info.json").read_text())
    assert info["flags"]["autoencoder"] == "VQModel" and info["flags"]["resolution"] == 32
    assert "is a latent diffusion model" in (out / "README.md").read_text()


def test_a_run_resumes_with_the_command_line_that_started_it(train_pdae, tiny_ldm, tmp_path):
    """What the script derives (--resolution from the UNet and the autoencoder, the autoencoder's class) is not a
    flag the user changed: resuming with the same command line continues the run."""
    out = tmp_path / "run"
    argv = ["--pretrained_model_name_or_path", tiny_ldm, "--output_dir", str(out), "--checkpointing_steps", "1",
            *FAST_FLAGS]  # fmt: skip
    train_pdae.main([*argv, "--max_train_steps", "1"])
    train_pdae.main([*argv, "--max_train_steps", "2", "--resume_from_checkpoint", "latest"])
    info = json.loads((out / "training_info.json").read_text())
    assert info["global_step"] == 2 and info["flags"]["resolution"] == 32


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--resolution", "8"], r"--resolution 8 does not fit the pre-trained DPM: pass --resolution 32 \(the UNet's "
                                r"sample_size 8 times the autoencoder's downsampling factor 4"),
        (["--encoder_type", "residual"], r"--encoder_type residual is shaped like the UNet's down half"),
    ],
)  # fmt: skip
def test_a_latent_dpm_refuses_what_does_not_fit_before_training(train_pdae, tiny_ldm, tmp_path, flags, message):
    argv = ["--pretrained_model_name_or_path", tiny_ldm, "--output_dir", str(tmp_path / "out"),
            "--max_train_steps", "2", *flags]  # fmt: skip
    argv += FAST_FLAGS if "residual" not in flags else ["--latent_dim", "8", "--train_batch_size", "4"]
    with pytest.raises(ValueError, match=message):
        train_pdae.main(argv)


def test_an_autoencoder_without_a_scaling_factor_needs_it_named(train_pdae, tmp_path):
    folder = save_tiny_ldm(tmp_path / "ldm", scaling_factor=None)
    argv = ["--pretrained_model_name_or_path", folder, "--output_dir", str(tmp_path / "out"), "--max_train_steps",
            "1", *FAST_FLAGS]  # fmt: skip
    with pytest.raises(ValueError, match=r"vqvae/config.json .* has no scaling_factor.*--vae_scaling_factor"):
        train_pdae.main(argv)
    train_pdae.main([*argv, "--vae_scaling_factor", "1.0", "--overwrite_output_dir"])
    assert PDAEPipeline.from_pretrained(tmp_path / "out").vae.config.scaling_factor == 1.0


@pytest.fixture(scope="module")
def latent_pdae(train_pdae, tiny_ldm, tmp_path_factory) -> Path:
    """A PDAE trained 2 steps on the tiny LDM, with its checkpoint-2."""
    out = tmp_path_factory.mktemp("latent-pdae") / "run"
    train_pdae.main(["--pretrained_model_name_or_path", tiny_ldm, "--output_dir", str(out), "--max_train_steps", "2",
                     "--checkpointing_steps", "2", *FAST_FLAGS])  # fmt: skip
    return out


@pytest.mark.slow  # three scripts and a playground on the latent pipeline (about a minute)
def test_the_other_tools_take_a_latent_pipeline_unchanged(latent_pdae, tmp_path):
    """export_checkpoint, train_latent_sampler.py, evaluate_reconstruction.py and the app's playground work on a
    latent pipeline as on a pixel one: pixel images in and out."""
    exported = export_checkpoint(str(latent_pdae / "checkpoint-2"), str(tmp_path / "exported"))
    final = PDAEPipeline.from_pretrained(latent_pdae)
    images = tiny_images(2, size=32)
    assert type(exported.vae).__name__ == "VQModel" and torch.equal(exported.encode(images), final.encode(images))

    sampler_out = tmp_path / "with-sampler"
    load_script("train_latent_sampler").main([
        "--pretrained_model_name_or_path", str(latent_pdae), "--output_dir", str(sampler_out), "--max_train_steps",
        "2", "--train_batch_size", "4", "--hidden_dim", "16", "--num_layers", "2", "--time_embed_dim", "8",
        "--num_validation_codes", "8", "--num_validation_images", "2", "--validation_inference_steps", "2",
        "--lr_warmup_steps", "0", "--save_images_epochs", "1000",
    ])  # fmt: skip
    with_sampler = PDAEPipeline.from_pretrained(sampler_out)
    with_sampler.set_progress_bar_config(disable=True)
    samples = with_sampler(batch_size=2, num_inference_steps=2, code_num_inference_steps=2, output_type="pt")
    assert samples.images.shape == (2, 1, 32, 32)

    figures = load_script("evaluate_reconstruction").main([
        "--pipeline", str(latent_pdae), "--num_images", "4", "--steps", "2", "--num_probe_images", "100",
    ])  # fmt: skip
    assert set(figures["figures"]["2"]) >= {"pdae_inferred_xT", "ddim_inversion", "autoencoder"}  # + the ceiling

    playground = PDAEPlayground(final, num_inference_steps=2)
    stroke = np.zeros((28, 28), dtype=np.uint8)
    stroke[6:22, 12:16] = 255  # a "1"
    shown = playground.reconstruct(PIL.Image.fromarray(stroke))
    assert {"input", "inferred", "random"} <= set(shown)


@pytest.mark.slow  # an accelerate launch on 256-pixel images (about a minute)
def test_a_scaled_down_compvis_ldm_trains_through_accelerate_and_reconstructs_256_pixel_images(tmp_path):
    """The layout of CompVis/ldm-celebahq-256 with fewer channels (benchmarks/ldm_layouts.py), saved as an
    LDMPipeline folder; PDAE trained on 256-pixel RGB images for two steps through `accelerate launch`; the result
    loads, keeps the autoencoder and UNet byte for byte, and reconstructs 256x256 images from 64x64x3 latents."""
    layouts = load_script("ldm_layouts", folder="benchmarks")
    ldm = layouts.save_ldm_pipeline(layouts.scaled_down_ldm(scaling_factor=1.0), tmp_path / "ldm")
    pictures = write_random_pictures(tmp_path / "faces", 6, 256, np.random.default_rng(0))
    out = tmp_path / "pdae"
    result = launch(TRAIN_PDAE, [
        "--pretrained_model_name_or_path", str(ldm), "--train_data_dir", str(pictures), "--output_dir", str(out),
        "--resolution", "256", "--max_train_steps", "2", "--train_batch_size", "1", "--num_validation_images", "1",
        "--validation_inference_steps", "2", "--lr_warmup_steps", "0", "--latent_dim", "8",
        "--encoder_block_out_channels", "8", "16", "--encoder_norm_num_groups", "4", "--save_images_epochs", "1000",
    ])  # fmt: skip
    assert_ok(result)
    for source, released in (("vqvae", "vae"), ("unet", "unet")):
        weights = "diffusion_pytorch_model.safetensors"
        assert (ldm / source / weights).read_bytes() == (out / released / weights).read_bytes(), source
    pipe = PDAEPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert pipe.reconstruct(images, 2, output_type="pt").images.shape == (1, 3, 256, 256)
    assert pipe.reconstruct(images, 2, output_type="latent").images.shape == (1, 3, 64, 64)


def test_cached_latents_are_the_autoencoders_of_each_orientation():
    """CachedLatentDataset keeps each image's latents and its mirror's (not the mirrored latents), and a KL
    autoencoder's posterior mean and std, so a step draws the same sample as encoding on the fly."""
    from diffusers_pdae.data import TensorImageDataset
    from diffusers_pdae.data.latent_cache import CachedLatentDataset
    from diffusers_pdae.latent_space import encode_images

    from ..pipelines.test_latent_pipeline import tiny_kl_vae

    images = tiny_images(5, size=32)
    dataset = TensorImageDataset(images, torch.zeros(5, dtype=torch.long))
    vq = tiny_vqvae()
    cached = CachedLatentDataset(dataset, vq, random_flip=True, batch_size=2, show_progress=False)
    assert torch.allclose(cached.latents[False], encode_images(vq, images), atol=1e-6)
    assert torch.allclose(cached.latents[True], encode_images(vq, images.flip(-1)), atol=1e-6)
    assert not torch.allclose(cached.latents[True], cached.latents[False].flip(-1), atol=1e-3)
    seen = {bool(torch.equal(cached[0]["pixel_values"], images[0].flip(-1))) for _ in range(40)}
    assert seen == {False, True}  # both orientations come up
    kl = tiny_kl_vae()
    moments = CachedLatentDataset(dataset, kl, random_flip=False, show_progress=False)
    posterior = kl.encode(images).latent_dist
    assert torch.allclose(moments.latents[False], posterior.mean * 0.7, atol=1e-6)
    assert torch.allclose(moments.stds[False], posterior.std * 0.7, atol=1e-6)
    assert set(moments[1]) == {"pixel_values", "class_labels", "latents", "latent_std"}


def test_caching_latents_trains_as_encoding_them_at_every_step(train_pdae, tiny_ldm, tmp_path):
    common = ["--pretrained_model_name_or_path", tiny_ldm, "--max_train_steps", "2", *FAST_FLAGS]
    train_pdae.main([*common, "--output_dir", str(tmp_path / "fly")])
    train_pdae.main([*common, "--output_dir", str(tmp_path / "cached"), "--cache_latents"])
    for name in ("encoder", "gradient_estimator"):
        fly = load_file(tmp_path / "fly" / name / "diffusion_pytorch_model.safetensors")
        cached = load_file(tmp_path / "cached" / name / "diffusion_pytorch_model.safetensors")
        assert all(torch.allclose(fly[key], cached[key], atol=1e-5) for key in fly), name
    with pytest.raises(ValueError, match="--cache_latents applies to a latent DPM"):
        train_pdae.main([*common[2:], "--output_dir", str(tmp_path / "pixel"), "--cache_latents"])
