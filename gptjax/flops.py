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

import time

import jax
import jax.numpy as jnp

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


def published_peak(device: jax.Device | None = None) -> float | None:
    device = device or jax.devices()[0]
    kind = device.device_kind
    for name, peak in PUBLISHED_PEAK.items():
        if kind.startswith(name):
            return peak
    return None


def measured_matmul_peak(dtype=jnp.float32, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a square matmul on the default device: the practical ceiling a model can hope to reach there.

    bf16 inputs accumulate in f32 (preferred_element_type), which is what the model's matmuls do. The best of
    `repeats` timings is kept, so a moment of contention on a shared machine does not lower the peak."""
    a = jnp.ones((size, size), dtype)
    b = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def reference_peak(dtype) -> tuple[float, str]:
    """The peak MFU is quoted against: the published figure where one is known, else a matmul measured here."""
    published = published_peak()
    if published is not None:
        return published, "published peak"
    return measured_matmul_peak(dtype), "measured matmul peak"
