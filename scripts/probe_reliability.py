"""Reliability probe: a catalogue of bad inputs and faults a careful user can hit, classified by what the user sees.

Each case feeds the library's public surface one bad input or fault: `PDAEPipeline` and its methods, the PIL
conversion behind them (`pipe.prepare_images`, i.e. `image_utils.images_to_tensor`), `from_pretrained` /
`save_pretrained`, and the two training scripts (run as subprocesses). Every case is judged against the *desired*
behaviour, not the current one, so the same script gives the "before" and the "after" column of a reliability fix.

Outcome classes
---------------
clear error     A `ValueError`, `TypeError` or `FileNotFoundError` (for training flags also argparse's exit with
                code 2) raised *before* the expensive work (no UNet evaluation in-process, no training step in a
                subprocess), whose message names the offending argument, flag or file: each case lists keywords
                (regular expressions, matched case-insensitively; any one suffices).
handled         The desired behaviour is a correct result rather than an error, and the case's check of the result
                passes (e.g. a 16-bit image scaled by its real range, a mixed-size list of PIL images converted).
unclear error   An exception, but of another type, or whose message names none of the keywords, or raised only after
                the expensive work (the detail says "late").
silently wrong  No exception although one was desired, or a result that fails the case's check.
crash           A training subprocess timed out or died from a signal; an in-process case that hit the time limit.
lost data       Files that existed before the call are gone or were overwritten.
security hole   A secret reaches a file, or code runs from a doctored checkpoint.

A case whose desired behaviour is a result but which gets a clear refusal (the right type, naming the input) is
reported as "clear error"; any other exception there is an "unclear error". In a training subprocess the type is
read from the last traceback and resolved by import, so subclasses count (e.g. datasets' `EmptyDatasetError` is a
`FileNotFoundError`). `--accept_oserror` also counts `OSError` and its subclasses as a clear type (diffusers reports
most loading failures as plain `OSError`); it is off by default, and the JSON records which types were accepted.

Running it
----------
    python scripts/probe_reliability.py                          # every case; prints the table and the totals
    python scripts/probe_reliability.py --json /tmp/probe.json   # also write cases and totals as JSON
    python scripts/probe_reliability.py --only images            # one area: pipeline, images, loading, training
    python scripts/probe_reliability.py --skip_training          # no training subprocesses
    python scripts/probe_reliability.py --cases call-steps-zero encode-nan-image   # chosen cases only
    python scripts/probe_reliability.py --repo /tmp/pdae-before  # probe another checkout of the library

A "before" column for uncommitted fixes: `mkdir /tmp/pdae-before && git archive HEAD | tar -x -C /tmp/pdae-before`,
then `--repo /tmp/pdae-before --json before.json`; the "after" column is the default (this checkout).

The pipeline cases use a tiny random 16x16 pipeline (milliseconds per step on a CPU); the loading cases copy the
bundled checkpoint or a saved tiny pipeline to a scratch folder; the training cases train a tiny 16x16 DPM's PDAE
for one to three steps each. Everything runs offline (`HF_HUB_OFFLINE=1`) with one CPU thread per process, and
nothing outside the scratch folder (a fresh temporary folder, or `--workdir`) is written.
"""

from __future__ import annotations

import argparse
import builtins
import hashlib
import importlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch

OUTCOMES = ("clear error", "handled", "unclear error", "silently wrong", "crash", "lost data", "security hole")
AREAS = ("pipeline", "images", "loading", "training")
CLEAR_TYPES = (ValueError, TypeError, FileNotFoundError)
CLEAR_TYPE_NAMES = ("ValueError", "TypeError", "FileNotFoundError")

NONFINITE = [r"\bnan\b", r"finite", r"\binf"]
STEPS_KW = [r"num_inference_steps"]
EMPTY_KW = ["empty", r"no images?\b", "at least one", r"batch.?size( of)? 0"]
SIZE = 16  # the tiny pipeline's image size
LATENT_DIM = 8  # and code width
STEPS = 2  # DDIM steps where the step count is not the point
SECRET = "SECRET123"


@dataclass
class Settings:
    repo: Path
    workdir: Path
    case_timeout: int = 180
    train_timeout: int = 300


SETTINGS: Settings | None = None


def settings() -> Settings:
    assert SETTINGS is not None, "main() sets SETTINGS before running cases"
    return SETTINGS


# ---------------------------------------------------------------------------------------------------------- registry


@dataclass
class Case:
    id: str
    area: str
    description: str
    run: Callable[[], tuple[str, str]]


@dataclass
class Result:
    id: str
    area: str
    description: str
    outcome: str
    detail: str
    seconds: float


CASES: list[Case] = []


def case(case_id: str, area: str, description: str):
    """Register a case: a function returning `(outcome, detail)`."""
    if area not in AREAS:
        raise ValueError(f"unknown area {area!r}")
    if any(existing.id == case_id for existing in CASES):
        raise ValueError(f"duplicate case id {case_id!r}")

    def register(function: Callable[[], tuple[str, str]]):
        CASES.append(Case(case_id, area, description, function))
        return function

    return register


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside an in-process case that runs too long (a BaseException, so no case catches it)."""


# ----------------------------------------------------------------------------------------------- judging helpers


def one_line(text: str, limit: int = 400) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def matches(message: str, keywords: list[str]) -> bool:
    return any(re.search(keyword, message, re.IGNORECASE) for keyword in keywords)


def error_text(error: BaseException) -> str:
    return one_line(f"{type(error).__name__}: {error}")


def summarise(result) -> str:
    """A short description of what a call returned, flagging NaN/inf."""
    if hasattr(result, "images"):
        return "ImagePipelineOutput with " + summarise(result.images)
    if isinstance(result, tuple):
        return "tuple(" + ", ".join(summarise(item) for item in result[:2]) + ")"
    if isinstance(result, torch.Tensor):
        finite = "" if result.numel() == 0 or torch.isfinite(result.float()).all() else " containing NaN/inf"
        return f"tensor {tuple(result.shape)} {str(result.dtype).replace('torch.', '')}{finite}"
    if isinstance(result, np.ndarray):
        finite = "" if result.size == 0 or np.isfinite(result).all() else " containing NaN/inf"
        return f"array {result.shape}{finite}"
    if isinstance(result, list):
        kinds = sorted({type(item).__name__ for item in result})
        return f"list of {len(result)} {'/'.join(kinds) or 'items'}"
    return type(result).__name__


class UNetCounter:
    """Counts UNet evaluations (through the forward pre-hook of `unet.conv_in`, which every path goes through)."""

    def __init__(self, pipe=None):
        self.calls = 0
        self._handle = None
        if pipe is not None:
            self._handle = pipe.unet.conv_in.register_forward_pre_hook(self._count)

    def _count(self, module, inputs):
        self.calls += 1

    def close(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def judge_exception(
    error: BaseException,
    keywords: list[str],
    unet_calls: int = 0,
    seconds: float = 0.0,
    max_seconds: float | None = None,
) -> tuple[str, str]:
    text = error_text(error)
    if not isinstance(error, CLEAR_TYPES):
        return "unclear error", f"wrong type: {text}"
    if not matches(str(error), keywords):
        return "unclear error", f"message names none of {keywords}: {text}"
    if unet_calls:
        return "unclear error", f"late, after {unet_calls} UNet evaluations ({seconds:.1f}s): {text}"
    if max_seconds is not None and seconds > max_seconds:
        return "unclear error", f"late, after {seconds:.1f}s (limit {max_seconds}s): {text}"
    return "clear error", text


def expect_error(
    call: Callable,
    keywords: list[str],
    pipe=None,
    max_seconds: float | None = None,
    on_success: Callable | None = None,
) -> tuple[str, str]:
    """Desired: a clear error naming one of `keywords`, before any UNet evaluation of `pipe` (and within
    `max_seconds`). Without an exception the outcome is "silently wrong", or what `on_success(result)` says."""
    counter = UNetCounter(pipe)
    start = time.perf_counter()
    try:
        result = call()
    except Exception as error:
        return judge_exception(error, keywords, counter.calls, time.perf_counter() - start, max_seconds)
    finally:
        counter.close()
    if on_success is not None:
        return on_success(result)
    seconds = time.perf_counter() - start
    work = f"{counter.calls} UNet evaluations, " if pipe is not None else ""
    return "silently wrong", f"no error ({work}{seconds:.1f}s); got {summarise(result)}"


def expect_result(call: Callable, check: Callable, keywords: list[str] | None = None) -> tuple[str, str]:
    """Desired: a correct result. `check(result) -> (ok, detail)`. An exception is a "clear error" when it is of a
    clear type and names one of `keywords`, else an "unclear error"."""
    try:
        result = call()
    except Exception as error:
        if keywords:
            outcome, detail = judge_exception(error, keywords)
        else:
            outcome, detail = "unclear error", error_text(error)
        return outcome, f"raised instead of a result: {detail}"
    try:
        ok, detail = check(result)
    except Exception as error:
        return "silently wrong", f"result failed its check: {error_text(error)}; got {summarise(result)}"
    return ("handled" if ok else "silently wrong"), detail


# ------------------------------------------------------------------------------------------------- tiny models


def tiny_unet(channels: int = 1, seed: int = 0):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=SIZE,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
    ).eval()


def tiny_encoder(channels: int = 1, seed: int = 1, latent_dim: int = LATENT_DIM):
    from diffusers_pdae import PDAEEncoder

    torch.manual_seed(seed)
    return PDAEEncoder(
        in_channels=channels, sample_size=SIZE, latent_dim=latent_dim, block_out_channels=(8, 16), norm_num_groups=4
    ).eval()


def tiny_estimator(unet, seed: int = 3, latent_dim: int = LATENT_DIM):
    from diffusers_pdae import GradientEstimator

    torch.manual_seed(seed)
    estimator = GradientEstimator.from_unet(unet, latent_dim=latent_dim).eval()
    # G starts at exactly zero; small random output weights make the shift matter.
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        weight = estimator.conv_out.weight
        weight.copy_(0.05 * torch.randn(weight.shape, generator=generator))
    return estimator


def tiny_pipeline(channels: int = 1, seed: int = 0):
    """A random 16x16 PDAEPipeline (latent_dim 8, DDIM over 1000 training steps), as in tests/conftest.py."""
    from diffusers import DDIMScheduler

    from diffusers_pdae import PDAEPipeline

    unet = tiny_unet(channels, seed)
    pipe = PDAEPipeline(
        unet,
        DDIMScheduler(num_train_timesteps=1000, clip_sample=False),
        tiny_encoder(channels, seed + 1),
        tiny_estimator(unet, seed + 3),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def images(batch: int = 2, channels: int = 1, seed: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, SIZE, SIZE, generator=generator) * 2 - 1


def codes(batch: int = 2, seed: int = 5) -> torch.Tensor:
    return torch.randn(batch, LATENT_DIM, generator=torch.Generator().manual_seed(seed))


def noise(batch: int = 2, seed: int = 6) -> torch.Tensor:
    return torch.randn(batch, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def poisoned(tensor: torch.Tensor, value: float) -> torch.Tensor:
    tensor = tensor.clone()
    tensor.view(-1)[3] = value
    return tensor


# =========================================================================================================== pipeline


def _call(**kwargs):
    pipe = tiny_pipeline()
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "pt")
    return pipe, (lambda: pipe(**kwargs))


# --- non-finite inputs


@case("encode-nan-image", "pipeline", "encode an image tensor holding one NaN pixel")
def _():
    pipe = tiny_pipeline()
    return expect_error(lambda: pipe.encode(poisoned(images(), float("nan"))), NONFINITE, pipe)


@case("encode-inf-image", "pipeline", "encode an image tensor holding one +inf pixel")
def _():
    pipe = tiny_pipeline()
    return expect_error(lambda: pipe.encode(poisoned(images(), float("inf"))), NONFINITE, pipe)


@case("reconstruct-nan-image", "pipeline", "reconstruct an image tensor holding one NaN pixel")
def _():
    pipe = tiny_pipeline()
    x = poisoned(images(), float("nan"))
    return expect_error(lambda: pipe.reconstruct(x, num_inference_steps=STEPS, output_type="pt"), NONFINITE, pipe)


@case("call-nan-z", "pipeline", "__call__ with a code z holding a NaN")
def _():
    pipe, call = _call(z=poisoned(codes(), float("nan")))
    return expect_error(call, NONFINITE + [r"\bz\b"], pipe)


@case("call-inf-latents", "pipeline", "__call__ with latents x_T holding +inf")
def _():
    pipe, call = _call(latents=poisoned(noise(), float("inf")))
    return expect_error(call, NONFINITE + ["latents"], pipe)


@case("decode-nan-z", "pipeline", "decode with a code z holding a NaN")
def _():
    pipe = tiny_pipeline()
    z = poisoned(codes(), float("nan"))
    return expect_error(lambda: pipe.decode(noise(), z, num_inference_steps=STEPS), NONFINITE + [r"\bz\b"], pipe)


@case("invert-nan-z", "pipeline", "invert with a given code z holding a NaN")
def _():
    pipe = tiny_pipeline()
    z = poisoned(codes(), float("nan"))
    return expect_error(lambda: pipe.invert(images(), z=z, num_inference_steps=STEPS), NONFINITE + [r"\bz\b"], pipe)


@case("manipulate-nan-direction", "pipeline", "manipulate along a direction holding a NaN")
def _():
    pipe = tiny_pipeline()
    direction = poisoned(torch.ones(LATENT_DIM), float("nan"))
    call = lambda: pipe.manipulate(images(1), direction, [0.0, 1.0], num_inference_steps=STEPS, output_type="pt")  # noqa: E731
    return expect_error(call, NONFINITE + ["direction"], pipe)


# --- num_inference_steps


def _steps_case(method: str, steps):
    pipe = tiny_pipeline()
    x = images(1)
    calls = {
        "call": lambda: pipe(num_inference_steps=steps, output_type="pt"),
        "invert": lambda: pipe.invert(x, num_inference_steps=steps),
        "decode": lambda: pipe.decode(noise(1), codes(1), num_inference_steps=steps),
        "reconstruct": lambda: pipe.reconstruct(x, num_inference_steps=steps, output_type="pt"),
        "interpolate": lambda: pipe.interpolate(
            x, images(1, seed=9), num=3, num_inference_steps=steps, output_type="pt"
        ),
        "manipulate": lambda: pipe.manipulate(
            x, torch.ones(LATENT_DIM), [0.0, 1.0], num_inference_steps=steps, output_type="pt"
        ),
    }
    return expect_error(calls[method], STEPS_KW, pipe)


STEP_CASES = [
    ("call", 0, "zero"),
    ("call", -3, "negative"),
    ("call", 2.5, "float"),
    ("call", "10", "string"),
    ("call", True, "bool"),
    ("call", 1001, "above-train"),
    ("invert", 0, "zero"),
    ("invert", -3, "negative"),
    ("invert", 2.5, "float"),
    ("invert", 1001, "above-train"),
    ("decode", 0, "zero"),
    ("decode", "10", "string"),
    ("decode", True, "bool"),
    ("reconstruct", 0, "zero"),
    ("reconstruct", True, "bool"),
    ("interpolate", 0, "zero"),
    ("interpolate", -3, "negative"),
    ("manipulate", 0, "zero"),
    ("manipulate", True, "bool"),
]

for _method, _steps, _label in STEP_CASES:
    _name = "__call__" if _method == "call" else _method
    case(f"{_method}-steps-{_label}", "pipeline", f"{_name} with num_inference_steps={_steps!r}")(
        lambda method=_method, steps=_steps: _steps_case(method, steps)
    )


@case("reconstruct-steps-negative", "pipeline", "reconstruct with num_inference_steps=-3 (must not echo the input)")
def _():
    pipe = tiny_pipeline()
    x = images(2)

    def on_success(result):
        reconstruction = result.images * 2 - 1
        difference = (reconstruction - x).abs().max().item()
        echo = "returned the input unchanged as a 'perfect' reconstruction" if difference < 1e-5 else "no error"
        return "silently wrong", f"{echo} (max |difference| {difference:.2g})"

    call = lambda: pipe.reconstruct(x, num_inference_steps=-3, output_type="pt")  # noqa: E731
    return expect_error(call, STEPS_KW, pipe, on_success=on_success)


# --- eta


for _eta, _label in ((-0.1, "negative"), (1.5, "above-one"), (float("nan"), "nan")):
    case(f"call-eta-{_label}", "pipeline", f"__call__ with eta={_eta}")(
        lambda eta=_eta: (lambda pipe, call: expect_error(call, [r"\beta\b"], pipe))(
            *_call(batch_size=1, eta=eta, generator=torch.Generator().manual_seed(0))
        )
    )


@case("call-eta-one-valid", "pipeline", "__call__ with eta=1.0 and a seeded generator: finite and reproducible")
def _():
    pipe = tiny_pipeline()

    def run():
        generator = torch.Generator().manual_seed(0)
        return pipe(batch_size=2, num_inference_steps=3, eta=1.0, generator=generator, output_type="pt").images

    def check(pair):
        first, second = pair
        ok = torch.isfinite(first).all().item() and torch.equal(first, second)
        return ok, f"finite and reproducible: {ok}"

    return expect_result(lambda: (run(), run()), check)


# --- shift_range


SHIFT_CASES = [
    ((700, 400), "reversed"),
    ((-5, 100), "negative"),
    ((0, 1000), "past-last-timestep"),
    (500, "number"),
    ((1, 2, 3), "three-values"),
]

for _range, _label in SHIFT_CASES:
    case(f"call-shift-range-{_label}", "pipeline", f"__call__ with shift_range={_range!r}")(
        lambda shift_range=_range: (lambda pipe, call: expect_error(call, ["shift_range"], pipe))(
            *_call(z=codes(), shift_range=shift_range)
        )
    )


@case("decode-shift-range-reversed", "pipeline", "decode with shift_range=(700, 400)")
def _():
    pipe = tiny_pipeline()
    call = lambda: pipe.decode(noise(), codes(), num_inference_steps=STEPS, shift_range=(700, 400))  # noqa: E731
    return expect_error(call, ["shift_range"], pipe)


@case("call-shift-range-full-valid", "pipeline", "__call__ with shift_range=(0, 999) equals no shift_range")
def _():
    pipe = tiny_pipeline()
    z, x_T = codes(), noise()

    def run(shift_range):
        return pipe(z=z, latents=x_T, num_inference_steps=3, shift_range=shift_range, output_type="pt").images

    def check(pair):
        same = torch.allclose(*pair, atol=1e-6)
        return same, f"identical to shift_range=None: {same}"

    return expect_result(lambda: (run((0, 999)), run(None)), check, ["shift_range"])


# --- generators


@case("call-generators-too-many", "pipeline", "__call__ batch_size=2 with a list of 3 generators")
def _():
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    pipe, call = _call(batch_size=2, generator=generators)
    return expect_error(call, ["generator"], pipe)


@case("call-generators-too-few", "pipeline", "__call__ batch_size=3 with a list of 2 generators")
def _():
    generators = [torch.Generator().manual_seed(i) for i in range(2)]
    pipe, call = _call(batch_size=3, generator=generators)
    return expect_error(call, ["generator"], pipe)


@case("call-generators-per-sample-valid", "pipeline", "a list of per-sample generators reproduces single samples")
def _():
    pipe = tiny_pipeline()

    def run_pair():
        batch = pipe(
            batch_size=2,
            generator=[torch.Generator().manual_seed(i) for i in (10, 11)],
            num_inference_steps=STEPS,
            output_type="pt",
        ).images
        single = pipe(
            batch_size=1, generator=torch.Generator().manual_seed(11), num_inference_steps=STEPS, output_type="pt"
        ).images
        return batch, single

    def check(pair):
        batch, single = pair
        same = torch.allclose(batch[1:2], single, atol=1e-5)
        return same, f"second sample equals the sample of its own generator: {same}"

    return expect_result(run_pair, check)


# --- interpolate / manipulate arguments


for _num in (1, 0):
    case(f"interpolate-num-{_num}", "pipeline", f"interpolate with num={_num}")(
        lambda num=_num: (
            lambda pipe: expect_error(
                lambda: pipe.interpolate(images(1), images(1, seed=9), num=num, num_inference_steps=STEPS),
                [r"\bnum\b"],
                pipe,
            )
        )(tiny_pipeline())
    )


@case("interpolate-image-a-batch", "pipeline", "interpolate with two images passed as image_a")
def _():
    pipe = tiny_pipeline()
    call = lambda: pipe.interpolate(images(2), images(1), num=3, num_inference_steps=STEPS)  # noqa: E731
    return expect_error(call, ["image_a", "one image"], pipe)


@case("manipulate-no-scales", "pipeline", "manipulate with scales=[]")
def _():
    pipe = tiny_pipeline()
    call = lambda: pipe.manipulate(images(1), torch.ones(LATENT_DIM), [], num_inference_steps=STEPS)  # noqa: E731
    return expect_error(call, ["scales"], pipe)


@case("manipulate-nan-scale", "pipeline", "manipulate with scales=[0.0, nan]")
def _():
    pipe = tiny_pipeline()
    call = lambda: pipe.manipulate(  # noqa: E731
        images(1), torch.ones(LATENT_DIM), [0.0, float("nan")], num_inference_steps=STEPS, output_type="pt"
    )
    return expect_error(call, ["scales"] + NONFINITE, pipe)


@case("manipulate-direction-wrong-width", "pipeline", "manipulate with a direction of latent_dim + 1 entries")
def _():
    pipe = tiny_pipeline()
    call = lambda: pipe.manipulate(images(1), torch.ones(LATENT_DIM + 1), [1.0], num_inference_steps=STEPS)  # noqa: E731
    return expect_error(call, ["direction"], pipe)


# --- empty batches


@case("encode-empty-tensor", "pipeline", "encode a batch of 0 images, tensor (0, 1, 16, 16)")
def _():
    pipe = tiny_pipeline()
    return expect_error(lambda: pipe.encode(torch.zeros(0, 1, SIZE, SIZE)), EMPTY_KW)


@case("reconstruct-empty-tensor", "pipeline", "reconstruct a batch of 0 images, tensor (0, 1, 16, 16)")
def _():
    pipe = tiny_pipeline()
    call = lambda: pipe.reconstruct(torch.zeros(0, 1, SIZE, SIZE), num_inference_steps=STEPS)  # noqa: E731
    return expect_error(call, EMPTY_KW, pipe)


@case("encode-empty-list", "pipeline", "encode an empty list of images")
def _():
    pipe = tiny_pipeline()
    return expect_error(lambda: pipe.encode([]), EMPTY_KW)


for _batch in (0, -1):
    case(f"call-batch-size-{_batch}".replace("--", "-minus"), "pipeline", f"__call__ with batch_size={_batch}")(
        lambda batch=_batch: (lambda pipe, call: expect_error(call, ["batch_size"], pipe))(*_call(batch_size=batch))
    )


# --- predict_noise timesteps


for _t, _label, _with_z in (
    (-1, "minus-one", True),
    (1000, "1000", True),
    (2.5, "float", True),
    (-1, "minus-one", False),
):
    _suffix = "" if _with_z else "-no-z"
    case(
        f"predict-noise-t-{_label}{_suffix}",
        "pipeline",
        f"predict_noise at timestep {_t}" + (" with z" if _with_z else " without z"),
    )(
        lambda t=_t, with_z=_with_z: (
            lambda pipe: expect_error(
                lambda: pipe.predict_noise(noise(), t, codes() if with_z else None), ["timestep"], pipe
            )
        )(tiny_pipeline())
    )


# --- output_type


@case("call-output-type-jpg", "pipeline", "__call__ output_type='jpg' with 1000 steps fails at once (< 2 s)")
def _():
    pipe, call = _call(batch_size=1, num_inference_steps=1000, output_type="jpg")
    return expect_error(call, ["output_type"], pipe, max_seconds=2.0)


@case("decode-output-type-jpg", "pipeline", "decode output_type='jpg' fails before denoising")
def _():
    pipe = tiny_pipeline()
    call = lambda: pipe.decode(noise(1), codes(1), num_inference_steps=50, output_type="jpg")  # noqa: E731
    return expect_error(call, ["output_type"], pipe)


@case("interpolate-output-type-jpg", "pipeline", "interpolate output_type='jpg' fails before inversion")
def _():
    pipe = tiny_pipeline()
    call = lambda: pipe.interpolate(images(1), images(1, seed=9), num=3, num_inference_steps=10, output_type="jpg")  # noqa: E731
    return expect_error(call, ["output_type"], pipe)


# --- codes and latents


@case("call-z-wrong-width", "pipeline", "__call__ with z of width latent_dim + 1")
def _():
    pipe, call = _call(z=torch.zeros(2, LATENT_DIM + 1))
    return expect_error(call, [r"\bz\b", "latent_dim"], pipe)


@case("call-z-int-dtype", "pipeline", "__call__ with an integer z (e.g. labels passed by mistake)")
def _():
    pipe, call = _call(z=torch.ones(2, LATENT_DIM, dtype=torch.int64))
    return expect_error(call, [r"\bz\b", "dtype", "float"], pipe)


@case("call-z-list-of-tensors", "pipeline", "__call__ with z as a list of per-image code tensors (accepted)")
def _():
    pipe = tiny_pipeline()
    z, x_T = codes(), noise()

    def run():
        from_list = pipe(z=[z[0], z[1]], latents=x_T, num_inference_steps=STEPS, output_type="pt").images
        from_tensor = pipe(z=z, latents=x_T, num_inference_steps=STEPS, output_type="pt").images
        return from_list, from_tensor

    def check(pair):
        same = pair[0].shape == pair[1].shape and torch.allclose(*pair, atol=1e-6)
        return same, f"equals the stacked tensor's result: {same}"

    return expect_result(run, check, [r"\bz\b"])


@case("call-z-latents-batch-mismatch", "pipeline", "__call__ with 2 codes and 3 latents")
def _():
    pipe, call = _call(z=codes(2), latents=noise(3))
    return expect_error(call, [r"\bz\b", "latents"], pipe)


@case("invert-z-batch-mismatch", "pipeline", "invert 2 images with 3 codes")
def _():
    pipe = tiny_pipeline()
    return expect_error(lambda: pipe.invert(images(2), z=codes(3), num_inference_steps=STEPS), [r"\bz\b"], pipe)


@case("call-latents-wrong-size", "pipeline", "__call__ with latents (1, 1, 8, 8) for a 16x16 UNet")
def _():
    pipe, call = _call(latents=torch.randn(1, 1, 8, 8))
    return expect_error(call, ["latents"], pipe)


@case("decode-latents-3d", "pipeline", "decode with unbatched latents (1, 16, 16)")
def _():
    pipe = tiny_pipeline()
    call = lambda: pipe.decode(torch.randn(1, SIZE, SIZE), codes(1), num_inference_steps=STEPS)  # noqa: E731
    return expect_error(call, ["latents"], pipe)


# --- image tensors


@case("encode-uint8-tensor", "pipeline", "encode a uint8 image tensor in [0, 255]")
def _():
    pipe = tiny_pipeline()
    x = torch.randint(0, 256, (2, 1, SIZE, SIZE), dtype=torch.uint8)
    return expect_error(lambda: pipe.encode(x), ["dtype", "uint8", "float"])


@case("encode-float-0-255", "pipeline", "encode a float image tensor in [0, 255]")
def _():
    pipe = tiny_pipeline()
    x = torch.rand(2, 1, SIZE, SIZE) * 255
    return expect_error(lambda: pipe.encode(x), [r"\[-1, ?1\]", "range", "255"])


@case("encode-wrong-channels", "pipeline", "encode a 3-channel tensor with a 1-channel UNet")
def _():
    pipe = tiny_pipeline()
    return expect_error(lambda: pipe.encode(images(2, channels=3)), ["channel", "shape"])


@case("reconstruct-5d-tensor", "pipeline", "reconstruct a 5-D image tensor (1, 2, 1, 16, 16)")
def _():
    pipe = tiny_pipeline()
    call = lambda: pipe.reconstruct(images(2)[None], num_inference_steps=STEPS)  # noqa: E731
    return expect_error(call, ["shape", "dimension", "ndim", "5-d"], pipe)


@case("encode-float64-tensor-valid", "pipeline", "encode a float64 image tensor (converted, same codes)")
def _():
    pipe = tiny_pipeline()
    x = images(2)

    def check(pair):
        same = torch.allclose(pair[0], pair[1], atol=1e-5)
        return same, f"same codes as float32: {same}"

    return expect_result(lambda: (pipe.encode(x.double()), pipe.encode(x)), check, ["dtype", "float"])


@case("encode-single-3d-image-valid", "pipeline", "encode one unbatched (1, 16, 16) image tensor")
def _():
    pipe = tiny_pipeline()
    x = images(1)

    def check(pair):
        ok = pair[0].shape == (1, LATENT_DIM) and torch.allclose(pair[0], pair[1], atol=1e-6)
        return ok, f"shape {tuple(pair[0].shape)}, equals the batched call: {ok}"

    return expect_result(lambda: (pipe.encode(x[0]), pipe.encode(x)), check)


# ============================================================================================================ images


def _converted(image_or_list, channels: int = 1) -> torch.Tensor:
    """What the pipeline feeds its models for PIL input (`pipe.prepare_images`, i.e. `images_to_tensor`)."""
    return tiny_pipeline(channels).prepare_images(image_or_list)


def _bands(values, dtype, mode: str | None = None) -> PIL.Image.Image:
    """A 16x16 image of three vertical bands (columns 0-4, 5-10, 11-15) holding `values`."""
    array = np.zeros((SIZE, SIZE), dtype=dtype)
    array[:, 5:11], array[:, 11:] = values[1], values[2]
    array[:, :5] = values[0]
    image = PIL.Image.fromarray(array)
    return image.convert(mode) if mode is not None and image.mode != mode else image


def _check_bands(tensor: torch.Tensor) -> tuple[bool, str]:
    """Low band black (-1), middle band mid grey (~0), high band white (+1)."""
    low, mid, high = (tensor[0, 0, :, s].mean().item() for s in (slice(0, 5), slice(5, 11), slice(11, 16)))
    ok = tuple(tensor.shape) == (1, 1, SIZE, SIZE) and low < -0.9 and abs(mid) < 0.1 and high > 0.9
    return ok, f"min/mid/max bands -> {low:.3f} / {mid:.3f} / {high:.3f} (want -1 / 0 / +1)"


def _band_case(values, dtype, mode=None):
    image = _bands(values, dtype, mode)
    return expect_result(lambda: _converted(image), _check_bands, ["mode", "bit", "range"])


@case("pil-16bit-12bit-values", "images", "16-bit 'I;16' image with values 0 / 2048 / 4095 (12-bit data)")
def _():
    return _band_case((0, 2048, 4095), np.uint16)


@case("pil-16bit-full-range", "images", "16-bit 'I;16' image with values 0 / 32768 / 65535")
def _():
    return _band_case((0, 32768, 65535), np.uint16)


@case("pil-32bit-int", "images", "32-bit 'I' image holding 16-bit data 0 / 32768 / 65535 (many 16-bit PNGs open so)")
def _():
    return _band_case((0, 32768, 65535), np.int32, "I")


@case("pil-float-unit-range", "images", "float 'F' image with values 0.0 / 0.5 / 1.0")
def _():
    return _band_case((0.0, 0.5, 1.0), np.float32, "F")


@case("pil-float-0-1000", "images", "float 'F' image with values 0 / 500 / 1000")
def _():
    return _band_case((0.0, 500.0, 1000.0), np.float32, "F")


def _check_transparent(tensor: torch.Tensor, centre_value: float) -> tuple[bool, str]:
    corner = tensor[0, 0, :3, :3].mean().item()
    centre = tensor[0, 0, 6:10, 6:10].mean().item()
    ok = corner < -0.9 and abs(centre - centre_value) < 0.05
    return (
        ok,
        f"transparent corner -> {corner:.3f} (want -1), opaque centre -> {centre:.3f} (want {centre_value:.3f})",
    )


def _transparent_case(image: PIL.Image.Image, centre_value: float):
    return expect_result(lambda: _converted(image), lambda t: _check_transparent(t, centre_value), ["alpha"])


@case("pil-rgba-transparent", "images", "RGBA: transparent white background, opaque white square -> background black")
def _():
    array = np.full((SIZE, SIZE, 4), 255, dtype=np.uint8)
    array[..., 3] = 0
    array[4:12, 4:12, 3] = 255
    return _transparent_case(PIL.Image.fromarray(array, "RGBA"), 1.0)


@case("pil-la-transparent", "images", "LA: transparent white background, opaque white square -> background black")
def _():
    array = np.full((SIZE, SIZE, 2), 255, dtype=np.uint8)
    array[..., 1] = 0
    array[4:12, 4:12, 1] = 255
    return _transparent_case(PIL.Image.fromarray(array, "LA"), 1.0)


@case("pil-palette-transparency", "images", "P: transparent white index as background, opaque grey square")
def _():
    image = PIL.Image.new("P", (SIZE, SIZE), 0)
    image.putpalette([255, 255, 255, 128, 128, 128] + [0, 0, 0] * 254)
    image.paste(1, (4, 4, 12, 12))
    image.info["transparency"] = 0
    return _transparent_case(image, 128 / 127.5 - 1)


def _mixed_case(sizes):
    generator = np.random.default_rng(0)
    pictures = [PIL.Image.fromarray(generator.integers(0, 256, (s, s), dtype=np.uint8)) for s in sizes]

    def run():
        return _converted(pictures), [_converted(picture) for picture in pictures]

    def check(pair):
        batch, singles = pair
        ok = tuple(batch.shape) == (len(sizes), 1, SIZE, SIZE) and all(
            torch.allclose(batch[i : i + 1], single, atol=1e-6) for i, single in enumerate(singles)
        )
        return ok, f"batch {tuple(batch.shape)}; each image converted as on its own: {ok}"

    return expect_result(run, check, ["size"])


@case("pil-mixed-sizes-larger", "images", "one list of 20x20, 40x40 and 16x16 images")
def _():
    return _mixed_case((20, 40, 16))


@case("pil-mixed-sizes-smaller", "images", "one list of 12x12, 20x20 and 14x14 images (some padded, some resized)")
def _():
    return _mixed_case((12, 20, 14))


@case("pil-zero-size", "images", "a 0x0 image")
def _():
    pipe = tiny_pipeline()
    return expect_error(lambda: pipe.encode(PIL.Image.new("L", (0, 0))), ["0x0", "empty", "zero", "no pixels"])


@case("pil-extreme-aspect", "images", "a 1x500 image (extreme aspect ratio)")
def _():
    pipe = tiny_pipeline()
    return expect_error(lambda: pipe.encode(PIL.Image.new("L", (1, 500), 255)), ["aspect", "1x500", "500x1"])


@case("pil-truncated-png", "images", "a lazily opened PNG whose file is truncated")
def _():
    generator = np.random.default_rng(0)
    buffer = io.BytesIO()
    PIL.Image.fromarray(generator.integers(0, 256, (64, 64), dtype=np.uint8)).save(buffer, format="PNG")
    path = settings().workdir / "images" / "truncated_digit.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    pipe = tiny_pipeline()
    image = PIL.Image.open(path)
    return expect_error(lambda: pipe.encode(image), ["truncated", "cannot read", "corrupt", "truncated_digit"])


@case("pil-bilevel-valid", "images", "a 1-bit '1' image: white -> +1, black -> -1")
def _():
    image = PIL.Image.new("1", (SIZE, SIZE), 0)
    image.paste(1, (8, 0, 16, 16))

    def check(tensor):
        left, right = tensor[0, 0, :, :8].mean().item(), tensor[0, 0, :, 8:].mean().item()
        return left < -0.99 and right > 0.99, f"black half -> {left:.3f}, white half -> {right:.3f}"

    return expect_result(lambda: _converted(image), check)


@case("pil-rgb-to-gray-valid", "images", "an RGB image for a 1-channel UNet: converted to luminance")
def _():
    array = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    array[:, 8:] = 255

    def check(tensor):
        left, right = tensor[0, 0, :, :8].mean().item(), tensor[0, 0, :, 8:].mean().item()
        ok = tuple(tensor.shape) == (1, 1, SIZE, SIZE) and left < -0.99 and right > 0.99
        return ok, f"shape {tuple(tensor.shape)}, black -> {left:.3f}, white -> {right:.3f}"

    return expect_result(lambda: _converted(PIL.Image.fromarray(array)), check)


@case("pil-gray-to-rgb-valid", "images", "an 'L' image for a 3-channel UNet: three equal channels")
def _():
    image = PIL.Image.fromarray(np.arange(SIZE * SIZE, dtype=np.uint8).reshape(SIZE, SIZE))

    def check(tensor):
        ok = tuple(tensor.shape) == (1, 3, SIZE, SIZE) and torch.equal(tensor[0, 0], tensor[0, 1])
        ok = ok and torch.equal(tensor[0, 0], tensor[0, 2])
        return ok, f"shape {tuple(tensor.shape)}, channels equal: {ok}"

    return expect_result(lambda: _converted(image, channels=3), check)


@case("pil-small-padded-valid", "images", "a 12x12 white image is padded with black to 16x16 (documented)")
def _():
    image = PIL.Image.new("L", (12, 12), 255)

    def check(tensor):
        border, centre = tensor[0, 0, 0, :].mean().item(), tensor[0, 0, 2:14, 2:14].mean().item()
        ok = tuple(tensor.shape) == (1, 1, SIZE, SIZE) and border < -0.99 and centre > 0.99
        return ok, f"border -> {border:.3f} (want -1), centre -> {centre:.3f} (want +1)"

    return expect_result(lambda: _converted(image), check)


@case("pil-wide-centre-crop-valid", "images", "a 64x32 image is centre-cropped to a square and resized")
def _():
    array = np.zeros((32, 64), dtype=np.uint8)
    array[:, 32:] = 255  # the centre square (columns 16..47) is half black, half white

    def check(tensor):
        left, right = tensor[0, 0, :, :6].mean().item(), tensor[0, 0, :, 10:].mean().item()
        ok = tuple(tensor.shape) == (1, 1, SIZE, SIZE) and left < -0.9 and right > 0.9
        return ok, f"shape {tuple(tensor.shape)}, left -> {left:.3f}, right -> {right:.3f}"

    return expect_result(lambda: _converted(PIL.Image.fromarray(array)), check)


@case("pil-numpy-array", "images", "encode a numpy uint8 array instead of a PIL image or tensor")
def _():
    pipe = tiny_pipeline()
    array = np.zeros((SIZE, SIZE), dtype=np.uint8)
    return expect_error(lambda: pipe.encode(array), ["images", "numpy", "ndarray", "PIL"])


@case("pil-two-channel-unet", "images", "PIL images for a 2-channel UNet")
def _():
    pipe = tiny_pipeline(channels=2)
    return expect_error(lambda: pipe.encode(PIL.Image.new("L", (SIZE, SIZE))), ["channel"])


# =========================================================================================================== loading


def _tree_digest(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `folder`."""
    digest = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def _lost(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [name for name, digest in before.items() if after.get(name) != digest]


_SAVED_TINY: Path | None = None


def saved_tiny_pipeline() -> Path:
    """A tiny PDAEPipeline saved once to the scratch folder (copied by the cases that doctor it)."""
    global _SAVED_TINY
    if _SAVED_TINY is None:
        folder = settings().workdir / "loading" / "tiny-pdae"
        shutil.rmtree(folder, ignore_errors=True)
        tiny_pipeline().save_pretrained(folder)
        _SAVED_TINY = folder
    return _SAVED_TINY


def _copy(source: Path, name: str) -> Path:
    target = settings().workdir / "loading" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def _bundled(name: str = "pdae-mnist") -> Path:
    from diffusers_pdae.bundled import checkpoint_path

    return Path(checkpoint_path(name))


def _load(folder: Path):
    from diffusers_pdae import PDAEPipeline

    return PDAEPipeline.from_pretrained(str(folder))


def _weights_file(folder: Path) -> Path:
    found = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
    if not found:
        raise FileNotFoundError(f"probe precondition: no safetensors file in {folder}")
    return found[0]


@case("load-bundled-valid", "loading", "from_pretrained on the bundled pdae-mnist checkpoint encodes two digits")
def _():
    from diffusers_pdae.bundled import load_mnist_tensors

    def run():
        pipe = _load(_bundled())
        pipe.set_progress_bar_config(disable=True)
        digits, _ = load_mnist_tensors("test", [0, 1])
        return pipe.encode(digits)

    def check(z):
        ok = tuple(z.shape) == (2, 64) and torch.isfinite(z).all().item()
        return ok, f"codes {tuple(z.shape)}, finite: {torch.isfinite(z).all().item()}"

    return expect_result(run, check)


@case("load-missing-encoder-folder", "loading", "from_pretrained on a folder without encoder/")
def _():
    folder = _copy(saved_tiny_pipeline(), "missing-encoder")
    shutil.rmtree(folder / "encoder")
    return expect_error(lambda: _load(folder), ["encoder"])


@case("load-missing-estimator-weights", "loading", "from_pretrained with gradient_estimator's weights file deleted")
def _():
    folder = _copy(saved_tiny_pipeline(), "missing-estimator-weights")
    _weights_file(folder / "gradient_estimator").unlink()
    return expect_error(lambda: _load(folder), ["gradient_estimator"])


@case("load-missing-model-index", "loading", "from_pretrained on a folder without model_index.json")
def _():
    folder = _copy(saved_tiny_pipeline(), "missing-model-index")
    (folder / "model_index.json").unlink()
    return expect_error(lambda: _load(folder), ["model_index"])


@case("load-invalid-model-index", "loading", "from_pretrained with a model_index.json that is not JSON")
def _():
    folder = _copy(saved_tiny_pipeline(), "invalid-model-index")
    (folder / "model_index.json").write_text("{ this is not json")
    return expect_error(lambda: _load(folder), ["model_index"])


def _schedule_case(name: str, edit: dict, keywords: list[str]):
    folder = _copy(_bundled(), name)
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config.update(edit)
    config_path.write_text(json.dumps(config, indent=2))
    return expect_error(
        lambda: _load(folder),
        keywords,
        on_success=lambda pipe: ("silently wrong", f"loaded without error (scheduler edited: {edit})"),
    )


@case("load-scheduler-500-steps", "loading", "bundled checkpoint whose scheduler says num_train_timesteps=500")
def _():
    return _schedule_case("scheduler-500", {"num_train_timesteps": 500}, [r"500[\s\S]*1000|1000[\s\S]*500"])


@case("load-scheduler-other-betas", "loading", "bundled checkpoint whose scheduler says beta_schedule=scaled_linear")
def _():
    keywords = [r"scaled_linear[\s\S]*\blinear\b|\blinear\b[\s\S]*scaled_linear"]
    return _schedule_case("scheduler-betas", {"beta_schedule": "scaled_linear"}, keywords)


@case(
    "load-corrupt-safetensors", "loading", "from_pretrained with gradient_estimator's safetensors overwritten by junk"
)
def _():
    folder = _copy(saved_tiny_pipeline(), "corrupt-safetensors")
    weights = _weights_file(folder / "gradient_estimator")
    weights.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, weights.stat().st_size, dtype=np.uint8)))
    return expect_error(lambda: _load(folder), ["gradient_estimator", "diffusion_pytorch_model"])


@case("load-truncated-safetensors", "loading", "from_pretrained with gradient_estimator's safetensors cut in half")
def _():
    folder = _copy(saved_tiny_pipeline(), "truncated-safetensors")
    weights = _weights_file(folder / "gradient_estimator")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return expect_error(lambda: _load(folder), ["gradient_estimator", "diffusion_pytorch_model"])


@case("load-git-lfs-pointer", "loading", "from_pretrained where a weights file is a git-lfs pointer (not pulled)")
def _():
    folder = _copy(saved_tiny_pipeline(), "lfs-pointer")
    weights = _weights_file(folder / "gradient_estimator")
    weights.write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 123456\n"
    )
    return expect_error(lambda: _load(folder), ["lfs", "pointer", "gradient_estimator", "diffusion_pytorch_model"])


@case(
    "load-estimator-config-latent-dim", "loading", "gradient_estimator/config.json edited to latent_dim 16 (encoder 8)"
)
def _():
    folder = _copy(saved_tiny_pipeline(), "estimator-latent-dim-config")
    config_path = folder / "gradient_estimator" / "config.json"
    config = json.loads(config_path.read_text())
    config["latent_dim"] = 2 * LATENT_DIM
    config_path.write_text(json.dumps(config, indent=2))
    return expect_error(lambda: _load(folder), ["latent_dim"])


@case("load-estimator-swapped-latent-dim", "loading", "gradient_estimator/ replaced by one trained with latent_dim 16")
def _():
    folder = _copy(saved_tiny_pipeline(), "estimator-swapped")
    shutil.rmtree(folder / "gradient_estimator")
    tiny_estimator(tiny_unet(), latent_dim=2 * LATENT_DIM).save_pretrained(folder / "gradient_estimator")
    return expect_error(lambda: _load(folder), ["latent_dim"])


@case("load-nonexistent-path", "loading", "from_pretrained on a local path that does not exist")
def _():
    folder = settings().workdir / "loading" / "no-such-pipeline"
    return expect_error(lambda: _load(folder), ["no-such-pipeline"])


@case("load-ddpm-as-pdae", "loading", "PDAEPipeline.from_pretrained on a plain DDPM folder (bundled ddpm-mnist)")
def _():
    return expect_error(lambda: _load(_bundled("ddpm-mnist")), ["encoder", "gradient_estimator"])


@case("save-atomic-on-failure", "loading", "save_pretrained failing midway keeps the folder's previous pipeline")
def _():
    folder = settings().workdir / "loading" / "atomic-save"
    shutil.rmtree(folder, ignore_errors=True)
    tiny_pipeline(seed=0).save_pretrained(folder)
    before = _tree_digest(folder)
    other = tiny_pipeline(seed=10)
    calls = []

    def failing_save(original, name):
        def save(*args, **kwargs):
            calls.append(name)
            if len(calls) == 3:
                raise OSError(f"No space left on device (simulated while saving {name})")
            return original(*args, **kwargs)

        return save

    for name in ("unet", "scheduler", "encoder", "gradient_estimator"):
        component = getattr(other, name)
        component.save_pretrained = failing_save(component.save_pretrained, name)
    try:
        other.save_pretrained(folder)
    except OSError as error:
        raised = error_text(error)
    else:
        raised = None
    lost = _lost(before, _tree_digest(folder))
    if lost:
        return "lost data", f"after a failure saving {calls[-1]!r}, overwritten or removed: {lost[:4]}"
    if raised is None:
        return "silently wrong", f"the simulated failure never surfaced (component saves called: {calls})"
    return "handled", f"previous pipeline intact after: {raised}"


@case("save-onto-a-file", "loading", "save_pretrained into a path that is an existing file")
def _():
    path = settings().workdir / "loading" / "a-file.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("keep me")
    pipe = tiny_pipeline()

    def on_success(result):
        if not path.is_file() or path.read_text() != "keep me":
            return "lost data", "the file was replaced by a pipeline folder"
        return "silently wrong", "no error"

    return expect_error(
        lambda: pipe.save_pretrained(path), ["a-file.txt", "not a directory", "exists"], on_success=on_success
    )


# ========================================================================================================== training


@dataclass
class Run:
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr


FAST_FLAGS = [
    "--train_batch_size", "4", "--num_validation_images", "2", "--validation_inference_steps", "2",
    "--lr_warmup_steps", "0", "--latent_dim", "8", "--encoder_block_out_channels", "8", "16",
    "--encoder_norm_num_groups", "4", "--save_images_epochs", "1000", "--seed", "0", "--max_train_minutes", "1",
]  # fmt: skip

_TINY_DPM: Path | None = None


def tiny_dpm() -> Path:
    """A tiny 16x16 one-channel DDPM pipeline folder, as a user's pre-trained DPM would be."""
    global _TINY_DPM
    if _TINY_DPM is None:
        from diffusers import DDPMPipeline, DDPMScheduler

        folder = settings().workdir / "training" / "tiny-dpm"
        shutil.rmtree(folder, ignore_errors=True)
        DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(folder)
        _TINY_DPM = folder
    return _TINY_DPM


def train_env() -> dict:
    work = settings().workdir
    python_path = os.pathsep.join(filter(None, [str(settings().repo), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": python_path,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(work / "hf-datasets-cache"),
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(work / "wandb"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def train_command(script: str, flags: list[str]) -> list[str]:
    return [sys.executable, str(settings().repo / "examples" / script), *flags]


def pdae_flags(out_dir: Path, *extra: str, steps: int | None = 2) -> list[str]:
    flags = ["--pretrained_model_name_or_path", str(tiny_dpm()), "--output_dir", str(out_dir), *FAST_FLAGS]
    if steps is not None:
        flags += ["--max_train_steps", str(steps)]
    return [*flags, *extra]


def train(script: str, flags: list[str], timeout: int | None = None) -> Run:
    start = time.monotonic()
    process = subprocess.Popen(
        train_command(script, flags),
        env=train_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout or settings().train_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return Run(process.returncode, stdout, stderr, time.monotonic() - start, timed_out=True)
    return Run(process.returncode, stdout, stderr, time.monotonic() - start)


def steps_done(text: str) -> int:
    """The highest step the tqdm progress bar ("Steps: ... | 3/10 [...") reached."""
    found = [int(n) for n in re.findall(r"\|\s*(\d+)/\d+\s*\[", text)]
    return max(found, default=0)


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
    cls = None
    if "." not in name:
        cls = getattr(builtins, name, None)
    else:
        module, _, attribute = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attribute, None)
        except Exception:
            cls = None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return issubclass(cls, CLEAR_TYPES)
    return name.rpartition(".")[2] in CLEAR_TYPE_NAMES


def judge_training_error(run: Run, keywords: list[str]) -> tuple[str, str]:
    """Desired: argparse's exit 2, or a clear exception before step 1, naming one of `keywords`."""
    if run.timed_out:
        return "crash", f"timed out after {run.seconds:.0f}s"
    if run.returncode < 0:
        return "crash", f"killed by signal {-run.returncode}"
    steps = steps_done(run.output)
    if run.returncode == 0:
        return "silently wrong", f"exit 0 after {steps} training step(s) ({run.seconds:.0f}s)"
    if run.returncode == 2 and "Traceback (most recent call last)" not in run.stderr:
        errors = [line for line in run.stderr.splitlines() if "error:" in line] or run.stderr.splitlines()[-1:]
        message = one_line(" ".join(errors))
        if matches(message, keywords):
            return "clear error", f"exit 2: {message}"
        return "unclear error", f"exit 2 naming none of {keywords}: {message}"
    name, message = last_exception(run.stderr)
    if name is None:
        return "unclear error", f"exit {run.returncode} without a traceback: {one_line(run.stderr[-300:])}"
    text = one_line(f"{name}: {message}")
    when = f" (after {steps} step(s))" if steps else ""
    if not is_clear_type(name):
        return "unclear error", f"wrong type{when}: {text}"
    if not matches(message, keywords):
        return "unclear error", f"message names none of {keywords}{when}: {text}"
    if steps:
        return "unclear error", f"late, after {steps} step(s): {text}"
    return "clear error", text


def _out(name: str) -> Path:
    folder = settings().workdir / "training" / name
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def _flag_case(case_id: str, extra: list[str], keywords: list[str], steps: int | None = 2, script="train_pdae.py"):
    out = _out(case_id)
    if script == "train_pdae.py":
        flags = pdae_flags(out, *extra, steps=steps)
    else:
        flags = dpm_flags(out, *extra, steps=steps)
    return judge_training_error(train(script, flags), keywords)


FLAG_CASES = [
    ("train-max-steps-zero", ["--max_train_steps", "0"], ["max_train_steps"], 2),
    ("train-max-steps-negative", ["--max_train_steps=-1"], ["max_train_steps"], 2),
    ("train-num-epochs-zero", ["--num_epochs", "0"], ["num_epochs"], None),
    ("train-checkpointing-steps-zero", ["--checkpointing_steps", "0"], ["checkpointing_steps"], 2),
    ("train-checkpointing-steps-negative", ["--checkpointing_steps=-5"], ["checkpointing_steps"], 2),
    ("train-batch-size-zero", ["--train_batch_size", "0"], ["train_batch_size"], 2),
    ("train-learning-rate-negative", ["--learning_rate=-1e-4"], ["learning_rate"], 2),
    ("train-grad-accumulation-zero", ["--gradient_accumulation_steps", "0"], ["gradient_accumulation_steps"], 2),
    ("train-num-validation-images-zero", ["--num_validation_images", "0"], ["num_validation_images"], 2),
    ("train-resolution-mismatch", ["--resolution", "32"], ["resolution"], 2),
]

for _id, _extra, _keywords, _steps_flag in FLAG_CASES:
    case(_id, "training", f"train_pdae.py {' '.join(_extra)}")(
        lambda case_id=_id, extra=_extra, keywords=_keywords, steps=_steps_flag: _flag_case(
            case_id, extra, keywords, steps
        )
    )


def dpm_config() -> Path:
    path = settings().workdir / "training" / "tiny_unet.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {key: value for key, value in dict(tiny_unet().config).items() if not key.startswith("_")}
        path.write_text(json.dumps(config, indent=2, default=list))
    return path


def dpm_flags(out_dir: Path, *extra: str, steps: int | None = 2) -> list[str]:
    flags = [
        "--output_dir", str(out_dir), "--model_config_name_or_path", str(dpm_config()), "--resolution", "16",
        "--train_batch_size", "4", "--ddpm_num_inference_steps", "2", "--eval_batch_size", "4",
        "--lr_warmup_steps", "0", "--save_images_epochs", "1000", "--max_train_minutes", "1",
    ]  # fmt: skip
    if steps is not None:
        flags += ["--max_train_steps", str(steps)]
    return [*flags, *extra]


@case("train-dpm-max-steps-negative", "training", "train_dpm.py --max_train_steps=-1")
def _():
    return _flag_case("train-dpm-max-steps-negative", ["--max_train_steps=-1"], ["max_train_steps"], 2, "train_dpm.py")


@case("train-dpm-inference-steps-zero", "training", "train_dpm.py --ddpm_num_inference_steps 0")
def _():
    keywords = ["ddpm_num_inference_steps"]
    return _flag_case(
        "train-dpm-inference-steps-zero", ["--ddpm_num_inference_steps", "0"], keywords, 2, "train_dpm.py"
    )


def _files_with_secret(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return [
        path.relative_to(folder).as_posix()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and SECRET.encode() in path.read_bytes()
    ]


@case("train-hub-token-leak", "training", f"a normal 2-step run with --hub_token {SECRET} (no push): token in files?")
def _():
    out = _out("train-hub-token-leak")
    run = train("train_pdae.py", pdae_flags(out, "--hub_token", SECRET))
    leaked = _files_with_secret(out)
    if leaked:
        return "security hole", f"exit {run.returncode}; {SECRET} written to {leaked}"
    if run.returncode == 0:
        return "handled", f"run succeeded; {SECRET} in none of {len(list(out.rglob('*')))} paths written"
    return judge_training_error(run, ["hub_token"])


@case("train-hub-token-with-wandb", "training", "--hub_token together with --logger wandb")
def _():
    out = _out("train-hub-token-with-wandb")
    run = train("train_pdae.py", pdae_flags(out, "--hub_token", SECRET, "--logger", "wandb"))
    leaked = _files_with_secret(out) + _files_with_secret(settings().workdir / "wandb")
    if leaked:
        return "security hole", f"exit {run.returncode}; {SECRET} written to {leaked}"
    return judge_training_error(run, ["hub_token"])


_PICKLED_BASE: Path | None = None


def _checkpointed_run() -> Path:
    """A 2-step run with --checkpointing_steps 1 (checkpoint-1, checkpoint-2), trained once and copied per case."""
    global _PICKLED_BASE
    if _PICKLED_BASE is None:
        out = _out("checkpointed-base")
        run = train("train_pdae.py", pdae_flags(out, "--checkpointing_steps", "1"))
        if run.returncode != 0 or not (out / "checkpoint-2").is_dir():
            raise RuntimeError(f"probe precondition: the checkpointed run failed: {one_line(run.stderr[-400:])}")
        _PICKLED_BASE = out
    return _PICKLED_BASE


class _Payload:
    """Pickles as a call to os.system(command): what a doctored checkpoint would hold."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _doctored_checkpoint_case(case_id: str, file_name: str):
    try:
        base = _checkpointed_run()
    except RuntimeError as error:
        return "unclear error", str(error)
    out = _out(case_id)
    shutil.copytree(base, out)
    marker = settings().workdir / "training" / f"{case_id}-pwned"
    marker.unlink(missing_ok=True)
    torch.save(_Payload(f"touch {marker}"), out / "checkpoint-2" / file_name)
    run = train("train_pdae.py", pdae_flags(out, "--resume_from_checkpoint", "latest", steps=3))
    if marker.exists():
        return "security hole", f"loading checkpoint-2/{file_name} ran the pickled command (marker file created)"
    if run.timed_out or run.returncode < 0:
        return judge_training_error(run, [])
    if run.returncode != 0:
        name, message = last_exception(run.stderr)
        text = one_line(f"{name}: {message}") if name else one_line(run.stderr[-300:])
        if matches(text, ["pickle", "checkpoint", "weights_only", "unsafe"]):
            return "clear error", f"refused: {text}"
        return "unclear error", text
    info_path = out / "training_info.json"
    step = json.loads(info_path.read_text()).get("global_step") if info_path.is_file() else None
    if "Resuming from checkpoint" in run.output or step == 3:
        return "handled", f"resumed to step {step} without running the pickled command"
    return "silently wrong", f"exit 0 but did not resume (global_step {step})"


@case(
    "train-doctored-custom-checkpoint", "training", "resume from a checkpoint whose custom_checkpoint_0.pkl runs code"
)
def _():
    return _doctored_checkpoint_case("train-doctored-custom-checkpoint", "custom_checkpoint_0.pkl")


@case("train-doctored-random-states", "training", "resume from a checkpoint whose random_states_0.pkl runs code")
def _():
    return _doctored_checkpoint_case("train-doctored-random-states", "random_states_0.pkl")


@case("train-resume-missing-checkpoint", "training", "--resume_from_checkpoint naming a folder that does not exist")
def _():
    missing = str(settings().workdir / "training" / "no-such-checkpoint-7")
    keywords = ["resume_from_checkpoint", "no-such-checkpoint-7"]
    return _flag_case("train-resume-missing-checkpoint", ["--resume_from_checkpoint", missing], keywords)


@case(
    "train-reuse-finished-output-dir", "training", "a second run into a finished run's output_dir, no overwrite flag"
)
def _():
    out = _out("train-reuse-finished-output-dir")
    first = train("train_pdae.py", pdae_flags(out))
    if first.returncode != 0:
        return judge_training_error(first, [])
    before = _tree_digest(out)
    second = train("train_pdae.py", pdae_flags(out, "--seed", "1"))
    lost = _lost(before, _tree_digest(out))
    if lost:
        return "lost data", f"exit {second.returncode}; the finished run's files overwritten: {lost[:4]}"
    keywords = ["overwrite_output_dir", "resume_from_checkpoint", "already", "exists", "not empty"]
    return judge_training_error(second, keywords)


LOCK_KW = ["lock", "another", "already running", "in use", "concurrent"]


def _concurrent_case(case_id: str, *second_flags: str):
    """Start a long run, wait for its first step, then start a second 2-step run on the same output_dir."""
    out = _out(case_id)
    log_path = settings().workdir / "training" / f"{case_id}-first-run.log"
    flags = pdae_flags(out, "--max_train_minutes", "3", "--checkpointing_steps", "100000", steps=100000)
    with open(log_path, "w") as log:
        first = subprocess.Popen(
            train_command("train_pdae.py", flags),
            env=train_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None and steps_done(log_path.read_text()) < 1:
            time.sleep(0.2)
        if first.poll() is not None or steps_done(log_path.read_text()) < 1:
            tail = one_line(log_path.read_text()[-300:])
            return (
                "unclear error",
                f"probe precondition: the first run never reached step 1 (exit {first.poll()}): {tail}",
            )
        second = train("train_pdae.py", pdae_flags(out, *second_flags))
        first_alive = first.poll() is None
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    outcome, detail = judge_training_error(second, LOCK_KW)
    return outcome, f"{detail} (first run still running then: {first_alive})"


@case("train-two-runs-same-output-dir", "training", "a second trainer started on the output_dir of a running one")
def _():
    return _concurrent_case("train-two-runs-same-output-dir")


@case(
    "train-two-runs-overwrite", "training", "as above, the second with --overwrite_output_dir (only a lock stops it)"
)
def _():
    return _concurrent_case("train-two-runs-overwrite", "--overwrite_output_dir")


def _image_folder(name: str, count: int = 12) -> Path:
    folder = settings().workdir / "training" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    for i in range(count):
        PIL.Image.fromarray(generator.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


@case("train-corrupt-png-in-folder", "training", "--train_data_dir with one truncated PNG among 12 good ones")
def _():
    folder = _image_folder("images-with-corrupt")
    good = (folder / "00.png").read_bytes()
    (folder / "12_corrupt.png").write_bytes(good[: len(good) // 2])
    out = _out("train-corrupt-png-in-folder")
    # 13 images, 2 held out, batch 4: three steps are one full epoch, so the corrupt image is met.
    run = train("train_pdae.py", pdae_flags(out, "--train_data_dir", str(folder), steps=3))
    if run.timed_out or run.returncode < 0:
        return judge_training_error(run, [])
    if run.returncode == 0:
        if "12_corrupt" in run.output and re.search(r"skip", run.output, re.IGNORECASE):
            return "handled", "named the corrupt file and skipped it"
        return "silently wrong", f"exit 0 after {steps_done(run.output)} step(s), corrupt file not reported"
    return judge_training_error(run, ["12_corrupt"])


@case("train-data-dir-missing", "training", "--train_data_dir pointing to a folder that does not exist")
def _():
    missing = str(settings().workdir / "training" / "no-such-images")
    return _flag_case("train-data-dir-missing", ["--train_data_dir", missing], ["train_data_dir", "no-such-images"])


@case("train-data-dir-empty", "training", "--train_data_dir pointing to an empty folder")
def _():
    folder = settings().workdir / "training" / "empty-images"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return _flag_case("train-data-dir-empty", ["--train_data_dir", str(folder)], ["train_data_dir", "empty-images"])


# ============================================================================================================ runner


def run_case(item: Case) -> Result:
    def on_alarm(signum, frame):
        raise CaseTimeout()

    start = time.monotonic()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    # Training cases bound their own subprocesses; the alarm is a backstop for in-process hangs.
    limit = settings().case_timeout if item.area != "training" else 4 * settings().train_timeout
    signal.alarm(limit)
    try:
        outcome, detail = item.run()
    except CaseTimeout:
        outcome, detail = "crash", f"the case did not finish within {limit}s"
    except Exception as error:
        tail = one_line(" | ".join(traceback.format_exc().strip().splitlines()[-3:]), 300)
        outcome, detail = "unclear error", f"escaped the case's own checks: {error_text(error)} [{tail}]"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if outcome not in OUTCOMES:
        outcome, detail = "unclear error", f"probe bug: unknown outcome {outcome!r} ({detail})"
    return Result(item.id, item.area, item.description, outcome, one_line(detail, 600), time.monotonic() - start)


def print_table(results: list[Result], width: int) -> None:
    id_width = max([len("case"), *(len(r.id) for r in results)])
    description_width = 60
    header = f"{'case':<{id_width}}  {'area':<8}  {'description':<{description_width}}  {'outcome':<14}  detail"
    print(header)
    print("-" * min(len(header) + 40, width))
    for r in results:
        description = r.description if len(r.description) <= description_width else r.description[:57] + "..."
        used = id_width + 8 + description_width + 14 + 8
        detail = one_line(r.detail, max(30, width - used))
        print(f"{r.id:<{id_width}}  {r.area:<8}  {description:<{description_width}}  {r.outcome:<14}  {detail}")


def totals(results: list[Result]) -> tuple[dict, dict]:
    overall = Counter(r.outcome for r in results)
    by_area: dict[str, Counter] = {}
    for r in results:
        by_area.setdefault(r.area, Counter())[r.outcome] += 1
    overall_dict = {outcome: overall.get(outcome, 0) for outcome in OUTCOMES}
    area_dict = {area: {o: c.get(o, 0) for o in OUTCOMES} for area, c in by_area.items()}
    return overall_dict, area_dict


def print_totals(overall: dict, by_area: dict) -> None:
    print()
    columns = ["area", *OUTCOMES, "total"]
    widths = [max(8, len(c)) for c in columns]
    print("  ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for area in [*AREAS, "all"]:
        counts = overall if area == "all" else by_area.get(area)
        if counts is None:
            continue
        row = [area, *(str(counts[o]) for o in OUTCOMES), str(sum(counts.values()))]
        print("  ".join(f"{v:>{w}}" for v, w in zip(row, widths, strict=True)))


def git_head(repo: Path) -> str | None:
    try:
        found = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=str, default=None, help="Write the cases, outcomes and totals to this file.")
    parser.add_argument("--only", choices=AREAS, default=None, help="Run one area only.")
    parser.add_argument("--skip_training", action="store_true", help="Skip the training subprocess cases.")
    parser.add_argument("--cases", nargs="+", default=None, help="Run only these case ids.")
    parser.add_argument("--list", action="store_true", help="List the cases and exit.")
    parser.add_argument(
        "--repo",
        type=str,
        default=str(Path(__file__).resolve().parents[1]),
        help="The checkout whose diffusers_pdae and examples/ to probe (default: the one holding this script).",
    )
    parser.add_argument("--workdir", type=str, default=None, help="Scratch folder (default: a fresh temporary one).")
    parser.add_argument("--keep_workdir", action="store_true", help="Keep the scratch folder afterwards.")
    parser.add_argument("--case_timeout", type=int, default=180, help="Seconds per in-process case.")
    parser.add_argument("--train_timeout", type=int, default=300, help="Seconds per training subprocess.")
    parser.add_argument("--width", type=int, default=200, help="Table width in characters.")
    parser.add_argument(
        "--accept_oserror",
        action="store_true",
        help="Also count OSError and its subclasses (diffusers' loading errors, NotADirectoryError, ...) as a clear "
        "error type. Off by default: the desired types are ValueError, TypeError and FileNotFoundError.",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    global SETTINGS, CLEAR_TYPES, CLEAR_TYPE_NAMES
    args = parse_args(argv)
    if args.accept_oserror:
        CLEAR_TYPES = (*CLEAR_TYPES, OSError)
        CLEAR_TYPE_NAMES = (*CLEAR_TYPE_NAMES, "OSError")
    selected = [
        c
        for c in CASES
        if (args.only is None or c.area == args.only)
        and not (args.skip_training and c.area == "training")
        and (args.cases is None or c.id in args.cases)
    ]
    if args.cases is not None:
        unknown = sorted(set(args.cases) - {c.id for c in CASES})
        if unknown:
            print(f"unknown case ids: {unknown}", file=sys.stderr)
            return 2
    if args.list:
        for c in selected:
            print(f"{c.id:<40} {c.area:<9} {c.description}")
        return 0

    repo = Path(args.repo).resolve()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    torch.set_num_threads(1)
    sys.path.insert(0, str(repo))
    import diffusers_pdae  # noqa: F401  (registers the PDAE classes with diffusers)

    library = Path(diffusers_pdae.__file__).resolve()
    if repo not in library.parents:
        print(f"diffusers_pdae was imported from {library}, not from --repo {repo}", file=sys.stderr)
        return 2
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="probe_reliability_"))
    workdir.mkdir(parents=True, exist_ok=True)
    SETTINGS = Settings(repo, workdir.resolve(), args.case_timeout, args.train_timeout)
    print(f"probing {library.parent} ({len(selected)} cases, scratch folder {workdir})", flush=True)

    started = time.monotonic()
    results = []
    try:
        for index, item in enumerate(selected, 1):
            result = run_case(item)
            results.append(result)
            print(
                f"[{index:3d}/{len(selected)}] {result.id:<40} {result.outcome:<14} ({result.seconds:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if not args.keep_workdir and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - started

    print()
    print_table(results, args.width)
    overall, by_area = totals(results)
    print_totals(overall, by_area)
    print(f"\n{len(results)} cases in {wall:.0f}s")

    if args.json:
        report = {
            "repo": str(repo),
            "library": str(library.parent),
            "git_head": git_head(repo),
            "clear_types": [t.__name__ for t in CLEAR_TYPES],
            "wall_seconds": round(wall, 1),
            "outcomes": list(OUTCOMES),
            "totals": overall,
            "totals_by_area": by_area,
            "cases": [r.__dict__ | {"seconds": round(r.seconds, 2)} for r in results],
        }
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
