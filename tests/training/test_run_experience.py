"""The training scripts as a diffusers user meets them: help, console, fail-fast checks, resume, export, the Hub."""

import argparse
import json
import os
import subprocess
import sys
from argparse import Namespace

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.training import cards, hub
from diffusers_pdae.training.export import export_checkpoint

from ..conftest import REPO, load_script
from .conftest import write_random_pictures
from .test_train_scripts import FAST_FLAGS, TRAIN_DPM, TRAIN_PDAE, assert_ok, launch


@pytest.mark.parametrize("script", ["train_pdae", "train_dpm", "train_latent_sampler", "train_autoencoder"])
def test_every_flag_has_help_and_help_shows_defaults(script, capsys):
    parser = load_script(script).build_parser()
    undocumented = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert undocumented == []
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    assert "(default: 500)" in capsys.readouterr().out  # --checkpointing_steps


def test_a_run_states_its_set_up_and_what_it_holds_out(tiny_dpm, image_folder, tmp_path):
    out = tmp_path / "run"
    result = launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", tiny_dpm, "--train_data_dir", image_folder,
                                 "--output_dir", str(out), "--max_train_steps", "2", "--checkpointing_steps", "2",
                                 "--validation_steps", "2", *FAST_FLAGS])  # fmt: skip
    assert_ok(result)
    log = result.stderr
    for line in ("***** Running training *****", "Num examples = 10", "Held out for validation = 2 of the 12 training "
                 "images", "Total optimization steps = 2", "Distributed environment", "Saved state to"):  # fmt: skip
        assert line in log, line
    assert log.count("Validation at step 2") == 1  # the step hook and the epoch hook do not both validate


@pytest.mark.slow  # a whole script launch (15-25 s): the end-to-end suite
def test_resume_by_name_inside_the_output_dir_and_exact_step_counts(tiny_dpm, tmp_path):
    out = tmp_path / "run"
    flags = ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(out), "--checkpointing_steps", "2",
             *FAST_FLAGS]  # fmt: skip
    assert_ok(launch(TRAIN_PDAE, [*flags, "--max_train_steps", "4"]))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    resumed = subprocess.run(
        [sys.executable, TRAIN_PDAE, *flags, "--max_train_steps", "4", "--resume_from_checkpoint", "checkpoint-4"],
        cwd=elsewhere, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert_ok(resumed)
    assert f"Resuming from checkpoint {out / 'checkpoint-4'}" in resumed.stdout + resumed.stderr
    info = json.loads((out / "training_info.json").read_text())
    assert info["global_step"] == 4  # no fifth step after resuming the last checkpoint
    missing = launch(TRAIN_PDAE, [*flags, "--max_train_steps", "4", "--resume_from_checkpoint", "checkpoint-9"])
    assert missing.returncode != 0 and "checkpoints there: checkpoint-2, checkpoint-4" in missing.stderr


@pytest.mark.slow  # whole script launches (about 14 s): the end-to-end suite keeps make test short
def test_a_checkpoint_exports_to_the_pipeline_the_run_would_have_saved(tiny_dpm, tmp_path):
    out = tmp_path / "run"
    assert_ok(launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(out),
                                  "--max_train_steps", "2", "--checkpointing_steps", "2", "--use_ema",
                                  *FAST_FLAGS]))  # fmt: skip
    exported = export_checkpoint(str(out / "checkpoint-2"), str(tmp_path / "exported"))
    final = PDAEPipeline.from_pretrained(out)
    for name in ("encoder", "gradient_estimator"):
        for key, value in getattr(final, name).state_dict().items():
            assert torch.equal(getattr(exported, name).state_dict()[key], value), (name, key)
    assert PDAEPipeline.from_pretrained(tmp_path / "exported").latent_dim == 8
    command = [sys.executable, str(REPO / "examples" / "export_checkpoint.py"), str(out / "checkpoint-2"),
               str(tmp_path / "by-script")]  # fmt: skip
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    assert (tmp_path / "by-script" / "model_index.json").is_file()


def test_push_to_hub_that_cannot_reach_the_hub_fails_before_training(tiny_dpm, tmp_path):
    out = tmp_path / "offline"
    result = launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(out),
                                 "--max_train_steps", "2", "--push_to_hub", *FAST_FLAGS])  # fmt: skip
    assert result.returncode != 0
    assert "--push_to_hub: cannot create the Hub repo 'offline'" in result.stderr
    # Recent accelerate launchers repeat the script's stderr in their own RuntimeError: count the script's once.
    own = result.stderr.split("\nRuntimeError: ")[0]
    assert "Running training" not in result.stderr and len(own.splitlines()) < 40


@pytest.mark.slow  # whole script launches (about 14 s): the end-to-end suite keeps make test short
def test_a_missing_logger_or_an_unreachable_dpm_is_named_before_training(tiny_dpm, tmp_path):
    result = launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(tmp_path / "a"),
                                 "--logger", "wandb", *FAST_FLAGS])  # fmt: skip
    assert result.returncode != 0 and "--logger wandb needs wandb" in result.stderr
    result = launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", "someone/not-cached-dpm", "--output_dir",
                                 str(tmp_path / "b"), *FAST_FLAGS])  # fmt: skip
    assert result.returncode != 0
    assert "Cannot load the DPM --pretrained_model_name_or_path 'someone/not-cached-dpm', a Hub id" in result.stderr


class FailingUpload:
    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, exist_ok, private):
        return Namespace(repo_id=f"someone/{repo_id}")

    def upload_folder(self, **kwargs):
        raise ConnectionError("connection reset")


def test_an_upload_failure_keeps_everything_and_says_how_to_upload_later(tmp_path, monkeypatch):
    out = tmp_path / "pdae-run"
    (out / "encoder").mkdir(parents=True)
    (out / "encoder" / "config.json").write_text("{}")
    monkeypatch.setattr(hub, "HfApi", FailingUpload)
    args = argparse.Namespace(
        output_dir=str(out), push_to_hub=True, hub_model_id=None, hub_token=None, hub_private_repo=False,
        pretrained_model_name_or_path="google/ddpm-cifar10-32", dataset_name=None, train_data_dir=None,
        latent_dim=64, max_train_steps=10,
    )  # fmt: skip
    repo_id = hub.create_hub_repo(args)
    with pytest.raises(hub.HubError, match=r"huggingface-cli upload someone/pdae-run .*pdae-run \. --exclude"):
        hub.release_folder(args, cards.pdae_model_card, {"train_loss": 0.1}, {"global_step": 10}, repo_id=repo_id)
    assert (out / "README.md").is_file() and (out / "training_info.json").is_file()


def test_cards_name_local_paths_by_name_only_and_have_no_todo(tmp_path):
    args = argparse.Namespace(
        output_dir=str(tmp_path), pretrained_model_name_or_path=str(tmp_path / "my-ddpm"), dataset_name=None,
        train_data_dir=str(tmp_path / "pictures"), latent_dim=32, num_epochs=100, max_train_steps=6,
    )  # fmt: skip
    (tmp_path / "my-ddpm").mkdir()
    card = str(cards.pdae_model_card(args, "pdae-run", {"train_loss": 0.5}, None))
    assert "TODO" not in card and str(tmp_path) not in card and "base_model" not in card
    assert "my-ddpm (local)" in card and "`--max_train_steps` | `6`" in card and "--num_epochs" not in card


@pytest.mark.slow  # a whole script launch (15-25 s): the end-to-end suite
def test_train_dpm_takes_channels_and_size_from_the_images_and_saves_before_sampling(tmp_path):
    generator = np.random.default_rng(1)
    folder = write_random_pictures(tmp_path / "rgb", 6, 20, generator)
    out = tmp_path / "dpm"
    result = launch(TRAIN_DPM, ["--train_data_dir", str(folder), "--output_dir", str(out), "--max_train_steps", "2",
                                "--train_batch_size", "3", "--ddpm_num_inference_steps", "2", "--eval_batch_size",
                                "2"])  # fmt: skip
    assert_ok(result)
    unet = DDPMPipeline.from_pretrained(out).unet
    assert unet.config.in_channels == 3 and unet.config.sample_size == 20
    assert (out / "samples.png").is_file() and "Saved DDPMPipeline" in result.stderr
    assert result.stderr.index("Saved DDPMPipeline") < result.stderr.index("sampling at step")
    write_random_pictures(folder, 6, 30, generator)
    refused = launch(TRAIN_DPM, ["--train_data_dir", str(folder), "--output_dir", str(tmp_path / "dpm30")])
    assert refused.returncode != 0 and "Pass --resolution" in refused.stderr


@pytest.mark.slow
def test_the_dpm_card_snippet_runs_as_written(tiny_dpm, tmp_path):
    check = "\nassert len(images) == 16 and images[0].size == (16, 16)\nprint('OK')"
    result = subprocess.run(
        [sys.executable, "-c", cards.dpm_usage(tiny_dpm) + check], cwd=tmp_path, capture_output=True, text=True,
        timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-2000:]
