"""Optimizers: AdamW, or Muon for the hidden matrices with AdamW for the rest; a warmup-cosine or
warmup-stable-decay schedule; global-norm clipping; weight decay on matrices only.

    optim.name=adamw   every parameter: AdamW (optim.lr, beta1, beta2, eps, weight_decay)
    optim.name=muon    the blocks' 2-D matrices (attention and MLP projections): Muon (optax.contrib.muon:
                       momentum orthogonalized by Newton-Schulz, at optim.muon_lr); embeddings, an untied head,
                       norms and biases: the same AdamW as above. Both follow the one schedule's shape.
"""

from __future__ import annotations

import jax
import optax
from flax import nnx
from optax.contrib import MuonDimensionNumbers

# Embedding tables are recognised by their logical axes (declared in the model), not by module names.
EMBEDDING_AXES = {("vocab", "embed"), ("position", "embed")}


def lr_schedule(optim_cfg, total_steps: int, peak: float | None = None) -> optax.Schedule:
    """Linear warmup to the peak (optim.lr), then down to optim.min_lr (scaled like the peak) by decay_steps
    (train.steps when 0):

        cosine  a cosine from the end of warmup to decay_steps
        wsd     warmup-stable-decay: the peak held, then a linear decay over the last optim.cooldown of decay_steps

    Warmup starts at peak / (warmup_steps + 1) rather than 0, so the first update is not wasted (nanoGPT's
    schedule). peak: another peak with the same shape (Muon's learning rate)."""
    peak = optim_cfg.lr if peak is None else peak
    end = optim_cfg.min_lr * peak / optim_cfg.lr
    decay_steps = max(optim_cfg.decay_steps or total_steps, optim_cfg.warmup_steps + 1)
    warmup = optim_cfg.warmup_steps
    if optim_cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(init_value=peak / (warmup + 1), peak_value=peak,
                                                  warmup_steps=warmup, decay_steps=decay_steps, end_value=end)
    cooldown = max(1, round(optim_cfg.cooldown * decay_steps))
    stable_until = max(warmup, decay_steps - cooldown)
    return optax.join_schedules(
        [optax.linear_schedule(peak / (warmup + 1), peak, warmup),
         optax.constant_schedule(peak),
         optax.linear_schedule(peak, end, decay_steps - stable_until)],
        boundaries=[warmup, stable_until])


def _axes(variable: nnx.Variable) -> tuple:
    """A parameter's logical axes (declared in the model), with None where it declares none."""
    return tuple(variable.get_metadata().get("out_sharding") or (None,) * len(variable.shape))


def _layer_axes(variable: nnx.Variable) -> tuple:
    # stacked blocks (scan_layers): judge one layer's array
    return tuple(a for a in _axes(variable) if a != "layers")


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def weight_decay_mask(params: nnx.State, decay_embeddings: bool = False):
    """True for parameters that get weight decay: matrices, but not biases, norm scales, or (by default) embeddings.

    Returns a pytree of bools with the structure of the raw parameter arrays (nnx.State with Variables as nodes)."""

    def decays(variable: nnx.Variable) -> bool:
        axes = _layer_axes(variable)
        if len(axes) < 2:
            return False
        return decay_embeddings or axes not in EMBEDDING_AXES

    return jax.tree.map(decays, params, is_leaf=_is_variable)


def is_hidden_matrix(variable: nnx.Variable) -> bool:
    """What Muon updates: a matrix inside the blocks (attention and MLP projections). Not the embeddings or an
    untied head (a 'vocab' axis: their rows are looked up, not multiplied), and not norms or biases."""
    axes = _layer_axes(variable)
    return len(axes) == 2 and "vocab" not in axes and "position" not in axes


def optimizer_labels(params: nnx.State):
    """'muon' or 'adamw' per parameter, for optim.name=muon."""
    return jax.tree.map(lambda v: "muon" if is_hidden_matrix(v) else "adamw", params, is_leaf=_is_variable)


def muon_dimensions(params):
    """How Muon reads each matrix it updates: kernels are [in, out] (x @ W), with a leading [num_layers] axis on
    stacked blocks, which Muon treats as a batch of matrices orthogonalized one by one."""
    def dims(variable):
        if isinstance(variable, optax.MaskedNode):  # a parameter the AdamW side updates
            return variable
        first = 1 if _axes(variable)[:1] == ("layers",) else 0
        return MuonDimensionNumbers(reduction_axis=first, output_axis=first + 1)

    return jax.tree.map(dims, params, is_leaf=lambda x: _is_variable(x) or isinstance(x, optax.MaskedNode))


def build_optimizer(optim_cfg, total_steps: int, params: nnx.State) -> optax.GradientTransformation:
    schedule = lr_schedule(optim_cfg, total_steps)
    mask = weight_decay_mask(params, optim_cfg.decay_embeddings)
    # The mask has Variables as nodes; optax sees the same structure through the State pytree.
    # Clipping stays in the chain when off (an infinite bound), so the optimizer state has the same structure
    # whatever grad_clip is, and a run can resume with it changed.
    clip = optax.clip_by_global_norm(optim_cfg.grad_clip if optim_cfg.grad_clip > 0 else float("inf"))
    adamw = optax.adamw(learning_rate=schedule, b1=optim_cfg.beta1, b2=optim_cfg.beta2, eps=optim_cfg.eps,
                        weight_decay=optim_cfg.weight_decay, mask=mask)
    if optim_cfg.name == "adamw":
        return optax.chain(clip, adamw)
    # Muon's own update for the hidden matrices; optax.contrib.muon's AdamW half never sees a parameter here
    # (every one it is given is 2-D), the partition hands the rest to the masked AdamW above.
    muon = optax.contrib.muon(
        learning_rate=lr_schedule(optim_cfg, total_steps, peak=optim_cfg.muon_lr), beta=optim_cfg.muon_momentum,
        weight_decay=optim_cfg.muon_weight_decay, muon_weight_dimension_numbers=muon_dimensions)
    return optax.chain(clip, optax.partition({"muon": muon, "adamw": adamw}, optimizer_labels(params)))
