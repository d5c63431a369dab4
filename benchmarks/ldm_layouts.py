"""The layout of `CompVis/ldm-celebahq-256` (an `LDMPipeline`: a `UNet2DModel` denoising 64x64x3 VQ latents of
256-pixel faces) at full size and as a scaled-down copy, both with random seeded weights, and either saved as an
`LDMPipeline` folder that `diffusers.LDMPipeline.from_pretrained` loads.

    python benchmarks/ldm_layouts.py               # parameter counts and latent shapes of both layouts
    python benchmarks/ldm_layouts.py --save DIR    # also save the scaled-down copy as an LDMPipeline folder

A module beside the benchmark scripts, imported by plain name (`from ldm_layouts import ...`) or with
`tests/conftest.py::load_script("ldm_layouts", folder="benchmarks")`.

The full-size configs are the checkpoint's published ones, kept verbatim in `docs/configs/ldm-celebahq-256/` (where
they come from: `docs/ldm_celebahq_reference.md`). Two published details are resolved explicitly here:
- the scheduler config still uses the pre-release key `timesteps` (and an unused `timestep_values`), which today's
  `DDIMScheduler` ignores with a warning; it is read as `num_train_timesteps` (the same value, 1000, as diffusers'
  default) and `timestep_values` is dropped, so the scheduler is identical and loads without the warning;
- the VQ config has no `scaling_factor`, so diffusers' default 0.18215 applies and `LDMPipeline` divides the latents
  by it before decoding, whereas the original LDM used 1.0 for its VQ first stages. `scaling_factor=None` keeps the
  published config (what `LDMPipeline.from_pretrained("CompVis/ldm-celebahq-256")` builds today); pass 1.0 to match
  the original model (as the Hub's open pull request `refs/pr/5` does).

The scaled-down copy keeps every block type, the latent channels (3), the VQ downsampling (4x: three encoder
levels), the attention placement (none at the UNet's 64x64 level, attention at 32, 16, 8 and in the mid blocks; the
VQ mid-block attention), layers per block, the codebook size and the scheduler config; only channel widths change
(UNet widths / 28, VQ widths / 32), with `norm_num_groups` and `attention_head_dim` set to divide them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import torch
from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel, VQModel

from diffusers_pdae.models import PDAEEncoder
from diffusers_pdae.training.encoder_choice import LIGHT_DEFAULTS, build_encoder

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "docs" / "configs" / "ldm-celebahq-256"
CONFIG_FILES = {
    "unet": "unet.json",
    "vqvae": "vqvae.json",
    "scheduler": "scheduler.json",
    "model_index": "model_index.json",
}
HUB_ID = "CompVis/ldm-celebahq-256"
IMAGE_SIZE = 256  # pixels; the UNet's sample_size (64) times the VQ downsampling factor (4)

# What the scaled-down copy changes: channel widths only (full: UNet 224, 448, 672, 896 with 32 groups and 32-channel
# heads; VQ 128, 256, 512 with 32 groups). The UNet keeps 2, 3 and 4 heads at its attention levels (full: 14, 21, 28).
# The VQ widths are what makes a 256-pixel step cheap: its first level runs at full pixel resolution.
SCALED_UNET_OVERRIDES = {"block_out_channels": [8, 16, 24, 32], "attention_head_dim": 8, "norm_num_groups": 4}
SCALED_VQVAE_OVERRIDES = {"block_out_channels": [4, 8, 16], "norm_num_groups": 4}


class LDMComponents(NamedTuple):
    """The three components of an `LDMPipeline`, under the names `LDMPipeline` gives them."""

    vqvae: VQModel
    unet: UNet2DModel
    scheduler: DDIMScheduler


def published_config(component: str) -> dict:
    """The published config of `component` ("unet", "vqvae", "scheduler" or "model_index"), as stored in
    `docs/configs/ldm-celebahq-256/`."""
    if component not in CONFIG_FILES:
        raise ValueError(f"Unknown component {component!r}; choose one of {tuple(CONFIG_FILES)}.")
    return json.loads((CONFIG_DIR / CONFIG_FILES[component]).read_text())


def scheduler_config() -> dict:
    """The published scheduler config with its pre-release keys resolved: `timesteps` read as `num_train_timesteps`
    and `timestep_values` (never used by `DDIMScheduler`) dropped."""
    config = published_config("scheduler")
    config.pop("timestep_values", None)
    if "timesteps" in config:
        config["num_train_timesteps"] = config.pop("timesteps")
    return config


def _vqvae_config(overrides: dict, scaling_factor: float | None) -> dict:
    config = {**published_config("vqvae"), **overrides}
    if scaling_factor is not None:
        config["scaling_factor"] = scaling_factor
    return config


def _build(unet_config: dict, vqvae_config: dict, seed: int) -> LDMComponents:
    """Random weights, seeded: the VQ model from `seed`, the UNet from `seed + 1`; both in eval mode."""
    torch.manual_seed(seed)
    vqvae = VQModel.from_config(vqvae_config).eval()
    torch.manual_seed(seed + 1)
    unet = UNet2DModel.from_config(unet_config).eval()
    return LDMComponents(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler.from_config(scheduler_config()))


def full_size_ldm(seed: int = 0, scaling_factor: float | None = None) -> LDMComponents:
    """The published layout at full size with random weights (UNet about 274.1M and VQ model 55.3M parameters).

    Args:
        seed (`int`, defaults to 0): seeds the weights.
        scaling_factor (`float`, *optional*): the VQ model's `scaling_factor`; `None` keeps the published config
            (diffusers' default 0.18215), 1.0 matches the original LDM.
    """
    return _build(published_config("unet"), _vqvae_config({}, scaling_factor), seed)


def scaled_down_ldm(seed: int = 0, scaling_factor: float | None = None) -> LDMComponents:
    """The published layout with far fewer channels (UNet 0.36M, VQ model 0.08M parameters): the same
    block types, latent channels, downsampling, attention placement, codebook size and scheduler config.

    Args:
        seed (`int`, defaults to 0): seeds the weights.
        scaling_factor (`float`, *optional*): as in [`full_size_ldm`].
    """
    unet_config = {**published_config("unet"), **SCALED_UNET_OVERRIDES}
    return _build(unet_config, _vqvae_config(SCALED_VQVAE_OVERRIDES, scaling_factor), seed)


def save_ldm_pipeline(components: LDMComponents, folder: str | Path) -> Path:
    """Save `components` as an `LDMPipeline` folder (`model_index.json`, `vqvae/`, `unet/`, `scheduler/`) that
    `diffusers.LDMPipeline.from_pretrained(folder)` loads; returns the folder."""
    pipe = LDMPipeline(vqvae=components.vqvae, unet=components.unet, scheduler=components.scheduler)
    pipe.save_pretrained(folder)
    return Path(folder)


def parameter_count(module: torch.nn.Module) -> int:
    """How many parameters `module` has."""
    return sum(parameter.numel() for parameter in module.parameters())


def downsampling_factor(vqvae: VQModel) -> int:
    """Pixels per latent along each side: 2 ** (number of encoder levels - 1)."""
    return 2 ** (len(vqvae.config.block_out_channels) - 1)


def attention_layout(unet: UNet2DModel, vqvae: VQModel) -> dict:
    """Where attention sits, per level: the UNet's down blocks (with the latent resolution each works at), its mid
    block and up blocks, and the VQ model's encoder and decoder mid blocks."""
    size = unet.config.sample_size
    down = []
    for block in unet.down_blocks:
        down.append({"resolution": size, "attention": hasattr(block, "attentions")})
        size = size // 2 if getattr(block, "downsamplers", None) is not None else size
    return {
        "unet_down": down,
        "unet_mid": unet.mid_block.attentions[0] is not None,
        "unet_up": [hasattr(block, "attentions") for block in unet.up_blocks],
        "vqvae_encoder_mid": vqvae.encoder.mid_block.attentions[0] is not None,
        "vqvae_decoder_mid": vqvae.decoder.mid_block.attentions[0] is not None,
    }


def layout_of(components: LDMComponents | LDMPipeline) -> dict:
    """Everything the scaled-down copy keeps from the full-size layout: block types, layers per block, latent
    channels and size, downsampling factor, attention placement, codebook size, scaling factor and scheduler config
    (without diffusers' private keys). Takes built components or a loaded `LDMPipeline` alike."""
    unet, vqvae = components.unet, components.vqvae
    return {
        "unet_down_block_types": list(unet.config.down_block_types),
        "unet_up_block_types": list(unet.config.up_block_types),
        "unet_layers_per_block": unet.config.layers_per_block,
        "unet_sample_size": unet.config.sample_size,
        "unet_channels": (unet.config.in_channels, unet.config.out_channels),
        "vqvae_down_block_types": list(vqvae.config.down_block_types),
        "vqvae_up_block_types": list(vqvae.config.up_block_types),
        "vqvae_layers_per_block": vqvae.config.layers_per_block,
        "latent_channels": vqvae.config.latent_channels,
        "num_vq_embeddings": vqvae.config.num_vq_embeddings,
        "downsampling_factor": downsampling_factor(vqvae),
        "scaling_factor": vqvae.config.scaling_factor,
        "attention": attention_layout(unet, vqvae),
        "scheduler": {key: value for key, value in components.scheduler.config.items() if not key.startswith("_")},
    }


@torch.no_grad()
def latent_round_trip_shapes(components: LDMComponents, batch_size: int = 1) -> tuple[tuple, tuple]:
    """Shapes of a random `IMAGE_SIZE`-pixel RGB batch encoded to latents and decoded back (unquantized encode,
    quantizing decode, as `LDMPipeline` does)."""
    images = torch.rand(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    latents = components.vqvae.encode(images).latents
    return tuple(latents.shape), tuple(components.vqvae.decode(latents).sample.shape)


def main(argv: list[str] | None = None) -> dict:
    """Print (and return) the parameter counts and latent shapes of both layouts; optionally save the scaled copy."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save", default=None, help="Save the scaled-down copy as an LDMPipeline folder here.")
    parser.add_argument("--skip_full_size", action="store_true", help="Only build the scaled-down copy.")
    args = parser.parse_args(argv)
    builders = {"scaled-down": scaled_down_ldm} if args.skip_full_size else {"full": full_size_ldm}
    builders.setdefault("scaled-down", scaled_down_ldm)
    results = {}
    for name, build in builders.items():
        components = build()
        latents, decoded = latent_round_trip_shapes(components)
        results[name] = {
            "unet_parameters": parameter_count(components.unet),
            "vqvae_parameters": parameter_count(components.vqvae),
            "latents": latents,
            "decoded": decoded,
        }
        print(f"{name}: {results[name]}")
        if name == "scaled-down" and args.save:
            print(f"saved to {save_ldm_pipeline(components, args.save)}")
    return results


if __name__ == "__main__":
    main()


def light_pixel_encoder(
    unet: UNet2DModel, latent_dim: int, in_channels: int = 3, sample_size: int = IMAGE_SIZE
) -> PDAEEncoder:
    """The encoder `train_pdae.py` builds by default (`--encoder_type light`, `LIGHT_DEFAULTS`) for `unet`'s DPM,
    reading images of `in_channels` x `sample_size`^2: a latent DPM's pixel images (not its latents), or a pixel DPM's
    own samples."""
    args = argparse.Namespace(encoder_type="light", latent_dim=latent_dim, **LIGHT_DEFAULTS)
    return build_encoder(args, unet, image_geometry=(in_channels, sample_size))
