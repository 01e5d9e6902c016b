"""Hooks: what the training loop runs besides its steps (gptjax.trainer.Trainer runs them), and the default ones.

    Hook(fn, every=N)        fn(StepInfo) after every N steps and at the end; see Hook for at_start, at_stop, ...
    ProgressLog(trainer)     every step's metrics: metrics.jsonl, TensorBoard, the log line and progress bar
    Evaluation(trainer)      validation loss per source, train.eval_tasks, the best checkpoint
    print_sample             the sample printed once training reaches train.steps

A hook gets the trainer through StepInfo (or, for the default ones, when it is made) and reads what it needs from
it: the program, the inputs, the checkpoints, the tracker.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from typing import Any, Callable, Mapping

import jax
import numpy as np

from gptjax import distributed, tracking
from gptjax.data.loader import eval_batches
from gptjax.data.packing import eval_rows
from gptjax.evaluate import evaluate_task
from gptjax.flops import flops_per_token, reference_peak
from gptjax.run import Run
from gptjax.data.chat import ChatTemplate
from gptjax.sample import generate, generate_batch, prompt_ids
from gptjax.step import TrainState


@dataclasses.dataclass
class StepInfo:
    """What a hook sees: the step just taken (0 before the first) and the state after it."""

    step: int
    state: TrainState
    trainer: Any  # the gptjax.trainer.Trainer running the loop


@dataclasses.dataclass
class Hook:
    """fn(info) -> metrics to report (or None), run after the steps it is due at."""

    fn: Callable[[StepInfo], Mapping[str, float] | None]
    every: int = 0  # every this many steps (0: not periodically)
    at_start: bool = False  # at step 0 of a run that starts fresh, before any training
    at_end: bool = True  # after the last step (train.steps)
    at_stop: bool = False  # after the step a signal stopped the run at (instead of any other due hook)
    read_metrics: bool = False  # read and check the step's metrics first (a checkpoint never saves a state
    #                             not seen to be finite)
    counted: bool = False  # its time counts as training time (tokens/s); otherwise it is left out

    def due(self, step: int, *, last: bool, stopping: bool) -> bool:
        if stopping:
            return self.at_stop
        return bool(self.every and step % self.every == 0) or (last and self.at_end)


_STEP_METRICS = ("loss", "lr", "grad_norm", "param_norm", "skipped")  # what every train step reports
_WEIGHTS = ("tokens_in_loss", "pairs")  # counts an objective's means are over
_NOT_SHOWN = _WEIGHTS  # written to metrics.jsonl, left off the terminal line


class ProgressLog:
    """Every train.log_every steps: a metrics line (metrics.jsonl, TensorBoard, W&B) and a line on stdout with
    tokens/s and MFU; on a terminal (see gptjax.tracking.interactive) also a progress bar, on the process that
    writes the metrics."""

    def __init__(self, trainer):
        self.trainer, self.t = trainer, trainer.cfg.train
        mc = trainer.model_config
        self.tokens_per_step = self.t.batch_size * mc.block_size
        self.flops_per_step = flops_per_token(mc) * self.tokens_per_step
        self.peak, self.peak_source = reference_peak(mc.dtype)
        self.bar = None  # opened at the first step read, so that compilation is not counted in its rate and ETA
        self.tokens_per_sec = None

    def _advance(self, step: int, loss: float) -> None:
        if self.bar is None:
            self.bar = tracking.progress_bar(self.t.steps, "train", "step", initial=step - 1,
                                             enabled=self.trainer.tracker.writing)
        postfix = {"loss": f"{loss:.4f}"}
        if self.tokens_per_sec is not None:
            postfix["tok/s"] = f"{self.tokens_per_sec:,.0f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, step: int, metrics: dict) -> None:
        if step % self.t.log_every and step != self.t.steps:
            self._advance(step, metrics["loss"])
            return
        steps, elapsed = self.trainer.throughput.take()
        tokens_per_sec = self.tokens_per_step * steps / elapsed
        mfu = self.flops_per_step * steps / elapsed / self.peak
        skipped = self.trainer.policy.skipped
        self.tokens_per_sec = tokens_per_sec  # shown on the bar until the next log line
        self._advance(step, metrics["loss"])
        # What the objective reports besides its loss (DPO's rewards, ...)
        extra = {k: v for k, v in metrics.items() if k not in _STEP_METRICS}
        self.trainer.tracker.write(step, loss=metrics["loss"], lr=metrics["lr"], grad_norm=metrics["grad_norm"],
                                   param_norm=metrics["param_norm"], tokens_per_sec=round(tokens_per_sec, 1),
                                   mfu=round(mfu, 4), **extra, **({"skipped_steps": skipped} if skipped else {}))
        shown = "".join(f" | {k.replace('_', ' ')} {v:.4g}" for k, v in extra.items() if k not in _NOT_SHOWN)
        tracking.echo(f"step {step:>6}/{self.t.steps} | loss {metrics['loss']:.4f}{shown} | lr {metrics['lr']:.2e} | "
                      f"{tokens_per_sec:,.0f} tok/s | MFU {100 * mfu:.1f}% of {self.peak_source}")


class Evaluation:
    """val_loss on a fixed set of validation batches (with several sources also val_loss_<source>, and val_loss
    weighing the sources as training does), the train.eval_tasks scores, and with checkpoint.keep_best the
    checkpoint of the lowest val_loss."""

    def __init__(self, trainer):
        self.trainer = trainer
        t, inputs = trainer.cfg.train, trainer.inputs
        processes = dict(process_index=jax.process_index(), process_count=jax.process_count())
        if inputs.rows:  # post-training rows: the held-out examples in order
            self.val_sets = {name: eval_rows(columns, t.batch_size, t.eval_batches, **processes)
                             for name, columns in inputs.val.items()}
        else:
            self.val_sets = {name: eval_batches(shards, trainer.model_config.block_size, t.batch_size,
                                                t.eval_batches, seed=t.seed + 1, **processes)
                             for name, shards in inputs.val.items()}
        self.source_weight = dict(zip(inputs.train, trainer.loader.weights))

    def __call__(self, info: StepInfo) -> dict:
        trainer, step = self.trainer, info.step
        if not self.val_sets and not trainer.eval_tasks:
            return {}
        program = trainer.program
        per_source = {}  # source -> {metric: mean over its batches}
        for name, batches in self.val_sets.items():
            values = [{k: float(distributed.fetch(v)) for k, v in
                       program.eval_step(info.state.params, program.to_device(b)).items()} for b in batches]
            # an objective that counts what its mean is over (tokens, pairs) is averaged by those counts
            weight = next((k for k in _WEIGHTS if k in values[0]), None)
            w = np.array([v[weight] for v in values]) if weight else np.ones(len(values))
            per_source[name] = {k: float(np.sum([v[k] for v in values] * w) / max(w.sum(), 1e-9))
                                for k in values[0] if k != weight}
        result = {}
        if per_source:
            total = sum(self.source_weight.get(n, 0.0) for n in per_source) or 1.0
            metrics = sorted(next(iter(per_source.values())), key=lambda k: k != "loss")  # loss first
            for metric in metrics:  # loss, and what else the objective reports
                result[f"val_{metric}"] = sum(self.source_weight.get(n, 0.0) * m[metric]
                                              for n, m in per_source.items()) / total
        if len(per_source) > 1:
            result.update({f"val_loss_{name}": m["loss"] for name, m in per_source.items()})
        result.update(self.task_scores(info))
        trainer.tracker.write(step, **result)
        if "val_loss" in result:
            trainer.last_val_loss = (step, result["val_loss"])
        best = (step > 0 and math.isfinite(result.get("val_loss", math.nan))
                and trainer.checkpoints.save_if_best(step, result["val_loss"], info.state, trainer.cfg.to_dict(),
                                                     trainer.checkpoint_meta(step)))
        shown = " | ".join(f"{_shown_name(k)} {v:.4f}" for k, v in result.items()
                           if k.removeprefix("val_") not in _NOT_SHOWN)
        tracking.echo(f"step {step:>6} | {shown}{' (best so far: saved)' if best else ''}")
        return result

    def task_scores(self, info: StepInfo) -> dict:
        """train.eval_tasks on the current weights: {<task>_<metric>: value}."""
        trainer, scores = self.trainer, {}
        run = Run(trainer.cfg, trainer.model_config, trainer.inputs.tokenizer, trainer.program.setup.graphdef,
                  info.state.params, info.step, trainer.run_dir.path)
        for task in trainer.eval_tasks:
            metrics = evaluate_task(run, task.task, data=task.path, limit=task.limit)["metrics"]
            scores.update({f"{task.name}_{k}": v for k, v in metrics.items() if isinstance(v, float)})
        return scores


def _shown_name(key: str) -> str:
    """val_loss -> 'val loss', val_loss_web -> 'web', val_reward_accuracy -> 'val reward accuracy'."""
    if key.startswith("val_loss_"):
        return key.removeprefix("val_loss_")
    return key.replace("_", " ")


def print_sample(info: StepInfo) -> None:
    """train.sample_tokens tokens continuing train.sample_prompt. Every process decodes (the parameters are spread
    over all of them); process 0 prints."""
    trainer, t = info.trainer, info.trainer.cfg.train
    if not t.sample_tokens:
        return
    tokenizer = trainer.inputs.tokenizer
    if trainer.inputs.rows:
        return _print_reply(info)
    sample = generate(trainer.program.setup.graphdef, info.state.params, prompt_ids(tokenizer, t.sample_prompt),
                      block_size=trainer.model_config.block_size, max_new_tokens=t.sample_tokens, seed=t.seed,
                      vocab_size=tokenizer.vocab_size)  # a padded table's extra ids decode to nothing
    if trainer.main_process:
        print("-" * 80 + "\n" + t.sample_prompt + tokenizer.decode(sample[0].tolist()) + "\n" + "-" * 80)


def _print_reply(info: StepInfo) -> None:
    """Post-training: the model's reply to the first held-out prompt (or the first training one), up to the end
    of its turn, after the prompt as the model saw it."""
    trainer, t = info.trainer, info.trainer.cfg.train
    tokenizer, inputs = trainer.inputs.tokenizer, trainer.inputs
    columns = next(iter((inputs.val or inputs.train).values()))
    prefix = "chosen_" if "chosen_tokens" in columns else ""
    tokens, mask = columns[prefix + "tokens"][0], columns[prefix + "loss_mask"][0]
    first = int(np.argmax(mask)) if mask.any() else int((columns[prefix + "segment_ids"][0] > 0).sum()) - 1
    prompt = tokens[:first + 1]  # the reply's first token is the target at `first`
    end = ChatTemplate.choose("", tokenizer).end_of_turn(tokenizer) if tokenizer.chat_template else None
    reply = generate_batch(trainer.program.setup.graphdef, info.state.params, [prompt],
                           block_size=trainer.model_config.block_size, max_new_tokens=t.sample_tokens, seed=t.seed,
                           temperature=0.0, stop_ids=[end] if end is not None else None,
                           vocab_size=tokenizer.vocab_size)[0]
    if trainer.main_process:
        print("-" * 80 + "\n" + tokenizer.decode(prompt.tolist()) + tokenizer.decode(reply.tolist()) + "\n" +
              "-" * 80)


def print_next_steps(info: StepInfo) -> None:
    """Where the run is, its checkpoint, and the commands that come next."""
    trainer = info.trainer
    if not trainer.main_process:
        return
    run, saved = shlex.quote(str(trainer.run_dir.path)), trainer.last_checkpoint
    where = f"checkpoint {trainer.run_dir.checkpoints / str(saved)}" if saved is not None else "no checkpoint saved"
    sample = "--chat --prompt 'Hello'" if trainer.inputs.tokenizer.chat_template else "--prompt 'Once'"
    print(f"run {trainer.run_dir.path}: step {info.step}, {where}\n"
          f"  sample:   python -m gptjax.sample --workdir {run} {sample}\n"
          f"  evaluate: python -m gptjax.evaluate --workdir {run} --task val_loss\n"
          f"  continue: the same command with a larger --config.train.steps (now {trainer.cfg.train.steps})")
