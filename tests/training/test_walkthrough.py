"""docs/training.md's path on tiny models: own RGB pictures -> DPM -> PDAE -> resume -> export -> evaluate -> load."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline

from .conftest import write_random_pictures
from .test_train_scripts import FAST_FLAGS, TRAIN_DPM, TRAIN_PDAE, assert_ok, launch, offline_env

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_documented_path_from_pictures_to_a_loaded_pipeline(tmp_path):
    pictures = write_random_pictures(tmp_path / "my_pictures", 12, 24, np.random.default_rng(3))
    dpm, pdae = tmp_path / "my-ddpm", tmp_path / "my-pdae"

    assert_ok(launch(TRAIN_DPM, ["--train_data_dir", str(pictures), "--resolution", "16", "--output_dir", str(dpm),
                                 "--use_ema", "--max_train_steps", "2", "--checkpointing_steps", "2",
                                 "--train_batch_size", "4", "--ddpm_num_inference_steps", "2",
                                 "--eval_batch_size", "2"]))  # fmt: skip
    pdae_flags = ["--pretrained_model_name_or_path", str(dpm), "--train_data_dir", str(pictures),
                  "--output_dir", str(pdae), "--use_ema", "--warm_start_from_unet", "--checkpointing_steps", "2",
                  *FAST_FLAGS]  # fmt: skip
    assert_ok(launch(TRAIN_PDAE, [*pdae_flags, "--max_train_steps", "2"]))
    resumed = launch(TRAIN_PDAE, [*pdae_flags, "--max_train_steps", "4", "--resume_from_checkpoint", "latest"])
    assert_ok(resumed)
    assert "checkpoint-2" in resumed.stdout + resumed.stderr
    assert json.loads((pdae / "training_info.json").read_text())["global_step"] == 4

    export = [sys.executable, str(REPO / "examples" / "export_checkpoint.py"), str(pdae / "checkpoint-4"),
              str(tmp_path / "my-pdae-step-4")]  # fmt: skip
    assert_ok(subprocess.run(export, env=offline_env(), capture_output=True, text=True, timeout=300))
    figures = tmp_path / "figures.json"
    evaluate = [sys.executable, str(REPO / "examples" / "evaluate_reconstruction.py"), "--pipeline", str(pdae),
                "--train_data_dir", str(pictures), "--num_images", "4", "--steps", "2",
                "--json", str(figures)]  # fmt: skip
    assert_ok(subprocess.run(evaluate, env=offline_env(), capture_output=True, text=True, timeout=300))
    assert set(json.loads(figures.read_text())["figures"]["2"]) == {
        "pdae_inferred_xT", "pdae_random_xT", "ddim_inversion", "dpm_random_xT",
    }  # fmt: skip

    pipe = PDAEPipeline.from_pretrained(pdae)
    assert isinstance(pipe, PDAEPipeline) and pipe.unet.config.in_channels == 3
    exported = PDAEPipeline.from_pretrained(tmp_path / "my-pdae-step-4")
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(pipe.encode(images), exported.encode(images))  # the final save is the step-4 EMA
