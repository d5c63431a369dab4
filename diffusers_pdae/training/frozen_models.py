"""The frozen models a run trains against (PDAE's UNet, a latent DPM's autoencoder), recorded in every checkpoint
(`frozen_models.json`: each one's weights digest and, for an autoencoder, its scaling factor) and checked when a run
resumes: the flags name the same folder, but what the folder holds may have changed since."""

from __future__ import annotations

import json
import math
import os

import torch

from ..latent_space import is_autoencoder
from ..pipelines import weights_digest

FROZEN_MODELS_FILE = "frozen_models.json"


def frozen_identity(model: torch.nn.Module) -> dict:
    """What identifies a frozen model: its class, its weights digest (sha256 over keys, dtypes, shapes and bytes, as
    a saved PDAE pipeline records its UNet's) and an autoencoder's scaling factor."""
    identity = {"class": type(model).__name__, "weights_digest": weights_digest(model.state_dict())}
    if is_autoencoder(model):
        identity["scaling_factor"] = float(model.config.scaling_factor)
    return identity


def write_frozen_models(folder: str, identities: dict[str, dict]) -> None:
    """Record the run's frozen models in a checkpoint folder."""
    if identities:
        with open(os.path.join(folder, FROZEN_MODELS_FILE), "w") as f:
            json.dump(identities, f, indent=2, sort_keys=True)


def check_frozen_model(checkpoint: str, name: str, identity: dict) -> None:
    """The frozen model `name` of a resumed run is the one `checkpoint`'s run trained against (checkpoints written
    before the record pass).

    Raises:
        `ValueError`: naming the model and what changed (its scaling factor, its weights) and what to do.
    """
    path = os.path.join(checkpoint, FROZEN_MODELS_FILE)
    if not os.path.isfile(path):
        return
    with open(path) as f:
        recorded = json.load(f).get(name)
    if recorded is None:
        return
    then, now = recorded.get("scaling_factor"), identity.get("scaling_factor")
    if then is not None and now is not None and not math.isclose(then, now, rel_tol=1e-6):
        raise ValueError(
            f"Resuming {checkpoint}: the frozen {name}'s scaling_factor is now {now:g}, but the run trained on "
            f"latents scaled by {then:g} ({path}): its config.json was edited since. Restore it, or pass "
            f"--vae_scaling_factor {then:g}; a run on other latents is a new run (another --output_dir)."
        )
    if recorded.get("weights_digest") != identity["weights_digest"]:
        raise ValueError(
            f"Resuming {checkpoint}: the frozen {name} ({identity['class']}) is not the one the run trained against "
            f"(weights digest {identity['weights_digest'][:12]}..., {path} records "
            f"{str(recorded.get('weights_digest'))[:12]}...): its folder was replaced since. Restore it, or start a "
            "new run in another --output_dir."
        )
