"""Train a GPT.

    python -m gptjax.train                                   # the built-in job: a small model on Python's stdlib
    python -m gptjax.train --config configs/shakespeare_char_cpu.py --workdir runs/baby
    python -m gptjax.train --config configs/gpt2_small.py --config.train.batch_size=8

Running it again on the same --workdir continues from the latest checkpoint, exactly; SIGTERM or Ctrl-C saves a
checkpoint and exits 0. The run directory holds config.yaml (the resolved config: `--config RUN/config.yaml`
repeats the run), tokenizer/, data/ (token shards), checkpoints/, metrics.jsonl (one JSON object per line:
`loss` on training lines, `val_loss` on evaluation lines) and the same numbers as TensorBoard event files in
tensorboard/ (log.wandb=true: also Weights & Biases). docs/run_directory.md has the details. On a terminal a
progress bar shows the steps, ETA, tokens/s and loss; elsewhere (logs, CI) a line every train.log_every steps.
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m gptjax.train`: host memory settings before JAX loads (see gptjax.hostmem)
    from gptjax.hostmem import reexec_with_tunables

    reexec_with_tunables()

import argparse  # noqa: E402
import math
import signal
import sys
import threading
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from gptjax import distributed, sharding, tracking
from gptjax.checkpoint import CheckpointError, Checkpoints
from gptjax.config import ConfigError, load_config, to_yaml
from gptjax.data import DataError
from gptjax.data.loader import WindowLoader, eval_batches
from gptjax.flops import flops_per_token, reference_peak
from gptjax.hostmem import advice as hostmem_advice, reexec_with_tunables
from gptjax.model import ModelConfig, count_params
from gptjax.rundir import (TrainingError, check_resumable, check_vocabulary, ensure_writable, init_params,
                           parse_eval_tasks, prepare_data, write_atomically)
from gptjax.sample import generate, prompt_ids
from gptjax.state import Run, setup
from gptjax.step import make_eval_step, make_train_step
from gptjax.tokenizer import TokenizerError


class StopRequest:
    """SIGTERM or SIGINT (a scheduler's preemption, Ctrl-C): the run finishes its step, saves a checkpoint and
    exits 0; a second signal stops at once. With several processes, JAX's preemption service (which watches
    SIGTERM on every host) makes all of them stop after the same step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: str | None = None
        self.multi_process = jax.process_count() > 1
        self._previous = {}
        if not self.multi_process and threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:  # asked twice: stop now
            self.restore()
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        print(f"\n{self.received}: finishing this step and saving a checkpoint (send it again to stop at once)",
              file=sys.stderr, flush=True)

    def requested(self, step: int) -> bool:
        if self.multi_process:
            from jax.experimental import multihost_utils

            if multihost_utils.reached_preemption_sync_point(step):
                self.received = "SIGTERM"
        return self.received is not None

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


# ----------------------------------------------------------------------------------------------------------------
# Training


def train(cfg: ml_collections.ConfigDict, run_dir: str | Path) -> dict:
    """Trains (or continues) the run in run_dir; returns the final metrics (with `stopped_at` if a signal stopped
    it early)."""
    run_dir = Path(run_dir)
    distributed.initialize(cfg.distributed)
    main_process = distributed.is_main()
    t = cfg.train
    tracking.check_wandb(cfg)
    mesh = sharding.make_mesh(cfg.mesh)  # checked before anything is written
    sharding.check_batch_split(t.batch_size, t.grad_accum, mesh)
    if main_process:  # one writer for the run directory's shared files; the others wait for it
        check_resumable(run_dir, cfg)
        ensure_writable(run_dir)
        if not (run_dir / "config.yaml").exists():  # a resumed run's copy is replaced once its checkpoint loads
            write_atomically(run_dir / "config.yaml", to_yaml(cfg))
        data = prepare_data(cfg, run_dir)
    distributed.barrier("data prepared")
    if not main_process:
        data = prepare_data(cfg, run_dir, write=False)
    tokenizer, train_sources, val_sources, weights = data
    model_config = ModelConfig.from_config(cfg.model, tokenizer.vocab_size)
    processes = dict(process_index=jax.process_index(), process_count=jax.process_count())
    loader = WindowLoader(train_sources, model_config.block_size, t.batch_size, seed=t.seed, weights=weights,
                          **processes)
    check_vocabulary(loader, val_sources, model_config, tokenizer)
    eval_tasks = parse_eval_tasks(t.eval_tasks)
    built = setup(cfg, model_config, mesh)

    n_params = count_params(model_config)
    print(f"model: {n_params / 1e6:.2f}M parameters ({model_config.num_layers} layers, {model_config.num_heads} heads, "
          f"{model_config.d_model} wide, block {model_config.block_size}, vocab {model_config.vocab_size}); "
          f"devices: {jax.devices()[0].platform} x{jax.device_count()}")
    state_bytes = sharding.bytes_per_device(built.abstract_state, built.shardings)
    print(f"mesh: {dict(built.mesh.shape)}; parameters + optimizer state per device: {state_bytes / 2**20:,.1f} MiB")
    if jax.default_backend() == "cpu" and main_process and (tip := hostmem_advice()):
        print(tip)

    checkpoints = Checkpoints(run_dir, keep=cfg.checkpoint.keep, every=cfg.checkpoint.every,
                              keep_best=cfg.checkpoint.keep_best)
    resuming = checkpoints.latest_step() is not None  # a step-0 checkpoint (an imported model) counts too
    start = 0
    try:
        if resuming:
            state, meta = checkpoints.restore(built.target())
            start = int(state.step)
            print(f"resumed from {checkpoints.directory}/{start}")
            if meta.get("data") and meta["data"] != loader.state(start):
                print(f"warning: the data differs from when step {start} was saved ({meta['data']} then, "
                      f"{loader.state(start)} now); training goes on, but not as an uninterrupted run would",
                      file=sys.stderr)
            if cfg.checkpoint.init_from:
                print(f"note: checkpoint.init_from is only used when a run starts; continuing from step {start}")
        else:
            state = built.init(t.seed)
            if cfg.checkpoint.init_from:
                state = state.replace(params=init_params(cfg.checkpoint.init_from, built, tokenizer))
    except BaseException:
        checkpoints.close()
        raise
    if main_process and resuming:
        write_atomically(run_dir / "config.yaml", to_yaml(cfg))  # the run's settings from here on
    if start >= t.steps:
        print(f"{run_dir} already trained {start} steps (train.steps={t.steps}); raise train.steps to continue")

    batch_sharding = sharding.batch_sharding(built.mesh)
    train_step = make_train_step(built.graphdef, built.tx, built.schedule, grad_accum=t.grad_accum, seed=t.seed,
                                 state_shardings=built.shardings, batch_sharding=batch_sharding,
                                 skip_nonfinite=t.nonfinite == "skip")
    eval_step = make_eval_step(built.graphdef, built.shardings.params, batch_sharding)
    if len(train_sources) > 1 and main_process:
        for row in loader.describe(t.steps):
            print(f"data: {row['source']}: weight {row['weight']:.2f}, {row['tokens']:,} tokens, "
                  f"{row['epochs']:.2f} epochs over {t.steps} steps")
    source_weight = dict(zip(train_sources, loader.weights))
    val_sets = {name: eval_batches(shards, model_config.block_size, t.batch_size, t.eval_batches, seed=t.seed + 1,
                                   **processes)
                for name, shards in val_sources.items()}

    def to_device(rows):  # this process's rows of the global batch -> the global, sharded batch
        return jax.make_array_from_process_local_data(batch_sharding, rows)

    def meta(step: int) -> dict:  # what a checkpoint records besides the arrays (see gptjax.checkpoint)
        return {"seed": t.seed, "dropout_key": "fold_in(key(train.seed), step)", "data": loader.state(step),
                "init_from": cfg.checkpoint.init_from}

    tokens_per_step = t.batch_size * model_config.block_size
    flops_per_step = flops_per_token(model_config) * tokens_per_step
    peak, peak_source = reference_peak(model_config.dtype)
    log = tracking.Tracker(run_dir if main_process else None, resume_step=start, config=cfg)
    progress = Progress(log, t, tokens_per_step, flops_per_step, peak, peak_source, checkpoints)
    cfg_dict = cfg.to_dict()

    def evaluate(step: int) -> dict:
        """val_loss (with several sources also val_loss_<source>, val_loss weighing sources as training does), and
        the train.eval_tasks scores."""
        if not val_sets and not eval_tasks:
            return {}
        began = time.perf_counter()
        losses = {name: float(np.mean([distributed.fetch(eval_step(state.params, to_device(b))) for b in batches]))
                  for name, batches in val_sets.items()}
        progress.exclude(time.perf_counter() - began)
        result = {}
        if losses:
            total = sum(source_weight.get(n, 0.0) for n in losses) or 1.0
            result["val_loss"] = sum(source_weight.get(n, 0.0) * loss for n, loss in losses.items()) / total
        if len(losses) > 1:
            result.update({f"val_loss_{name}": loss for name, loss in losses.items()})
        result.update(run_eval_tasks(step))
        log.write(step, **result)
        best = (step > 0 and math.isfinite(result.get("val_loss", math.nan))
                and checkpoints.save_if_best(step, result["val_loss"], state, cfg_dict, meta(step)))
        shown = " | ".join(f"{k.replace('_', ' ') if k == 'val_loss' else k.removeprefix('val_loss_')} {v:.4f}"
                           for k, v in result.items())
        tracking.echo(f"step {step:>6} | {shown}{' (best so far: saved)' if best else ''}")
        return result

    def run_eval_tasks(step: int) -> dict:
        """train.eval_tasks on the current weights: {<task>_<metric>: value}."""
        from gptjax.evaluate import evaluate_task

        began, scores = time.perf_counter(), {}
        run = Run(cfg, model_config, tokenizer, built.graphdef, state.params, step)
        for name, task, path, limit in eval_tasks:
            metrics = evaluate_task(run, task, data=path, limit=limit)["metrics"]
            scores.update({f"{name}_{k}": v for k, v in metrics.items() if isinstance(v, float)})
        progress.exclude(time.perf_counter() - began)
        return scores

    final: dict = {}
    if start == 0 and t.eval_every:
        evaluate(0)
    pending = None  # (step, metrics still on the device): read one step late, so the host never stalls the device
    stop = StopRequest()
    try:
        batches = loader.iterate(start)
        if start < t.steps:
            began = time.perf_counter()
            train_step = train_step.lower(state, to_device(loader.batch(start))).compile()
            print(f"compiled the train step in {time.perf_counter() - began:.1f}s")
        progress.exclude(time.perf_counter() - progress.interval_start)
        for step in range(start + 1, t.steps + 1):
            state, metrics = train_step(state, to_device(next(batches)))
            if pending is not None:
                final = progress.record(*pending)
            pending = (step, metrics)
            stopping = stop.requested(step)
            if checkpoints.due(step) or step == t.steps or stopping:
                final, pending = progress.record(*pending), None  # never save a state not seen to be finite
                checkpoints.save(step, state, cfg_dict, meta(step))
            if stopping:
                checkpoints.wait()
                print(f"stopped by {stop.received} after step {step}; checkpoint saved in "
                      f"{checkpoints.directory}/{step}; run the same command to resume")
                final["stopped_at"] = step
                break
            if (t.eval_every and step % t.eval_every == 0) or step == t.steps:
                final.update(evaluate(step))
        if pending is not None:
            final = progress.record(*pending)
    finally:
        stop.restore()
        try:
            checkpoints.close()
        finally:
            progress.close()
            log.close()

    if t.sample_tokens and "stopped_at" not in final:  # every process decodes (the parameters are spread over all)
        sample = generate(built.graphdef, state.params, prompt_ids(tokenizer, t.sample_prompt),
                          block_size=model_config.block_size, max_new_tokens=t.sample_tokens, seed=t.seed,
                          vocab_size=tokenizer.vocab_size)  # a padded table's extra ids decode to nothing
        if main_process:
            print("-" * 80 + "\n" + t.sample_prompt + tokenizer.decode(sample[0].tolist()) + "\n" + "-" * 80)
    return final


class Progress:
    """Reads each step's metrics, stops on a non-finite loss, and logs every train.log_every steps; on a terminal
    (see gptjax.tracking.interactive) it also draws a progress bar, on the process that writes the metrics."""

    def __init__(self, log, t, tokens_per_step, flops_per_step, peak, peak_source, checkpoints):
        self.log, self.t, self.checkpoints = log, t, checkpoints
        self.tokens_per_step, self.flops_per_step = tokens_per_step, flops_per_step
        self.peak, self.peak_source = peak, peak_source
        self.interval_start, self.interval_steps = time.perf_counter(), 0
        self.skipped = self.skipped_in_a_row = 0
        self.bar = None  # opened at the first step read, so that compilation is not counted in its rate and ETA
        self.tokens_per_sec = None

    def _advance(self, step: int, loss: float) -> None:
        if self.bar is None:
            self.bar = tracking.progress_bar(self.t.steps, "train", "step", initial=step - 1,
                                             enabled=self.log.writing)
        postfix = {"loss": f"{loss:.4f}"}
        if self.tokens_per_sec is not None:
            postfix["tok/s"] = f"{self.tokens_per_sec:,.0f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _nonfinite_message(self, step: int, metrics: dict, note: str = "") -> str:
        kept = self.checkpoints.latest_step()
        what = next(k for k in ("loss", "grad_norm", "param_norm") if not math.isfinite(metrics[k]))
        return (f"{what.replace('_', ' ')} became {metrics[what]} at step {step}{note}; "
                + (f"the checkpoint of step {kept} is kept" if kept else "no checkpoint was saved")
                + "; lower optim.lr or raise optim.warmup_steps (or set train.nonfinite=skip to skip such steps)")

    def exclude(self, seconds: float) -> None:
        """Leaves time spent outside training steps (compilation, evaluation) out of the throughput."""
        self.interval_start += seconds

    def record(self, step: int, metrics) -> dict:
        metrics = {k: float(distributed.fetch(v)) for k, v in metrics.items()}
        self.interval_steps += 1
        finite = all(math.isfinite(metrics[k]) for k in ("loss", "grad_norm", "param_norm"))
        if metrics.get("skipped"):  # train.nonfinite='skip': the step left the state as it was
            self.skipped += 1
            self.skipped_in_a_row += 1
            tracking.echo(f"step {step}: loss {metrics['loss']}, grad norm {metrics['grad_norm']}, param norm "
                          f"{metrics['param_norm']}: update skipped ({self.skipped} so far)", file=sys.stderr)
            if self.skipped_in_a_row > self.t.max_consecutive_skips:
                raise TrainingError(self._nonfinite_message(
                    step, metrics, f", {self.skipped_in_a_row} skipped steps in a row (train.max_consecutive_skips="
                                   f"{self.t.max_consecutive_skips})"))
        elif not finite:
            raise TrainingError(self._nonfinite_message(step, metrics))
        else:
            self.skipped_in_a_row = 0
        if step % self.t.log_every and step != self.t.steps:
            self._advance(step, metrics["loss"])
            return metrics
        elapsed = time.perf_counter() - self.interval_start
        tokens_per_sec = self.tokens_per_step * self.interval_steps / elapsed
        mfu = self.flops_per_step * self.interval_steps / elapsed / self.peak
        extra = {"skipped_steps": self.skipped} if self.skipped else {}
        self.tokens_per_sec = tokens_per_sec  # shown on the bar until the next log line
        self._advance(step, metrics["loss"])
        self.log.write(step, loss=metrics["loss"], lr=metrics["lr"], grad_norm=metrics["grad_norm"],
                       param_norm=metrics["param_norm"], tokens_per_sec=round(tokens_per_sec, 1), mfu=round(mfu, 4), **extra)
        tracking.echo(f"step {step:>6}/{self.t.steps} | loss {metrics['loss']:.4f} | lr {metrics['lr']:.2e} | "
                      f"{tokens_per_sec:,.0f} tok/s | MFU {100 * mfu:.1f}% of {self.peak_source}")
        self.interval_start, self.interval_steps = time.perf_counter(), 0
        return metrics


# ----------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None, prog: str = "python -m gptjax.train", doc: str = __doc__, *,
               add_arguments=None, workdir_help: str = "run directory (default: runs/<config name>)"
               ) -> tuple[argparse.Namespace, list[str]]:
    """--config FILE, --workdir DIR and any number of --config.SECTION.KEY=VALUE (or --config.SECTION.KEY VALUE);
    add_arguments(parser) adds a tool's own options (gptjax.bench's)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                     epilog="Any config key can be set with --config.SECTION.KEY=VALUE.")
    parser.add_argument("--config", help="a config file (.py with get_config(), or .yaml); default: the built-in job")
    parser.add_argument("--workdir", help=workdir_help)
    if add_arguments is not None:
        add_arguments(parser)
    args, rest = parser.parse_known_args(argv)
    overrides, i = [], 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith("--config."):
            parser.error(f"unrecognized argument {item!r}; config keys are set as --config.SECTION.KEY=VALUE")
        item = item[len("--config."):]
        if "=" not in item:  # --config.a.b VALUE
            if i + 1 >= len(rest):
                parser.error(f"--config.{item} needs a value")
            item, i = f"{item}={rest[i + 1]}", i + 1
        overrides.append(item)
        i += 1
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the real command line (a console script): see gptjax.hostmem
        reexec_with_tunables()
    args, overrides = parse_args(argv)
    try:
        cfg = load_config(args.config, overrides)
        name = Path(args.config).stem if args.config else "default"
        workdir = Path(args.workdir or Path("runs") / name)
        train(cfg, workdir)
    except (ConfigError, DataError, TokenizerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (TrainingError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
