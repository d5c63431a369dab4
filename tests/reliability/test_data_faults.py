"""Damaged data sources and a full disk (issue 33): a truncated webdataset shard, a dataset folder with nothing to
read, a parquet image column holding bytes, paths or numbers, and a disk that fills while a checkpoint or the final
pipeline is written. Each runs `train_pdae.py`'s `main(argv)` in process (refused before step 1, or two steps)."""

import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import safetensors.torch
from safetensors import SafetensorError

from diffusers_pdae.data import load_training_dataset

from ..conftest import load_script
from .conftest import CLEAR, HANDLED, pdae_flags
from .test_resume_faults import digit_shards

pytestmark = pytest.mark.reliability(area="training")


@pytest.fixture(scope="module")
def train_pdae():
    return load_script("train_pdae")


@CLEAR
@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "map-style"])
def test_a_truncated_webdataset_shard_is_named_before_training(train_pdae, tiny_dpm, tmp_path, streaming):
    """--dataset_name a folder of two webdataset shards, the second cut short (streamed: {streaming}): refused before
    step 1 naming the shard (before: datasets read it as a shorter shard, silently)."""
    shards = digit_shards(tmp_path / "shards")
    damaged = shards / "shard-00001.tar"
    damaged.write_bytes(damaged.read_bytes()[:5000])
    extra = ["--streaming"] if streaming else ["--image_column", "png"]
    argv = pdae_flags(tiny_dpm, tmp_path / "out", "--dataset_name", str(shards), *extra)
    with pytest.raises(ValueError, match=r"--dataset_name .*shards: the shard shard-00001\.tar is truncated"):
        train_pdae.main(argv)


@CLEAR
@pytest.mark.parametrize("content", ["nothing", "a README only"])
@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "map-style"])
def test_a_dataset_folder_with_nothing_to_read_is_named(train_pdae, tiny_dpm, tmp_path, content, streaming):
    """--dataset_name a folder holding {content} (streamed: {streaming}): refused before step 1 naming --dataset_name
    and the folder (before: datasets' "corresponds to no data" or "Couldn't infer the same data file format")."""
    folder = tmp_path / "data"
    folder.mkdir()
    if content != "nothing":
        (folder / "README.md").write_text("# my dataset\n")
    argv = pdae_flags(tiny_dpm, tmp_path / "out", "--dataset_name", str(folder), *(["--streaming"] * streaming))
    with pytest.raises(ValueError, match=r"--dataset_name .*data holds (no files|files of other kinds only)"):
        train_pdae.main(argv)


def parquet_folder(folder: Path, column: list) -> Path:
    """`folder/train.parquet` with one column, "image"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    pq.write_table(pa.table({"image": column}), folder / "train.parquet")
    return folder


def png_bytes(count: int, seed: int = 0) -> list[bytes]:
    generator, pngs = np.random.default_rng(seed), []
    for _ in range(count):
        buffer = io.BytesIO()
        PIL.Image.fromarray(generator.integers(0, 256, (20, 20), dtype=np.uint8)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


@HANDLED
@pytest.mark.parametrize("kind", ["bytes", "paths"])
@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "map-style"])
def test_a_parquet_image_column_of_encoded_bytes_or_paths_is_read_as_images(tmp_path, kind, streaming):
    """A parquet dataset whose "image" column holds {kind} (PNG bytes, or paths to PNG files) rather than datasets
    images (streamed: {streaming}): each is decoded as the image it encodes (before: AttributeError "'bytes' object
    has no attribute 'load'")."""
    pngs = png_bytes(4)
    paths = []
    for index, data in enumerate(pngs):
        paths.append(str(tmp_path / f"{index}.png"))
        Path(paths[-1]).write_bytes(data)
    folder = parquet_folder(tmp_path / "data", pngs if kind == "bytes" else paths)
    dataset = load_training_dataset(str(folder), None, None, "image", 1, 16, streaming=streaming)
    items = list(dataset) if streaming else [dataset[index] for index in range(len(dataset))]
    expected = np.asarray(PIL.Image.open(io.BytesIO(pngs[0])).resize((16, 16), PIL.Image.BICUBIC), dtype=np.float32)
    assert len(items) == 4 and items[0]["pixel_values"].shape == (1, 16, 16)
    assert np.allclose((items[0]["pixel_values"][0].numpy() + 1) * 127.5, expected, atol=1.0)


@CLEAR
@pytest.mark.parametrize("column", [[1.5, 2.5, 3.5], ["not/an/image.png"] * 3], ids=["numbers", "missing-paths"])
def test_a_parquet_image_column_of_something_else_is_named_before_training(train_pdae, tiny_dpm, tmp_path, column):
    """--dataset_name a parquet dataset whose "image" column holds {column}: refused before step 1 naming the image
    column and what it holds (before: AttributeError "'float' object has no attribute 'load'")."""
    folder = parquet_folder(tmp_path / "data", column)
    with pytest.raises(ValueError, match=r"the image column holds (a float|the text 'not/an/image\.png')"):
        train_pdae.main(pdae_flags(tiny_dpm, tmp_path / "out", "--dataset_name", str(folder)))


def disk_full_while_writing(monkeypatch, where: str) -> None:
    """safetensors' `save_file` fails as on a full disk for every file under a folder whose name contains `where`."""
    real = safetensors.torch.save_file

    def save_file(tensors, filename, metadata=None):
        if where in str(filename):
            raise SafetensorError(
                'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on '
                'device" })'
            )
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)


@CLEAR
def test_a_full_disk_while_a_checkpoint_is_written_stops_the_run_saying_what_is_kept(train_pdae, tiny_dpm, tmp_path,
                                                                                    monkeypatch):  # fmt: skip
    """The disk fills while checkpoint-2 is written (checkpoint-1 was): the run stops with an OSError naming
    checkpoint-2, the full disk, the checkpoint kept and --resume_from_checkpoint latest; no checkpoint-2.tmp is left,
    and the resumed run finishes (before: a raw SafetensorError)."""
    out = tmp_path / "out"
    flags = pdae_flags(tiny_dpm, out, "--checkpointing_steps", "1", steps=3)
    disk_full_while_writing(monkeypatch, "checkpoint-2.tmp")
    with pytest.raises(OSError) as error:
        train_pdae.main(flags)
    message = str(error.value)
    for needed in ("Could not write checkpoint-2", "No space left on device", "checkpoint-1, is kept",
                   "--resume_from_checkpoint latest"):  # fmt: skip
        assert needed in message, message
    assert sorted(path.name for path in out.glob("checkpoint-*")) == ["checkpoint-1"]
    monkeypatch.undo()
    train_pdae.main([*flags, "--resume_from_checkpoint", "latest"])
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 3


@CLEAR
def test_a_full_disk_while_the_pipeline_is_saved_keeps_the_checkpoints(train_pdae, tiny_dpm, tmp_path, monkeypatch):
    """The disk fills while the final pipeline is saved: an OSError naming --output_dir, the full disk and how to go
    on; the checkpoints stay and no staging folder is left beside the output folder."""
    out = tmp_path / "out"
    disk_full_while_writing(monkeypatch, ".saving-")
    with pytest.raises(OSError, match=r"Could not save the pipeline to --output_dir .*No space left on device"):
        train_pdae.main(pdae_flags(tiny_dpm, out, "--checkpointing_steps", "2"))
    assert (out / "checkpoint-2").is_dir() and sorted(path.name for path in tmp_path.iterdir()) == ["out"]
