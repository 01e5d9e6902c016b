"""Sampling from a trained run.

    python -m gptjax.sample --workdir runs/shakespeare_char --prompt "ROMEO:" --max_new_tokens 200

Decoding runs as one jitted loop over a fixed [batch, block_size] token buffer, so nothing recompiles per token.
Each step recomputes the whole window (no KV cache); once the buffer is full the window slides, as nanoGPT crops
its context to the last block_size tokens.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from gptjax import distributed


def sample_logits(logits: jax.Array, key: jax.Array, temperature: float, top_k: int, top_p: float) -> jax.Array:
    """Draws one token id per row from float32 logits [B, V]; temperature 0 is greedy."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1)
    logits = logits / temperature
    if top_k > 0:
        kth = jax.lax.top_k(logits, min(top_k, logits.shape[-1]))[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        # Keep the smallest set of tokens whose probability mass reaches top_p (the most likely is always kept).
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        cumulative = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
        cutoff_index = jnp.sum(cumulative < top_p, axis=-1, keepdims=True)
        cutoff = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1)


@partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "temperature", "top_k", "top_p"))
def _decode(graphdef, params, buffer, length, key_data, *, max_new_tokens, temperature, top_k, top_p):
    model = nnx.merge(graphdef, params)
    key = jax.random.wrap_key_data(key_data)  # raw uint32s: a host value every process can pass alike
    block = buffer.shape[1]

    def step(i, carry):
        buffer, length, out = carry
        logits = model(buffer)
        last = jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False)
        token = sample_logits(last, jax.random.fold_in(key, i), temperature, top_k, top_p).astype(buffer.dtype)
        full = length == block
        # A full window slides left by one; otherwise the token goes in the next free slot.
        buffer = jnp.where(full, jnp.roll(buffer, -1, axis=1), buffer)
        position = jnp.where(full, block - 1, length)
        buffer = jax.lax.dynamic_update_index_in_dim(buffer, token, position, axis=1)
        return buffer, jnp.minimum(length + 1, block), out.at[:, i].set(token)

    out = jnp.zeros((buffer.shape[0], max_new_tokens), buffer.dtype)
    return jax.lax.fori_loop(0, max_new_tokens, step, (buffer, length, out))[2]


def generate(graphdef, params, prompt_ids, *, block_size: int, max_new_tokens: int, num_samples: int = 1,
             temperature: float = 0.8, top_k: int = 200, top_p: float = 1.0, seed: int = 0) -> np.ndarray:
    """Returns int32 [num_samples, max_new_tokens] continuations of prompt_ids (at least one token)."""
    prompt = np.asarray(prompt_ids, np.int32)[-block_size:]
    if prompt.size == 0:
        raise ValueError("the prompt must hold at least one token")
    buffer = np.zeros((num_samples, block_size), np.int32)
    buffer[:, : prompt.size] = prompt
    tokens = _decode(graphdef, params, _replicated_like(params, buffer), np.int32(prompt.size),
                     np.asarray(jax.random.key_data(jax.random.key(seed))), max_new_tokens=max_new_tokens,
                     temperature=float(temperature), top_k=int(top_k), top_p=float(top_p))
    return distributed.fetch(tokens)


def _replicated_like(params, host_array: np.ndarray) -> jax.Array:
    """host_array copied to every device of the mesh the parameters live on: in a multi-process run the decode
    is one program over all processes' devices, and each process contributes the same prompt."""
    sharding = getattr(jax.tree.leaves(params)[0], "sharding", None)
    if not isinstance(sharding, NamedSharding):
        return jnp.asarray(host_array)
    replicated = NamedSharding(sharding.mesh, PartitionSpec())
    return jax.make_array_from_callback(host_array.shape, replicated, lambda index: host_array[index])


def prompt_ids(tokenizer, prompt: str) -> np.ndarray:
    """Token ids for a prompt; an empty prompt starts from end-of-text (or a newline for character models)."""
    if prompt:
        return tokenizer.encode(prompt)
    if tokenizer.eot_id is not None:
        return np.array([tokenizer.eot_id])
    return tokenizer.encode("\n")


def main(argv: list[str] | None = None) -> int:
    from gptjax.checkpoint import CheckpointError
    from gptjax.config import ConfigError
    from gptjax.state import load_run

    parser = argparse.ArgumentParser(prog="python -m gptjax.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a run directory written by gptjax.train")
    parser.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--num_samples", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 decodes greedily")
    parser.add_argument("--top_k", type=int, default=200, help="0 keeps every token")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass; 1.0 keeps every token")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1 or args.num_samples < 1 or args.temperature < 0 or not 0 < args.top_p <= 1:
        parser.error("--max_new_tokens and --num_samples must be positive, --temperature >= 0, 0 < --top_p <= 1")

    try:
        run = load_run(Path(args.workdir))
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tokens = generate(run.graphdef, run.params, prompt_ids(run.tokenizer, args.prompt),
                      block_size=run.model_config.block_size, max_new_tokens=args.max_new_tokens,
                      num_samples=args.num_samples, temperature=args.temperature, top_k=args.top_k,
                      top_p=args.top_p, seed=args.seed)
    for i, row in enumerate(tokens):
        if args.num_samples > 1:
            print(f"--- sample {i + 1}")
        print(args.prompt + run.tokenizer.decode(row.tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
