import jax
import numpy as np
import pytest

from gptjax.config import load_config
from gptjax.model import ModelConfig
from gptjax.optim import lr_schedule, weight_decay_mask
from gptjax.state import setup


def mask_by_path(decay_embeddings: bool, overrides=()):
    cfg = load_config(None, ["model.use_bias=true", "model.tie_embeddings=false", *overrides])
    built = setup(cfg, ModelConfig.from_config(cfg.model, vocab_size=50))
    mask = weight_decay_mask(built.abstract_state.params, decay_embeddings)
    return {jax.tree_util.keystr(path): value for path, value in jax.tree_util.tree_leaves_with_path(mask)}


def test_weight_decay_only_on_matrices():
    """Judged per layer: a stacked bias [num_layers, d] is 2-D but still a bias."""
    mask = mask_by_path(decay_embeddings=False)
    layer = "['blocks']"
    assert mask[f"{layer}['attn']['qkv']['kernel']"] and mask[f"{layer}['mlp']['down']['kernel']"]
    assert mask["['lm_head']['kernel']"]  # an untied output layer is a matrix like any other
    assert not mask[f"{layer}['attn']['qkv']['bias']"] and not mask[f"{layer}['ln_1']['scale']"]
    assert not mask["['wte']['embedding']"] and not mask["['wpe']['embedding']"]


def test_decay_embeddings_when_configured():
    mask = mask_by_path(decay_embeddings=True)
    assert mask["['wte']['embedding']"] and mask["['wpe']['embedding']"]
    assert not mask["['ln_f']['scale']"]


def test_weight_decay_shrinks_only_masked_parameters():
    cfg = load_config(None, ["optim.weight_decay=0.5", "optim.grad_clip=0", "optim.warmup_steps=0"])
    built = setup(cfg, ModelConfig.from_config(cfg.model, vocab_size=50))
    params = built.init(0).params
    zeros = jax.tree.map(np.zeros_like, params)
    updates, _ = built.tx.update(zeros, built.tx.init(params), params)
    by_path = {jax.tree_util.keystr(p).removesuffix(".value"): (u, v) for (p, u), v in
               zip(jax.tree_util.tree_leaves_with_path(updates), jax.tree.leaves(params))}
    update, value = by_path["['blocks']['mlp']['up']['kernel']"]
    np.testing.assert_allclose(update, -cfg.optim.lr * 0.5 * value, rtol=1e-5)  # with zero gradients: decay only
    assert not np.any(by_path["['wte']['embedding']"][0]) and not np.any(by_path["['ln_f']['scale']"][0])


def test_schedule_warms_up_then_decays_to_min_lr():
    cfg = load_config(None, ["optim.lr=1e-3", "optim.min_lr=1e-4", "optim.warmup_steps=100", "train.steps=1000"])
    schedule = lr_schedule(cfg.optim, cfg.train.steps)
    assert float(schedule(0)) == pytest.approx(1e-3 / 101, rel=1e-5)  # the first update already moves the weights
    assert float(schedule(100)) == pytest.approx(1e-3)
    assert float(schedule(550)) == pytest.approx(0.5 * (1e-3 + 1e-4), rel=1e-3)  # half-way down the cosine
    assert float(schedule(1000)) == pytest.approx(1e-4) and float(schedule(5000)) == pytest.approx(1e-4)
