"""Lighter gradient estimators: fewer resnets per up block and narrower widths (issue 15)."""

import pytest
import torch
from diffusers import DDPMScheduler

from diffusers_pdae import GradientEstimator, frozen_denoiser
from diffusers_pdae.models.gradient_estimator import scaled_widths
from diffusers_pdae.training import pdae_training_loss

from ..conftest import LATENT_DIM, load_script, perturb_output, tiny_encoder, tiny_images, tiny_unet

LIGHT_SETTINGS = [
    {"resnets_per_up_block": 1},
    {"width_multiplier": 0.5},
    {"width_multiplier": 0.5, "resnets_per_up_block": 1},
]


def _parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@pytest.mark.parametrize("settings", LIGHT_SETTINGS)
def test_a_lighter_estimator_has_fewer_parameters_and_every_one_trains(settings):
    unet = tiny_unet().requires_grad_(False)
    full = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM)
    light = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, **settings).train()
    assert _parameters(light) < _parameters(full)
    encoder = tiny_encoder().train()
    optimizer = torch.optim.Adam([*encoder.parameters(), *light.parameters()], lr=1e-3)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    for seed in (0, 1):  # after the first step G's zero output conv is nonzero and gradients reach everything
        optimizer.zero_grad()
        generator = torch.Generator().manual_seed(seed)
        images = tiny_images(4, seed=seed)
        noise = torch.randn(images.shape, generator=generator)
        timesteps = torch.randint(1, 1000, (4,), generator=generator)
        pdae_training_loss(unet, encoder, light, scheduler, images, noise, timesteps).mean().backward()
        optimizer.step()
    for name, parameter in light.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_the_full_layout_is_the_default_and_keeps_its_weight_names():
    unet = tiny_unet()
    default = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM)
    explicit = GradientEstimator.from_unet(
        unet, latent_dim=LATENT_DIM, resnets_per_up_block=2, up_block_out_channels=(8, 16)
    )
    assert default.state_dict().keys() == explicit.state_dict().keys()
    assert all(len(block.resnets) == unet.config.layers_per_block + 1 for block in default.up_blocks)


def test_warm_start_with_fewer_resnets_copies_the_first_ones_of_each_level():
    unet = tiny_unet()
    light = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, warm_start=True, resnets_per_up_block=1)
    for own, pretrained in zip(light.up_blocks, unet.up_blocks, strict=True):
        assert len(own.resnets) == 1 and len(pretrained.resnets) == 2
        for name, tensor in pretrained.resnets[0].state_dict().items():
            assert torch.equal(own.resnets[0].state_dict()[name], tensor), name
        if own.attentions is not None:
            assert torch.equal(own.attentions[0].to_q.weight, pretrained.attentions[0].to_q.weight)
    assert torch.equal(light.conv_norm_out.weight, unet.conv_norm_out.weight)


def test_a_narrower_estimator_reads_the_unets_skips_at_their_own_widths():
    unet = tiny_unet()
    light = perturb_output(GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, width_multiplier=0.5))
    assert tuple(light.config.up_block_out_channels) == (4, 8)
    assert light.conv_out.in_channels == 4
    features = frozen_denoiser(unet).forward_with_features(tiny_images(3), torch.tensor([3, 300, 900])).features
    gradient = light(features, torch.randn(3, LATENT_DIM)).sample
    assert gradient.shape == (3, 1, 16, 16) and gradient.abs().sum() > 0


def test_impossible_light_layouts_are_named():
    unet = tiny_unet()
    with pytest.raises(ValueError, match="between 1 and layers_per_block \\+ 1 = 2"):
        GradientEstimator.from_unet(unet, resnets_per_up_block=3)
    with pytest.raises(ValueError, match="divisible by norm_num_groups 4"):
        GradientEstimator.from_unet(unet, up_block_out_channels=(6, 16))
    with pytest.raises(ValueError, match="attention_head_dim 8"):
        GradientEstimator.from_unet(unet, up_block_out_channels=(8, 12))
    with pytest.raises(ValueError, match="one width per level"):
        GradientEstimator.from_unet(unet, up_block_out_channels=(8,))
    with pytest.raises(ValueError, match="cannot be copied"):
        GradientEstimator.from_unet(unet, width_multiplier=0.5, warm_start=True)
    with pytest.raises(ValueError, match="must be positive"):
        GradientEstimator.from_unet(unet, width_multiplier=0.0)


def test_scaled_widths_round_to_the_group_count():
    assert scaled_widths((128, 256, 256, 256), 0.5, 32) == (64, 128, 128, 128)
    assert scaled_widths((32, 64, 64), 0.5, 8) == (16, 32, 32)
    assert scaled_widths((32, 64, 64), 0.3, 8) == (8, 16, 16)
    assert scaled_widths((32, 64), 0.01, 8) == (8, 8)


def test_a_light_estimator_reloads_bit_for_bit(tmp_path):
    unet = tiny_unet()
    light = perturb_output(
        GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, width_multiplier=0.5, resnets_per_up_block=1)
    )
    light.save_pretrained(tmp_path)
    loaded = GradientEstimator.from_pretrained(tmp_path)
    rebuilt = GradientEstimator.from_config(light.config)
    assert rebuilt.state_dict().keys() == light.state_dict().keys()
    loaded.check_compatible(unet)
    features = frozen_denoiser(unet).forward_with_features(tiny_images(2), torch.tensor([10, 500])).features
    z = torch.randn(2, LATENT_DIM)
    assert torch.equal(loaded(features, z).sample, light(features, z).sample)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--warm_start_from_unet", "--gradient_estimator_width_multiplier", "0.5"], "needs G at the UNet's widths"),
        (["--init_from_pipeline", "x", "--gradient_estimator_resnets_per_block", "1"], "own G further"),
    ],
)
def test_train_pdae_refuses_light_flags_it_cannot_honour(argv, message):
    with pytest.raises(ValueError, match=message):
        load_script("train_pdae").parse_args(argv)


def test_train_pdae_builds_the_light_estimator_its_flags_ask_for():
    train_pdae = load_script("train_pdae")
    args = train_pdae.parse_args(
        ["--gradient_estimator_resnets_per_block", "1", "--warm_start_from_unet", "--latent_dim", str(LATENT_DIM)]
    )
    unet = tiny_unet()
    train_pdae.check_image_geometry(args, unet, None)  # as main() does: --resolution from the UNet
    _, estimator = train_pdae.build_trainable_models(
        args, unet, DDPMScheduler(num_train_timesteps=1000), unet.config.in_channels
    )
    assert [len(block.resnets) for block in estimator.up_blocks] == [1, 1]
    assert torch.equal(estimator.up_blocks[1].resnets[0].conv1.weight, unet.up_blocks[1].resnets[0].conv1.weight)
    args = train_pdae.parse_args(["--gradient_estimator_width_multiplier", "0.5"])
    train_pdae.check_image_geometry(args, unet, None)
    _, estimator = train_pdae.build_trainable_models(
        args, unet, DDPMScheduler(num_train_timesteps=1000), unet.config.in_channels
    )
    assert tuple(estimator.config.up_block_out_channels) == (4, 8)
