"""Export a training checkpoint to a pipeline folder (EMA weights when the run kept them), without resuming.

python examples/export_checkpoint.py pdae-run/checkpoint-500 pdae-step-500
python examples/export_checkpoint.py ddpm-run/checkpoint-2000 ddpm-step-2000 --no_ema
"""

from __future__ import annotations

import argparse

from diffusers_pdae.training import check_path_flags, make_parser
from diffusers_pdae.training.export import export_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("checkpoint", help="A checkpoint-<step> folder of examples/train_pdae.py or train_dpm.py.")
    parser.add_argument("output_dir", help="Where to save the pipeline.")
    parser.add_argument("--no_ema", action="store_true", help="Export the raw weights, not the EMA.")
    args = parser.parse_args(argv)
    check_path_flags(args, positional=("checkpoint", "output_dir"))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    pipeline = export_checkpoint(args.checkpoint, args.output_dir, use_ema=not args.no_ema)
    print(f"Saved {type(pipeline).__name__} to {args.output_dir}")


if __name__ == "__main__":
    main()
