"""Loading a saved PDAE pipeline the ways the Hub's "Use this model" button shows: with diffusers-pdae installed,
through diffusers' generic loader, and without it, from the code saved beside the weights."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
import torch
from diffusers import DiffusionPipeline

import diffusers_pdae  # noqa: F401
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.training.cards import usage_with_package, usage_without_package

from ..conftest import tiny_images, tiny_pipeline


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub") / "pdae-tiny"
    pipe = tiny_pipeline()
    pipe.save_pretrained(folder)
    return pipe, folder


def reference_numbers(pipe: PDAEPipeline) -> dict:
    images = tiny_images(2, seed=9)
    z = pipe.encode(images)
    latents = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    decoded = pipe.decode(latents, z, 2, output_type="pt").images
    return {"z": z.flatten().tolist(), "decoded": decoded.flatten().tolist()}


def test_a_saved_folder_carries_its_code_and_points_components_at_it(saved):
    _, folder = saved
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_pdae", "PDAEPipeline"]
    assert index["encoder"] == ["pdae_encoder", "PDAEEncoder"]
    assert index["gradient_estimator"] == ["pdae_gradient_estimator", "GradientEstimator"]
    for path in ("pipeline_pdae.py", "encoder/pdae_encoder.py", "gradient_estimator/pdae_gradient_estimator.py"):
        source = (folder / path).read_text()
        compile(source, path, "exec")
        assert "diffusers_pdae" not in "".join(
            line for line in source.splitlines() if line.startswith(("from", "import"))
        )


def test_with_the_package_the_installed_class_loads_and_runs_no_saved_code(saved, tmp_path):
    pipe, folder = saved
    loaded = PDAEPipeline.from_pretrained(folder)
    assert type(loaded) is PDAEPipeline and type(loaded.encoder).__module__ == "diffusers_pdae.models.encoder"
    assert reference_numbers(loaded) == reference_numbers(pipe)
    # a doctored code file is never run by the installed class
    doctored = tmp_path / "doctored"
    shutil.copytree(folder, doctored)
    for path in ("pipeline_pdae.py", "encoder/pdae_encoder.py", "gradient_estimator/pdae_gradient_estimator.py"):
        (doctored / path).write_text("raise SystemExit('saved code ran')\n")
    assert reference_numbers(PDAEPipeline.from_pretrained(doctored)) == reference_numbers(pipe)
    # folders saved with a plain `_class_name` (before the Hub form) load through both loaders as before
    index = json.loads((doctored / "model_index.json").read_text())
    (doctored / "model_index.json").write_text(json.dumps({**index, "_class_name": "PDAEPipeline"}))
    assert type(DiffusionPipeline.from_pretrained(doctored)) is PDAEPipeline


def isolated(script: str, tmp_path) -> subprocess.CompletedProcess:
    """Run `script` in a Python that cannot import diffusers_pdae: no site hooks (-S, so the editable install's path
    file is not read), only the site-packages folder added by hand, and a working directory outside the repo."""
    preamble = (
        f"import sys; sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
        "import importlib.util; assert importlib.util.find_spec('diffusers_pdae') is None, 'package visible'\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", preamble + script], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_without_the_package_diffusers_loads_the_saved_code_once_trusted(saved, tmp_path):
    pipe, folder = saved
    script = f"""
import json, torch
from diffusers import DiffusionPipeline
try:
    DiffusionPipeline.from_pretrained({str(folder)!r})
except ValueError as error:
    print("REFUSED:", "trust_remote_code" in str(error))
pipe = DiffusionPipeline.from_pretrained({str(folder)!r}, trust_remote_code=True)  # the Hub's "Use this model"
pipe.set_progress_bar_config(disable=True)
g = torch.Generator().manual_seed(9)
images = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
z = pipe.encode(images)
latents = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
decoded = pipe.decode(latents, z, 2, output_type="pt").images
print("RESULT", json.dumps({{"class": type(pipe).__module__, "z": z.flatten().tolist(),
                             "decoded": decoded.flatten().tolist()}}))
"""
    result = isolated(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REFUSED: True" in result.stdout
    loaded = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert not loaded.pop("class").startswith("diffusers_pdae")
    expected = reference_numbers(pipe)
    assert torch.allclose(torch.tensor(loaded["z"]), torch.tensor(expected["z"]), atol=1e-6)
    assert torch.allclose(torch.tensor(loaded["decoded"]), torch.tensor(expected["decoded"]), atol=1e-6)


@pytest.mark.slow
def test_the_model_card_snippets_run_as_written(saved, tmp_path):
    _, folder = saved
    check = "\nprint('OK', tuple(z.shape), len(reconstructions))"
    with_package = subprocess.run(
        [sys.executable, "-c", usage_with_package(str(folder)) + check],
        cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert with_package.returncode == 0, with_package.stderr[-3000:]
    assert "OK (4, 8) 4" in with_package.stdout
    without = isolated(
        usage_without_package(str(folder)) + "\nprint('OK', tuple(z.shape), len(reconstructions))", tmp_path
    )
    assert without.returncode == 0, without.stderr[-3000:]
    assert "OK (4, 8) 4" in without.stdout


@pytest.mark.slow
def test_a_pipeline_with_a_latent_sampler_generates_from_its_card_snippet_without_the_package(tmp_path):
    from diffusers_pdae.training.cards import GENERATION_EXAMPLE, USAGE_EXAMPLE

    from .test_generation import with_sampler

    folder = tmp_path / "pdae-sampler"
    with_sampler(tiny_pipeline()).save_pretrained(folder)
    snippet = usage_without_package(str(folder), USAGE_EXAMPLE + GENERATION_EXAMPLE)
    result = isolated(snippet + "\nprint('OK', type(pipe.latent_sampler).__module__, len(samples))", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Expected types" not in result.stderr  # each class is defined once in the saved code
    module = result.stdout.split("OK ", 1)[1].split()[0]
    assert module.endswith("pdae_latent_sampler") and not module.startswith("diffusers_pdae")
    assert result.stdout.strip().endswith(" 4")


@pytest.mark.slow
def test_a_latent_pipeline_loads_from_its_saved_code_without_the_package(tmp_path):
    """A PDAEPipeline on a latent DPM (with its VQModel as `vae`) saved, then loaded in a Python without
    diffusers-pdae (the Hub's form): pixel images in and out, latents for output_type="latent", the same numbers."""
    from ..conftest import tiny_latent_pipeline

    pipe = tiny_latent_pipeline()
    folder = tmp_path / "pdae-ldm"
    pipe.save_pretrained(folder)
    images = tiny_images(2, size=32, seed=9)
    expected = pipe.reconstruct(images, 2, output_type="pt").images
    script = f"""
import json, torch
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({str(folder)!r}, trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(9)) * 2 - 1
pixels = pipe.reconstruct(images, 2, output_type="pt").images
latents = pipe.reconstruct(images, 2, output_type="latent").images
print("RESULT", json.dumps({{"vae": type(pipe.vae).__name__, "pixels": pixels.flatten().tolist(),
                             "latent_shape": list(latents.shape)}}))
"""
    result = isolated(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert loaded["vae"] == "VQModel" and loaded["latent_shape"] == [2, 3, 8, 8]
    assert torch.allclose(torch.tensor(loaded["pixels"]), expected.flatten(), atol=1e-6)
