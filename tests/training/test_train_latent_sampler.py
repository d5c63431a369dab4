"""examples/train_latent_sampler.py end to end on a tiny pipeline: output, card, exact resume, checkpoint export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffusers_pdae import LatentSampler, PDAEPipeline
from diffusers_pdae.training.export import export_checkpoint

from ..conftest import tiny_pipeline
from .test_train_scripts import REPO, assert_ok, launch

TRAIN_SAMPLER = str(REPO / "examples" / "train_latent_sampler.py")
FLAGS = [
    "--train_batch_size", "4", "--hidden_dim", "16", "--num_layers", "2", "--time_embed_dim", "8",
    "--num_validation_codes", "8", "--num_validation_images", "2", "--validation_inference_steps", "2",
    "--lr_warmup_steps", "0", "--save_images_epochs", "1000", "--checkpointing_steps", "2", "--seed", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_pipeline_folder(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny-pdae")
    tiny_pipeline().save_pretrained(folder)
    return str(folder)


def sampler_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "latent_sampler" / "diffusion_pytorch_model.safetensors")


@pytest.mark.slow  # a whole script launch (15-25 s): the end-to-end suite
def test_sampler_run_saves_a_generating_pipeline_and_resumes_exactly(tiny_pipeline_folder, image_folder, tmp_path):
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    common = ["--pretrained_model_name_or_path", tiny_pipeline_folder, "--train_data_dir", image_folder, *FLAGS]
    assert_ok(launch(TRAIN_SAMPLER, [*common, "--output_dir", str(first), "--max_train_steps", "4"]))

    pipeline = PDAEPipeline.from_pretrained(first)
    assert isinstance(pipeline.latent_sampler, LatentSampler)
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(batch_size=2, num_inference_steps=2, code_num_inference_steps=2, output_type="pt").images
    assert images.shape == (2, 1, 16, 16)
    info = json.loads((first / "training_info.json").read_text())
    assert info["global_step"] == 4 and info["metrics"]["val_code_fd"] >= 0
    card = (first / "README.md").read_text()
    assert "latent sampler" in card and "pipe(batch_size=4" in card and "unconditional-image-generation" in card

    shutil.copytree(first / "checkpoint-2", resumed / "checkpoint-2")
    result = launch(TRAIN_SAMPLER, [*common, "--output_dir", str(resumed), "--max_train_steps", "4",
                                    "--resume_from_checkpoint", "checkpoint-2"])  # fmt: skip
    assert_ok(result)
    expected, got = sampler_weights(first), sampler_weights(resumed)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)

    exported = export_checkpoint(str(first / "checkpoint-4"), str(tmp_path / "exported"))
    for key, value in load_file(
        tmp_path / "exported" / "latent_sampler" / "diffusion_pytorch_model.safetensors"
    ).items():
        assert torch.equal(value, expected[key])
    assert exported.latent_scheduler.config.clip_sample is False
