"""The seam: the frozen model's adapter serves what it says, refuses the rest by name, and PDAE's one noise
prediction is the shifted prediction written out by hand."""

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from diffusers_pdae import GradientEstimator
from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.models import FrozenDenoiser, frozen_denoiser, load_denoiser_model, pdae_noise_prediction
from diffusers_pdae.models.frozen_denoiser import DENOISER_CLASS_NAMES, stored_denoiser_class
from diffusers_pdae.pdae_math import noise_from_model_output, shift_coefficients
from tests.conftest import LATENT_DIM, perturb_output, tiny_images, tiny_unet


def test_the_adapter_wraps_the_model_and_gives_its_geometry():
    unet = tiny_unet()
    denoiser = frozen_denoiser(unet)
    assert isinstance(denoiser, FrozenDenoiser) and denoiser.model is unet
    assert denoiser.component_name == "unet"
    assert denoiser.sample_shape == (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    assert denoiser.dtype == torch.float32 and frozen_denoiser(denoiser) is denoiser
    assert "UNet2DModel" in DENOISER_CLASS_NAMES


def test_the_prediction_and_the_features_come_from_one_ordinary_call():
    unet = tiny_unet()
    x, t = tiny_images(2), torch.tensor([3, 700])
    frozen = frozen_denoiser(unet).forward_with_features(x, t)
    assert torch.equal(frozen.model_output, unet(x, t).sample)
    assert torch.equal(frozen_denoiser(unet)(x, t), unet(x, t).sample)
    assert frozen.features.temb.shape[0] == 2 and not any(m._forward_hooks for m in unet.modules())


def test_a_subclass_of_a_served_class_is_served():
    class MyUNet(UNet2DModel):
        pass

    unet = tiny_unet()
    mine = MyUNet.from_config(unet.config)
    assert type(frozen_denoiser(mine)) is type(frozen_denoiser(unet))


def test_an_unserved_model_class_is_refused_naming_the_served_ones():
    with pytest.raises(ValueError, match=r"cannot serve a frozen Linear; it serves UNet2DModel"):
        frozen_denoiser(torch.nn.Linear(2, 2))


def test_an_unserved_config_is_refused_by_its_adapter():
    with pytest.raises(ValueError, match="class embedding"):
        frozen_denoiser(UNet2DModel.from_config({**tiny_unet().config, "num_class_embeds": 10}))


def test_a_pipeline_folder_names_its_frozen_model_and_class():
    assert stored_denoiser_class(checkpoint_path("ddpm-mnist")) == ("unet", "UNet2DModel")
    model, stored = load_denoiser_model(checkpoint_path("ldm-mnist"))
    assert isinstance(model, UNet2DModel) and stored["_class_name"] == "UNet2DModel"


def test_the_pdae_noise_prediction_is_eps_minus_c_t_times_g():
    unet = tiny_unet()
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    torch.manual_seed(0)
    estimator = perturb_output(GradientEstimator.from_denoiser(unet, latent_dim=LATENT_DIM))
    x, t, z = tiny_images(2), torch.tensor([10, 900]), torch.randn(2, LATENT_DIM)
    with torch.no_grad():
        shifted = pdae_noise_prediction(frozen_denoiser(unet), estimator, x, t, z, scheduler.betas)
        plain = pdae_noise_prediction(frozen_denoiser(unet), estimator, x, t, None, scheduler.betas)
        frozen = frozen_denoiser(unet).forward_with_features(x, t)
        gradient = estimator(frozen.features, z).sample
    eps = noise_from_model_output(unet(x, t).sample, x, t, scheduler.betas, "epsilon")
    c_t = shift_coefficients(scheduler.betas)[t].float().reshape(-1, 1, 1, 1)
    assert torch.equal(plain, eps)
    assert gradient.abs().max() > 0
    torch.testing.assert_close(shifted, eps - c_t * gradient, rtol=0, atol=1e-6)
