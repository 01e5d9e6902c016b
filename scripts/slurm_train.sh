#!/usr/bin/env bash
# Multi-node training under SLURM: one task per node; JAX finds the coordinator, the process count and each
# process's id from SLURM's environment (distributed.auto, on by default).
#
#   sbatch --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 scripts/slurm_train.sh configs/gpt2_small.py \
#       --config.mesh.fsdp=16 --config.mesh.data=1
#SBATCH --job-name=gptjax
#SBATCH --output=%x-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
config=${1:?usage: sbatch scripts/slurm_train.sh CONFIG [--config.KEY=VALUE ...]}
shift
srun --kill-on-bad-exit=1 .venv/bin/python -m gptjax.train --config "$config" \
    --workdir "runs/$(basename "$config" .py)-$SLURM_JOB_ID" "$@"
