"""Loading and saving faults: a missing, damaged or mismatched piece of a pipeline folder is named before diffusers
reads it, and a failed save keeps what the folder held."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusers_pdae import GradientEstimator, PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_tensors

from ..conftest import LATENT_DIM, tiny_pipeline, tiny_unet
from .conftest import CLEAR, HANDLED, assert_clear_error

pytestmark = pytest.mark.reliability(area="loading")


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    """A tiny PDAEPipeline saved once (copied by the tests that doctor it)."""
    folder = tmp_path_factory.mktemp("tiny-pdae") / "pipeline"
    tiny_pipeline().save_pretrained(folder)
    return folder


def copy_of(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / source.name))


def bundled(name: str = "pdae-mnist") -> Path:
    return Path(checkpoint_path(name))


def estimator_weights(folder: Path) -> Path:
    found = sorted((folder / "gradient_estimator").glob("diffusion_pytorch_model*.safetensors"))
    assert found, f"no safetensors file in {folder}/gradient_estimator"
    return found[0]


def tree_digest(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `folder`."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@HANDLED
def test_the_bundled_checkpoint_loads_and_encodes_two_digits():
    """from_pretrained on the bundled pdae-mnist checkpoint encodes two test digits to finite codes."""
    pipe = PDAEPipeline.from_pretrained(bundled())
    pipe.set_progress_bar_config(disable=True)
    digits, _ = load_mnist_tensors("test", [0, 1])
    z = pipe.encode(digits)
    assert tuple(z.shape) == (2, 64) and torch.isfinite(z).all()


def remove_encoder(folder: Path) -> None:
    shutil.rmtree(folder / "encoder")


def remove_estimator_weights(folder: Path) -> None:
    estimator_weights(folder).unlink()


def remove_model_index(folder: Path) -> None:
    (folder / "model_index.json").unlink()


def break_model_index(folder: Path) -> None:
    (folder / "model_index.json").write_text("{ this is not json")


def overwrite_weights_with_junk(folder: Path) -> None:
    weights = estimator_weights(folder)
    weights.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, weights.stat().st_size, dtype=np.uint8)))


def cut_weights_in_half(folder: Path) -> None:
    weights = estimator_weights(folder)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def replace_weights_with_a_git_lfs_pointer(folder: Path) -> None:
    estimator_weights(folder).write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 123456\n"
    )


def swap_in_an_estimator_of_latent_dim_16(folder: Path) -> None:
    shutil.rmtree(folder / "gradient_estimator")
    torch.manual_seed(3)
    estimator = GradientEstimator.from_unet(tiny_unet(), latent_dim=2 * LATENT_DIM)
    estimator.save_pretrained(folder / "gradient_estimator")


@CLEAR
@pytest.mark.parametrize(
    "what, damage, keywords",
    [
        pytest.param("a folder without encoder/", remove_encoder, ["encoder"], id="missing-encoder-folder"),
        pytest.param(
            "gradient_estimator's weights file deleted",
            remove_estimator_weights,
            ["gradient_estimator"],
            id="missing-estimator-weights",
        ),
        pytest.param(
            "a folder without model_index.json", remove_model_index, ["model_index"], id="missing-model-index"
        ),
        pytest.param(
            "a model_index.json that is not JSON", break_model_index, ["model_index"], id="invalid-model-index"
        ),
        pytest.param(
            "gradient_estimator's safetensors overwritten by junk",
            overwrite_weights_with_junk,
            ["gradient_estimator", "diffusion_pytorch_model"],
            id="corrupt-safetensors",
        ),
        pytest.param(
            "gradient_estimator's safetensors cut in half",
            cut_weights_in_half,
            ["gradient_estimator", "diffusion_pytorch_model"],
            id="truncated-safetensors",
        ),
        pytest.param(
            "a weights file that is a git-lfs pointer (not pulled)",
            replace_weights_with_a_git_lfs_pointer,
            ["lfs", "pointer", "gradient_estimator", "diffusion_pytorch_model"],
            id="git-lfs-pointer",
        ),
        pytest.param(
            "gradient_estimator/ replaced by one trained with latent_dim 16 (encoder 8)",
            swap_in_an_estimator_of_latent_dim_16,
            ["latent_dim"],
            id="estimator-swapped-latent-dim",
        ),
    ],
)
def test_a_damaged_pipeline_folder_is_named(saved_tiny, tmp_path, what, damage, keywords):
    """from_pretrained with {what}: refused naming the component or file."""
    folder = copy_of(saved_tiny, tmp_path)
    damage(folder)
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), keywords)


@CLEAR
def test_an_estimator_config_edited_to_another_latent_dim_names_the_config_entry(saved_tiny, tmp_path):
    """gradient_estimator/config.json edited to latent_dim 16 (weights and encoder 8): the entry and a fix named."""
    folder = copy_of(saved_tiny, tmp_path)
    config_path = folder / "gradient_estimator" / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "latent_dim": 2 * LATENT_DIM}))
    error = assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), ["latent_dim"])
    message = str(error)
    assert "config.json" in message, f"does not name the file to fix: {message}"
    assert re.search(r"\b(set|restore|change|edit|re-?train|replace|use)\b", message, re.IGNORECASE), (
        f"does not say what to do: {message}"
    )


def edit_scheduler(folder: Path, **edit) -> None:
    config_path = folder / "scheduler" / "scheduler_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **edit}, indent=2))


@CLEAR
@pytest.mark.parametrize(
    "edit, keywords",
    [
        pytest.param({"num_train_timesteps": 500}, [r"500[\s\S]*1000|1000[\s\S]*500"], id="500-steps"),
        pytest.param(
            {"beta_schedule": "scaled_linear"},
            [r"scaled_linear[\s\S]*\blinear\b|\blinear\b[\s\S]*scaled_linear"],
            id="other-betas",
        ),
    ],
)
def test_a_scheduler_with_another_noise_schedule_is_refused_naming_both(tmp_path, edit, keywords):
    """The bundled checkpoint with its scheduler edited to {edit}: refused naming both schedules."""
    folder = copy_of(bundled(), tmp_path)
    edit_scheduler(folder, **edit)
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), keywords)


@CLEAR
def test_a_path_that_does_not_exist_is_named(tmp_path):
    """from_pretrained on a local path that does not exist: refused naming the path."""
    missing = tmp_path / "no-such-pipeline"
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(str(missing)), ["no-such-pipeline"])


@CLEAR
def test_a_plain_ddpm_folder_is_refused_naming_the_missing_components():
    """PDAEPipeline.from_pretrained on a plain DDPM folder (bundled ddpm-mnist): refused naming what is missing."""
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(bundled("ddpm-mnist")), ["encoder", "gradient_estimator"])


@HANDLED
def test_a_save_failing_midway_keeps_the_previous_pipeline(tmp_path):
    """save_pretrained failing midway (disk full at the third component) keeps the folder's previous pipeline."""
    folder = tmp_path / "atomic-save"
    tiny_pipeline().save_pretrained(folder)
    before = tree_digest(folder)
    other = tiny_pipeline(unet=tiny_unet(seed=10))
    calls = []

    def failing(original, name):
        def save(*args, **kwargs):
            calls.append(name)
            if len(calls) == 3:
                raise OSError(f"No space left on device (simulated while saving {name})")
            return original(*args, **kwargs)

        return save

    for name in ("unet", "scheduler", "encoder", "gradient_estimator"):
        component = getattr(other, name)
        component.save_pretrained = failing(component.save_pretrained, name)
    with pytest.raises(OSError, match="No space left on device"):
        other.save_pretrained(folder)
    assert tree_digest(folder) == before, "files of the previous save were overwritten or removed (lost data)"


@CLEAR
def test_saving_onto_an_existing_file_is_refused_and_keeps_it(pipe, tmp_path):
    """save_pretrained into a path that is an existing file: refused naming it, the file kept."""
    path = tmp_path / "a-file.txt"
    path.write_text("keep me")
    assert_clear_error(lambda: pipe.save_pretrained(path), ["a-file.txt", "not a directory", "exists"])
    assert path.is_file() and path.read_text() == "keep me"


# ------------------------------------------------------------------------- issue 29: the last silent answers


def rewrite_weights(path: Path, change) -> None:
    """Rewrite a safetensors file with `change(tensors) -> tensors` applied (a doctored checkpoint)."""
    from safetensors.torch import load_file, save_file

    save_file(change(load_file(path)), path)


@CLEAR
def test_weights_damaged_behind_an_intact_header_are_named(saved_tiny, tmp_path):
    """The encoder's tensor bytes overwritten with NaN patterns, its safetensors header intact: refused by name."""
    folder = copy_of(saved_tiny, tmp_path)
    path = sorted((folder / "encoder").glob("*.safetensors"))[0]
    data = bytearray(path.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    data[header_end:] = b"\xff" * (len(data) - header_end)  # every float32 becomes NaN
    path.write_bytes(bytes(data))
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), [r"encoder holds NaN or infinite weights"])


@CLEAR
def test_a_renamed_weight_key_is_named_instead_of_loading_a_fresh_layer(saved_tiny, tmp_path):
    """A key of encoder/ renamed (as if another model's file): refused naming the missing and unexpected keys."""
    folder = copy_of(saved_tiny, tmp_path)
    path = sorted((folder / "encoder").glob("*.safetensors"))[0]
    rewrite_weights(
        path, lambda tensors: {("renamed." + k if k.endswith("weight") else k): v for k, v in tensors.items()}
    )
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), [r"do not fit its config.json: missing \["])


@CLEAR
def test_a_unet_replaced_by_another_of_the_same_layout_is_refused(saved_tiny, tmp_path):
    """unet/ replaced by another UNet of the same layout (another checkpoint or a fine-tune): encoder and G do not
    serve it; refused naming unet/ and what to do."""
    folder = copy_of(saved_tiny, tmp_path)
    shutil.rmtree(folder / "unet")
    tiny_unet(seed=7).save_pretrained(folder / "unet")
    keywords = [r"unet is not the UNet this pipeline's encoder and gradient estimator were trained with"]
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), keywords)


@HANDLED
def test_loads_during_concurrent_saves_never_mix_two_saves(tmp_path):
    """A reader loading a folder while another thread keeps saving two different pipelines into it: every load
    pairs the encoder and G of one save."""
    import threading

    first, second = tiny_pipeline(), tiny_pipeline()
    with torch.no_grad():
        for model in (second.encoder, second.gradient_estimator):
            for parameter in model.parameters():
                parameter.add_(1.0)
    signature = {id(p): (p.encoder.conv_in.weight.sum().item(), p.gradient_estimator.conv_out.weight.sum().item())
                 for p in (first, second)}  # fmt: skip
    pairs = set(signature.values())
    folder = tmp_path / "pipeline"
    first.save_pretrained(folder)
    stop = threading.Event()

    def keep_saving():
        while not stop.is_set():
            for pipe in (second, first):
                pipe.save_pretrained(folder)

    writer = threading.Thread(target=keep_saving)
    writer.start()
    try:
        for _ in range(12):
            loaded = PDAEPipeline.from_pretrained(folder)
            pair = (loaded.encoder.conv_in.weight.sum().item(), loaded.gradient_estimator.conv_out.weight.sum().item())
            assert pair in pairs, "the encoder of one save was loaded with the gradient estimator of another"
    finally:
        stop.set()
        writer.join()


@CLEAR
def test_an_optional_component_listed_but_missing_is_named(tmp_path):
    """A pipeline saved with a latent sampler, its latent_scheduler/ folder deleted: refused naming it."""
    from ..pipelines.test_generation import with_sampler

    folder = tmp_path / "pipeline"
    with_sampler(tiny_pipeline()).save_pretrained(folder)
    shutil.rmtree(folder / "latent_scheduler")
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), [r"latent_scheduler is missing"])


@CLEAR
def test_a_model_index_naming_the_wrong_class_for_a_component_is_named(saved_tiny, tmp_path):
    """model_index.json's encoder entry edited to name GradientEstimator: refused naming the entry and the classes a
    PDAEPipeline's encoder may be."""
    folder = copy_of(saved_tiny, tmp_path)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index_path.write_text(json.dumps({**index, "encoder": [index["encoder"][0], "GradientEstimator"]}))
    keywords = [r"says the encoder is a GradientEstimator; a PDAEPipeline's encoder is one of PDAEEncoder"]
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), keywords)


@CLEAR
@pytest.mark.parametrize("variant", [None, "fp16"])
def test_saving_pickled_weights_is_refused_at_save_time(tmp_path, variant):
    """save_pretrained(safe_serialization=False, variant={variant}): refused before writing, since the loader reads
    safetensors only; nothing is written."""
    folder = tmp_path / "pipeline"
    call = lambda: tiny_pipeline().save_pretrained(folder, safe_serialization=False, variant=variant)  # noqa: E731
    assert_clear_error(call, [r"safe_serialization=False"])
    assert not folder.exists()


@CLEAR
@pytest.mark.parametrize("fault", ["width", "no-scheduler"])
def test_a_latent_sampler_that_does_not_fit_the_codes_is_named(fault):
    """A PDAEPipeline given a latent_sampler {fault} (codes of another width; no latent_scheduler): refused at
    construction naming latent_sampler, before any sampling."""
    from diffusers import DDIMScheduler

    from diffusers_pdae.models.latent_sampler import LatentSampler

    components = tiny_pipeline().components
    width = LATENT_DIM + (3 if fault == "width" else 0)
    sampler = LatentSampler(latent_dim=width, hidden_dim=16, num_layers=1, time_embed_dim=8)
    scheduler = None if fault == "no-scheduler" else DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    assert_clear_error(
        lambda: PDAEPipeline(**{**components, "latent_sampler": sampler, "latent_scheduler": scheduler}),
        [r"latent.sampler"],
    )
