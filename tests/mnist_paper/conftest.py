"""The MNIST study's modules sit beside its scripts in examples/mnist_paper (as diffusers' research projects do) and
import each other by plain name; make them importable here the same way running a script there does."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

STUDY_DIR = Path(__file__).resolve().parents[2] / "examples" / "mnist_paper"
if str(STUDY_DIR) not in sys.path:
    sys.path.insert(0, str(STUDY_DIR))


def load_study_script(name: str) -> ModuleType:
    """Import the script `examples/mnist_paper/<name>.py` as a module (its `main` is then callable)."""
    spec = importlib.util.spec_from_file_location(f"mnist_paper_{name}", STUDY_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
