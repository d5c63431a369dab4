"""Diffusion-transformer surfaces: the pipeline's `transformer` component, the transformer G, a DiT PDAE cannot serve
or one left in train mode, and the DiT flags of train_pdae.py and train_dpm.py. Each bad input is refused by name
before any model evaluation or training step."""

import json
from pathlib import Path

import pytest
import torch

from diffusers_pdae import GradientEstimator, PDAEPipeline
from diffusers_pdae.models import TransformerGradientEstimator, frozen_denoiser
from diffusers_pdae.models.dit_denoiser import DiTDenoiser

from ..conftest import LATENT_DIM, load_script, tiny_dit, tiny_dit_pdae_pipeline, tiny_sd_components, tiny_unet
from .conftest import CLEAR, assert_clear_error, drop_index_entry

pytestmark = pytest.mark.reliability(area="loading")


def dit_parts() -> dict:
    return dict(tiny_dit_pdae_pipeline(shift=False).components)


@CLEAR
@pytest.mark.parametrize("case", ["both", "neither"])
def test_a_pipeline_needs_exactly_one_frozen_model(case):
    """A PDAEPipeline given both a unet and a transformer, or neither ({case}): refused, naming both components."""
    parts = dit_parts()
    parts["unet"] = tiny_unet() if case == "both" else None
    if case == "neither":
        parts["transformer"] = None
    assert_clear_error(lambda: PDAEPipeline(**parts), [r"unet .* or its\s+transformer"])


@CLEAR
def test_a_dit_given_as_the_unet_is_refused_naming_its_component():
    """A DiTTransformer2DModel passed as `unet`: refused, saying diffusers names it `transformer`."""
    parts = dit_parts()
    parts["unet"], parts["transformer"] = parts["transformer"], None
    assert_clear_error(lambda: PDAEPipeline(**parts), ["transformer="])


@CLEAR
def test_each_g_design_refuses_the_other_familys_model():
    """A UNet G for a DiT, or a transformer G for a UNet: refused, naming the design to use."""
    assert_clear_error(lambda: GradientEstimator.from_denoiser(tiny_dit(), latent_dim=LATENT_DIM),
                       ["TransformerGradientEstimator"])  # fmt: skip
    estimator = TransformerGradientEstimator.from_denoiser(tiny_dit(), latent_dim=LATENT_DIM, num_layers=1,
                                                           num_attention_heads=2)  # fmt: skip
    assert_clear_error(lambda: estimator.check_compatible(tiny_unet()), ["GradientEstimator.from_denoiser"])


@CLEAR
@pytest.mark.parametrize(
    ("options", "keyword"),
    [
        ({"feature_layers": (0, 7)}, "feature_layers"),
        ({"hidden_size": 16, "num_attention_heads": 3}, "num_attention_heads"),
    ],
    ids=["layer-beyond-the-depth", "heads-not-dividing-the-width"],
)
def test_a_transformer_g_that_cannot_be_built_is_refused(options, keyword):
    """A transformer G reading a block the DiT lacks, or with heads that do not divide its width: refused by name."""
    assert_clear_error(
        lambda: TransformerGradientEstimator.from_denoiser(tiny_dit(), latent_dim=LATENT_DIM, **options), [keyword]
    )


@CLEAR
def test_a_dit_left_in_train_mode_is_refused_before_it_runs():
    """A frozen DiT in train mode (its label embedding would drop labels at random): refused, naming .eval()."""
    denoiser = frozen_denoiser(tiny_dit().train())
    assert_clear_error(lambda: denoiser(torch.randn(1, 4, 8, 8), torch.tensor([5])), [r"\.eval\(\)"])


@CLEAR
def test_a_dit_without_a_class_table_is_refused():
    """A DiT config without adaLN-Zero's class table (no null class to ask for): refused, naming the entries."""
    config = {**tiny_dit().config, "num_embeds_ada_norm": None}
    assert_clear_error(lambda: DiTDenoiser.check_config(config), ["num_embeds_ada_norm"])


@CLEAR
def test_a_saved_folder_that_lost_its_frozen_model_entry_is_refused(tmp_path):
    """A saved DiT PDAE whose model_index.json lost its transformer entry: refused, naming the frozen model."""
    tiny_dit_pdae_pipeline().save_pretrained(tmp_path / "pipe")
    drop_index_entry(tmp_path / "pipe", "transformer")
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(tmp_path / "pipe"), ["frozen model"])


@CLEAR
@pytest.mark.parametrize("change", ["weights", "scaling-factor"])
def test_a_saved_dit_folder_whose_autoencoder_changed_is_refused(tmp_path, change):
    """A saved DiT PDAE whose autoencoder changed ({change}): refused naming vae/ or its scaling_factor, recorded
    in G's own config (before: diffusers warned at each load that the two entries were not expected)."""
    pipe = tiny_dit_pdae_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    recorded = json.loads((tmp_path / "pipe" / "gradient_estimator" / "config.json").read_text())
    assert recorded["autoencoder_scaling_factor"] == pipe.vae.config.scaling_factor
    assert len(recorded["autoencoder_weights_digest"]) == 64
    _, not_expected, _ = TransformerGradientEstimator.extract_init_dict(recorded)
    assert not_expected == {}
    vae_folder = tmp_path / "pipe" / "vae"
    if change == "weights":
        tiny_sd_components(seed=99)["vae"].save_pretrained(vae_folder)
        expected = [r"/vae is not the autoencoder .* digest"]
    else:
        config = json.loads((vae_folder / "config.json").read_text())
        config["scaling_factor"] = 2 * config["scaling_factor"]
        (vae_folder / "config.json").write_text(json.dumps(config))
        expected = [r"scaling_factor .* trained with"]
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(tmp_path / "pipe"), expected)


@pytest.fixture(scope="module")
def dit_folder(tmp_path_factory) -> Path:
    """A tiny DiTPipeline folder (the tiny DiT and the tiny KL autoencoder), as a user's DiT would be."""
    from diffusers import DDIMScheduler, DiTPipeline

    folder = tmp_path_factory.mktemp("dit") / "dit"
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    DiTPipeline(tiny_dit(), tiny_sd_components()["vae"], scheduler).save_pretrained(folder)
    return folder


PDAE_FLAG_CASES = {
    "resnets-on-a-dit": (["--gradient_estimator_resnets_per_block", "1"], "--gradient_estimator_resnets_per_block"),
    "warm-start-on-a-dit": (["--warm_start_from_unet"], "decoder half"),
    "feature-layer-beyond-the-depth": (["--gradient_estimator_feature_layers", "9"], "feature_layers"),
}


@pytest.mark.reliability(area="training", outcome="clear error")
@pytest.mark.parametrize("case", list(PDAE_FLAG_CASES))
def test_train_pdae_refuses_g_flags_that_do_not_fit_a_dit(case, dit_folder, tmp_path):
    """train_pdae.py on a DiT with a flag of the UNet G, or a G that cannot be built ({case}): refused by name."""
    flags, keyword = PDAE_FLAG_CASES[case]
    argv = ["--pretrained_model_name_or_path", str(dit_folder), "--output_dir", str(tmp_path / "out"),
            "--max_train_steps", "1", *flags]  # fmt: skip
    assert_clear_error(lambda: load_script("train_pdae").main(argv), [keyword])
    assert not (tmp_path / "out" / "checkpoint-1").exists()


@pytest.mark.reliability(area="training", outcome="clear error")
def test_train_pdae_refuses_transformer_g_flags_on_a_unet(tiny_dpm, tmp_path):
    """train_pdae.py --gradient_estimator_layers on a UNet2DModel: refused, naming the flag."""
    argv = ["--pretrained_model_name_or_path", tiny_dpm, "--output_dir", str(tmp_path / "out"), "--max_train_steps",
            "1", "--gradient_estimator_layers", "2"]  # fmt: skip
    assert_clear_error(lambda: load_script("train_pdae").main(argv), ["--gradient_estimator_layers"])


DIT_DPM_CASES = {
    "without-autoencoder": ([], "--pretrained_vae_model_name_or_path"),
    "on-own-images": (["--pretrained_vae_model_name_or_path", "kl", "--train_data_dir", "."], "--train_data_dir"),
    "with-captions": (["--pretrained_vae_model_name_or_path", "kl", "--digit_captions"], "class labels"),
}


@pytest.mark.reliability(area="training", outcome="clear error")
@pytest.mark.parametrize("case", list(DIT_DPM_CASES))
def test_train_dpm_refuses_dit_flags_that_do_not_fit_together(case):
    """train_dpm.py --model_type dit with flags that cannot work with it ({case}): refused before loading, by name."""
    flags, keyword = DIT_DPM_CASES[case]
    argv = ["--output_dir", "out", "--model_type", "dit", *flags]
    assert_clear_error(lambda: load_script("train_dpm").parse_args(argv), [keyword])


@pytest.mark.reliability(area="training", outcome="clear error")
def test_train_dpm_refuses_a_dit_on_a_vq_autoencoder(tmp_path):
    """train_dpm.py --model_type dit on a VQModel: refused before training, naming AutoencoderKL."""
    from ..conftest import tiny_vqvae

    tiny_vqvae().save_pretrained(tmp_path / "vq")
    argv = ["--output_dir", str(tmp_path / "out"), "--model_type", "dit", "--pretrained_vae_model_name_or_path",
            str(tmp_path / "vq"), "--max_train_steps", "1"]  # fmt: skip
    assert_clear_error(lambda: load_script("train_dpm").main(argv), ["AutoencoderKL"])
