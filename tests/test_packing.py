"""gptjax.data.packing and the model's segment ids: packed examples never see each other (bitwise, with the xla
kernel and the Pallas kernel in interpret mode), positions restart, the loss mask follows; rows are placed and
served as a pure function of (seed, step)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gptjax.attention import check_packing, target_backend
from gptjax.config import ConfigError
from gptjax.data.packing import PackedLoader, eval_rows, fit, pack
from gptjax.model import GPT, ModelConfig

TINY = dict(vocab_size=61, block_size=256, num_layers=2, num_heads=4, num_kv_heads=2, d_model=32)


def model_with(impl: str, **overrides) -> GPT:
    model = GPT(ModelConfig(**{**TINY, **overrides}), rngs=nnx.Rngs(0))
    model.blocks.attn.impl = impl  # the kernel every (stacked) layer runs
    return model


def packed_row(lengths, total, seed=0):
    """tokens, segment ids and positions [1, total] of examples of these lengths, then padding."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, TINY["vocab_size"], total).astype(np.int32)
    seg = np.zeros(total, np.int32)
    pos = np.zeros(total, np.int32)
    start = 0
    for i, n in enumerate(lengths, start=1):
        seg[start:start + n], pos[start:start + n] = i, np.arange(n)
        start += n
    return tokens[None], seg[None], pos[None]


CASES = [("xla", "learned", 32, (10, 15, 5)), ("xla", "rope", 32, (10, 15, 5)),
         # long rows run the xla kernel block by block: examples that straddle a 128-query block
         ("xla", "rope", 256, (100, 60, 90)),
         ("pallas_interpret", "learned", 32, (10, 15, 5)), ("pallas_interpret", "rope", 48, (7, 30, 9))]


ON_GPU = jax.default_backend() == "gpu"


@pytest.mark.parametrize("impl,position,total,lengths", CASES)
def test_changing_one_example_leaves_the_others_bitwise_unchanged(impl, position, total, lengths):
    check_isolation(impl, position, total, lengths)


@pytest.mark.skipif(not ON_GPU, reason="the Pallas kernel compiled by Triton runs on an NVIDIA GPU only")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_packed_examples_stay_apart_in_the_triton_kernel_on_gpu(dtype):
    check_isolation("pallas", "rope", 256, (100, 60, 90), dtype=dtype)


def check_isolation(impl, position, total, lengths, dtype="float32"):
    model = model_with(impl, position=position, dtype=dtype)
    tokens, seg, pos = packed_row(lengths, total)
    a = model(jnp.asarray(tokens), positions=jnp.asarray(pos), segment_ids=jnp.asarray(seg))
    changed = tokens.copy()
    first = lengths[0]
    changed[0, :first] = (changed[0, :first] + 7) % TINY["vocab_size"]  # example A, every token
    b = model(jnp.asarray(changed), positions=jnp.asarray(pos), segment_ids=jnp.asarray(seg))
    np.testing.assert_array_equal(np.asarray(a[0, first:]), np.asarray(b[0, first:]))  # bitwise
    assert not np.allclose(a[0, :first], b[0, :first])
    # ... and each example computes as it would alone (up to float rounding of other shapes)
    start = first
    for n in lengths[1:]:
        alone = model(jnp.asarray(tokens[:, start:start + n]))
        np.testing.assert_allclose(a[0, start:start + n], alone[0], atol=2e-5 if dtype == "float32" else 0.15)
        start += n


def test_without_segment_ids_examples_do_see_each_other():
    """The guard of the test above: the same change does move example B when the row is not segmented."""
    model = model_with("xla")
    tokens, _, pos = packed_row((10, 15, 5), 32)
    changed = tokens.copy()
    changed[0, :10] = (changed[0, :10] + 7) % TINY["vocab_size"]
    a, b = (model(jnp.asarray(t), positions=jnp.asarray(pos)) for t in (tokens, changed))
    assert not np.allclose(a[0, 10:25], b[0, 10:25])


@pytest.mark.parametrize("impl", ["xla", "pallas_interpret"])
def test_segment_gradients_stay_inside_their_example(impl):
    """The loss of example B alone has no gradient with respect to example A's embeddings (the backward pass
    honours the segments too)."""
    model = model_with(impl, num_layers=1, block_size=32, tie_embeddings=False)  # wte: inputs only
    tokens, seg, pos = packed_row((12, 20), 32)
    graphdef, params = nnx.split(model, nnx.Param)

    def loss_b(params):
        logits = nnx.merge(graphdef, params)(jnp.asarray(tokens), positions=jnp.asarray(pos),
                                             segment_ids=jnp.asarray(seg))
        return logits[0, 12:].sum()

    grad = jax.grad(loss_b)(params)["wte"]["embedding"][...]
    used_by_a_only = np.setdiff1d(tokens[0, :12], tokens[0, 12:])
    assert used_by_a_only.size
    np.testing.assert_array_equal(np.asarray(grad)[used_by_a_only], 0.0)


def test_cudnn_refuses_segment_ids_before_training():
    with target_backend("gpu"):
        with pytest.raises(ConfigError, match="pallas"):
            check_packing("cudnn", "bfloat16")
        assert check_packing("pallas", "bfloat16") == "pallas"
        assert check_packing("auto", "bfloat16") == "pallas"  # what auto would pick, cuDNN, cannot pack
        assert check_packing("auto", "float32") == "auto"


# ----------------------------------------------------------------------------------------------------------------
# Packing rows


def examples(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(1, 100, n).astype(np.int32), rng.random(n) < 0.5) for n in lengths]


def test_pack_places_whole_examples_with_restarting_positions_and_targets():
    ex = examples([5, 9, 3, 7, 16, 2, 11])
    rows = pack(ex, 16)
    assert rows["tokens"].shape[1] == 16
    assert len(rows["tokens"]) == 4  # 53 tokens in rows of 16: first-fit decreasing needs 4
    seen = []
    for r in range(len(rows["tokens"])):
        seg = rows["segment_ids"][r]
        for s in np.unique(seg[seg > 0]):
            where = np.flatnonzero(seg == s)
            assert (np.diff(where) == 1).all()  # contiguous
            ids = rows["tokens"][r, where]
            match = [i for i, (e, _) in enumerate(ex) if len(e) == len(ids) and (e == ids).all()]
            assert len(match) == 1
            e_ids, e_mask = ex[match[0]]
            seen.append(match[0])
            np.testing.assert_array_equal(rows["positions"][r, where], np.arange(len(ids)))
            np.testing.assert_array_equal(rows["targets"][r, where[:-1]], e_ids[1:])
            np.testing.assert_array_equal(rows["loss_mask"][r, where[:-1]], e_mask[1:])
            assert not rows["loss_mask"][r, where[-1]]  # no target across the example's end
        assert not rows["loss_mask"][r, seg == 0].any()
    assert sorted(seen) == list(range(len(ex)))


def test_pack_false_gives_each_example_its_row():
    rows = pack(examples([5, 9, 3]), 16, pack=False)
    assert len(rows["tokens"]) == 3 and rows["segment_ids"].max() == 1


def test_fit_cuts_the_end_and_drops_what_would_teach_nothing():
    ids, mask = np.arange(20), np.r_[np.zeros(10, bool), np.ones(10, bool)]
    assert fit(ids, mask, 30)[2] is None
    cut_ids, _, why = fit(ids, mask, 15)
    assert why == "truncated" and len(cut_ids) == 15
    assert "prompt alone" in fit(ids, mask, 8)[2]


def test_packed_loader_is_a_function_of_seed_and_step_and_splits_over_processes():
    rows = pack(examples(range(2, 40)), 48)
    loader = PackedLoader({"chat": rows}, batch_size=4, seed=3)
    again = PackedLoader({"chat": rows}, batch_size=4, seed=3)
    for step in (0, 5, 17):  # 17 * 4 rows: several epochs over the rows
        for k in rows:
            np.testing.assert_array_equal(loader.batch(step)[k], again.batch(step)[k])
    resumed = loader.iterate(5, prefetch=0)
    np.testing.assert_array_equal(next(resumed)["tokens"], loader.batch(5)["tokens"])
    halves = [PackedLoader({"chat": rows}, 4, 3, process_index=i, process_count=2).batch(7)["tokens"]
              for i in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), loader.batch(7)["tokens"])
    # every row once per epoch
    n = loader.num_rows
    order = [loader._row_index(i) for i in range(n)]
    assert sorted(order) == list(range(n))


def test_eval_rows_cover_every_row_once_in_order():
    rows = pack(examples([3] * 10), 4, pack=False)
    batches = eval_rows(rows, batch_size=4, num_batches=100)
    assert len(batches) == 3
    got = np.concatenate([b["tokens"] for b in batches])
    np.testing.assert_array_equal(got[:10], rows["tokens"])
    assert not got[10:].any() and not batches[-1]["loss_mask"][2:].any()  # filled up with empty rows


def test_model_refuses_segment_ids_when_decoding():
    from gptjax.model import KVCache

    model = model_with("xla", block_size=32)
    cache = KVCache.zeros(dataclasses.replace(model.cfg), 1, 8)
    with pytest.raises(ValueError, match="segment_ids"):
        model(jnp.zeros((1, 2), jnp.int32), segment_ids=jnp.ones((1, 2), jnp.int32), cache=cache, cache_index=0)


# ----------------------------------------------------------------------------------------------------------------
# Document masks for pretraining windows (data.document_mask)


def test_document_mask_keeps_each_document_of_a_window_to_itself():
    from gptjax.step import document_segments, next_token_loss

    model = model_with("xla", block_size=32)
    eot = 0
    window = np.random.default_rng(1).integers(1, TINY["vocab_size"], (1, 33)).astype(np.int32)
    window[0, 12] = eot  # document A: 0..11, then B opens at the end-of-text token
    seg, pos = document_segments(jnp.asarray(window[:, :-1]), eot)
    assert seg[0, 11] == 0 and seg[0, 12] == 1 and pos[0, 12] == 0 and pos[0, 20] == 8
    changed = window.copy()
    changed[0, :12] = (changed[0, :12] + 3) % (TINY["vocab_size"] - 1) + 1  # A changes, not the boundary
    logits = [model(jnp.asarray(w[:, :-1]), positions=p, segment_ids=s)
              for w in (window, changed) for s, p in [document_segments(jnp.asarray(w[:, :-1]), eot)]]
    np.testing.assert_array_equal(np.asarray(logits[0][0, 12:]), np.asarray(logits[1][0, 12:]))
    # the loss with the mask differs from the plain one (B's tokens no longer read A)
    plain = next_token_loss(model, jnp.asarray(window), deterministic=True, rngs=None)
    masked = next_token_loss(model, jnp.asarray(window), deterministic=True, rngs=None, eot_id=eot)
    assert float(plain) != float(masked)


def test_document_mask_trains_and_needs_an_end_of_text_token(tmp_path, tiny_bpe):
    from gptjax.config import load_config
    from gptjax.trainer import train

    common = ["model.num_layers=1", "model.num_heads=2", "model.d_model=32", "model.block_size=64",
              "train.batch_size=4", "train.steps=3", "train.eval_every=0", "train.eval_batches=1",
              "train.sample_tokens=0", "data.max_chars=30000", "data.document_mask=true"]
    final = train(load_config(None, common + [f"data.tokenizer={tiny_bpe}"]), tmp_path / "bpe")
    assert np.isfinite(final["val_loss"])
    with pytest.raises(ConfigError, match="end-of-text") as e:
        train(load_config(None, common), tmp_path / "char")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "char").exists()  # the refused start left nothing behind
