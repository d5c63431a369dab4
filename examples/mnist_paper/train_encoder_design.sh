#!/usr/bin/env bash
# Train PDAE with one encoder design on the bundled MNIST DPM, with the budget of docs/results/encoders/:
#   bash examples/mnist_paper/train_encoder_design.sh residual              # -> work_dirs/encoders/residual
#   bash examples/mnist_paper/train_encoder_design.sh light --max_train_steps 3000 --output_dir /tmp/light-3k
# Designs: light, residual, residual-warm (initialised from the UNet's down half), convnext (a transformers ConvNeXt
# from examples/mnist_paper/encoder_designs/convnext-mnist.json, trained from scratch). Extra flags go to
# examples/train_pdae.py and win over the ones below. 1,500 steps at batch 64 take 19-25 min on 2 CPU cores.
set -euo pipefail
design="${1:?usage: train_encoder_design.sh light|residual|residual-warm|convnext [train_pdae.py flags]}"
shift
here="$(cd "$(dirname "$0")" && pwd)"
case "$design" in
  light) encoder=(--encoder_type light) ;;
  residual) encoder=(--encoder_type residual) ;;
  residual-warm) encoder=(--encoder_type residual --encoder_warm_start_from_unet) ;;
  convnext) encoder=(--encoder_type transformers --encoder_backbone_config "$here/encoder_designs/convnext-mnist.json") ;;
  *) echo "unknown design '$design': use light, residual, residual-warm or convnext" >&2; exit 2 ;;
esac
exec python "$here/../train_pdae.py" --output_dir "work_dirs/encoders/$design" "${encoder[@]}" \
  --train_batch_size 64 --learning_rate 1e-4 --lr_warmup_steps 100 --latent_dim 64 --warm_start_from_unet \
  --max_train_steps 1500 --use_ema --mixed_precision bf16 --checkpointing_steps 100000 \
  --save_images_epochs 1000000 --validation_inference_steps 20 --seed 0 "$@"
