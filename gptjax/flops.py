"""Model FLOPs and MFU (model FLOPs utilization).

FLOPs per trained token (PaLM appendix B, the convention nanoGPT and MaxText use):

    6 * W  +  12 * L * H * hd * T

- W: the weights every token multiplies, per layer the attention projections d*(H + 2*KV)*hd + H*hd*d and the
  MLP's d*ff*(2, or 3 with SwiGLU), times L layers, plus the LM head d*V (the token table when tied). 2 FLOPs per
  weight forward, 4 backward (the gradients of the input and of the weight): 6 per weight. Norm scales, biases and
  the position table do no matmul and are left out.
- Attention: per layer, scores q.k and the weighted sum of values each take 2*T*H*hd FLOPs per token forward over
  a context of T = model.block_size; times 3 for the backward: 12*L*H*hd*T. This is NOT halved for causality: it
  counts the dense [T, T] computation the reference kernel does, so figures compare with nanoGPT's and PaLM's.
  (A causal kernel that skips masked tiles does about half of it; MFU then understates its work.)

Elementwise work (norms, softmax, GELU, the optimizer) is not counted.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from functools import partial

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

# Published dense peak FLOP/s per device (bf16 / fp16 tensor-core, no sparsity), by jax device_kind; the first
# name the device's kind starts with wins, so variants come before the family's name.
PUBLISHED_PEAK = {
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA H100 NVL": 835e12,
    "NVIDIA H100 80GB HBM3": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5p": 459e12,
}


def matmul_weights(model_cfg) -> int:
    """W in the module docstring: weights that multiply every token's activations in the forward pass."""
    c = model_cfg
    d, hd = c.d_model, c.head_dim
    attention = d * (c.num_heads + 2 * c.kv_heads) * hd + c.num_heads * hd * d
    mlp = d * c.ff_dim * (3 if c.mlp == "swiglu" else 2)
    return c.num_layers * (attention + mlp) + d * c.vocab_size


def flops_per_token(model_cfg) -> float:
    """Training FLOPs (forward + backward) per token; see the module docstring for the formula."""
    c = model_cfg
    return 6 * matmul_weights(c) + 12 * c.num_layers * c.num_heads * c.head_dim * c.block_size


def traced_matmuls(jaxpr, repeat: int = 1):
    """Every matmul a traced program runs, as (lhs aval, rhs aval, dot_general params, times run): loops (scan)
    count their length times. For checking the formula against a real program, and for timing its matmuls."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield eqn.invars[0].aval, eqn.invars[1].aval, eqn.params, repeat
        times = repeat * (eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(sub, jax_core.ClosedJaxpr):
                    yield from traced_matmuls(sub.jaxpr, times)
                elif isinstance(sub, jax_core.Jaxpr):
                    yield from traced_matmuls(sub, times)


def matmul_flops(lhs, rhs, params) -> int:
    """2 * (output elements) * (contracted size) of one dot_general."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = params["dimension_numbers"]
    free_lhs = [s for d, s in enumerate(lhs.shape) if d not in lhs_contract and d not in lhs_batch]
    free_rhs = [s for d, s in enumerate(rhs.shape) if d not in rhs_contract and d not in rhs_batch]
    out = math.prod(lhs.shape[d] for d in lhs_batch) * math.prod(free_lhs) * math.prod(free_rhs)
    return 2 * out * math.prod(lhs.shape[d] for d in lhs_contract)


def matmul_floor(fn, *args, repeats: int = 5) -> tuple[float, float]:
    """(seconds, FLOPs) of the matmuls of fn(*args), each timed alone on the default device (best of `repeats`)
    and summed over the times the program runs it: how long the step would take if everything but its matmuls
    were free. What is left of the measured step is elementwise work, layout copies, reductions and overhead."""
    program = jax.make_jaxpr(fn)(*args)
    counts = Counter()
    for lhs, rhs, params, times in traced_matmuls(program.jaxpr):
        key = (lhs.shape, str(lhs.dtype), rhs.shape, str(rhs.dtype), params["dimension_numbers"],
               params.get("preferred_element_type"))
        counts[key] += times
    seconds = flops = 0.0
    for (lhs_shape, lhs_dtype, rhs_shape, rhs_dtype, dims, out_dtype), times in counts.items():
        lhs, rhs = jnp.ones(lhs_shape, lhs_dtype), jnp.ones(rhs_shape, rhs_dtype)
        matmul = partial(jax.lax.dot_general, dimension_numbers=dims, preferred_element_type=out_dtype)
        seconds += times * _best_time(matmul, lhs, rhs, repeats)
        flops += times * matmul_flops(lhs, rhs, {"dimension_numbers": dims})
    return seconds, flops


def _best_time(fn, a, b, repeats: int) -> float:
    """Seconds of jit(fn)(a, b), compiled and run once first; the best of `repeats`, so that a moment of contention
    on a shared machine does not count."""
    run = jax.jit(fn)
    run(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return best


def published_peak(device: jax.Device | None = None) -> float | None:
    device = device or jax.devices()[0]
    kind = device.device_kind
    for name, peak in PUBLISHED_PEAK.items():
        if kind.startswith(name):
            return peak
    return None


def measured_matmul_peak(dtype=jnp.float32, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a square matmul on the default device: the practical ceiling a model can hope to reach there.

    bf16 inputs accumulate in f32 (preferred_element_type): the fastest bf16 matmul XLA runs here."""
    a, b = jnp.ones((size, size), dtype), jnp.ones((size, size), dtype)
    return 2 * size**3 / _best_time(partial(jnp.matmul, preferred_element_type=jnp.float32), a, b, repeats)


def reference_peak(dtype) -> tuple[float, str]:
    """The peak MFU is quoted against: the published figure where one is known, else a matmul measured here."""
    published = published_peak()
    if published is not None:
        return published, "published peak"
    return measured_matmul_peak(dtype), "measured matmul peak"
