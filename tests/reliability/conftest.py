"""The reliability suite's judges: bad inputs and faults a careful user can hit, each asserted against the behaviour
we want (a clear error before any expensive work, or the right result).

Every test carries `@pytest.mark.reliability(area=..., outcome=...)` (the area from the module's `pytestmark`) and a
one-line docstring; `scripts/reliability_report.py` writes docs/reliability.md from them. A docstring may hold
`{name}` fields: the report fills them from the test's parameters.
"""

from __future__ import annotations

import builtins
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ..conftest import LATENT_DIM, REPO, tiny_pipeline

AREAS = ("pipeline", "images", "loading", "training")
OUTCOMES = ("clear error", "handled", "unclear error", "silently wrong", "crash", "lost data", "security hole")
CLEAR_TYPES = (ValueError, TypeError, FileNotFoundError)

# What a message must name (regular expressions, case-insensitive; any one suffices).
NONFINITE = [r"\bnan\b", r"finite", r"\binf"]
STEPS_KW = [r"num_inference_steps"]
EMPTY_KW = ["empty", r"no images?\b", "at least one", r"batch.?size( of)? 0"]
SIZE = 16  # the tiny pipeline's image size (tests/conftest.py)

CLEAR = pytest.mark.reliability(outcome="clear error")
HANDLED = pytest.mark.reliability(outcome="handled")


def codes(batch: int = 2, seed: int = 5) -> torch.Tensor:
    return torch.randn(batch, LATENT_DIM, generator=torch.Generator().manual_seed(seed))


def noise(batch: int = 2, seed: int = 6) -> torch.Tensor:
    return torch.randn(batch, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def poisoned(tensor: torch.Tensor, value: float) -> torch.Tensor:
    """A copy of `tensor` with one entry set to `value` (NaN or inf)."""
    tensor = tensor.clone()
    tensor.view(-1)[3] = value
    return tensor


def names_one_of(message: str, keywords: list[str]) -> bool:
    return any(re.search(keyword, message, re.IGNORECASE) for keyword in keywords)


class UNetCounter:
    """Counts UNet evaluations of `pipe` through a forward pre-hook on `unet.conv_in` (every path goes through it)."""

    def __init__(self, pipe=None):
        self.calls = 0
        self._handle = pipe.unet.conv_in.register_forward_pre_hook(self._count) if pipe is not None else None

    def _count(self, module, inputs):
        self.calls += 1

    def __enter__(self) -> UNetCounter:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def assert_clear_error(
    call: Callable,
    keywords: list[str],
    pipe=None,
    max_seconds: float | None = None,
    types: tuple[type[BaseException], ...] = CLEAR_TYPES,
) -> BaseException:
    """`call()` raises a ValueError, TypeError or FileNotFoundError whose message matches one of `keywords`, before
    any UNet evaluation of `pipe` (and within `max_seconds`). Returns the error."""
    with UNetCounter(pipe) as counter:
        started = time.perf_counter()
        try:
            result = call()
        except Exception as error:  # judged below: the type is part of what is asserted
            caught = error
        else:
            pytest.fail(f"no error ({counter.calls} UNet evaluations); got {type(result).__name__}")
        seconds = time.perf_counter() - started
    assert isinstance(caught, types), f"wrong type: {type(caught).__name__}: {caught}"
    assert names_one_of(str(caught), keywords), f"message names none of {keywords}: {caught}"
    assert counter.calls == 0, f"late, after {counter.calls} UNet evaluations: {caught}"
    if max_seconds is not None:
        assert seconds <= max_seconds, f"late, after {seconds:.1f}s (limit {max_seconds}s): {caught}"
    return caught


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """The models here are tiny: one CPU thread runs them several times faster than two on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pipe():
    """A fresh tiny random 16x16 PDAEPipeline (latent_dim 8, DDIM over 1000 training steps)."""
    return tiny_pipeline()


# ---------------------------------------------------------------------------------------------- training scripts

# Two tiny steps of train_pdae.py on the tiny DPM (`tiny_dpm` in tests/conftest.py), as the former probe ran them.
FAST_FLAGS = [
    "--train_batch_size", "4", "--num_validation_images", "2", "--validation_inference_steps", "2",
    "--lr_warmup_steps", "0", "--latent_dim", "8", "--encoder_block_out_channels", "8", "16",
    "--encoder_norm_num_groups", "4", "--save_images_epochs", "1000", "--seed", "0", "--max_train_minutes", "1",
]  # fmt: skip
TRAIN_TIMEOUT = 300


def pdae_flags(tiny_dpm: str, out_dir: Path, *extra: str, steps: int | None = 2) -> list[str]:
    flags = ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(out_dir), *FAST_FLAGS]
    if steps is not None:
        flags += ["--max_train_steps", str(steps)]
    return [*flags, *extra]


def dpm_flags(unet_config: Path, out_dir: Path, *extra: str, steps: int | None = 2) -> list[str]:
    flags = [
        "--output_dir", str(out_dir), "--model_config_name_or_path", str(unet_config), "--resolution", "16",
        "--train_batch_size", "4", "--ddpm_num_inference_steps", "2", "--eval_batch_size", "4",
        "--lr_warmup_steps", "0", "--save_images_epochs", "1000", "--max_train_minutes", "1",
    ]  # fmt: skip
    if steps is not None:
        flags += ["--max_train_steps", str(steps)]
    return [*flags, *extra]


def train_env(scratch: Path) -> dict:
    """Offline, one CPU thread, this checkout's library first on the path."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(scratch / "hf-datasets-cache"),
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(scratch / "wandb"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def train_command(script: str, flags: list[str]) -> list[str]:
    """`python examples/<script> ...`, as a user runs it."""
    return [sys.executable, str(REPO / "examples" / script), *flags]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr


def train(script: str, flags: list[str], scratch: Path, timeout: int = TRAIN_TIMEOUT) -> Run:
    """Run a training script to its end in its own process group (killed whole on a timeout)."""
    process = subprocess.Popen(
        train_command(script, flags),
        env=train_env(scratch),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{script} did not finish within {timeout}s (crash): {stderr[-1000:]}")
    return Run(process.returncode, stdout, stderr)


def steps_done(text: str) -> int:
    """The highest step the tqdm progress bar ("Steps: ... | 3/10 [...") reached."""
    return max((int(n) for n in re.findall(r"\|\s*(\d+)/\d+\s*\[", text)), default=0)


def last_exception(text: str) -> tuple[str | None, str]:
    """(qualified name, message) of the last traceback in `text`."""
    start = text.rfind("Traceback (most recent call last):")
    if start < 0:
        return None, ""
    lines = text[start:].splitlines()[1:]
    for index, line in enumerate(lines):
        if line and not line.startswith((" ", "\t")):
            found = re.match(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$", line)
            if found is None:
                continue
            message = [found.group(2) or ""]
            for more in lines[index + 1 :]:  # a multi-line message ends at a blank line or the next log output
                if not more.strip() or "\r" in more or more.startswith(("Steps:", "Traceback")):
                    break
                message.append(more)
            return found.group(1), "\n".join(message).strip()
    return None, ""


def is_clear_type(name: str) -> bool:
    """Whether the exception class `name` (from a traceback; resolved by import, so subclasses count, e.g. datasets'
    `EmptyDatasetError` is a `FileNotFoundError`) is a ValueError, TypeError or FileNotFoundError."""
    module, _, attribute = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module) if module else builtins, attribute, None)
    except Exception:
        cls = None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return issubclass(cls, CLEAR_TYPES)
    return attribute in {t.__name__ for t in CLEAR_TYPES}


def assert_training_refused(run: Run, keywords: list[str]) -> None:
    """The run stopped before its first step with argparse's exit 2, or a ValueError / TypeError / FileNotFoundError
    traceback, naming one of `keywords`."""
    assert run.returncode >= 0, f"killed by signal {-run.returncode} (crash)"
    steps = steps_done(run.output)
    assert run.returncode != 0, f"exit 0 after {steps} training step(s)"
    if run.returncode == 2 and "Traceback (most recent call last)" not in run.stderr:
        errors = [line for line in run.stderr.splitlines() if "error:" in line] or run.stderr.splitlines()[-1:]
        assert names_one_of(" ".join(errors), keywords), f"exit 2 naming none of {keywords}: {errors}"
        return
    name, message = last_exception(run.stderr)
    assert name is not None, f"exit {run.returncode} without a traceback: {run.stderr[-1000:]}"
    assert is_clear_type(name), f"wrong type: {name}: {message}"
    assert names_one_of(message, keywords), f"message names none of {keywords}: {name}: {message}"
    assert steps == 0, f"late, after {steps} step(s): {name}: {message}"


def drop_index_entry(folder: Path, component: str) -> Path:
    """`folder` (a saved pipeline) with `component`'s entry removed from its model_index.json, as a hand edit or a
    partial copy leaves it."""
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    del index[component]
    index_path.write_text(json.dumps(index))
    return folder
