"""What the training scripts need of a latent diffusion model's autoencoder (`VQModel` or `AutoencoderKL`):
`examples/train_autoencoder.py` trains one ([`AutoencoderObjective`], [`latent_scaling_factor`]) and
`examples/train_dpm.py` trains a UNet on its latents ([`load_autoencoder`], [`latent_unet_geometry`]).

Pixels become latents and back only through [`~diffusers_pdae.latent_space`], as diffusers' `LDMPipeline` and
`DiTPipeline` do it.
"""

from __future__ import annotations

import json
import os

import torch
from diffusers import AutoencoderKL, VQModel
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from ..latent_space import (
    AUTOENCODER_COMPONENT_NAMES,
    check_scaling_factor,
    downsampling_factor,
    encode_images,
    listed_autoencoder,
)
from ..pipelines import check_weights_fit_config
from .stored_config import as_stored

AUTOENCODER_CLASSES = {"VQModel": VQModel, "AutoencoderKL": AutoencoderKL}
# The component name diffusers' pipelines give each autoencoder: LDMPipeline's `vqvae`, DiTPipeline's `vae`.
COMPONENT_NAME = {VQModel: "vqvae", AutoencoderKL: "vae"}
RECONSTRUCTION_LOSSES = ("l1", "mse")


def autoencoder_folder(name_or_path: str, flag: str) -> tuple[str | None, dict]:
    """Where the autoencoder of `name_or_path` is (`None`: the folder or Hub id itself, else an LDM folder's `vqvae`
    or `vae` subfolder) and its stored config.

    Raises:
        `FileNotFoundError`: naming the subfolder, when an LDM folder's `model_index.json` lists an autoencoder whose
            subfolder is missing or incomplete.
        `ValueError`: naming `flag`, when none of those holds a `VQModel` or `AutoencoderKL`.
    """
    listed = _listed_autoencoder(name_or_path)
    if listed is not None and not os.path.isfile(os.path.join(name_or_path, listed, "config.json")):
        raise FileNotFoundError(
            f"{flag} {name_or_path}: its model_index.json lists the autoencoder {listed!r}, but "
            f"{os.path.join(name_or_path, listed)} has no config.json (the folder is incomplete). Restore {listed}/ "
            "from the original save."
        )
    found = []
    for subfolder in (None, *AUTOENCODER_COMPONENT_NAMES):
        try:
            config = VQModel.load_config(name_or_path, subfolder=subfolder)
        except (OSError, ValueError):
            continue
        if config.get("_class_name") in AUTOENCODER_CLASSES:
            return subfolder, config
        found.append(f"{subfolder or 'its root'} holds a {config.get('_class_name')}")
    what = f" ({'; '.join(found)})" if found else ""
    raise ValueError(
        f"Cannot load an autoencoder from {flag} {name_or_path!r}{what}: pass a VQModel or AutoencoderKL folder or "
        "Hub id (config.json + weights, as examples/train_autoencoder.py saves one), or an LDM pipeline folder whose "
        "vqvae/ or vae/ holds one. A Hub id needs the network (or a cached copy)."
    )


def _listed_autoencoder(name_or_path: str) -> str | None:
    """The autoencoder component a local pipeline folder's `model_index.json` lists, if any."""
    index_path = os.path.join(name_or_path, "model_index.json")
    if not os.path.isfile(index_path):
        return None
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (ValueError, UnicodeDecodeError):
        return None  # a damaged index: the loaders name it
    return listed_autoencoder(index) if isinstance(index, dict) else None


def checked_scaling_factor(config: dict, where: str, given: float | None, scaling_flag: str) -> float:
    """The scaling factor of an autoencoder's stored `config` (`where` names it), or `given` (the `scaling_flag`
    flag) in its place.

    Raises:
        `ValueError`: naming `where` and `scaling_flag`, when the config has none and none is given (diffusers would
            assume 0.18215, which the UNet may never have seen), or when it is not a usable number.
    """
    if given is not None:
        return check_scaling_factor(given, scaling_flag, f"Pass {scaling_flag} with a usable factor.")
    if "scaling_factor" not in config:
        raise ValueError(
            f"{where} has no scaling_factor, so diffusers would scale the latents by its default 0.18215, which the "
            "UNet may never have seen (CompVis' VQ LDMs, e.g. CompVis/ldm-celebahq-256, were trained with 1.0; "
            f"diffusers issue 6725). Pass {scaling_flag} with the factor the UNet was trained with (1.0 for CompVis' "
            "VQ LDMs; for a new LDM, 1 / std of the autoencoder's latents, as examples/train_autoencoder.py sets it)."
        )
    return check_scaling_factor(
        config["scaling_factor"], where, f"Correct it there, or pass {scaling_flag} with the factor to use."
    )


def load_autoencoder(
    name_or_path: str,
    flag: str = "--pretrained_vae_model_name_or_path",
    scaling_factor: float | None = None,
    scaling_flag: str = "--vae_scaling_factor",
) -> VQModel | AutoencoderKL:
    """A `VQModel` or `AutoencoderKL` from its own folder (or Hub id), or from an LDM pipeline folder's `vqvae/` or
    `vae/` subfolder, whichever holds one, with a checked scaling factor: its config's, or `scaling_factor` (the
    `scaling_flag` flag) in its place.

    Raises:
        `ValueError` / `FileNotFoundError`: naming `flag` or the subfolder, when none holds an autoencoder, a listed
            one is missing, its config does not fit its weights, or its scaling factor is missing or unusable.
    """
    subfolder, config = autoencoder_folder(name_or_path, flag)
    where = f"{subfolder + '/' if subfolder else ''}config.json of {flag} {name_or_path}"
    factor = checked_scaling_factor(config, where, scaling_factor, scaling_flag)
    model_class = AUTOENCODER_CLASSES[config["_class_name"]]
    folder = os.path.join(name_or_path, subfolder or "")
    if os.path.isdir(folder):  # a config edited away from its weights is named before diffusers reads them
        check_weights_fit_config(folder, model_class)
    try:
        vae = model_class.from_pretrained(name_or_path, subfolder=subfolder)
    except (OSError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"Cannot load the autoencoder of {flag} {name_or_path} ({subfolder or 'its root'}): "
            f"{str(error).splitlines()[0]} Restore the folder from the original save."
        ) from error
    as_stored(vae, config)  # a release made from it keeps the source's config
    if scaling_factor is not None:
        vae.register_to_config(scaling_factor=factor)
    return vae


class AutoencoderObjective:
    """The per-sample training loss of a `VQModel` or `AutoencoderKL`, without adversarial or perceptual terms:

        loss = mean |x - D(E(x))|  (or its square)  +  codebook_weight * VQ codebook/commitment loss   (VQModel)
        loss = mean |x - D(z)|     (or its square)  +  kl_weight * KL(q(z|x) || N(0, I)) / pixels      (AutoencoderKL)

    as the LDM autoencoders weigh them (taming's `VQLPIPSWithDiscriminator`: mean reconstruction plus codebook
    weight 1; ldm's `LPIPSWithDiscriminator`: summed reconstruction plus 1e-6 times the summed KL, here both divided
    by the number of pixels). The KL model decodes a posterior sample drawn from `generator`.

    The model is called through its `forward` (a `VQModel` returns its `commit_loss`), so that a DDP-wrapped model
    synchronises its gradients and Accelerate's autocast applies: calling `encode` / `decode` on the wrapped module
    would bypass both. `AutoencoderKL.forward` does not return its posterior, so a forward hook keeps the moments
    (the output of `quant_conv`, or of the encoder without one).
    """

    def __init__(
        self,
        vae: VQModel | AutoencoderKL,
        reconstruction_loss: str = "l1",
        kl_weight: float = 1e-6,
        codebook_weight: float = 1.0,
    ):
        """`vae` is the model itself (unwrapped), to hook; its prepared wrapper is what [`__call__`] takes."""
        if reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"reconstruction_loss must be one of {RECONSTRUCTION_LOSSES}: {reconstruction_loss!r}")
        self.is_vq = isinstance(vae, VQModel)
        self.reconstruction_loss = reconstruction_loss
        self.kl_weight, self.codebook_weight = kl_weight, codebook_weight
        self._moments: torch.Tensor | None = None
        if not self.is_vq:
            moments_layer = vae.quant_conv if vae.quant_conv is not None else vae.encoder
            moments_layer.register_forward_hook(self._keep_moments)

    def _keep_moments(self, module, inputs, output: torch.Tensor) -> None:
        self._moments = output

    def __call__(
        self, model: torch.nn.Module, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Per-sample loss `(B,)` of the (prepared) autoencoder `model` on `images` `(B, C, H, W)` in [-1, 1]."""
        if self.is_vq:
            output = model(images)
            regulariser = self.codebook_weight * output.commit_loss.float()  # one value for the batch
        else:
            output = model(images, sample_posterior=True, generator=generator)
            kl = DiagonalGaussianDistribution(self._moments.float()).kl()
            regulariser = self.kl_weight * kl / images[0].numel()
        error = output.sample.float() - images.float()
        error = error.abs() if self.reconstruction_loss == "l1" else error.pow(2)
        return error.mean(dim=(1, 2, 3)) + regulariser


@torch.no_grad()
def latent_scaling_factor(
    vae: VQModel | AutoencoderKL,
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
) -> tuple[float, float]:
    """The LDM paper's scaling factor (Rombach et al. 2022, sec. 4.3.2 and D.1): 1 / std of the unscaled latents of a
    batch of training images, over all their elements, so the diffusion model sees latents of unit variance.

    Args:
        images (`torch.Tensor` of shape `(N, C, H, W)`): training images in [-1, 1], in `vae`'s dtype and device.
        generator: for an `AutoencoderKL`'s posterior sample (the latents a DPM is trained on).
        batch_size: images per encoder call.

    Returns:
        `(scaling_factor, latent_std)`.
    """
    latents = torch.cat(
        [encode_images(vae, chunk, sample=True, generator=generator).float() for chunk in images.split(batch_size)]
    )
    std = (latents / vae.config.scaling_factor).std().item()
    factor = check_scaling_factor(
        1.0 / std if std > 0 else float("inf"), f"the trained autoencoder (1 / the std {std:g} of its latents)",
        "The autoencoder has collapsed (or diverged): train it longer, with another --learning_rate, or from a "
        "checkpoint before it did.",
    )  # fmt: skip
    return factor, std


def latent_unet_geometry(
    vae: VQModel | AutoencoderKL, resolution: int, unet_channels: tuple[int, int] | None = None
) -> int:
    """Check that a UNet can denoise `vae`'s latents of `resolution`-pixel images; return the latent size.

    Args:
        resolution: the pixel size of the training images (`--resolution`).
        unet_channels: `(in_channels, out_channels)` of a given UNet config (`--model_config_name_or_path`), or None
            for the default layout (built with the latent channels).

    Raises:
        `ValueError`: naming the flag and the value that works, when `resolution` is not a multiple of the
            autoencoder's downsampling factor or the UNet's channels are not its latent channels.
    """
    factor = downsampling_factor(vae)
    if resolution % factor:
        lower, upper = resolution // factor * factor, (resolution // factor + 1) * factor
        suggestion = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(
            f"--resolution {resolution} is not a multiple of the autoencoder's downsampling factor {factor} "
            f"(--pretrained_vae_model_name_or_path): pass --resolution {suggestion}."
        )
    latent_channels = vae.config.latent_channels
    if unet_channels is not None and tuple(unet_channels) != (latent_channels, latent_channels):
        raise ValueError(
            f"The UNet of --model_config_name_or_path has in_channels={unet_channels[0]} and "
            f"out_channels={unet_channels[1]}, but the autoencoder (--pretrained_vae_model_name_or_path) makes "
            f"latents of {latent_channels} channels: set in_channels and out_channels to {latent_channels}."
        )
    return resolution // factor


def encode_batch(
    vae: VQModel | AutoencoderKL, images: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training latents `(B, latent_channels, H / f, W / f)` (float32) of `images` `(B, C, H, W)` in [-1, 1] through
    the frozen `vae`, in its dtype and without gradients; an `AutoencoderKL` draws a posterior sample from
    `generator`, as diffusers' latent training scripts do."""
    with torch.no_grad():
        return encode_images(vae, images.to(vae.dtype), sample=True, generator=generator).float()
