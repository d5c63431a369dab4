"""A latent diffusion model from scratch: examples/train_autoencoder.py (a VQModel or an AutoencoderKL) and
examples/train_dpm.py on its latents, saving what diffusers' LDMPipeline loads and samples. The scripts run
in-process on tiny models (16-px digits, 4x4 latents)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from diffusers import AutoencoderKL, DDIMScheduler, LDMPipeline, VQModel
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from diffusers_pdae.latent_space import encode_images
from diffusers_pdae.training import AutoencoderObjective, latent_scaling_factor, load_autoencoder
from diffusers_pdae.training.export import export_checkpoint
from diffusers_pdae.training.latent_cards import autoencoder_usage, ldm_usage

from ..conftest import load_script

pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")

# The script's default layout (4x downsampling, 3 latent channels), narrower.
TINY_AUTOENCODER = {
    **load_script("train_autoencoder").SMALL_AUTOENCODER_CONFIG,
    "block_out_channels": [8, 16, 16],
    "norm_num_groups": 4,
}
TINY_LATENT_UNET = {
    "sample_size": 4,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 4,
}
COMMON = ["--resolution", "16", "--train_batch_size", "4", "--lr_warmup_steps", "0", "--seed", "0"]
AUTOENCODER_FLAGS = [*COMMON, "--num_validation_images", "2", "--scaling_factor_num_images", "8"]
DPM_FLAGS = [*COMMON, "--ddpm_num_inference_steps", "2", "--eval_batch_size", "2"]


def write_json(path: Path, config: dict) -> str:
    path.write_text(json.dumps(config))
    return str(path)


def train_autoencoder(folder: Path, kind: str, *flags: str) -> Path:
    config = write_json(folder.parent / f"{folder.name}.json", {**TINY_AUTOENCODER, "num_vq_embeddings": 16})
    load_script("train_autoencoder").main([
        "--output_dir", str(folder), "--autoencoder_type", kind, "--model_config_name_or_path", config,
        "--max_train_steps", "2", *AUTOENCODER_FLAGS, *flags,
    ])  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    return folder


@pytest.fixture(scope="module")
def vq_folder(tmp_path_factory) -> Path:
    return train_autoencoder(tmp_path_factory.mktemp("vq") / "vq", "vq", "--checkpointing_steps", "2")


@pytest.fixture(scope="module")
def kl_folder(tmp_path_factory) -> Path:
    return train_autoencoder(tmp_path_factory.mktemp("kl") / "kl", "kl", "--reconstruction_loss", "mse")


@pytest.mark.parametrize(("kind", "model_class"), [("vq", VQModel), ("kl", AutoencoderKL)])
def test_the_autoencoder_run_saves_a_loadable_model_with_the_ldm_scaling_factor(kind, model_class, request):
    folder = request.getfixturevalue(f"{kind}_folder")
    vae = model_class.from_pretrained(folder)
    info = json.loads((folder / "training_info.json").read_text())
    assert info["global_step"] == 2
    metrics = info["metrics"]
    assert vae.config.scaling_factor == pytest.approx(metrics["scaling_factor"]) != 0.18215
    assert metrics["scaling_factor"] == pytest.approx(1 / metrics["latent_std"])
    assert metrics["val_psnr"] > 0 and -1 <= metrics["val_ssim"] <= 1
    card = (folder / "README.md").read_text()
    snippet = autoencoder_usage(folder.name, model_class.__name__, (1, 16, 16))
    assert snippet in card and "1 / std of its latents" in card
    assert (folder / "validation.png").is_file()
    namespace = {}
    exec(snippet.replace(f'"{folder.name}"', repr(str(folder))), namespace)  # the card's snippet runs as written
    assert namespace["reconstructions"].shape == (4, 1, 16, 16) and namespace["latents"].shape == (4, 3, 4, 4)


def test_the_scaling_factor_gives_latents_of_unit_std(vq_folder):
    vae = VQModel.from_pretrained(vq_folder)
    images = torch.rand(16, 1, 16, 16) * 2 - 1
    factor, std = latent_scaling_factor(vae, images, batch_size=5)
    vae.register_to_config(scaling_factor=factor)
    assert encode_images(vae, images).std().item() == pytest.approx(1.0, rel=1e-4)
    assert factor == pytest.approx(1 / std)


def test_the_kl_objective_is_reconstruction_plus_weighted_kl_of_the_posterior():
    torch.manual_seed(0)
    vae = AutoencoderKL(**TINY_AUTOENCODER)
    images = torch.rand(2, 1, 16, 16) * 2 - 1
    objective = AutoencoderObjective(vae, "mse", kl_weight=0.5)
    loss = objective(vae, images, torch.Generator().manual_seed(1))
    posterior = vae.encode(images).latent_dist
    decoded = vae.decode(posterior.sample(torch.Generator().manual_seed(1))).sample
    kl = DiagonalGaussianDistribution(posterior.parameters).kl()
    expected = (decoded - images).pow(2).mean(dim=(1, 2, 3)) + 0.5 * kl / 256
    assert loss.shape == (2,)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_a_latent_dpm_run_saves_an_ldm_pipeline_that_diffusers_samples(kind, request, tmp_path):
    autoencoder = request.getfixturevalue(f"{kind}_folder")
    out = tmp_path / "ldm"
    unet_config = write_json(tmp_path / "unet.json", TINY_LATENT_UNET)
    load_script("train_dpm").main([
        "--pretrained_vae_model_name_or_path", str(autoencoder), "--model_config_name_or_path", unet_config,
        "--output_dir", str(out), "--max_train_steps", "2", "--checkpointing_steps", "2", *DPM_FLAGS,
    ])  # fmt: skip
    pipeline = LDMPipeline.from_pretrained(out)
    pipeline.set_progress_bar_config(disable=True)
    assert isinstance(pipeline.scheduler, DDIMScheduler) and not pipeline.scheduler.config.clip_sample
    assert pipeline.unet.config.sample_size == 4 and pipeline.unet.config.in_channels == 3
    images = pipeline(batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
    assert len(images) == 2 and images[0].size == (16, 16)
    name = "diffusion_pytorch_model.safetensors"
    assert (out / "vqvae" / name).read_bytes() == (autoencoder / name).read_bytes()  # the frozen source weights
    # and its config as the source stores it: not the local folder diffusers records on loading (`_name_or_path`)
    assert (out / "vqvae" / "config.json").read_bytes() == (autoencoder / "config.json").read_bytes()
    assert ldm_usage("ldm") in (out / "README.md").read_text() and (out / "samples.png").is_file()
    namespace = {}
    exec(ldm_usage(str(out)), namespace)  # the card's snippet runs as written
    assert len(namespace["images"]) == 16
    exported = export_checkpoint(str(out / "checkpoint-2"), str(tmp_path / "exported"))
    assert isinstance(exported, LDMPipeline)
    for key, value in pipeline.unet.state_dict().items():
        assert torch.equal(exported.unet.state_dict()[key], value), key
    # the LDM folder itself names its autoencoder: load_autoencoder finds vqvae/ in it
    assert type(load_autoencoder(str(out))) is type(pipeline.vqvae)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(
            ["--resolution", "18"],
            "--resolution 18 is not a multiple of the autoencoder's downsampling factor 4 "
            "(--pretrained_vae_model_name_or_path): pass --resolution 16 or 20.",
            id="resolution-not-divisible",
        ),
        pytest.param(
            ["--model_config_name_or_path", "UNET_1_CHANNEL"],
            "in_channels=1 and out_channels=1, but the autoencoder (--pretrained_vae_model_name_or_path) makes "
            "latents of 3 channels: set in_channels and out_channels to 3.",
            id="unet-channels",
        ),
        pytest.param(
            ["--num_class_embeds", "10"],
            "--num_class_embeds cannot be combined with --pretrained_vae_model_name_or_path",
            id="class-conditional",
        ),
    ],
)
def test_train_dpm_refuses_what_cannot_work_on_the_latents_before_any_work(vq_folder, tmp_path, flags, message):
    one_channel = write_json(tmp_path / "unet1.json", {**TINY_LATENT_UNET, "in_channels": 1, "out_channels": 1})
    flags = [one_channel if flag == "UNET_1_CHANNEL" else flag for flag in flags]
    out = tmp_path / "refused"
    argv = ["--pretrained_vae_model_name_or_path", str(vq_folder), "--output_dir", str(out), *DPM_FLAGS, *flags]
    with pytest.raises(ValueError) as error:
        load_script("train_dpm").main(argv)
    assert message in str(error.value)
    assert not out.exists()  # refused before the run claimed its folder


def test_an_autoencoder_that_is_not_there_is_named_with_its_flag(tmp_path):
    with pytest.raises(ValueError, match=r"--pretrained_vae_model_name_or_path '.*nothing'.*vqvae/ or vae/"):
        load_autoencoder(str(tmp_path / "nothing"))


def test_an_autoencoder_checkpoint_says_how_to_release_it(vq_folder, tmp_path):
    with pytest.raises(ValueError, match="--resume_from_checkpoint .*checkpoint-2 and --max_train_steps 2"):
        export_checkpoint(str(vq_folder / "checkpoint-2"), str(tmp_path / "exported"))


def test_an_autoencoder_run_resumes_from_its_checkpoint(vq_folder, tmp_path):
    """The run records the flags it derives (resolution, latent channels, codebook size) before checking a resume."""
    out = tmp_path / "resumed"
    load_script("train_autoencoder").main([
        "--output_dir", str(out), "--autoencoder_type", "vq", "--model_config_name_or_path",
        str(vq_folder.parent / "vq.json"), "--max_train_steps", "3", *AUTOENCODER_FLAGS,
        "--resume_from_checkpoint", str(vq_folder / "checkpoint-2"),
    ])  # fmt: skip
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 3
    assert VQModel.from_pretrained(out).config.scaling_factor != 0.18215
