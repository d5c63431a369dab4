"""Checks of a latent pipeline's autoencoder in a saved folder, before `from_pretrained` reads it: its config holds a
usable `scaling_factor` (diffusers would silently assume 0.18215 for a missing one), and it is the autoencoder, with
the scaling factor, that the encoder and gradient estimator were trained with (recorded in G's config at every save,
as the UNet's weights digest is)."""

from __future__ import annotations

import math
import os

from ..latent_space import AUTOENCODER_COMPONENT_NAMES, check_scaling_factor, listed_autoencoder
from .folder_checks import check_recorded_digest, read_json

# What diffusers' ConfigMixin uses for an autoencoder config without `scaling_factor`.
DIFFUSERS_DEFAULT_SCALING_FACTOR = 0.18215


def check_autoencoder_config(subfolder: str) -> float:
    """The `scaling_factor` of an autoencoder folder's `config.json`, refused by name when it is missing (diffusers
    would use its default 0.18215, which the UNet may never have seen) or unusable (null, a string, zero, negative,
    NaN, huge)."""
    path = os.path.join(subfolder, "config.json")
    config = read_json(path)
    if "scaling_factor" not in config:
        raise ValueError(
            f"{path} has no scaling_factor, so diffusers would scale the latents by its default "
            f"{DIFFUSERS_DEFAULT_SCALING_FACTOR}, which the UNet may never have seen (CompVis' VQ LDMs were trained "
            "with 1.0). Add the factor the UNet was trained with to config.json, or restore the file from the "
            "original save."
        )
    return check_scaling_factor(
        config["scaling_factor"], path, "Restore config.json from the original save, or set scaling_factor to the "
        "factor the UNet was trained with.",
    )  # fmt: skip


def check_autoencoder_identity(folder: str, index: dict, variant: str | None = None) -> None:
    """A PDAE folder's autoencoder is the one its encoder and gradient estimator were trained with: present when they
    were trained on latents, with the weights digest and scaling factor G's config records (folders saved before the
    record pass when they hold the autoencoder `model_index.json` lists).

    Raises:
        `ValueError` / `FileNotFoundError`: naming `model_index.json`, the component or the config entry, and what to
            restore.
    """
    recorded = read_json(os.path.join(folder, "gradient_estimator", "config.json"))
    digest, factor = recorded.get("autoencoder_weights_digest"), recorded.get("autoencoder_scaling_factor")
    name = listed_autoencoder(index)
    if name is None:
        orphan = next(
            (n for n in AUTOENCODER_COMPONENT_NAMES if os.path.isfile(os.path.join(folder, n, "config.json"))), None
        )
        if digest is not None or orphan is not None:
            held = f"; the folder still holds {orphan}/" if orphan else ""
            raise FileNotFoundError(
                f"{folder}/model_index.json lists no autoencoder (vae), but this pipeline's encoder and gradient "
                f"estimator were trained on a latent DPM's latents{held}. Restore the entry "
                '"vae": ["diffusers", "VQModel"] (or "AutoencoderKL") in model_index.json, and the vae/ folder.'
            )
        return
    stored_factor = check_autoencoder_config(os.path.join(folder, name))
    if factor is not None and not math.isclose(stored_factor, factor, rel_tol=1e-6):
        raise ValueError(
            f"{folder}/{name}/config.json says scaling_factor {stored_factor:g}, but the encoder and gradient "
            f"estimator were trained with {factor:g} (gradient_estimator/config.json, autoencoder_scaling_factor). "
            "Restore the scaling_factor the pipeline was saved with."
        )
    if digest is not None:
        check_recorded_digest(folder, name, digest, "autoencoder", "autoencoder's LDM", variant)
