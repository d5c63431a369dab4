"""benchmarks/bench_ldm.py on the scaled-down CompVis/ldm-celebahq-256 layout, one call per measurement, so that the
full-size benchmark cannot rot."""

import json
import sys

import pytest
import torch

from .conftest import REPO, load_script

# The benchmark imports step_timing and ldm_layouts by plain name, as running a script from benchmarks/ allows.
BENCHMARKS_DIR = REPO / "benchmarks"
if str(BENCHMARKS_DIR) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS_DIR))

bench = load_script("bench_ldm", folder="benchmarks")
QUICK = [
    "--layout",
    "scaled",
    "--steps",
    "1",
    "--warmup",
    "0",
    "--num_inference_steps",
    "1",
    "--reconstruct_runs",
    "1",
]


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: on a shared CPU, two threads contending with other processes can make these tiny steps 10x
    slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


BREAKDOWN_PARTS = {
    "vq encode (no grad)",
    "unet forward + backward",
    "adamw step, unet",
    "frozen unet pass with features (no grad)",
    "encoder forward + backward (pixels)",
    "G forward + backward",
    "adamw step, encoder + G",
    "vq decode (no grad)",
    "encoder forward (no grad)",
    "plain noise prediction (1 DDIM step)",
    "shifted noise prediction (1 DDIM step)",
}


def test_both_steps_both_reconstructions_and_the_breakdown_are_measured(tmp_path, capsys):
    out = tmp_path / "ldm.json"
    results = bench.main([*QUICK, "--isolation", "none", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    measured = saved["measured"]
    assert set(measured) == {"plain step", "pdae step", "plain reconstruct", "pdae reconstruct", "breakdown"}
    for config in ("plain step", "pdae step", "plain reconstruct", "pdae reconstruct"):
        figures = measured[config]
        assert figures["seconds"] > 0 and figures["cpu_seconds"] > 0
        assert figures["timed_calls"] == {"warmup": 0, "timed": 1}
        assert figures["memory_kind"] == "cpu ru_maxrss - rss at build"
        assert figures["peak_mib"] >= figures["peak_at_build_mib"] > 0 and figures["at_build_mib"] > 0
        assert figures["peak_over_build_mib"] == figures["peak_mib"] - figures["at_build_mib"]
    for config in ("plain reconstruct", "pdae reconstruct"):
        assert measured[config]["output_shape"] == [1, 3, 256, 256]
        assert measured[config]["num_inference_steps"] == 1
    for kind in ("seconds", "cpu_seconds"):
        assert set(measured["breakdown"][kind]) == BREAKDOWN_PARTS
        assert all(seconds > 0 for seconds in measured["breakdown"][kind].values())
    assert set(saved["parameters"]) == {"unet", "vqvae", "encoder", "gradient_estimator"}

    summary = saved["summary"]
    plain, pdae = measured["plain step"], measured["pdae step"]
    assert summary["pdae / plain step, seconds"] == pytest.approx(pdae["seconds"] / plain["seconds"])
    assert summary["pdae / plain step, cpu_seconds"] == pytest.approx(pdae["cpu_seconds"] / plain["cpu_seconds"])
    ratio = pdae["peak_over_build_mib"] / plain["peak_over_build_mib"]
    assert summary["pdae / plain step, peak memory over build"] == pytest.approx(ratio)
    assert {
        "pdae / plain reconstruct, seconds",
        "shifted / plain noise prediction, cpu_seconds",
        "plain reconstruct, seconds per DDIM step (est.)",
        "pdae reconstruct, cpu_seconds per DDIM step (est.)",
    } <= set(summary)
    table = capsys.readouterr().out
    assert (
        "| pdae step |" in table and "| pdae / plain step, seconds |" in table and "| G forward + backward |" in table
    )


def test_a_configuration_runs_alone_in_a_fresh_process():
    args = bench.parse_args([*QUICK, "--threads", "1"])
    figures = bench.measure_isolated("plain step", args)
    assert figures["seconds"] > 0 and figures["timed_calls"] == {"warmup": 0, "timed": 1}
    assert 0 < figures["at_build_mib"] <= figures["peak_mib"]
    # The plain step builds no PDAE models.
    assert set(figures["parameters"]) == {"unet", "vqvae"}


def test_the_pdae_encoder_is_the_light_default_on_pixels():
    encoder = bench.light_pixel_encoder(bench.scaled_down_ldm().unet, latent_dim=512)
    assert (encoder.config.in_channels, encoder.config.sample_size, encoder.config.latent_dim) == (3, 256, 512)
    assert list(encoder.config.block_out_channels) == [32, 64, 128, 128]
