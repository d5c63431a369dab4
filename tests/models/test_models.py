"""PDAEEncoder, GradientEstimator and the one-pass feature capture."""

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.models.resnet import ResnetBlock2D

from diffusers_pdae import GradientEstimator, PDAEEncoder, frozen_denoiser
from diffusers_pdae.models import ZShiftResnetBlock2D
from diffusers_pdae.training import pdae_training_loss

from ..conftest import LATENT_DIM, perturb_output, tiny_encoder, tiny_images, tiny_unet

CIFAR10_LAYOUT = {  # google/ddpm-cifar10-32
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (128, 256, 256, 256),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
}
CELEBAHQ_LAYOUT = {  # google/ddpm-celebahq-256
    "sample_size": 256,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (128, 128, 256, 256, 512, 512),
    "layers_per_block": 2,
    "down_block_types": (
        "DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
}  # fmt: skip
RESNET_RESAMPLING_LAYOUT = {
    "sample_size": 16,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (16, 32),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "down_block_types": ("AttnDownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D"),
    "downsample_type": "resnet",
    "upsample_type": "resnet",
    "resnet_time_scale_shift": "scale_shift",
}
# diffusers applies downsample_type/upsample_type to attention blocks only: the plain blocks resample with convs.
MIXED_RESAMPLING_LAYOUT = {
    "sample_size": 16,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (16, 32, 32),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "downsample_type": "resnet",
    "upsample_type": "resnet",
}


def test_encoder_shapes_and_errors():
    encoder = tiny_encoder()
    assert encoder(tiny_images(3)).z.shape == (3, LATENT_DIM)
    assert torch.equal(encoder(tiny_images(3), return_dict=False)[0], encoder(tiny_images(3)).z)
    with pytest.raises(ValueError, match=r"\(batch_size, 1, 16, 16\)"):
        encoder(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="cannot be halved"):
        PDAEEncoder(sample_size=16, block_out_channels=(8, 8, 8, 8, 8), norm_num_groups=4)


def test_features_come_from_the_single_unet_pass():
    unet = tiny_unet()
    x, t = tiny_images(2), torch.tensor([3, 700])
    frozen_pass = frozen_denoiser(unet).forward_with_features(x, t)
    features = frozen_pass.features
    assert torch.equal(frozen_pass.model_output, unet(x, t).sample)
    assert features.temb.shape == (2, 32)
    # conv_in, two resnets and a downsampler in block 0, one resnet in block 1
    assert [f.shape[1:] for f in features.down_block_res_samples] == [(8, 16, 16), (8, 16, 16), (8, 8, 8), (16, 8, 8)]
    assert features.mid_block_res_sample.shape == (2, 16, 8, 8)
    # hooks are removed afterwards
    assert not any(m._forward_hooks for m in unet.modules())


@pytest.mark.parametrize(
    "layout",
    [CIFAR10_LAYOUT, CELEBAHQ_LAYOUT, RESNET_RESAMPLING_LAYOUT, MIXED_RESAMPLING_LAYOUT],
    ids=["cifar10", "celebahq", "resnet", "mixed-resnet"],
)
def test_gradient_estimator_serves_hub_ddpm_layouts(layout):
    torch.manual_seed(0)
    unet = UNet2DModel(**layout).eval()
    estimator = GradientEstimator.from_unet(unet, latent_dim=16, warm_start=True)
    estimator.check_compatible(unet)
    # warm start copied every up-block weight (only the z projections are new)
    unet_state = unet.up_blocks.state_dict()
    for name, value in estimator.up_blocks.state_dict().items():
        if ".z_proj." not in name:
            assert torch.equal(value, unet_state[name]), name
    size = layout["sample_size"]
    with torch.no_grad():
        features = (
            frozen_denoiser(unet).forward_with_features(torch.randn(1, 3, size, size), torch.tensor([10])).features
        )
        gradient = estimator(features, torch.randn(1, 16)).sample
    assert gradient.shape == (1, 3, size, size)
    assert torch.count_nonzero(gradient) == 0  # zero-initialised output conv


def test_plain_up_blocks_upsample_with_a_conv_whatever_the_upsample_type():
    torch.manual_seed(0)
    unet = UNet2DModel(**MIXED_RESAMPLING_LAYOUT).eval()
    estimator = GradientEstimator.from_unet(unet, latent_dim=16, warm_start=True)
    kinds = [type(block.upsamplers[0]).__name__ for block in unet.up_blocks[:2]]
    assert kinds == ["Upsample2D", "ResnetBlock2D"]  # UpBlock2D: conv; AttnUpBlock2D: resnet
    assert [block.upsample_type for block in estimator.up_blocks] == ["conv", "resnet", None]
    # G holds exactly the UNet's up-block weights plus its z projections, each copied by the warm start.
    unet_state = unet.up_blocks.state_dict()
    own_state = estimator.up_blocks.state_dict()
    assert {name for name in own_state if ".z_proj." not in name} == set(unet_state)
    assert all(torch.equal(own_state[name], value) for name, value in unet_state.items())


def test_unsupported_layouts_raise_naming_the_block():
    unet = UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, down_block_types=("DownBlock2D", "SkipDownBlock2D"),
        up_block_types=("SkipUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="SkipDownBlock2D"):
        GradientEstimator.from_unet(unet)
    conditional = UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=10,
    )  # fmt: skip
    with pytest.raises(ValueError, match="unconditional"):
        GradientEstimator.from_unet(conditional)


def test_gradient_estimator_checks_fit_and_z_width():
    estimator = GradientEstimator.from_unet(tiny_unet(), latent_dim=LATENT_DIM)
    other = UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 32), layers_per_block=1,
        norm_num_groups=4, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=8,
    )  # fmt: skip
    with pytest.raises(ValueError, match="block_out_channels"):
        estimator.check_compatible(other)
    features = frozen_denoiser(tiny_unet()).forward_with_features(tiny_images(2), torch.tensor([1, 2])).features
    with pytest.raises(ValueError, match=rf"\(batch_size, {LATENT_DIM}\)"):
        estimator(features, torch.zeros(2, LATENT_DIM + 1))


def test_shifted_prediction_equals_unet_prediction_at_init():
    unet = tiny_unet()
    estimator = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM)
    features = frozen_denoiser(unet).forward_with_features(tiny_images(2), torch.tensor([5, 900])).features
    gradient = estimator(features, torch.randn(2, LATENT_DIM)).sample
    assert torch.count_nonzero(gradient) == 0


def _training_setup(warm_start: bool):
    unet = tiny_unet().requires_grad_(False)
    encoder = tiny_encoder().train()
    estimator = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, warm_start=warm_start).train()
    return unet, encoder, estimator, DDPMScheduler(num_train_timesteps=1000)


def _loss(unet, encoder, estimator, scheduler, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = tiny_images(4, seed=seed)
    noise = torch.randn(images.shape, generator=generator)
    timesteps = torch.randint(1, 1000, (4,), generator=generator)
    return pdae_training_loss(unet, encoder, estimator, scheduler, images, noise, timesteps).mean()


@pytest.mark.parametrize("warm_start", [False, True])
def test_every_trainable_parameter_gets_gradient_and_the_unet_none(warm_start):
    unet, encoder, estimator, scheduler = _training_setup(warm_start)
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(estimator.parameters()), lr=1e-3)
    _loss(unet, encoder, estimator, scheduler).backward()
    optimizer.step()  # G's zero output conv becomes nonzero, so gradients flow everywhere from now on
    optimizer.zero_grad()
    _loss(unet, encoder, estimator, scheduler, seed=1).backward()
    for module in (encoder, estimator):
        for name, parameter in module.named_parameters():
            assert parameter.requires_grad, name
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert all(p.grad is None and not p.requires_grad for p in unet.parameters())


def test_one_unet_forward_per_training_step():
    unet, encoder, estimator, scheduler = _training_setup(False)
    calls = {"unet": 0, "down": 0}
    unet.register_forward_hook(lambda *args: calls.__setitem__("unet", calls["unet"] + 1))
    unet.down_blocks[0].register_forward_hook(lambda *args: calls.__setitem__("down", calls["down"] + 1))
    _loss(unet, encoder, estimator, scheduler).backward()
    assert calls == {"unet": 1, "down": 1}


def test_save_and_load_round_trip_bit_for_bit(tmp_path):
    encoder = tiny_encoder()
    estimator = perturb_output(GradientEstimator.from_unet(tiny_unet(), latent_dim=LATENT_DIM))
    encoder.save_pretrained(tmp_path / "encoder")
    estimator.save_pretrained(tmp_path / "gradient_estimator")
    assert (tmp_path / "encoder" / "diffusion_pytorch_model.safetensors").is_file()
    loaded_encoder = PDAEEncoder.from_pretrained(tmp_path / "encoder").eval()
    loaded_estimator = GradientEstimator.from_pretrained(tmp_path / "gradient_estimator").eval()
    images = tiny_images(2)
    assert torch.equal(loaded_encoder(images).z, encoder(images).z)
    features = frozen_denoiser(tiny_unet()).forward_with_features(images, torch.tensor([10, 500])).features
    z = torch.randn(2, LATENT_DIM)
    assert torch.equal(loaded_estimator(features, z).sample, estimator.eval()(features, z).sample)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_channels": 24, "out_channels": 16},  # conv shortcut
        {"in_channels": 16, "out_channels": 16, "time_embedding_norm": "scale_shift"},
        {"in_channels": 16, "out_channels": 16, "up": True},  # an upsampling resnet ("resnet" upsample_type)
        {"in_channels": 16, "out_channels": 16, "skip_time_act": True},
    ],
)
@pytest.mark.parametrize("training", [False, True])
def test_z_shift_block_is_diffusers_resnet_block_when_its_z_projection_is_zero(kwargs, training):
    common = {"temb_channels": 32, "groups": 4, "dropout": 0.0, **kwargs}
    torch.manual_seed(0)
    reference = ResnetBlock2D(**common).train(training)
    block = ZShiftResnetBlock2D(z_channels=8, **common).train(training)
    missing, unexpected = block.load_state_dict(reference.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["z_proj.bias", "z_proj.weight"]
    torch.nn.init.zeros_(block.z_proj.weight)
    torch.nn.init.zeros_(block.z_proj.bias)
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, common["in_channels"], 8, 8, generator=generator)
    temb = torch.randn(3, 32, generator=generator)
    zemb = torch.randn(3, 8, generator=generator)
    assert torch.equal(block(hidden, temb, zemb), reference(hidden, temb))
    # and the code does act once its projection is not zero
    torch.nn.init.normal_(block.z_proj.weight, generator=generator)
    assert not torch.allclose(block(hidden, temb, zemb), reference(hidden, temb))
