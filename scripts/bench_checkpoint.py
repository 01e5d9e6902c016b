"""What checkpoint checksums cost: a GPT-2 small train state (124M parameters + AdamW moments, 1.5 GB in float32)
saved and restored, and its checksums computed, on this machine's devices.

    python scripts/bench_checkpoint.py [--config configs/gpt2_small.py] [--repeats 3]

Prints the best time of each after a warm-up: computing the checksums of the whole state (what a save adds, and
again what a restore adds to verify them), a save to local disk (waited for), and a restore.
"""

import argparse
import shutil
import tempfile
import time

import jax

from gptjax.checkpoint import Checkpoints, checksums
from gptjax.config import load_config
from gptjax.model import ModelConfig
from gptjax.state import setup


def best_of(repeats, fn):
    fn()  # warm-up: compilation, page cache
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/gpt2_small.py")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.config)
    built = setup(cfg, ModelConfig.from_config(cfg.model, 50304))
    state = built.init(0)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    directory = tempfile.mkdtemp(prefix="gptjax-bench-ckpt-")
    try:
        saves = iter(range(1, 10**6))

        def save():
            checkpoints = Checkpoints(directory, keep=1)
            checkpoints.save(next(saves), state, {}, {})
            checkpoints.close()

        def restore():
            reader = Checkpoints(directory, read_only=True)
            restored, _ = reader.restore(built.target())
            jax.block_until_ready(restored)
            reader.close()

        # Alternated, so that the machine's load falls on each alike.
        t_sum = best_of(args.repeats, lambda: checksums(state))
        t_save = best_of(args.repeats, save)
        t_restore = best_of(args.repeats, restore)
        t_sum2 = best_of(args.repeats, lambda: checksums(state))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    t_sum = min(t_sum, t_sum2)
    print(f"{jax.devices()[0].platform} x{jax.device_count()}: state {nbytes / 2**30:.2f} GiB, "
          f"{len(jax.tree.leaves(state))} arrays")
    print(f"checksums {t_sum:.2f}s | save (with checksums) {t_save:.2f}s | restore (with verification) "
          f"{t_restore:.2f}s | checksums are {t_sum / t_save:.0%} of a save, {t_sum / t_restore:.0%} of a restore")


if __name__ == "__main__":
    main()
