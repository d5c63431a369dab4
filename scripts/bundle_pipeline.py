"""Copy a released pipeline folder into the package's bundled checkpoints, as the bundled ones are kept: the
model_index and the component folders (configs and safetensors only, what `setup.py` ships), our classes named by
their module path (`["diffusers_pdae.models.encoder", "PDAEEncoder"]`) instead of the saved code files, which the
installed package replaces. Nothing of the training run (checkpoints, logs, grids, card) comes along.

    python scripts/bundle_pipeline.py work_dirs/sd/pdae-sd-mnist-sampler pdae-sd-mnist
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "diffusers_pdae" / "bundled"
# The module of each class our pipelines save (what model_index.json names when the package is installed).
MODULES = {
    "PDAEEncoder": "diffusers_pdae.models.encoder",
    "PDAEResidualEncoder": "diffusers_pdae.models.residual_encoder",
    "PDAETransformersEncoder": "diffusers_pdae.models.transformers_encoder",
    "GradientEstimator": "diffusers_pdae.models.gradient_estimator",
    "TransformerGradientEstimator": "diffusers_pdae.models.transformer_gradient_estimator",
    "LatentSampler": "diffusers_pdae.models.latent_sampler",
    "PromptEmbedding": "diffusers_pdae.models.prompt_embedding",
}
KEPT_SUFFIXES = (".json", ".safetensors")


def copy_without_load_path(path: Path, destination: Path) -> None:
    """Copy a file; a config that records the local folder it was once loaded from (diffusers' `_name_or_path`, as
    releases made before `--init_from_pipeline` dropped it do) is written without it, as diffusers writes configs."""
    if path.name == "config.json":
        config = json.loads(path.read_text())
        if config.pop("_name_or_path", None) is not None:
            destination.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            return
    shutil.copy2(path, destination)


def bundle(source: Path, name: str) -> Path:
    index = json.loads((source / "model_index.json").read_text())
    target = BUNDLED / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    if isinstance(index.get("_class_name"), list):
        index["_class_name"] = index["_class_name"][1]
    for component, entry in index.items():
        if not isinstance(entry, list) or entry[1] is None:
            continue
        if entry[1] in MODULES:
            index[component] = [MODULES[entry[1]], entry[1]]
        (target / component).mkdir()
        for path in sorted((source / component).iterdir()):
            if path.is_file() and path.suffix in KEPT_SUFFIXES:
                copy_without_load_path(path, target / component / path.name)
    (target / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="A released pipeline folder (the output of a training script).")
    parser.add_argument("name", help="The bundled checkpoint's name (a folder under diffusers_pdae/bundled).")
    args = parser.parse_args(argv)
    print(f"bundled {bundle(args.source, args.name)}")


if __name__ == "__main__":
    main()
