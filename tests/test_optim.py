import jax
import numpy as np
import pytest

from gptjax.config import load_config
from gptjax.model import ModelConfig
from gptjax.optim import lr_schedule, optimizer_labels, weight_decay_mask
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


def _labelled(overrides=()):
    cfg = load_config(None, ["model.use_bias=true", "model.tie_embeddings=false", "optim.name=muon", *overrides])
    built = setup(cfg, ModelConfig.from_config(cfg.model, vocab_size=50))
    return cfg, built


def _by_path(tree):
    return {jax.tree_util.keystr(p).removesuffix(".value"): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("scan_layers", [False, True])
def test_muon_updates_the_blocks_matrices_and_adamw_the_rest(scan_layers):
    """The usual split: Muon for the attention and MLP projections; AdamW for the token and position tables, the
    untied head (a 'vocab' axis), norms and biases. Stacked blocks are [num_layers, in, out]: still matrices."""
    _, built = _labelled([f"model.scan_layers={scan_layers}"])
    labels = _by_path(optimizer_labels(built.abstract_state.params))
    muon = {k for k, v in labels.items() if v == "muon"}
    assert muon == {f"['blocks']{m}['kernel']" for m in
                    ("['attn']['qkv']", "['attn']['out']", "['mlp']['up']", "['mlp']['down']")}
    for name in ("['wte']['embedding']", "['wpe']['embedding']", "['lm_head']['kernel']", "['ln_f']['scale']",
                 "['blocks']['attn']['qkv']['bias']", "['blocks']['ln_1']['scale']"):
        assert labels[name] == "adamw", name


def test_muon_orthogonalizes_each_layers_matrix_and_leaves_adamw_as_it_was():
    """A random gradient's singular values spread by a factor of ~4 for these shapes; Muon's update of each layer
    (Newton-Schulz on that layer's matrix, not on the stack flattened) has them within a factor of 2. The AdamW
    half gives exactly what optim.name=adamw gives."""
    cfg, built = _labelled(["optim.grad_clip=0", "optim.warmup_steps=0"])
    params = built.init(0).params
    keys = iter(jax.random.split(jax.random.key(1), 64))
    grads = jax.tree.map(lambda p: jax.random.normal(next(keys), p.shape), params)
    updates = _by_path(built.tx.update(grads, built.tx.init(params), params)[0])
    qkv = np.asarray(updates["['blocks']['attn']['qkv']['kernel']"])  # [layers, 128, 384]
    raw = np.asarray(_by_path(grads)["['blocks']['attn']['qkv']['kernel']"])
    for layer in range(qkv.shape[0]):
        s = np.linalg.svd(qkv[layer], compute_uv=False)
        assert s.max() / s.min() < 2.0, s
        spread = np.linalg.svd(raw[layer], compute_uv=False)
        assert spread.max() / spread.min() > 3.0  # the gradient itself is far from orthogonal
    adamw_cfg = load_config(None, ["model.use_bias=true", "model.tie_embeddings=false", "optim.grad_clip=0",
                                   "optim.warmup_steps=0"])
    plain = setup(adamw_cfg, ModelConfig.from_config(adamw_cfg.model, vocab_size=50))
    reference = _by_path(plain.tx.update(grads, plain.tx.init(params), params)[0])
    for name in ("['wte']['embedding']", "['lm_head']['kernel']", "['ln_f']['scale']"):
        np.testing.assert_array_equal(updates[name], reference[name])
    assert not np.allclose(updates["['blocks']['mlp']['up']['kernel']"], reference["['blocks']['mlp']['up']['kernel']"])


def test_muon_learning_rate_follows_the_schedule():
    """Muon's step is scaled by optim.muon_lr times the schedule's shape: at step 0 of a 10-step warmup, 1/11."""
    cfg, built = _labelled(["optim.grad_clip=0", "optim.warmup_steps=10", "optim.muon_lr=0.05"])
    cold = _labelled(["optim.grad_clip=0", "optim.warmup_steps=0", "optim.muon_lr=0.05"])[1]
    params = built.init(0).params
    grads = jax.tree.map(lambda p: jax.numpy.ones_like(p), params)
    name = "['blocks']['mlp']['up']['kernel']"
    warm = _by_path(built.tx.update(grads, built.tx.init(params), params)[0])[name]
    full = _by_path(cold.tx.update(grads, cold.tx.init(params), params)[0])[name]
    np.testing.assert_allclose(warm, full / 11, rtol=1e-5, atol=1e-12)


def test_wsd_schedule_holds_the_peak_then_decays_linearly():
    cfg = load_config(None, ["optim.schedule=wsd", "optim.lr=1e-3", "optim.min_lr=1e-4", "optim.warmup_steps=100",
                             "optim.cooldown=0.2", "train.steps=1000"])
    schedule = lr_schedule(cfg.optim, cfg.train.steps)
    assert float(schedule(0)) == pytest.approx(1e-3 / 101, rel=1e-5)
    for step in (100, 500, 800):
        assert float(schedule(step)) == pytest.approx(1e-3)
    assert float(schedule(900)) == pytest.approx(0.5 * (1e-3 + 1e-4), rel=1e-5)  # half-way down the line
    assert float(schedule(1000)) == pytest.approx(1e-4) and float(schedule(5000)) == pytest.approx(1e-4)
    muon = lr_schedule(cfg.optim, cfg.train.steps, peak=0.02)  # the same shape at Muon's peak
    assert float(muon(500)) == pytest.approx(0.02) and float(muon(1000)) == pytest.approx(2e-3)


def test_optimizer_cannot_change_on_resume():
    from gptjax.config import ConfigError, resume_changes

    saved = load_config(None, []).to_dict()
    with pytest.raises(ConfigError, match="trained with optim.name='adamw'.*init_from"):
        resume_changes(saved, load_config(None, ["optim.name=muon"]), "RUN")
    del saved["optim"]["name"]  # a run from before the key: AdamW
    with pytest.raises(ConfigError, match="optim.name='adamw'"):
        resume_changes(saved, load_config(None, ["optim.name=muon"]), "RUN")
    assert resume_changes(saved, load_config(None, ["optim.muon_lr=0.05"]), "RUN") == ["optim.muon_lr: 0.02 -> 0.05"]


def test_a_muon_run_resumes_bitwise_with_every_recipe_option(tmp_path):
    """Muon's momentum (and the partitioned state around it) is checkpointed and restored exactly: 8 steps in
    one go and 5 + 3 end with the same parameters, with the wsd schedule, soft-capped logits, z-loss and
    zero-initialized projections on."""
    from gptjax.run import load_run
    from gptjax.trainer import train

    def cfg(steps):
        return load_config(None, ["data.max_chars=40000", "model.num_layers=2", "model.num_heads=2",
                                  "model.d_model=32", "model.block_size=16", "train.batch_size=4",
                                  f"train.steps={steps}", "optim.decay_steps=8", "train.eval_every=0",
                                  "train.sample_tokens=0", "optim.warmup_steps=2", "optim.name=muon",
                                  "optim.schedule=wsd", "model.logit_softcap=20", "train.z_loss=1e-4",
                                  "model.zero_init_out=true"])

    train(cfg(8), tmp_path / "whole")
    train(cfg(5), tmp_path / "parts")
    train(cfg(8), tmp_path / "parts")
    a, b = load_run(tmp_path / "whole"), load_run(tmp_path / "parts")
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a.params), jax.device_get(b.params))
    out = _by_path(a.params)["['blocks']['attn']['out']['kernel']"]
    assert np.asarray(out).any()  # zero at the start, trained since
