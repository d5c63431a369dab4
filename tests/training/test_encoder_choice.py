"""train_pdae.py's --encoder_type and its flags: refusals at parse time, the encoder each choice builds, and (slow)
whole runs with the residual and the transformers designs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, ConvNextConfig

from diffusers_pdae import PDAEEncoder, PDAEPipeline, PDAEResidualEncoder, PDAETransformersEncoder
from diffusers_pdae.training import export

from ..conftest import load_script, tiny_unet
from .test_train_scripts import FAST_FLAGS, TRAIN_PDAE, assert_ok, launch


@pytest.fixture(scope="module")
def train_pdae():
    return load_script("train_pdae")


@pytest.fixture(scope="module")
def backbone_folder(tmp_path_factory) -> str:
    """A tiny ConvNeXt saved the way a Hub repo holds one (config.json + model.safetensors)."""
    folder = tmp_path_factory.mktemp("convnext")
    torch.manual_seed(0)
    AutoModel.from_config(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--encoder_backbone", "facebook/dinov2-small"], "--encoder_backbone do not apply to --encoder_type light"),
        (["--encoder_type", "residual", "--freeze_encoder_backbone"], "--freeze_encoder_backbone do not apply"),
        (["--encoder_layers_per_block", "3"], "--encoder_layers_per_block do not apply to --encoder_type light"),
        (["--encoder_type", "transformers"], "needs exactly one of --encoder_backbone"),
        (
            ["--encoder_type", "transformers", "--encoder_backbone", "a", "--encoder_backbone_config", "b"],
            "needs exactly one of --encoder_backbone",
        ),
        (["--encoder_type", "residual", "--init_from_pipeline", "folder"], "drop --encoder_type"),
        (
            ["--encoder_type", "transformers", "--encoder_backbone_config", "./missing/convnext.json"],
            "--encoder_backbone_config ./missing/convnext.json: no such file or folder",
        ),
    ],
)
def test_encoder_flags_that_do_not_fit_the_design_are_refused_before_anything_loads(train_pdae, argv, message):
    with pytest.raises(ValueError, match=message):
        train_pdae.parse_args(argv)


def test_each_design_builds_its_encoder_for_the_unet(train_pdae, backbone_folder, tmp_path):
    unet = tiny_unet()
    light = train_pdae.build_encoder(train_pdae.parse_args(["--latent_dim", "8"]), unet)
    assert type(light) is PDAEEncoder and list(light.config.block_out_channels) == [32, 64, 128, 128]
    assert light.config.sample_size == 16 and light.config.in_channels == 1

    residual = train_pdae.build_encoder(train_pdae.parse_args(["--encoder_type", "residual"]), unet)
    assert type(residual) is PDAEResidualEncoder
    assert list(residual.config.block_out_channels) == list(unet.config.block_out_channels)
    wider = train_pdae.parse_args(["--encoder_type", "residual", "--encoder_block_out_channels", "16", "32"])
    assert list(train_pdae.build_encoder(wider, unet).config.block_out_channels) == [16, 32]

    config_file = tmp_path / "convnext.json"
    config_file.write_text(json.dumps(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2).to_dict()))
    from_config = train_pdae.build_encoder(
        train_pdae.parse_args(["--encoder_type", "transformers", "--encoder_backbone_config", str(config_file)]), unet
    )
    assert type(from_config) is PDAETransformersEncoder and from_config.config.pretrained_backbone is None
    pretrained = train_pdae.build_encoder(
        train_pdae.parse_args(
            ["--encoder_type", "transformers", "--encoder_backbone", backbone_folder, "--freeze_encoder_backbone"]
        ),
        unet,
    )
    assert pretrained.config.freeze_backbone and pretrained.config.pretrained_backbone == backbone_folder
    assert pretrained(torch.zeros(2, 1, 16, 16)).z.shape == (2, 64)


@pytest.mark.slow  # two whole script launches
def test_runs_with_a_frozen_pretrained_backbone_and_a_warm_started_residual_encoder(
    tiny_dpm, image_folder, backbone_folder, tmp_path
):
    common = ["--pretrained_model_name_or_path", tiny_dpm, "--train_data_dir", image_folder, "--max_train_steps", "2",
              *FAST_FLAGS[: FAST_FLAGS.index("--encoder_block_out_channels")], "--save_images_epochs", "1000",
              "--seed", "0", "--warm_start_from_unet"]  # fmt: skip
    frozen = tmp_path / "frozen"
    result = launch(TRAIN_PDAE, [*common, "--output_dir", str(frozen), "--encoder_type", "transformers",
                                 "--encoder_backbone", backbone_folder, "--freeze_encoder_backbone",
                                 "--checkpointing_steps", "2", "--use_ema"])  # fmt: skip
    assert_ok(result)
    weights = load_file(frozen / "encoder" / "diffusion_pytorch_model.safetensors")
    original = load_file(f"{backbone_folder}/model.safetensors")
    assert all(torch.equal(weights[f"backbone.{key}"], value) for key, value in original.items())
    pipeline = PDAEPipeline.from_pretrained(frozen)
    assert type(pipeline.encoder) is PDAETransformersEncoder and pipeline.encode(torch.zeros(1, 1, 16, 16)).shape == (
        1,
        8,
    )
    card = (frozen / "README.md").read_text()
    assert "the pre-trained transformers backbone `convnext" in card and "(local)`, frozen" in card
    assert backbone_folder not in card
    exported = export.export_checkpoint(str(frozen / "checkpoint-2"), str(tmp_path / "exported"))
    assert type(exported.encoder) is PDAETransformersEncoder

    warm = tmp_path / "warm"
    result = launch(TRAIN_PDAE, [*common, "--output_dir", str(warm), "--encoder_type", "residual",
                                 "--encoder_warm_start_from_unet"])  # fmt: skip
    assert_ok(result)
    loaded = PDAEPipeline.from_pretrained(warm)
    assert type(loaded.encoder) is PDAEResidualEncoder
    assert json.loads((warm / "training_info.json").read_text())["flags"]["encoder_type"] == "residual"
