"""A decoder-only GPT in Flax NNX, in one file: GPT-2 by default, Llama-style parts by config.

    embed (+ learned positions) -> dropout -> num_layers x Block -> [final norm] -> head (tied or not) -> fp32 logits

Every option is a field of ModelConfig (the same names as the `model` section of gptjax.config.base_config()).
Parameters carry logical axis names ('vocab', 'embed', 'heads', 'mlp', 'norm', 'position', 'layers') and nothing
else: mapping those to mesh axes is the sharding code's business, so the math below never mentions a mesh.

Parameter paths (for checkpoints and conversions): wte, wpe, blocks.{ln_1, attn.{qkv, out, q_norm, k_norm},
ln_2, mlp.{up, gate, down}}, ln_f, lm_head. Every blocks.* array has a leading [num_layers] axis: layer i is
slice i, whether the forward pass loops over the layers or unrolls them (model.scan_layers).

Decoding passes a KVCache (every layer's keys and values, stacked like the parameters) and the slot where the new
tokens go; the call then also returns the updated cache. Without a cache the training path runs unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from gptjax.attention import attention, resolve_attention, xla_attention
from gptjax.config import ConfigError, check_model


# What the backward pass may keep instead of recomputing (jax.checkpoint policies).
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    block_size: int
    num_layers: int
    num_heads: int
    d_model: int
    num_kv_heads: int = 0  # 0 -> num_heads (MHA); 1 -> MQA; in between -> GQA
    d_ff: int = 0  # 0 -> 4*d_model (gelu/relu2) or round_up(8*d_model/3, 64) (swiglu: same params as 4*d, 3 mats)
    norm_position: str = "pre"  # pre | post
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5
    mlp: str = "gelu"  # gelu | swiglu | relu2
    position: str = "learned"  # learned | rope
    rope_theta: float = 10000.0
    qk_norm: bool = False
    tie_embeddings: bool = True
    use_bias: bool = True
    dropout: float = 0.0  # embeddings + each residual branch
    attn_dropout: float = 0.0  # attention probabilities (xla path only)
    init_std: float = 0.02
    zero_init_out: bool = False  # attention's and the MLP's output projections start at zero
    logit_softcap: float = 0.0  # > 0: logits = cap * tanh(logits / cap)
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"
    attention: str = "xla"  # xla | cudnn | pallas | auto
    remat: str = "none"  # none | full | dots: recompute activations in the backward pass to save memory
    scan_layers: bool = False  # compile one layer and loop over it (True), or unroll num_layers copies (False)

    def __post_init__(self):
        check_model(dataclasses.asdict(self))  # fail at construction, not at the first traced step

    def __repr__(self) -> str:
        # The shape fields always, the rest only where they differ from the defaults: the generated repr lists every
        # field, which buries what makes this model different. The count is computed from shapes (no arrays).
        required = ("vocab_size", "block_size", "num_layers", "num_heads", "d_model")
        fields = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                  if f.name in required or getattr(self, f.name) != f.default]
        try:
            count = f" [{count_params(self):,} parameters]"
        except Exception:  # a repr must not raise (it may be formatting another error); the fields still show
            count = ""
        return f"ModelConfig({', '.join(fields)}){count}"

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def ff_dim(self) -> int:
        if self.d_ff:
            return self.d_ff
        if self.mlp == "swiglu":
            return -(-8 * self.d_model // (3 * 64)) * 64  # ceil(8d/3) up to a multiple of 64: MXU/tensor-core friendly
        return 4 * self.d_model

    @classmethod
    def from_config(cls, model_cfg, vocab_size: int | None = None) -> "ModelConfig":
        """From the `model` section of a run config; vocab_size is the tokenizer's (used when model.vocab_size=0)."""
        values = {f.name: model_cfg[f.name] for f in dataclasses.fields(cls)}
        if values["vocab_size"] == 0:
            if vocab_size is None:
                raise ConfigError("model.vocab_size=0 means 'the tokenizer's vocabulary size', but none was given")
            values["vocab_size"] = vocab_size
        elif vocab_size is not None and values["vocab_size"] < vocab_size:
            raise ConfigError(f"model.vocab_size={values['vocab_size']} is smaller than the tokenizer's vocabulary "
                              f"({vocab_size}); use 0 to take the tokenizer's size, or a larger value to pad")
        return cls(**values)


# ----------------------------------------------------------------------------------------------------------------
# Building blocks


def _init(std: float, *names: str):
    # eager_sharding=False: the names are logical, so there is no mesh to place them on yet; the sharding code
    # maps them through its rules table and shards the state itself. This also lets the model be built anywhere.
    base = nnx.initializers.normal(std) if std else nnx.initializers.zeros_init()
    return nnx.with_partitioning(base, names, eager_sharding=False)


def _out_std(cfg: ModelConfig) -> float:
    """The residual branches' output projections: scaled down so the residual stream's variance does not grow
    with depth (GPT-2), or zero (model.zero_init_out), so each block starts as the identity and learns what to
    add to it."""
    return 0.0 if cfg.zero_init_out else cfg.init_std / math.sqrt(2 * cfg.num_layers)


def _ones(*names: str):
    return nnx.with_partitioning(nnx.initializers.ones_init(), names, eager_sharding=False)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul(x: jax.Array, w: jax.Array, precision=None) -> jax.Array:
    """x [..., d_in] @ w [d_in, d_out]: every projection of the model (nnx.Linear's product and the tied head).

    The same product as jnp.matmul, with the weight gradient ordered by hand. That gradient contracts the token
    axes of the input and of the output's gradient, and autodiff writes it as (dy^T x)^T, so XLA's CPU backend
    transposes dy into a copy first. For the MLP's 4x-wide activations, the head's logits and the fused qkv, that
    copy is larger than the weight and, when it is fused with the elementwise backward before it, slower than the
    product itself (docs/benchmarks.md, "Step speed against the peers"). Putting the narrower of the two operands
    on the transposed side makes the copy small or lets the dot read it in place; a GPU's matmuls take either
    order. Gradients equal autodiff's to float rounding (tests/test_model.py)."""
    return jnp.matmul(x, w, precision=precision)


def _matmul_fwd(x, w, precision):
    return jnp.matmul(x, w, precision=precision), (x, w)


def _matmul_bwd(precision, residuals, dy):
    x, w = residuals
    dx = jnp.matmul(dy, w.T, precision=precision)
    tokens_x, tokens_dy = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
    if tokens_x.shape[1] <= tokens_dy.shape[1]:
        dw = jnp.matmul(tokens_x.T, tokens_dy, precision=precision)
    else:
        dw = jnp.matmul(tokens_dy.T, tokens_x, precision=precision).T
    return dx.astype(x.dtype), dw.astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _linear_product(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, out_sharding=None):
    """nnx.Linear's dot_general, as matmul (the only product Linear asks for: last axis by the kernel's first)."""
    (contracting, batch) = dimension_numbers
    if (contracting != ((lhs.ndim - 1,), (0,)) or batch != ((), ()) or preferred_element_type is not None
            or out_sharding is not None):
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                   preferred_element_type=preferred_element_type, out_sharding=out_sharding)
    return matmul(lhs, rhs, precision)


def _linear(cfg: ModelConfig, d_in: int, d_out: int, names: tuple[str, str], *, rngs: nnx.Rngs,
            std: float | None = None, bias: bool | None = None) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, use_bias=cfg.use_bias if bias is None else bias,
                      kernel_init=_init(cfg.init_std if std is None else std, *names),
                      bias_init=_init(0.0, names[1]), dtype=jnp.dtype(cfg.dtype),
                      param_dtype=jnp.dtype(cfg.param_dtype), dot_general=_linear_product, rngs=rngs)


def _norm(cfg: ModelConfig, dim: int, *, rngs: nnx.Rngs, rms: bool = False):
    kw = dict(epsilon=cfg.norm_eps, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
              scale_init=_ones("norm"), rngs=rngs)
    if rms or cfg.norm == "rmsnorm":
        return nnx.RMSNorm(dim, **kw)
    return nnx.LayerNorm(dim, use_bias=cfg.use_bias, bias_init=_init(0.0, "norm"), **kw)


def rope_tables(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos, sin [..., T, 1, head_dim] for positions [..., T]; float32 because bf16 angles lose whole positions."""
    inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [..., T, hd/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[..., None, :]  # [..., T, 1, hd]: broadcast over heads
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate-half convention (Llama/HF), so converted Llama-family weights work unchanged."""
    x32 = x.astype(jnp.float32)
    x1, x2 = jnp.split(x32, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x32 * cos + rotated * sin).astype(x.dtype)


class KVCache(NamedTuple):
    """Keys and values of every layer for decoding: k, v [num_layers, batch, max_len, kv_heads, head_dim], in
    the compute dtype (after RoPE, so cached keys are never rotated again). Slot s of a row holds that row's token
    at position s; which slots are filled is the caller's to track (the `cache_index` passed to GPT.__call__)."""

    k: jax.Array
    v: jax.Array

    @classmethod
    def zeros(cls, cfg: "ModelConfig", batch: int, max_len: int) -> "KVCache":
        if cfg.position == "learned" and max_len > cfg.block_size:
            raise ValueError(f"a cache of {max_len} positions is longer than the learned position table "
                             f"(model.block_size={cfg.block_size})")
        shape = (cfg.num_layers, batch, max_len, cfg.kv_heads, cfg.head_dim)
        return cls(jnp.zeros(shape, jnp.dtype(cfg.dtype)), jnp.zeros(shape, jnp.dtype(cfg.dtype)))

    @property
    def max_len(self) -> int:
        return self.k.shape[2]


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, impl: str, *, rngs: nnx.Rngs):
        self.cfg, self.impl = cfg, impl
        H, KV, hd = cfg.num_heads, cfg.kv_heads, cfg.head_dim
        # One fused projection: a single large matmul instead of three small ones.
        self.qkv = _linear(cfg, cfg.d_model, (H + 2 * KV) * hd, ("embed", "heads"), rngs=rngs)
        self.out = _linear(cfg, H * hd, cfg.d_model, ("heads", "embed"), rngs=rngs, std=_out_std(cfg))
        if cfg.qk_norm:  # bounds the attention logits, which keeps high learning rates stable
            self.q_norm = _norm(cfg, hd, rngs=rngs, rms=True)
            self.k_norm = _norm(cfg, hd, rngs=rngs, rms=True)
        self.attn_drop = nnx.Dropout(cfg.attn_dropout)

    def __call__(self, x, rope, *, deterministic: bool, rngs, past=None, segment_ids=None):
        """past: None (training), or (cached k, cached v, mask [B, T, S + T]) of this layer; then the result is
        (output, (k, v) of the new tokens), and writing those into the cache is the caller's job. segment_ids
        [B, T]: packed examples, each attending only to itself."""
        B, T, _ = x.shape
        H, KV, hd = self.cfg.num_heads, self.cfg.kv_heads, self.cfg.head_dim
        q, k, v = jnp.split(self.qkv(x), [H * hd, (H + KV) * hd], axis=-1)
        q, k, v = q.reshape(B, T, H, hd), k.reshape(B, T, KV, hd), v.reshape(B, T, KV, hd)
        if self.cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if past is None:
            y = attention(self.impl, q, k, v, segment_ids=segment_ids, dropout=self.attn_drop,
                          deterministic=deterministic, rngs=rngs)
            return self.out(y.reshape(B, T, H * hd))
        # The new tokens read the cached slots and themselves; the reference kernel takes any mask, which is
        # what decoding needs (the fused kernels are for training's aligned, causal square).
        past_k, past_v, mask = past
        y = xla_attention(q, jnp.concatenate([past_k, k], axis=1), jnp.concatenate([past_v, v], axis=1), mask=mask)
        return self.out(y.reshape(B, T, H * hd)), (k, v)


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.kind = cfg.mlp
        d, ff = cfg.d_model, cfg.ff_dim
        self.up = _linear(cfg, d, ff, ("embed", "mlp"), rngs=rngs)
        if cfg.mlp == "swiglu":
            self.gate = _linear(cfg, d, ff, ("embed", "mlp"), rngs=rngs)
        self.down = _linear(cfg, ff, d, ("mlp", "embed"), rngs=rngs, std=_out_std(cfg))

    def __call__(self, x):
        h = self.up(x)
        if self.kind == "gelu":
            h = jax.nn.gelu(h, approximate=True)  # GPT-2's gelu_new: the tanh approximation
        elif self.kind == "relu2":
            h = jnp.square(jax.nn.relu(h))
        else:
            h = jax.nn.silu(self.gate(x)) * h
        return self.down(h)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, impl: str, *, rngs: nnx.Rngs):
        self.pre = cfg.norm_position == "pre"
        self.ln_1 = _norm(cfg, cfg.d_model, rngs=rngs)
        self.attn = Attention(cfg, impl, rngs=rngs)
        self.ln_2 = _norm(cfg, cfg.d_model, rngs=rngs)
        self.mlp = MLP(cfg, rngs=rngs)
        self.drop = nnx.Dropout(cfg.dropout)

    def __call__(self, x, rope, *, deterministic: bool, rngs, past=None, segment_ids=None):
        """past, segment_ids: see Attention; with past the result is (x, this layer's new (k, v))."""
        kw = dict(deterministic=deterministic, rngs=rngs)
        new_kv = None

        def attn(h):
            nonlocal new_kv
            y = self.attn(h, rope, past=past, segment_ids=segment_ids, **kw)
            if past is not None:
                y, new_kv = y
            return self.drop(y, **kw)

        def mlp(h):
            return self.drop(self.mlp(h), **kw)

        if self.pre:  # the residual stream is never normalized, so gradients reach early layers unchanged
            x = x + attn(self.ln_1(x))
            x = x + mlp(self.ln_2(x))
        else:
            x = self.ln_1(x + attn(x))  # post-norm: the original Transformer / BERT arrangement
            x = self.ln_2(x + mlp(x))
        return x if past is None else (x, new_kv)


# ----------------------------------------------------------------------------------------------------------------
# The model


class GPT(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.attention_impl = resolve_attention(cfg.attention, cfg.dtype)
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        self.wte = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=_init(cfg.init_std, "vocab", "embed"),
                             dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if cfg.position == "learned":
            self.wpe = nnx.Embed(cfg.block_size, cfg.d_model,
                                 embedding_init=_init(cfg.init_std, "position", "embed"),
                                 dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.drop = nnx.Dropout(cfg.dropout)
        # One Block whose parameters carry a leading [num_layers] axis (logical name 'layers'), each layer drawn
        # from its own key: the forward pass scans over that axis (see scan_layers).
        @nnx.split_rngs(splits=cfg.num_layers)
        @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def stacked_blocks(rngs):
            return Block(cfg, self.attention_impl, rngs=rngs)

        self.blocks = stacked_blocks(rngs)
        if cfg.norm_position == "pre":  # post-norm blocks already end in a norm
            self.ln_f = _norm(cfg, cfg.d_model, rngs=rngs)
        if not cfg.tie_embeddings:
            self.lm_head = _linear(cfg, cfg.d_model, cfg.vocab_size, ("embed", "vocab"), rngs=rngs, bias=False)

    @property
    def num_params(self) -> int:
        """Parameters of this model instance (also of an abstract one from nnx.eval_shape)."""
        return num_params(nnx.state(self, nnx.Param))

    def __repr__(self) -> str:
        # A one-line summary instead of nnx's repr, which prints every array of every layer.
        cfg = self.cfg
        heads = f"{cfg.num_heads} heads" + (f" ({cfg.kv_heads} kv)" if cfg.kv_heads != cfg.num_heads else "")
        return (f"GPT({self.num_params:,} parameters: {cfg.num_layers} layers, {heads} of {cfg.head_dim}, "
                f"d_model {cfg.d_model}, d_ff {cfg.ff_dim}, block {cfg.block_size}, vocab {cfg.vocab_size}; "
                f"{cfg.position} positions, {cfg.mlp}, {cfg.norm_position}-{cfg.norm}, "
                f"{'tied' if cfg.tie_embeddings else 'untied'} head, {cfg.dtype})")

    __str__ = __repr__  # print(model) too; nnx.display(model) still shows every array

    def __call__(self, tokens: jax.Array, *, positions: jax.Array | None = None,
                 segment_ids: jax.Array | None = None, deterministic: bool = True, rngs: nnx.Rngs | None = None,
                 cache: KVCache | None = None, cache_index: jax.Array | None = None):
        """tokens int32 [B, T] -> logits float32 [B, T, vocab]. positions [B, T] or [T] default to arange(T).

        Packed rows (several examples one after another): segment_ids int32 [B, T] number the examples of a row,
        and attention never crosses from one to another; positions then restart at 0 with each example (the
        loader gives both), so an example is computed as it would be alone in its row.

        Decoding: with `cache` (a KVCache) and `cache_index` (int [B] or a scalar: the slot of each row's first
        new token, which is also its position) the new tokens read the row's slots before cache_index plus
        themselves (causally), are written into slots [cache_index, cache_index + T), and the call returns
        (logits, updated cache). The caller keeps cache_index + T <= cache.max_len: a traced index cannot be
        checked here, and an update past the end would be clamped onto the last slots."""
        cfg = self.cfg
        B, T = tokens.shape
        if cache is not None:
            if segment_ids is not None:
                raise ValueError("segment_ids are for training on packed rows, not for decoding with a cache")
            if positions is not None or cache_index is None:
                raise ValueError("with a cache, pass cache_index (the positions are cache_index + arange(T)), "
                                 "not positions")
            start = jnp.broadcast_to(jnp.asarray(cache_index, jnp.int32), (B,))
            positions = start[:, None] + jnp.arange(T, dtype=jnp.int32)
            # Query t of row b reads cached slots s < start[b] (the row's history; later slots are stale or
            # padding) and the new tokens up to itself.
            history = jnp.arange(cache.max_len, dtype=jnp.int32)[None, None, :] < start[:, None, None]
            causal = jnp.tril(jnp.ones((T, T), dtype=bool))
            mask = jnp.concatenate([jnp.broadcast_to(history, (B, T, cache.max_len)),
                                    jnp.broadcast_to(causal, (B, T, T))], axis=-1)
        elif positions is None:
            if T > cfg.block_size:  # past the table, a lookup would silently read garbage
                raise ValueError(f"sequence length {T} exceeds model.block_size={cfg.block_size}")
            positions = jnp.arange(T, dtype=jnp.int32)
        x = self.wte(tokens)
        rope = None
        if cfg.position == "learned":
            x = x + self.wpe(positions)
        else:  # computed once here, shared by every layer
            rope = rope_tables(positions, cfg.head_dim, cfg.rope_theta)
        x = self.drop(x, deterministic=deterministic, rngs=rngs)

        # Layers run as pure functions of their parameters (split out, merged back inside), so jax.checkpoint and
        # lax.scan apply directly, and the model also works when a jitted function closes over it.
        def layer(graphdef, params, x, key, past_kv):
            block = nnx.merge(graphdef, params)
            past = None if past_kv is None else (*past_kv, mask)
            return block(x, rope, deterministic=deterministic, segment_ids=segment_ids,
                         rngs=None if key is None else nnx.Rngs(dropout=key), past=past)

        if cfg.remat != "none":  # keep only each block's input (full) or also its matmul outputs (dots)
            layer = jax.checkpoint(layer, policy=REMAT_POLICIES[cfg.remat], static_argnums=0)
        keys = None if rngs is None else jax.random.split(rngs.dropout(), cfg.num_layers)  # one per layer
        graphdef, stacked = nnx.split(self.blocks)

        def scan_step(x, layer_inputs):
            if cache is None:
                params, key = layer_inputs
                return layer(graphdef, params, x, key, None), None
            params, key, layer_kv = layer_inputs
            return layer(graphdef, params, x, key, layer_kv)  # (x, this layer's new k, v): stacked by the scan

        # scan_layers: XLA compiles one layer and loops over the slices, so compile time does not grow with depth.
        # Otherwise the loop is unrolled into num_layers copies, which small models on a CPU run a little faster.
        # A cache's k and v are scanned with the parameters: layer i reads slice i.
        layer_inputs = (stacked, keys) if cache is None else (stacked, keys, (cache.k, cache.v))
        x, new_kv = jax.lax.scan(scan_step, x, layer_inputs, unroll=not cfg.scan_layers)
        if cfg.norm_position == "pre":
            x = self.ln_f(x)
        if cfg.tie_embeddings:  # nnx.Embed.attend's product, through matmul
            x, table = self.wte.promote_dtype((x, self.wte.embedding[...]), dtype=self.wte.dtype)
            logits = matmul(x, table.T)
        else:
            logits = self.lm_head(x)
        logits = logits.astype(jnp.float32)  # the loss wants fp32 whatever the compute dtype
        if cfg.logit_softcap:  # bounded logits: no token's score can run away (and the softmax stays smooth)
            logits = cfg.logit_softcap * jnp.tanh(logits / cfg.logit_softcap)
        if cache is None:
            return logits
        return logits, KVCache(*(_write_slots(c, new, start) for c, new in zip(cache, new_kv)))


def _write_slots(cache: jax.Array, new: jax.Array, start: jax.Array) -> jax.Array:
    """cache [L, B, S, KV, hd] with new [L, B, T, KV, hd] written at slots start[b]..start[b]+T-1 of each row b.
    One update of the whole stack after the layer scan (not one per layer inside it), which a decode loop that
    carries the cache can do in place."""
    def one_row(row_cache, row_new, row_start):  # [L, S, KV, hd], [L, T, KV, hd], scalar
        return jax.lax.dynamic_update_slice_in_dim(row_cache, row_new.astype(row_cache.dtype), row_start, axis=1)

    return jax.vmap(one_row, in_axes=(1, 1, 0), out_axes=1)(cache, new, start)


def count_params(cfg: ModelConfig, *, non_embedding: bool = False) -> int:
    """Parameters of GPT(cfg), from shapes only (nothing is allocated). non_embedding drops the position table,
    as nanoGPT reports it; the token table stays since, tied, it is also the output layer."""
    cfg = dataclasses.replace(cfg, attention="xla")  # the count does not depend on the kernel or this machine
    total = nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0))).num_params
    if non_embedding and cfg.position == "learned":
        total -= cfg.block_size * cfg.d_model
    return total


def num_params(params) -> int:
    """Elements in a tree of parameters: arrays, or their shapes (jax.ShapeDtypeStruct, abstract Variables)."""
    return sum(p.size for p in jax.tree.leaves(params))
