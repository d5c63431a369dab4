"""Gradient checkpointing of G and the encoders (issue 28): diffusers' `enable_gradient_checkpointing()` recomputes
their layers in the backward pass, with the same loss and the same gradients, and changes nothing that is saved."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from transformers import ConvNextConfig

from diffusers_pdae import (
    GradientEstimator,
    PDAEEncoder,
    PDAEPipeline,
    PDAETransformersEncoder,
    frozen_denoiser,
)
from diffusers_pdae.training import pdae_training_loss

from ..conftest import LATENT_DIM, load_script, perturb_output, tiny_encoder, tiny_images, tiny_unet
from ..training.conftest import write_random_pictures
from ..training.test_train_scripts import FAST_FLAGS
from .test_encoders import tiny_residual_encoder, tiny_transformers_encoder
from .test_models import RESNET_RESAMPLING_LAYOUT


def tiny_convnext_encoder(seed: int = 1, in_channels: int = 1) -> PDAETransformersEncoder:
    """A backbone without transformers' own checkpointing: it runs as one checkpointed segment."""
    torch.manual_seed(seed)
    config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, patch_size=2, image_size=16)
    return PDAETransformersEncoder(
        backbone_config=config.to_dict(), in_channels=in_channels, sample_size=16, latent_dim=LATENT_DIM
    )


ENCODERS = {
    "light": tiny_encoder,
    "residual": tiny_residual_encoder,
    "transformers-vit": tiny_transformers_encoder,
    "transformers-convnext": tiny_convnext_encoder,
}
ESTIMATORS = {  # GradientEstimator.from_unet keyword arguments
    "full": {},
    "warm-started": {"warm_start": True},
    "lighter": {"resnets_per_up_block": 1, "width_multiplier": 0.5},
}


def recomputed_layer(model: torch.nn.Module) -> torch.nn.Module:
    """A layer inside a checkpointed segment of `model`: it runs again in the backward pass when checkpointing."""
    if isinstance(model, GradientEstimator):
        return model.up_blocks[0].resnets[0].conv1
    if isinstance(model, PDAEEncoder):
        return model.down[0]  # the first level's norm (its last layer is not rerun: it ends the segment)
    if isinstance(model, PDAETransformersEncoder):
        backbone = model.backbone
        if backbone.supports_gradient_checkpointing:
            # transformers checkpoints each layer's `forward` (hooks on the layer stay outside): watch a layer inside
            # it, the first linear one (ViT's first attention projection; its patch embedding is a convolution).
            return next(module for module in backbone.modules() if isinstance(module, torch.nn.Linear))
        return backbone.embeddings  # the whole backbone is one segment
    return model.down_blocks[0].resnets[0].conv1  # PDAEResidualEncoder: diffusers' DownBlock2D


def loss_and_gradients(unet, encoder, estimator, checkpointing: bool, seed: int = 0):
    """The seeded PDAE loss of one batch, its gradient for every encoder and G parameter, and how often a
    checkpointed layer of each model ran."""
    for model in (encoder, estimator):
        model.enable_gradient_checkpointing() if checkpointing else model.disable_gradient_checkpointing()
        assert model.is_gradient_checkpointing == checkpointing
    calls = {"encoder": 0, "estimator": 0}
    hooks = [
        recomputed_layer(model).register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
        for name, model in (("encoder", encoder), ("estimator", estimator))
    ]
    generator = torch.Generator().manual_seed(seed)
    images = tiny_images(3, seed=seed, channels=unet.config.in_channels)
    noise = torch.randn(images.shape, generator=generator)
    timesteps = torch.randint(1, 1000, (3,), generator=generator)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    loss = pdae_training_loss(unet, encoder, estimator, scheduler, images, noise, timesteps).mean()
    named = [(f"encoder.{n}", p) for n, p in encoder.named_parameters() if p.requires_grad]
    named += [(f"estimator.{n}", p) for n, p in estimator.named_parameters()]
    gradients = torch.autograd.grad(loss, [p for _, p in named])
    for hook in hooks:
        hook.remove()
    return loss.detach(), dict(zip([n for n, _ in named], gradients, strict=True)), calls


def assert_same_loss_and_gradients(unet, encoder, estimator):
    loss, gradients, calls = loss_and_gradients(unet, encoder, estimator, checkpointing=False)
    loss_ckpt, gradients_ckpt, calls_ckpt = loss_and_gradients(unet, encoder, estimator, checkpointing=True)
    assert calls == {"encoder": 1, "estimator": 1}
    assert calls_ckpt == {"encoder": 2, "estimator": 2}  # forward, then again in the backward pass
    torch.testing.assert_close(loss_ckpt, loss, rtol=1e-6, atol=0)
    assert gradients_ckpt.keys() == gradients.keys()
    for name, gradient in gradients.items():
        assert gradient.abs().sum() > 0, name  # every parameter learns (z reaches G through the segments)
        torch.testing.assert_close(gradients_ckpt[name], gradient, rtol=1e-5, atol=1e-8, msg=name)


@pytest.mark.parametrize("design", ENCODERS)
def test_each_encoder_design_gets_the_same_loss_and_gradients_with_checkpointing(design):
    unet = tiny_unet().requires_grad_(False)
    torch.manual_seed(3)
    estimator = perturb_output(GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM)).train()
    assert_same_loss_and_gradients(unet, ENCODERS[design]().train(), estimator)


@pytest.mark.parametrize("option", ESTIMATORS)
@pytest.mark.parametrize("layout", ["tiny", "resnet-resampling"])
def test_each_gradient_estimator_gets_the_same_loss_and_gradients_with_checkpointing(option, layout):
    """The full, a warm-started and a lighter G; on a UNet whose attention up blocks upsample with a resnet too."""
    if layout == "tiny":
        unet = tiny_unet()
    else:
        torch.manual_seed(0)
        unet = UNet2DModel(**RESNET_RESAMPLING_LAYOUT)
    unet.requires_grad_(False).eval()
    torch.manual_seed(3)
    estimator = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, **ESTIMATORS[option])
    encoder = tiny_encoder(in_channels=unet.config.in_channels).train()
    assert_same_loss_and_gradients(unet, encoder, perturb_output(estimator).train())


def test_checkpointing_is_a_runtime_setting_that_saves_nothing_new(tmp_path):
    unet = tiny_unet()
    estimator = perturb_output(GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM))
    for model in (tiny_encoder(), tiny_residual_encoder(), tiny_convnext_encoder(), estimator):
        model.save_pretrained(tmp_path / "plain")
        model.enable_gradient_checkpointing()
        model.save_pretrained(tmp_path / "checkpointed")
        for name in ("config.json", "diffusion_pytorch_model.safetensors"):
            assert (tmp_path / "checkpointed" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name
        assert "gradient_checkpointing" not in json.loads((tmp_path / "plain" / "config.json").read_text())
        reloaded = type(model).from_pretrained(tmp_path / "checkpointed")
        assert not reloaded.is_gradient_checkpointing


def test_without_gradients_each_layer_runs_once_and_the_codes_and_shift_are_unchanged():
    unet = tiny_unet()
    estimator = perturb_output(GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM)).train()
    encoder = tiny_encoder().train()
    images = tiny_images(2)
    with torch.no_grad():
        features = frozen_denoiser(unet).forward_with_features(images, torch.tensor([10, 500])).features
        z = encoder(images).z
        shift = estimator(features, z).sample
        for model in (encoder, estimator):
            model.enable_gradient_checkpointing()
        calls = []
        recomputed_layer(estimator).register_forward_hook(lambda *_: calls.append(1))
        assert torch.equal(encoder(images).z, z)
        assert torch.equal(estimator(features, z).sample, shift)
    assert len(calls) == 1


def test_train_pdae_trains_two_steps_with_gradient_checkpointing(tiny_dpm, tmp_path, monkeypatch):
    enabled = []
    for cls in (PDAEEncoder, GradientEstimator):
        original = cls.enable_gradient_checkpointing

        def record(self, *args, _original=original, **kwargs):
            enabled.append(type(self).__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "enable_gradient_checkpointing", record)
    pictures = write_random_pictures(tmp_path / "pictures", 8, 16, np.random.default_rng(0))
    out = tmp_path / "out"
    load_script("train_pdae").main([
        "--pretrained_model_name_or_path", tiny_dpm, "--train_data_dir", str(pictures), "--output_dir", str(out),
        "--max_train_steps", "2", "--gradient_checkpointing", *FAST_FLAGS,
    ])  # fmt: skip
    assert sorted(enabled) == ["GradientEstimator", "PDAEEncoder"]
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 2
    pipeline = PDAEPipeline.from_pretrained(out)
    assert not pipeline.gradient_estimator.is_gradient_checkpointing
    assert pipeline.encode(torch.zeros(1, 1, 16, 16)).shape == (1, LATENT_DIM)
