"""The train step: one pure function from (state, batch) to (state, metrics), jitted with the state donated.

Everything that changes during training lives in TrainState; the model's structure (graphdef) and the optimizer
are fixed and closed over. The dropout key for a step is derived from (seed, step), so a resumed run draws the
same dropout masks as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct


class TrainState(struct.PyTreeNode):
    step: jax.Array  # int32 scalar: optimizer updates applied so far
    params: nnx.State
    opt_state: Any


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean next-token loss in float32, whatever the compute dtype."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets).mean()


def next_token_loss(model, tokens: jax.Array, *, deterministic: bool, rngs, eot_id: int | None = None,
                    z_loss: float = 0.0) -> jax.Array | tuple[jax.Array, dict]:
    """The pretraining objective: predict tokens[:, 1:] from tokens[:, :-1] (int32 [batch, block_size + 1]).

    eot_id (data.document_mask): attention stops at document boundaries. Each end-of-text token opens the next
    document (as a BOS would), so every token is predicted from its own document alone, positions restart there,
    and predicting the end-of-text itself is still learned, from the document it ends.

    z_loss (train.z_loss, training only): the loss is cross-entropy + z_loss * mean(logsumexp(logits)^2), and the
    metrics report both terms (cross_entropy, z_loss: the mean square itself)."""
    inputs = tokens[:, :-1]
    if eot_id is None:
        logits = model(inputs, deterministic=deterministic, rngs=rngs)
    else:
        segment_ids, positions = document_segments(inputs, eot_id)
        logits = model(inputs, positions=positions, segment_ids=segment_ids, deterministic=deterministic, rngs=rngs)
    loss = cross_entropy(logits, tokens[:, 1:])
    if not z_loss:
        return loss
    z = jnp.square(jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)).mean()
    return loss + z_loss * z, {"cross_entropy": loss, "z_loss": z}


def document_segments(tokens: jax.Array, eot_id: int) -> tuple[jax.Array, jax.Array]:
    """(segment_ids, positions) [B, T] of windows of a token stream: a new segment at each end-of-text token,
    positions counted from it (from the window's start for the document the window opens inside)."""
    is_eot = tokens == eot_id
    index = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    start = jax.lax.cummax(jnp.where(is_eot, index, 0), axis=1)
    return jnp.cumsum(is_eot, axis=1, dtype=jnp.int32), index - start


# An objective maps (model, batch, deterministic=, rngs=) to a scalar loss, or to (loss, {name: scalar}) with more
# metrics to report (averaged over micro-batches like the loss); the batch is whatever the loader gives (an array,
# or a dict of arrays whose leading axis is the batch). next_token_loss is the default.
Objective = Callable[..., jax.Array | tuple[jax.Array, dict]]


def _with_metrics(out) -> tuple[jax.Array, dict]:
    return out if isinstance(out, tuple) else (out, {})


def make_loss_fn(graphdef: nnx.GraphDef, objective: Objective = next_token_loss) -> Callable:
    """loss_fn(params, batch, dropout_key=None): the objective on the model with these parameters; dropout (and
    any other training-only randomness) is on when a key is given."""
    def loss_fn(params, batch, dropout_key=None):
        model = nnx.merge(graphdef, params)
        train = dropout_key is not None
        return objective(model, batch, deterministic=not train,
                         rngs=nnx.Rngs(dropout=dropout_key) if train else None)

    return loss_fn


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, schedule: optax.Schedule, *,
                    grad_accum: int, seed: int, state_shardings=None, batch_sharding=None,
                    skip_nonfinite: bool = False, objective: Objective = next_token_loss) -> Callable:
    """Returns train_step(state, batch) -> (state, metrics); batch is what the objective takes (for the default,
    int32 [batch_size, block_size + 1]).

    With shardings given, the state keeps its placement across steps and the batch is split as batch_sharding
    says; the math is the same on one device or many. skip_nonfinite: a step whose loss, gradient or updated
    parameters are not finite leaves parameters and optimizer state as they were (only the step count moves on, and with it the
    data) and reports metrics['skipped'] = 1."""
    loss_fn = make_loss_fn(graphdef, objective)
    grad_fn = jax.value_and_grad(lambda *args: _with_metrics(loss_fn(*args)), has_aux=True)
    base_key = jax.random.key(seed)

    def train_step(state: TrainState, batch: jax.Array):
        step_key = jax.random.fold_in(base_key, state.step)
        # Micro-batches are summed in a scan, so memory holds one micro-batch of activations whatever grad_accum is,
        # and k micro-batches of size b give the same update as one batch of size k*b.
        micro = jax.tree.map(lambda x: x.reshape(grad_accum, x.shape[0] // grad_accum, *x.shape[1:]), batch)

        def accumulate(carry, xs):
            (loss_sum, extra_sum), grad_sum = carry
            tokens, index = xs
            (loss, extra), grads = grad_fn(state.params, tokens, jax.random.fold_in(step_key, index))
            return ((loss_sum + loss, jax.tree.map(jnp.add, extra_sum, extra)),
                    jax.tree.map(jnp.add, grad_sum, grads)), None

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        # The objective's extra metrics, as zeros of their shapes (traced once, not run)
        extra_zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
            lambda: grad_fn(state.params, jax.tree.map(lambda x: x[0], micro), step_key)[0][1]))
        ((loss, extra), grads), _ = jax.lax.scan(
            accumulate, ((jnp.zeros((), jnp.float32), extra_zeros), zeros), (micro, jnp.arange(grad_accum)))
        loss, grads = loss / grad_accum, jax.tree.map(lambda g: g / grad_accum, grads)

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm, param_norm = optax.tree.norm(grads), optax.tree.norm(params)
        metrics = {"loss": loss, "grad_norm": grad_norm, "param_norm": param_norm, "lr": schedule(state.step),
                   **{name: value / grad_accum for name, value in extra.items()}}
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        if skip_nonfinite:
            ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(param_norm)
            unchanged = state.replace(step=state.step + 1)
            new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, unchanged)
            metrics["skipped"] = (~ok).astype(jnp.int32)
        return new_state, metrics

    if state_shardings is None:
        return jax.jit(train_step, donate_argnums=0)
    return jax.jit(train_step, donate_argnums=0, in_shardings=(state_shardings, batch_sharding),
                   out_shardings=(state_shardings, None))


def make_eval_step(graphdef: nnx.GraphDef, params_shardings=None, batch_sharding=None, *,
                   objective: Objective = next_token_loss) -> Callable:
    """eval_step(params, batch) -> {"loss": mean loss of the batch, and the objective's other metrics} (no
    dropout)."""
    loss_fn = make_loss_fn(graphdef, objective)

    def eval_step(params, batch):
        loss, extra = _with_metrics(loss_fn(params, batch))
        return {"loss": loss, **extra}

    if params_shardings is None:
        return jax.jit(eval_step)
    return jax.jit(eval_step, in_shardings=(params_shardings, batch_sharding))
