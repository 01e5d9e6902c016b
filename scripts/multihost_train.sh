#!/usr/bin/env bash
# Multi-host training without a scheduler: run this on every host, with the same arguments but its own process id.
#
#   host0$ scripts/multihost_train.sh 10.0.0.1:1234 2 0 configs/gpt2_small.py --config.mesh.fsdp=-1 --config.mesh.data=1
#   host1$ scripts/multihost_train.sh 10.0.0.1:1234 2 1 configs/gpt2_small.py --config.mesh.fsdp=-1 --config.mesh.data=1
#
# The run directory must be on storage every host sees (checkpoints are written by all processes together).
set -euo pipefail
cd "$(dirname "$0")/.."
coordinator=${1:?usage: multihost_train.sh COORDINATOR_HOST:PORT NUM_PROCESSES PROCESS_ID CONFIG [overrides]}
num_processes=${2:?}
process_id=${3:?}
config=${4:?}
shift 4
exec .venv/bin/python -m gptjax.train --config "$config" --workdir "runs/$(basename "$config" .py)-multihost" \
    --config.distributed.coordinator_address="$coordinator" --config.distributed.num_processes="$num_processes" \
    --config.distributed.process_id="$process_id" "$@"
