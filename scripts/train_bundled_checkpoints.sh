#!/usr/bin/env bash
# Reproduces the bundled checkpoints diffusers_pdae/bundled/ddpm-mnist and pdae-mnist: pre-train the MNIST DPM,
# draw 1,000 seeded samples from it (judged later by examples/mnist_paper/evaluate_dpm.py), train PDAE on the frozen DPM,
# then a latent sampler on the PDAE codes (its latent_sampler/ and latent_scheduler/ are copied into pdae-mnist).
# Made for one GPU (the bundled ones came from an H100/H200, see docs/); on a CPU lower the minutes or expect hours.
#
#   bash scripts/train_bundled_checkpoints.sh work_dirs/bundled
#
# Environment: DPM_MINUTES and PDAE_MINUTES cap each training run's wall-clock time (default 3.5 and 4).
set -euo pipefail
out=${1:-work_dirs/bundled}
dpm_minutes=${DPM_MINUTES:-3.5}
pdae_minutes=${PDAE_MINUTES:-4}
mkdir -p "$out"

python examples/train_dpm.py --output_dir "$out/ddpm-mnist" \
  --train_batch_size 256 --learning_rate 3e-4 --lr_warmup_steps 500 \
  --max_train_steps 200000 --max_train_minutes "$dpm_minutes" --use_ema \
  --checkpointing_steps 5000 --checkpoints_total_limit 1 --save_images_epochs 1000000 \
  --ddpm_num_inference_steps 1000 --allow_tf32 --seed 0

python examples/mnist_paper/evaluate_dpm.py --pipeline "$out/ddpm-mnist" --num_samples 1000 --num_inference_steps 1000 \
  --batch_size 500 --seed 0 --save_samples "$out/ddpm-mnist-samples.npz" --skip_classifier

python examples/train_pdae.py --pretrained_model_name_or_path "$out/ddpm-mnist" --output_dir "$out/pdae-mnist" \
  --train_batch_size 128 --learning_rate 1e-4 --lr_warmup_steps 500 --latent_dim 64 --warm_start_from_unet \
  --max_train_steps 200000 --max_train_minutes "$pdae_minutes" --use_ema \
  --checkpointing_steps 5000 --checkpoints_total_limit 1 --save_images_epochs 1000000 \
  --validation_inference_steps 50 --allow_tf32 --seed 0

# The latent sampler inside the bundled pdae-mnist (unconditional generation); ran on the 2-core CPU in 159 s.
python examples/train_latent_sampler.py --pretrained_model_name_or_path "$out/pdae-mnist" \
  --output_dir "$out/pdae-mnist-sampler" --max_train_steps 10000 --checkpointing_steps 5000 --use_ema \
  --hidden_dim 256 --num_layers 4 --time_embed_dim 128 --save_images_epochs 1000 --seed 0
