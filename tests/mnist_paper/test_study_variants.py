"""The objective study (docs/results/objective/): every variant of examples/mnist_paper/train_study_variant.sh asks
train_pdae.py for a run it accepts and changes only its own setting of the reference, and compare_encoders.py
reuses figures measured on another machine."""

import json
import os
import subprocess

import pytest

from ..conftest import REPO, load_script
from .conftest import load_study_script

SCRIPT = REPO / "examples" / "mnist_paper" / "train_study_variant.sh"
# What each variant changes, against the reference run (besides its output folder).
CHANGES = {
    "gamma-0": {"lambda_gamma": 0.0},
    "gamma-0.5": {"lambda_gamma": 0.5},
    "z-32": {"latent_dim": 32},
    "z-128": {"latent_dim": 128},
    "no-ema": {"use_ema": False},
    "batch-256": {"train_batch_size": 256},
    "g-cold": {"warm_start_from_unet": False},
    "residual": {"encoder_type": "residual"},
    "residual-warm": {"encoder_type": "residual", "encoder_warm_start_from_unet": True},
}


def script_flags(variant: str, tmp_path, *extra: str) -> list[str]:
    """The flags the script hands to train_pdae.py, caught by a stand-in `python` (which also answers "no CUDA")."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 1\nshift\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(SCRIPT), variant, *extra], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def parsed(variant: str, tmp_path, *extra: str) -> dict:
    return vars(load_script("train_pdae").parse_args(script_flags(variant, tmp_path, *extra)))


def test_each_variant_changes_only_its_own_setting_of_the_reference(tmp_path):
    reference = parsed("ref", tmp_path)
    assert (reference["train_batch_size"], reference["max_train_steps"], reference["latent_dim"]) == (128, 1500, 64)
    assert reference["lambda_gamma"] == 0.1 and reference["use_ema"] and reference["warm_start_from_unet"]
    assert reference["encoder_type"] == "light" and reference["seed"] == 0
    for variant, change in CHANGES.items():
        args = parsed(variant, tmp_path)
        differing = {key for key in args if args[key] != reference[key]} - {"output_dir"}
        # A residual encoder's layout defaults (widths, groups) differ from the light one's; they come with the type.
        if variant.startswith("residual"):
            differing -= {"encoder_block_out_channels", "encoder_norm_num_groups", "encoder_layers_per_block"}
        assert differing == set(change), variant
        assert all(args[key] == value for key, value in change.items()), variant
        assert args["output_dir"] == f"work_dirs/objective/{variant}"


def test_round_4_trains_round_3_further_and_extra_flags_win(tmp_path):
    args = parsed("round-4", tmp_path)
    assert args["init_from_pipeline"].endswith("examples/mnist_paper/pretrained/pdae-mnist-round3")
    assert (args["lr_warmup_steps"], args["seed"]) == (0, 3)
    assert (args["train_batch_size"], args["max_train_steps"]) == (128, 915)
    wider = parsed("round-4-batch-256", tmp_path)
    assert (wider["train_batch_size"], wider["max_train_steps"]) == (256, 637)
    assert parsed("ref", tmp_path, "--max_train_steps", "7")["max_train_steps"] == 7


def test_an_unknown_variant_is_refused_and_the_compare_script_knows_every_variant(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), "gamma-7"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown variant 'gamma-7'" in done.stderr
    known = set(load_study_script("compare_encoders").study_variants())
    assert known == {"ref", "round-4", "round-4-batch-256", *CHANGES}


def measured_elsewhere(steps=(2, 3), z_only_steps=3) -> dict:
    """A result as compare_encoders.py writes it, measured on a GPU for a folder this machine does not have."""
    score = {"psnr": {"mean": 30.0, "sem": 0.1}, "ssim": {"mean": 0.9, "sem": 0.01}}
    kinds = ("pdae_inferred_xT", "pdae_random_xT", "ddim_inversion")
    return {
        "parameters": {"encoder": 283_104, "gradient_estimator": 1_114_465},
        "encoder_class": "PDAEEncoder",
        "latent_dim": 64,
        "probe_accuracy": 0.95,
        "reconstruction": {str(t): {kind: score for kind in kinds} for t in steps},
        f"z_only_ssim_T{z_only_steps}": {"mean": 0.89, "sem": 0.01},
        "gap_ratio": 0.56,
        "training": {"global_step": 637, "train_batch_size": 256, "latent_dim": 64, "lambda_gamma": 0.1,
                     "use_ema": True},
        "folder": "/elsewhere/round-4",
        "settings": {"reconstruction_digits": 10, "steps": list(steps), "z_only_steps": z_only_steps,
                     "probe_train": 300, "probe_test": 100, "curve_digits": 10, "seed": 0, "curve_stride": 250,
                     "device": "cuda"},
    }  # fmt: skip


TINY = ["--reconstruction_digits", "10", "--steps", "2", "3", "--z_only_steps", "3", "--curve_digits", "10",
        "--curve_stride", "250", "--probe_train", "300", "--probe_test", "100", "--device", "cpu"]  # fmt: skip


def test_figures_measured_on_a_gpu_are_reused_without_the_folder_and_say_where_they_were_measured(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = measured_elsewhere()
    (out / "encoders.json").write_text(json.dumps({"command": "on the GPU", "runs": {"round-4": result}}))
    compare = load_study_script("compare_encoders")
    results = compare.main(["--run", "round-4=/elsewhere/round-4", "--out", str(out), "--reuse", *TINY])
    assert results["round-4"] == result
    readme = (out / "README.md").read_text()
    assert "| round-4 | PDAEEncoder | 283k / 1.11M | 64 / 0.1 / yes | 637 x 256 |" in readme
    assert "Measured on cuda: round-4." in readme
    assert "`bash examples/mnist_paper/train_study_variant.sh round-4`" in readme
    assert not (out / "reconstructions.png").exists()  # no pipeline here to draw from


def test_an_absent_folder_with_nothing_to_reuse_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    other_settings = measured_elsewhere(steps=(5,))
    (out / "encoders.json").write_text(json.dumps({"command": "x", "runs": {"round-4": other_settings}}))
    with pytest.raises(SystemExit, match=r"No saved PDAEPipeline for \['round-4'\]"):
        load_study_script("compare_encoders").main(
            ["--run", "round-4=/elsewhere/round-4", "--out", str(out), "--reuse", *TINY]
        )
    assert sorted(path.name for path in out.iterdir()) == ["encoders.json"]
