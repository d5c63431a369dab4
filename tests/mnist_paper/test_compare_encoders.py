"""examples/mnist_paper/compare_encoders.py on the bundled pipeline and an untrained residual encoder, a few digits."""

import json

import pytest
import torch

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline, PDAEResidualEncoder
from diffusers_pdae.bundled import checkpoint_path

from .conftest import load_study_script

TINY = ["--reconstruction_digits", "10", "--steps", "2", "3", "--z_only_steps", "3", "--curve_digits", "10",
        "--curve_stride", "250", "--probe_train", "300", "--probe_test", "100"]  # fmt: skip


@pytest.mark.slow  # a whole evaluation on two pipelines (15-35 s)
def test_the_trained_encoder_beats_an_untrained_one_in_every_column(tmp_path, capsys):
    bundled = PDAEPipeline.from_pretrained(checkpoint_path("pdae-mnist"))
    torch.manual_seed(0)
    untrained = PDAEResidualEncoder.from_unet(bundled.unet, latent_dim=bundled.latent_dim)
    PDAEPipeline(**{**bundled.components, "encoder": untrained}).save_pretrained(tmp_path / "untrained")
    out = tmp_path / "out"
    results = load_study_script("compare_encoders").main(
        ["--run", f"shipped={checkpoint_path('pdae-mnist')}", "--run", f"untrained={tmp_path / 'untrained'}",
         "--out", str(out), *TINY]
    )  # fmt: skip
    shipped, fresh = results["shipped"], results["untrained"]
    assert (shipped["encoder_class"], fresh["encoder_class"]) == ("PDAEEncoder", "PDAEResidualEncoder")
    assert shipped["parameters"]["encoder"] == 283_104
    assert shipped["probe_accuracy"] > fresh["probe_accuracy"] + 0.1
    assert shipped["z_only_ssim_T3"]["mean"] > fresh["z_only_ssim_T3"]["mean"] + 0.1
    assert shipped["gap_ratio"] < fresh["gap_ratio"]
    for steps in ("2", "3"):
        inferred = {
            name: run["reconstruction"][steps]["pdae_inferred_xT"]["psnr"]["mean"] for name, run in results.items()
        }
        assert inferred["shipped"] > inferred["untrained"]
        # plain DDIM inversion does not involve the encoder: the same for both runs
        plain = [run["reconstruction"][steps]["ddim_inversion"]["psnr"]["mean"] for run in results.values()]
        assert plain[0] == plain[1]
    saved = json.loads((out / "encoders.json").read_text())
    assert saved["runs"]["shipped"]["probe_accuracy"] == shipped["probe_accuracy"]
    readme = (out / "README.md").read_text()
    assert "| shipped | PDAEEncoder | 283k / 1.11M |" in readme and "| untrained | PDAEResidualEncoder |" in readme
    assert (out / "reconstructions.png").stat().st_size > 0
    assert "| shipped |" in capsys.readouterr().out

    # --reuse keeps the measured runs and evaluates only a new one
    again = load_study_script("compare_encoders").main(
        ["--run", f"shipped={checkpoint_path('pdae-mnist')}", "--run", f"copy={tmp_path / 'untrained'}",
         "--out", str(out), "--reuse", *TINY]
    )  # fmt: skip
    assert again["shipped"] == results["shipped"]
    assert again["copy"]["probe_accuracy"] == fresh["probe_accuracy"] and again["copy"]["seconds"] != fresh["seconds"]
    assert "figures reused" in capsys.readouterr().out


def test_a_run_that_is_not_a_pipeline_folder_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load_study_script("compare_encoders").main(["--run", f"x={tmp_path}", "--out", str(tmp_path / "out")])
    assert "give NAME=FOLDER with a saved PDAEPipeline" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
