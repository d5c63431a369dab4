"""DiffAEUNet2DModel (the Diff-AE-style baseline) and its training loss, on tiny random models."""

import re

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.models import DiffAEUNet2DModel
from diffusers_pdae.training.diffae_objective import diffae_training_loss

from ..conftest import LATENT_DIM, tiny_encoder, tiny_images, tiny_unet


def tiny_diffae(seed: int = 5, unet: UNet2DModel | None = None) -> DiffAEUNet2DModel:
    unet = unet or tiny_unet()
    torch.manual_seed(seed)
    return DiffAEUNet2DModel.from_unet_config(unet, latent_dim=LATENT_DIM).eval()


def z_parameter_count(model: DiffAEUNet2DModel) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if ".z_proj." in name or "z_embedding" in name)


def zero_z_projections(model: DiffAEUNet2DModel) -> DiffAEUNet2DModel:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".z_proj." in name:
                parameter.zero_()
    return model


def public_config(model: DiffAEUNet2DModel) -> dict:
    """The config as saved to JSON (tuples as lists), without diffusers' bookkeeping entries."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if not k.startswith("_")}


def codes(batch_size: int, seed: int = 6) -> torch.Tensor:
    return torch.randn(batch_size, LATENT_DIM, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_output_shape_for_every_timestep_form():
    model = tiny_diffae()
    sample, z = tiny_images(3), codes(3)
    out = model(sample, torch.tensor([0, 500, 999]), z).sample
    assert out.shape == (3, 1, 16, 16) and torch.isfinite(out).all()
    assert torch.equal(model(sample, 7, z).sample, model(sample, torch.tensor(7), z).sample)
    assert torch.equal(model(sample, 7, z).sample, model(sample, torch.tensor([7, 7, 7]), z).sample)
    assert torch.equal(model(sample, 7, z, return_dict=False)[0], model(sample, 7, z).sample)


def resnet_resampling_unet() -> UNet2DModel:
    """A layout with resnet down/upsamplers, scale-shift time conditioning and no mid-block attention."""
    torch.manual_seed(12)
    return UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
        downsample_type="resnet",
        upsample_type="resnet",
        resnet_time_scale_shift="scale_shift",
        add_attention=False,
    ).eval()


@torch.no_grad()
@pytest.mark.parametrize("make_unet", [lambda: tiny_unet(seed=11), resnet_resampling_unet], ids=["conv", "resnet"])
def test_with_zero_z_projections_it_is_the_unet_and_ignores_z(make_unet):
    unet = make_unet()
    model = tiny_diffae(unet=unet)
    sample, t = tiny_images(2), torch.tensor([3, 700])
    # Fresh z projections: the code changes the prediction, by a real amount.
    a, b = model(sample, t, codes(2, seed=1)).sample, model(sample, t, codes(2, seed=2)).sample
    assert (a - b).abs().mean() > 0.01 * a.abs().mean()

    zero_z_projections(model)
    a, b = model(sample, t, codes(2, seed=1)).sample, model(sample, t, codes(2, seed=2)).sample
    assert torch.equal(a, b)
    # Same names as UNet2DModel: its weights fill everything but the code path, and then the outputs agree exactly.
    missing, unexpected = model.load_state_dict(unet.state_dict(), strict=False)
    assert not unexpected and missing and all(".z_proj." in key or "z_embedding" in key for key in missing)
    assert torch.equal(model(sample, t, codes(2)).sample, unet(sample, t).sample)


def test_save_load_and_from_config_round_trips(tmp_path):
    model = tiny_diffae()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = DiffAEUNet2DModel.from_pretrained(tmp_path).eval()
    assert public_config(loaded) == public_config(model)
    for (name, parameter), (loaded_name, loaded_parameter) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == loaded_name and torch.equal(parameter, loaded_parameter)
    sample, z = tiny_images(2), codes(2)
    with torch.no_grad():
        assert torch.equal(loaded(sample, 10, z).sample, model(sample, 10, z).sample)
    rebuilt = DiffAEUNet2DModel.from_config(model.config)
    assert public_config(rebuilt) == public_config(model)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_from_unet_config_mirrors_the_bundled_dpm_plus_the_code_path():
    unet = UNet2DModel.from_pretrained(checkpoint_path("ddpm-mnist"), subfolder="unet")
    model = DiffAEUNet2DModel.from_unet_config(unet.config, latent_dim=64)
    for key in ("block_out_channels", "down_block_types", "up_block_types"):
        assert list(model.config[key]) == list(unet.config[key])
    for key in ("layers_per_block", "sample_size", "norm_num_groups", "attention_head_dim"):
        assert model.config[key] == unet.config[key]
    unet_count = sum(p.numel() for p in unet.parameters())
    model_count = sum(p.numel() for p in model.parameters())
    assert model_count - unet_count == z_parameter_count(model) > 0
    # every resnet of the UNet has its z projection: down 3 * 2, mid 2, up 3 * 3
    assert sum(1 for name, _ in model.named_modules() if name.endswith(".z_proj")) == 17
    assert model.z_embedding.out_features == unet.time_embedding.linear_2.out_features
    assert public_config(DiffAEUNet2DModel.from_unet_config(unet, latent_dim=64)) == public_config(model)
    assert DiffAEUNet2DModel.from_unet_config(unet, latent_dim=8, z_embed_dim=32).z_embedding.weight.shape == (32, 8)


def test_unsupported_layouts_are_refused():
    with pytest.raises(ValueError, match="num_class_embeds=3"):
        DiffAEUNet2DModel.from_unet_config(tiny_unet(num_class_embeds=3))
    with pytest.raises(ValueError, match="Unsupported down block 'CrossAttnDownBlock2D'"):
        DiffAEUNet2DModel(
            block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
        )
    with pytest.raises(ValueError, match="same length"):
        DiffAEUNet2DModel(block_out_channels=(8,), norm_num_groups=4)


def test_wrong_z_shape_is_refused_with_its_shape():
    model = tiny_diffae()
    sample = tiny_images(2)
    for z in (torch.zeros(2, LATENT_DIM + 1), torch.zeros(LATENT_DIM), torch.zeros(3, LATENT_DIM)):
        message = f"z must have shape (batch_size, latent_dim) = (2, {LATENT_DIM}) for a batch of 2 samples, got"
        with pytest.raises(ValueError, match=re.escape(f"{message} {tuple(z.shape)}")):
            model(sample, 1, z)


def training_batch(batch_size: int = 4):
    clean = tiny_images(batch_size, seed=8)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(9))
    timesteps = torch.tensor([20, 150, 400, 800])[:batch_size]
    return clean, noise, timesteps


def test_one_step_trains_every_parameter_of_the_unet_and_the_encoder():
    model, encoder = tiny_diffae().train(), tiny_encoder().train()
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    named = [*model.named_parameters(prefix="unet"), *encoder.named_parameters(prefix="encoder")]
    # Softmax ignores a shift shared by all keys, so the key bias of an attention layer has zero gradient in exact
    # arithmetic (in UNet2DModel too); every other parameter must learn.
    key_biases = {name for name, _ in named if name.endswith("to_k.bias")}
    assert len(key_biases) == 4
    before = {name: p.detach().clone() for name, p in named}
    optimizer = torch.optim.SGD([p for _, p in named], lr=1e-2)
    loss = diffae_training_loss(model, encoder, scheduler, *training_batch())
    assert loss.shape == (4,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert not [name for name, p in named if name not in key_biases and not (p.grad.abs().sum() > 0)]
    assert all(p.grad.abs().max() < 1e-7 for name, p in named if name in key_biases)
    optimizer.step()
    assert not [name for name, p in named if name not in key_biases and torch.equal(before[name], p)]


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    model, encoder = tiny_diffae().train(), tiny_encoder().train()
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.Adam([*model.parameters(), *encoder.parameters()], lr=2e-3)
    batch = training_batch()
    losses = []
    for _ in range(30):
        loss = diffae_training_loss(model, encoder, scheduler, *batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses  # about 0.09 of the first loss


def test_the_loss_refuses_a_scheduler_that_does_not_predict_noise():
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
    with pytest.raises(ValueError, match="prediction_type is 'v_prediction'"):
        diffae_training_loss(tiny_diffae(), tiny_encoder(), scheduler, *training_batch())
