"""Training faults: flags that would make a run do nothing, secrets, doctored checkpoints, output folders of another
run, two trainers on one folder, and unreadable or missing training images.

Flags refused by the scripts' `parse_args(argv)` are checked in process (what a user sees: argparse's exit 2 naming
the flag, or a ValueError before anything is loaded); everything else runs the script as a user would, in a
subprocess (`@pytest.mark.slow`, `make test-slow`).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ..conftest import REPO, load_script
from ..training.conftest import write_random_pictures
from .conftest import (
    CLEAR,
    HANDLED,
    assert_training_refused,
    is_clear_type,
    last_exception,
    names_one_of,
    pdae_flags,
    steps_done,
    train,
    train_command,
    train_env,
)

pytestmark = pytest.mark.reliability(area="training")

SECRET = "SECRET123"
TINY_UNET_CONFIG = REPO / "tests" / "training" / "tiny_unet.json"  # the 16x16 one-channel UNet of tiny_dpm
LOCK_KW = ["lock", "another", "already running", "in use", "concurrent"]


@pytest.fixture(scope="module")
def train_pdae():
    return load_script("train_pdae")


@pytest.fixture(scope="module")
def train_dpm():
    return load_script("train_dpm")


def dpm_flags(out_dir: Path, *extra: str) -> list[str]:
    return [
        "--output_dir", str(out_dir), "--model_config_name_or_path", str(TINY_UNET_CONFIG), "--resolution", "16",
        "--train_batch_size", "4", "--ddpm_num_inference_steps", "2", "--eval_batch_size", "4",
        "--lr_warmup_steps", "0", "--save_images_epochs", "1000", "--max_train_minutes", "1",
        "--max_train_steps", "2", *extra,
    ]  # fmt: skip


def assert_argparse_refuses(parse_args, argv: list[str], keywords: list[str], capsys) -> None:
    """`parse_args(argv)` exits with argparse's code 2 and an error naming one of `keywords`."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert exit_info.value.code == 2, f"exit {exit_info.value.code}: {errors}"
    assert names_one_of(" ".join(errors), keywords), f"exit 2 naming none of {keywords}: {errors}"


# ------------------------------------------------------------------------------------ flags refused at parse time


@CLEAR
@pytest.mark.parametrize(
    "extra, steps",
    [
        pytest.param(["--max_train_steps", "0"], 2, id="max-train-steps-zero"),
        pytest.param(["--max_train_steps=-1"], 2, id="max-train-steps-negative"),
        pytest.param(["--num_epochs", "0"], None, id="num-epochs-zero"),
        pytest.param(["--checkpointing_steps", "0"], 2, id="checkpointing-steps-zero"),
        pytest.param(["--checkpointing_steps=-5"], 2, id="checkpointing-steps-negative"),
        pytest.param(["--train_batch_size", "0"], 2, id="train-batch-size-zero"),
        pytest.param(["--learning_rate=-1e-4"], 2, id="learning-rate-negative"),
        pytest.param(["--gradient_accumulation_steps", "0"], 2, id="gradient-accumulation-steps-zero"),
        pytest.param(["--num_validation_images", "0"], 2, id="num-validation-images-zero"),
    ],
)
def test_train_pdae_refuses_a_flag_that_would_make_the_run_do_nothing(train_pdae, tiny_dpm, tmp_path, capsys,
                                                                      extra, steps):  # fmt: skip
    """`train_pdae.py {extra}`: argparse's exit 2 naming the flag."""
    flag = extra[0].split("=")[0].lstrip("-")
    argv = pdae_flags(tiny_dpm, tmp_path / "out", *extra, steps=steps)
    assert_argparse_refuses(train_pdae.parse_args, argv, [flag], capsys)


@CLEAR
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["--max_train_steps=-1"], id="max-train-steps-negative"),
        pytest.param(["--ddpm_num_inference_steps", "0"], id="ddpm-num-inference-steps-zero"),
    ],
)
def test_train_dpm_refuses_a_flag_that_would_make_the_run_do_nothing(train_dpm, tmp_path, capsys, extra):
    """`train_dpm.py {extra}`: argparse's exit 2 naming the flag."""
    flag = extra[0].split("=")[0].lstrip("-")
    assert_argparse_refuses(train_dpm.parse_args, dpm_flags(tmp_path / "out", *extra), [flag], capsys)


@CLEAR
def test_the_hub_token_is_refused_beside_a_remote_logger(train_pdae, tiny_dpm, tmp_path):
    """--hub_token together with --logger wandb: refused naming --hub_token before anything is logged."""
    argv = pdae_flags(tiny_dpm, tmp_path / "out", "--hub_token", SECRET, "--logger", "wandb")
    with pytest.raises(ValueError, match="hub_token"):
        train_pdae.parse_args(argv)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ runs of the scripts


@pytest.mark.slow
@CLEAR
def test_a_resolution_other_than_the_dpms_is_refused_before_training(tiny_dpm, tmp_path):
    """train_pdae.py --resolution 32 on a 16x16 DPM: refused naming --resolution before step 1."""
    run = train("train_pdae.py", pdae_flags(tiny_dpm, tmp_path / "out", "--resolution", "32"), tmp_path)
    assert_training_refused(run, ["resolution"])


def files_holding(secret: str, folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return [
        path.relative_to(folder).as_posix()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and secret.encode() in path.read_bytes()
    ]


@pytest.mark.slow
@HANDLED
def test_the_hub_token_reaches_no_file_a_run_writes(tiny_dpm, tmp_path):
    """A normal 2-step run with --hub_token (no push): it succeeds and the token is in no file it wrote."""
    out = tmp_path / "out"
    run = train("train_pdae.py", pdae_flags(tiny_dpm, out, "--hub_token", SECRET), tmp_path)
    assert files_holding(SECRET, out) == [], "the token was written (security hole)"
    assert run.returncode == 0, run.stderr[-3000:]
    assert any(path.is_file() for path in out.rglob("*"))


@pytest.fixture(scope="module")
def checkpointed_run(tiny_dpm, tmp_path_factory) -> Path:
    """A 2-step run with --checkpointing_steps 1 (checkpoint-1, checkpoint-2), trained once and copied per test."""
    scratch = tmp_path_factory.mktemp("checkpointed")
    out = scratch / "run"
    run = train("train_pdae.py", pdae_flags(tiny_dpm, out, "--checkpointing_steps", "1"), scratch)
    assert run.returncode == 0 and (out / "checkpoint-2").is_dir(), run.stderr[-3000:]
    return out


class Payload:
    """Pickles as a call to os.system(command): what a doctored checkpoint would hold."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def resume_doctored(checkpointed_run: Path, tiny_dpm: str, tmp_path: Path, file_name: str):
    """Copy the checkpointed run, replace checkpoint-2/`file_name` by a pickle that creates a marker file when
    loaded, and resume to step 3. Returns the run, its output folder and the marker's path."""
    out = Path(shutil.copytree(checkpointed_run, tmp_path / "run"))
    marker = tmp_path / "pwned"
    torch.save(Payload(f"touch {marker}"), out / "checkpoint-2" / file_name)
    run = train("train_pdae.py", pdae_flags(tiny_dpm, out, "--resume_from_checkpoint", "latest", steps=3), tmp_path)
    return run, out, marker


@pytest.mark.slow
@CLEAR
def test_a_pickled_custom_checkpoint_state_is_refused_unread(checkpointed_run, tiny_dpm, tmp_path):
    """Resume from a checkpoint whose custom_checkpoint_0.pkl runs code: refused naming the pickle, never loaded."""
    run, _, marker = resume_doctored(checkpointed_run, tiny_dpm, tmp_path, "custom_checkpoint_0.pkl")
    assert not marker.exists(), "loading the checkpoint ran the pickled command (security hole)"
    assert run.returncode > 0, f"exit {run.returncode}"
    name, message = last_exception(run.stderr)
    assert name is not None and is_clear_type(name), f"wrong type: {name}: {message}"
    assert names_one_of(message, ["pickle", "checkpoint", "weights_only", "unsafe"]), f"{name}: {message}"


@pytest.mark.slow
@HANDLED
def test_accelerates_random_states_are_read_without_running_code(checkpointed_run, tiny_dpm, tmp_path):
    """Resume from a checkpoint whose random_states_0.pkl runs code: accelerate reads it with weights_only=True;
    the run resumes to its end, the code never runs, and the user is warned that the resume is not exact."""
    run, out, marker = resume_doctored(checkpointed_run, tiny_dpm, tmp_path, "random_states_0.pkl")
    assert not marker.exists(), "loading the checkpoint ran the pickled command (security hole)"
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads((out / "training_info.json").read_text())
    assert info["global_step"] == 3
    # the state could not be restored: said at WARNING level, and recorded
    assert re.search(r"WARNING .*random states in .*checkpoint-2 .* could not all be read", run.output), run.output
    assert info["resumed_exactly"] is False and info["resumed_from"].endswith("checkpoint-2")


@pytest.mark.slow
@CLEAR
def test_resuming_from_a_checkpoint_that_does_not_exist_is_refused(tiny_dpm, tmp_path):
    """--resume_from_checkpoint naming a folder that does not exist: refused naming it before step 1."""
    missing = str(tmp_path / "no-such-checkpoint-7")
    run = train("train_pdae.py", pdae_flags(tiny_dpm, tmp_path / "out", "--resume_from_checkpoint", missing), tmp_path)
    assert_training_refused(run, ["resume_from_checkpoint", "no-such-checkpoint-7"])


def tree_digest(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
@CLEAR
def test_a_finished_runs_output_dir_is_not_trained_over(tiny_dpm, tmp_path):
    """A second run into a finished run's --output_dir, no overwrite flag: refused, the finished run's files kept."""
    out = tmp_path / "out"
    first = train("train_pdae.py", pdae_flags(tiny_dpm, out), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = tree_digest(out)
    second = train("train_pdae.py", pdae_flags(tiny_dpm, out, "--seed", "1"), tmp_path)
    after = tree_digest(out)
    lost = [name for name, content in before.items() if after.get(name) != content]
    assert lost == [], f"the finished run's files were overwritten (lost data): {lost[:4]}"
    keywords = ["overwrite_output_dir", "resume_from_checkpoint", "already", "exists", "not empty"]
    assert_training_refused(second, keywords)


@pytest.mark.slow
@CLEAR
@pytest.mark.parametrize(
    "second_flags, what",
    [
        pytest.param([], "", id="plain"),
        pytest.param(
            ["--overwrite_output_dir"], ", with --overwrite_output_dir (only a lock stops it)", id="overwrite"
        ),
    ],
)
def test_a_second_trainer_on_the_folder_of_a_running_one_stops_at_once(tiny_dpm, tmp_path, second_flags, what):
    """A second trainer started on the --output_dir of a running one{what}: refused naming the other run, which
    keeps running."""
    out = tmp_path / "out"
    log_path = tmp_path / "first-run.log"
    flags = pdae_flags(tiny_dpm, out, "--max_train_minutes", "3", "--checkpointing_steps", "100000", steps=100000)
    with open(log_path, "w") as log:
        first = subprocess.Popen(
            train_command("train_pdae.py", flags),
            env=train_env(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None and steps_done(log_path.read_text()) < 1:
            time.sleep(0.2)
        assert first.poll() is None and steps_done(log_path.read_text()) >= 1, (
            f"the first run never reached step 1 (exit {first.poll()}): {log_path.read_text()[-2000:]}"
        )
        second = train("train_pdae.py", pdae_flags(tiny_dpm, out, *second_flags), tmp_path)
        assert first.poll() is None, "the first run stopped while the second one ran"
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert_training_refused(second, LOCK_KW)


@pytest.mark.slow
@HANDLED
def test_a_corrupt_png_in_the_training_folder_is_named_and_left_out(tiny_dpm, tmp_path):
    """--train_data_dir with one truncated PNG among 12 good ones: named and left out; the run completes."""
    folder = write_random_pictures(tmp_path / "images", 12, 20, np.random.default_rng(0))
    good = (folder / "00.png").read_bytes()
    (folder / "12_corrupt.png").write_bytes(good[: len(good) // 2])
    # 13 images, 2 held out, batch 4: three steps are one full epoch, so the corrupt image would be met.
    flags = pdae_flags(tiny_dpm, tmp_path / "out", "--train_data_dir", str(folder), steps=3)
    run = train("train_pdae.py", flags, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "12_corrupt" in run.output and re.search(r"skip|left out", run.output, re.IGNORECASE), run.output[-3000:]


@pytest.mark.slow
@CLEAR
@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_training_folder_that_is_missing_or_empty_is_named(tiny_dpm, tmp_path, kind):
    """--train_data_dir pointing to a folder that is {kind}: refused naming it before step 1."""
    folder = tmp_path / f"{kind}-images"
    if kind == "empty":
        folder.mkdir()
    run = train("train_pdae.py", pdae_flags(tiny_dpm, tmp_path / "out", "--train_data_dir", str(folder)), tmp_path)
    assert_training_refused(run, ["train_data_dir", f"{kind}-images"])


# ------------------------------------------------------------------------- issue 29: the last unclear answers


def fabricated_checkpoint(train_pdae, tiny_dpm: str, out: Path, step: int, *flags: str) -> Path:
    """`out/checkpoint-<step>` holding only the training flags a run with `flags` records (what resuming reads
    first, before anything is built)."""
    from diffusers_pdae.training.args import public_flags
    from diffusers_pdae.training.checkpointing import write_run_flags

    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    write_run_flags(str(folder), public_flags(train_pdae.parse_args(pdae_flags(tiny_dpm, out, *flags, steps=step))))
    return folder


@CLEAR
@pytest.mark.parametrize(
    "resume_flags, keywords",
    [
        pytest.param(["--seed", "7"], [r"--seed 7 .*\(the run's: 0\)"], id="other-seed"),
        pytest.param(["--latent_dim", "16"], [r"--latent_dim 16 .*\(the run's: 8\)"], id="other-latent-dim"),
        pytest.param(["--learning_rate", "0.5"], [r"--learning_rate 0.5"], id="other-learning-rate"),
    ],
)
def test_resuming_with_flags_that_change_what_is_trained_is_refused(train_pdae, tiny_dpm, tmp_path, resume_flags,
                                                                    keywords):  # fmt: skip
    """Resume a 10-step run's checkpoint with {resume_flags}: refused before anything is built, naming the flag and
    the run's value (before, another --latent_dim failed in load_state_dict naming no flag)."""
    out = tmp_path / "run"
    fabricated_checkpoint(train_pdae, tiny_dpm, out, 10)
    argv = pdae_flags(
        tiny_dpm, out, "--latent_dim", "8", *resume_flags, "--resume_from_checkpoint", "latest", steps=20
    )
    with pytest.raises(ValueError) as error:
        train_pdae.main(argv)
    assert names_one_of(str(error.value), keywords), str(error.value)


@CLEAR
def test_resuming_a_finished_run_with_fewer_steps_is_refused(train_pdae, tiny_dpm, tmp_path):
    """Resume a 10-step run's last checkpoint with --max_train_steps 4: refused (it would train nothing and release
    the 10-step weights as a 4-step run), saying what to pass."""
    out = tmp_path / "run"
    fabricated_checkpoint(train_pdae, tiny_dpm, out, 10)
    argv = pdae_flags(tiny_dpm, out, "--resume_from_checkpoint", "latest", steps=4)
    with pytest.raises(ValueError, match=r"checkpoint-10 is at step 10, past --max_train_steps 4.*above 10"):
        train_pdae.main(argv)


@CLEAR
def test_resuming_from_a_folder_inside_a_checkpoint_names_the_checkpoint(train_pdae, tiny_dpm, tmp_path):
    """--resume_from_checkpoint pointing at checkpoint-10/encoder: refused naming checkpoint-10 (before: a message
    about another version or number of processes)."""
    out = tmp_path / "run"
    checkpoint = fabricated_checkpoint(train_pdae, tiny_dpm, out, 10)
    (checkpoint / "encoder").mkdir()
    argv = pdae_flags(tiny_dpm, out, "--resume_from_checkpoint", str(checkpoint / "encoder"), steps=20)
    with pytest.raises(ValueError, match=r"points inside .*checkpoint-10: pass .*checkpoint-10 itself"):
        train_pdae.main(argv)


@CLEAR
def test_an_encoder_backbone_that_cannot_be_fetched_offline_is_named(train_pdae, tiny_dpm, tmp_path, monkeypatch):
    """--encoder_type transformers --encoder_backbone <a Hub id not cached>, offline: refused at parse time naming
    the flag and the id (before: a Hub connection error naming neither)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    argv = ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(tmp_path / "run"), "--max_train_steps",
            "2", "--encoder_type", "transformers", "--encoder_backbone", "someone/not-cached-anywhere"]  # fmt: skip
    with pytest.raises(ValueError, match=r"--encoder_backbone someone/not-cached-anywhere: not a local folder"):
        train_pdae.parse_args(argv)


@CLEAR
def test_a_training_folder_without_any_image_is_named(train_pdae, tiny_dpm, tmp_path):
    """--train_data_dir holding only text and CSV files: refused naming the folder and the extensions found (before:
    datasets' "corresponds to no data")."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("no pictures here")
    (data / "labels.csv").write_text("file,label\n")
    argv = pdae_flags(tiny_dpm, tmp_path / "run", "--train_data_dir", str(data))
    with pytest.raises(ValueError, match=r"--train_data_dir .*data holds 2 files but no image \(extensions found: "):
        train_pdae.main(argv)


@pytest.mark.slow
@CLEAR
def test_resuming_a_real_finished_run_with_another_seed_is_refused(checkpointed_run, tiny_dpm, tmp_path):
    """A finished 2-step run resumed with --max_train_steps 4 --seed 7: refused naming --seed before step 3, and the
    run's training_info.json is left as it was (before: seed 7 was written over the first run's record)."""
    out = Path(shutil.copytree(checkpointed_run, tmp_path / "run"))
    before = (out / "training_info.json").read_text()
    run = train("train_pdae.py", pdae_flags(tiny_dpm, out, "--resume_from_checkpoint", "latest", "--seed", "7",
                                            steps=4), tmp_path)  # fmt: skip
    assert_training_refused(run, [r"--seed 7 .*\(the run's: 0\)"])
    assert (out / "training_info.json").read_text() == before
