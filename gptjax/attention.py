"""Causal self-attention kernels, chosen by one string (`model.attention`).

    xla     the reference: einsums and a float32 softmax that XLA fuses; runs everywhere, supports attention dropout
    cudnn   cuDNN's fused flash attention through jax.nn.dot_product_attention (NVIDIA GPU, bf16/fp16)
    pallas  flash attention written in Pallas (JAX's Triton kernel, jax.experimental.pallas.ops.gpu.attention):
            tiled causal forward with a fused backward pass, never materializing the [T, T] scores (NVIDIA GPU)
    auto    cudnn where it can run, xla otherwise

All take q [B, T, H, hd] and k, v [B, S, KV, hd] with KV dividing H (MHA, GQA, MQA): query head h reads kv head
h // (H / KV), as jax.nn.dot_product_attention and Hugging Face's repeat_kv do. Packed batches (several examples
in one row) pass segment_ids [B, T]: a query reads only keys of its own segment, so no example sees another; xla
and pallas take them, cudnn refuses them (check_packing says so before training). The Pallas kernel also runs in
interpret mode on any backend, which is how the tests check it (forward and gradients) on a CPU.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math

import jax
import jax.numpy as jnp

from gptjax.config import CHOICES, ConfigError

HALF = ("bfloat16", "float16")


# The backend the program is built for: this machine's, unless lowering for another (gptjax.lowering builds a
# CUDA train step on a CPU-only machine to check what it would run).
_TARGET_BACKEND: contextvars.ContextVar[str | None] = contextvars.ContextVar("target_backend", default=None)


@contextlib.contextmanager
def target_backend(backend: str):
    """Resolve attention kernels inside the block as on `backend` ('gpu', 'cpu', 'tpu') instead of this machine."""
    token = _TARGET_BACKEND.set(backend)
    try:
        yield
    finally:
        _TARGET_BACKEND.reset(token)


def resolve_attention(name: str, dtype: str = "float32") -> str:
    """'xla' | 'cudnn' | 'pallas' | 'auto' -> the kernel to run; any error is raised here, before training."""
    backend = _TARGET_BACKEND.get() or jax.default_backend()
    if name not in CHOICES["model.attention"]:
        raise ConfigError(f"model.attention={name!r} is not one of: {', '.join(CHOICES['model.attention'])}")
    if name == "xla":
        return "xla"
    if name == "auto":
        # cuDNN's fused kernel only takes half precision; fp32 models keep the exact einsum path.
        return "cudnn" if backend == "gpu" and dtype in HALF else "xla"
    if backend != "gpu":
        raise ConfigError(f"model.attention={name!r} needs an NVIDIA GPU (this machine has: {backend}); "
                          f"use 'xla', or 'auto' to pick a fused kernel only when a GPU is present")
    if name == "cudnn" and dtype not in HALF:
        raise ConfigError(f"model.attention='cudnn' needs model.dtype bfloat16 or float16 (got {dtype!r}); "
                          "use 'pallas' or 'xla', or 'auto' to pick cudnn only when it can run")
    return name


def check_packing(name: str, dtype: str = "float32") -> str:
    """The model.attention setting for packed batches (segment ids): `name` itself, or for 'auto' that would
    pick cuDNN, 'pallas'; ConfigError for 'cudnn', since gptjax gives cuDNN's fused kernel no segment ids and
    packed examples would attend to each other."""
    impl = resolve_attention(name, dtype)
    if impl != "cudnn":
        return name
    if name == "auto":
        return "pallas"
    raise ConfigError(f"model.attention={name!r} runs cuDNN's fused kernel, which gptjax does not give segment ids, "
                      "so packed examples would attend to each other; use model.attention=pallas (or xla, or "
                      "auto), or data.pack=false")


def xla_attention(q, k, v, *, mask=None, segment_ids=None, dropout=None, deterministic: bool = True, rngs=None):
    """The reference. Groups the H query heads into KV groups without materializing repeated k/v. By default query
    t sees keys up to its own position, counting from the end (so T < S is decoding against a longer context);
    mask [B, T, S] (True: query t may read key s) replaces that triangle, for rows of a batch that sit at
    different positions of a KV cache. segment_ids [B, T] (T = S) keep the triangle and also hide every key of
    another segment.

    Long causal sequences (training's T = S of at least 2 * QUERY_BLOCK) are computed one block of queries at a
    time against only the keys it can see: the masked half of the [T, T] scores is never computed, stored or
    differentiated, and each block's scores stay small enough for the CPU's caches. The result is the same."""
    B, T, H, hd = q.shape
    S, KV = k.shape[1], k.shape[2]
    # Heads first, once: the blocks below then slice contiguous rows instead of each transposing its own copy.
    q = q.reshape(B, T, KV, H // KV, hd).transpose(0, 2, 3, 1, 4)  # [B, KV, G, T, hd]
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, KV, S, hd]
    if segment_ids is not None and (mask is not None or T != S):
        raise ValueError("segment_ids are for training's square causal attention, not with a mask or a KV cache")

    def segments(start, stop):  # [B, stop - start, stop]: queries start..stop read keys 0..stop of their segment
        if segment_ids is None:
            return None
        same = segment_ids[:, start:stop, None] == segment_ids[:, None, :stop]
        return same & jnp.tril(jnp.ones((stop - start, stop), dtype=bool), k=start)[None]

    if mask is None and T == S and T >= 2 * QUERY_BLOCK and T % QUERY_BLOCK == 0:
        out = jnp.concatenate([_attend(q[:, :, :, i:i + QUERY_BLOCK], k[:, :, :i + QUERY_BLOCK],
                                       v[:, :, :i + QUERY_BLOCK], segments(i, i + QUERY_BLOCK), dropout,
                                       deterministic, rngs)
                               for i in range(0, T, QUERY_BLOCK)], axis=3)
    else:
        out = _attend(q, k, v, mask if segment_ids is None else segments(0, T), dropout, deterministic, rngs)
    return out.transpose(0, 3, 1, 2, 4).reshape(B, T, H, hd)


QUERY_BLOCK = 128  # queries per block of the reference kernel on long sequences (see xla_attention)


def _attend(q, k, v, mask, dropout, deterministic, rngs):
    """q [B, KV, G, T, hd] against k, v [B, KV, S, hd] -> [B, KV, G, T, hd]; mask as xla_attention's."""
    T, hd = q.shape[3], q.shape[4]
    S = k.shape[2]
    # The scale goes on q ([T, hd]) rather than on the scores ([T, S]): one multiply per query element instead of
    # one per score, forward and backward.
    q = q * jnp.asarray(1 / math.sqrt(hd), q.dtype)
    scores = _scores(q, k)
    if mask is None:
        mask = jnp.tril(jnp.ones((T, S), dtype=bool), k=S - T)
    else:
        mask = mask[:, None, None]  # over the kv heads and their query groups
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)  # in float32: bf16 softmax over long rows loses the small weights
    if dropout is not None:
        probs = dropout(probs, deterministic=deterministic, rngs=rngs)
    return jnp.einsum("bkgts,bksd->bkgtd", probs.astype(v.dtype), v)


@jax.custom_vjp
def _scores(q, k):
    """q [B, KV, G, T, hd] . k [B, KV, S, hd] -> float32 scores [B, KV, G, T, S], accumulated in float32.

    The gradient flows back in q's dtype: differentiated as is, the float32 scores' cotangent would turn both
    backward matmuls (dq, dk) into float32 ones, which on a GPU leave the bf16 tensor cores idle. Flash attention
    kernels round dS the same way."""
    return jnp.einsum("bkgtd,bksd->bkgts", q, k, preferred_element_type=jnp.float32)


def _scores_fwd(q, k):
    return _scores(q, k), (q, k)


def _scores_bwd(residuals, g):
    q, k = residuals
    g = g.astype(q.dtype)
    # dk contracts the query axis of dS [T, S] and of q [T, hd]. Written as dS^T q, XLA's CPU backend copies the
    # large dS transposed for every query block; as (q^T dS)^T it transposes the small q and the [hd, S] result
    # instead, and dS is read in place (the same choice as model.matmul's weight gradient).
    dk = jnp.einsum("bkgtd,bkgts->bkds", q, g).swapaxes(-1, -2)
    return jnp.einsum("bkgts,bksd->bkgtd", g, k), dk


_scores.defvjp(_scores_fwd, _scores_bwd)


def cudnn_attention(q, k, v):
    return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")


def _pallas_blocks(seq_len: int):
    """(padded length, BlockSizes). Triton tiles must be powers of two, so short sequences get one power-of-two
    tile and longer ones are padded to a multiple of 128."""
    from jax.experimental.pallas.ops.gpu import attention as flash

    block = 128 if seq_len >= 128 else max(16, 1 << (seq_len - 1).bit_length())
    back = min(32, block)  # the backward kernels hold more tiles at once, so they use smaller ones
    sizes = flash.BlockSizes(block_q=block, block_k=block, block_q_dkv=back, block_kv_dkv=back,
                             block_q_dq=back, block_kv_dq=back)
    return -(-seq_len // block) * block, sizes


def pallas_attention(q, k, v, *, segment_ids=None, interpret: bool = False):
    """Flash attention (causal) as a Pallas kernel, with its fused backward pass; T must equal S. segment_ids
    [B, T]: the kernel's own segment masking (a query reads keys of its segment only)."""
    from jax.experimental.pallas.ops.gpu import attention as flash

    B, T, H, hd = q.shape
    if k.shape[1] != T:
        raise ValueError(f"pallas attention needs as many keys as queries (got {T} queries, {k.shape[1]} keys); "
                         "decoding against a cache uses the xla kernel")
    groups = H // k.shape[2]
    if groups > 1:  # the kernel wants one kv head per query head; repeat's gradient sums the group back
        k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)
    padded, sizes = _pallas_blocks(T)
    if padded != T:
        # Padding goes at the end: causal masking keeps every real query from seeing the padded keys, and the
        # padded queries' outputs are cut off (so they receive no gradient).
        pad = [(0, 0), (0, padded - T), (0, 0), (0, 0)]
        q, k, v = (jnp.pad(x, pad) for x in (q, k, v))
        if segment_ids is not None:
            segment_ids = jnp.pad(segment_ids, [(0, 0), (0, padded - T)], constant_values=-1)
    out = flash.mha(q, k, v, segment_ids, sm_scale=1.0 / math.sqrt(hd), causal=True, block_sizes=sizes,
                    interpret=interpret)
    return out[:, :T]


KERNELS = {
    "xla": xla_attention,
    "cudnn": cudnn_attention,
    "pallas": pallas_attention,
    # The Pallas kernel run by the Pallas interpreter: slow, but exact on any backend. For tests and debugging.
    "pallas_interpret": functools.partial(pallas_attention, interpret=True),
}


def attention(impl: str, q, k, v, *, segment_ids=None, dropout=None, deterministic: bool = True, rngs=None):
    """Causal attention with the named kernel (a value resolve_attention returned, or 'pallas_interpret');
    segment_ids [B, T] keep packed examples apart."""
    if impl == "xla":
        return xla_attention(q, k, v, segment_ids=segment_ids, dropout=dropout, deterministic=deterministic,
                             rngs=rngs)
    if q.shape[1] != k.shape[1]:  # fused kernels here assume aligned queries and keys; decoding steps do not
        return xla_attention(q, k, v)
    if segment_ids is None:
        return KERNELS[impl](q, k, v)
    if impl == "cudnn":
        raise ConfigError("cuDNN attention is not given segment ids; packed batches need model.attention=pallas "
                          "or xla (see check_packing)")
    return KERNELS[impl](q, k, v, segment_ids=segment_ids)
