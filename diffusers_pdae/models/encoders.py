"""Every encoder design, by class name: how a saved `encoder/` folder is loaded whichever design it holds."""

from __future__ import annotations

import os

from diffusers import ModelMixin

from .encoder import PDAEEncoder
from .residual_encoder import PDAEResidualEncoder
from .transformers_encoder import PDAETransformersEncoder

# Any of the designs: what a pipeline's `encoder` component may be.
EncoderModel = PDAEEncoder | PDAEResidualEncoder | PDAETransformersEncoder
ENCODER_CLASSES = {cls.__name__: cls for cls in (PDAEEncoder, PDAEResidualEncoder, PDAETransformersEncoder)}


def load_encoder(
    pretrained_model_name_or_path: str | os.PathLike, subfolder: str | None = None, **kwargs
) -> ModelMixin:
    """Load a saved encoder of any design: its `config.json` names the class.

    Args:
        pretrained_model_name_or_path (`str` or `os.PathLike`): a folder or Hub id (a pipeline's, with
            `subfolder="encoder"`, or the encoder's own).
        subfolder (`str`, *optional*): the encoder's subfolder.
        kwargs (`dict[str, Any]`, *optional*): passed on to `from_pretrained`.

    Raises:
        `ValueError`: if the config names a class that is not a PDAE encoder.
    """
    config = PDAEEncoder.load_config(pretrained_model_name_or_path, subfolder=subfolder)
    name = config.get("_class_name")
    if name not in ENCODER_CLASSES:
        raise ValueError(
            f"{os.fspath(pretrained_model_name_or_path)} holds a {name!r}, not a PDAE encoder "
            f"({', '.join(ENCODER_CLASSES)})."
        )
    return ENCODER_CLASSES[name].from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
