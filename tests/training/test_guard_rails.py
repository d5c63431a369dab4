"""The training tool's guard rails, in process: flags that would do nothing, secrets, checkpoint files that are not
read as pickles, output folders that belong to another run, and atomic folder writes."""

import argparse
import fcntl
import os
import pickle
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from diffusers_pdae.file_utils import recover_interrupted_saves, write_folder_atomically
from diffusers_pdae.training.args import public_flags
from diffusers_pdae.training.checkpointing import (
    check_resumable,
    load_generator_state,
    register_checkpoint_hooks,
    save_generator_state,
)
from diffusers_pdae.training.output_dir import LOCK_FILE, claim_output_dir
from diffusers_pdae.training.run import tracker_config

from ..conftest import load_script, tiny_encoder


@pytest.fixture(scope="module")
def train_pdae():
    return load_script("train_pdae")


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--max_train_steps", "0"),
        ("--max_train_steps", "-1"),
        ("--num_epochs", "0"),
        ("--checkpointing_steps", "0"),
        ("--checkpointing_steps", "-5"),
        ("--train_batch_size", "0"),
        ("--learning_rate", "-1e-4"),
        ("--learning_rate", "nan"),
        ("--gradient_accumulation_steps", "0"),
        ("--num_validation_images", "0"),
        ("--latent_dim", "0"),
        ("--ema_max_decay", "1.5"),
        ("--max_train_steps", "2.5"),
    ],
)
def test_flags_that_would_make_a_run_do_nothing_are_refused_at_parse_time(train_pdae, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        train_pdae.parse_args([flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_hub_token_never_goes_to_a_remote_logger_or_into_recorded_flags(train_pdae):
    with pytest.raises(ValueError, match="--hub_token cannot be combined with --logger wandb"):
        train_pdae.parse_args(["--hub_token", "hf_secret", "--logger", "wandb"])
    args = train_pdae.parse_args(["--hub_token", "hf_secret"])
    assert "hub_token" not in public_flags(args) and "hf_secret" not in str(tracker_config(args))
    assert public_flags(args)["latent_dim"] == 64


def test_the_noise_generator_is_checkpointed_as_safetensors_not_pickle(tmp_path):
    accelerator = Accelerator(cpu=True)
    generator = torch.Generator().manual_seed(7)
    encoder = tiny_encoder()
    register_checkpoint_hooks(accelerator, {"encoder": encoder}, {}, generator)
    accelerator.prepare(encoder)
    torch.randn(3, generator=generator)
    state = generator.get_state()
    checkpoint = tmp_path / "checkpoint-1"
    accelerator.save_state(str(checkpoint))
    assert (checkpoint / "noise_generator_0.safetensors").is_file()
    assert not list(checkpoint.glob("custom_checkpoint_*"))
    expected = torch.randn(5, generator=generator)
    generator.manual_seed(123)
    check_resumable(str(checkpoint), num_processes=1)
    accelerator.load_state(str(checkpoint))
    assert torch.equal(generator.get_state(), state) and torch.equal(torch.randn(5, generator=generator), expected)


class _Planted:
    """Unpickling this would create a marker file: what a doctored checkpoint could do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_custom_state_is_refused_unread_and_damaged_states_are_named(tmp_path):
    checkpoint = tmp_path / "checkpoint-3"
    checkpoint.mkdir()
    generator = torch.Generator().manual_seed(0)
    save_generator_state(generator, str(checkpoint), 0)
    marker = tmp_path / "pwned"
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Planted(str(marker))))
    with pytest.raises(ValueError, match="custom_checkpoint_0.pkl: a pickle"):
        check_resumable(str(checkpoint), num_processes=1)
    assert not marker.exists()

    (checkpoint / "custom_checkpoint_0.pkl").unlink()
    with pytest.raises(ValueError, match="lacks noise_generator_1.safetensors"):
        check_resumable(str(checkpoint), num_processes=2)
    (checkpoint / "noise_generator_0.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_generator_state(generator, str(checkpoint), 0)
    from safetensors.torch import save_file

    save_file({"state": torch.zeros(3)}, str(checkpoint / "noise_generator_0.safetensors"))
    with pytest.raises(ValueError, match="does not hold a torch.Generator state"):
        load_generator_state(generator, str(checkpoint), 0)


def run_args(output_dir: Path, **overrides) -> argparse.Namespace:
    return argparse.Namespace(
        output_dir=str(output_dir),
        overwrite_output_dir=overrides.get("overwrite", False),
        resume_from_checkpoint=overrides.get("resume"),
        logging_dir="logs",
    )


def test_an_output_folder_of_another_run_is_refused_unless_resuming_or_overwriting(tmp_path):
    accelerator = Accelerator(cpu=True)
    out = tmp_path / "run"
    claim_output_dir(accelerator, run_args(out))  # a new folder is fine
    assert (out / LOCK_FILE).is_file()
    for name in ("model_index.json", "checkpoint-90/optimizer.bin", "validation/step-90.png"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("old run")
    with pytest.raises(ValueError, match="is not empty .*--resume_from_checkpoint latest, .*--overwrite_output_dir"):
        claim_output_dir(accelerator, run_args(out))
    finished = tmp_path / "finished"  # a finished run without checkpoints: nothing to resume, so refused too
    finished.mkdir()
    (finished / "model_index.json").write_text("old run")
    with pytest.raises(ValueError, match="latest found no complete checkpoint .*model_index.json.*overwrite_output"):
        claim_output_dir(accelerator, run_args(finished, resume="latest"))
    killed = tmp_path / "killed"  # a run killed before its first checkpoint: resubmitted as it was, it starts anew
    for name in ("logs/train_pdae/events", "checkpoint-2.tmp/optimizer.bin"):
        (killed / name).parent.mkdir(parents=True, exist_ok=True)
        (killed / name).write_text("killed run")
    with pytest.raises(ValueError, match="is not empty"):
        claim_output_dir(accelerator, run_args(killed))
    claim_output_dir(accelerator, run_args(killed, resume="latest"))
    assert sorted(p.name for p in killed.iterdir()) == [LOCK_FILE, "logs"]


def test_resuming_keeps_the_folder_and_overwriting_removes_the_old_checkpoints(tmp_path):
    accelerator = Accelerator(cpu=True)
    out = tmp_path / "run"
    for name in ("model_index.json", "checkpoint-90/optimizer.bin", "validation/step-90.png", "logs/events"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("old run")
    claim_output_dir(accelerator, run_args(out, resume="latest"))
    assert (out / "checkpoint-90").is_dir()
    claim_output_dir(accelerator, run_args(out, overwrite=True))
    assert not (out / "checkpoint-90").exists() and not (out / "validation").exists()
    assert (out / "model_index.json").is_file() and (out / "logs" / "events").is_file()


def test_a_second_trainer_on_the_same_folder_gets_a_clear_error(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    holder = open(out / LOCK_FILE, "a+")
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    holder.write("4242\n")
    holder.flush()
    try:
        with pytest.raises(ValueError, match=r"Another training run \(process 4242\) is using --output_dir"):
            claim_output_dir(Accelerator(cpu=True), run_args(out, resume="latest"))
    finally:
        holder.close()


def test_folders_are_written_atomically_and_keep_what_the_new_save_does_not_replace(tmp_path):
    folder = tmp_path / "pipe"
    (folder / "encoder").mkdir(parents=True)
    (folder / "encoder" / "weights").write_text("old encoder")
    (folder / "checkpoint-5").mkdir()

    def failing_write(target: str) -> None:
        os.makedirs(os.path.join(target, "encoder"))
        Path(target, "encoder", "weights").write_text("new encoder")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_folder_atomically(folder, failing_write)
    assert (folder / "encoder" / "weights").read_text() == "old encoder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no staging folder left behind

    def write(target: str) -> None:
        os.makedirs(os.path.join(target, "encoder"))
        Path(target, "encoder", "weights").write_text("new encoder")

    write_folder_atomically(folder, write)
    assert (folder / "encoder" / "weights").read_text() == "new encoder"
    assert (folder / "checkpoint-5").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs (not even the cleanup of an `except Exception`)."""


@pytest.mark.parametrize("kill_at", range(1, 7))  # each rename of a save: staging -> saved, 3 moves, old away, new in
def test_a_save_killed_at_any_rename_is_finished_without_losing_an_entry(tmp_path, monkeypatch, kill_at):
    folder = tmp_path / "run"
    for name in ("checkpoint-2", "checkpoint-4", "logs"):
        (folder / name).mkdir(parents=True)
        (folder / name / "kept").write_text(name)
    (folder / "model_index.json").write_text("old")
    renames, real_replace = [], os.replace

    def replace(source, target):
        renames.append(source)
        if len(renames) == kill_at:
            raise Killed
        real_replace(source, target)

    def write(target: str) -> None:
        os.makedirs(target)
        Path(target, "model_index.json").write_text("new")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Killed):
        write_folder_atomically(folder, write)
    monkeypatch.setattr(os, "replace", real_replace)
    assert [p.name for p in tmp_path.iterdir() if p.name != "run"], "the kill left nothing beside the folder"
    recover_interrupted_saves(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    for name in ("checkpoint-2", "checkpoint-4", "logs"):
        assert (folder / name / "kept").read_text() == name
    # killed while written (the first rename) the old save stays; once written, the new one is put in place
    assert (folder / "model_index.json").read_text() == ("old" if kill_at == 1 else "new")
