#!/bin/bash
# Train PET on several nodes with SLURM: one task per GPU, started by srun.
# torch-pet reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and takes the first host of
# the allocation as the rendezvous (MASTER_ADDR; port 20000 + job id % 20000 unless
# MASTER_PORT is set). Each task trains on cuda:SLURM_LOCALID with NCCL.
# Adapt the partition, the environment and the data; submit with `sbatch scripts/slurm_example.sh`.
#SBATCH --job-name=pet-ddp
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4          # = GPUs per node
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

source .venv/bin/activate
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

# once, before the job (or in a first step): an extended-XYZ file into an on-disk dataset
#   torch-pet preprocess data/train.xyz data/train_disk/

# --kill-on-bad-exit: if one rank fails, the others stop instead of waiting in a collective.
# --batch-size and --max-atoms-per-batch are per GPU: the global batch is 8 x that here.
srun --kill-on-bad-exit=1 torch-pet train --launcher slurm \
    --dataset ondisk --data data/train_disk/ \
    --max-atoms-per-batch 2000 --batch-size 64 --num-workers 4 \
    --epochs 200 --out runs/pet-ddp-${SLURM_JOB_ID} --no-progress

# Resume after a time limit: the same command with --resume and the same --out.
