"""FLOP/s of the three products a linear layer's training step runs, in float32 and in bfloat16, on this device.

    python scripts/bench_matmul_layouts.py [TOKENS D_IN D_OUT]     # default: 768 128 512 (the baby recipe's MLP)

forward y = x @ W, input gradient dx = dy @ W^T, weight gradient dW = x^T @ dy (a contraction over the tokens,
the leading axis of both operands). bfloat16 inputs accumulate and return float32, which is XLA's fast bf16 path.
Used in docs/benchmarks.md to show why the weight gradients, not the forward products, set the CPU's pace.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def seconds(fn, *args, repeats: int = 200) -> float:
    fn(*args).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).block_until_ready()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    m, k, n = (int(a) for a in sys.argv[1:4]) if len(sys.argv) == 4 else (768, 128, 512)
    products = {"forward x @ W": ((m, k), (k, n), ((1,), (0,))),
                "input grad dy @ W^T": ((m, n), (k, n), ((1,), (1,))),
                "weight grad x^T @ dy": ((m, k), (m, n), ((0,), (0,)))}
    print(f"tokens {m}, in {k}, out {n}: GFLOP/s (median of 200)")
    for dtype in (jnp.float32, jnp.bfloat16):
        for name, (a_shape, b_shape, contract) in products.items():
            product = jax.jit(lambda a, b, contract=contract: lax.dot_general(
                a, b, (contract, ((), ())), preferred_element_type=jnp.float32))
            t = seconds(product, jnp.ones(a_shape, dtype), jnp.ones(b_shape, dtype))
            print(f"  {jnp.dtype(dtype).name:9s} {name:22s} {2 * m * k * n / t / 1e9:7.0f}")


if __name__ == "__main__":
    main()
