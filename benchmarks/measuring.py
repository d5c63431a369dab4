"""How the benchmarks that run each configuration in a fresh process measure it: wall and CPU seconds of the same
calls, the peak memory over what was built, and the fresh process itself.

A module beside the benchmark scripts, imported by plain name (`from measuring import ...`), as `step_timing` is.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from step_timing import median_seconds, synchronize


def current_rss_mib() -> float:
    """This process's resident set size now (Linux `/proc/self/statm`)."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (`ru_maxrss`, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MemoryProbe:
    """Peak memory of what runs after `start()`, over what is held at `start()` (the built models and inputs).

    On the CPU: the process's peak RSS at the end minus its RSS at `start()`, with the peak RSS at `start()` too
    (`peak_at_build_mib`: a build transient above the steps' peak shows there). On CUDA:
    `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` at `start()`, minus the memory then allocated.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.at_build = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self.at_build = current_rss_mib()
            self.peak_at_build = peak_rss_mib()

    def result(self) -> dict[str, float | str]:
        if self.device.type == "cuda":
            synchronize(self.device)
            peak, kind, extra = torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda max_memory_allocated", {}
        else:
            peak, kind = peak_rss_mib(), "cpu ru_maxrss - rss at build"
            extra = {"peak_at_build_mib": self.peak_at_build}
        return {"memory_kind": kind, "at_build_mib": self.at_build, **extra, "peak_mib": peak,
                "peak_over_build_mib": peak - self.at_build}  # fmt: skip


def timed(call: Callable[[], object], steps: int, warmup: int, device: torch.device) -> dict[str, float]:
    """`median_seconds` (wall clock) of `call`, and the median CPU seconds (`time.process_time`: this process, all
    its threads) of the same timed calls: with one thread on a shared CPU, the figure that other processes' load
    does not inflate."""
    cpu_seconds = []

    def counted() -> None:
        started = time.process_time()
        call()
        cpu_seconds.append(time.process_time() - started)

    wall = median_seconds(counted, steps, warmup, device)
    return {"seconds": wall, "cpu_seconds": statistics.median(cpu_seconds[warmup:])}


def run_isolated(script_argv: Callable[[str], list[str]]) -> dict:
    """The figures a fresh Python process writes: `script_argv(out)` is its command line, which writes its figures
    as JSON to `out`; so that its peak memory is its own."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "result.json")
        subprocess.run(script_argv(out), check=True)
        return json.loads(Path(out).read_text())
