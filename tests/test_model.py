"""The GPT model: every option builds and runs, causality, parameter counts, initialization, dtypes, dropout,
attention implementations, RoPE, and config plumbing. Tiny models; on 2 CPU cores the file takes ~30 s, nearly all
of it XLA compiles, so tests share configs (and forward()'s compile cache) wherever they can."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gptjax.config import ConfigError, base_config
from gptjax.model import GPT, ModelConfig, apply_rope, count_params, matmul, rope_tables

TINY = dict(vocab_size=50, block_size=16, num_layers=2, num_heads=4, d_model=32)
B, T = 2, 16


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


def tokens(seed: int = 0, batch: int = B, length: int = T) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (batch, length), 0, TINY["vocab_size"], dtype=jnp.int32)


def build(cfg: ModelConfig, seed: int = 0) -> GPT:
    return GPT(cfg, rngs=nnx.Rngs(seed))


@nnx.jit(static_argnames="deterministic")
def forward(model, x, positions=None, deterministic=True, rngs=None):
    """One compile per model structure, cached across tests: much faster on CPU than op-by-op dispatch."""
    return model(x, positions=positions, deterministic=deterministic, rngs=rngs)


def params_by_path(model: GPT) -> dict[str, nnx.Variable]:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {"/".join(map(str, path)): var for path, var in flat}


# ----------------------------------------------------------------------------------------------------------------
# Every option

# One row per model; together they take every value of every option. num_heads=4, so kv 0=MHA, 2=GQA, 1=MQA.
FIELDS = ("norm_position", "norm", "mlp", "position", "num_kv_heads", "qk_norm", "tie_embeddings", "use_bias")
COMBOS = [
    ("pre", "layernorm", "gelu", "learned", 0, False, True, True),  # GPT-2
    ("pre", "rmsnorm", "swiglu", "rope", 2, False, False, False),  # Llama
    ("pre", "rmsnorm", "swiglu", "rope", 1, True, False, False),
    ("pre", "layernorm", "relu2", "rope", 0, True, True, True),
    ("pre", "rmsnorm", "relu2", "learned", 1, False, True, False),
    ("pre", "layernorm", "gelu", "rope", 2, True, False, True),
    ("post", "layernorm", "gelu", "learned", 0, False, True, True),  # the original Transformer arrangement
    ("post", "rmsnorm", "swiglu", "learned", 2, True, True, True),
    ("post", "layernorm", "relu2", "rope", 1, False, False, False),
    ("post", "rmsnorm", "gelu", "rope", 0, True, False, True),
    ("post", "layernorm", "swiglu", "rope", 1, False, True, False),
    ("pre", "rmsnorm", "gelu", "learned", 2, False, False, True),
]


def combo_cfg(combo) -> ModelConfig:
    return tiny(**dict(zip(FIELDS, combo)))


# Later tests reuse these grid configs where they can: an equal config hits forward()'s compile cache.
GPT2, LLAMA, LLAMA_MQA, POST_GQA = (combo_cfg(COMBOS[i]) for i in (0, 1, 2, 7))


def test_combos_cover_every_value():
    values = (("pre", "post"), ("layernorm", "rmsnorm"), ("gelu", "swiglu", "relu2"), ("learned", "rope"),
              (0, 1, 2), (False, True), (False, True), (False, True))
    for i, allowed in enumerate(values):
        assert {c[i] for c in COMBOS} == set(allowed), FIELDS[i]


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "-".join(map(str, c)))
def test_every_option_runs(combo):
    cfg = combo_cfg(combo)
    model = build(cfg)
    logits = forward(model, tokens())
    assert logits.shape == (B, T, cfg.vocab_size)
    assert logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    # The structure follows the options.
    assert hasattr(model, "ln_f") == (cfg.norm_position == "pre")
    assert hasattr(model, "wpe") == (cfg.position == "learned")
    assert hasattr(model, "lm_head") == (not cfg.tie_embeddings)
    layers = model.blocks  # one Block holding every layer's parameters, stacked
    assert hasattr(layers.mlp, "gate") == (cfg.mlp == "swiglu")
    assert hasattr(layers.attn, "q_norm") == cfg.qk_norm
    assert (layers.attn.qkv.bias is not None) == cfg.use_bias
    assert layers.attn.qkv.kernel.shape[0] == cfg.num_layers
    # The eval_shape count agrees with the model actually built.
    assert count_params(cfg) == sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_every_parameter_gets_a_gradient():
    """Under jit, with dropout on: a parameter without gradient would be one the forward pass forgot to use.
    One config holding every kind of parameter (position table, biases, norm biases, gate, qk-norm, untied head)."""
    cfg = tiny(mlp="swiglu", num_kv_heads=2, qk_norm=True, tie_embeddings=False, dropout=0.1, attn_dropout=0.1,
               num_layers=1)  # one layer has every kind, and halves the compile
    model = build(cfg)
    graphdef, params = nnx.split(model, nnx.Param)
    x = tokens()

    @jax.jit
    def grads(params, key):
        def loss(params):
            logits = nnx.merge(graphdef, params)(x[:, :-1], deterministic=False, rngs=nnx.Rngs(dropout=key))
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), x[:, 1:, None], axis=-1))
        return jax.grad(loss)(params)

    for path, g in nnx.to_flat_state(grads(params, jax.random.key(1))):
        g = g[...] if isinstance(g, nnx.Variable) else g
        assert bool(jnp.all(jnp.isfinite(g))), path
        assert float(jnp.abs(g).max()) > 0, path


def test_invalid_options_fail_at_construction():
    with pytest.raises(ConfigError, match="model.norm"):
        tiny(norm="batchnorm")
    with pytest.raises(ConfigError, match="num_kv_heads"):
        tiny(num_kv_heads=3)
    with pytest.raises(ConfigError, match="num_heads"):
        tiny(num_heads=5)
    with pytest.raises(ValueError, match="block_size"):
        build(tiny())(tokens(length=T + 1))


def test_resolved_sizes():
    assert tiny().kv_heads == 4 and tiny(num_kv_heads=1).kv_heads == 1
    assert tiny().head_dim == 8
    assert tiny().ff_dim == 128 and tiny(mlp="relu2").ff_dim == 128 and tiny(d_ff=48).ff_dim == 48
    assert ModelConfig(100, 16, 1, 12, 768, mlp="swiglu").ff_dim == 2048  # 8/3*768 = 2048 exactly
    assert ModelConfig(100, 16, 1, 32, 4096, mlp="swiglu").ff_dim == 10944  # 10922.7 up to 64s (Llama rounds to 256)
    assert tiny(mlp="swiglu").ff_dim == 128  # 85.3 rounded up to 64s


# ----------------------------------------------------------------------------------------------------------------
# Causality


@pytest.mark.parametrize("cfg", [GPT2, LLAMA, LLAMA_MQA, POST_GQA],
                         ids=["learned-mha", "rope-gqa", "rope-mqa-qknorm", "post-learned-gqa"])
def test_causal(cfg):
    model = build(cfg)
    x = tokens()
    base = forward(model, x)
    for t in (0, 5, T - 1):
        changed = forward(model, x.at[:, t].set((x[:, t] + 1) % TINY["vocab_size"]))
        np.testing.assert_allclose(changed[:, :t], base[:, :t], atol=1e-6, err_msg=f"future token {t} leaked")
        assert float(jnp.abs(changed[:, t] - base[:, t]).max()) > 1e-6, f"token {t} did not affect its own logits"


# ----------------------------------------------------------------------------------------------------------------
# Parameter counts (HF's GPT2LMHeadModel / GPT2 medium counts; the causal-mask buffers are not parameters)

GPT2_SMALL = dict(vocab_size=50257, block_size=1024, num_layers=12, num_heads=12, d_model=768)


def test_gpt2_small_count():
    cfg = ModelConfig(**GPT2_SMALL)
    assert count_params(cfg) == 124_439_808
    assert count_params(cfg, non_embedding=True) == 124_439_808 - 1024 * 768
    padded = count_params(dataclasses.replace(cfg, vocab_size=50304))
    assert padded == 124_439_808 + 47 * 768
    assert abs(padded - 124e6) / 124e6 < 0.01


def test_gpt2_medium_count():
    cfg = ModelConfig(**{**GPT2_SMALL, "num_layers": 24, "num_heads": 16, "d_model": 1024})
    assert count_params(cfg) == 354_823_168
    padded = count_params(dataclasses.replace(cfg, vocab_size=50304))
    assert abs(padded - 354_823_168) / 354_823_168 < 0.01


def test_count_matches_formula_for_llama_style():
    cfg = tiny(norm="rmsnorm", mlp="swiglu", position="rope", num_kv_heads=2, qk_norm=True,
               tie_embeddings=False, use_bias=False)
    d, hd, ff, L, V = cfg.d_model, cfg.head_dim, cfg.ff_dim, cfg.num_layers, cfg.vocab_size
    per_layer = d * (4 + 2 * 2) * hd + 4 * hd * d + 3 * d * ff + 2 * d + 2 * hd
    assert count_params(cfg) == V * d + L * per_layer + d + d * V
    assert count_params(cfg, non_embedding=True) == count_params(cfg)  # no position table to drop


def test_count_params_does_not_need_a_gpu():
    assert count_params(tiny(attention="cudnn", dtype="bfloat16")) == count_params(tiny())


# ----------------------------------------------------------------------------------------------------------------
# Initialization


def test_gpt2_init():
    cfg = ModelConfig(vocab_size=512, block_size=64, num_layers=4, num_heads=4, d_model=256, tie_embeddings=False)
    params = params_by_path(nnx.jit(lambda: build(cfg))())  # one compile instead of one per shape
    residual_std = cfg.init_std / math.sqrt(2 * cfg.num_layers)
    checked = 0
    for path, var in params.items():
        value = np.asarray(var[...])
        if path.endswith("bias"):
            assert not value.any(), path
        elif path.endswith("scale"):
            assert (value == 1).all(), path
        else:
            expected = residual_std if path.endswith(("attn/out/kernel", "mlp/down/kernel")) else cfg.init_std
            for layer in value if path.startswith("blocks/") else [value]:  # stacked: [num_layers, ...]
                assert abs(layer.mean()) < 0.05 * expected, path
                assert layer.std() == pytest.approx(expected, rel=0.03), path
            if path.startswith("blocks/"):  # every layer drew its own initial weights
                assert len({layer.tobytes() for layer in value}) == cfg.num_layers, path
            checked += 1
    assert checked == 3 + 4  # wte, wpe, lm_head + the stacked qkv, out, up, down


def test_parameters_carry_logical_axes_only():
    """Every parameter is annotated, one logical name per dimension, and building needs no mesh; inside a mesh with
    unrelated axis names nothing is placed either (mapping names to mesh axes is the sharding code's job)."""
    allowed = {"vocab", "embed", "heads", "mlp", "norm", "position", "layers"}
    abstract = lambda cfg: nnx.eval_shape(lambda: build(cfg))  # noqa: E731  (shapes only: fast)
    for cfg in (GPT2, LLAMA_MQA, POST_GQA):
        for path, var in params_by_path(abstract(cfg)).items():
            names = var.get_metadata().get("out_sharding")
            assert names is not None and len(names) == len(var.shape) and set(names) <= allowed, (path, names)
    names = {path: var.get_metadata()["out_sharding"] for path, var in params_by_path(abstract(tiny())).items()}
    assert names["wte/embedding"] == ("vocab", "embed")
    assert names["wpe/embedding"] == ("position", "embed")
    assert names["blocks/attn/qkv/kernel"] == ("layers", "embed", "heads")
    assert names["blocks/attn/out/kernel"] == ("layers", "heads", "embed")
    assert names["blocks/mlp/up/kernel"] == ("layers", "embed", "mlp")
    assert names["blocks/mlp/down/kernel"] == ("layers", "mlp", "embed")
    assert names["blocks/ln_1/scale"] == ("layers", "norm")
    assert names["ln_f/scale"] == ("norm",)
    assert nnx.get_partition_spec(nnx.state(abstract(tiny()), nnx.Param))["wte"]["embedding"].get_value() == \
        jax.sharding.PartitionSpec("vocab", "embed")
    with jax.set_mesh(jax.make_mesh((1,), ("data",))):
        inside = params_by_path(abstract(GPT2))
    assert all(var.get_metadata()["out_sharding"] == names[path] for path, var in inside.items())


# ----------------------------------------------------------------------------------------------------------------
# dtypes


def test_bf16_compute_fp32_params():
    cfg16 = dataclasses.replace(LLAMA, dtype="bfloat16")
    model16, model32 = build(cfg16), build(LLAMA)  # same seed, same fp32 parameters
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model16, nnx.Param)))
    x = tokens()
    logits16, logits32 = forward(model16, x), forward(model32, x)
    assert logits16.dtype == jnp.float32
    scale = float(jnp.abs(logits32).max())
    assert float(jnp.abs(logits16 - logits32).max()) < 0.05 * scale
    assert float(jnp.abs(logits16 - logits32).max()) > 0  # it really computed in bf16
    assert "bf16" in str(jax.make_jaxpr(lambda t: model16(t))(x))


def test_bf16_params():
    cfg = tiny(dtype="bfloat16", param_dtype="bfloat16")
    model = nnx.eval_shape(lambda: build(cfg))
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert nnx.eval_shape(lambda: build(cfg)(tokens())).dtype == jnp.float32


# ----------------------------------------------------------------------------------------------------------------
# Dropout


def test_dropout():
    model = build(tiny(dropout=0.2, attn_dropout=0.2))
    x = tokens()
    np.testing.assert_array_equal(forward(model, x), forward(model, x, deterministic=True))
    a = forward(model, x, deterministic=False, rngs=nnx.Rngs(dropout=0))
    b = forward(model, x, deterministic=False, rngs=nnx.Rngs(dropout=1))
    again = forward(model, x, deterministic=False, rngs=nnx.Rngs(dropout=0))
    assert float(jnp.abs(a - b).max()) > 1e-3
    assert float(jnp.abs(a - forward(model, x)).max()) > 1e-3
    np.testing.assert_array_equal(a, again)  # same key, same mask: runs are reproducible
    with pytest.raises(ValueError, match="rngs"):  # training without a key fails loudly, never skips dropout
        forward(model, x, deterministic=False)


def test_zero_dropout_is_deterministic():
    model = build(GPT2)
    x = tokens()
    np.testing.assert_array_equal(forward(model, x, deterministic=False, rngs=nnx.Rngs(dropout=0)), forward(model, x))
    np.testing.assert_array_equal(forward(model, x, deterministic=False), forward(model, x))  # no key needed


# ----------------------------------------------------------------------------------------------------------------
# Positions and RoPE


def test_positions_argument():
    for cfg in (GPT2, LLAMA):
        model = build(cfg)
        x = tokens()
        default = forward(model, x)
        per_row = jnp.tile(jnp.arange(T), (B, 1))
        np.testing.assert_allclose(forward(model, x, positions=per_row), default, atol=1e-6)
        shifted = forward(model, x[:, :8], positions=jnp.arange(8) + 5)  # e.g. a KV cache continuing at position 5
        assert shifted.shape == (B, 8, TINY["vocab_size"]) and bool(jnp.all(jnp.isfinite(shifted)))
        if cfg.position == "learned":  # absolute positions: a shift changes the result
            assert float(jnp.abs(shifted - default[:, :8]).max()) > 1e-4


def test_rope_model_depends_only_on_relative_positions():
    model = build(LLAMA)
    x = tokens()
    shifted = jnp.stack([jnp.arange(T) + 1000, jnp.arange(T) + 37])  # each sequence at its own offset
    np.testing.assert_allclose(forward(model, x, positions=shifted), forward(model, x), atol=2e-4)


def test_rope_rotation():
    hd = 8
    q = jax.random.normal(jax.random.key(0), (1, 1, 1, hd))
    k = jax.random.normal(jax.random.key(1), (1, 1, 1, hd))
    rope = jax.jit(lambda x, p: apply_rope(x, *rope_tables(jnp.array([p]), hd, 10000.0)))

    def score(m, n):
        return float(jnp.sum(rope(q, m) * rope(k, n)))

    assert score(3, 1) == pytest.approx(score(103, 101), abs=1e-4)  # only the distance matters
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-4)
    np.testing.assert_allclose(rope(q, 0), q)  # position 0: identity
    rotated = rope(q, 7)
    assert float(jnp.linalg.norm(rotated)) == pytest.approx(float(jnp.linalg.norm(q)), rel=1e-5)
    # HF's convention: dimension i pairs with i + hd/2 and rotates by position * theta^(-2i/hd).
    angle = 7 * 10000.0 ** (-2 * 1 / hd)
    c, s = math.cos(angle), math.sin(angle)
    x1, x2 = float(q[0, 0, 0, 1]), float(q[0, 0, 0, 1 + hd // 2])
    assert float(rotated[0, 0, 0, 1]) == pytest.approx(x1 * c - x2 * s, abs=1e-5)
    assert float(rotated[0, 0, 0, 1 + hd // 2]) == pytest.approx(x2 * c + x1 * s, abs=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# From the run config


def test_from_config():
    section = base_config().model
    cfg = ModelConfig.from_config(section, vocab_size=65)
    assert cfg.vocab_size == 65
    assert all(getattr(cfg, f.name) == section[f.name] for f in dataclasses.fields(cfg) if f.name != "vocab_size")
    section.vocab_size = 128  # a padded table
    assert ModelConfig.from_config(section, vocab_size=65).vocab_size == 128
    assert ModelConfig.from_config(section).vocab_size == 128


def test_from_config_vocab_too_small():
    section = base_config().model
    section.vocab_size = 32
    with pytest.raises(ConfigError, match=r"model.vocab_size=32 is smaller than the tokenizer's vocabulary \(65\)"):
        ModelConfig.from_config(section, vocab_size=65)
    with pytest.raises(ConfigError, match="vocab_size"):
        ModelConfig.from_config(base_config().model)  # 0 and no tokenizer size


@pytest.mark.parametrize("d_in, d_out", [(16, 64), (64, 16), (24, 24)], ids=["widening", "narrowing", "square"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_gradients_are_autodiffs(d_in, d_out, dtype):
    """model.matmul reorders the weight gradient's product; the numbers are jnp.matmul's, in its dtypes."""
    k = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k[0], (3, 5, d_in)).astype(dtype)
    w = (jax.random.normal(k[1], (d_in, d_out)) / 4).astype(dtype)
    dy = jax.random.normal(k[2], (3, 5, d_out)).astype(dtype)
    out, vjp = jax.vjp(matmul, x, w)
    ref_out, ref_vjp = jax.vjp(jnp.matmul, x, w)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=2e-2, atol=2e-2)
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(ref_out, np.float32))
    for got, want in zip(vjp(dy), ref_vjp(dy)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), **tol)


@pytest.mark.parametrize("d_in, d_out", [(16, 64), (64, 16)], ids=["widening", "narrowing"])
def test_matmul_transposes_the_narrower_operand_for_the_weight_gradient(d_in, d_out):
    """The weight gradient's product contracts the token axis (axis 0 of both [tokens, features] operands); the
    operand on its transposed (left) side is the narrower one, the input or the output's gradient."""
    x, w = jnp.ones((40, d_in)), jnp.ones((d_in, d_out))
    jaxpr = jax.make_jaxpr(lambda x, w, dy: jax.vjp(matmul, x, w)[1](dy))(x, w, jnp.ones((40, d_out)))
    transposed = [e.invars[0].aval.shape for e in jaxpr.eqns if e.primitive.name == "transpose"]
    assert [shape for shape in transposed if shape[0] == 40] == [(40, min(d_in, d_out))]


@pytest.mark.parametrize("policy", ["full", "dots"])
def test_remat_changes_memory_not_math(policy):
    """Recomputing activations in the backward pass gives the same loss and gradients, dropout included."""
    from gptjax.config import load_config
    from gptjax.state import setup
    from gptjax.step import make_loss_fn

    results = {}
    for remat in ("none", policy):
        cfg = load_config(None, [f"model.remat={remat}", "model.dropout=0.1", "model.num_layers=2",
                                 "model.d_model=32", "model.num_heads=2", "model.block_size=16"])
        built = setup(cfg, ModelConfig.from_config(cfg.model, vocab_size=50))
        batch = jax.random.randint(jax.random.key(1), (2, 17), 0, 50)
        loss, grads = jax.value_and_grad(make_loss_fn(built.graphdef))(built.init(0).params, batch, jax.random.key(3))
        results[remat] = (float(loss), jax.tree.leaves(grads))
    assert results["none"][0] == results[policy][0]
    for a, b in zip(results["none"][1], results[policy][1]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------------------------
# Scan over layers


@pytest.mark.parametrize("cfg, remat", [(GPT2, "none"), (POST_GQA, "dots")], ids=["gpt2", "post-gqa-remat"])
def test_scan_equals_unrolled(cfg, remat):
    """Looping over the stacked layers or unrolling them: same parameters, same numbers, in training mode
    (dropout on: each layer gets the same key either way)."""
    cfg = dataclasses.replace(cfg, dropout=0.1, attn_dropout=0.1, num_layers=3, remat=remat)
    x = tokens()

    def loss_and_grads(scan):
        graphdef, params = nnx.split(build(dataclasses.replace(cfg, scan_layers=scan)))

        @jax.jit
        def run(params):
            def loss(params):
                m = nnx.merge(graphdef, params)
                return jnp.mean(m(x, deterministic=False, rngs=nnx.Rngs(dropout=jax.random.key(5))) ** 2)
            return jax.value_and_grad(loss)(params)

        return run(params)

    loss, grads = loss_and_grads(False)
    scan_loss, scan_grads = loss_and_grads(True)
    assert float(scan_loss) == pytest.approx(float(loss), rel=1e-6)
    for g, expected in zip(jax.tree.leaves(scan_grads), jax.tree.leaves(grads)):
        np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-7)


def test_scan_program_does_not_grow_with_depth():
    """With scan_layers the compiled program holds one layer whatever the depth (so compile time stays flat);
    unrolled, it holds every layer."""
    def program_size(**overrides):
        model = nnx.eval_shape(lambda: build(tiny(**overrides)))
        graphdef, params = nnx.split(model)
        grad = jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(tokens())))
        return len(jax.jit(grad).lower(params).as_text())

    assert program_size(num_layers=8, scan_layers=True) < 1.05 * program_size(num_layers=2, scan_layers=True)
    assert program_size(num_layers=8, scan_layers=False) > 1.5 * program_size(num_layers=2, scan_layers=False)


# ----------------------------------------------------------------------------------------------------------------
# Recipe options: zero-initialized output projections, logit soft-capping


def test_zero_init_out_starts_every_block_as_the_identity():
    """With model.zero_init_out the residual branches' last matrices are zero (the rest as before), so the model
    at initialization is the embeddings through the final norm into the head: the blocks add nothing."""
    cfg = dataclasses.replace(GPT2, zero_init_out=True)
    model = build(cfg)
    params = params_by_path(model)
    for path in ("blocks/attn/out/kernel", "blocks/mlp/down/kernel"):
        assert not np.asarray(params[path][...]).any(), path
    for path in ("blocks/attn/qkv/kernel", "blocks/mlp/up/kernel"):
        assert np.asarray(params[path][...]).std() == pytest.approx(cfg.init_std, rel=0.2), path
    x = tokens()
    h = model.ln_f(model.wte(x) + model.wpe(jnp.arange(T)))
    np.testing.assert_allclose(forward(model, x), model.wte.attend(h), rtol=1e-5, atol=1e-5)
    assert np.asarray(params_by_path(build(GPT2))["blocks/attn/out/kernel"][...]).any()  # off: GPT-2's init


def test_logit_softcap_bounds_the_logits():
    """cap * tanh(logits / cap): within (-cap, cap) however large the weights, and nearly unchanged near 0."""
    raw_model = build(GPT2)
    capped = build(dataclasses.replace(GPT2, logit_softcap=5.0))
    nnx.update(capped, nnx.state(raw_model))  # the same weights
    for model in (raw_model, capped):  # weights that make some logits far larger than the cap
        model.wte.embedding[...] = model.wte.embedding[...] * 200
    raw, soft = forward(raw_model, tokens()), forward(capped, tokens())
    assert float(jnp.abs(raw).max()) > 20
    assert float(jnp.abs(soft).max()) <= 5.0  # (float32 tanh reaches 1.0 exactly far out)
    np.testing.assert_allclose(soft, 5.0 * np.tanh(np.asarray(raw) / 5.0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="logit_softcap"):
        tiny(logit_softcap=-1.0)
