"""Evaluating a trained run: validation loss on token shards, and benchmark tasks scored by log-likelihood.

    python -m gptjax.evaluate --workdir runs/x --task val_loss
    python -m gptjax.evaluate --workdir runs/x --task hellaswag --data eval/hellaswag_val.jsonl --limit 500
    python -m gptjax.evaluate --workdir runs/x --task mmlu --data eval/mmlu --shots 5 --best

Results are printed and written to RUN/eval/<task>-<data>[-<K>shot][-limit<N>]-step<S>.json (--name: another
suffix), so that evaluations of other data, options or steps never overwrite each other. From Python (or inside
training):

    evaluate_task(run, "hellaswag", data=path, limit=500) -> {"metrics": {"acc": ..., "acc_norm": ...}, ...}

Scoring: each (context, continuation) is tokenized as lm-evaluation-harness does (the whole text, then the context
alone; the continuation is the tokens after the context's), the context is cut from the left to fit block_size,
and the log-probabilities of the continuation's tokens are summed in float32. Rows are batched at a fixed batch
size and padded to one of a few lengths (powers of two up to block_size), so jit compiles a handful of programs
however many requests there are.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from functools import partial
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from gptjax.command import ArgumentParser
from gptjax import distributed, objectives, tracking
from gptjax.config import parse_mixture
from gptjax.data.chat import ChatTemplate
from gptjax.data.packing import ROW_FIELDS, eval_rows
from gptjax.data.shards import open_split
from gptjax.errors import GptjaxError, report_errors
from gptjax.rundir import RunDir, check_writable
from gptjax.run import load_run
from gptjax.tasks import TASKS, Task, TaskError, load_task
from gptjax.tokenizer import TokenizerError

EVAL_TASKS = ("val_loss",) + TASKS
DEFAULT_BATCH_SIZE = 16
_MIN_BUCKET = 16


# ----------------------------------------------------------------------------------------------------------------
# The scorer


@partial(jax.jit, static_argnames="graphdef")
def _score_rows(graphdef, params, inputs, targets, mask):
    """Per row: the summed float32 log-probability of targets where mask is set, and whether every masked target
    is the model's argmax (greedy decoding would produce it)."""
    logits = nnx.merge(graphdef, params)(inputs).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    token_logp = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    greedy = (jnp.argmax(logits, axis=-1) == targets) | ~mask
    return jnp.sum(jnp.where(mask, token_logp, 0.0), axis=-1), jnp.all(greedy, axis=-1)


def length_buckets(block_size: int) -> list[int]:
    """The padded lengths rows are rounded up to: powers of two from 16, and block_size itself."""
    buckets, n = [], _MIN_BUCKET
    while n < block_size:
        buckets.append(n)
        n *= 2
    return buckets + [block_size]


class Scorer:
    """Batched log-likelihoods of token continuations under a run's model."""

    def __init__(self, run, batch_size: int = DEFAULT_BATCH_SIZE):
        if batch_size < 1:
            raise TaskError(f"batch_size={batch_size} must be positive")
        self.run, self.batch_size = run, batch_size
        self.tokenizer = run.tokenizer
        self.block_size = run.model_config.block_size
        self.buckets = length_buckets(self.block_size)
        self.prefix_id = self._prefix_token()
        self.rows_scored = 0

    def _prefix_token(self) -> int:
        """What an empty context is conditioned on: end-of-text (lm-eval's prefix token), else a newline."""
        if self.tokenizer.eot_id is not None:
            return int(self.tokenizer.eot_id)
        return int(self.tokenizer.encode("\n")[0])

    # -- tokenization, as lm-eval's TemplateLM.loglikelihood / _encode_pair

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        encode = lambda text: [int(t) for t in self.tokenizer.encode(text)]
        if context == "":
            cont = encode(continuation)
            return ([self.prefix_id], cont) if not cont or cont[0] != self.prefix_id else (cont[:1], cont[1:])
        # Trailing spaces move to the continuation, so " word" tokenizes as it would in running text.
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole, ctx = encode(context + continuation), encode(context)
        return ctx, whole[len(ctx):]

    # -- scoring

    def _rows(self, context: Sequence[int], continuation: Sequence[int]):
        """(input, first scored input position, scored tokens) windows covering the continuation. A continuation
        that fits in block_size is one window with the context cut from the left (lm-eval's truncation); a longer
        one is scored in consecutive windows of block_size tokens, as lm-eval's rolling log-likelihood does."""
        seq = list(context) + list(continuation)
        start, end = len(context), len(seq)
        if start < 1:
            raise TaskError("a continuation needs at least one context token to be predicted from")
        if len(continuation) <= self.block_size:
            spans = [(start, end)]
        else:
            spans = [(a, min(a + self.block_size, end)) for a in range(start, end, self.block_size)]
        rows = []
        for a, b in spans:  # score tokens seq[a:b] from the input seq[s:b-1], at most block_size long
            s = max(0, b - 1 - self.block_size)
            rows.append((seq[s:b - 1], a - 1 - s, seq[a:b]))
        return rows

    def loglikelihood_tokens(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]], *, bar=None
                             ) -> list[tuple[float, bool]]:
        """(sum of log p(continuation | context), whether greedy decoding gives the continuation) per request.
        bar: a progress bar to advance by each request scored (default: one of its own, on a terminal)."""
        rows = []  # (request index, input, first scored position, scored tokens)
        for i, (context, continuation) in enumerate(requests):
            rows += [(i, *row) for row in self._rows(context, continuation)]
        # A long continuation is several rows, and rows are sorted by length: a request counts once its last is.
        rows_left = np.bincount(np.array([r[0] for r in rows], np.int64), minlength=len(requests))
        own_bar = bar is None
        if own_bar:
            bar = tracking.progress_bar(len(requests), "scoring", "request", leave=False,
                                        enabled=distributed.is_main())
        totals = np.zeros(len(requests), np.float64)
        greedy = np.ones(len(requests), bool)
        # Longest first, so rows of similar length share a batch and its padded length.
        rows.sort(key=lambda r: -len(r[1]))
        for first in range(0, len(rows), self.batch_size):
            batch = rows[first:first + self.batch_size]
            length = next(b for b in self.buckets if b >= len(batch[0][1]))
            # Every batch has the same [batch_size, bucket] shape (empty rows fully masked), so nothing recompiles.
            inputs = np.zeros((self.batch_size, length), np.int32)
            targets = np.zeros((self.batch_size, length), np.int32)
            mask = np.zeros((self.batch_size, length), bool)
            for r, (_, tokens, pos, scored) in enumerate(batch):
                inputs[r, :len(tokens)] = tokens
                targets[r, :len(tokens) - 1] = tokens[1:]
                targets[r, len(tokens) - 1] = scored[-1]
                mask[r, pos:pos + len(scored)] = True
            sums, all_greedy = _score_rows(self.run.graphdef, self.run.params, *(
                self._place(x) for x in (inputs, targets, mask)))
            sums, all_greedy = distributed.fetch(sums), distributed.fetch(all_greedy)
            finished = 0
            for r, (i, *_) in enumerate(batch):
                totals[i] += float(sums[r])
                greedy[i] &= bool(all_greedy[r])
                rows_left[i] -= 1
                finished += rows_left[i] == 0
            self.rows_scored += len(batch)
            bar.update(int(finished))
        if own_bar:
            bar.close()
        return [(float(t), bool(g)) for t, g in zip(totals, greedy)]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        return self.loglikelihood_tokens([self.encode_pair(c, x) for c, x in requests])

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """Log-likelihood of whole texts, the first token conditioned on the prefix token (lm-eval's rolling)."""
        return [ll for ll, _ in self.loglikelihood_tokens(
            [([self.prefix_id], [int(t) for t in self.tokenizer.encode(text)]) for text in texts])]

    def _place(self, host: np.ndarray) -> jax.Array:
        """A batch copied to every device the parameters live on: every process passes the same rows."""
        sharding = getattr(jax.tree.leaves(self.run.params)[0], "sharding", None)
        if not isinstance(sharding, NamedSharding):
            return jnp.asarray(host)
        replicated = NamedSharding(sharding.mesh, PartitionSpec())
        return jax.make_array_from_callback(host.shape, replicated, lambda index: host[index])


# ----------------------------------------------------------------------------------------------------------------
# Metrics


def choice_metrics(task: Task, scores: list[tuple[float, bool]]) -> dict:
    """acc (argmax log-likelihood), gold_loglik (the right choice's mean log-likelihood), and for multiple choice
    acc_norm: argmax of log-likelihood divided by the choice's length in characters, which is what lm-eval's
    acc_norm computes, and acc_bytes by UTF-8 length."""
    correct, correct_norm, correct_bytes, groups, gold_ll, picked = [], [], [], {}, [], []
    k = 0
    for ex in task.examples:
        lls = np.array([s for s, _ in scores[k:k + len(ex.pairs)]])
        k += len(ex.pairs)
        gold_ll.append(lls[ex.gold])
        picked.append(ex.pairs[int(np.argmax(lls))][1].strip())
        correct.append(int(np.argmax(lls)) == ex.gold)
        correct_norm.append(int(np.argmax(lls / np.array(ex.norm_lengths, float))) == ex.gold)
        nbytes = np.array([len(c.lstrip(" ").encode("utf-8")) or 1 for _, c in ex.pairs], float)
        correct_bytes.append(int(np.argmax(lls / nbytes)) == ex.gold)
        groups.setdefault(ex.group, []).append(correct[-1])
    # acc moves only when the right choice overtakes the others; its log-likelihood shows smaller steps
    metrics = {"acc": float(np.mean(correct)), "gold_loglik": float(np.mean(gold_ll))}
    if task.kind == "multiple_choice" and task.name != "mmlu":  # mmlu's choices are all one letter
        metrics["acc_norm"] = float(np.mean(correct_norm))
        metrics["acc_bytes"] = float(np.mean(correct_bytes))
    choices = {tuple(c.strip() for _, c in ex.pairs) for ex in task.examples}
    if len(choices) == 1 and task.kind == "multiple_choice":  # one set of answers (yes/no/maybe): how often each
        metrics["picked"] = {c: picked.count(c) / len(picked) for c in next(iter(choices))}  # is chosen
    if len(groups) > 1:
        metrics["acc_by_group"] = {g: float(np.mean(v)) for g, v in sorted(groups.items())}
    return metrics


def loglikelihood_metrics(scorer: Scorer, task: Task, scores: list[tuple[float, bool]]) -> dict:
    lls = np.array([s for s, _ in scores])
    tokens = sum(len(scorer.encode_pair(*ex.pairs[0])[1]) for ex in task.examples)
    return {"acc": float(np.mean([g for _, g in scores])),
            # lm-eval's perplexity aggregation: exp of the mean negative log-likelihood per example
            "perplexity": float(math.exp(-lls.mean())),
            "loglikelihood": float(lls.mean()),
            "token_perplexity": float(math.exp(-lls.sum() / max(tokens, 1)))}


def val_loss(run, shards, *, batch_size: int = DEFAULT_BATCH_SIZE, limit: int | None = None) -> dict:
    """Mean next-token loss over token shards in consecutive block_size windows (each token predicted once,
    except each shard's first): a fixed, complete pass, unlike training's sample of random windows. limit: at
    most this many windows."""
    scorer = Scorer(run, batch_size)
    block = run.model_config.block_size
    windows = [(shard, start) for shard in shards for start in range(0, len(shard) - 1, block)][:limit]
    if not windows:
        raise TaskError("the token shards hold fewer than 2 tokens: nothing to evaluate")
    total, count = 0.0, 0
    chunk = 64 * batch_size  # windows read and scored at a time, so a large split never sits in memory as lists
    bar = tracking.progress_bar(len(windows), "val_loss", "window", leave=False, enabled=distributed.is_main())
    for first in range(0, len(windows), chunk):
        requests = []
        for shard, start in windows[first:first + chunk]:
            window = np.asarray(shard.tokens[start:start + block + 1], np.int64).tolist()
            requests.append((window[:1], window[1:]))
        total += sum(ll for ll, _ in scorer.loglikelihood_tokens(requests, bar=bar))
        count += sum(len(c) for _, c in requests)
    bar.close()
    loss = -total / count
    return {"metrics": {"val_loss": loss, "perplexity": math.exp(loss)},
            "counts": {"windows": len(windows), "tokens": count}}


def rows_val_loss(run, rows_file: Path, *, batch_size: int, limit: int | None) -> dict:
    """A post-training run's held-out rows (RUN/data/rows.npz): the mean loss over the tokens training puts in
    the loss (the replies; for preference pairs the chosen responses, and the rejected ones as rejected_loss).
    limit: at most this many rows."""
    try:
        with np.load(rows_file) as z:
            columns = {k.split("/", 1)[1]: z[k][:limit] for k in z.files if k.startswith("val/")}
    except (OSError, ValueError) as e:
        raise TaskError(f"cannot read the held-out rows {rows_file} ({e}); run training again to make them") from None
    if not columns:
        raise TaskError(f"{rows_file} holds no held-out rows (data.val_fraction=0 and no data.val_path)")
    sides = ["chosen", "rejected"] if "chosen_tokens" in columns else [""]
    step = jax.jit(lambda params, rows: objectives.sequence_logprobs(nnx.merge(run.graphdef, params), rows))
    metrics, counts = {}, {"rows": len(next(iter(columns.values())))}
    for side in sides:
        prefix = f"{side}_" if side else ""
        rows = {k[len(prefix):]: v for k, v in columns.items() if k.startswith(prefix) and k[len(prefix):] in
                ROW_FIELDS}
        tokens = int(rows["loss_mask"].sum())
        per_row = np.concatenate([np.asarray(step(run.params, batch)) for batch in
                                  eval_rows(rows, batch_size, -(-counts["rows"] // batch_size))])
        total = float(per_row[:counts["rows"]].sum())  # the last batch repeats the first rows to fill up
        name = "val_loss" if side in ("", "chosen") else "rejected_loss"
        metrics[name] = -total / max(tokens, 1)
        counts[f"{prefix}tokens"] = tokens
    return {"metrics": metrics, "counts": counts}


def val_loss_by_source(run, dirs: dict[str, Path], *, batch_size: int, limit: int | None) -> dict:
    """val_loss over every source's validation shards together, and, with several sources, each one's own
    (val_loss_<source>, as training reports them); limit: windows per source."""
    parts = {name: val_loss(run, open_split(d), batch_size=batch_size, limit=limit) for name, d in dirs.items()}
    tokens = sum(r["counts"]["tokens"] for r in parts.values())
    loss = sum(r["metrics"]["val_loss"] * r["counts"]["tokens"] for r in parts.values()) / tokens
    metrics = {"val_loss": loss, "perplexity": math.exp(loss)}
    if len(parts) > 1:
        metrics.update({f"val_loss_{name}": r["metrics"]["val_loss"] for name, r in parts.items()})
    return {"metrics": metrics, "counts": {"windows": sum(r["counts"]["windows"] for r in parts.values()),
                                           "tokens": tokens}}


# ----------------------------------------------------------------------------------------------------------------
# Entry points


def default_val_dirs(run, run_dir: Path | None) -> dict[str, Path]:
    """The run's own validation split(s) by source: RUN/data/val for a text source, DIR/val of each prepared
    shard source, RUN/prepared/NAME/val for each source of data.source=files."""
    d = run.config.data
    if d.source == "shards":
        dirs = {name: source.path / "val" for name, source in parse_mixture(d.shards).items()}
    elif run_dir is None:
        raise TaskError("val_loss of a run trained on text needs its directory (run_dir=...) or data=<shards "
                        "dir>, to find its validation split")
    elif d.source == "files":
        dirs = {p.parent.name: p for p in sorted((Path(run_dir) / "prepared").glob("*/val"))}
    else:
        dirs = {d.source: RunDir(run_dir).data / "val"}
    dirs = {name: path for name, path in dirs.items() if path.is_dir() and any(path.glob("*.ds"))}
    if not dirs:
        raise TaskError("the run has no validation split (data.val_fraction=0?); pass --data <dir of .ds shards>")
    return dirs


def evaluate_task(run, task: str, data=None, shots: int = 0, limit: int | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE, *, run_dir=None) -> dict:
    """Evaluates a loaded run (gptjax.state.load_run) on one task; returns {"task", "data", "shots", "limit",
    "step", "metrics", "counts", "seconds"}. val_loss reads `data` (a directory of .ds shards) or, by default, the
    run's own validation split (for text-trained runs, pass run_dir; default: the directory the run was loaded
    from)."""
    run_dir = run_dir if run_dir is not None else run.run_dir
    began = time.perf_counter()
    if task == "val_loss":
        if shots:
            raise TaskError("val_loss takes no --shots")
        if data is None and run.config.data.source in ("chat", "preferences") and run_dir is not None:
            rows_file = RunDir(run_dir).data / "rows.npz"
            result = rows_val_loss(run, rows_file, batch_size=batch_size, limit=limit)
            return {"task": task, "data": str(rows_file), "shots": 0, "limit": limit, "step": run.step,
                    **result, "seconds": round(time.perf_counter() - began, 3)}
        dirs = {"data": Path(data).expanduser()} if data is not None else default_val_dirs(run, run_dir)
        # A prepared data directory (with train/ and val/) means its val split.
        dirs = {name: d / "val" if not any(d.glob("*.ds")) and (d / "val").is_dir() else d
                for name, d in dirs.items()}
        result = val_loss_by_source(run, dirs, batch_size=batch_size, limit=limit)
        data = ",".join(map(str, dirs.values()))
    else:
        loaded = load_task(task, data, shots, limit, chat=_chat_format(run.tokenizer))
        scorer = Scorer(run, batch_size)
        # An item holding text the tokenizer cannot encode (a character a char model never saw) counts as wrong,
        # and is counted, rather than stopping the task.
        unscorable = {i for i, ex in enumerate(loaded.examples) if not _encodable(scorer, ex.pairs)}
        scored = dataclasses.replace(loaded, examples=[ex for i, ex in enumerate(loaded.examples)
                                                       if i not in unscorable])
        if not scored.examples:
            raise TaskError(f"no item of {loaded.data} can be encoded by the run's {run.tokenizer.describe()}; "
                            "evaluate a run whose tokenizer covers the task's text")
        scores = scorer.loglikelihood([pair for ex in scored.examples for pair in ex.pairs])
        if loaded.kind == "loglikelihood":
            metrics = loglikelihood_metrics(scorer, scored, scores)
        else:
            metrics = choice_metrics(scored, scores)
        if unscorable:  # each accuracy over every item, the unscorable ones wrong
            share = len(scored.examples) / len(loaded.examples)
            metrics.update({k: v * share for k, v in metrics.items() if k.startswith("acc") and isinstance(v, float)})
        result = {"metrics": metrics, "counts": {"examples": len(loaded.examples), "available": loaded.num_available,
                                                 "requests": len(scores), "rows": scorer.rows_scored,
                                                 "unencodable": len(unscorable)}}
        data = loaded.data
        if task == "custom":  # how the questions were put: in the model's chat template, or as plain text
            result["format"] = "chat" if run.tokenizer.chat_template else "text"
    seconds = time.perf_counter() - began
    return {"task": task, "data": str(data), "shots": shots, "limit": limit, "step": run.step, **result,
            "seconds": round(seconds, 3)}


def _chat_format(tokenizer):
    """A model fine-tuned on conversations is asked custom questions in its chat template (see load_custom)."""
    if not tokenizer.chat_template:
        return None
    template = ChatTemplate.choose("", tokenizer)
    return lambda messages: template.render(messages, add_generation_prompt=True)[0]


def _encodable(scorer: Scorer, pairs) -> bool:
    try:
        for context, continuation in pairs:
            scorer.encode_pair(context, continuation)
    except TokenizerError:
        return False
    return True


def _summary(result: dict) -> str:
    parts = [f"{k} {v:.4f}" for k, v in result["metrics"].items() if isinstance(v, float)]
    if "picked" in result["metrics"]:
        parts.append("picked " + ", ".join(f"{c} {share:.0%}" for c, share in result["metrics"]["picked"].items()))
    counts = ", ".join(f"{v} {k}" for k, v in result["counts"].items())
    return f"{result['task']} at step {result['step']}: {' | '.join(parts)} ({counts}; {result['seconds']:.1f}s)"


def result_name(args: argparse.Namespace, step: int) -> str:
    """What the results file is named after: the data, the options that change the score, and the checkpoint,
    so that evaluations of other data, settings or steps never overwrite each other (the same one run again
    replaces its own)."""
    parts = [Path(args.data.rstrip("/")).name.split(".")[0]] if args.data else []
    parts += [f"{args.shots}shot"] if args.shots else []
    parts += [f"limit{args.limit}"] if args.limit else []
    return "-".join([*parts, "best" if args.best else f"step{step}"])


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gptjax.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a run directory written by gptjax.train")
    parser.add_argument("--task", required=True, choices=EVAL_TASKS, help="what to score: " + ", ".join(EVAL_TASKS))
    parser.add_argument("--data", help="the task's file or directory (val_loss: a directory of .ds shards; "
                                       "default: the run's validation split)")
    parser.add_argument("--shots", type=int, default=0, help="few-shot exemplars before each item")
    parser.add_argument("--limit", type=int, help="score only the first N examples (per subject for mmlu; "
                                                  "windows per source for val_loss)")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="rows per forward pass")
    parser.add_argument("--name", help="suffix of the results file: RUN/eval/<task>-<name>.json (default: the "
                                       "data file's name, --shots, --limit and the step, e.g. "
                                       "hellaswag-hellaswag_val-limit500-step2000)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="evaluate this checkpoint (default: the latest)")
    which.add_argument("--best", action="store_true", help="evaluate the checkpoint with the lowest val loss")
    args = parser.parse_args(argv)
    return report_errors(lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> None:
    if args.shots < 0 or (args.limit is not None and args.limit < 1) or args.batch_size < 1:
        raise GptjaxError("--shots must be >= 0, --limit and --batch_size positive")
    if args.task not in ("val_loss",) and not args.data:
        raise GptjaxError(f"--task {args.task} needs --data PATH (its file or directory, e.g. shared/data/eval/...)")
    workdir = RunDir(args.workdir)
    run = load_run(workdir.path, args.step, best=args.best)
    out = workdir.eval_result(args.task, args.name or result_name(args, run.step))
    check_writable(out.parent, "the run's eval directory", "make it writable, or evaluate a copy of the run "
                   "(its results are written there)")  # before the scoring, which may take hours
    result = evaluate_task(run, args.task, args.data, args.shots, args.limit, args.batch_size, run_dir=workdir.path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    except OSError as e:
        raise GptjaxError(f"cannot write the results to {out}: {e.strerror or e}") from None
    print(_summary(result))
    print(f"results: {out}")


if __name__ == "__main__":
    sys.exit(main())
