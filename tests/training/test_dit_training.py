"""Diffusion transformers end to end, in-process on tiny models: train_dpm.py --model_type dit trains a
class-conditional DiT on the digits' labels and releases a DiTPipeline diffusers samples with guidance; train_pdae.py
trains PDAE on such a folder with its null class and a transformer G; the other tools take the result unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from diffusers import DiTPipeline

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.training.export import export_checkpoint

from ..conftest import load_script, tiny_images
from .conftest import (
    TINY_RUN_FLAGS,
    assert_release_reconstructs_digits_and_loads_without_the_package,
    train_dpm_on_a_tiny_kl_autoencoder,
    tree_digest,
)

pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")

TINY_DIT = {"num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 3, "patch_size": 2, "in_channels": 4,
            "out_channels": 4, "num_embeds_ada_norm": 1000, "norm_num_groups": 32}  # fmt: skip
PDAE_FLAGS = ["--latent_dim", "8", "--num_validation_images", "2", "--validation_inference_steps", "2",
              "--gradient_estimator_layers", "1", "--gradient_estimator_width_multiplier", "0.5"]  # fmt: skip


@pytest.fixture(scope="module")
def dit_runs(tmp_path_factory) -> Path:
    """train_dpm.py --model_type dit (2 steps, a checkpoint at 2), then train_pdae.py on its DiTPipeline (2 steps)."""
    root = tmp_path_factory.mktemp("dit")
    dit = train_dpm_on_a_tiny_kl_autoencoder(root, TINY_DIT, "--model_type", "dit", "--checkpointing_steps", "2")
    load_script("train_pdae").main([
        "--pretrained_model_name_or_path", str(dit), "--output_dir", str(root / "pdae"),
        "--max_train_steps", "2", "--checkpointing_steps", "2", *PDAE_FLAGS, *TINY_RUN_FLAGS,
    ])  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    return root


def test_train_dpm_releases_a_dit_pipeline_diffusers_samples_with_guidance(dit_runs, tmp_path):
    folder = dit_runs / "dpm"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "DiTPipeline" and index["transformer"][1] == "DiTTransformer2DModel"
    pipe = DiTPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    images = pipe([7], guidance_scale=3.0, num_inference_steps=2, output_type="np").images  # the null class 1000
    assert images.shape == (1, 32, 32, 1) and (folder / "samples.png").is_file()
    assert pipe.get_label_ids(["seven"]) == [7] and "class-conditional" in (folder / "README.md").read_text()
    exported = export_checkpoint(str(folder / "checkpoint-2"), str(tmp_path / "exported"))
    assert type(exported).__name__ == "DiTPipeline"


def test_train_pdae_on_a_dit_keeps_its_bytes_and_asks_it_with_the_null_class(dit_runs):
    source, out = dit_runs / "dpm", dit_runs / "pdae"
    for component in ("transformer", "vae"):
        assert tree_digest(out / component) == tree_digest(source / component)
    pipe = PDAEPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.gradient_estimator).__name__ == "TransformerGradientEstimator" and pipe.unet is None
    dit = DiTPipeline.from_pretrained(source).transformer
    x_t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = dit(x_t, torch.tensor([300, 300]), class_labels=torch.tensor([1000, 1000])).sample
    torch.testing.assert_close(pipe.predict_noise(x_t, 300), expected, rtol=0, atol=1e-5)
    pixels = tiny_images(2, size=32)
    assert pipe.reconstruct(pixels, num_inference_steps=2, output_type="pt").images.shape == (2, 1, 32, 32)
    assert pipe.reconstruct(pixels, num_inference_steps=2, output_type="latent").images.shape == (2, 4, 8, 8)


def test_the_other_tools_take_a_dit_pdae_unchanged(dit_runs, tmp_path):
    out = dit_runs / "pdae"
    exported = export_checkpoint(str(out / "checkpoint-2"), str(tmp_path / "exported"))
    pixels = tiny_images(2, size=32)
    assert torch.equal(exported.encode(pixels), PDAEPipeline.from_pretrained(out).encode(pixels))
    load_script("train_latent_sampler").main([
        "--pretrained_model_name_or_path", str(out), "--output_dir", str(tmp_path / "sampler"), "--max_train_steps",
        "2", "--train_batch_size", "4", "--hidden_dim", "16", "--num_layers", "2", "--time_embed_dim", "8",
        "--num_validation_codes", "8", "--num_validation_images", "2", "--validation_inference_steps", "2",
        "--lr_warmup_steps", "0", "--save_images_epochs", "1000",
    ])  # fmt: skip
    with_sampler = PDAEPipeline.from_pretrained(tmp_path / "sampler")
    with_sampler.set_progress_bar_config(disable=True)
    assert with_sampler(batch_size=2, num_inference_steps=2, code_num_inference_steps=2).images[0].size == (32, 32)
    figures = load_script("evaluate_reconstruction").main([
        "--pipeline", str(out), "--num_images", "4", "--steps", "2", "--num_probe_images", "100",
    ])  # fmt: skip
    assert set(figures["figures"]["2"]) >= {"pdae_inferred_xT", "ddim_inversion", "autoencoder"}


@pytest.mark.slow  # an accelerate launch on the bundled DiT, then a process without the package
def test_pdae_through_accelerate_on_the_bundled_dit_reloads_as_its_source_asks(tmp_path):
    """PDAE trained through `accelerate launch examples/train_pdae.py` on the bundled `dit-mnist` (a DiTPipeline
    made by this repo's scripts, not by the tests): the result loads, its frozen transformer and autoencoder are the
    source's bytes, predict_noise without z is the noise half of the source's prediction for its null class, it
    reconstructs 32-pixel digits and returns latents, and diffusers alone loads it with trust_remote_code."""
    from diffusers_pdae.bundled import checkpoint_path

    from .test_train_scripts import FAST_FLAGS, TRAIN_PDAE, assert_ok, launch

    source, out = Path(checkpoint_path("dit-mnist")), tmp_path / "pdae-dit"
    flags = ["--pretrained_model_name_or_path", str(source), "--output_dir", str(out), "--max_train_steps", "2",
             "--gradient_estimator_layers", "1", *FAST_FLAGS]  # fmt: skip
    assert_ok(launch(TRAIN_PDAE, flags))
    for component in ("transformer", "vae"):
        assert tree_digest(out / component) == tree_digest(source / component)
    pipe = PDAEPipeline.from_pretrained(out)
    transformer = DiTPipeline.from_pretrained(source).transformer
    x_t = torch.randn(1, *pipe.sample_shape, generator=torch.Generator().manual_seed(0))
    null_class = torch.tensor([transformer.config.num_embeds_ada_norm])
    expected = transformer(x_t, timestep=torch.tensor([500]), class_labels=null_class).sample[:, :4]
    torch.testing.assert_close(pipe.predict_noise(x_t, 500), expected, rtol=0, atol=1e-5)
    assert_release_reconstructs_digits_and_loads_without_the_package(out, tmp_path)
