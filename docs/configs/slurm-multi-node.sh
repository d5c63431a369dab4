#!/bin/bash
# PDAE on several machines with SLURM (docs/training.md, "Several machines"): one `accelerate launch` per node, each
# starting one training process per GPU. Submit with `sbatch docs/configs/slurm-multi-node.sh` from the repository;
# resubmit the same script to continue: --resume_from_checkpoint latest picks up the newest checkpoint (and the
# stream's position), and --max_train_minutes stops cleanly, with a checkpoint, before the job's time limit.
#SBATCH --job-name=pdae
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

GPUS_PER_NODE=8
CONFIG=docs/configs/accelerate-multi-node.yaml
# Checkpoints hold one state file per process: --output_dir must be on a file system that every node sees.
OUTPUT_DIR=/shared/runs/pdae-ffhq-256
# A folder of webdataset shards (or a Hub dataset id) that every node can read; for even reading, its number of
# shards should divide by nodes x GPUs per node x --dataloader_num_workers (here 2 x 8 x 4 = 64).
DATA=/shared/data/ffhq-256-wds
export MAIN_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MAIN_PORT=29500
export NUM_PROCESSES=$((SLURM_NNODES * GPUS_PER_NODE))
# How long the nodes wait for each other (a node that never starts, or dies): the launcher on the main node waits for
# every node's launcher (--rdzv_conf timeout, torch's default 600 s), then the training processes for each other at
# start-up and at every step (--nccl_timeout, torch's default 1800 s). Each ends the job with an error naming what it
# waited for; without them a job whose node failed to start idles until the defaults run out.
export RDZV_TIMEOUT=300
export NCCL_TIMEOUT=900

# Single quotes: $SLURM_NODEID is each node's own, read on that node.
srun --kill-on-bad-exit=1 bash -c 'accelerate launch --config_file '"$CONFIG"' \
  --num_machines $SLURM_NNODES --machine_rank $SLURM_NODEID --num_processes $NUM_PROCESSES \
  --main_process_ip $MAIN_NODE --main_process_port $MAIN_PORT --rdzv_conf timeout=$RDZV_TIMEOUT \
  examples/train_pdae.py --nccl_timeout $NCCL_TIMEOUT \
    --pretrained_model_name_or_path google/ddpm-celebahq-256 \
    --dataset_name '"$DATA"' --streaming --shuffle_buffer_size 1000 --dataloader_num_workers 4 \
    --train_batch_size 8 --max_train_steps 200000 --learning_rate 1e-4 --use_ema \
    --gradient_checkpointing --mixed_precision bf16 \
    --checkpointing_steps 2000 --checkpoints_total_limit 3 --resume_from_checkpoint latest \
    --max_train_minutes 1410 --output_dir '"$OUTPUT_DIR"
