"""Decoding speed with and without the KV cache, on random weights (the speed does not depend on the values).

    python scripts/bench_sample.py

Prints tokens/s for 500 new tokens from a 4-token prompt (temperature 0.8, top_k 200), best of 3 after a warm-up
call, for the baby Shakespeare shape (4 layers, 4 heads, 128 wide) at block sizes 64 and 256 and batches 1 and 8.
Every run goes past the block, so refills (cache) and window sliding (full recompute) are included.
"""

import time

from flax import nnx

from gptjax.model import GPT, ModelConfig
from gptjax.sample import generate

NEW_TOKENS = 500

for block in (64, 256):
    cfg = ModelConfig(vocab_size=65, block_size=block, num_layers=4, num_heads=4, d_model=128)
    graphdef, params = nnx.split(GPT(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    for batch in (1, 8):
        rates = {}
        for use_cache in (True, False):
            kw = dict(block_size=block, max_new_tokens=NEW_TOKENS, num_samples=batch, temperature=0.8, top_k=200,
                      use_cache=use_cache)
            generate(graphdef, params, [1, 2, 3, 4], **kw)  # compile
            times = []
            for seed in range(3):
                began = time.perf_counter()
                generate(graphdef, params, [1, 2, 3, 4], seed=seed, **kw)
                times.append(time.perf_counter() - began)
            rates[use_cache] = batch * NEW_TOKENS / min(times)
        print(f"block {block:4d} batch {batch}: cache {rates[True]:8,.0f} tok/s | full recompute "
              f"{rates[False]:8,.0f} tok/s | {rates[True] / rates[False]:.1f}x", flush=True)
