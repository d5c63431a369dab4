"""benchmarks/bench_memory.py on its tiny layouts (`--quick`), so that the full-size memory benchmark cannot rot."""

import json
import sys

import pytest
import torch

from .conftest import REPO, load_script

# The benchmark imports step_timing and ldm_layouts by plain name, as running a script from benchmarks/ allows.
BENCHMARKS_DIR = REPO / "benchmarks"
if str(BENCHMARKS_DIR) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS_DIR))

bench = load_script("bench_memory", folder="benchmarks")


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: on a shared CPU, two threads contending with other processes make tiny steps much slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quick_measures_each_layout_batch_and_setting_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "memory.json"
    results = bench.main(["--quick", "--isolation", "none", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    assert set(saved["measured"]) == {"tiny", "tiny-ldm"}
    for layout, by_batch in saved["measured"].items():
        assert set(by_batch) == {"1", "2"}
        for figures in by_batch.values():
            assert set(figures) == {"off", "on"}
            for setting in figures.values():
                assert setting["seconds"] > 0 and setting["cpu_seconds"] > 0
                assert setting["calls"] == {"warmup": 1, "timed": 1}
                assert setting["memory_kind"] == "cpu ru_maxrss - rss at build"
                assert setting["peak_over_build_mib"] == setting["peak_mib"] - setting["at_build_mib"]
                assert setting["grads_and_adamw_mib"] > 0
        assert set(saved["parameters"][layout]) == {"unet", "encoder", "gradient_estimator"}
    table = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("| layout |"))
    assert [cell.strip() for cell in table[header].split("|")[2:-1]] == [
        "batch", "s/step off", "s/step on", "slowdown", "CPU s/step off", "CPU s/step on", "CPU slowdown",
        "peak RSS off", "peak RSS on", "saving", "grads + AdamW",
    ]  # fmt: skip
    body = table[header + 2 : header + 6]
    assert [[cell.strip() for cell in line.split("|")[1:3]] for line in body] == [
        ["tiny", "1"], ["tiny", "2"], ["tiny-ldm", "1"], ["tiny-ldm", "2"],
    ]  # fmt: skip
    for line, row in zip(body, bench.rows(saved), strict=True):
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        assert cells[4] == f"{row['slowdown']:.2f}x" and cells[7] == f"{row['cpu_slowdown']:.2f}x"
        assert cells[10] == f"{row['saving_mib']:.0f} ({100 * row['saving_fraction']:.0f}%)"


def test_the_step_enables_checkpointing_on_both_models_and_the_latent_step_reads_pixels():
    args = bench.parse_args(["--quick"])
    latent = bench.build("tiny-ldm", 2, args)
    assert latent.clean is None and latent.vqvae is not None  # the VQ model encodes the pixels at every step
    assert tuple(latent.pixels.shape) == (2, 3, 32, 32) and latent.encoder.config.sample_size == 32
    bench.pdae_step(latent, checkpointing=True)
    assert latent.encoder.is_gradient_checkpointing and latent.gradient_estimator.is_gradient_checkpointing
    bench.pdae_step(latent, checkpointing=False)
    assert not latent.encoder.is_gradient_checkpointing and not latent.gradient_estimator.is_gradient_checkpointing
    cached = bench.build("tiny-ldm", 1, bench.parse_args(["--quick", "--cache_latents"]))
    assert cached.vqvae is None and tuple(cached.clean.shape) == (1, 3, 8, 8)


@pytest.mark.slow  # a fresh Python process: imports alone take seconds
def test_a_worker_runs_one_configuration_in_a_fresh_process():
    args = bench.parse_args(["--quick", "--threads", "1"])
    figures = bench.measure_isolated("tiny", 1, True, args)
    assert figures["seconds"] > 0 and 0 < figures["at_build_mib"] <= figures["peak_mib"]
