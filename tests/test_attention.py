"""Attention kernels: the xla reference against jax's own, the Pallas flash kernel (interpret mode, so it runs on
any backend) against the reference forward and backward, and choosing a kernel by name."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gptjax import attention as attention_module
from gptjax.attention import attention, pallas_attention, resolve_attention, xla_attention
from gptjax.config import ConfigError
from gptjax.model import GPT, ModelConfig

TINY = dict(vocab_size=50, block_size=40, num_layers=2, num_heads=4, d_model=32)
ON_GPU = jax.default_backend() == "gpu"


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


def qkv(T: int, kv_heads: int, H: int = 4, hd: int = 8, S: int | None = None, dtype=jnp.float32):
    keys = jax.random.split(jax.random.key(T * 10 + kv_heads), 3)
    S = S or T
    return (jax.random.normal(keys[0], (2, T, H, hd), dtype), jax.random.normal(keys[1], (2, S, kv_heads, hd), dtype),
            jax.random.normal(keys[2], (2, S, kv_heads, hd), dtype))


# ----------------------------------------------------------------------------------------------------------------
# Choosing a kernel


@pytest.mark.skipif(ON_GPU, reason="checks the message on machines without a GPU")
@pytest.mark.parametrize("name", ["cudnn", "pallas"])
def test_fused_kernels_without_gpu_are_a_clear_error(name):
    with pytest.raises(ConfigError, match="'xla'") as err:
        resolve_attention(name, "bfloat16")
    assert "\n" not in str(err.value) and "cpu" in str(err.value) and name in str(err.value)
    with pytest.raises(ConfigError, match="NVIDIA GPU"):
        GPT(tiny(attention=name, dtype="bfloat16"), rngs=nnx.Rngs(0))


@pytest.mark.skipif(ON_GPU, reason="on a GPU 'auto' may pick cudnn")
def test_auto_without_gpu_is_xla():
    assert resolve_attention("auto") == "xla"
    assert resolve_attention("auto", "bfloat16") == "xla"
    assert GPT(tiny(attention="auto"), rngs=nnx.Rngs(0)).attention_impl == "xla"


def test_unknown_kernel():
    with pytest.raises(ConfigError, match="'flash' is not one of: xla, cudnn, pallas, auto"):
        resolve_attention("flash")


def test_attn_dropout_needs_xla():
    with pytest.raises(ConfigError, match="attn_dropout"):
        GPT(tiny(attention="auto", attn_dropout=0.1), rngs=nnx.Rngs(0))


# ----------------------------------------------------------------------------------------------------------------
# The xla reference


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_xla_attention_matches_jax(kv_heads):
    q, k, v = qkv(12, kv_heads)

    @jax.jit
    def compare(q, k, v):
        out = xla_attention(q, k, v)
        reference = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
        # GQA is MHA with each kv head repeated for its group of query heads (HF's repeat_kv).
        group = 4 // kv_heads
        mha = jax.nn.dot_product_attention(q, jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2),
                                           is_causal=True, implementation="xla")
        return out, reference, mha

    out, reference, mha = compare(q, k, v)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    np.testing.assert_allclose(out, mha, atol=1e-5)


@pytest.mark.parametrize("kv_heads", [4, 1])
def test_long_sequences_in_query_blocks_match_the_full_computation(kv_heads):
    """At 2 * QUERY_BLOCK tokens and beyond, the reference runs block by block; same outputs and gradients as
    jax's own dense attention."""
    T = 2 * attention_module.QUERY_BLOCK
    q, k, v = qkv(T, kv_heads)
    group = 4 // kv_heads

    def dense(q, k, v):
        return jax.nn.dot_product_attention(q, jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2),
                                            is_causal=True, implementation="xla")

    program = str(jax.make_jaxpr(xla_attention)(q, k, v))
    assert f"{T},{T}]" not in program.replace(" ", "")  # scores are never a whole [T, T] square
    (loss, grads), (ref_loss, ref_grads) = loss_and_grads(xla_attention, q, k, v), loss_and_grads(dense, q, k, v)
    assert float(loss) == pytest.approx(float(ref_loss), abs=1e-6 * q.size)
    for name, g, ref in zip("qkv", grads, ref_grads):
        np.testing.assert_allclose(g, ref, atol=1e-4 * float(jnp.abs(ref).max()), err_msg=f"d{name}")
    np.testing.assert_allclose(jax.jit(xla_attention)(q, k, v), jax.jit(dense)(q, k, v), atol=1e-5)


def dot_products(jaxpr):
    """(lhs shape, rhs shape, lhs contracted axes, rhs contracted axes) of every dot_general, nested ones too."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lhs, rhs), _ = eqn.params["dimension_numbers"]
            yield eqn.invars[0].aval.shape, eqn.invars[1].aval.shape, tuple(lhs), tuple(rhs)
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                yield from dot_products(inner)


def test_the_backward_reads_score_blocks_in_place():
    """Every product with a [queries, keys] block of scores, probabilities or their gradients takes it in its
    stored order: on the left contracted over keys (its last axis), on the right over queries. The other way
    round, XLA's CPU backend copies the block transposed first (docs/benchmarks.md, "Step speed against the
    peers"); autodiff writes dk = dS^T q that way, so _scores' backward orders it by hand."""
    T, hd = 2 * attention_module.QUERY_BLOCK, 8
    q, k, v = qkv(T, 2, hd=hd)
    step = jax.make_jaxpr(lambda q, k, v, d: jax.vjp(xla_attention, q, k, v)[1](d))(q, k, v, q)
    seen = 0
    for lhs, rhs, lhs_axes, rhs_axes in dot_products(step.jaxpr):
        if len(lhs) == 5 and lhs[-1] != hd:
            assert lhs_axes == (len(lhs) - 1,), (lhs, rhs, lhs_axes)
            seen += 1
        if len(rhs) == 5 and rhs[-1] != hd:
            assert len(rhs) - 1 not in rhs_axes, (lhs, rhs, rhs_axes)
            seen += 1
    assert seen == 2 * 4  # per query block: probs @ v, dq, dv and dk


# ----------------------------------------------------------------------------------------------------------------
# Pallas flash attention, in interpret mode


def loss_and_grads(kernel, q, k, v):
    """A loss that weights every output element differently, so a wrong gradient anywhere shows."""
    weights = jax.random.normal(jax.random.key(7), q.shape, jnp.float32)

    def loss(q, k, v):
        return jnp.sum(kernel(q, k, v).astype(jnp.float32) * weights)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(q, k, v)


# 40: one 64-token tile, padded; 64: exact; 160: three 128-token tiles after padding to 256 (the multi-tile path).
@pytest.mark.parametrize("T, kv_heads", [(40, 4), (64, 2), (160, 1)], ids=["mha-padded", "gqa", "mqa-multitile"])
def test_pallas_matches_reference_forward_and_backward(T, kv_heads):
    q, k, v = qkv(T, kv_heads)
    out = jax.jit(lambda q, k, v: pallas_attention(q, k, v, interpret=True))(q, k, v)
    np.testing.assert_allclose(out, xla_attention(q, k, v), atol=2e-5)
    (loss, grads) = loss_and_grads(lambda q, k, v: pallas_attention(q, k, v, interpret=True), q, k, v)
    (ref_loss, ref_grads) = loss_and_grads(xla_attention, q, k, v)
    assert float(loss) == pytest.approx(float(ref_loss), abs=1e-6 * q.size)  # a sum of q.size float32 terms
    for name, g, ref in zip("qkv", grads, ref_grads):
        assert g.shape == ref.shape
        np.testing.assert_allclose(g, ref, atol=1e-4 * float(jnp.abs(ref).max()), err_msg=f"d{name}")


def test_pallas_bf16():
    q, k, v = qkv(64, 2, dtype=jnp.bfloat16)
    out = pallas_attention(q, k, v, interpret=True)
    assert out.dtype == jnp.bfloat16
    ref = xla_attention(*(x.astype(jnp.float32) for x in (q, k, v)))
    np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=0.03)


def test_fused_kernels_leave_decoding_to_xla():
    """A query block shorter than the keys (decoding against a cache) is not what the fused kernels handle."""
    q, k, v = qkv(4, 2, S=16)
    np.testing.assert_allclose(attention("pallas_interpret", q, k, v), xla_attention(q, k, v), atol=0)
    with pytest.raises(ValueError, match="as many keys as queries"):
        pallas_attention(q, k, v, interpret=True)


@pytest.mark.parametrize("scan", [True, False])
def test_model_with_pallas_matches_xla(scan):
    """The whole model, logits and parameter gradients, with the kernel swapped in (interpret mode)."""
    cfg = tiny(position="rope", num_kv_heads=2, scan_layers=scan)
    model = GPT(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    tokens = jax.random.randint(jax.random.key(1), (2, cfg.block_size), 0, cfg.vocab_size)

    def run(impl):
        m = nnx.merge(graphdef, params)
        m.attention_impl = impl
        m.blocks.attn.impl = impl
        graph, state = nnx.split(m)
        uses_kernel = "pallas_call" in str(jax.make_jaxpr(lambda s: nnx.merge(graph, s)(tokens))(state))
        assert uses_kernel == (impl == "pallas_interpret")

        @jax.jit
        def loss_and_grad(state):
            def loss(state):
                logits = nnx.merge(graph, state)(tokens)
                return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, tokens[..., None], -1)[..., 0])
            return jax.value_and_grad(loss)(state)

        return loss_and_grad(state)

    loss, grads = run("pallas_interpret")
    ref_loss, ref_grads = run("xla")
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-5)
    for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(g, ref, atol=1e-5 + 1e-4 * float(jnp.abs(ref).max()))


# ----------------------------------------------------------------------------------------------------------------
# On a GPU


@pytest.mark.skipif(not ON_GPU, reason="fused attention kernels need an NVIDIA GPU")
@pytest.mark.parametrize("name", ["cudnn", "pallas"])
def test_fused_kernels_match_xla_on_gpu(name):
    assert resolve_attention("auto", "bfloat16") == "cudnn" and resolve_attention("auto", "float32") == "xla"
    with pytest.raises(ConfigError, match="bfloat16 or float16"):
        resolve_attention("cudnn", "float32")
    cfg = tiny(position="rope", num_kv_heads=2, dtype="bfloat16", d_model=64, block_size=256)  # head_dim 16
    tokens = jax.random.randint(jax.random.key(1), (2, 256), 0, cfg.vocab_size)
    xla = GPT(cfg, rngs=nnx.Rngs(0))(tokens)
    fused = GPT(dataclasses.replace(cfg, attention=name), rngs=nnx.Rngs(0))
    assert fused.attention_impl == name
    np.testing.assert_allclose(fused(tokens), xla, atol=0.05 * float(jnp.abs(xla).max()))


# Shapes the GPU kernels must handle: GPT-2's head dim (64) at short and long context, GQA and MQA, and a length
# that Pallas pads. bf16 inputs, compared with the xla kernel on the same inputs in float32.
GPU_SHAPES = [(128, 12, 12, 64), (1024, 12, 12, 64), (512, 8, 2, 64), (256, 8, 1, 128), (200, 4, 4, 64)]


@pytest.mark.skipif(not ON_GPU, reason="fused attention kernels need an NVIDIA GPU")
@pytest.mark.parametrize("name", ["cudnn", "pallas"])
@pytest.mark.parametrize("T, H, KV, hd", GPU_SHAPES, ids=[f"T{t}-H{h}-KV{kv}-hd{d}" for t, h, kv, d in GPU_SHAPES])
def test_fused_kernels_forward_and_gradients_on_gpu(name, T, H, KV, hd):
    q, k, v = qkv(T, KV, H=H, hd=hd, dtype=jnp.bfloat16)
    kernel = attention_module.KERNELS[name]
    out = jax.jit(kernel)(q, k, v)
    assert out.dtype == jnp.bfloat16 and out.shape == q.shape
    wide = [x.astype(jnp.float32) for x in (q, k, v)]
    ref = xla_attention(*wide)
    np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=0.03 * float(jnp.abs(ref).max()))
    (loss, grads), (ref_loss, ref_grads) = loss_and_grads(kernel, q, k, v), loss_and_grads(xla_attention, *wide)
    assert float(loss) == pytest.approx(float(ref_loss), rel=0.02, abs=0.02 * q.size ** 0.5)
    for label, g, r in zip("qkv", grads, ref_grads):
        assert g.shape == r.shape, label
        np.testing.assert_allclose(g.astype(jnp.float32), r, atol=0.05 * float(jnp.abs(r).max()), err_msg=f"d{label}")
