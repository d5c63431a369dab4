"""Optional dependencies, imported only by the functions that need them, with a message that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

# import name -> (pip package, extra of diffusers-pdae that installs it)
OPTIONAL_PACKAGES = {
    "sklearn": ("scikit-learn", "eval"),
    "matplotlib": ("matplotlib", "eval"),
    "datasets": ("datasets", None),
    "tensorboard": ("tensorboard", "train"),
    "torchdata": ("torchdata", "train"),
    "gradio": ("gradio", "app"),
}


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` (e.g. `"sklearn.linear_model"`), or raise an `ImportError` naming the package to install.

    Args:
        module (`str`): the dotted module to import.
        purpose (`str`): what needs it, for the message (e.g. `"linear_probe"`).
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        package, extra = OPTIONAL_PACKAGES.get(top, (top, None))
        hint = f"pip install 'diffusers-pdae[{extra}]'" if extra else f"pip install {package}"
        raise ImportError(
            f"{purpose} needs {package}, which is not installed: {hint} (or pip install {package})."
        ) from (error)
