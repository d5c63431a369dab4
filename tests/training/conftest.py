"""Fixtures of the training tests: a folder of images to convert, a reset Accelerator state, a folder's digest, and
the checks a release of a bundled conditional model passes (`tiny_dpm` is in tests/conftest.py)."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from accelerate.state import AcceleratorState

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import load_mnist_tensors

from ..conftest import load_script, tiny_sd_components

# The in-process runs' shared flags: 32-px digits, tiny batches, no warm-up, seeded.
TINY_RUN_FLAGS = ["--resolution", "32", "--train_batch_size", "4", "--lr_warmup_steps", "0", "--seed", "0"]


def write_random_pictures(folder: Path, count: int, size: int, generator: np.random.Generator) -> Path:
    """`count` random RGB `size`x`size` PNGs, 00.png, 01.png, ..., in `folder` (made if missing; rewrites them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        PIL.Image.fromarray(generator.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="package")
def image_folder(tmp_path_factory) -> str:
    """Twelve RGB 20x20 images: a different channel count and size than the UNet's, to be converted."""
    return str(write_random_pictures(tmp_path_factory.mktemp("images"), 12, 20, np.random.default_rng(0)))


@pytest.fixture
def fresh_accelerator_state():
    """Each in-process run makes its own Accelerator; the state behind it is a process-wide singleton. Modules that
    run the scripts in process use it for every test (`pytestmark = pytest.mark.usefixtures(...)`)."""
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def tree_digest(folder: Path) -> dict[str, str]:
    """The sha256 of every file below `folder`, by relative path: equal digests mean byte-identical folders."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def assert_release_reconstructs_digits_and_loads_without_the_package(out: Path, tmp_path: Path) -> None:
    """A PDAE release on a bundled 32-px latent model: it reconstructs digits at 32 px, returns 4x8x8 latents for
    `output_type="latent"`, and diffusers alone loads it with `trust_remote_code=True` in a process that cannot
    import diffusers_pdae, encoding exactly as this process does."""
    pipe = PDAEPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    digits = load_mnist_tensors("test", [0, 1000])[0]
    assert pipe.reconstruct(digits, num_inference_steps=2, output_type="pt").images.shape == (2, 1, 32, 32)
    assert pipe.reconstruct(digits, num_inference_steps=2, output_type="latent").images.shape == (2, 4, 8, 8)
    torch.save(pipe.encode(digits), tmp_path / "z.pt")
    torch.save(digits, tmp_path / "digits.pt")
    script = f"""
import sys, torch
sys.modules["diffusers_pdae"] = None
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({str(out)!r}, trust_remote_code=True)
assert torch.equal(pipe.encode(torch.load({str(tmp_path / "digits.pt")!r})), torch.load({str(tmp_path / "z.pt")!r}))
"""
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def train_dpm_on_a_tiny_kl_autoencoder(root: Path, model_config: dict, *flags: str) -> Path:
    """train_dpm.py in process for 2 steps on the tiny KL autoencoder of tests/conftest.py (saved to `root/kl`), the
    model built from `model_config`; returns the released folder, `root/dpm`."""
    tiny_sd_components()["vae"].save_pretrained(root / "kl")
    config = root / "model.json"
    config.write_text(json.dumps(model_config))
    load_script("train_dpm").main([
        "--output_dir", str(root / "dpm"), "--pretrained_vae_model_name_or_path", str(root / "kl"),
        "--model_config_name_or_path", str(config), "--max_train_steps", "2", "--ddpm_num_inference_steps", "2",
        "--eval_batch_size", "10", *flags, *TINY_RUN_FLAGS,
    ])  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    return root / "dpm"
