"""`--streaming`: webdataset shards read as a stream, bad images left out, each process its own share, and a resumed
run that continues the stream where it stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from diffusers import DDPMPipeline

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.data import load_training_dataset, validation_images
from diffusers_pdae.training.config import TrainingConfig
from diffusers_pdae.training.diagnostics import _fingerprint
from diffusers_pdae.training.streaming import prepare_stream

from ..conftest import load_script
from .test_train_scripts import FAST_FLAGS, TRAIN_PDAE, assert_ok, launch

CORRUPT = 7  # the index of the PNG cut in half, in the second shard
NUM_IMAGES, PER_SHARD = 20, 5


def write_shards(folder: Path, count: int = NUM_IMAGES, per_shard: int = PER_SHARD) -> Path:
    """`count` random 20x20 RGB PNGs as webdataset shards of `per_shard`, image `CORRUPT` unreadable."""
    bench_data = load_script("bench_data", folder="benchmarks")
    generator = np.random.default_rng(0)
    pngs = [bench_data.random_png(generator, 20) for _ in range(count)]
    bench_data.write_webdataset_shards(folder, pngs, per_shard, corrupt=(CORRUPT,))
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards"))


def open_stream(folder: Path, held_out: int = 2):
    stream = load_training_dataset(str(folder), None, None, "image", channels=1, resolution=16, streaming=True)
    return validation_images(stream, held_out)


def fingerprints(images) -> list[str]:
    return [_fingerprint([image]) for image in images]


def test_a_stream_of_shards_names_a_corrupt_png_and_never_trains_on_its_validation_images(shards, caplog):
    with caplog.at_level("WARNING"):
        held_out = open_stream(shards)
        share = held_out.train_dataset.for_process(rank=0, world_size=1, seed=0, shuffle_buffer_size=4)
        trained = fingerprints(item["pixel_values"] for item in share)
    assert held_out.images.shape == (2, 1, 16, 16)
    assert "first 2 readable images of the stream" in held_out.source
    assert len(trained) == len(set(trained)) == NUM_IMAGES - 2 - 1
    assert not set(fingerprints(held_out.images)) & set(trained)
    assert f"shard-00001.tar/{CORRUPT:06d}.png" in caplog.text and "1 unreadable image(s) left out" in caplog.text


@pytest.mark.parametrize("per_shard", [PER_SHARD, 7])  # 4 shards: whole shards per process; 3: every other item
def test_two_processes_read_disjoint_shares_of_every_pass(tmp_path, per_shard):
    held_out = open_stream(write_shards(tmp_path / "shards", per_shard=per_shard))
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            share = held_out.train_dataset.for_process(rank=rank, world_size=2, seed=0, shuffle_buffer_size=4)
            share.set_epoch(epoch)
            seen.append(fingerprints(item["pixel_values"] for item in share))
        assert not set(seen[0]) & set(seen[1]) and min(map(len, seen)) > 0
        assert len(seen[0] + seen[1]) == len(set(seen[0] + seen[1])) == NUM_IMAGES - 2 - 1


def stream_position(stream, tmp_path: Path, num_workers: int, shuffle_buffer_size: int):
    config = TrainingConfig(output_dir=str(tmp_path), train_batch_size=3, shuffle_buffer_size=shuffle_buffer_size)
    return prepare_stream(Accelerator(), config, stream, num_workers)


def batches_of(position, epoch: int, count: int | None = None) -> list[list[str]]:
    """The example fingerprints of the next `count` batches of pass `epoch` (all that is left without a count)."""
    position.dataloader.set_epoch(epoch)
    batches = []
    for batch in position.batches(epoch):
        batches.append(fingerprints(batch["pixel_values"].cpu()))
        if len(batches) == count:
            break
    return batches


def interrupted_at(stream, tmp_path: Path, num_workers: int, buffer: int, stop: int, resume_buffer: int | None = None):
    """Read `stop` batches of pass 0 with a shuffle buffer of `buffer`, save the position, resume it (with
    `resume_buffer`, else the same buffer); returns the batches before, the resumed position and its epoch."""
    interrupted = stream_position(stream, tmp_path, num_workers, shuffle_buffer_size=buffer)
    before = batches_of(interrupted, 0, stop)
    interrupted.save(str(tmp_path / f"checkpoint-{stop}"))
    resumed = stream_position(stream, tmp_path, num_workers, shuffle_buffer_size=resume_buffer or buffer)
    resumed.load(str(tmp_path / f"checkpoint-{stop}"))
    return before, resumed


@pytest.mark.parametrize("buffer", [1, 4, 1000])  # no buffer; a buffer smaller, and larger, than the data
@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_resumed_stream_continues_exactly_where_it_stopped(shards, tmp_path, num_workers, buffer):
    stream = open_stream(shards).train_dataset
    reference = stream_position(stream, tmp_path, num_workers, shuffle_buffer_size=buffer)
    passes = [batches_of(reference, 0), batches_of(reference, 1)]
    end = len(passes[0])  # 6 batches of 17 images by 3; 7 when 2 workers split them unevenly
    assert sum(map(len, passes[0])) == sum(map(len, passes[1])) == NUM_IMAGES - 3
    for stop in (2, end - 1, end):  # mid-pass, the last batch left (in the buffer), and the end of the pass
        before, resumed = interrupted_at(stream, tmp_path, num_workers, buffer, stop)
        assert resumed.epoch == (1 if stop == end else 0)
        after = batches_of(resumed, resumed.epoch) + (batches_of(resumed, 1) if stop < end else [])
        assert before + after == passes[0] + passes[1], stop


def test_a_resume_with_another_buffer_finishes_the_pass_with_the_one_it_began_with(shards, tmp_path):
    stream = open_stream(shards).train_dataset
    old, new = (stream_position(stream, tmp_path, 0, shuffle_buffer_size=size) for size in (4, 1))
    first_pass, second_pass = batches_of(old, 0), batches_of(new, 1)
    before, resumed = interrupted_at(stream, tmp_path, 0, buffer=4, stop=2, resume_buffer=1)
    assert before + batches_of(resumed, 0) == first_pass
    assert batches_of(resumed, 1) == second_pass


def test_a_resumed_pass_with_nothing_left_ends_and_the_next_begins(shards, tmp_path, caplog):
    """A position saved after the last batch of a pass, but before the end was known: the resumed pass is empty."""
    stream = open_stream(shards).train_dataset
    position = stream_position(stream, tmp_path, 0, shuffle_buffer_size=1000)
    everything = batches_of(position, 0)
    position.save(str(tmp_path / "checkpoint-end"))
    state_file = tmp_path / "checkpoint-end" / "stream_state_0.json"
    state = json.loads(state_file.read_text())
    state["pass_over"] = False
    state_file.write_text(json.dumps(state))
    resumed = stream_position(stream, tmp_path, 0, shuffle_buffer_size=1000)
    resumed.load(str(tmp_path / "checkpoint-end"))
    with caplog.at_level("INFO"):
        assert batches_of(resumed, 0) == []
    assert "Pass 0 over the stream had nothing left after the checkpoint; pass 1 begins" in caplog.text
    assert sum(map(len, batches_of(resumed, 1))) == sum(map(len, everything)) == NUM_IMAGES - 3


def test_a_stream_position_is_refused_with_other_workers(shards, tmp_path):
    stream = open_stream(shards).train_dataset
    position = stream_position(stream, tmp_path, 0, shuffle_buffer_size=1)
    batches_of(position, 0, 1)
    position.save(str(tmp_path / "checkpoint-1"))
    with pytest.raises(ValueError, match="--dataloader_num_workers 0"):
        stream_position(stream, tmp_path, 1, shuffle_buffer_size=1).load(str(tmp_path / "checkpoint-1"))


@pytest.mark.parametrize("script", ["train_pdae", "train_dpm"])
def test_streaming_needs_max_train_steps_and_a_dataset(script, shards, tmp_path):
    parse = load_script(script).parse_args
    with pytest.raises(ValueError, match="--streaming needs --max_train_steps"):
        parse(["--dataset_name", str(shards), "--streaming", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--streaming reads --dataset_name or --train_data_dir"):
        parse(["--streaming", "--max_train_steps", "2", "--output_dir", str(tmp_path)])
    assert parse(["--train_data_dir", str(shards), "--streaming", "--max_train_steps", "2"]).streaming


def streaming_flags(tiny_dpm: str, shards: Path, max_train_steps: int, checkpointing_steps: int) -> list[str]:
    return ["--pretrained_model_name_or_path", tiny_dpm, "--dataset_name", str(shards), "--streaming",
            "--shuffle_buffer_size", "1", "--max_train_steps", str(max_train_steps), "--checkpointing_steps",
            str(checkpointing_steps), "--report_ranks", "--resolution", "16", *FAST_FLAGS]  # fmt: skip


def rank_reports(output_dir: Path, num_processes: int = 1) -> list[dict]:
    return [json.loads((output_dir / "ranks" / f"rank-{i}.json").read_text()) for i in range(num_processes)]


SINGLE_RUN_FLAGS = {"max_train_steps": 6, "checkpointing_steps": 4}


@pytest.fixture(scope="module")
def single_process_run(tiny_dpm, shards, tmp_path_factory) -> Path:
    """train_pdae.py run in-process on the shards: 6 steps, a checkpoint at step 4, rank reports."""
    out = tmp_path_factory.mktemp("streamed") / "run"
    load_script("train_pdae").main([*streaming_flags(tiny_dpm, shards, **SINGLE_RUN_FLAGS), "--output_dir", str(out)])
    return out


def test_pdae_trains_on_streamed_shards_and_checkpoints_the_stream(single_process_run):
    out = single_process_run
    assert PDAEPipeline.from_pretrained(out).encode(torch.zeros(1, 1, 16, 16)).shape == (1, 8)
    info = json.loads((out / "training_info.json").read_text())
    assert info["global_step"] == 6 and (out / "checkpoint-4" / "stream_state_0.json").is_file()
    (report,) = rank_reports(out)
    assert [len(report["example_fingerprints"][epoch]) for epoch in ("0", "1")] == [17, 4]  # 17 = 20 - 2 - 1


@pytest.mark.slow  # a second in-process run
def test_a_resumed_run_continues_the_stream(single_process_run, tiny_dpm, shards, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(single_process_run / "checkpoint-4", resumed / "checkpoint-4")
    flags = streaming_flags(tiny_dpm, shards, **SINGLE_RUN_FLAGS)
    load_script("train_pdae").main([*flags, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest"])
    (before,), (after,) = rank_reports(single_process_run), rank_reports(resumed)
    assert after["batch_fingerprints"] == before["batch_fingerprints"][4:]  # the batches after the checkpoint
    assert after["weights_checksum"] == before["weights_checksum"]


def test_train_dpm_streams_too_taking_the_channels_from_the_streams_first_image(shards, tmp_path):
    out = tmp_path / "dpm"
    load_script("train_dpm").main(["--dataset_name", str(shards), "--streaming", "--max_train_steps", "2",
                                   "--train_batch_size", "4", "--resolution", "16", "--ddpm_num_inference_steps", "2",
                                   "--eval_batch_size", "2", "--output_dir", str(out)])  # fmt: skip
    unet = DDPMPipeline.from_pretrained(out).unet
    assert (unet.config.in_channels, unet.config.sample_size) == (3, 16)
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 2


def assert_each_image_once_per_pass(reports: list[dict]) -> None:
    """No example is trained on twice in a pass, by one process or by two; every pass trains something."""
    for epoch in reports[0]["example_fingerprints"]:
        seen = [example for report in reports for example in report["example_fingerprints"].get(epoch, [])]
        assert seen and len(seen) == len(set(seen)), epoch


@pytest.mark.slow  # two launches of two processes each
def test_two_processes_stream_disjoint_shares_resume_the_stream_and_release_a_pipeline(tiny_dpm, shards, tmp_path):
    out, resumed = tmp_path / "ddp", tmp_path / "resumed"
    flags = streaming_flags(tiny_dpm, shards, max_train_steps=6, checkpointing_steps=3)
    cpu = {"ACCELERATE_USE_CPU": "true"}
    assert_ok(launch(TRAIN_PDAE, [*flags, "--output_dir", str(out)], num_processes=2, env=cpu))
    reports = rank_reports(out, 2)
    assert [(r["process_index"], r["num_processes"], r["distributed_type"]) for r in reports] == [
        (0, 2, "MULTI_CPU"), (1, 2, "MULTI_CPU"),
    ]  # fmt: skip
    assert reports[0]["weights_checksum"] == reports[1]["weights_checksum"]
    assert len(reports[0]["example_fingerprints"]) > 1  # the run went over the stream more than once
    assert_each_image_once_per_pass(reports)
    assert PDAEPipeline.from_pretrained(out).encode(torch.zeros(1, 1, 16, 16)).shape == (1, 8)
    assert {p.name for p in (out / "checkpoint-3").glob("stream_state_*.json")} == {
        "stream_state_0.json", "stream_state_1.json",
    }  # fmt: skip

    shutil.copytree(out / "checkpoint-3", resumed / "checkpoint-3")
    result = launch(TRAIN_PDAE, [*flags, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest"],
                    num_processes=2, env=cpu)  # fmt: skip
    assert_ok(result)
    for before, after in zip(reports, rank_reports(resumed, 2), strict=True):
        assert after["batch_fingerprints"] == before["batch_fingerprints"][3:]  # each process's stream went on
        assert after["weights_checksum"] == before["weights_checksum"]


@pytest.mark.parametrize("buffer", [1, 4])
def test_a_position_saved_before_anything_was_read_resumes_at_the_start_of_the_pass(shards, buffer):
    """A DataLoader worker that had not read yet when the checkpoint was taken saves its initial state."""
    stream = open_stream(shards).train_dataset
    untouched = stream.for_process(rank=0, world_size=1, seed=0, shuffle_buffer_size=buffer)
    resumed = stream.for_process(rank=0, world_size=1, seed=0, shuffle_buffer_size=buffer)
    resumed.load_state_dict(untouched.state_dict())
    assert fingerprints(item["pixel_values"] for item in resumed) == fingerprints(
        item["pixel_values"] for item in untouched
    )
