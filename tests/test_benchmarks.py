"""benchmarks/benchmark_training_step.py on two digits for one step per configuration, so it cannot rot."""

import json

from .conftest import load_script


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
