"""The benchmarks on tiny models for a step or two per configuration, so they cannot rot."""

import json
import sys

import pytest
import torch

from .conftest import REPO, load_script, tiny_unet

# The benchmarks import their timing module, benchmarks/step_timing.py, by plain name, as running a script from
# benchmarks/ allows; make it importable here the same way.
BENCHMARKS_DIR = REPO / "benchmarks"
if str(BENCHMARKS_DIR) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS_DIR))


def test_training_step_benchmark_times_every_encoder_design(tmp_path, capsys):
    out = tmp_path / "times.json"
    benchmark = load_script("benchmark_training_step", folder="benchmarks")
    benchmark.main(["--batch_size", "2", "--steps", "1", "--warmup", "0", "--json", str(out),
                    "--encoders", "light", "residual", "transformers"])  # fmt: skip
    results = json.loads(out.read_text())
    designs = ("light", "residual", "transformers")
    expected = {f"{kind} {precision}" for kind in ("ddpm",) for precision in ("fp32", "bf16-autocast")}
    expected |= {f"pdae {precision} {design}" for precision in ("fp32", "bf16-autocast") for design in designs}
    assert set(results["seconds_per_step"]) == expected
    assert all(seconds > 0 for seconds in results["seconds_per_step"].values())
    assert set(results["pdae_step_by_encoder"]) == {"PDAEEncoder", "PDAEResidualEncoder", "PDAETransformersEncoder"}
    assert results["pdae_over_ddpm_fp32"] > 0 and results["batch_size"] == 2
    assert "pdae bf16-autocast residual" in capsys.readouterr().out


def _tiny_layout(tmp_path) -> str:
    path = tmp_path / "tiny_unet.json"
    tiny_unet().save_config(tmp_path / "tiny-unet")
    path.write_text((tmp_path / "tiny-unet" / "config.json").read_text())
    return str(path)


def test_step_benchmark_times_every_method_and_gradient_estimator(tmp_path, capsys):
    out = tmp_path / "steps.json"
    benchmark = load_script("bench_steps", folder="benchmarks")
    benchmark.main(["--layout", _tiny_layout(tmp_path), "--batch_size", "2", "--steps", "2", "--warmup", "0",
                    "--sampling_steps", "2", "--precision", "fp32", "bf16", "--json", str(out)])  # fmt: skip
    results = json.loads(out.read_text())
    options = ("full", "1-resnet", "half-width", "1-resnet-half-width")
    assert set(results["runs"]) == {"fp32, compile none", "bf16, compile none"}
    for figures in results["runs"].values():
        assert set(figures["training"]) == {"ddpm", "baseline", *(f"pdae {name}" for name in options)}
        expected_sampling = {"plain ddim", "encoder images/s"}
        expected_sampling |= {f"pdae {name} {kind}" for name in options for kind in ("every step", "critical stage")}
        assert set(figures["sampling"]) == expected_sampling
        assert all(value > 0 for value in [*figures["training"].values(), *figures["sampling"].values()])
        ratio = figures["ratios"]["pdae full / ddpm"]
        assert ratio == figures["training"]["pdae full"] / figures["training"]["ddpm"]
    counts = results["parameters"]
    assert counts["G 1-resnet-half-width"] < counts["G 1-resnet"] < counts["G full"]
    assert counts["baseline"] > counts["unet"]
    assert "pdae half-width critical stage / plain ddim" in capsys.readouterr().out


def test_sample_efficiency_benchmark_records_both_curves_and_the_images_to_reach(tmp_path, tiny_dpm):
    out = tmp_path / "efficiency"
    benchmark = load_script("sample_efficiency", folder="benchmarks")
    results = benchmark.main(["--pretrained", tiny_dpm, "--max_steps", "2", "--eval_every", "1", "--batch_size", "4",
                              "--eval_images", "10", "--inference_steps", "2", "--probe_train", "100",
                              "--probe_test", "50", "--latent_dim", "8", "--out", str(out)])  # fmt: skip
    saved = json.loads((out / "results.json").read_text())
    assert saved["curves"] == json.loads(json.dumps(results["curves"]))
    for curve in saved["curves"].values():
        assert [record["images_seen"] for record in curve] == [4, 8]
        assert all(0 <= record["probe_accuracy"] <= 1 and record["psnr_inferred"] > 0 for record in curve)
    assert set(saved["summary"]) == {"psnr_inferred", "ssim_z_only", "probe_accuracy"}
    assert saved["summary"]["probe_accuracy"]["images_to_reach"]["baseline"] in (4, 8)
    assert (out / "sample_efficiency.png").stat().st_size > 10_000


def test_images_to_reach_is_the_first_evaluation_at_or_above_the_target():
    benchmark = load_script("sample_efficiency", folder="benchmarks")
    curve = [{"images_seen": 64, "psnr_inferred": 20.0}, {"images_seen": 128, "psnr_inferred": 25.0}]
    assert benchmark.images_to_reach(curve, "psnr_inferred", 21.0) == 128
    assert benchmark.images_to_reach(curve, "psnr_inferred", 19.0) == 64
    assert benchmark.images_to_reach(curve, "psnr_inferred", 30.0) is None


def test_separate_runs_of_each_method_combine_into_one_comparison(tmp_path):
    benchmark = load_script("sample_efficiency", folder="benchmarks")
    config = {"batch_size": 4, "seed": 0, "methods": ["pdae"]}
    pdae = {"config": config, "curves": {"pdae": [{"images_seen": 4, "psnr_inferred": 30.0}]}}
    baseline = {"config": {**config, "methods": ["baseline"]}, "curves": {"baseline": [{"images_seen": 4}]}}
    merged = benchmark.combine([pdae, baseline])
    assert set(merged["curves"]) == {"pdae", "baseline"} and merged["config"]["methods"] == ["pdae", "baseline"]
    with pytest.raises(ValueError, match="different settings"):
        benchmark.combine([pdae, {**baseline, "config": {**config, "batch_size": 8}}])


def test_step_timing_times_every_call_after_the_warmup_and_knows_its_compile_modes():
    import step_timing

    calls = []
    seconds = step_timing.median_seconds(lambda: calls.append(1), steps=3, warmup=2, device=torch.device("cpu"))
    assert len(calls) == 5 and seconds >= 0
    module = torch.nn.Linear(2, 2)
    assert step_timing.compiled(module, "none") is module
    with pytest.raises(ValueError, match="Unknown compile mode 'fast'"):
        step_timing.compiled(module, "fast")


@pytest.mark.slow  # eight fresh processes, each building a narrow SD or DiT
@pytest.mark.parametrize("family", ["sd15", "dit-xl-2"])
def test_the_large_model_benchmark_measures_every_step_of_each_family(family, tmp_path, capsys):
    """--quick: narrow SD and DiT layouts, each configuration in its own process, every G design beside the plain
    step, with the parameter counts that tell the designs apart."""
    out = tmp_path / "large.json"
    load_script("bench_large_models", folder="benchmarks").main(["--quick", "--family", family, "--json", str(out)])
    measured = json.loads(out.read_text())["measured"]
    assert set(measured) == {"plain", "pdae-full", "pdae-half", "pdae-light"}
    assert all(figures["seconds"] > 0 and figures["peak_mib"] > 0 for figures in measured.values())
    estimators = [
        measured[f"pdae-{design}"]["parameters"]["gradient_estimator"] for design in ("full", "half", "light")
    ]
    assert estimators[0] > estimators[1] > estimators[2]
    assert "time vs plain" in capsys.readouterr().out
