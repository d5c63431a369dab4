"""Stable Diffusion-shaped models end to end, in-process on tiny models: train_dpm.py trains a text-conditional latent
DPM on captioned digits and releases a StableDiffusionPipeline; train_pdae.py trains PDAE on such a folder with its
empty prompt, releasing a PDAEPipeline whose frozen parts are the source's bytes."""

from __future__ import annotations

import hashlib
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

from ..conftest import load_script, tiny_images, tiny_sd_components, tiny_sd_pipeline_folder

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
COMMON = ["--resolution", "32", "--train_batch_size", "4", "--lr_warmup_steps", "0", "--seed", "0"]


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def sd_dpm(tmp_path_factory) -> Path:
    """train_dpm.py --digit_captions on the tiny KL autoencoder, 2 steps."""
    root = tmp_path_factory.mktemp("sd-dpm")
    tiny_sd_components()["vae"].save_pretrained(root / "kl")
    config = root / "unet.json"
    config.write_text(json.dumps(TINY_TEXT_UNET))
    load_script("train_dpm").main([
        "--output_dir", str(root / "sd"), "--pretrained_vae_model_name_or_path", str(root / "kl"),
        "--digit_captions", "--model_config_name_or_path", str(config), "--max_train_steps", "2",
        "--ddpm_num_inference_steps", "2", "--eval_batch_size", "10", *COMMON,
    ])  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    return root / "sd"


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
        "--latent_dim", "8", "--num_validation_images", "2", "--validation_inference_steps", "2", *COMMON,
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
