"""Optimizer: AdamW with linear warmup then cosine decay, global-norm clipping, and weight decay on matrices only."""

from __future__ import annotations

import jax
import optax
from flax import nnx

# Embedding tables are recognised by their logical axes (declared in the model), not by module names.
EMBEDDING_AXES = {("vocab", "embed"), ("position", "embed")}


def lr_schedule(optim_cfg, total_steps: int) -> optax.Schedule:
    """Linear warmup to optim.lr, then cosine decay to optim.min_lr at decay_steps (train.steps when 0).

    Warmup starts at lr / (warmup_steps + 1) rather than 0, so the first update is not wasted (nanoGPT's schedule)."""
    decay_steps = optim_cfg.decay_steps or total_steps
    return optax.warmup_cosine_decay_schedule(
        init_value=optim_cfg.lr / (optim_cfg.warmup_steps + 1),
        peak_value=optim_cfg.lr,
        warmup_steps=optim_cfg.warmup_steps,
        decay_steps=max(decay_steps, optim_cfg.warmup_steps + 1),
        end_value=optim_cfg.min_lr,
    )


def weight_decay_mask(params: nnx.State, decay_embeddings: bool = False):
    """True for parameters that get weight decay: matrices, but not biases, norm scales, or (by default) embeddings.

    Returns a pytree of bools with the structure of the raw parameter arrays (nnx.State with Variables as nodes)."""

    def decays(variable: nnx.Variable) -> bool:
        axes = tuple(variable.get_metadata().get("out_sharding") or (None,) * len(variable.shape))
        axes = tuple(a for a in axes if a != "layers")  # stacked blocks (scan_layers): judge one layer's array
        if len(axes) < 2:
            return False
        return decay_embeddings or axes not in EMBEDDING_AXES

    return jax.tree.map(decays, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def build_optimizer(optim_cfg, total_steps: int, params: nnx.State) -> optax.GradientTransformation:
    schedule = lr_schedule(optim_cfg, total_steps)
    mask = weight_decay_mask(params, optim_cfg.decay_embeddings)
    # The mask has Variables as nodes; optax sees the same structure through the State pytree.
    # Clipping stays in the chain when off (an infinite bound), so the optimizer state has the same structure
    # whatever grad_clip is, and a run can resume with it changed.
    parts = [optax.clip_by_global_norm(optim_cfg.grad_clip if optim_cfg.grad_clip > 0 else float("inf"))]
    parts.append(
        optax.adamw(
            learning_rate=schedule,
            b1=optim_cfg.beta1,
            b2=optim_cfg.beta2,
            eps=optim_cfg.eps,
            weight_decay=optim_cfg.weight_decay,
            mask=mask,
        )
    )
    return optax.chain(*parts)
