"""Loading and saving a pipeline folder: missing pieces are named, the noise schedule is checked, saves are atomic."""

import json
import shutil

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

import diffusers_pdae  # noqa: F401
from diffusers_pdae import GradientEstimator, PDAEPipeline

from ..conftest import tiny_encoder, tiny_images, tiny_pipeline, tiny_unet


def saved_pipeline(folder):
    unet = tiny_unet()
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    torch.manual_seed(3)
    estimator = GradientEstimator.from_unet(unet, latent_dim=8, noise_scheduler=scheduler)
    PDAEPipeline(unet, scheduler, tiny_encoder(), estimator).save_pretrained(folder)
    return folder


def test_a_missing_component_or_weight_file_is_named(tmp_path):
    folder = saved_pipeline(tmp_path / "pipe")
    shutil.rmtree(folder / "encoder")
    with pytest.raises(FileNotFoundError, match=r"encoder is missing: no config.json"):
        PDAEPipeline.from_pretrained(folder)
    folder = saved_pipeline(tmp_path / "pipe2")
    (folder / "gradient_estimator" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"gradient_estimator has no weights"):
        PDAEPipeline.from_pretrained(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        PDAEPipeline.from_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="No pipeline folder at"):
        PDAEPipeline.from_pretrained(str(tmp_path / "nowhere"))


def test_a_scheduler_with_another_noise_schedule_is_refused_naming_both(tmp_path):
    folder = saved_pipeline(tmp_path / "pipe")
    trained = json.loads((folder / "gradient_estimator" / "config.json").read_text())["train_noise_schedule"]
    assert trained["num_train_timesteps"] == 1000 and trained["beta_schedule"] == "linear"
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "beta_schedule": "squaredcos_cap_v2"}))
    with pytest.raises(ValueError, match="squaredcos_cap_v2.*not the one the gradient estimator was trained with"):
        PDAEPipeline.from_pretrained(folder)
    pipeline = PDAEPipeline.from_pretrained(saved_pipeline(tmp_path / "ok"))
    with pytest.raises(ValueError, match="'num_train_timesteps': 500"):
        PDAEPipeline(
            pipeline.unet, DDPMScheduler(num_train_timesteps=500), pipeline.encoder, pipeline.gradient_estimator
        )
    # sampling settings may change freely
    PDAEPipeline(
        pipeline.unet, DDPMScheduler.from_config(pipeline.scheduler.config, clip_sample=True), pipeline.encoder,
        pipeline.gradient_estimator,
    )  # fmt: skip


def test_save_pretrained_is_atomic_and_keeps_other_files(tmp_path, monkeypatch):
    folder = saved_pipeline(tmp_path / "pipe")
    (folder / "checkpoint-7").mkdir()
    before = (folder / "encoder" / "diffusion_pytorch_model.safetensors").read_bytes()
    pipeline = PDAEPipeline.from_pretrained(folder)
    with torch.no_grad():
        for parameter in pipeline.encoder.parameters():
            parameter.add_(1.0)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(pipeline.gradient_estimator), "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        pipeline.save_pretrained(folder)
    assert (folder / "encoder" / "diffusion_pytorch_model.safetensors").read_bytes() == before
    monkeypatch.undo()
    pipeline.save_pretrained(folder)
    assert (folder / "encoder" / "diffusion_pytorch_model.safetensors").read_bytes() != before
    assert (folder / "checkpoint-7").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]
    reloaded = PDAEPipeline.from_pretrained(folder)
    for key, value in pipeline.encoder.state_dict().items():
        assert torch.equal(reloaded.encoder.state_dict()[key], value)


def test_damaged_files_are_named_before_diffusers_reads_them(tmp_path):
    folder = saved_pipeline(tmp_path / "pipe")
    weights = folder / "gradient_estimator" / "diffusion_pytorch_model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) - 100])
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors is truncated"):
        PDAEPipeline.from_pretrained(folder)
    weights.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    with pytest.raises(ValueError, match="git-lfs pointer"):
        PDAEPipeline.from_pretrained(folder)
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ValueError, match="is not a safetensors file"):
        PDAEPipeline.from_pretrained(folder)
    weights.write_bytes(intact)
    (folder / "model_index.json").write_text("{'unet': broken")
    with pytest.raises(ValueError, match="model_index.json is not valid JSON"):
        PDAEPipeline.from_pretrained(folder)


def test_variants_load_as_diffusers_loads_them(tmp_path):
    """A folder saved with a variant loads it; asking for a variant the folder lacks gets diffusers' own message,
    naming the variant, not a weights check of files that are not there."""
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="variant=fp16"):
        PDAEPipeline.from_pretrained(tmp_path / "plain", variant="fp16")
    pipe.save_pretrained(tmp_path / "fp16", variant="fp16")
    loaded = PDAEPipeline.from_pretrained(tmp_path / "fp16", variant="fp16")
    images = tiny_images(2)
    assert torch.equal(loaded.encode(images), pipe.encode(images))


def test_loaded_components_name_the_folder_they_came_from(tmp_path):
    """Loading reads a private hard-linked snapshot of the folder; each component's recorded origin (diffusers'
    `_name_or_path`, which a re-save writes into its config) is the folder the user named, not that snapshot."""
    tiny_pipeline().save_pretrained(tmp_path / "pipe")
    loaded = PDAEPipeline.from_pretrained(tmp_path / "pipe")
    for name in ("unet", "encoder", "gradient_estimator"):
        assert getattr(loaded, name).config["_name_or_path"] == str(tmp_path / "pipe" / name), name
    assert loaded.config["_name_or_path"] == str(tmp_path / "pipe")
