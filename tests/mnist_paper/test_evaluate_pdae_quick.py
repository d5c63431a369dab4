"""examples/mnist_paper/evaluate_pdae.py --quick end to end on tiny random models saved to a temporary folder."""

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler

import diffusers_pdae  # noqa: F401
from diffusers_pdae import GradientEstimator, PDAEPipeline

from ..conftest import perturb_output, tiny_encoder, tiny_unet
from .conftest import load_study_script

EXPECTED_FILES = [
    "README.md",
    "results.json",
    "reconstruction.png",
    "reconstructions_T20.png",
    "linear_probe.png",
    "diffusion_loss.png",
    "posterior_mean_gap.png",
    "one_step_predictions.png",
    "critical_stage.png",
    "mixed_sampling.png",
    "interpolation.png",
    "manipulation.png",
]


def save_tiny_models(folder: Path) -> tuple[Path, Path]:
    """A tiny 32x32 PDAEPipeline and a tiny class-conditional UNet, saved like the bundled checkpoints."""
    unet = tiny_unet(seed=0, sample_size=32, attention=False)
    torch.manual_seed(3)
    gradient_estimator = perturb_output(GradientEstimator.from_unet(unet, latent_dim=8))
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    pipeline = PDAEPipeline(unet, scheduler, tiny_encoder(sample_size=32), gradient_estimator)
    pipeline.save_pretrained(folder / "pdae")
    conditional_unet = tiny_unet(seed=5, sample_size=32, attention=False, num_class_embeds=10)
    conditional_unet.save_pretrained(folder / "conditional" / "unet")
    return folder / "pdae", folder / "conditional"


@pytest.mark.slow
def test_quick_evaluation_writes_every_file_and_figure(tmp_path):
    pipeline_path, conditional_path = save_tiny_models(tmp_path)
    out = tmp_path / "results"
    script = load_study_script("evaluate_pdae")
    # --quick with fewer reconstruction and grid steps, to keep the test to seconds; T=50 is left out on purpose,
    # so the target that compares with DDIM at T=50 must report "not measured".
    results = script.main(
        ["--pipeline", str(pipeline_path), "--out", str(out), "--quick", "--conditional_dpm", str(conditional_path),
         "--reconstruction_steps", "2", "20", "--grid_steps", "3", "--seed", "1"]
    )  # fmt: skip
    for name in EXPECTED_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name

    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["quick"] is True
    expected_keys = {
        "command", "config", "device", "reconstruction", "representation", "diffusion_loss", "posterior_mean_gap",
        "critical_stage", "classifier_fd", "grids", "targets", "section_times_s", "wall_time_s",
    }  # fmt: skip
    assert expected_keys <= set(saved)
    assert set(saved["reconstruction"]["figures"]) == {"2", "20"}
    assert set(saved["reconstruction"]["figures"]["20"]) == {
        "pdae_inferred_xT", "pdae_random_xT", "ddim_inversion", "dpm_random_xT",
    }  # fmt: skip
    probes = saved["representation"]["probes"]
    assert {
        "PDAE z",
        "PCA-8",
        "conv autoencoder-8",
        "VAE-8 (means)",
        "raw pixels",
        "DDIM-inverted x_T (subset)",
    } <= set(probes)
    assert probes["raw pixels"]["width"] == 784 and probes["DDIM-inverted x_T (subset)"]["width"] == 1024
    assert {"dpm", "conditional_dpm", "pdae"} <= set(saved["diffusion_loss"])
    gap = saved["posterior_mean_gap"]
    assert 0 < gap["ratio_pdae_to_dpm"] and len(gap["ratio_pdae_to_dpm_by_range"]) == len(gap["ranges"]) == 4
    stage = saved["critical_stage"]
    assert stage["timesteps"] == list(range(0, 1000, 100)) and len(stage["scores"]) == 10
    assert stage["scores"][9][0] is None and 0 <= stage["full_shift_score"] <= 1
    assert set(saved["classifier_fd"]["distances"]) == {
        "train digits (floor)", "PDAE z only (random x_T), codes of test digits", "DPM samples (random x_T, no z)",
    }  # fmt: skip
    assert len(saved["targets"]) == 7 and all(
        {"name", "target", "measured", "met"} <= set(t) for t in saved["targets"]
    )
    readme = (out / "README.md").read_text()
    assert "## Targets" in readme and "critical_stage.png" in readme and "classifier FD" in readme
    assert results["wall_time_s"] == saved["wall_time_s"]
