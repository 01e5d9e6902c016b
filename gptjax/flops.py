"""Model FLOPs and MFU (model FLOPs utilization).

FLOPs per trained token (PaLM appendix B, as nanoGPT uses): 6 * N for the matmuls of the N non-embedding
parameters (counting the LM head, which the tied token table doubles as), plus 12 * L * d * T for attention scores
and values over a context of T. The attention term is NOT halved for causality: this is the FLOP count of the
dense computation, the same convention nanoGPT and PaLM use, so figures compare directly.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

# Published dense peak FLOP/s per device (bf16 / fp16 tensor-core, no sparsity), by jax device_kind.
PUBLISHED_PEAK = {
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


def flops_per_token(model_cfg, num_params_non_embedding: int) -> float:
    """Training FLOPs (forward + backward) per token; see the module docstring for the formula."""
    attention = 12 * model_cfg.num_layers * model_cfg.d_model * model_cfg.block_size
    return 6 * num_params_non_embedding + attention


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
