"""Tiny seeded models shared by the tests (CPU, offline, milliseconds per forward), and the example scripts,
importable as modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel, VQModel

from diffusers_pdae import GradientEstimator, PDAEEncoder, PDAEPipeline

LATENT_DIM = 8
REPO = Path(__file__).resolve().parents[1]


def load_script(name: str, folder: str = "examples"):
    """`<folder>/<name>.py` (an example or a benchmark) as a module, without running its `main`."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_unet(
    seed: int = 0,
    in_channels: int = 1,
    sample_size: int = 16,
    attention: bool = True,
    num_class_embeds: int | None = None,
) -> UNet2DModel:
    """`attention=False` drops every attention layer (at 32 px they would dominate a test's run time);
    `num_class_embeds` makes it class-conditional."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D"),
        up_block_types=("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
        add_attention=attention,
        num_class_embeds=num_class_embeds,
    ).eval()


def tiny_encoder(seed: int = 1, in_channels: int = 1, sample_size: int = 16) -> PDAEEncoder:
    torch.manual_seed(seed)
    return PDAEEncoder(
        in_channels=in_channels,
        sample_size=sample_size,
        latent_dim=LATENT_DIM,
        block_out_channels=(8, 16),
        norm_num_groups=4,
    ).eval()


def perturb_output(gradient_estimator: GradientEstimator, seed: int = 2, scale: float = 0.05) -> GradientEstimator:
    """G starts at exactly zero; give its output conv small random weights so the shift matters in a test."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = gradient_estimator.conv_out.weight
        weight.copy_(scale * torch.randn(weight.shape, generator=generator))
    return gradient_estimator


def smooth(unet: UNet2DModel, scale: float = 0.01) -> UNet2DModel:
    """Shrink a random UNet's output so its noise prediction is a small, smooth function of x (well-posed ODE)."""
    with torch.no_grad():
        unet.conv_out.weight.mul_(scale)
        unet.conv_out.bias.mul_(scale)
    return unet


def tiny_pipeline(scheduler=None, shift: bool = True, unet: UNet2DModel | None = None) -> PDAEPipeline:
    unet = unet or tiny_unet()
    torch.manual_seed(3)
    gradient_estimator = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM).eval()
    if shift:
        perturb_output(gradient_estimator)
    scheduler = scheduler or DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    pipeline = PDAEPipeline(unet, scheduler, tiny_encoder(), gradient_estimator)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def tiny_images(batch_size: int = 2, seed: int = 4, channels: int = 1, size: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch_size, channels, size, size, generator=generator) * 2 - 1


@pytest.fixture
def pipeline() -> PDAEPipeline:
    return tiny_pipeline()


@pytest.fixture(scope="session")
def tiny_dpm(tmp_path_factory) -> str:
    """A tiny 16x16 one-channel DDPM pipeline folder, as a user's pre-trained DPM would be."""
    folder = tmp_path_factory.mktemp("tiny-dpm")
    DDPMPipeline(unet=tiny_unet(sample_size=16), scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(
        folder
    )
    return str(folder)


def tiny_vqvae(seed: int = 6, in_channels: int = 1, latent_channels: int = 3) -> VQModel:
    """A random VQModel with 4x downsampling (three down blocks): 32x32 pixels <-> 8x8 latents."""
    torch.manual_seed(seed)
    return VQModel(
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 8, 8),
        layers_per_block=1,
        latent_channels=latent_channels,
        num_vq_embeddings=16,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=0.5,
    ).eval()


def tiny_latent_pipeline(vae=None, shift: bool = True) -> PDAEPipeline:
    """A tiny latent PDAEPipeline: 32x32 one-channel pixels, an autoencoder to 3x8x8 latents, the UNet and G on those,
    the encoder on the pixels."""
    vae = vae or tiny_vqvae()
    unet = tiny_unet(in_channels=vae.config.latent_channels, sample_size=8)
    torch.manual_seed(3)
    gradient_estimator = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM).eval()
    if shift:
        perturb_output(gradient_estimator)
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    encoder = tiny_encoder(in_channels=vae.config.in_channels, sample_size=32)
    pipeline = PDAEPipeline(unet, scheduler, encoder, gradient_estimator, vae=vae)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


SD_CAPTIONS = [f"a handwritten digit {name}" for name in ("zero", "one", "two", "three", "seven")]


def tiny_sd_components(prediction_type: str = "epsilon", seed: int = 7) -> dict:
    """A tiny Stable Diffusion (`StableDiffusionPipeline`'s components): an AutoencoderKL with 4x downsampling (32x32
    one-channel pixels <-> 4x8x8 latents), a UNet2DConditionModel with cross-attention down, mid and up blocks and
    SD's legacy `attention_head_dim` (a head count), a small CLIP text encoder and tokenizer, SD's PNDM schedule."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel

    from diffusers_pdae.training.text_conditioning import caption_tokenizer, small_text_encoder

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=0.5,
    ).eval()
    tokenizer = caption_tokenizer(SD_CAPTIONS, model_max_length=8)
    text_encoder = small_text_encoder(tokenizer, hidden_size=16, num_layers=1, num_heads=2, seed=seed)
    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=8,
    ).eval()
    smooth(unet)
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, prediction_type=prediction_type,
    )  # fmt: skip
    return {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "unet": unet, "scheduler": scheduler}


def tiny_sd_pipeline_folder(folder: Path, prediction_type: str = "epsilon") -> str:
    """`tiny_sd_components` saved as a `StableDiffusionPipeline` folder, as a user's Stable Diffusion would be."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        **tiny_sd_components(prediction_type), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(folder)
    return str(folder)


def tiny_sd_pdae_pipeline(prediction_type: str = "epsilon", shift: bool = True) -> PDAEPipeline:
    """PDAE on `tiny_sd_components`: the empty prompt's embedding, G built for the conditional UNet (random: its
    output perturbed), the encoder on the 32-px pixels."""
    from diffusers_pdae.models import PromptEmbedding

    sd = tiny_sd_components(prediction_type)
    prompt_embedding = PromptEmbedding.from_prompt(sd["text_encoder"], sd["tokenizer"], "")
    torch.manual_seed(3)
    gradient_estimator = GradientEstimator.from_denoiser(sd["unet"], latent_dim=LATENT_DIM).eval()
    if shift:
        perturb_output(gradient_estimator)
    scheduler = DDIMScheduler.from_config(sd["scheduler"].config, clip_sample=False)
    encoder = tiny_encoder(in_channels=1, sample_size=32)
    pipeline = PDAEPipeline(
        sd["unet"], scheduler, encoder, gradient_estimator, vae=sd["vae"], prompt_embedding=prompt_embedding
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def tiny_dit(seed: int = 9, learned_sigma: bool = True):
    """A tiny class-conditional DiTTransformer2DModel on 4x8x8 latents (10 classes and the null class; patch 2; with
    a learned sigma its output has twice the latent channels, as DiT-XL/2's)."""
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(seed)
    dit = DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8 if learned_sigma else 4,
        num_layers=3, sample_size=8, patch_size=2, num_embeds_ada_norm=10,
    )  # fmt: skip
    with torch.no_grad():  # adaLN-Zero starts every block and the output at zero: give the model something to say
        for parameter in dit.parameters():
            if parameter.ndim > 1 and not parameter.any():
                parameter.normal_(0, 0.02)
    return dit.eval()


def tiny_dit_pdae_pipeline(shift: bool = True, learned_sigma: bool = True) -> PDAEPipeline:
    """PDAE on `tiny_dit` with the tiny Stable Diffusion's KL autoencoder: the encoder on the 32-px pixels, the
    transformer G on the 4x8x8 latents."""
    from diffusers_pdae.models import TransformerGradientEstimator

    transformer = tiny_dit(learned_sigma=learned_sigma)
    torch.manual_seed(3)
    estimator = TransformerGradientEstimator.from_denoiser(transformer, latent_dim=LATENT_DIM, num_layers=2,
                                                           num_attention_heads=2).eval()  # fmt: skip
    if shift:
        generator = torch.Generator().manual_seed(2)
        with torch.no_grad():
            estimator.proj_out.weight.copy_(0.05 * torch.randn(estimator.proj_out.weight.shape, generator=generator))
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    pipeline = PDAEPipeline(
        None, scheduler, tiny_encoder(in_channels=1, sample_size=32), estimator, vae=tiny_sd_components()["vae"],
        transformer=transformer,
    )  # fmt: skip
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
