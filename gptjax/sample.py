"""Sampling from a trained run, with a KV cache.

    python -m gptjax.sample --workdir runs/shakespeare_char --prompt "ROMEO:" --prompt "JULIET:" --max_new_tokens 200
    python -m gptjax.sample --workdir runs/sft --chat --prompt "Does aspirin reduce fever?"     # a chat reply

Decoding is a jitted prefill (every prompt token through the model at once, filling the cache) and a jitted loop
that feeds one token per step against the cache. Shapes are fixed for a call (the cache holds
min(block_size, longest prompt + max_new_tokens) positions), so nothing recompiles per token.

A batch may hold prompts of different lengths: each row keeps its own length, and slot s of a row's cache holds
that row's token at position s (prompts are padded on the right; a row never reads slots at or after its own
length), so every row decodes exactly as it would alone.

Past the block: a row whose cache is full (block_size tokens) is re-prefilled with its last
block_size - max(1, block_size // 4) tokens, then continues; so the model always sees at least three quarters
of a block of context, and the re-prefill costs one forward pass of those tokens every block_size // 4 new
tokens (rows refill on their own schedules; a step where any row refills recomputes that prefix for the batch).
This is not nanoGPT's policy (crop to the last block_size tokens before every token), which the full-recompute
path (`generate(..., use_cache=False)`, the reference the tests compare against) keeps; the two agree token for
token while prompt + generation fit in the block.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from gptjax.command import ArgumentParser
from gptjax import distributed
from gptjax.data import DataError
from gptjax.data.chat import ChatTemplate, RecordError, as_messages
from gptjax.errors import GptjaxError, report_errors
from gptjax.hf import load_hf
from gptjax.model import KVCache
from gptjax.run import Run, load_run
from gptjax.tokenizer import TokenizerError


def sample_logits(logits: jax.Array, key: jax.Array, temperature: float, top_k: int, top_p: float,
                  vocab_size: int | None = None) -> jax.Array:
    """Draws one token id per row from float32 logits [B, V]; temperature 0 is greedy. vocab_size: only ids below
    it are drawn (a padded embedding table's extra rows have no token to decode to)."""
    logits = logits[:, :vocab_size]
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


# ----------------------------------------------------------------------------------------------------------------
# Decoding with the cache


class DecodeState(NamedTuple):
    cache: KVCache  # [L, B, S, KV, hd]; slot s of row b: row b's token at position s
    buffer: jax.Array  # int32 [B, S]: the tokens in the cache, kept to re-prefill a full row
    lengths: jax.Array  # int32 [B]: filled slots per row
    out: jax.Array  # int32 [B, max_new_tokens]: sampled tokens; out[:, i - 1] is the next one to feed


@partial(jax.jit, static_argnames=("graphdef", "cache_len", "max_new_tokens", "temperature", "top_k", "top_p",
                                   "vocab_size"))
def _prefill(graphdef, params, prompts, lengths, key_data, *, cache_len, max_new_tokens, temperature, top_k, top_p,
             vocab_size):
    """Every prompt token through the model at once (right-padded rows: the padding's cache slots lie at or after
    the row's length, so nothing reads them before they are overwritten); samples each row's first new token."""
    model = nnx.merge(graphdef, params)
    key = jax.random.wrap_key_data(key_data)  # raw uint32s: a host value every process can pass alike
    batch, prompt_len = prompts.shape
    logits, cache = model(prompts, cache=KVCache.zeros(model.cfg, batch, cache_len), cache_index=0)
    last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]
    # Token i is always drawn with fold_in(key, i), as the full-recompute path draws it: same seed, same samples.
    first = sample_logits(last, jax.random.fold_in(key, 0), temperature, top_k, top_p, vocab_size).astype(jnp.int32)
    buffer = jnp.zeros((batch, cache_len), jnp.int32).at[:, :prompt_len].set(prompts)
    out = jnp.zeros((batch, max_new_tokens), jnp.int32).at[:, 0].set(first)
    return DecodeState(cache, buffer, lengths, out)


@partial(jax.jit, static_argnames=("graphdef", "keep", "temperature", "top_k", "top_p", "vocab_size"))
def _decode_steps(graphdef, params, state, key_data, start, stop, *, keep, temperature, top_k, top_p, vocab_size):
    """Samples tokens start..stop-1 (start >= 1). start and stop are traced, so decoding in chunks (to check for
    stop strings on the host in between) reuses one compiled loop. keep: tokens a full row keeps when it
    refills, or None when no row can fill its cache in this call (then no refill is compiled at all)."""
    model = nnx.merge(graphdef, params)
    key = jax.random.wrap_key_data(key_data)
    batch, cache_len = state.buffer.shape
    rows = jnp.arange(batch)

    def refill(state):
        # Full rows keep their last `keep` tokens, recomputed from position 0; the others are left as they are.
        full = state.lengths == cache_len
        buffer = jnp.where(full[:, None], jnp.roll(state.buffer, keep - cache_len, axis=1), state.buffer)
        cache = state.cache
        if keep:
            _, fresh = model(buffer[:, :keep], cache=cache, cache_index=0)
            cache = KVCache(*(jnp.where(full[None, :, None, None, None], f, c) for f, c in zip(fresh, cache)))
        return state._replace(cache=cache, buffer=buffer, lengths=jnp.where(full, keep, state.lengths))

    def step(i, state):
        if keep is not None:
            state = jax.lax.cond(jnp.any(state.lengths == cache_len), refill, lambda s: s, state)
        token = state.out[:, i - 1]
        logits, cache = model(token[:, None], cache=state.cache, cache_index=state.lengths)
        new = sample_logits(logits[:, 0], jax.random.fold_in(key, i), temperature, top_k, top_p, vocab_size)
        return DecodeState(cache, state.buffer.at[rows, state.lengths].set(token), state.lengths + 1,
                           state.out.at[:, i].set(new.astype(jnp.int32)))

    return jax.lax.fori_loop(start, stop, step, state)


def generate_batch(graphdef, params, prompts: Sequence[Sequence[int]], *, block_size: int, max_new_tokens: int,
                   temperature: float = 0.8, top_k: int = 200, top_p: float = 1.0, seed: int = 0,
                   stop_ids: Sequence[int] | None = None, stop_strings: Sequence[str] | None = None,
                   tokenizer=None, check_every: int = 32, vocab_size: int | None = None) -> list[np.ndarray]:
    """Continues each prompt (token ids; any lengths, at least one token each) with up to max_new_tokens tokens,
    decoded together as one batch; returns one int32 array per prompt.

    Prompts longer than block_size keep their last block_size tokens. vocab_size (e.g. the tokenizer's, when the
    model's table is padded past it): only ids below it are drawn; default: any id of the model's table. The same batch and seed give the same
    tokens; a sampled row also depends on the rest of the batch (each step draws for all rows at once), while
    greedy decoding (temperature 0) gives every row what it would get alone.

    Stopping (checked on the host every `check_every` tokens, so the device loop never waits on the host per
    token; decoding ends early once every row has stopped): a row is cut before its first token in stop_ids
    (not included), or after the token that completes the first occurrence of any of stop_strings in its decoded
    continuation (needs `tokenizer`; the text may run past the stop string within that token: cut_at_stop
    trims the text). Only the generated text is searched, not the prompt."""
    if len(prompts) == 0:
        raise ValueError("no prompts given")
    if block_size < 1 or max_new_tokens < 1 or check_every < 1:
        raise ValueError(f"block_size ({block_size}), max_new_tokens ({max_new_tokens}) and check_every "
                         f"({check_every}) must be positive")
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 (got {temperature}), top_k >= 0 (got {top_k}) and 0 < top_p <= 1 "
                         f"(got {top_p})")
    if vocab_size is not None and vocab_size < 1:
        raise ValueError(f"vocab_size={vocab_size} must be positive")
    if stop_strings and tokenizer is None:
        raise ValueError("stop_strings are found in decoded text, so they need the tokenizer")
    rows = [np.asarray(p, np.int32).reshape(-1)[-block_size:] for p in prompts]
    if empty := [i for i, row in enumerate(rows) if row.size == 0]:
        raise ValueError(f"prompt {empty[0]} is empty: every prompt needs at least one token (see prompt_ids)")
    lengths = np.array([row.size for row in rows], np.int32)
    padded = np.zeros((len(rows), lengths.max()), np.int32)
    for i, row in enumerate(rows):
        padded[i, : row.size] = row
    # No more cache than this call can fill: attention reads every slot each step, filled or not.
    cache_len = int(min(block_size, lengths.max() + max_new_tokens))
    # The longest row feeds its last token at position length + max_new_tokens - 2: past the cache, rows refill.
    keep = cache_len - max(1, cache_len // 4) if lengths.max() + max_new_tokens - 1 > cache_len else None
    sampling = dict(temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                    vocab_size=None if vocab_size is None else int(vocab_size))
    key_data = np.asarray(jax.random.key_data(jax.random.key(seed)))
    state = _prefill(graphdef, params, _replicated_like(params, padded), _replicated_like(params, lengths), key_data,
                     cache_len=cache_len, max_new_tokens=max_new_tokens, **sampling)

    stopping = bool(stop_ids) or bool(stop_strings)
    chunk = check_every if stopping else max_new_tokens
    cuts: list[int | None] = [None] * len(rows)
    produced = 1  # the prefill sampled token 0
    while True:
        if stopping:  # every process fetches and decides alike, so a multi-process decode stays in step
            out = distributed.fetch(state.out)[:, :produced]
            cuts = [cut if cut is not None else _stop_point(row, stop_ids, stop_strings, tokenizer)
                    for cut, row in zip(cuts, out)]
            if all(cut is not None for cut in cuts):
                break
        if produced == max_new_tokens:
            break
        end = min(produced + chunk, max_new_tokens)
        state = _decode_steps(graphdef, params, state, key_data, np.int32(produced), np.int32(end),
                              keep=keep, **sampling)
        produced = end
    out = distributed.fetch(state.out)[:, :produced]
    return [row[:cut] if cut is not None else row for row, cut in zip(out, cuts)]


def _stop_point(tokens: np.ndarray, stop_ids, stop_strings, tokenizer) -> int | None:
    """How many of `tokens` to keep, or None when no stop condition occurs in them."""
    keep = tokens.size
    found = False
    if stop_ids:
        hits = np.flatnonzero(np.isin(tokens, np.asarray(stop_ids)))
        if hits.size:
            keep, found = int(hits[0]), True

    def has_stop(n):
        text = tokenizer.decode(tokens[:n].tolist())
        return any(s in text for s in stop_strings)

    if stop_strings and has_stop(keep):
        # The shortest prefix whose text holds a stop string: a longer prefix holds it too, so bisect.
        low, high = 1, keep  # has_stop(high) is true; the answer lies in [low, high]
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if has_stop(middle) else (middle + 1, high)
        keep, found = high, True
    return keep if found else None


def cut_at_stop(text: str, stop_strings: Sequence[str] | None) -> str:
    """text up to (not including) the earliest occurrence of any stop string."""
    found = [i for i in (text.find(s) for s in stop_strings or ()) if i >= 0]
    return text[: min(found)] if found else text


# ----------------------------------------------------------------------------------------------------------------
# The reference: recompute the whole window every token


@partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "temperature", "top_k", "top_p", "vocab_size"))
def _decode_full(graphdef, params, buffer, length, key_data, *, max_new_tokens, temperature, top_k, top_p,
                 vocab_size):
    model = nnx.merge(graphdef, params)
    key = jax.random.wrap_key_data(key_data)
    block = buffer.shape[1]

    def step(i, carry):
        buffer, length, out = carry
        logits = model(buffer)
        last = jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False)
        token = sample_logits(last, jax.random.fold_in(key, i), temperature, top_k, top_p,
                              vocab_size).astype(buffer.dtype)
        full = length == block
        # A full window slides left by one; otherwise the token goes in the next free slot.
        buffer = jnp.where(full, jnp.roll(buffer, -1, axis=1), buffer)
        position = jnp.where(full, block - 1, length)
        buffer = jax.lax.dynamic_update_index_in_dim(buffer, token, position, axis=1)
        return buffer, jnp.minimum(length + 1, block), out.at[:, i].set(token)

    out = jnp.zeros((buffer.shape[0], max_new_tokens), buffer.dtype)
    return jax.lax.fori_loop(0, max_new_tokens, step, (buffer, length, out))[2]


def generate(graphdef, params, prompt_ids, *, block_size: int, max_new_tokens: int, num_samples: int = 1,
             temperature: float = 0.8, top_k: int = 200, top_p: float = 1.0, seed: int = 0,
             vocab_size: int | None = None, use_cache: bool = True) -> np.ndarray:
    """Returns int32 [num_samples, max_new_tokens] continuations of prompt_ids (at least one token); vocab_size as
    for generate_batch.

    use_cache=False recomputes the whole [num_samples, block_size] window for every token and slides it by one
    token once full (nanoGPT's policy): the slow reference the cached path is tested against."""
    if use_cache:
        return np.stack(generate_batch(graphdef, params, [prompt_ids] * num_samples, block_size=block_size,
                                       max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                                       top_p=top_p, seed=seed, vocab_size=vocab_size))
    prompt = np.asarray(prompt_ids, np.int32)[-block_size:]
    if prompt.size == 0:
        raise ValueError("the prompt must hold at least one token")
    buffer = np.zeros((num_samples, block_size), np.int32)
    buffer[:, : prompt.size] = prompt
    tokens = _decode_full(graphdef, params, _replicated_like(params, buffer), np.int32(prompt.size),
                          np.asarray(jax.random.key_data(jax.random.key(seed))), max_new_tokens=max_new_tokens,
                          temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                          vocab_size=None if vocab_size is None else int(vocab_size))
    return distributed.fetch(tokens)


def _replicated_like(params, host_array: np.ndarray) -> jax.Array:
    """host_array copied to every device of the mesh the parameters live on: in a multi-process run the decode
    is one program over all processes' devices, and each process contributes the same prompt."""
    sharding = getattr(jax.tree.leaves(params)[0], "sharding", None)
    if not isinstance(sharding, NamedSharding):
        return jnp.asarray(host_array)
    replicated = NamedSharding(sharding.mesh, PartitionSpec())
    return jax.make_array_from_callback(host_array.shape, replicated, lambda index: host_array[index])


def complete(run: Run, prompt: str | Sequence[str] = "", max_new_tokens: int = 200, *, temperature: float = 0.8,
             top_k: int = 200, top_p: float = 1.0, seed: int = 0, stop: list[str] | str | None = None
             ) -> str | list[str]:
    """The prompt followed by one sampled continuation (cut before the first `stop` string), as
    `python -m gptjax.sample --prompt ...` prints it; a list of prompts is decoded as one batch, as repeated
    --prompt flags are, and gives a list. temperature=0 decodes greedily. An empty prompt starts from end-of-text
    (or a newline for character models)."""
    stop = [stop] if isinstance(stop, str) else list(stop or [])
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    rows = generate_batch(run.graphdef, run.params, [prompt_ids(run.tokenizer, p) for p in prompts],
                          block_size=run.model_config.block_size, max_new_tokens=max_new_tokens,
                          temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop_strings=stop,
                          tokenizer=run.tokenizer, vocab_size=run.tokenizer.vocab_size)
    texts = [p + cut_at_stop(run.tokenizer.decode(row.tolist()), stop) for p, row in zip(prompts, rows)]
    return texts[0] if isinstance(prompt, str) else texts


def chat_prompt(tokenizer, messages: list[dict]) -> tuple[np.ndarray, int | None]:
    """(ids, end-of-turn id) of a conversation rendered with the tokenizer's chat template and the assistant's
    turn opened (add_generation_prompt), as the model was fine-tuned on it."""
    if not tokenizer.chat_template:
        raise DataError(f"the {tokenizer.name} tokenizer has no chat template: this model was not fine-tuned on "
                        "conversations (train it with data.source=chat), so --chat cannot format a prompt for it")
    template = ChatTemplate.choose("", tokenizer)
    text, _ = template.render(messages, add_generation_prompt=True)
    return tokenizer.encode(text), template.end_of_turn(tokenizer)


def chat(run: Run, messages: list[dict] | str, max_new_tokens: int = 200, *, temperature: float = 0.0,
         top_k: int = 200, top_p: float = 1.0, seed: int = 0) -> str:
    """The assistant's reply to a conversation (a list of {"role", "content"}, or one user message as a string),
    up to the end of its turn; greedy by default."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    ids, end = chat_prompt(run.tokenizer, messages)
    row = generate_batch(run.graphdef, run.params, [ids], block_size=run.model_config.block_size,
                         max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                         stop_ids=[end] if end is not None else None, vocab_size=run.tokenizer.vocab_size)[0]
    return run.tokenizer.decode(row.tolist())


def prompt_ids(tokenizer, prompt: str) -> np.ndarray:
    """Token ids for a prompt; an empty prompt starts from end-of-text (or a newline for character models)."""
    if prompt:
        return tokenizer.encode(prompt)
    if tokenizer.eot_id is not None:
        return np.array([tokenizer.eot_id])
    return tokenizer.encode("\n")


# ----------------------------------------------------------------------------------------------------------------
# Command line


class _CompileTimer:
    """Seconds JAX spends tracing and compiling while active, so throughput can be reported without them."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self):
        self.seconds = 0.0

    def _listen(self, event, duration_secs, **kwargs):
        if event in self.EVENTS:
            self.seconds += duration_secs

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gptjax.sample", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a run directory written by gptjax.train")
    source.add_argument("--hf", metavar="DIR", help="a Hugging Face model directory (read by gptjax.hf.load_hf)")
    parser.add_argument("--prompt", action="append", default=[],
                        help="text to continue; repeat for a batch of prompts (default: start of a document)")
    parser.add_argument("--prompt_file", help="a file of prompts, one per line, blank lines skipped (added after any --prompt)")
    parser.add_argument("--max_new_tokens", type=int, default=200, help="tokens to generate after each prompt")
    parser.add_argument("--num_samples", type=int, default=1, help="continuations per prompt")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 decodes greedily")
    parser.add_argument("--top_k", type=int, default=200, help="0 keeps every token")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass; 1.0 keeps every token")
    parser.add_argument("--seed", type=int, default=0, help="the sampling seed: the same seed, the same text")
    parser.add_argument("--stop", action="append", default=[],
                        help="cut each output before the first occurrence of this text (repeatable); decoding ends early once "
                             "every output has stopped")
    parser.add_argument("--chat", action="store_true",
                        help="each --prompt is a user's message, formatted with the model's chat template; the "
                             "reply ends at the end of the assistant's turn")
    parser.add_argument("--system", help="with --chat: a system message before each user message")
    parser.add_argument("--messages", metavar="FILE",
                        help="conversations to reply to: a JSON list of {\"role\", \"content\"} messages, or a .jsonl "
                             "file with one {\"messages\": [...]} per line (implies --chat)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="the checkpoint of this step (default: the latest)")
    which.add_argument("--best", action="store_true", help="the checkpoint with the lowest validation loss")
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1 or args.num_samples < 1 or args.temperature < 0 or not 0 < args.top_p <= 1:
        parser.error("--max_new_tokens and --num_samples must be positive, --temperature >= 0, 0 < --top_p <= 1")
    if args.hf and (args.step is not None or args.best):
        parser.error("--step and --best choose among a run's checkpoints; --hf reads a single model")
    if "" in args.stop:
        parser.error("--stop needs non-empty text")
    if args.system is not None and not args.chat:
        parser.error("--system needs --chat")
    if args.messages and (args.prompt or args.prompt_file):
        parser.error("--messages holds the conversations; leave out --prompt and --prompt_file")
    return report_errors(lambda: _sample(args))


def _conversations(args: argparse.Namespace, prompts: list[str]) -> list[list[dict]]:
    """The conversations --chat or --messages asks to reply to."""
    if not args.messages:
        system = [{"role": "system", "content": args.system}] if args.system else []
        return [system + [{"role": "user", "content": p}] for p in prompts if p] or \
            [system + [{"role": "user", "content": ""}]]
    try:
        text = Path(args.messages).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GptjaxError(f"cannot read --messages {args.messages}: {getattr(e, 'strerror', None) or e}") from None
    try:
        records = [json.loads(text)] if not args.messages.endswith(".jsonl") else \
            [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as e:
        raise GptjaxError(f"--messages {args.messages} is not valid JSON ({e})") from None
    conversations = []
    for i, record in enumerate(records, start=1):
        messages = record.get("messages") if isinstance(record, dict) else record
        try:
            conversations.append(as_messages(messages, "it", "user"))
        except RecordError as e:
            raise GptjaxError(f"--messages {args.messages}, conversation {i}: {e}; give a list of "
                              "{\"role\": ..., \"content\": ...} messages") from None
    return conversations


def _sample(args: argparse.Namespace) -> None:
    prompts = list(args.prompt)
    if args.prompt_file:
        try:
            prompts += [line for line in Path(args.prompt_file).read_text(encoding="utf-8").splitlines() if line]
        except (OSError, UnicodeDecodeError) as e:
            raise GptjaxError(f"cannot read --prompt_file: {e}") from None
    prompts = prompts or [""]
    chatting = args.chat or bool(args.messages)
    conversations = _conversations(args, prompts) if chatting else []
    run = load_hf(Path(args.hf)) if args.hf else load_run(Path(args.workdir), args.step, best=args.best)
    stop_ids = None
    try:
        if chatting:
            encoded, ends = zip(*[chat_prompt(run.tokenizer, c) for c in conversations])
            stop_ids = sorted({e for e in ends if e is not None}) or None
            prompts = ["" for _ in conversations]  # only the reply is printed
        else:
            encoded = [prompt_ids(run.tokenizer, p) for p in prompts]
    except TokenizerError as e:  # a character or byte sequence this tokenizer cannot encode
        raise TokenizerError(f"cannot encode the prompt: {e}") from None
    batch = [ids for ids in encoded for _ in range(args.num_samples)]
    started = time.perf_counter()
    with _CompileTimer() as compiling:
        rows = generate_batch(run.graphdef, run.params, batch, block_size=run.model_config.block_size,
                              max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, seed=args.seed, stop_ids=stop_ids, stop_strings=args.stop,
                              tokenizer=run.tokenizer, vocab_size=run.tokenizer.vocab_size)
    seconds = time.perf_counter() - started
    for i, row in enumerate(rows):
        prompt_index, sample = divmod(i, args.num_samples)
        labels = ([f"prompt {prompt_index + 1}"] if len(prompts) > 1 else []) + (
            [f"sample {sample + 1}"] if args.num_samples > 1 else [])
        if labels:
            print("--- " + ", ".join(labels))
        print(prompts[prompt_index] + cut_at_stop(run.tokenizer.decode(row.tolist()), args.stop))
    tokens = sum(row.size for row in rows)
    running = max(seconds - compiling.seconds, 1e-9)
    print(f"{tokens} tokens in {seconds:.2f} s, {compiling.seconds:.2f} s of it compiling: {tokens / running:,.0f} "
          f"tokens/s after compilation (batch of {len(rows)})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
