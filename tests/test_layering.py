"""The package's layout keeps its shape: imports point down the layers (docs/architecture.md), and no module grows
past what a reader can hold in mind."""

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "diffusers_pdae"
MAX_LINES = 400

# Each subpackage or top-level module, and what it must never import (package-relative names).
FORBIDDEN = {
    "pdae_math": ("models", "pipelines", "training", "evaluation", "data", "interactive", "sampling"),
    "sampling": ("models", "pipelines", "training", "evaluation", "data", "interactive"),
    "latent_space": ("models", "pipelines", "training", "evaluation", "data", "interactive"),
    "models": ("pipelines", "training", "evaluation", "data", "interactive"),
    "pipelines": ("training", "evaluation", "data", "interactive", "bundled"),
    "evaluation": ("training", "data", "interactive"),
    "training": ("evaluation", "interactive"),
    "data": ("models", "pipelines", "training", "evaluation", "interactive"),
}
# Above the pipelines, only the public package `diffusers_pdae.pipelines` may be imported, never one of its modules.
USE_PIPELINES_PUBLICLY = ("training", "evaluation", "interactive")


def package_modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """The package modules `path` imports, as dotted names below `diffusers_pdae` (e.g. `pipelines.input_checks`)."""
    module = ".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name.removeprefix("diffusers_pdae.") for name in names if name.startswith("diffusers_pdae."))
    return found


def owner(path: Path) -> str:
    return path.relative_to(PACKAGE_DIR).with_suffix("").parts[0]


def test_the_import_rules_see_real_imports():
    imports = imported_modules(PACKAGE_DIR / "pipelines" / "pipeline_pdae.py")
    assert {"sampling", "pipelines.autoencoder", "models.frozen_denoiser"} <= imports


@pytest.mark.parametrize("path", package_modules(), ids=lambda path: str(path.relative_to(PACKAGE_DIR)))
def test_imports_point_down_the_layers(path):
    layer = owner(path)
    imports = imported_modules(path)
    upward = sorted(name for name in imports if name.split(".")[0] in FORBIDDEN.get(layer, ()))
    assert not upward, f"{path.relative_to(PACKAGE_DIR)} ({layer}) imports {upward}"
    if layer in USE_PIPELINES_PUBLICLY:
        internals = sorted(name for name in imports if name.startswith("pipelines."))
        assert not internals, f"{path.relative_to(PACKAGE_DIR)} reaches into {internals}; import from the package"


@pytest.mark.parametrize("path", package_modules(), ids=lambda path: str(path.relative_to(PACKAGE_DIR)))
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


# The frozen models' classes: only their adapters (models/unet_denoisers.py, dit_denoiser.py) may import them, so
# that a new family costs one adapter, not edits everywhere (docs/architecture.md, "The seam").
FROZEN_MODEL_CLASSES = {"UNet2DModel", "UNet2DConditionModel", "DiTTransformer2DModel", "Transformer2DModel"}
ADAPTER_MODULES = (PACKAGE_DIR / "models" / "unet_denoisers.py", PACKAGE_DIR / "models" / "dit_denoiser.py")
EXAMPLES_DIR = PACKAGE_DIR.parent / "examples"
# The example scripts that serve a frozen model. Left out: train_dpm.py (it makes DPMs: the UNet it trains is not
# frozen), the MNIST study (a class-conditional UNet as a reference model) and benchmarks/ (random-weight layouts).
SERVING_SCRIPTS = sorted(path for path in EXAMPLES_DIR.glob("*.py") if path.name != "train_dpm.py")


def imported_names(path: Path) -> set[str]:
    """Every name `path` imports with `from ... import name` (any module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.update(alias.name for alias in node.names)
    return found


def test_the_frozen_model_rule_sees_real_imports():
    assert {"UNet2DModel", "UNet2DConditionModel"} <= imported_names(ADAPTER_MODULES[0])
    assert "DiTTransformer2DModel" in imported_names(ADAPTER_MODULES[1])
    assert "UNet2DModel" in imported_names(EXAMPLES_DIR / "train_dpm.py")


@pytest.mark.parametrize(
    "path",
    [path for path in package_modules() + SERVING_SCRIPTS if path not in ADAPTER_MODULES],
    ids=lambda path: str(path.relative_to(PACKAGE_DIR.parent)),
)
def test_only_the_adapter_imports_the_frozen_model_classes(path):
    named = sorted(imported_names(path) & FROZEN_MODEL_CLASSES)
    assert not named, f"{path.name} imports {named}; reach the frozen model through its adapter (frozen_denoiser)"


def module_graph() -> dict[str, set[str]]:
    """Each package module (not `__init__`) -> the package modules it imports anywhere, function bodies included."""
    modules = {
        ".".join(path.relative_to(PACKAGE_DIR).with_suffix("").parts): path
        for path in package_modules()
        if path.name != "__init__.py"
    }

    def module_of(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    return {
        module: {module_of(name) for name in imported_modules(path) if module_of(name) not in ("", module)}
        for module, path in modules.items()
    }


def test_no_two_modules_import_each_other_even_inside_a_function():
    graph, finished, stack = module_graph(), set(), []
    assert "models.frozen_denoiser" in graph["models.gradient_estimator"]  # the graph sees real imports

    def visit(module: str) -> None:
        if module in stack:
            cycle = stack[stack.index(module) :] + [module]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if module in finished:
            return
        stack.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        stack.pop()
        finished.add(module)

    for module in sorted(graph):
        visit(module)
