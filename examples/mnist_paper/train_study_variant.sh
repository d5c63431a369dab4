#!/usr/bin/env bash
# One run of the objective study (docs/results/objective/): PDAE on the bundled frozen MNIST DPM with the GPU budget
# of that study, the light encoder unless the variant says otherwise, and one setting changed per variant:
#   bash examples/mnist_paper/train_study_variant.sh gamma-0          # -> work_dirs/objective/gamma-0
#   bash examples/mnist_paper/train_study_variant.sh ref --max_train_steps 300 --output_dir /tmp/ref-short
# Reference recipe: 1,500 steps at batch 128 (192,000 images), lr 1e-4 (100 warm-up steps), lambda_t with
# gamma = 0.1, latent_dim 64, EMA, fp32 (TF32 on a GPU), G warm-started from the UNet's up blocks, seed 0.
# Variants: ref, gamma-0, gamma-0.5, z-32, z-128, no-ema, batch-256 (same steps, twice the images), g-cold (G from
# scratch), residual and residual-warm (the other encoder designs at this budget), round-4 and round-4-batch-256
# (round 3, the checkpoint shipped before, trained further as its rounds 2 and 3 were: 915 more steps at batch 128,
# or 637 at batch 256, the steps 3.7 minutes gave on the GPU; round-4-batch-256 is the shipped pdae-mnist now).
# Extra flags go to examples/train_pdae.py and win. The study's runs shared one H200 and were stopped by
# --max_train_minutes 4.2 before their 1,500 steps: give a row's steps (docs/results/objective) to redo it with
# the same budget, e.g. `train_study_variant.sh gamma-0 --max_train_steps 1119`. On 2 CPU cores a step at batch 128
# takes about 2.3 s (560 steps: 21 min).
set -euo pipefail
variant="${1:?usage: train_study_variant.sh VARIANT [train_pdae.py flags] (variants: see the comment at the top)}"
shift
here="$(cd "$(dirname "$0")" && pwd)"
round3="$here/pretrained/pdae-mnist-round3"   # encoder and G of the checkpoint shipped before round 4
ema=(--use_ema); warm=(--warm_start_from_unet); change=()
case "$variant" in
  ref) ;;
  gamma-0) change=(--lambda_gamma 0) ;;
  gamma-0.5) change=(--lambda_gamma 0.5) ;;
  z-32) change=(--latent_dim 32) ;;
  z-128) change=(--latent_dim 128) ;;
  no-ema) ema=() ;;
  batch-256) change=(--train_batch_size 256) ;;
  g-cold) warm=() ;;
  residual) change=(--encoder_type residual) ;;
  residual-warm) change=(--encoder_type residual --encoder_warm_start_from_unet) ;;
  round-4) change=(--max_train_steps 915) ;;
  round-4-batch-256) change=(--train_batch_size 256 --max_train_steps 637) ;;
  *) echo "unknown variant '$variant' (see the comment at the top of $0)" >&2; exit 2 ;;
esac
gpu_flags=()
if python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then gpu_flags=(--allow_tf32); fi
common=(--output_dir "work_dirs/objective/$variant" --train_batch_size 128 --learning_rate 1e-4 --latent_dim 64
  --checkpointing_steps 100000 --save_images_epochs 1000000 --validation_inference_steps 20 "${gpu_flags[@]}")
if [[ "$variant" == round-4* ]]; then
  # The shipped recipe's rounds: the same flags, round 3's weights, no warm-up, a new seed.
  exec python "$here/../train_pdae.py" "${common[@]}" --init_from_pipeline "$round3" --lr_warmup_steps 0 \
    --use_ema --validation_inference_steps 50 --seed 3 "${change[@]}" "$@"
fi
exec python "$here/../train_pdae.py" "${common[@]}" --lr_warmup_steps 100 --max_train_steps 1500 "${ema[@]}" \
  "${warm[@]}" --seed 0 "${change[@]}" "$@"
