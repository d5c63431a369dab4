#!/usr/bin/env bash
# Reproduces the bundled checkpoints diffusers_pdae/bundled/ddpm-mnist, pdae-mnist, ldm-mnist and pdae-ldm-mnist:
# pre-train the MNIST DPM, draw 1,000 seeded samples from it (judged later by examples/mnist_paper/evaluate_dpm.py),
# train PDAE on the frozen DPM, then a latent sampler on the PDAE codes (its latent_sampler/ and latent_scheduler/ are
# copied into pdae-mnist); last, the latent diffusion model ldm-mnist (an autoencoder, then a UNet on its latents) and
# PDAE on it with its latent sampler (both trained on a 2-core CPU).
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

# ldm-mnist (diffusers_pdae/bundled/ldm-mnist): a latent diffusion model, trained on the shared 2-core CPU (one thread,
# OMP_NUM_THREADS=1). First the VQModel autoencoder: 4x downsampling (32-px digits -> 4x8x8 latents), 256 codes, L1
# plus the codebook loss; 4 latent channels were chosen over 3 by a 400-step run of each (held-out PSNR 19.8 vs 19.5
# dB, codebook use 71% vs 60%). Ran 2,400 steps (38 min); the release is step 2,000, the best checkpoint of its
# held-out PSNR (28.2 dB, vs 26.9 at 2,400 with the constant learning rate): the command below stops there (the same
# run, resumed exactly; or --resume_from_checkpoint <run>/checkpoint-2000 with --max_train_steps 2000 releases it).
python examples/train_autoencoder.py --output_dir "$out/vq-mnist" --latent_channels 4 \
  --train_batch_size 64 --learning_rate 5e-4 --lr_warmup_steps 50 --max_train_steps 2000 \
  --num_validation_images 64 --validation_steps 200 --checkpointing_steps 400 --save_images_epochs 1000 --seed 0

# Then the latent UNet (the ddpm-mnist layout with 4 channels at 8x8) on its latents, encoded on the fly; an EMA.
# Stopped by --max_train_minutes 28 after 3,984 steps (constant learning rate after warm-up: --max_train_steps 3984
# is the same run). The bundle keeps model_index.json, vqvae/, unet/ and scheduler/ of the output folder.
python examples/train_dpm.py --pretrained_vae_model_name_or_path "$out/vq-mnist" --output_dir "$out/ldm-mnist" \
  --train_batch_size 64 --learning_rate 3e-4 --lr_warmup_steps 200 --use_ema --max_train_steps 3984 \
  --checkpointing_steps 1000 --checkpoints_total_limit 1 --save_images_epochs 1000000 \
  --ddpm_num_inference_steps 100 --seed 0

# pdae-ldm-mnist (diffusers_pdae/bundled/pdae-ldm-mnist): PDAE on that LDM, the latents of the 7,992 training digits
# cached once (--cache_latents), the encoder on the 32-px pixels; on the shared 2-core CPU (one thread), stopped by
# --max_train_minutes 45 after 2,237 steps (constant learning rate after warm-up: --max_train_steps 2237 is the
# same run). Then its latent sampler, as for pdae-mnist; the bundle keeps the sampler's output folder's
# model_index.json and model folders.
python examples/train_pdae.py --pretrained_model_name_or_path "$out/ldm-mnist" --output_dir "$out/pdae-ldm-mnist" \
  --train_batch_size 128 --learning_rate 1e-4 --lr_warmup_steps 500 --latent_dim 64 --warm_start_from_unet \
  --use_ema --cache_latents --max_train_steps 2237 --checkpointing_steps 1000 --checkpoints_total_limit 1 \
  --save_images_epochs 1000000 --validation_inference_steps 50 --seed 0
# Round 2 (the shipped weights; issue 33): trained further from round 1 on as many images as pdae-mnist (13,267 steps
# of batch 128 in all: 11,030 more), --seed 1, a short warm-up; on the shared CPU, one thread, 3,666 s of this run
# (it was interrupted at step 4,000 and resumed exactly with --resume_from_checkpoint latest). Then its latent
# sampler; `python scripts/bundle_pipeline.py <sampler output> pdae-ldm-mnist` bundles the release.
python examples/train_pdae.py --pretrained_model_name_or_path "$out/ldm-mnist" --init_from_pipeline "$out/pdae-ldm-mnist" \
  --output_dir "$out/pdae-ldm-mnist-round2" --train_batch_size 128 --learning_rate 1e-4 --lr_warmup_steps 100 \
  --latent_dim 64 --use_ema --cache_latents --max_train_steps 11030 --checkpointing_steps 1000 \
  --checkpoints_total_limit 1 --save_images_epochs 1000000 --validation_inference_steps 50 --seed 1
python examples/train_latent_sampler.py --pretrained_model_name_or_path "$out/pdae-ldm-mnist-round2" \
  --output_dir "$out/pdae-ldm-mnist-sampler" --max_train_steps 10000 --checkpointing_steps 5000 --use_ema \
  --hidden_dim 256 --num_layers 4 --time_embed_dim 128 --save_images_epochs 1000 --seed 0
# sd-mnist (diffusers_pdae/bundled/sd-mnist): a small Stable Diffusion, made on the shared 2-core CPU (one thread each).
# First the KL autoencoder (4x downsampling: 32-px digits -> 4x8x8 latents, the same recipe as the VQ one above):
# held-out PSNR 30.5 dB, SSIM 0.983 at step 2,000; its scaling_factor 0.6852 is 1 / std of the training latents.
python examples/train_autoencoder.py --autoencoder_type kl --output_dir "$out/kl-mnist" --latent_channels 4 \
  --train_batch_size 64 --learning_rate 5e-4 --lr_warmup_steps 50 --max_train_steps 2000 \
  --num_validation_images 64 --validation_steps 200 --checkpointing_steps 400 --save_images_epochs 1000 --seed 0
# Then the text-conditional UNet on its latents: captions "a handwritten digit <name>" from the labels, 10% replaced by
# the empty prompt, through a small CLIP text encoder built for the caption words (frozen, seeded); a
# StableDiffusionPipeline (vae, text_encoder, tokenizer, unet, scheduler) that diffusers loads and samples.
python examples/train_dpm.py --pretrained_vae_model_name_or_path "$out/kl-mnist" --digit_captions \
  --output_dir "$out/sd-mnist" --train_batch_size 64 --learning_rate 3e-4 --lr_warmup_steps 200 --use_ema \
  --max_train_steps 4000 --checkpointing_steps 1000 --checkpoints_total_limit 1 --save_images_epochs 1000000 \
  --ddpm_num_inference_steps 50 --seed 0
# dit-mnist: a class-conditional DiT on the same KL latents (6 blocks of width 128, patch 2; 10% of the labels
# dropped to the null class by the model itself), a DiTPipeline.
python examples/train_dpm.py --pretrained_vae_model_name_or_path "$out/kl-mnist" --model_type dit \
  --output_dir "$out/dit-mnist" --train_batch_size 64 --learning_rate 2e-4 --lr_warmup_steps 200 --use_ema \
  --max_train_steps 12000 --checkpointing_steps 1000 --checkpoints_total_limit 1 --save_images_epochs 1000000 \
  --ddpm_num_inference_steps 50 --seed 0
# The bundle keeps model_index.json, transformer/, vae/ and scheduler/ of the output folder. Made as a 4,000-step run
# (weak samples: the guided rows were mostly but not always their digit) resumed exactly to 12,000 steps
# (--resume_from_checkpoint latest), 1.5 to 3.9 steps per second on the shared CPU.

# pdae-sd-mnist (diffusers_pdae/bundled/pdae-sd-mnist): PDAE on sd-mnist with the empty prompt, the same recipe and
# number of steps as pdae-ldm-mnist (2,237 at batch 128: equal training images); 2,257 s on the shared CPU. Then its
# latent sampler; `python scripts/bundle_pipeline.py <sampler output> pdae-sd-mnist` bundles the release.
python examples/train_pdae.py --pretrained_model_name_or_path "$out/sd-mnist" --output_dir "$out/pdae-sd-mnist" \
  --train_batch_size 128 --learning_rate 1e-4 --lr_warmup_steps 500 --latent_dim 64 --warm_start_from_unet \
  --use_ema --cache_latents --max_train_steps 2237 --checkpointing_steps 1000 --checkpoints_total_limit 1 \
  --save_images_epochs 1000000 --validation_inference_steps 50 --seed 0
python examples/train_latent_sampler.py --pretrained_model_name_or_path "$out/pdae-sd-mnist" \
  --output_dir "$out/pdae-sd-mnist-sampler" --max_train_steps 10000 --checkpointing_steps 5000 --use_ema \
  --hidden_dim 256 --num_layers 4 --time_embed_dim 128 --save_images_epochs 1000 --seed 0
# The lighter G measured beside it in docs/stable_diffusion.md (half the widths, one resnet per level, no warm start:
# the widths differ from the UNet's); not bundled.
python examples/train_pdae.py --pretrained_model_name_or_path "$out/sd-mnist" --output_dir "$out/pdae-sd-mnist-light" \
  --train_batch_size 128 --learning_rate 1e-4 --lr_warmup_steps 500 --latent_dim 64 \
  --gradient_estimator_width_multiplier 0.5 --gradient_estimator_resnets_per_block 1 \
  --use_ema --cache_latents --max_train_steps 2237 --checkpointing_steps 500 --checkpoints_total_limit 1 \
  --save_images_epochs 1000000 --validation_inference_steps 50 --seed 0

# pdae-dit-mnist (diffusers_pdae/bundled/pdae-dit-mnist): PDAE on dit-mnist with the null class, G a
# TransformerGradientEstimator (the default 4 blocks at the DiT's width), the same steps; then its latent sampler.
python examples/train_pdae.py --pretrained_model_name_or_path "$out/dit-mnist" --output_dir "$out/pdae-dit-mnist" \
  --train_batch_size 128 --learning_rate 1e-4 --lr_warmup_steps 500 --latent_dim 64 \
  --use_ema --cache_latents --max_train_steps 2237 --checkpointing_steps 500 --checkpoints_total_limit 1 \
  --save_images_epochs 1000000 --validation_inference_steps 50 --seed 0
python examples/train_latent_sampler.py --pretrained_model_name_or_path "$out/pdae-dit-mnist" \
  --output_dir "$out/pdae-dit-mnist-sampler" --max_train_steps 10000 --checkpointing_steps 5000 --use_ema \
  --hidden_dim 256 --num_layers 4 --time_embed_dim 128 --save_images_epochs 1000 --seed 0
