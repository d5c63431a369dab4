"""examples/train_pdae.py and train_dpm.py end to end: launches, distribution, checkpoints, guard rails, the Hub."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import PIL.Image
import pytest
import torch
from diffusers import DDPMPipeline
from safetensors.torch import load_file

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.data import load_training_dataset
from diffusers_pdae.training import cards, hub
from diffusers_pdae.training.checkpointing import resolve_resume_path

REPO = Path(__file__).resolve().parents[2]
TRAIN_PDAE = str(REPO / "examples" / "train_pdae.py")
TRAIN_DPM = str(REPO / "examples" / "train_dpm.py")
FAST_FLAGS = [
    "--train_batch_size", "4", "--num_validation_images", "2", "--validation_inference_steps", "2",
    "--lr_warmup_steps", "0", "--latent_dim", "8", "--encoder_block_out_channels", "8", "16",
    "--encoder_norm_num_groups", "4", "--save_images_epochs", "1000", "--seed", "0",
]  # fmt: skip


def launch_command(script: str, args: list[str], num_processes: int = 1) -> list[str]:
    """`accelerate launch` of a script the way a user would run it, on the CPU."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
    if num_processes > 1:
        command.append("--multi_gpu")
    return [*command, "--mixed_precision", "no", "--dynamo_backend", "no", script, *args]


def offline_env(extra: dict | None = None) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", **(extra or {})}


def launch(script: str, args: list[str], num_processes: int = 1, env: dict | None = None):
    command = launch_command(script, args, num_processes)
    return subprocess.run(command, env=offline_env(env), capture_output=True, text=True, timeout=600)


def assert_ok(result):
    assert result.returncode == 0, result.stderr[-3000:]


def trained_weights(folder: Path) -> dict[str, torch.Tensor]:
    weights = {}
    for name in ("encoder", "gradient_estimator"):
        for key, value in load_file(folder / name / "diffusion_pytorch_model.safetensors").items():
            weights[f"{name}.{key}"] = value
    return weights


def test_two_steps_on_an_image_folder(tiny_dpm, image_folder, tmp_path):
    out = tmp_path / "out"
    result = launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", tiny_dpm, "--train_data_dir", image_folder,
                                 "--output_dir", str(out), "--max_train_steps", "2", *FAST_FLAGS])  # fmt: skip
    assert_ok(result)
    pipeline = PDAEPipeline.from_pretrained(out)
    assert pipeline.encode(torch.zeros(1, 1, 16, 16)).shape == (1, 8)
    info = json.loads((out / "training_info.json").read_text())
    assert info["global_step"] == 2 and info["num_processes"] == 1
    assert "val_mse_inferred_xT" in info["metrics"]
    assert (out / "validation.png").is_file() and list((out / "validation").glob("step-*.png"))
    assert list((out / "logs").rglob("events.out.tfevents.*"))


def test_init_from_pipeline_trains_that_pipeline_further_and_releases_clean_configs(tiny_dpm, tmp_path):
    """--init_from_pipeline: the run starts from the given release's encoder and G (after one step they are much
    nearer to it than a fresh run's are), and the released configs are the source's, without the local folder
    diffusers' from_pretrained records (`_name_or_path`), which would otherwise reach the Hub."""
    from accelerate.state import AcceleratorState

    from ..conftest import load_script

    train_pdae = load_script("train_pdae")
    common = ["--pretrained_model_name_or_path", tiny_dpm, "--bundled_mnist", "--resolution", "16", *FAST_FLAGS]
    runs = {}
    for name, extra in (
        ("first", ["--max_train_steps", "2"]),
        ("fresh", ["--max_train_steps", "1", "--seed", "5"]),
        ("further", ["--max_train_steps", "1", "--init_from_pipeline", str(tmp_path / "first")]),
    ):
        train_pdae.main([*common, "--output_dir", str(tmp_path / name), *extra])
        AcceleratorState._reset_state(reset_partial_state=True)
        runs[name] = trained_weights(tmp_path / name)

    def distance(a: str, b: str) -> float:
        return sum((runs[a][key] - runs[b][key]).norm().item() for key in runs[a])

    assert distance("further", "first") < 0.1 * distance("fresh", "first")
    for component in ("encoder", "gradient_estimator"):
        released = json.loads((tmp_path / "further" / component / "config.json").read_text())
        source = json.loads((tmp_path / "first" / component / "config.json").read_text())
        assert "_name_or_path" not in released
        assert released == source


@pytest.mark.slow  # a whole script launch
def test_a_bf16_run_releases_the_pretrained_unet_bit_for_bit(tiny_dpm, image_folder, tmp_path):
    out = tmp_path / "out"
    result = launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", tiny_dpm, "--train_data_dir", image_folder,
                                 "--output_dir", str(out), "--max_train_steps", "2", "--mixed_precision", "bf16",
                                 *FAST_FLAGS])  # fmt: skip
    assert_ok(result)
    released = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    original = load_file(Path(tiny_dpm) / "unet" / "diffusion_pytorch_model.safetensors")
    assert released.keys() == original.keys()
    assert all(torch.equal(released[key], original[key]) for key in original)


@pytest.mark.slow  # a whole script launch (15-25 s): the end-to-end suite
def test_two_steps_on_bundled_mnist_and_dpm_pretraining(tmp_path):
    dpm = tmp_path / "dpm"
    config = str(REPO / "tests" / "training" / "tiny_unet.json")
    result = launch(TRAIN_DPM, ["--output_dir", str(dpm), "--max_train_steps", "2", "--train_batch_size", "4",
                                "--ddpm_num_inference_steps", "2", "--eval_batch_size", "4", "--resolution", "16",
                                "--model_config_name_or_path", config])  # fmt: skip
    assert_ok(result)
    assert DDPMPipeline.from_pretrained(dpm).unet.config.sample_size == 16
    assert "unconditional-image-generation" in (dpm / "README.md").read_text()
    out = tmp_path / "pdae"
    result = launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", str(dpm), "--output_dir", str(out),
                                 "--max_train_steps", "2", *FAST_FLAGS])  # fmt: skip
    assert_ok(result)
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 2


@pytest.mark.slow
def test_two_real_processes_train_different_shards_and_end_identical(tiny_dpm, tmp_path):
    out = tmp_path / "ddp"
    result = launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(out),
                                 "--max_train_steps", "3", "--report_ranks", *FAST_FLAGS],
                    num_processes=2, env={"ACCELERATE_USE_CPU": "true"})  # fmt: skip
    assert_ok(result)
    ranks = [json.loads((out / "ranks" / f"rank-{i}.json").read_text()) for i in range(2)]
    assert [r["process_index"] for r in ranks] == [0, 1]
    assert all(r["num_processes"] == 2 and r["distributed_type"] == "MULTI_CPU" for r in ranks)
    assert ranks[0]["weights_checksum"] == ranks[1]["weights_checksum"]
    assert len(ranks[0]["batch_fingerprints"]) == 3
    assert not set(ranks[0]["batch_fingerprints"]) & set(ranks[1]["batch_fingerprints"])
    assert json.loads((out / "training_info.json").read_text())["total_batch_size"] == 8


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tiny_dpm, tmp_path):
    flags = ["--pretrained_model_name_or_path", tiny_dpm, "--max_train_steps", "40", "--checkpointing_steps", "5",
             "--use_ema", "--checkpoints_total_limit", "2", *FAST_FLAGS]  # fmt: skip
    reference = tmp_path / "uninterrupted"
    assert_ok(launch(TRAIN_PDAE, ["--output_dir", str(reference), *flags]))

    # Launched exactly like the reference (same launcher, same thread settings), in its own process group so that
    # SIGKILL reaches the training process and not only the launcher.
    resumed = tmp_path / "killed"
    command = launch_command(TRAIN_PDAE, ["--output_dir", str(resumed), *flags])
    process = subprocess.Popen(command, env=offline_env(), stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (resumed / "checkpoint-5").is_dir() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed; the test proves nothing"
    time.sleep(0.5)
    assert not (resumed / "model_index.json").exists()

    assert_ok(launch(TRAIN_PDAE, ["--output_dir", str(resumed), "--resume_from_checkpoint", "latest", *flags]))
    expected, actual = trained_weights(reference), trained_weights(resumed)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert len([p for p in resumed.iterdir() if p.name.startswith("checkpoint-")]) == 2  # total limit


@pytest.mark.slow  # a whole script launch (15-25 s): the end-to-end suite
def test_half_written_checkpoint_is_never_resumed(tiny_dpm, tmp_path):
    out = tmp_path / "run"
    flags = ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(out), "--checkpointing_steps", "2",
             *FAST_FLAGS]  # fmt: skip
    assert_ok(launch(TRAIN_PDAE, [*flags, "--max_train_steps", "2"]))
    # What a kill during `save_state` leaves behind: a temporary folder with part of the state.
    partial = out / "checkpoint-4.tmp"
    (partial / "encoder").mkdir(parents=True)
    (partial / "optimizer.bin").write_bytes(b"\x00" * 10)
    assert resolve_resume_path("latest", str(out)) == str(out / "checkpoint-2")
    result = launch(TRAIN_PDAE, [*flags, "--max_train_steps", "4", "--resume_from_checkpoint", "latest"])
    assert_ok(result)
    assert "Resuming from checkpoint" in result.stdout + result.stderr and "checkpoint-2" in result.stdout
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 4


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tiny_dpm, tmp_path):
    out = tmp_path / "nan"
    result = launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(out),
                                 "--max_train_steps", "50", "--checkpointing_steps", "1", "--learning_rate", "1e30",
                                 "--max_grad_norm", "1e30", *FAST_FLAGS])  # fmt: skip
    assert result.returncode != 0
    assert "NonFiniteLossError" in result.stderr and "Training loss became" in result.stderr
    step = int(result.stderr.split("at step ")[1].split(";")[0])
    assert (out / f"checkpoint-{step - 1}").is_dir()
    assert not (out / "model_index.json").exists()


def test_no_secret_reaches_any_file_a_run_writes(tiny_dpm, tmp_path):
    out = tmp_path / "secret-run"
    secret = "hf_doNotWriteMe123"
    result = launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(out),
                                 "--max_train_steps", "2", "--checkpointing_steps", "1", "--hub_token", secret,
                                 *FAST_FLAGS])  # fmt: skip
    assert_ok(result)
    written = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.name.startswith("events.out.tfevents") for path in written)  # the tracker did write
    assert (out / "checkpoint-2" / "noise_generator_0.safetensors").is_file()
    # accelerate's own RNG file is read with weights_only=True; nothing of ours is a pickle
    assert {path.name for path in out.rglob("*.pkl")} <= {"random_states_0.pkl"}
    assert [path for path in written if secret.encode() in path.read_bytes()] == []
    assert secret not in result.stdout + result.stderr


@pytest.mark.slow  # a whole script launch (15-25 s): the end-to-end suite
def test_a_folder_holding_a_finished_run_is_not_trained_over(tiny_dpm, tmp_path):
    out = tmp_path / "done"
    flags = ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(out), *FAST_FLAGS]
    assert_ok(launch(TRAIN_PDAE, [*flags, "--max_train_steps", "1"]))
    weights = (out / "encoder" / "diffusion_pytorch_model.safetensors").read_bytes()
    result = launch(TRAIN_PDAE, [*flags, "--max_train_steps", "1", "--seed", "5"])
    assert result.returncode != 0 and "is not empty" in result.stderr and "--overwrite_output_dir" in result.stderr
    assert (out / "encoder" / "diffusion_pytorch_model.safetensors").read_bytes() == weights


def test_unreadable_training_images_are_named_and_left_out_before_training(image_folder, tmp_path, caplog):
    folder = tmp_path / "with-a-broken-one"
    shutil.copytree(image_folder, folder)
    good = (folder / "00.png").read_bytes()
    (folder / "broken.png").write_bytes(good[: len(good) // 2])
    with caplog.at_level("WARNING"):
        dataset = load_training_dataset(None, None, str(folder), "image", channels=1, resolution=16)
    assert len(dataset) == 12
    assert "broken.png" in caplog.text and "Left out 1 of 13 training images" in caplog.text
    with pytest.raises(ValueError, match="broken.png"):
        unchecked = load_training_dataset(None, None, str(folder), "image", 1, 16, check_images=False)
        [unchecked[i] for i in range(len(unchecked))]
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_training_dataset(None, None, str(tmp_path / "missing"), "image", channels=1, resolution=16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        load_training_dataset(None, None, str(tmp_path / "empty"), "image", channels=1, resolution=16)


def test_images_the_unet_cannot_take_are_rejected_before_training(image_folder):
    converted = load_training_dataset(None, None, image_folder, "image", channels=1, resolution=16)
    assert converted[0]["pixel_values"].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="converted to the UNet's input"):
        load_training_dataset(None, None, image_folder, "image", channels=2, resolution=16)
    with pytest.raises(ValueError, match="--image_column"):
        load_training_dataset(None, None, image_folder, "pixels", channels=1, resolution=16)


class FakeHfApi:
    """Stands in for `huggingface_hub.HfApi` at the network boundary and records what would be uploaded."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, exist_ok, private):
        FakeHfApi.calls.append(("create_repo", repo_id, private))
        return Namespace(repo_id=f"someone/{repo_id}")

    def upload_folder(self, repo_id, folder_path, allow_patterns, commit_message):
        FakeHfApi.calls.append(("upload_folder", repo_id, folder_path, list(allow_patterns)))


def test_model_card_and_the_folder_that_would_be_uploaded(tmp_path, monkeypatch):
    out = tmp_path / "pdae-digits"
    for name in ("encoder", "gradient_estimator", "scheduler", "unet", "checkpoint-10/encoder", "logs", "validation"):
        (out / name).mkdir(parents=True)
    for name in ("model_index.json", "encoder/config.json", "checkpoint-10/optimizer.bin", "logs/events", "v.png"):
        (out / name).write_text("x")
    PIL.Image.new("L", (4, 4)).save(out / "validation" / "step-000010.png")
    monkeypatch.setattr(hub, "HfApi", FakeHfApi)
    args = Namespace(
        output_dir=str(out), push_to_hub=True, hub_model_id=None, hub_token="secret", hub_private_repo=True,
        pretrained_model_name_or_path="google/ddpm-cifar10-32", dataset_name="cifar10", train_data_dir=None,
        latent_dim=64, learning_rate=1e-4, train_batch_size=64, max_train_steps=10, use_ema=True, seed=0,
    )  # fmt: skip
    metrics = {"train_loss": 0.0123, "val_mse_inferred_xT": 0.0004}
    repo_id = hub.create_hub_repo(args)
    uploaded = hub.release_folder(
        args, cards.pdae_model_card, metrics, {"global_step": 10}, str(out / "validation" / "step-000010.png"),
        repo_id=repo_id,
    )  # fmt: skip
    card = (out / "README.md").read_text()
    for tag in cards.PDAE_TAGS:
        assert f"- {tag}\n" in card
    assert "base_model: google/ddpm-cifar10-32" in card
    assert 'PDAEPipeline.from_pretrained("someone/pdae-digits")' in card
    assert 'DiffusionPipeline.from_pretrained("someone/pdae-digits", trust_remote_code=True)' in card
    assert "[cifar10](https://huggingface.co/datasets/cifar10)" in card
    assert "| `--learning_rate` | `0.0001` |" in card and "| val_mse_inferred_xT | 0.0004 |" in card
    assert "![validation grid](validation.png)" in card and (out / "validation.png").is_file()
    assert FakeHfApi.calls[0] == ("create_repo", "pdae-digits", True)
    assert FakeHfApi.calls[1][:3] == ("upload_folder", "someone/pdae-digits", str(out))
    assert sorted(uploaded) == sorted(FakeHfApi.calls[1][3]) == [
        "README.md", "encoder/config.json", "model_index.json", "training_info.json", "v.png", "validation.png",
    ]  # fmt: skip
