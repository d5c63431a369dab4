"""A loaded model's config as its folder stores it."""

from __future__ import annotations

from diffusers import ModelMixin
from diffusers.configuration_utils import FrozenDict


def as_stored(model: ModelMixin, stored: dict) -> ModelMixin:
    """`model` with its config as stored (`stored`, its `config.json`), in place: diffusers' `from_pretrained` adds
    the path it loaded from (`_name_or_path`), which would make a released pipeline's frozen UNet and autoencoder
    configs differ from the source's, and carry the user's local folder to the Hub (in the encoder's and G's
    configs too, when they were loaded by `--init_from_pipeline`)."""
    config = {key: value for key, value in model.config.items() if key != "_name_or_path"}
    if "_name_or_path" in stored:
        config["_name_or_path"] = stored["_name_or_path"]
    model._internal_dict = FrozenDict(config)
    return model
