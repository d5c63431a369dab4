"""Compare trained PDAE pipelines that differ in their encoder (or in any training setting) on the bundled MNIST.

    python examples/mnist_paper/compare_encoders.py --run light=work_dirs/encoders/light \
        --run residual=work_dirs/encoders/residual --step_times work_dirs/encoders/step_times.json \
        --out docs/results/encoders

For each run: parameters, training steps and batch (from its training_info.json), the linear probe on z (all 8,000
train / 2,000 test digits), reconstructions of 64 class-balanced test digits from the inferred x_T and from a random
x_T (z only) at T = 10, 20, 50 and z only at T = 100, and the posterior-mean-gap ratio PDAE / DPM over t. Plain DDIM
inversion of the DPM (no z) is the same for every run and is reported once. Writes `encoders.json`, `README.md` (the
table and the targets) and `reconstructions.png` to --out.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from pathlib import Path

import torch
from representation_baselines import pdae_codes

import diffusers_pdae  # noqa: F401  (registers the PDAE classes with diffusers)
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import load_mnist_tensors
from diffusers_pdae.evaluation import (
    curve_timesteps,
    diffusion_curves,
    linear_probe,
    reconstruction_study,
    stratified_indices,
)
from diffusers_pdae.evaluation.reconstruction import image_scores, summarise
from diffusers_pdae.image_utils import labelled_rows

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"probe": 0.97, "gap_ratio": 0.5, "z_only_ssim_T100": 0.92}
NUM_EXAMPLES = 10  # digits in the grid (reconstruction_study keeps its first 10)
# Run names that train_encoder_design.sh and train_study_variant.sh make with one command each.
SCRIPTED_DESIGNS = ("light", "residual", "residual-warm", "convnext")
STUDY_SCRIPT = REPO_ROOT / "examples" / "mnist_paper" / "train_study_variant.sh"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run", action="append", required=True, metavar="NAME=FOLDER", help="A saved PDAEPipeline, by name."
    )
    parser.add_argument("--out", required=True, help="Output folder.")
    parser.add_argument("--step_times", default=None, help="JSON of benchmarks/benchmark_training_step.py --json.")
    parser.add_argument("--reconstruction_digits", type=int, default=64)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--z_only_steps", type=int, default=100)
    parser.add_argument("--probe_train", type=int, default=None, help="Train digits for the probe (default: all).")
    parser.add_argument("--probe_test", type=int, default=None, help="Test digits for the probe (default: all).")
    parser.add_argument("--curve_digits", type=int, default=128)
    parser.add_argument("--curve_stride", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="Where the pipelines run (the digits and the x_T are drawn on the CPU either way).",
    )
    parser.add_argument("--title", default="Encoder designs compared", help="Heading of the written README.md.")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Keep the figures of runs already in --out/encoders.json with the same name, folder and settings; "
        "evaluate only the others.",
    )
    args = parser.parse_args(argv)
    runs = {}
    for entry in args.run:
        name, sep, folder = entry.partition("=")
        if not sep or not name or not (args.reuse or Path(folder, "model_index.json").is_file()):
            parser.error(f"--run {entry!r}: give NAME=FOLDER with a saved PDAEPipeline in FOLDER.")
        runs[name] = folder
    args.runs = runs
    return args


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def training_summary(folder: str) -> dict:
    """Steps, batch and encoder flags from the run's training_info.json (absent for hand-made pipelines)."""
    path = Path(folder, "training_info.json")
    if not path.is_file():
        return {}
    info = json.loads(path.read_text())
    flags = info.get("flags", {})
    return {
        "global_step": info.get("global_step"),
        "train_batch_size": flags.get("train_batch_size"),
        "num_processes": info.get("num_processes"),
        "encoder_type": flags.get("encoder_type", "light"),
        "lambda_gamma": flags.get("lambda_gamma"),
        "latent_dim": flags.get("latent_dim"),
        "use_ema": flags.get("use_ema"),
    }


def z_only_ssim(pipeline: PDAEPipeline, images: torch.Tensor, steps: int, seed: int) -> tuple[dict, torch.Tensor]:
    """SSIM (mean, s.e.m.) of z-only decodings `(N, C, H, W)` from a seeded random x_T, and the decodings."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    decoded = pipeline.decode(noise, pipeline.encode(images), steps, output_type="pt").images.float().cpu()
    references = (images / 2 + 0.5).clamp(0, 1)
    return summarise(image_scores(decoded, references)["ssim"]), decoded


def settings_of(args: argparse.Namespace) -> dict:
    """What a run's figures depend on besides its folder."""
    keys = ("reconstruction_digits", "steps", "z_only_steps", "probe_train", "probe_test", "curve_digits", "seed")
    return {key: getattr(args, key) for key in (*keys, "curve_stride", "device")}


def same_settings(recorded: dict | None, args: argparse.Namespace) -> bool:
    """Whether figures recorded with `recorded` settings answer this run's question. The device is kept in the
    record and shown in the report, but not compared: runs measured on a GPU are reused on the CPU."""
    if recorded is None:
        return False
    wanted = settings_of(args)
    return all(recorded.get(key) == wanted[key] for key in wanted if key != "device")


def reusable_results(args: argparse.Namespace) -> dict:
    """Runs of a previous `encoders.json` in --out that were measured on the same folder with the same settings."""
    path = Path(args.out, "encoders.json")
    if not args.reuse or not path.is_file():
        return {}
    previous = json.loads(path.read_text())["runs"]
    return {
        name: result
        for name, result in previous.items()
        if result.get("folder") == args.runs.get(name) and same_settings(result.get("settings"), args)
    }


def evaluate_run(pipeline: PDAEPipeline, data: dict, args: argparse.Namespace) -> tuple[dict, dict]:
    started = time.perf_counter()
    recon_images = data["test_images"][data["recon_idx"]]
    figures, examples = reconstruction_study(pipeline, recon_images, args.steps, args.seed)
    z_only_long, decoded_long = z_only_ssim(pipeline, recon_images, args.z_only_steps, args.seed)
    train_idx, test_idx = data["probe_train_idx"], data["probe_test_idx"]
    probe = linear_probe(
        pdae_codes(pipeline, data["train_images"][train_idx]),
        data["train_labels"][train_idx],
        pdae_codes(pipeline, data["test_images"][test_idx]),
        data["test_labels"][test_idx],
        seed=args.seed,
    )
    curve_images = data["test_images"][data["curve_idx"]]
    timesteps = curve_timesteps(pipeline.num_train_timesteps, args.curve_stride)
    curves = diffusion_curves(
        pipeline, curve_images, data["test_labels"][data["curve_idx"]], timesteps, seed=args.seed
    )
    gaps = {name: curves.average_gap(name) for name in curves.posterior_mean_gap}
    result = {
        "parameters": {
            "encoder": count_parameters(pipeline.encoder),
            "gradient_estimator": count_parameters(pipeline.gradient_estimator),
        },
        "encoder_class": type(pipeline.encoder).__name__,
        "latent_dim": pipeline.latent_dim,
        "probe_accuracy": probe.test_accuracy,
        "probe_digits": [probe.num_train, probe.num_test],
        "probe_C": probe.C,
        "reconstruction": figures,
        f"z_only_ssim_T{args.z_only_steps}": z_only_long,
        "posterior_mean_gap": gaps,
        "gap_ratio": gaps["pdae"] / gaps["dpm"],
        "seconds": time.perf_counter() - started,
    }
    first = examples[min(args.steps)]
    pictures = {"original": first["original"], "inferred": first["pdae_inferred_xT"]}
    pictures["z_only_long"] = decoded_long[: len(first["original"])]
    return result, pictures


def example_pictures(pipeline: PDAEPipeline, data: dict, args: argparse.Namespace) -> dict:
    """The grid rows of a reused run: its first digits, decoded with the same steps and x_T as `evaluate_run` drew
    (computed on these digits alone, so a pixel may differ in the last bit)."""
    all_images = data["test_images"][data["recon_idx"]]
    images = all_images[:NUM_EXAMPLES]
    noise = torch.randn(all_images.shape, generator=torch.Generator().manual_seed(args.seed))[:NUM_EXAMPLES]
    z = pipeline.encode(images)
    steps = min(args.steps)
    inferred = pipeline.decode(pipeline.invert(images, z, steps), z, steps, output_type="pt").images
    z_only = pipeline.decode(noise, z, args.z_only_steps, output_type="pt").images
    return {
        "original": (images / 2 + 0.5).clamp(0, 1),
        "inferred": inferred.float().cpu(),
        "z_only_long": z_only.float().cpu(),
    }


def load_data(args: argparse.Namespace, size: int) -> dict:
    train_images, train_labels = load_mnist_tensors("train", size=size)
    test_images, test_labels = load_mnist_tensors("test", size=size)
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
        "recon_idx": stratified_indices(test_labels.numpy(), args.reconstruction_digits, args.seed),
        "probe_train_idx": stratified_indices(
            train_labels.numpy(), args.probe_train or len(train_labels), args.seed + 1
        ),
        "probe_test_idx": stratified_indices(test_labels.numpy(), args.probe_test or len(test_labels), args.seed + 1),
        "curve_idx": stratified_indices(test_labels.numpy(), args.curve_digits, args.seed + 2),
    }


def _scores(result: dict, steps: int, kind: str) -> tuple[float, float]:
    figures = result["reconstruction"][str(steps)][kind]
    return figures["psnr"]["mean"], figures["ssim"]["mean"]


def table_rows(results: dict, args: argparse.Namespace, step_times: dict) -> list[str]:
    long_key = f"z_only_ssim_T{args.z_only_steps}"
    header = [
        "run",
        "encoder",
        "params E / G",
        "z / gamma / EMA",
        "steps x batch",
        "s / train step",
        "probe (%)",
        f"z-only SSIM T={args.z_only_steps}",
    ]
    header += [f"inferred T={t} PSNR / SSIM" for t in args.steps]
    header += [f"z only T={t} SSIM" for t in args.steps] + ["gap ratio"]
    rows = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, result in results.items():
        training = result["training"]
        budget = (
            f"{training['global_step']:,} x {training['train_batch_size']}" if training.get("global_step") else "n/a"
        )
        step_time = step_times.get(result["encoder_class"])
        cells = [
            name,
            result["encoder_class"],
            f"{result['parameters']['encoder'] / 1e3:.0f}k / {result['parameters']['gradient_estimator'] / 1e6:.2f}M",
            recipe_cell(result),
            budget,
            f"{step_time:.3f}" if step_time else "n/a",
            f"{100 * result['probe_accuracy']:.2f}",
            f"{result[long_key]['mean']:.3f}",
        ]
        cells += ["{:.2f} / {:.3f}".format(*_scores(result, t, "pdae_inferred_xT")) for t in args.steps]
        cells += [f"{_scores(result, t, 'pdae_random_xT')[1]:.3f}" for t in args.steps]
        cells.append(f"{result['gap_ratio']:.3f}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def recipe_cell(result: dict) -> str:
    """z width, lambda_t's gamma and EMA of a run ("n/a" for a pipeline without training_info.json)."""
    training = result["training"]
    if not training.get("latent_dim"):
        return f"{result['latent_dim']} / n/a / n/a" if "latent_dim" in result else "n/a"
    ema = "yes" if training.get("use_ema") else "no"
    return f"{training['latent_dim']} / {training['lambda_gamma']} / {ema}"


def plain_inversion_rows(result: dict, steps: list[int]) -> list[str]:
    rows = ["| T | plain DDIM inversion PSNR (dB) | SSIM |", "| --- | --- | --- |"]
    for t in steps:
        psnr, ssim = _scores(result, t, "ddim_inversion")
        rows.append(f"| {t} | {psnr:.2f} | {ssim:.3f} |")
    return rows


def target_lines(results: dict, args: argparse.Namespace) -> list[str]:
    long_key = f"z_only_ssim_T{args.z_only_steps}"
    first, longest = min(args.steps), max(args.steps)
    lines = []
    for name, result in results.items():
        inferred, plain = _scores(result, first, "pdae_inferred_xT"), _scores(result, longest, "ddim_inversion")
        z_only = result[long_key]["mean"]
        checks = [
            f"probe {100 * result['probe_accuracy']:.2f}% (>= 97%: {result['probe_accuracy'] >= TARGETS['probe']})",
            f"gap ratio {result['gap_ratio']:.3f} (<= 0.5: {result['gap_ratio'] <= TARGETS['gap_ratio']})",
            f"z-only SSIM {z_only:.3f} (>= 0.92: {z_only >= TARGETS['z_only_ssim_T100']})",
            f"inferred T={first} {inferred[0]:.2f} dB / {inferred[1]:.3f} vs plain T={longest} {plain[0]:.2f} dB / "
            f"{plain[1]:.3f} ({inferred[0] >= plain[0] and inferred[1] >= plain[1]})",
        ]
        lines.append(f"- **{name}**: " + "; ".join(checks))
    return lines


def provenance_lines(results: dict) -> list[str]:
    lines, variants = [], study_variants()
    for name, result in results.items():
        if name in SCRIPTED_DESIGNS:
            how = f"`bash examples/mnist_paper/train_encoder_design.sh {name}`"
        elif name in variants:
            how = f"`bash examples/mnist_paper/train_study_variant.sh {name}`"
        elif result["training"]:
            how = "`examples/train_pdae.py` (flags in its training_info.json)"
        else:
            how = "a pipeline without training_info.json (the bundled pdae-mnist: docs/bundled_checkpoints.md)"
        lines.append(f"- {name}: {how}")
    return lines


def study_variants() -> tuple[str, ...]:
    """The variant names train_study_variant.sh knows (its `case` labels)."""
    names = re.findall(r"^\s*([a-z0-9.|-]+)\)", STUDY_SCRIPT.read_text(), flags=re.MULTILINE)
    return tuple(part for name in names for part in name.split("|"))


def timing_text(timing: dict) -> str:
    if not timing:
        return "No step times were given (--step_times)."
    seconds = timing["seconds_per_step"]
    return (
        "Seconds per training step: median of `benchmarks/benchmark_training_step.py` (bf16 autocast, batch "
        f"{timing['batch_size']}, {timing['threads']} torch thread(s)); a DDPM step of the same UNet takes "
        f"{seconds['ddpm bf16-autocast']:.3f} s there."
    )


def devices_text(results: dict) -> str:
    """Where each run's figures were measured (older records, without a device, were measured on the CPU)."""
    by_device: dict[str, list[str]] = {}
    for name, result in results.items():
        by_device.setdefault(result.get("settings", {}).get("device", "cpu"), []).append(name)
    return "Measured on " + "; ".join(f"{device}: {', '.join(names)}" for device, names in by_device.items()) + "."


def write_report(results: dict, args: argparse.Namespace, step_times: dict, command: str, timing: dict) -> None:
    out = Path(args.out)
    first = next(iter(results.values()))
    lines = [
        f"# {args.title}",
        "",
        f"Generated by `{command}`. Every figure is also in `encoders.json`.",
        "",
        f"Test digits: {args.reconstruction_digits} class-balanced for the reconstructions (T DDIM steps for both the "
        "inversion and the decoding; z only = decoded from a seeded random x_T), all 2,000 for the probe (fit on all "
        f"8,000 train digits, C picked on a held-out fifth), {args.curve_digits} for the posterior-mean gap (every "
        f"{args.curve_stride}th t plus the small ones; ratio of averages over all t). {timing_text(timing)}",
        "",
        devices_text(results),
        "",
        *table_rows(results, args, step_times),
        "",
        "How each run was made:",
        "",
        *provenance_lines(results),
        "",
        "Plain DDIM inversion of the DPM (no z), the bar for the inferred x_T, on the same digits:",
        "",
        *plain_inversion_rows(first, args.steps),
        "",
        "## Targets (issue 13)",
        "",
        *target_lines(results, args),
        "",
        "![reconstructions](reconstructions.png)",
        "",
        f"Rows: originals, then for each run the inferred-x_T reconstruction at T={min(args.steps)} and the z-only "
        f"decoding at T={args.z_only_steps} (runs whose folder was absent here have no rows).",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def main(argv=None) -> dict:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    shown = [arg.replace(str(REPO_ROOT) + "/", "") for arg in argv]
    command = "python examples/mnist_paper/compare_encoders.py " + " ".join(shlex.quote(a) for a in shown)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timing = json.loads(Path(args.step_times).read_text()) if args.step_times else {}
    step_times = timing.get("pdae_step_by_encoder", {})
    results, rows, data = {}, None, None
    reusable = reusable_results(args)
    absent = [name for name, folder in args.runs.items() if not Path(folder, "model_index.json").is_file()]
    if unmeasured := [name for name in absent if name not in reusable]:
        raise SystemExit(f"No saved PDAEPipeline for {unmeasured} and no figures of theirs to reuse in {out}.")
    for name, folder in args.runs.items():
        print(f"[compare] {name}: {folder}", flush=True)
        if name in absent:
            # Measured elsewhere (a GPU machine, say) whose weights did not come back: a table row, no pictures.
            results[name] = reusable[name]
            print(f"[compare] {name}: folder absent here; figures reused, no pictures", flush=True)
            continue
        pipeline = PDAEPipeline.from_pretrained(folder).to(args.device)
        pipeline.set_progress_bar_config(disable=True)
        data = data or load_data(args, pipeline.unet.config.sample_size)
        if name in reusable:
            results[name] = reusable[name]
            pictures = example_pictures(pipeline, data, args)
            print(f"[compare] {name}: figures reused from {out / 'encoders.json'}", flush=True)
        else:
            results[name], pictures = evaluate_run(pipeline, data, args)
            results[name].update(training=training_summary(folder), folder=folder, settings=settings_of(args))
            print(f"[compare] {name} done in {results[name]['seconds']:.0f} s", flush=True)
        rows = rows or [("original", pictures["original"])]
        rows.append((f"{name}: inferred x_T, T={min(args.steps)}", pictures["inferred"]))
        rows.append((f"{name}: z only, T={args.z_only_steps}", pictures["z_only_long"]))
    if rows:
        labelled_rows(rows).save(out / "reconstructions.png")
    (out / "encoders.json").write_text(json.dumps({"command": command, "runs": results}, indent=2) + "\n")
    write_report(results, args, step_times, command, timing)
    print("\n".join(table_rows(results, args, step_times)))
    return results


if __name__ == "__main__":
    main()
