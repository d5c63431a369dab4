"""Resuming a run (issue 33): a streamed run resumed anywhere in a pass, whatever its shuffle buffer; a run killed
before its first checkpoint or during its final save, resubmitted as it was; and what a resume checks of what it
resumes from (the frozen autoencoder, the stream's shards).

In-process runs of `train_pdae.py` (`main(argv)`) where one or two short runs tell; runs of two processes launched as
a user launches them are `@pytest.mark.slow`.
"""

import io
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import PIL.Image
import pytest

from diffusers_pdae import PDAEPipeline, file_utils
from diffusers_pdae.bundled.mnist import load_mnist_arrays

from ..conftest import load_script
from ..training.test_train_scripts import TRAIN_PDAE, assert_ok, launch
from .conftest import HANDLED, pdae_flags, steps_done, train, train_command, train_env

pytestmark = pytest.mark.reliability(area="training")


@pytest.fixture(scope="module")
def train_pdae():
    return load_script("train_pdae")


def digit_shards(folder: Path, count: int = 12, per_shard: int = 6) -> Path:
    """The first `count` bundled MNIST test digits as PNGs in webdataset shards of `per_shard`."""
    bench_data = load_script("bench_data", folder="benchmarks")
    pngs = []
    for digit in load_mnist_arrays("test")[0][:count]:
        buffer = io.BytesIO()
        PIL.Image.fromarray(digit).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    bench_data.write_webdataset_shards(folder, pngs, per_shard)
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Two webdataset shards of six digits each: 10 training images once 2 are held out for validation."""
    return digit_shards(tmp_path_factory.mktemp("digits") / "shards")


def streamed_flags(tiny_dpm: str, shards: Path, out: Path, steps: int, *extra: str) -> list[str]:
    """A streamed run with the default --shuffle_buffer_size (1000, more than the 10 training images), batch 4: a
    pass is 3 batches, and its rest is in the buffer from the first batch on."""
    return pdae_flags(tiny_dpm, out, "--dataset_name", str(shards), "--streaming", "--checkpointing_steps", "2",
                      "--report_ranks", *extra, steps=steps)  # fmt: skip


def rank_report(out: Path, rank: int = 0) -> dict:
    return json.loads((out / "ranks" / f"rank-{rank}.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(train_pdae, tiny_dpm, shards, tmp_path_factory) -> Path:
    """A 4-step streamed run, checkpointed at steps 2 and 4, never stopped: what every resume must reproduce."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    train_pdae.main(streamed_flags(tiny_dpm, shards, out, 4))
    return out


def resume_copy(run: Path, checkpoint: str, tmp_path: Path) -> Path:
    """A fresh --output_dir holding only `run`'s `checkpoint`, as a resubmitted job finds its folder."""
    out = tmp_path / "resumed"
    shutil.copytree(run / checkpoint, out / checkpoint)
    return out


@HANDLED
def test_a_streamed_run_resumed_where_its_buffer_holds_the_rest_of_the_pass_ends_as_if_uninterrupted(
    train_pdae, tiny_dpm, shards, uninterrupted, tmp_path
):
    """A streamed run on 12 digits in 2 shards (fewer than --shuffle_buffer_size), batch 4, resumed from its
    step-2 checkpoint (the rest of the pass in the buffer) to step 4: it finishes the pass, begins the next and ends
    with the uninterrupted run's batches and weights (before: "Pass 0 over the stream yielded no batch ... Check the
    data", on every retry)."""
    out = resume_copy(uninterrupted, "checkpoint-2", tmp_path)
    train_pdae.main(streamed_flags(tiny_dpm, shards, out, 4, "--resume_from_checkpoint", "latest"))
    before, after = rank_report(uninterrupted), rank_report(out)
    assert after["batch_fingerprints"] == before["batch_fingerprints"][2:]
    assert [len(after["example_fingerprints"][epoch]) for epoch in ("0", "1")] == [2, 4]  # the pass's last 2, then 4
    assert after["weights_checksum"] == before["weights_checksum"]


@HANDLED
def test_a_resume_with_another_shuffle_buffer_finishes_the_pass_with_the_buffer_it_began_with(
    train_pdae, tiny_dpm, shards, uninterrupted, tmp_path
):
    """The same checkpoint resumed with --shuffle_buffer_size 1: accepted (before: refused as another training
    flag); the interrupted pass ends with the images the uninterrupted run trained on, the next pass uses buffer 1."""
    out = resume_copy(uninterrupted, "checkpoint-2", tmp_path)
    resume = ["--resume_from_checkpoint", "latest", "--shuffle_buffer_size", "1"]
    train_pdae.main(streamed_flags(tiny_dpm, shards, out, 4, *resume))
    before, after = rank_report(uninterrupted), rank_report(out)
    assert after["example_fingerprints"]["0"] == before["example_fingerprints"]["0"][-2:]
    assert len(after["batch_fingerprints"]) == 2
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 4


@pytest.mark.slow  # two launches of two processes each
@HANDLED
def test_a_two_process_streamed_run_resumed_near_the_end_of_a_pass_continues_and_finishes(tiny_dpm, shards, tmp_path):
    """Two processes streaming 12 digits (one shard each) with the default buffer, batch 2, resumed from the
    checkpoint one batch before the end of the pass: both go on into the next pass and end as the uninterrupted run,
    batch for batch and weight for weight."""
    cpu = {"ACCELERATE_USE_CPU": "true"}

    def flags(out: Path, *extra: str) -> list[str]:
        return streamed_flags(tiny_dpm, shards, out, 4, "--train_batch_size", "2", "--checkpointing_steps", "1",
                              *extra)  # fmt: skip

    whole = tmp_path / "whole"
    assert_ok(launch(TRAIN_PDAE, flags(whole), num_processes=2, env=cpu))
    reports = [rank_report(whole, rank) for rank in (0, 1)]
    assert [report["num_processes"] for report in reports] == [2, 2]
    assert [len(report["example_fingerprints"]["0"]) for report in reports] == [4, 4]  # a pass is 2 steps
    out = resume_copy(whole, "checkpoint-1", tmp_path)
    assert_ok(launch(TRAIN_PDAE, flags(out, "--resume_from_checkpoint", "latest"), num_processes=2, env=cpu))
    for rank, before in enumerate(reports):
        after = rank_report(out, rank)
        assert after["batch_fingerprints"] == before["batch_fingerprints"][1:]
        assert after["weights_checksum"] == before["weights_checksum"]


# ------------------------------------------------------------------------- killed before a checkpoint, or mid-save


def leftovers_of_a_run_killed_before_its_first_checkpoint(out: Path) -> None:
    """What such a run leaves: its tensorboard logs, its lock file (naming a process long gone) and the checkpoint
    it was writing."""
    (out / "logs" / "train_pdae").mkdir(parents=True)
    (out / "logs" / "train_pdae" / "events.out.tfevents.1.host").write_bytes(b"\0" * 40)
    (out / ".training.lock").write_text("4242\n")
    (out / "checkpoint-2.tmp" / "encoder").mkdir(parents=True)
    (out / "checkpoint-2.tmp" / "encoder" / "config.json").write_text("{")


@HANDLED
def test_a_run_killed_before_its_first_checkpoint_starts_anew_when_resubmitted_as_it_was(train_pdae, tiny_dpm,
                                                                                          tmp_path):  # fmt: skip
    """A folder holding only logs/, the lock and a half-written checkpoint-2.tmp, resubmitted with
    --resume_from_checkpoint latest: the run starts anew there and finishes, the half-written checkpoint gone, the logs
    kept (before: refused on every retry, telling the user to pass --resume_from_checkpoint latest)."""
    out = tmp_path / "run"
    leftovers_of_a_run_killed_before_its_first_checkpoint(out)
    train_pdae.main(pdae_flags(tiny_dpm, out, "--checkpointing_steps", "2", "--resume_from_checkpoint", "latest"))
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 2
    assert (out / "checkpoint-2" / "encoder" / "config.json").is_file() and not (out / "checkpoint-2.tmp").exists()
    assert (out / "logs" / "train_pdae" / "events.out.tfevents.1.host").is_file()


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


@HANDLED
def test_a_run_killed_during_its_final_save_is_finished_when_resubmitted(train_pdae, tiny_dpm, tmp_path, monkeypatch):
    """A 2-step run killed while its final save was being put in place (its checkpoints and logs already moved into
    the `.run.saved-*` folder beside --output_dir), with an older killed save's `.run.saving-*` there too, resubmitted
    with --resume_from_checkpoint latest: the save is finished, nothing beside the folder stays and the run releases
    (before: the `.saving-*` folder stayed forever)."""
    out = tmp_path / "run"
    swap = file_utils._swap_into_place

    def killed_midway(saved: Path, directory: Path, token: str) -> None:
        if directory != out:  # the pipeline's own atomic save into the staging folder
            return swap(saved, directory, token)
        for entry in directory.iterdir():
            if not (saved / entry.name).exists():
                entry.rename(saved / entry.name)
        raise Killed

    flags = pdae_flags(tiny_dpm, out, "--checkpointing_steps", "2")
    monkeypatch.setattr(file_utils, "_swap_into_place", killed_midway)
    with pytest.raises(Killed):
        train_pdae.main(flags)
    monkeypatch.undo()
    (tmp_path / ".run.saving-0123abcd" / "unet").mkdir(parents=True)
    assert sorted(path.name for path in out.iterdir()) == []  # everything is in .run.saved-*
    train_pdae.main([*flags, "--resume_from_checkpoint", "latest"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]
    assert {"checkpoint-2", "logs", "model_index.json", "training_info.json"} <= {path.name for path in out.iterdir()}
    assert PDAEPipeline.from_pretrained(out).encoder.config.latent_dim == 8


@pytest.mark.slow
@HANDLED
def test_a_run_sigkilled_before_its_first_checkpoint_is_resubmitted_with_the_same_command(tiny_dpm, tmp_path):
    """train_pdae.py --resume_from_checkpoint latest killed with SIGKILL at step 1 of 3, before its first checkpoint
    (step 3), then run again with the same command: it starts anew and finishes."""
    out = tmp_path / "run"
    flags = pdae_flags(tiny_dpm, out, "--checkpointing_steps", "3", "--resume_from_checkpoint", "latest", steps=3)
    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log:
        first = subprocess.Popen(train_command("train_pdae.py", flags), env=train_env(tmp_path), stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None and steps_done(log_path.read_text()) < 1:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not list(out.glob("checkpoint-*[0-9]")), "the run checkpointed before it was killed: kill it earlier"
    second = train("train_pdae.py", flags, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 3


# ---------------------------------------------------------------------------------- what a resume checks of its data


@HANDLED
@pytest.mark.parametrize("change", ["added", "removed"])
def test_a_streamed_resume_after_shards_were_added_or_removed_names_them_and_starts_the_next_pass(
    train_pdae, tiny_dpm, tmp_path, capsys, change
):
    """A streamed run checkpointed at step 2, then a shard {change} in its folder, then resumed: the shard is named
    in a warning, the interrupted pass (whose positions index the old shards) ends and the next begins over the
    files there are now; training_info.json says resumed_exactly: false (before: positions read against other
    shards, silently)."""
    shards = digit_shards(tmp_path / "shards", count=18)  # three shards of six
    if change == "added":
        (tmp_path / "shards" / "shard-00002.tar").rename(tmp_path / "later.tar")
    out = tmp_path / "run"
    train_pdae.main(streamed_flags(tiny_dpm, shards, out, 2))
    if change == "added":
        (tmp_path / "later.tar").rename(tmp_path / "shards" / "shard-00002.tar")
    else:
        (tmp_path / "shards" / "shard-00002.tar").unlink()
    recorded = json.loads((out / "checkpoint-2" / "stream_files.json").read_text())
    assert recorded["count"] == (2 if change == "added" else 3)
    capsys.readouterr()
    train_pdae.main(streamed_flags(tiny_dpm, shards, out, 4, "--resume_from_checkpoint", "latest"))
    warned = capsys.readouterr().err
    assert re.search(rf"data files changed since checkpoint-2 was saved \({change} shard-00002\.tar\)", warned)
    info = json.loads((out / "training_info.json").read_text())
    assert info["global_step"] == 4 and info["resumed_exactly"] is False
    assert list(rank_report(out)["example_fingerprints"]) == ["1"]  # steps 3 and 4 in the next pass
