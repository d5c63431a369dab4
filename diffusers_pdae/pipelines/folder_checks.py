"""Checks of a saved pipeline folder, before and after `from_pretrained` reads it: every component and weight file
there, of the class the pipeline takes, intact, holding what its config says, and (for PDAE) the UNet its encoder and
gradient estimator were trained with."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import tempfile

import torch
from safetensors import safe_open

from ..models.frozen_denoiser import DENOISER_COMPONENT_NAMES

# The weights of a model folder, as diffusers saves them (any variant, any shard).
WEIGHTS_PREFIX, WEIGHTS_SUFFIX = "diffusion_pytorch_model", ".safetensors"
# The class names model_index.json may give an encoder (diffusers_pdae.models.ENCODER_CLASSES, as strings: this module
# is bundled into saved folders' code, where the classes themselves must not be defined twice).
ENCODER_CLASS_NAMES = ("PDAEEncoder", "PDAEResidualEncoder", "PDAETransformersEncoder")
# Loads of a folder that a concurrent save keeps replacing, before giving up.
LOAD_ATTEMPTS = 5
# What a Hub snapshot leaves out: pickles (never read) and other frameworks' weights.
NOT_DOWNLOADED = ["*.bin", "*.pkl", "*.pt", "*.pth", "*.ckpt", "*.msgpack", "*.h5", "*.onnx"]
# from_pretrained's download arguments, as huggingface_hub.snapshot_download takes them.
DOWNLOAD_ARGUMENTS = ("revision", "cache_dir", "token", "local_files_only", "proxies", "force_download")


def resolve_pipeline_folder(path: str, kwargs: dict) -> str:
    """A local pipeline folder for `path`: the folder itself, or a Hub repo's snapshot without pickles (the download
    arguments are taken out of `kwargs`)."""
    if os.path.isdir(path):
        return path
    if os.path.isabs(path) or path.startswith((".", "~")) or path.count("/") != 1:
        raise FileNotFoundError(f"No pipeline folder at {path} (a local folder, or a Hub id such as 'user/repo').")
    from huggingface_hub import snapshot_download

    download = {name: kwargs.pop(name) for name in DOWNLOAD_ARGUMENTS if name in kwargs}
    return snapshot_download(path, ignore_patterns=NOT_DOWNLOADED, **download)


@contextlib.contextmanager
def stable_snapshot(folder: str):
    """A private snapshot of a pipeline folder that no concurrent save can change: `model_index.json` and the folders
    it lists, hard-linked (no data is copied) into a sibling folder, removed afterwards. Saves replace the folder by
    renaming a new one into place and never rewrite a file, so the links keep one save's files whole. Yields the
    folder itself where links cannot be made (another file system, a read-only parent)."""
    for _ in range(LOAD_ATTEMPTS):
        identity = folder_identity(folder)
        parent, name = os.path.split(os.path.abspath(folder))
        try:
            snapshot = tempfile.mkdtemp(prefix=f".{name}.reading-", dir=parent)
        except OSError:
            break
        try:
            link_pipeline_files(folder, snapshot)
        except (OSError, ValueError):
            shutil.rmtree(snapshot, ignore_errors=True)
            if folder_identity(folder) != identity:
                continue  # a save swapped the folder while it was linked
            break  # not linkable, or damaged: read the folder itself (its checks name what is wrong)
        if folder_identity(folder) != identity:
            shutil.rmtree(snapshot, ignore_errors=True)
            continue
        try:
            yield snapshot
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)
        return
    yield folder


def link_pipeline_files(folder: str, snapshot: str) -> None:
    """Hard-link `model_index.json` and every component folder it lists from `folder` into `snapshot`."""
    with open(os.path.join(folder, "model_index.json")) as f:
        index = json.load(f)
    os.link(os.path.join(folder, "model_index.json"), os.path.join(snapshot, "model_index.json"))
    for name, entry in index.items():
        source = os.path.join(folder, name)
        if isinstance(entry, list) and os.path.isdir(source):
            shutil.copytree(source, os.path.join(snapshot, name), copy_function=os.link)
    for entry in os.listdir(folder):  # the pipeline's own code file(s) beside model_index.json
        if entry.endswith(".py"):
            os.link(os.path.join(folder, entry), os.path.join(snapshot, entry))


def name_components_after(pipeline, snapshot: str, folder: str) -> None:
    """Each loaded component's recorded origin (`_name_or_path`, set by diffusers to the path it read) as `folder`,
    the one the user named, not the private snapshot that was read and is gone; a re-saved component carries it."""
    if snapshot == folder:
        return
    for component in pipeline.components.values():
        origin = dict(getattr(component, "config", None) or {}).get("_name_or_path")
        if isinstance(origin, str) and origin.startswith(snapshot):
            component.register_to_config(_name_or_path=folder + origin[len(snapshot) :])


def naming_folder(error: Exception, snapshot: str, folder: str) -> Exception:
    """`error` with the private snapshot's path in its message replaced by the folder the user named."""
    if snapshot == folder or snapshot not in str(error):
        return error
    try:
        return type(error)(str(error).replace(snapshot, folder))
    except TypeError:  # an exception type that takes other arguments
        return error


def folder_identity(folder: str) -> tuple[int, int] | None:
    """What changes when a save renames a new folder into place (device and inode); None while there is none."""
    try:
        stat = os.stat(folder)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def package_model_classes() -> dict:
    """The installed package's model classes by name; none when this code runs from a saved folder without it."""
    from diffusers import ModelMixin

    try:  # not an import statement: diffusers would warn that the saved copy of this code needs the package
        models = importlib.import_module("diffusers_pdae.models")
    except ImportError:
        return {}
    found = (getattr(models, name) for name in models.__all__)
    return {cls.__name__: cls for cls in found if isinstance(cls, type) and issubclass(cls, ModelMixin)}


def check_pipeline_folder(
    folder: str,
    components: tuple[str, ...],
    pipeline_name: str = "pipeline",
    optional: tuple[str, ...] = (),
    component_classes: dict[str, tuple[str, ...]] | None = None,
    one_of: tuple[str, ...] = (),
) -> dict:
    """Before `from_pretrained` reads a local pipeline folder: say which component or file is missing or wrong.

    Args:
        folder: the pipeline folder.
        components: subfolders that must exist, each with its config (`scheduler_config.json` for schedulers,
            `config.json` for models) and, for models, safetensors weights.
        pipeline_name: the class that loads it, for the messages.
        optional: components that may be absent (or null in `model_index.json`); when listed, checked as the others.
        component_classes: for some components, the class names `model_index.json` may give them.
        one_of: optional components of which the folder must hold one (the frozen model: `unet` or `transformer`).

    Returns:
        `dict`: the folder's `model_index.json`.

    Raises:
        `FileNotFoundError`: naming the missing piece; `ValueError`: naming a damaged file or a wrong class.
    """
    index_path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index_path):
        raise FileNotFoundError(f"{folder} is not a pipeline folder: it has no model_index.json.")
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{index_path} is not valid JSON ({error}); the pipeline folder is damaged.") from error
    if one_of and not any(index.get(name, [None, None])[1] is not None for name in one_of if name in index):
        raise FileNotFoundError(
            f"{index_path} lists no frozen model ({' or '.join(repr(name) for name in one_of)}); a {pipeline_name} "
            f"needs one, with {', '.join(components)}."
        )
    for name in components + optional:
        entry = index.get(name)
        if entry is None or entry == [None, None]:
            if name in optional:
                continue
            needed = ", ".join(components)
            raise FileNotFoundError(f"{index_path} lists no {name!r}; a {pipeline_name} needs {needed}.")
        allowed = (component_classes or {}).get(name)
        if allowed and entry[1] not in allowed:
            raise ValueError(
                f"{index_path} says the {name} is a {entry[1]}; a {pipeline_name}'s {name} is one of "
                f"{', '.join(allowed)}. The file was edited or belongs to another pipeline: restore it."
            )
        subfolder = os.path.join(folder, name)
        config = "scheduler_config.json" if "Scheduler" in str(entry[1]) else "config.json"
        if not os.path.isfile(os.path.join(subfolder, config)):
            raise FileNotFoundError(f"The pipeline's {name} is missing: no {config} in {subfolder}.")
        if config == "config.json":
            weights = [
                file
                for file in os.listdir(subfolder)
                if file.startswith("diffusion_pytorch_model") and file.endswith(".safetensors")
            ]
            if not weights:
                raise FileNotFoundError(
                    f"The pipeline's {name} has no weights: no diffusion_pytorch_model.safetensors in {subfolder} "
                    "(weights are read from safetensors only)."
                )
            for file in weights:
                check_safetensors_file(os.path.join(subfolder, file))
    return index


def check_safetensors_file(path: str) -> None:
    """Read a safetensors file's header (not its tensors) and check the file holds all the bytes it announces.

    Raises:
        `ValueError`: naming the file when it is not safetensors (e.g. a git-lfs pointer), or truncated.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if f.read(64).startswith(b"version https://git-lfs"):
            raise ValueError(f"{path} is a git-lfs pointer, not the weights: run `git lfs pull` in the checkout.")
        f.seek(0)
        start = f.read(8)
        header_size = int.from_bytes(start, "little") if len(start) == 8 else -1
        header = f.read(header_size) if 0 < header_size <= size - 8 else b""
    try:
        entries = json.loads(header)
        data_end = max(
            (entry["data_offsets"][1] for key, entry in entries.items() if key != "__metadata__"), default=0
        )
    except (ValueError, KeyError, TypeError, IndexError):
        raise ValueError(
            f"{path} is not a safetensors file (its header cannot be read); the file is damaged."
        ) from None
    if 8 + header_size + data_end > size:
        raise ValueError(
            f"{path} is truncated: its header announces {8 + header_size + data_end} bytes, the file has {size}."
        )


def stored_shapes(subfolder: str, variant: str | None = None) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a model folder's safetensors weights (read from the headers), by key."""
    shapes = {}
    for path in weights_files(subfolder, variant):
        with safe_open(path, framework="pt") as weights:
            shapes.update({key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()})
    return shapes


def weights_files(subfolder: str, variant: str | None = None) -> list[str]:
    """The safetensors files `from_pretrained` reads in a model folder, for `variant` (None: the plain ones; a
    variant the folder lacks falls back to the plain ones, as diffusers does)."""
    if variant is not None:
        return weights_files(subfolder, None) if not (found := _files_of(subfolder, variant)) else found
    return _files_of(subfolder, None)


def _files_of(subfolder: str, variant: str | None) -> list[str]:
    files = []
    for name in sorted(os.listdir(subfolder)):
        if not (name.startswith(WEIGHTS_PREFIX) and name.endswith(WEIGHTS_SUFFIX)):
            continue
        # model.safetensors, model.fp16.safetensors, model-00001-of-00002.safetensors, model.fp16-00001-of-...
        file_variant = name[len(WEIGHTS_PREFIX) : -len(WEIGHTS_SUFFIX)].split("-")[0].strip(".")
        if file_variant == (variant or ""):
            files.append(os.path.join(subfolder, name))
    return files


def check_weights_fit_config(subfolder: str, model_class: type, variant: str | None = None) -> None:
    """The weights hold exactly the tensors the config builds (same keys, same shapes), checked on the meta device
    before anything is loaded: an edited `config.json` or a renamed key is named instead of failing inside diffusers
    or loading with freshly initialised layers."""
    config = model_class.load_config(subfolder)
    with torch.device("meta"):
        model = model_class.from_config(config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    stored = stored_shapes(subfolder, variant)
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"The weights in {subfolder} do not fit its config.json: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}. A key was renamed or the files come from another model: restore the folder from the "
            "original save."
        )
    mismatched = [(key, stored[key], shape) for key, shape in expected.items() if stored[key] != shape]
    if mismatched:
        key, stored_shape, expected_shape = mismatched[0]
        suspects = [
            f"{entry}={value}"
            for entry, value in config.items()
            if isinstance(value, int) and not isinstance(value, bool)
            and value in expected_shape and value not in stored_shape
        ]  # fmt: skip
        raise ValueError(
            f"{subfolder}/config.json does not match its weights: {key} is {list(stored_shape)} in the file but "
            f"{list(expected_shape)} by the config (config entries that may have been edited: "
            f"{', '.join(suspects) or 'none found'}). Restore config.json from the original save."
        )


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 of a model's weights (keys, dtypes, shapes and bytes, in key order): what identifies the frozen UNet a
    PDAE encoder and gradient estimator were trained with."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def stored_weights_digest(subfolder: str, variant: str | None = None) -> str:
    """[`weights_digest`] of a model folder's safetensors weights, as they lie on disk."""
    tensors = {}
    for path in weights_files(subfolder, variant):
        with safe_open(path, framework="pt") as weights:
            tensors.update({key: weights.get_tensor(key) for key in weights.keys()})
    return weights_digest(tensors)


def read_json(path: str) -> dict:
    """A JSON file as a dict, or a `ValueError` naming the file when it is not one."""
    try:
        with open(path) as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the folder is damaged.") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a JSON object; the folder is damaged.")
    return content


def check_recorded_digest(
    folder: str, component: str, recorded: str, what: str, retrain: str, variant: str | None = None
) -> None:
    """`folder/component` holds the weights whose digest the gradient estimator's config records (`recorded`): the
    frozen model (`what`, e.g. "unet" or "autoencoder") the encoder and G were trained with.

    Raises:
        `ValueError`: naming the folder, both digests, and to restore it or train PDAE for this `retrain`.
    """
    found = stored_weights_digest(os.path.join(folder, component), variant)
    if found != recorded:
        raise ValueError(
            f"{folder}/{component} is not the {what} this pipeline's encoder and gradient estimator were trained with "
            f"(its weights digest is {found[:12]}..., gradient_estimator/config.json records {recorded[:12]}...). "
            f"Restore the original {component}/ folder, or train PDAE for this {retrain} with examples/train_pdae.py."
        )


def check_unet_digest(folder: str, variant: str | None = None) -> None:
    """The folder's frozen model (`unet/`) is the one its gradient estimator records (`unet_weights_digest` in its
    config, written at every save); encoder and G are valid for that model only. Folders saved before the digest
    existed pass."""
    recorded = read_json(os.path.join(folder, "gradient_estimator", "config.json")).get("unet_weights_digest")
    if recorded is None:
        return
    index = read_json(os.path.join(folder, "model_index.json"))
    name = next((name for name in DENOISER_COMPONENT_NAMES if index.get(name, [None, None])[1] is not None), "unet")
    check_recorded_digest(folder, name, recorded, name, "model", variant)


def check_loaded_weights(pipeline) -> None:
    """After loading: no model component holds a NaN or infinite weight (a damaged file whose header is intact)."""
    for name, component in pipeline.components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        for key, tensor in component.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(
                    f"The pipeline's {name} holds NaN or infinite weights ({key}): its safetensors file is damaged; "
                    "restore it from the original save."
                )
