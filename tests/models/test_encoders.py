"""The three encoder designs: shapes, exact save/load, warm starts, frozen backbones, and pipelines built on each."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline
from transformers import AutoModel, ConvNextConfig, ViTConfig

import diffusers_pdae  # noqa: F401
from diffusers_pdae import (
    GradientEstimator,
    PDAEPipeline,
    PDAEResidualEncoder,
    PDAETransformersEncoder,
    load_encoder,
)
from diffusers_pdae.training import pdae_training_loss

from ..conftest import LATENT_DIM, tiny_encoder, tiny_images, tiny_unet


def tiny_vit_config(image_size: int = 16) -> ViTConfig:
    return ViTConfig(
        image_size=image_size, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip


def tiny_residual_encoder(seed: int = 1) -> PDAEResidualEncoder:
    torch.manual_seed(seed)
    return PDAEResidualEncoder.from_unet(tiny_unet(), latent_dim=LATENT_DIM).eval()


def tiny_transformers_encoder(seed: int = 1, **kwargs) -> PDAETransformersEncoder:
    torch.manual_seed(seed)
    config = tiny_vit_config().to_dict()
    return PDAETransformersEncoder(
        backbone_config=config, in_channels=1, sample_size=16, latent_dim=LATENT_DIM, **kwargs
    ).eval()


DESIGNS = {"light": tiny_encoder, "residual": tiny_residual_encoder, "transformers": tiny_transformers_encoder}


@pytest.mark.parametrize("design", DESIGNS)
def test_each_design_maps_images_to_codes_and_reloads_bit_for_bit(design, tmp_path):
    encoder = DESIGNS[design]()
    images = tiny_images(3)
    z = encoder(images).z
    assert z.shape == (3, LATENT_DIM) and torch.isfinite(z).all()
    assert not torch.allclose(z[0], z[1])
    encoder.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin"))
    # from_config is how EMA copies and checkpoint exports rebuild a model: it must keep the whole config
    rebuilt = type(encoder).from_config(encoder.config)
    rebuilt.load_state_dict(encoder.state_dict())
    for loaded in (type(encoder).from_pretrained(tmp_path), load_encoder(tmp_path), rebuilt):
        assert type(loaded) is type(encoder)
        assert torch.equal(loaded.eval()(images).z, z)
    expected = rf"{type(encoder).__name__} expects images of shape \(batch_size, 1, 16, 16\)"
    with pytest.raises(ValueError, match=expected):
        encoder(torch.zeros(2, 3, 16, 16))


def test_load_encoder_refuses_a_folder_of_another_model(tmp_path):
    tiny_unet().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 'UNet2DModel', not a PDAE encoder"):
        load_encoder(tmp_path)


def test_residual_encoder_copies_the_unet_layout_and_its_weights_on_request():
    unet = tiny_unet()
    encoder = PDAEResidualEncoder.from_unet(unet, latent_dim=LATENT_DIM, warm_start=True)
    for key in ("down_block_types", "block_out_channels"):
        assert list(encoder.config[key]) == list(unet.config[key])
    for key in ("layers_per_block", "norm_num_groups", "attention_head_dim"):
        assert encoder.config[key] == unet.config[key]
    unet_weights = {f"down_blocks.{key}": value for key, value in unet.down_blocks.state_dict().items()}
    encoder_weights = encoder.state_dict()
    copied = [key for key in unet_weights if "time_emb_proj" not in key]
    assert copied and all(torch.equal(encoder_weights[key], unet_weights[key]) for key in copied)
    assert torch.equal(encoder.mid_block.resnets[0].conv1.weight, unet.mid_block.resnets[0].conv1.weight)
    assert all(parameter.requires_grad for parameter in encoder.parameters())
    fresh = PDAEResidualEncoder.from_unet(unet, latent_dim=LATENT_DIM)
    assert not torch.equal(fresh.conv_in.weight, unet.conv_in.weight)
    with pytest.raises(ValueError, match="block_out_channels differ"):
        PDAEResidualEncoder.from_unet(unet, latent_dim=LATENT_DIM, warm_start=True, block_out_channels=(8, 8))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D")}, "Unsupported down blocks"),
        ({"down_block_types": ("DownBlock2D",)}, "down_block_types has 1 entries but block_out_channels 2"),
        ({"sample_size": 15}, "cannot be halved 1 times"),
        ({"norm_num_groups": 3}, "norm_num_groups=3 must divide"),
    ],
)
def test_residual_encoder_layouts_that_cannot_work_are_named(overrides, message):
    config = {"in_channels": 1, "sample_size": 16, "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
              "block_out_channels": (8, 16), "norm_num_groups": 4, **overrides}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        PDAEResidualEncoder(**config)


def test_transformers_encoder_loads_a_pretrained_backbone_and_keeps_it_frozen(tmp_path):
    torch.manual_seed(0)
    backbone = AutoModel.from_config(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2))
    backbone.save_pretrained(tmp_path / "backbone")
    encoder = PDAETransformersEncoder.from_backbone(
        tmp_path / "backbone", in_channels=1, sample_size=16, latent_dim=LATENT_DIM, freeze_backbone=True
    )
    assert encoder.config.pretrained_backbone == str(tmp_path / "backbone")
    loaded, original = encoder.backbone.state_dict(), backbone.state_dict()
    assert loaded.keys() == original.keys() and all(torch.equal(loaded[key], original[key]) for key in original)
    # Training code unfreezes whole models; the frozen backbone must survive that.
    encoder.requires_grad_(True).train()
    assert not encoder.backbone.training and encoder.proj_out.training
    encoder(tiny_images(4)).z.square().sum().backward()
    assert all(parameter.grad is None for parameter in encoder.backbone.parameters())
    head = list(encoder.proj_out.parameters())
    assert head and all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in head)


def test_transformers_encoder_feeds_the_backbone_what_it_expects():
    encoder = PDAETransformersEncoder(
        backbone_config=tiny_vit_config(image_size=32).to_dict(), in_channels=1, sample_size=16, latent_dim=LATENT_DIM,
        image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5),
    )  # fmt: skip
    images = tiny_images(2)
    pixels = encoder.backbone_inputs(images)
    assert pixels.shape == (2, 3, 32, 32)  # grey repeated to RGB, resized to the ViT's image_size
    assert torch.equal(pixels[:, 0], pixels[:, 2])
    # with mean = std = 0.5 the backbone sees the [-1, 1] images themselves (bilinear 2x upsampling keeps the mean)
    assert torch.allclose(pixels.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=1e-2)
    assert encoder(images).z.shape == (2, LATENT_DIM)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backbone_config": {"hidden_size": 16}}, "backbone_config needs a 'model_type'"),
        ({"in_channels": 2}, "can be 1 \\(repeated\\) or 3"),
        ({"image_std": (0.5, 0.0, 0.5)}, "positive std"),
        ({"image_mean": (0.5,)}, "need 3 entries"),
    ],
)
def test_transformers_encoder_settings_that_cannot_work_are_named(change, message):
    settings = {"backbone_config": tiny_vit_config().to_dict(), "in_channels": 1, "sample_size": 16, **change}
    with pytest.raises(ValueError, match=message):
        PDAETransformersEncoder(**settings)


@pytest.mark.parametrize("design", DESIGNS)
def test_a_pipeline_on_each_design_saves_its_code_and_reloads_bit_for_bit(design, tmp_path):
    unet = tiny_unet()
    torch.manual_seed(3)
    gradient_estimator = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM).eval()
    encoder = DESIGNS[design]()
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    pipeline = PDAEPipeline(unet, scheduler, encoder, gradient_estimator)
    pipeline.save_pretrained(tmp_path)
    name = type(encoder).__name__
    assert json.loads((tmp_path / "model_index.json").read_text())["encoder"] == ["pdae_encoder", name]
    code = (tmp_path / "encoder" / "pdae_encoder.py").read_text()
    compile(code, "pdae_encoder.py", "exec")
    assert f"class {name}(PDAEEncoderMixin, ModelMixin, ConfigMixin)" in code
    images = tiny_images(2)
    for load in (PDAEPipeline.from_pretrained, partial(DiffusionPipeline.from_pretrained, trust_remote_code=True)):
        loaded = load(tmp_path)
        assert type(loaded.encoder) is type(encoder)
        assert torch.equal(loaded.encode(images), pipeline.encode(images))


@pytest.mark.parametrize("design", DESIGNS)
def test_one_training_step_reaches_every_trainable_parameter_of_each_design(design):
    unet = tiny_unet()
    encoder = DESIGNS[design]().train()
    gradient_estimator = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, warm_start=True).train()
    # G's output conv starts at zero, which blocks every gradient to the encoder in the first step; nudge it.
    torch.nn.init.normal_(gradient_estimator.conv_out.weight, std=0.01)
    images = tiny_images(4)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(images.shape, generator=generator)
    timesteps = torch.randint(1, 1000, (4,), generator=generator)
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    pdae_training_loss(unet, encoder, gradient_estimator, scheduler, images, noise, timesteps, 0.1).mean().backward()
    silent = [
        name for name, parameter in encoder.named_parameters() if parameter.grad is None or not parameter.grad.any()
    ]
    assert not silent, silent
