"""Post-training objectives, on the rows gptjax.data.packing builds (the Trainer's pluggable objective):

    sft_loss     next-token loss on the assistant's tokens only, over packed rows whose examples never see each other
    dpo_loss     Direct Preference Optimization (Rafailov et al. 2023) against a frozen reference model, whose
                 log-probabilities of each response are computed once before training and travel with the batch

Both take (model, batch, deterministic=, rngs=) and return (loss, metrics), as gptjax.step expects.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def _logits(model, rows: dict, *, deterministic: bool, rngs, segments: bool = True) -> jax.Array:
    """float32 logits [B, T, vocab] of rows (tokens, positions, segment_ids). segments=False: rows of one example
    each, padded at the end, where causal attention alone keeps the example from the padding (so any kernel,
    cuDNN too, can run them)."""
    logits = model(rows["tokens"], positions=rows["positions"], segment_ids=rows["segment_ids"] if segments else None,
                   deterministic=deterministic, rngs=rngs)
    return logits.astype(jnp.float32)


def _token_logprobs(model, rows: dict, *, deterministic: bool, rngs, segments: bool = True) -> jax.Array:
    """log p(targets) [B, T] of rows (tokens, positions, segment_ids, targets) under the model."""
    logits = _logits(model, rows, deterministic=deterministic, rngs=rngs, segments=segments)
    return -optax.softmax_cross_entropy_with_integer_labels(logits, rows["targets"])


def sft_loss(model, batch: dict, *, deterministic: bool, rngs, packed: bool = True,
             z_loss: float = 0.0) -> tuple[jax.Array, dict]:
    """Mean cross-entropy over the tokens in the loss (loss_mask) of the batch; metrics: how many there were.
    packed=False (data.pack=false): one example per row, so no segment ids are needed. z_loss (train.z_loss):
    plus z_loss * the mean of logsumexp(logits)^2 over the same tokens, both terms reported (as
    gptjax.step.next_token_loss does)."""
    mask = batch["loss_mask"].astype(jnp.float32)
    count = mask.sum()
    logits = _logits(model, batch, deterministic=deterministic, rngs=rngs, segments=packed)
    logp = -optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    loss = -(logp * mask).sum() / jnp.maximum(count, 1.0)
    if not z_loss:
        return loss, {"tokens_in_loss": count}
    z = (jnp.square(jax.nn.logsumexp(logits, axis=-1)) * mask).sum() / jnp.maximum(count, 1.0)
    return loss + z_loss * z, {"tokens_in_loss": count, "cross_entropy": loss, "z_loss": z}


def sequence_logprobs(model, rows: dict, *, deterministic: bool = True, rngs=None, segments: bool = False
                      ) -> jax.Array:
    """[B]: the sum of log p over each row's loss_mask tokens (a response's log-probability given its prompt);
    rows of one example each unless segments=True."""
    logp = _token_logprobs(model, rows, deterministic=deterministic, rngs=rngs, segments=segments)
    return (logp * rows["loss_mask"].astype(jnp.float32)).sum(axis=-1)


def _side(batch: dict, side: str) -> dict:
    prefix = side + "_"
    return {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}


def pair_logprobs(model, batch: dict, *, deterministic: bool = True, rngs=None) -> tuple[jax.Array, jax.Array]:
    """Each pair's chosen and rejected log-probabilities [B], from one forward pass over both sides. The
    reference's scores are computed by this same function, batched as validation batches them, so the validation
    before the first step finds every reward exactly 0, not rounding noise that reward_accuracy would count."""
    chosen, rejected = _side(batch, "chosen"), _side(batch, "rejected")
    both = {k: jnp.concatenate([chosen[k], rejected[k]]) for k in chosen}
    logp = sequence_logprobs(model, both, deterministic=deterministic, rngs=rngs)
    n = chosen["tokens"].shape[0]
    return logp[:n], logp[n:]


def dpo_loss(model, batch: dict, *, beta: float, deterministic: bool, rngs) -> tuple[jax.Array, dict]:
    """-log sigmoid(beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected)))), averaged
    over the pairs. batch: chosen_* and rejected_* rows and ref_chosen, ref_rejected [B]. Metrics as TRL reports
    them: the implicit rewards beta * (log pi - log ref) of each side, their margin, and how often chosen's is
    higher (reward_accuracy)."""
    chosen = _side(batch, "chosen")
    logp_chosen, logp_rejected = pair_logprobs(model, batch, deterministic=deterministic, rngs=rngs)
    chosen_reward = beta * (logp_chosen - batch["ref_chosen"])
    rejected_reward = beta * (logp_rejected - batch["ref_rejected"])
    margin = chosen_reward - rejected_reward
    # Rows without a response (the empty rows that fill up a last validation batch) are no pairs: left out
    real = chosen["loss_mask"].any(axis=-1).astype(jnp.float32)
    pairs = real.sum()

    def mean(x):
        return (x * real).sum() / jnp.maximum(pairs, 1.0)

    return mean(-jax.nn.log_sigmoid(margin)), {
        "reward_margin": mean(margin), "reward_accuracy": mean((margin > 0).astype(jnp.float32)),
        "chosen_reward": mean(chosen_reward), "rejected_reward": mean(rejected_reward), "pairs": pairs}


def for_data(data, beta: float = 0.1):
    """The objective for a config's data section: chat -> sft_loss, preferences -> dpo_loss; None for
    pretraining."""
    if data.source == "chat":
        return functools.partial(sft_loss, packed=bool(data.pack))
    if data.source == "preferences":
        return functools.partial(dpo_loss, beta=beta)
    return None


def make_logprob_step(graphdef: nnx.GraphDef, params_shardings=None, batch_sharding=None):
    """logprobs(params, batch) -> (chosen [B], rejected [B]) sequence log-probabilities of a preference batch:
    what the reference model's scores are computed with."""
    def logprobs(params, batch):
        return pair_logprobs(nnx.merge(graphdef, params), batch)

    if params_shardings is None:
        return jax.jit(logprobs)
    return jax.jit(logprobs, in_shardings=(params_shardings, batch_sharding))
