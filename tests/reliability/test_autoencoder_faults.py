"""A latent DPM's autoencoder (issue 33): its `scaling_factor` in a saved pipeline, an LDM folder or a flag; its
config against its weights; its identity (a `vae/` replaced, an entry lost); and the figures a latent pipeline
reports, which are never NaN with a clean exit.

Loading cases read a tiny latent `PDAEPipeline` saved once and doctored per test; training cases run the scripts'
`main(argv)` in process on a tiny `LDMPipeline` (they stop before step 1, or run two steps)."""

import json
import math
import shutil
from pathlib import Path

import pytest

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.training.export import export_checkpoint

from ..conftest import load_script, tiny_latent_pipeline, tiny_vqvae
from ..training.test_latent_pdae import save_tiny_ldm
from .conftest import FAST_FLAGS, assert_clear_error, names_one_of

pytestmark = pytest.mark.reliability(area="loading")

TRAINING_CLEAR = pytest.mark.reliability(area="training", outcome="clear error")
TRAINING_HANDLED = pytest.mark.reliability(area="training", outcome="handled")
LOADING_CLEAR = pytest.mark.reliability(area="loading", outcome="clear error")
LOADING_HANDLED = pytest.mark.reliability(area="loading", outcome="handled")

# scaling_factor values a config.json may hold that no latent DPM was trained with (... = the entry removed)
BAD_FACTORS = [
    pytest.param(..., id="missing"),
    pytest.param(0, id="zero"),
    pytest.param(math.nan, id="nan"),
    pytest.param(1e30, id="huge"),
    pytest.param(-0.5, id="negative"),
    pytest.param(None, id="null"),
    pytest.param("0.5", id="string"),
]
FACTOR_KW = [r"scaling_factor"]


@pytest.fixture(scope="module")
def saved_latent(tmp_path_factory) -> Path:
    """A tiny latent PDAEPipeline (a VQModel with scaling_factor 0.5) saved once by this version."""
    folder = tmp_path_factory.mktemp("latent-pdae") / "pipeline"
    tiny_latent_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_ldm(tmp_path_factory) -> Path:
    return Path(save_tiny_ldm(tmp_path_factory.mktemp("ldm") / "ldm"))


def copy_of(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / source.name))


def edit_json(path: Path, **entries) -> None:
    """Set (or, with `...`, remove) entries of a JSON file; NaN is written as JSON's `NaN`, as Python writes it."""
    content = json.loads(path.read_text())
    for key, value in entries.items():
        if value is ...:
            content.pop(key, None)
        else:
            content[key] = value
    path.write_text(json.dumps(content))


def saved_before_the_autoencoder_was_recorded(tmp_path: Path) -> Path:
    """A copy of the bundled pdae-ldm-mnist without the autoencoder entries in its G config, as folders saved before
    issue 33 are."""
    folder = copy_of(Path(checkpoint_path("pdae-ldm-mnist")), tmp_path)
    edit_json(
        folder / "gradient_estimator" / "config.json", autoencoder_weights_digest=..., autoencoder_scaling_factor=...
    )
    return folder


# ------------------------------------------------------------------------------------------------ loading


@LOADING_CLEAR
@pytest.mark.parametrize("factor", BAD_FACTORS)
def test_a_saved_pipeline_whose_vae_scaling_factor_is_unusable_is_refused(saved_latent, tmp_path, factor):
    """A saved latent pipeline whose vae/config.json scaling_factor is {factor} (... = removed): refused before
    loading, naming the file and the entry (before: diffusers' 0.18215 for a missing one, NaN images for 0, NaN or
    1e30, wrong ones for -0.5, a TypeError deep inside for null or a string)."""
    folder = copy_of(saved_latent, tmp_path)
    edit_json(folder / "vae" / "config.json", scaling_factor=factor)
    error = assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), FACTOR_KW)
    assert "vae/config.json" in str(error)


@LOADING_CLEAR
def test_a_vae_config_that_does_not_fit_its_weights_is_named(saved_latent, tmp_path):
    """vae/config.json edited to latent_channels 4 (the weights make 3): refused naming vae/config.json and the entry
    (before: diffusers' "Cannot load  because ... expected shape", naming no component)."""
    folder = copy_of(saved_latent, tmp_path)
    edit_json(folder / "vae" / "config.json", latent_channels=4)
    error = assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), [r"vae/config\.json"])
    assert "latent_channels=4" in str(error)


@LOADING_CLEAR
def test_a_vae_replaced_by_another_autoencoder_of_the_same_layout_is_refused(saved_latent, tmp_path):
    """vae/ replaced by another VQModel of the same layout (other weights): refused, naming vae/ and the weights
    digest the gradient estimator recorded at save time (before: loaded silently)."""
    folder = copy_of(saved_latent, tmp_path)
    tiny_vqvae(seed=99).save_pretrained(folder / "vae")
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), [r"/vae is not the autoencoder .* digest"])


@LOADING_CLEAR
def test_a_vae_whose_valid_scaling_factor_was_edited_is_refused(saved_latent, tmp_path):
    """vae/config.json's scaling_factor edited from 0.5 to 0.25, a usable number but not the one G was trained with:
    refused naming both (recorded as autoencoder_scaling_factor)."""
    folder = copy_of(saved_latent, tmp_path)
    edit_json(folder / "vae" / "config.json", scaling_factor=0.25)
    assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), [r"scaling_factor 0\.25.* trained with 0\.5"])


@LOADING_CLEAR
@pytest.mark.parametrize("which", ["saved-now", "bundled"])
def test_a_latent_pipeline_whose_model_index_lost_its_vae_entry_names_the_vae(saved_latent, tmp_path, which):
    """A latent pipeline ({which}: one saved by this version, or pdae-ldm-mnist as saved before the autoencoder was
    recorded) whose model_index.json lost its "vae" entry: refused naming the vae (before: a message blaming the
    encoder's size)."""
    folder = (
        copy_of(saved_latent, tmp_path)
        if which == "saved-now"
        else saved_before_the_autoencoder_was_recorded(tmp_path)
    )
    edit_json(folder / "model_index.json", vae=...)
    error = assert_clear_error(lambda: PDAEPipeline.from_pretrained(folder), [r"\bvae\b"])
    assert names_one_of(str(error), [r"model_index\.json", r"autoencoder"])


@LOADING_HANDLED
def test_a_latent_pipeline_saved_before_the_autoencoder_was_recorded_still_loads(tmp_path):
    """pdae-ldm-mnist as saved before the autoencoder was recorded (no autoencoder entries in its G config) loads
    with its autoencoder's scaling_factor."""
    pipe = PDAEPipeline.from_pretrained(saved_before_the_autoencoder_was_recorded(tmp_path))
    assert pipe.gradient_estimator.config.get("autoencoder_weights_digest") is None
    assert pipe.vae.config.scaling_factor == pytest.approx(3.6026846387)


@LOADING_HANDLED
def test_evaluate_reconstruction_exits_with_an_error_instead_of_a_table_of_nan(saved_latent, monkeypatch, capsys):
    """evaluate_reconstruction.py on a pipeline whose reconstructions come out NaN: it stops with an error naming
    the non-finite figures and prints no table (before: a table of nan, exit code 0)."""
    script = load_script("evaluate_reconstruction")

    def nan_study(pipeline, images, steps, seed, batch_size):
        scores = {name: {"mean": math.nan, "sem": math.nan} for name in ("mse", "psnr", "ssim")}
        return {steps[0]: {"inferred_xT": scores}}, None

    monkeypatch.setattr(script, "reconstruction_study", nan_study)
    with pytest.raises(ValueError, match=r"not all finite \(2/inferred_xT/mse/mean=nan"):
        script.main(["--pipeline", str(saved_latent), "--num_images", "2", "--steps", "2"])
    assert "PSNR" not in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def train_pdae():
    return load_script("train_pdae")


@pytest.fixture(scope="module")
def train_dpm():
    return load_script("train_dpm")


def pdae_on(ldm: Path, out: Path, *extra: str) -> list[str]:
    return ["--pretrained_model_name_or_path", str(ldm), "--output_dir", str(out), "--max_train_steps", "2",
            *FAST_FLAGS, *extra]  # fmt: skip


def dpm_on(vae: Path, out: Path, *extra: str) -> list[str]:
    return ["--pretrained_vae_model_name_or_path", str(vae), "--output_dir", str(out), "--max_train_steps", "1",
            "--train_batch_size", "2", "--resolution", "32", "--ddpm_num_inference_steps", "2", "--eval_batch_size",
            "2", "--lr_warmup_steps", "0", *extra]  # fmt: skip


@TRAINING_CLEAR
@pytest.mark.parametrize("factor", [p for p in BAD_FACTORS if p.id != "missing"])
def test_train_pdae_refuses_an_ldm_whose_scaling_factor_is_unusable(train_pdae, tiny_ldm, tmp_path, factor):
    """train_pdae.py on an LDM whose vqvae/config.json scaling_factor is {factor}: refused before step 1 naming the
    file, the entry and --vae_scaling_factor (before: a factor of 0 trained on zero latents and released with exit
    code 0)."""
    ldm = copy_of(tiny_ldm, tmp_path)
    edit_json(ldm / "vqvae" / "config.json", scaling_factor=factor)
    with pytest.raises(ValueError, match=r"scaling_factor of vqvae/config\.json .*--vae_scaling_factor"):
        train_pdae.main(pdae_on(ldm, tmp_path / "out"))
    assert not (tmp_path / "out" / "model_index.json").exists()


@TRAINING_CLEAR
def test_train_dpm_refuses_an_autoencoder_without_a_scaling_factor(train_dpm, tiny_ldm, tmp_path):
    """train_dpm.py --pretrained_vae_model_name_or_path on an autoencoder whose config has no scaling_factor:
    refused naming --vae_scaling_factor before anything is trained (before: diffusers' 0.18215 was baked into the
    released LDM)."""
    ldm = copy_of(tiny_ldm, tmp_path)
    edit_json(ldm / "vqvae" / "config.json", scaling_factor=...)
    with pytest.raises(ValueError, match=r"vqvae/config\.json .* has no scaling_factor.*--vae_scaling_factor"):
        train_dpm.main(dpm_on(ldm, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@TRAINING_HANDLED
def test_train_dpm_with_vae_scaling_factor_releases_an_ldm_that_records_it(train_dpm, tiny_ldm, tmp_path):
    """The same autoencoder with --vae_scaling_factor 1.0: one step, and the released LDMPipeline's vqvae config
    holds 1.0, the factor its UNet was trained with."""
    ldm = copy_of(tiny_ldm, tmp_path)
    edit_json(ldm / "vqvae" / "config.json", scaling_factor=...)
    out = tmp_path / "out"
    train_dpm.main(dpm_on(ldm, out, "--vae_scaling_factor", "1.0"))
    assert json.loads((out / "vqvae" / "config.json").read_text())["scaling_factor"] == 1.0


@TRAINING_CLEAR
@pytest.mark.parametrize("script", ["train_pdae", "train_dpm"])
@pytest.mark.parametrize("value", ["0", "nan", "-1", "1e9"])
def test_an_unusable_vae_scaling_factor_flag_is_refused_at_parse_time(tiny_ldm, tmp_path, capsys, script, value):
    """`{script}.py --vae_scaling_factor {value}`: argparse's exit 2 naming the flag."""
    argv = (pdae_on if script == "train_pdae" else dpm_on)(tiny_ldm, tmp_path / "out", "--vae_scaling_factor", value)
    with pytest.raises(SystemExit) as exit_info:
        load_script(script).parse_args(argv)
    assert exit_info.value.code == 2
    assert "--vae_scaling_factor" in capsys.readouterr().err


@TRAINING_CLEAR
@pytest.mark.parametrize("script", ["train_pdae", "train_dpm"])
def test_an_ldm_whose_vqvae_folder_is_missing_is_named(tiny_ldm, tmp_path, script):
    """{script}.py on an LDM folder whose model_index.json lists vqvae but vqvae/ is gone: refused naming vqvae
    (before: a message naming the root folder)."""
    ldm = copy_of(tiny_ldm, tmp_path)
    shutil.rmtree(ldm / "vqvae")
    argv = (pdae_on if script == "train_pdae" else dpm_on)(ldm, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"lists the autoencoder 'vqvae', but .*/vqvae has no config\.json"):
        load_script(script).main(argv)


@TRAINING_CLEAR
def test_an_ldm_whose_vqvae_config_does_not_fit_its_weights_is_named(train_pdae, tiny_ldm, tmp_path):
    """train_pdae.py on an LDM whose vqvae/config.json says latent_channels 4 (the weights make 3): refused naming the
    file and the entry (before: diffusers' message naming no component)."""
    ldm = copy_of(tiny_ldm, tmp_path)
    edit_json(ldm / "vqvae" / "config.json", latent_channels=4)
    with pytest.raises(ValueError, match=r"vqvae/config\.json does not match its weights.*latent_channels=4"):
        train_pdae.main(pdae_on(ldm, tmp_path / "out"))


@pytest.fixture(scope="module")
def latent_run(train_pdae, tiny_ldm, tmp_path_factory) -> Path:
    """Two steps of train_pdae.py on the tiny LDM, checkpointed at step 2."""
    out = tmp_path_factory.mktemp("latent-run") / "run"
    train_pdae.main(pdae_on(tiny_ldm, out, "--checkpointing_steps", "2"))
    return out


@TRAINING_CLEAR
def test_export_checkpoint_names_the_dpms_missing_vqvae(latent_run, tiny_ldm, tmp_path):
    """export_checkpoint.py on a latent run's checkpoint whose LDM lost vqvae/ since: refused naming vqvae."""
    ldm = copy_of(tiny_ldm, tmp_path)
    shutil.rmtree(ldm / "vqvae")
    checkpoint = copy_of(latent_run / "checkpoint-2", tmp_path)
    edit_json(checkpoint / "pipeline.json", pretrained_model_name_or_path=str(ldm))
    with pytest.raises(FileNotFoundError, match=r"lists the autoencoder 'vqvae', but .*/vqvae has no config\.json"):
        export_checkpoint(str(checkpoint), str(tmp_path / "exported"))


@TRAINING_CLEAR
@pytest.mark.parametrize("change", ["scaling-factor", "weights"])
def test_resuming_after_the_autoencoder_changed_is_refused(train_pdae, latent_run, tiny_ldm, tmp_path, change):
    """Resume a latent run after the LDM's autoencoder changed ({change}: its config's scaling_factor edited from 0.5
    to 0.25, or vqvae/ replaced by another of the same layout): refused before step 3, naming the autoencoder and what
    changed (before: the run went on, on other latents)."""
    ldm = copy_of(tiny_ldm, tmp_path)
    if change == "scaling-factor":
        edit_json(ldm / "vqvae" / "config.json", scaling_factor=0.25)
    else:
        other = tiny_vqvae(seed=99)
        other.register_to_config(scaling_factor=0.5)
        other.save_pretrained(ldm / "vqvae")
    out = tmp_path / "resumed"
    shutil.copytree(latent_run / "checkpoint-2", out / "checkpoint-2")
    (out / "checkpoint-2" / "training_flags.json").write_text(
        (out / "checkpoint-2" / "training_flags.json").read_text().replace(str(tiny_ldm), str(ldm))
    )
    keywords = r"scaling_factor is now 0\.25.*scaled by 0\.5" if change == "scaling-factor" else r"not the one the run"
    with pytest.raises(ValueError, match=rf"frozen vae.*{keywords}"):
        train_pdae.main([*pdae_on(ldm, out, "--checkpointing_steps", "2", "--resume_from_checkpoint", "latest"),
                         "--max_train_steps", "3"])  # fmt: skip
