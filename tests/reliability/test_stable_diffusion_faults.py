"""Stable Diffusion surfaces: the prompt_embedding component, a text-conditional UNet PDAE cannot serve, a Stable
Diffusion folder with a missing part, and the text-conditioning flags of train_pdae.py and train_dpm.py. Each bad
input is refused by name before any UNet evaluation or training step."""

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel

from diffusers_pdae import GradientEstimator, PDAEPipeline
from diffusers_pdae.models import PromptEmbedding

from ..conftest import (
    LATENT_DIM,
    load_script,
    tiny_pipeline,
    tiny_sd_components,
    tiny_sd_pdae_pipeline,
    tiny_sd_pipeline_folder,
)
from .conftest import CLEAR, assert_clear_error, drop_index_entry

pytestmark = pytest.mark.reliability(area="loading")


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    return Path(tiny_sd_pipeline_folder(tmp_path_factory.mktemp("sd") / "sd"))


def sd_pdae_parts() -> dict:
    pipe = tiny_sd_pdae_pipeline(shift=False)
    return dict(pipe.components)


@CLEAR
def test_a_text_conditional_unet_without_its_prompt_embedding_is_refused():
    """A PDAEPipeline on a UNet2DConditionModel without `prompt_embedding`: refused, naming it."""
    parts = {**sd_pdae_parts(), "prompt_embedding": None}
    assert_clear_error(lambda: PDAEPipeline(**parts), ["prompt_embedding"])


@CLEAR
def test_a_prompt_embedding_of_another_width_is_refused():
    """A prompt embedding whose width is not the UNet's cross_attention_dim: refused, naming both widths."""
    parts = {**sd_pdae_parts(), "prompt_embedding": PromptEmbedding(sequence_length=8, embedding_dim=24)}
    assert_clear_error(lambda: PDAEPipeline(**parts), [r"24 wide.*cross-attention takes 16"])


@CLEAR
def test_a_prompt_embedding_beside_an_unconditional_unet_is_refused():
    """A `prompt_embedding` given to a pipeline whose UNet2DModel takes no condition: refused."""
    parts = {**tiny_pipeline().components, "prompt_embedding": PromptEmbedding(sequence_length=8, embedding_dim=16)}
    assert_clear_error(lambda: PDAEPipeline(**parts), [r"asked without a condition.*prompt_embedding"])


@CLEAR
@pytest.mark.parametrize(
    ("entry", "value"),
    [("addition_embed_type", "text_time"), ("class_embed_type", "timestep"), ("time_cond_proj_dim", 8)],
)
def test_a_conditional_unet_that_needs_other_inputs_is_refused(entry, value):
    """A UNet2DConditionModel that needs inputs besides the text ({entry}, e.g. SDXL's): refused, naming it."""
    config = {key: item for key, item in tiny_sd_components()["unet"].config.items() if not key.startswith("_")}
    config[entry] = value
    if entry == "addition_embed_type":
        config.update(addition_time_embed_dim=8, projection_class_embeddings_input_dim=16)
    unet = UNet2DConditionModel.from_config(config)
    assert_clear_error(lambda: GradientEstimator.from_denoiser(unet, latent_dim=LATENT_DIM), [entry])


@CLEAR
@pytest.mark.parametrize(
    ("embeds", "keyword"),
    [(torch.full((1, 8, 16), float("nan")), "NaN"), (torch.zeros(8, 16), "shape"), (torch.zeros(2, 8, 16), "shape")],
    ids=["nan", "two-dims", "batch-of-two"],
)
def test_a_damaged_or_misshapen_prompt_embedding_is_refused(embeds, keyword):
    """`PromptEmbedding.from_embeds` with NaN values or not of shape (1, L, D): refused, naming it."""
    assert_clear_error(lambda: PromptEmbedding.from_embeds(embeds), [keyword])


@CLEAR
def test_a_prompt_that_is_not_text_is_refused():
    """`PromptEmbedding.from_prompt` with a prompt that is not a string: a TypeError naming `prompt`."""
    sd = tiny_sd_components()
    assert_clear_error(
        lambda: PromptEmbedding.from_prompt(sd["text_encoder"], sd["tokenizer"], ["a", "b"]), ["prompt"]
    )


@CLEAR
def test_a_saved_pipeline_missing_its_prompt_embedding_folder_is_refused_by_name(tmp_path):
    """A saved PDAE-on-SD folder whose prompt_embedding/ was deleted: refused before loading, naming it."""
    tiny_sd_pdae_pipeline().save_pretrained(tmp_path / "pipe")
    shutil.rmtree(tmp_path / "pipe" / "prompt_embedding")
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(tmp_path / "pipe"), ["prompt_embedding"])


@CLEAR
def test_a_saved_pipeline_whose_index_lost_the_prompt_embedding_is_refused(tmp_path):
    """A saved PDAE-on-SD folder whose model_index.json lost its prompt_embedding entry: refused, naming it."""
    tiny_sd_pdae_pipeline().save_pretrained(tmp_path / "pipe")
    drop_index_entry(tmp_path / "pipe", "prompt_embedding")
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(tmp_path / "pipe"), ["prompt_embedding"])


@CLEAR
def test_a_stable_diffusion_folder_without_its_text_encoder_is_refused(sd_folder, tmp_path):
    """train_pdae.py on a Stable Diffusion folder without text_encoder/: refused, naming it and the flag."""
    broken = Path(shutil.copytree(sd_folder, tmp_path / "sd"))
    shutil.rmtree(broken / "text_encoder")
    flags = ["--pretrained_model_name_or_path", str(broken), "--output_dir", str(tmp_path / "out")]
    assert_clear_error(
        lambda: load_script("train_pdae").main([*flags, "--max_train_steps", "1"]), [r"text_encoder.*tokenizer"]
    )
    assert not (tmp_path / "out" / "checkpoint-1").exists()


@CLEAR
def test_a_prompt_for_an_unconditional_dpm_is_refused(tiny_dpm, tmp_path):
    """train_pdae.py --prompt on a DPM asked without one (a UNet2DModel): refused, naming --prompt."""
    flags = ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(tmp_path / "out"), "--prompt", "a cat"]
    assert_clear_error(lambda: load_script("train_pdae").main([*flags, "--max_train_steps", "1"]), ["--prompt"])


TEXT_DPM_CASES = {
    "captions-without-autoencoder": (["--digit_captions"], "--pretrained_vae_model_name_or_path"),
    "caption-column-without-text-encoder": (
        ["--caption_column", "text", "--train_data_dir", ".", "--pretrained_vae_model_name_or_path", "vae"],
        "--pretrained_text_encoder_name_or_path",
    ),
    "empty-prompts-without-captions": (["--proportion_empty_prompts", "0.2"], "--digit_captions or --caption_column"),
    "text-encoder-without-captions": (["--pretrained_text_encoder_name_or_path", "sd"], "--digit_captions"),
    "digit-captions-on-own-data": (["--digit_captions", "--train_data_dir", "."], "--caption_column"),
    "captions-and-class-labels": (
        ["--digit_captions", "--pretrained_vae_model_name_or_path", "vae", "--num_class_embeds", "10"],
        "two conditionings",
    ),
}


@pytest.mark.reliability(area="training", outcome="clear error")
@pytest.mark.parametrize("case", list(TEXT_DPM_CASES))
def test_train_dpm_refuses_text_flags_that_do_not_fit_together(case):
    """train_dpm.py's text-conditioning flags that cannot work together ({case}): refused before loading, by name."""
    flags, keyword = TEXT_DPM_CASES[case]
    assert_clear_error(lambda: load_script("train_dpm").parse_args(["--output_dir", "out", *flags]), [keyword])


@pytest.mark.reliability(area="training", outcome="clear error")
@pytest.mark.parametrize("value", ["1.0", "-0.1", "nan"])
def test_a_share_of_empty_prompts_outside_0_to_1_is_refused(value, capsys):
    """train_dpm.py --proportion_empty_prompts {value}: argparse's exit 2 naming the flag."""
    with pytest.raises(SystemExit) as exited:
        load_script("train_dpm").parse_args(["--digit_captions", "--proportion_empty_prompts", value])
    assert exited.value.code == 2 and "--proportion_empty_prompts" in capsys.readouterr().err


@pytest.mark.reliability(area="training", outcome="clear error")
def test_a_caption_column_cannot_be_read_from_a_stream_or_the_bundled_digits():
    """--caption_column with --streaming, or on the bundled MNIST digits: refused, naming what to use instead."""
    from diffusers_pdae.data import load_training_dataset

    for streaming, folder, keyword in ((True, ".", "stream"), (False, None, "--digit_captions")):
        assert_clear_error(
            lambda s=streaming, f=folder: load_training_dataset(
                None, None, f, "image", 1, 32, streaming=s, caption_column="text"
            ),
            [keyword],
        )
