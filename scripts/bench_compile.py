"""Time to a compiled train step, and the step time, for a config with overrides.

    python scripts/bench_compile.py configs/gpt2_small.py model.num_layers=24 model.scan_layers=true \
        train.batch_size=1 train.grad_accum=1 model.dtype=float32 model.attention=xla   # STEPS=0: compile only

Prints the seconds from building the train step to having it compiled (state initialization included) and, with
STEPS > 0 (default 60), the median step time over STEPS steps on a fixed random batch. The performance issue's
benchmark harness (gptjax.bench) will replace this with the full table.
"""

import os
import sys
import time

import jax
import numpy as np

from gptjax.config import load_config
from gptjax.model import ModelConfig
from gptjax.state import setup
from gptjax.step import make_train_step

cfg = load_config(sys.argv[1], sys.argv[2:])
model_config = ModelConfig.from_config(cfg.model, vocab_size=65)
built = setup(cfg, model_config)
began = time.perf_counter()
step = make_train_step(built.graphdef, built.tx, built.schedule, grad_accum=cfg.train.grad_accum, seed=0)
state = built.init(0)
batch = jax.random.randint(jax.random.key(0), (cfg.train.batch_size, cfg.model.block_size + 1), 0, 65)
compiled = step.lower(state, batch).compile()
compile_seconds = time.perf_counter() - began
state, metrics = compiled(state, batch)
jax.block_until_ready(metrics)
times = []
for _ in range(int(os.environ.get("STEPS", "60"))):
    began = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - began)
print(" ".join(sys.argv[2:]), f"| init + compile {compile_seconds:.2f} s",
      f"| median step {np.median(times) * 1e3:.1f} ms" if times else "")
