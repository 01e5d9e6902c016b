#!/usr/bin/env bash
# nanoGPT's baby Shakespeare recipe (its README's CPU command) and gptjax's speedrun_cpu, alternated, each timed as
# a whole command: the side-by-side figures of docs/benchmarks.md ("Faster to a loss").
#
#   scripts/nanogpt_side_by_side.sh /path/to/nanoGPT /path/to/tinyshakespeare.txt [ROUNDS]
#
# nanoGPT is a checkout of its own, outside this repository, whose data/shakespeare_char/ holds train.bin, val.bin
# and meta.pkl (its prepare.py, run on the same text). Its Python is $NANOGPT_PYTHON (default: this venv's).
set -euo pipefail
cd "$(dirname "$0")/.."
nanogpt=${1:?usage: scripts/nanogpt_side_by_side.sh NANOGPT_DIR TEXT [ROUNDS]}
text=${2:?usage: scripts/nanogpt_side_by_side.sh NANOGPT_DIR TEXT [ROUNDS]}
rounds=${3:-2}
python=${PYTHON:-.venv/bin/python}
# absolute, but not through realpath: a venv's python is a symlink, and resolving it leaves the venv
ng_python=${NANOGPT_PYTHON:-$(cd "$(dirname "$python")" && pwd)/$(basename "$python")}
out=runs/side_by_side; rm -rf "$out"; mkdir -p "$out"
for i in $(seq "$rounds"); do
  start=$(date +%s.%N)
  (cd "$nanogpt" && "$ng_python" train.py config/train_shakespeare_char.py --device=cpu --compile=False \
    --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 \
    --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0 --out_dir="$(realpath "$out")/nanogpt_$i") \
    >"$out/nanogpt_$i.log" 2>&1
  end=$(date +%s.%N)
  echo "nanoGPT $i: $(echo "$end - $start" | bc) s; $(grep 'step 2000' "$out/nanogpt_$i.log")"
  start=$(date +%s.%N)
  "$python" -m gptjax.train --config speedrun_cpu --workdir "$out/gptjax_$i" --config.data.path="$text" \
    >"$out/gptjax_$i.log" 2>&1
  end=$(date +%s.%N)
  echo "gptjax $i: $(echo "$end - $start" | bc) s; $(grep 'reached' "$out/gptjax_$i.log")"
done
