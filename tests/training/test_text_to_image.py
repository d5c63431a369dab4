"""Stable Diffusion-shaped models end to end, in-process on tiny models: train_dpm.py trains a text-conditional latent
DPM on captioned digits and releases a StableDiffusionPipeline; train_pdae.py trains PDAE on such a folder with its
empty prompt, releasing a PDAEPipeline whose frozen parts are the source's bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from diffusers import StableDiffusionPipeline

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.training.text_conditioning import (
    caption_tokenizer,
    digit_caption,
    digit_captions,
    drop_captions,
    encode_captions,
    small_text_encoder,
)

from ..conftest import load_script, tiny_images, tiny_sd_pipeline_folder
from .conftest import (
    TINY_RUN_FLAGS,
    assert_release_reconstructs_digits_and_loads_without_the_package,
    train_dpm_on_a_tiny_kl_autoencoder,
    tree_digest,
)

pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")

TINY_TEXT_UNET = {
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "norm_num_groups": 8,
    "attention_head_dim": 2,
    "in_channels": 4,
    "out_channels": 4,
    "sample_size": 8,
}


@pytest.fixture(scope="module")
def sd_dpm(tmp_path_factory) -> Path:
    """train_dpm.py --digit_captions on the tiny KL autoencoder, 2 steps."""
    return train_dpm_on_a_tiny_kl_autoencoder(tmp_path_factory.mktemp("sd-dpm"), TINY_TEXT_UNET, "--digit_captions")


def test_the_caption_tokenizer_spells_each_caption_word_as_one_token():
    tokenizer = caption_tokenizer(digit_captions(), model_max_length=8)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("a handwritten digit seven").input_ids)
    assert tokens == ["<|startoftext|>", "a</w>", "handwritten</w>", "digit</w>", "seven</w>", "<|endoftext|>"]
    assert len(tokenizer("an unseen word").input_ids) > 5  # other words still tokenize, letter by letter
    with pytest.raises(ValueError, match="plain letters"):
        caption_tokenizer(["a digit 7!"])


def test_captions_are_dropped_to_the_empty_prompt_at_the_given_rate_from_the_seed():
    captions = [digit_caption(i % 10) for i in range(2000)]
    dropped = drop_captions(captions, 0.1, torch.Generator().manual_seed(0))
    empty = sum(caption == "" for caption in dropped)
    assert 150 < empty < 250 and dropped == drop_captions(captions, 0.1, torch.Generator().manual_seed(0))
    assert drop_captions(captions[:5], 0.0, torch.Generator()) == captions[:5]


def test_different_captions_embed_differently_and_the_empty_one_is_stable():
    tokenizer = caption_tokenizer(digit_captions(), model_max_length=8)
    text_encoder = small_text_encoder(tokenizer, hidden_size=16, num_layers=1, seed=0)
    embeds = encode_captions(text_encoder, tokenizer, [digit_caption(1), digit_caption(7), ""])
    assert embeds.shape == (3, 8, 16) and (embeds[0] - embeds[1]).abs().max() > 1e-3
    again = small_text_encoder(tokenizer, hidden_size=16, num_layers=1, seed=0)
    assert torch.equal(encode_captions(again, tokenizer, [""]), embeds[2:])


def test_train_dpm_with_captions_releases_a_stable_diffusion_pipeline_diffusers_samples(sd_dpm):
    index = json.loads((sd_dpm / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"] and index["text_encoder"][1] == "CLIPTextModel"
    pipe = StableDiffusionPipeline.from_pretrained(sd_dpm)
    pipe.set_progress_bar_config(disable=True)
    images = pipe("a handwritten digit seven", num_inference_steps=2, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    assert images.shape == (1, 32, 32, 1) and (sd_dpm / "samples.png").is_file()
    assert "text-to-image" in (sd_dpm / "README.md").read_text()


def test_train_pdae_on_a_stable_diffusion_folder_keeps_its_bytes_and_its_empty_prompt(tmp_path):
    source = Path(tiny_sd_pipeline_folder(tmp_path / "sd"))
    (source / "README.md").write_text("---\nlicense: creativeml-openrail-m\n---\n# a tiny SD\n")
    out = tmp_path / "pdae-sd"
    load_script("train_pdae").main([
        "--pretrained_model_name_or_path", str(source), "--output_dir", str(out), "--max_train_steps", "2",
        "--latent_dim", "8", "--num_validation_images", "2", "--validation_inference_steps", "2", *TINY_RUN_FLAGS,
    ])  # fmt: skip
    for component in ("unet", "vae"):
        assert tree_digest(out / component) == tree_digest(source / component)
    assert not (out / "text_encoder").exists() and (out / "prompt_embedding").is_dir()
    card = (out / "README.md").read_text()
    assert "license: creativeml-openrail-m" in card and "empty prompt" in card
    pipe = PDAEPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    sd = StableDiffusionPipeline.from_pretrained(source)
    _, negative = sd.encode_prompt("", "cpu", 1, do_classifier_free_guidance=True, negative_prompt="")
    x_t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = sd.unet(x_t, 300, encoder_hidden_states=negative).sample
    torch.testing.assert_close(pipe.predict_noise(x_t, 300), expected, rtol=0, atol=1e-5)
    pixels = tiny_images(2, size=32)
    assert pipe.reconstruct(pixels, num_inference_steps=2, output_type="pt").images.shape == (2, 1, 32, 32)
    assert pipe.reconstruct(pixels, num_inference_steps=2, output_type="latent").images.shape == (2, 4, 8, 8)


def test_a_prompt_is_refused_for_a_dpm_asked_without_one(tmp_path, tiny_dpm):
    with pytest.raises(ValueError, match="--prompt applies to a text-conditional DPM"):
        load_script("train_pdae").main([
            "--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(tmp_path / "out"), "--prompt", "a cat",
            "--max_train_steps", "1",
        ])  # fmt: skip


@pytest.fixture(scope="module")
def sd_pdae(tmp_path_factory) -> Path:
    """train_pdae.py on the tiny Stable Diffusion folder with the training features of the other models: cached
    latents, gradient checkpointing, bf16 mixed precision (the frozen UNet, autoencoder and prompt embedding in bf16),
    an EMA and a checkpoint, then resumed to step 3."""
    root = tmp_path_factory.mktemp("sd-pdae")
    source = Path(tiny_sd_pipeline_folder(root / "sd"))
    flags = [
        "--pretrained_model_name_or_path", str(source), "--output_dir", str(root / "pdae"), "--latent_dim", "8",
        "--num_validation_images", "2", "--validation_inference_steps", "2", "--cache_latents", "--center_crop",
        "--gradient_checkpointing", "--mixed_precision", "bf16", "--use_ema", "--checkpointing_steps", "2",
        *TINY_RUN_FLAGS,
    ]  # fmt: skip
    load_script("train_pdae").main([*flags, "--max_train_steps", "2"])
    AcceleratorState._reset_state(reset_partial_state=True)
    load_script("train_pdae").main([*flags, "--max_train_steps", "3", "--resume_from_checkpoint", "latest"])
    AcceleratorState._reset_state(reset_partial_state=True)
    return root


def test_the_training_features_of_the_other_models_work_on_stable_diffusion(sd_pdae):
    out, source = sd_pdae / "pdae", sd_pdae / "sd"
    info = json.loads((out / "training_info.json").read_text())
    assert info["global_step"] == 3 and (out / "checkpoint-2").is_dir()
    for component in ("unet", "vae"):  # the source's float32 bytes, not the bf16 training copies
        assert tree_digest(out / component) == tree_digest(source / component)
    pipe = PDAEPipeline.from_pretrained(out)
    assert pipe.prompt_embedding.prompt_embeds.dtype == torch.float32 and pipe.unet.dtype == torch.float32


def test_the_other_tools_take_a_stable_diffusion_pdae_unchanged(sd_pdae, tmp_path):
    """export_checkpoint, train_latent_sampler.py, evaluate_reconstruction.py and the app's playground work on a
    PDAE trained on Stable Diffusion: pixel images in and out."""
    import numpy as np
    import PIL.Image

    from diffusers_pdae.interactive import PDAEPlayground
    from diffusers_pdae.training.export import export_checkpoint

    out = sd_pdae / "pdae"
    exported = export_checkpoint(str(out / "checkpoint-2"), str(tmp_path / "exported"))
    assert type(exported.prompt_embedding).__name__ == "PromptEmbedding"
    assert torch.equal(exported.prompt_embedding(1), PDAEPipeline.from_pretrained(out).prompt_embedding(1))
    load_script("train_latent_sampler").main([
        "--pretrained_model_name_or_path", str(out), "--output_dir", str(tmp_path / "sampler"), "--max_train_steps",
        "2", "--train_batch_size", "4", "--hidden_dim", "16", "--num_layers", "2", "--time_embed_dim", "8",
        "--num_validation_codes", "8", "--num_validation_images", "2", "--validation_inference_steps", "2",
        "--lr_warmup_steps", "0", "--save_images_epochs", "1000",
    ])  # fmt: skip
    with_sampler = PDAEPipeline.from_pretrained(tmp_path / "sampler")
    with_sampler.set_progress_bar_config(disable=True)
    samples = with_sampler(batch_size=2, num_inference_steps=2, code_num_inference_steps=2, output_type="pt")
    assert samples.images.shape == (2, 1, 32, 32)
    for component in ("unet", "vae", "prompt_embedding"):  # released from a loaded pipeline, still the source's bytes
        assert tree_digest(tmp_path / "sampler" / component) == tree_digest(out / component)
    figures = load_script("evaluate_reconstruction").main([
        "--pipeline", str(out), "--num_images", "4", "--steps", "2", "--num_probe_images", "100",
    ])  # fmt: skip
    assert set(figures["figures"]["2"]) >= {"pdae_inferred_xT", "ddim_inversion", "autoencoder"}
    stroke = np.zeros((28, 28), dtype=np.uint8)
    stroke[6:22, 12:16] = 255
    shown = PDAEPlayground(PDAEPipeline.from_pretrained(out), num_inference_steps=2).reconstruct(
        PIL.Image.fromarray(stroke)
    )
    assert {"input", "inferred", "random"} <= set(shown)


@pytest.mark.slow  # an accelerate launch on the bundled Stable Diffusion, then a process without the package
def test_pdae_through_accelerate_on_the_bundled_stable_diffusion_reloads_as_its_source_asks(tmp_path):
    """PDAE trained through `accelerate launch examples/train_pdae.py` on the bundled `sd-mnist` (a
    StableDiffusionPipeline made by this repo's scripts, not by the tests): the result loads, its frozen UNet and
    autoencoder are the source's bytes, predict_noise without z is the source UNet under the empty prompt, it
    reconstructs 32-pixel digits and returns latents, and diffusers alone loads it with trust_remote_code."""
    from diffusers_pdae.bundled import checkpoint_path

    from .test_train_scripts import FAST_FLAGS, TRAIN_PDAE, assert_ok, launch

    source, out = Path(checkpoint_path("sd-mnist")), tmp_path / "pdae-sd"
    assert_ok(launch(TRAIN_PDAE, ["--pretrained_model_name_or_path", str(source), "--output_dir", str(out),
                                  "--max_train_steps", "2", *FAST_FLAGS]))  # fmt: skip
    for component in ("unet", "vae"):
        assert tree_digest(out / component) == tree_digest(source / component)
    pipe = PDAEPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    sd = StableDiffusionPipeline.from_pretrained(source)
    _, negative = sd.encode_prompt("", "cpu", 1, do_classifier_free_guidance=True, negative_prompt="")
    x_t = torch.randn(1, *pipe.sample_shape, generator=torch.Generator().manual_seed(0))
    expected = sd.unet(x_t, 500, encoder_hidden_states=negative).sample
    torch.testing.assert_close(pipe.predict_noise(x_t, 500), expected, rtol=0, atol=1e-5)
    assert_release_reconstructs_digits_and_loads_without_the_package(out, tmp_path)
