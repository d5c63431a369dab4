"""Path flags naming the wrong kind of thing (issue 33): a file where a folder belongs (the output folder, data, a
model folder or checkpoint, the logging folder), a folder where a file belongs, a folder under a file. Each is refused
by the scripts' argument parsing (or the first line of `main`), naming the flag, before anything is loaded."""

from pathlib import Path

import pytest

from ..conftest import load_script
from .conftest import CLEAR, pdae_flags

pytestmark = [pytest.mark.reliability(area="training"), CLEAR]


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a folder")
    return path


def flag_value(flag: str, a_file: Path) -> str:
    """A file for a folder flag; a path under that file for --output_dir's second case; for --logging_dir (relative
    to --output_dir) that file seen from the output folder."""
    return {"output_dir/under": str(a_file / "run"), "logging_dir": f"../{a_file.name}"}.get(flag, str(a_file))


TRAIN_PDAE_FLAGS = ["output_dir", "output_dir/under", "logging_dir", "pretrained_model_name_or_path", "dataset_name",
                    "train_data_dir", "validation_data_dir", "cache_dir", "init_from_pipeline",
                    "resume_from_checkpoint"]  # fmt: skip


@pytest.mark.parametrize("flag", TRAIN_PDAE_FLAGS)
def test_train_pdae_refuses_a_file_where_a_folder_belongs(tiny_dpm, tmp_path, a_file, flag):
    """`train_pdae.py --{flag} <a file>` (or a path under a file): refused at parse time naming --{flag} (before:
    FileExistsError, NotADirectoryError, "a Hub id: loading it needs the network", datasets' "Couldn't find any data
    file", or a message naming --train_data_dir for --validation_data_dir)."""
    name, value = flag.split("/")[0], flag_value(flag, a_file)
    out = Path(value) if name == "output_dir" else tmp_path / "out"
    argv = pdae_flags(tiny_dpm, out, *([] if name == "output_dir" else [f"--{name}", value]))
    with pytest.raises(ValueError, match=rf"--{name} .* (is a file, not a folder|lies under .*, which is a file)"):
        load_script("train_pdae").parse_args(argv)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["pretrained_vae_model_name_or_path", "output_dir"])
def test_train_dpm_refuses_a_file_where_a_folder_belongs(tmp_path, a_file, flag):
    """`train_dpm.py --{flag} <a file>`: refused at parse time naming --{flag}."""
    argv = ["--output_dir", str(tmp_path / "out"), "--max_train_steps", "1", f"--{flag}", str(a_file)]
    with pytest.raises(ValueError, match=rf"--{flag} .* is a file, not a folder"):
        load_script("train_dpm").parse_args(argv)


@pytest.mark.parametrize("case", ["pipeline-file", "json-folder", "json-in-missing-folder"])
def test_evaluate_reconstruction_refuses_a_path_of_the_wrong_kind(tmp_path, a_file, case):
    """`evaluate_reconstruction.py` with {case} (--pipeline a file; --json a folder; --json in a folder that does not
    exist): refused before the pipeline is loaded, naming the flag (before: the figures were computed, then the JSON
    could not be written)."""
    argv = {
        "pipeline-file": ["--pipeline", str(a_file)],
        "json-folder": ["--json", str(tmp_path)],
        "json-in-missing-folder": ["--json", str(tmp_path / "missing" / "figures.json")],
    }[case]
    flag = argv[0]
    with pytest.raises(ValueError, match=rf"{flag} .* (is a file, not a folder|is a folder, not a file|cannot be)"):
        load_script("evaluate_reconstruction").main(argv)


@pytest.mark.parametrize("which", ["checkpoint", "output_dir"])
def test_export_checkpoint_refuses_a_file_where_a_folder_belongs(tmp_path, a_file, which):
    """`export_checkpoint.py` with its {which} argument a file: refused naming it, before anything is read."""
    argv = [str(a_file), str(tmp_path / "out")] if which == "checkpoint" else [str(tmp_path), str(a_file)]
    with pytest.raises(ValueError, match=rf"^{which} .* is a file, not a folder"):
        load_script("export_checkpoint").parse_args(argv)


def test_a_missing_validation_folder_is_named_as_such(tiny_dpm, tmp_path):
    """`train_pdae.py --validation_data_dir <a folder that does not exist>`: refused before step 1 naming
    --validation_data_dir (before: the message named --train_data_dir, which the user had not passed)."""
    argv = pdae_flags(tiny_dpm, tmp_path / "out", "--validation_data_dir", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"^--validation_data_dir .*missing is not a folder"):
        load_script("train_pdae").main(argv)
