"""Data throughput of training: images per second that the streamed path (`--streaming` on webdataset `.tar` shards)
and the map-style path (`--train_data_dir`, an image folder) deliver to the training loop, with 0, 1 and 2
DataLoader workers, so that loading is never the bottleneck of a step.

    python benchmarks/bench_data.py                              # 512 random 256-px RGB PNGs, batch 32, workers 0 1 2
    python benchmarks/bench_data.py --images 64 --size 32 --workers 0 --passes 1   # a quick check that it runs

It writes the same random RGB PNGs (incompressible noise: the slowest PNGs to decode) once as an image folder and
once as webdataset shards (`{key}.png` members, `--per_shard` per `.tar`), then times whole passes of each path as
the training scripts build it: `load_training_dataset` (the map-style path without its one-off pre-pass over every
image, `--skip_image_check`; the streamed path with `--shuffle_buffer_size`), converted to `--resolution` and batched
by the run's DataLoader (the streamed one through `diffusers_pdae.training.streaming.prepare_stream`: its stateful
DataLoader and passes). Each figure is the best of `--passes` passes; a pass includes starting its workers, as each
epoch of a run does. Prints a Markdown table (and writes JSON with `--json`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch


def random_png(generator: np.random.Generator, size: int) -> bytes:
    """A random RGB `size`x`size` PNG."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(generator.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_webdataset_shards(
    folder: Path, pngs: list[bytes], per_shard: int, corrupt: tuple[int, ...] = ()
) -> list[Path]:
    """`pngs` as webdataset shards `shard-00000.tar`, ... in `folder`, `per_shard` `{key}.png` members each (keys
    `000000`, `000001`, ...); the images at the indices `corrupt` are cut in half (unreadable)."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for start in range(0, len(pngs), per_shard):
        shards.append(folder / f"shard-{start // per_shard:05d}.tar")
        with tarfile.open(shards[-1], "w") as tar:
            for index in range(start, min(start + per_shard, len(pngs))):
                data = pngs[index][: len(pngs[index]) // 2] if index in corrupt else pngs[index]
                member = tarfile.TarInfo(f"{index:06d}.png")
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    return shards


def write_image_folder(folder: Path, pngs: list[bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(pngs):
        (folder / f"{index:06d}.png").write_bytes(data)
    return folder


def timed_pass(batches) -> tuple[int, float]:
    """(images, seconds) of one pass over `batches`."""
    started, images = time.perf_counter(), 0
    for batch in batches:
        images += batch["pixel_values"].shape[0]
    return images, time.perf_counter() - started


def map_style_passes(folder: Path, args, workers: int) -> list[tuple[int, float]]:
    from diffusers_pdae.data import load_training_dataset

    dataset = load_training_dataset(None, None, str(folder), "image", 3, args.resolution, check_images=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=workers)
    return [timed_pass(loader) for _ in range(args.passes)]


def streamed_passes(folder: Path, args, workers: int) -> list[tuple[int, float]]:
    from accelerate import Accelerator

    from diffusers_pdae.data import load_training_dataset
    from diffusers_pdae.training.config import TrainingConfig
    from diffusers_pdae.training.streaming import prepare_stream

    stream = load_training_dataset(str(folder), None, None, "image", 3, args.resolution, streaming=True)
    config = TrainingConfig(
        output_dir=tempfile.mkdtemp(), train_batch_size=args.batch_size, shuffle_buffer_size=args.shuffle_buffer_size
    )
    position = prepare_stream(Accelerator(cpu=True), config, stream, workers)
    passes = []
    for epoch in range(args.passes):
        position.dataloader.set_epoch(epoch)
        passes.append(timed_pass(position.batches(epoch)))
    return passes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="Images written (and read per pass).")
    parser.add_argument("--size", type=int, default=256, help="Side of the written PNGs.")
    parser.add_argument("--resolution", type=int, default=None, help="Training resolution (default: --size).")
    parser.add_argument("--per_shard", type=int, default=64, help="Images per webdataset shard.")
    parser.add_argument("--batch_size", type=int, default=32, help="--train_batch_size.")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="--dataloader_num_workers.")
    parser.add_argument("--shuffle_buffer_size", type=int, default=1000, help="The stream's shuffle buffer.")
    parser.add_argument("--passes", type=int, default=2, help="Timed passes per configuration (the best counts).")
    parser.add_argument("--folder", type=str, default=None, help="Where to write the data (default: a temp folder).")
    parser.add_argument("--json", type=str, default=None, help="Also write the results here.")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    args.resolution = args.resolution or args.size
    root = Path(args.folder or tempfile.mkdtemp(prefix="bench-data-"))
    generator = np.random.default_rng(0)
    pngs = [random_png(generator, args.size) for _ in range(args.images)]
    folders = {
        "map-style (image folder)": (write_image_folder(root / "images", pngs), map_style_passes),
        "streamed (webdataset shards)": (root / "shards", streamed_passes),
    }
    write_webdataset_shards(root / "shards", pngs, args.per_shard)
    torch.manual_seed(0)
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "runs": {}}
    for name, (folder, passes_of) in folders.items():
        for workers in args.workers:
            passes = passes_of(folder, args, workers)
            images, seconds = min(passes, key=lambda run: run[1])
            results["runs"][f"{name}, {workers} workers"] = {
                "path": name, "workers": workers, "images": images, "images_per_second": round(images / seconds, 1),
            }  # fmt: skip
    results["setup"] = {key: getattr(args, key) for key in ("images", "size", "resolution", "per_shard", "batch_size")}
    print(f"\n{args.images} random {args.size}-px RGB PNGs to {args.resolution} px, batch {args.batch_size}, "
          f"{results['machine']}\n")  # fmt: skip
    print("| path | workers | images/s |\n| --- | --- | --- |")
    for run in results["runs"].values():
        print(f"| {run['path']} | {run['workers']} | {run['images_per_second']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
