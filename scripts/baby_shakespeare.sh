#!/usr/bin/env bash
# Trains nanoGPT's CPU "baby" Shakespeare recipe once per seed and prints each run's final validation loss and
# wall time: the figures recorded in README.md and docs/benchmarks.md.
#
#   scripts/baby_shakespeare.sh /path/to/tinyshakespeare.txt [SEED ...]
set -euo pipefail
cd "$(dirname "$0")/.."
text=${1:?usage: scripts/baby_shakespeare.sh /path/to/tinyshakespeare.txt [SEED ...]}
shift
seeds=${*:-1337}
python=${PYTHON:-.venv/bin/python}
for seed in $seeds; do
  workdir=runs/baby_seed$seed
  rm -rf "$workdir"; mkdir -p runs
  start=$(date +%s)
  "$python" -m gptjax.train --config configs/shakespeare_char_cpu.py --workdir "$workdir" \
    --config.data.path="$text" --config.train.seed="$seed" --config.train.sample_tokens=0 >"$workdir.log" 2>&1 \
    || { tail -5 "$workdir.log"; exit 1; }
  end=$(date +%s)
  val=$("$python" -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1])][-1]['val_loss'])" \
    "$workdir/metrics.jsonl")
  printf 'seed %s: val loss %.4f after 2000 steps, %d s wall\n' "$seed" "$val" "$((end - start))"
done
