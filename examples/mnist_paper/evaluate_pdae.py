"""Evaluate a PDAE MNIST pipeline: reconstruction, linear probes against baselines, the paper's figures 1, 3 and 5.

    python examples/mnist_paper/evaluate_pdae.py                                # bundled pdae-mnist -> docs/results
    python examples/mnist_paper/evaluate_pdae.py --out /tmp/results --quick    # a few minutes

Writes to --out: README.md (tables, targets, plots), results.json (every figure) and PNG plots and grids. Fitting uses
the bundled train split only, scoring the test split; everything is seeded. See
`EvaluationConfig` in `evaluation_suite.py` for what each size flag controls.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace

import torch
from evaluation_suite import EvaluationConfig, run_evaluation

import diffusers_pdae  # noqa: F401  (registers the PDAE classes with diffusers)

# Flags that override a field of EvaluationConfig (after --quick's preset), with their types.
SIZE_FLAGS = {
    "reconstruction_digits": int,
    "reconstruction_steps": int,
    "probe_train": int,
    "probe_test": int,
    "baseline_epochs": int,
    "baseline_max_seconds": float,
    "inversion_probe_train": int,
    "inversion_probe_test": int,
    "curve_digits": int,
    "curve_stride": int,
    "stage_samples": int,
    "stage_steps": int,
    "fd_samples": int,
    "grid_steps": int,
    "batch_size": int,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pipeline",
        default=EvaluationConfig.pipeline,
        help="A saved PDAEPipeline folder (default: bundled pdae-mnist).",
    )
    parser.add_argument("--out", default=EvaluationConfig.out, help="Output folder (default: docs/results).")
    parser.add_argument(
        "--conditional_dpm",
        default=EvaluationConfig.conditional_dpm,
        help="Class-conditional UNet2DModel (pipeline or model folder) for Figure 1; 'none' skips it.",
    )
    parser.add_argument("--classifier", default=None, help="DigitClassifier folder (default: the bundled one).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="Few digits and steps: a smoke test of a few minutes.")
    parser.add_argument("--stage_fp32", action="store_true", help="No bfloat16 autocast in the critical-stage search.")
    parser.add_argument("--num_threads", type=int, default=None, help="torch threads (default: torch's choice).")
    for name, kind in SIZE_FLAGS.items():
        plural = name == "reconstruction_steps"
        parser.add_argument(f"--{name}", type=kind, nargs="+" if plural else None, default=None)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> EvaluationConfig:
    conditional = None if str(args.conditional_dpm).lower() == "none" else args.conditional_dpm
    config = EvaluationConfig(
        pipeline=args.pipeline, out=args.out, conditional_dpm=conditional, classifier=args.classifier, seed=args.seed
    )
    if args.quick:
        config = config.quick_preset()
    overrides = {name: getattr(args, name) for name in SIZE_FLAGS if getattr(args, name) is not None}
    if "reconstruction_steps" in overrides:
        overrides["reconstruction_steps"] = tuple(overrides["reconstruction_steps"])
    if args.stage_fp32:
        overrides["stage_autocast"] = False
    return replace(config, **overrides)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    argv = sys.argv[1:] if argv is None else argv
    command = "python examples/mnist_paper/evaluate_pdae.py " + " ".join(shlex.quote(a) for a in argv)
    results = run_evaluation(build_config(args), command)
    print(f"\nWrote {args.out}/README.md, results.json and plots in {results['wall_time_s'] / 60:.1f} min.")
    for target in results["targets"]:
        print(f"  [{target['met']!s:>5}] {target['name']}: {target['measured']} (required {target['target']})")
    return results


if __name__ == "__main__":
    main()
