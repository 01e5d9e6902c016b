"""The training loop, and everything that runs around it as hooks.

    trainer = Trainer(cfg, "runs/baby")
    trainer.add_hook(lambda info: print(info.step), every=100)    # anything to do between steps
    metrics = trainer.run()     # continues from the newest checkpoint; returns the final metrics

Trainer.run() goes through the same phases every time:
    prepare   join the other processes, check the mesh, the batch split and the run directory (before anything is
              written), prepare the data (process 0 writes it, the others read it), build the loader
    build     the model's structure, optimizer and shardings (Setup), and the jitted train and eval steps
    state     restore the newest readable checkpoint, or a fresh state (with checkpoint.init_from's weights)
    loop      one step at a time; each step's metrics are read one step late, so the host never stalls the
              device, and checked by the NonFinitePolicy; then the hooks that are due run

What the loop does besides stepping is a Hook: saving checkpoints (every checkpoint.every steps, at the end and
when a signal stops the run), evaluation (validation loss per source, train.eval_tasks, the best checkpoint),
logging (metrics.jsonl, TensorBoard, the progress bar), and the sample printed at the end. The loss is an
objective (gptjax.step.next_token_loss by default): another objective trains with the same loop.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from gptjax import distributed, objectives, sharding, tracking
from gptjax.attention import check_packing
from gptjax.checkpoint import Checkpoints
from gptjax.compile_cache import use_compile_cache
from gptjax.config import (ConfigError, EvalTask, parse_eval_tasks, read_saved, resume_changes, settings_warnings,
                           to_yaml, uses_segments)
from gptjax.data.loader import WindowLoader
from gptjax.data.packing import PackedLoader, eval_rows
from gptjax.errors import GptjaxError, Interrupted
from gptjax.hooks import Evaluation, Hook, ProgressLog, StepInfo, print_next_steps, print_sample
from gptjax.hostmem import advice as hostmem_advice
from gptjax.init_from import Source, adopt_architecture, weights_from
from gptjax.inputs import Inputs, check_vocabulary, prepare_data
from gptjax.model import ModelConfig, count_params
from gptjax.rundir import (RunDir, RunDirError, WriterLock, first_missing, remove_created, remove_new_entries,
                           write_atomically)
from gptjax.state import Setup, setup
from gptjax.step import Objective, TrainState, make_eval_step, make_train_step, next_token_loss


class TrainingError(GptjaxError, RuntimeError):
    """Training cannot go on (a non-finite loss, ...); the message says what happened and what is kept."""

    exit_code = 1


# ----------------------------------------------------------------------------------------------------------------
# The compiled pieces of a run, shared with gptjax.bench


@dataclasses.dataclass
class Program:
    setup: Setup
    train_step: Callable  # (state, batch) -> (state, metrics), jitted with the state donated
    eval_step: Callable  # (params, batch) -> mean loss
    batch_sharding: jax.sharding.NamedSharding

    def to_device(self, rows):
        """This process's rows of the global batch -> the global batch, split over the mesh."""
        return jax.make_array_from_process_local_data(self.batch_sharding, rows)


def build_program(cfg: ml_collections.ConfigDict, model_config: ModelConfig, mesh: jax.sharding.Mesh,
                  objective: Objective | None = None) -> Program:
    """objective: default, the one cfg.data calls for (see Trainer). train.z_loss is the training objective's
    (evaluation scores the objective without it)."""
    objective = objective or objectives.for_data(cfg.data, cfg.dpo.beta) or next_token_loss
    built = setup(cfg, model_config, mesh)
    batch_sharding = sharding.batch_sharding(built.mesh)
    t = cfg.train
    train_objective = objective
    if t.z_loss:
        if "z_loss" not in inspect.signature(objective).parameters:
            raise ConfigError(f"train.z_loss={t.z_loss:g}: the objective {getattr(objective, '__name__', objective)} "
                              "takes no z_loss; set train.z_loss=0, or give the objective a z_loss argument")
        train_objective = functools.partial(objective, z_loss=t.z_loss)
    train_step = make_train_step(built.graphdef, built.tx, built.schedule, grad_accum=t.grad_accum, seed=t.seed,
                                 state_shardings=built.shardings, batch_sharding=batch_sharding,
                                 skip_nonfinite=t.nonfinite == "skip", objective=train_objective)
    eval_step = make_eval_step(built.graphdef, built.shardings.params, batch_sharding, objective=objective)
    return Program(built, train_step, eval_step, batch_sharding)


# ----------------------------------------------------------------------------------------------------------------
# Small pieces of the loop


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
            raise Interrupted(f"{signal.Signals(signum).name} received a second time: stopped at once, without "
                              "saving; run the same command to resume from the newest checkpoint", signum)
        self.received = signal.Signals(signum).name
        print(f"\n{self.received}: finishing this step and saving a checkpoint (send it again to stop at once)",
              file=sys.stderr, flush=True)

    def requested(self, step: int) -> bool:
        if self.multi_process and multihost_utils.reached_preemption_sync_point(step):
            self.received = "SIGTERM"
        return self.received is not None

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


class NonFinitePolicy:
    """train.nonfinite: 'stop' ends the run at a step whose loss, gradient norm or parameter norm is not finite;
    'skip' (the step left the state as it was) goes on, until more than max_consecutive_skips in a row."""

    WATCHED = ("loss", "grad_norm", "param_norm")

    def __init__(self, mode: str, max_consecutive_skips: int):
        self.mode, self.max_consecutive_skips = mode, max_consecutive_skips
        self.skipped = self.skipped_in_a_row = 0

    def check(self, step: int, metrics: Mapping[str, float], kept: int | None) -> None:
        """Raises TrainingError when the run must stop; kept: the newest checkpoint, named in the message."""
        if metrics.get("skipped"):
            self.skipped += 1
            self.skipped_in_a_row += 1
            tracking.echo(f"step {step}: loss {metrics['loss']}, grad norm {metrics['grad_norm']}, param norm "
                          f"{metrics['param_norm']}: update skipped ({self.skipped} so far)", file=sys.stderr)
            if self.skipped_in_a_row > self.max_consecutive_skips:
                raise TrainingError(self._message(
                    step, metrics, kept, f", {self.skipped_in_a_row} skipped steps in a row "
                                         f"(train.max_consecutive_skips={self.max_consecutive_skips})"))
        elif not all(math.isfinite(metrics[k]) for k in self.WATCHED):
            raise TrainingError(self._message(step, metrics, kept))
        else:
            self.skipped_in_a_row = 0

    def _message(self, step: int, metrics: Mapping[str, float], kept: int | None, note: str = "") -> str:
        what = next(k for k in self.WATCHED if not math.isfinite(metrics[k]))
        return (f"{what.replace('_', ' ')} became {metrics[what]} at step {step}{note}; "
                + (f"the checkpoint of step {kept} is kept" if kept else "no checkpoint was saved")
                + "; lower optim.lr or raise optim.warmup_steps (or set train.nonfinite=skip to skip such steps)")


class Throughput:
    """Training steps and the seconds they took since the last reading, with time spent outside the steps
    (compiling, evaluating) left out."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self.start, self.steps = time.perf_counter(), 0

    def exclude(self, seconds: float) -> None:
        self.start += seconds

    def take(self) -> tuple[int, float]:
        steps, seconds = self.steps, time.perf_counter() - self.start
        self.restart()
        return steps, seconds


# ----------------------------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    def __init__(self, cfg: ml_collections.ConfigDict, run_dir: str | Path, *,
                 objective: Objective | None = None, default_hooks: bool = True):
        """objective: default, the one the data calls for (next-token loss; SFT's on chat data, DPO's on
        preferences: gptjax.objectives). default_hooks=False leaves out checkpointing, evaluation, logging and the
        final sample (a bare loop: tests, experiments)."""
        self.cfg, self.run_dir, self.objective = cfg, RunDir(run_dir), objective
        self.default_hooks = default_hooks
        self.hooks: list[Hook] = []
        self.metric_hooks: list[Callable[[int, dict], None]] = []  # every step's metrics, once read
        self.finish_hooks: list[Callable[[StepInfo], None]] = []  # once training reached train.steps
        self.final: dict = {}
        self.throughput = Throughput()
        self.library_logs: tracking.LibraryLogs | None = None  # set while run() runs
        self.lock: WriterLock | None = None
        self.peer_watch: distributed.PeerWatch | None = None

    def add_hook(self, fn: Callable[[StepInfo], Mapping[str, float] | None] | Hook, every: int = 0,
                 **when) -> Hook:
        """Runs fn after every `every` steps (and at the end; see Hook for at_start, at_stop, ...); what it returns
        joins the final metrics. Hooks run in the order they were added, after the default ones."""
        hook = fn if isinstance(fn, Hook) else Hook(fn, every, **when)
        self.hooks.append(hook)
        return hook

    # -- phases ---------------------------------------------------------------------------------------------------

    def prepare(self) -> Inputs:
        """Checks everything that can be checked before writing, then prepares the data and the loader."""
        cfg, t = self.cfg, self.cfg.train
        distributed.initialize(cfg.distributed)
        self.main_process = distributed.is_main()
        tracking.check_wandb(cfg)
        self.mesh = sharding.make_mesh(cfg.mesh)  # checked before anything is written
        sharding.check_batch_split(t.batch_size, t.grad_accum, self.mesh)
        use_compile_cache(t.compile_cache)
        self.eval_tasks: list[EvalTask] = parse_eval_tasks(t.eval_tasks)
        base_tokenizer = None
        if cfg.checkpoint.init_from:  # the architecture follows the source's (keys the config leaves alone)
            # A started run already holds what it took: its own config.yaml is the source for a resume.
            started = self.run_dir.started()
            source = Source(str(self.run_dir.path), self.run_dir.path, None, "run") if started else \
                Source.find(cfg.checkpoint.init_from)
            adopted = adopt_architecture(cfg, source)
            if adopted and self.main_process and not started:
                print("model from checkpoint.init_from: " + ", ".join(f"{k}={v}" for k, v in adopted.items()))
            if cfg.data.source in ("chat", "preferences"):
                base_tokenizer = source.tokenizer()
        if uses_segments(cfg):  # before anything is written
            kernel = check_packing(cfg.model.attention, cfg.model.dtype)
            if kernel != cfg.model.attention:
                print(f"attention: {kernel} (model.attention={cfg.model.attention} would pick cuDNN, which does "
                      "not keep packed examples apart)")
                cfg.model.attention = kernel
        for warning in settings_warnings(cfg) if self.main_process else []:
            print(f"warning: {warning}", file=sys.stderr)
        if self.main_process:  # one writer for the run directory's shared files; the others wait for it
            self._check_resumable()
            self._claim()
            inputs = prepare_data(cfg, self.run_dir, base_tokenizer=base_tokenizer)
        distributed.barrier("data prepared")
        if not self.main_process:
            inputs = prepare_data(cfg, self.run_dir, write=False, base_tokenizer=base_tokenizer)
            if self.library_logs is not None:  # the run directory is process 0's; each other one adds a log
                self.library_logs.attach(self.run_dir.logs / f"train-{jax.process_index()}.log")
        self.inputs = inputs
        if cfg.data.document_mask and self.objective is None:
            if inputs.tokenizer.eot_id is None:
                raise ConfigError(f"data.document_mask needs a tokenizer with an end-of-text token to find document "
                                  f"boundaries; the {inputs.tokenizer.describe()} has none (use data.tokenizer=gpt2 "
                                  "or another BPE)")
            self.objective = functools.partial(next_token_loss, eot_id=inputs.tokenizer.eot_id)
        self.model_config = ModelConfig.from_config(cfg.model, inputs.tokenizer.vocab_size)
        processes = dict(process_index=jax.process_index(), process_count=jax.process_count())
        if inputs.rows:  # post-training: whole examples in rows, not windows of a token stream
            self.loader = PackedLoader(inputs.train, t.batch_size, seed=t.seed, **processes)
        else:
            self.loader = WindowLoader(inputs.train, self.model_config.block_size, t.batch_size, seed=t.seed,
                                       weights=inputs.weights, **processes)
        check_vocabulary(self.loader, inputs.val, self.model_config.vocab_size, inputs.tokenizer)
        for shards in [] if inputs.rows else inputs.val.values():  # a validation split too short for one window:
            WindowLoader(shards, self.model_config.block_size, t.batch_size, seed=t.seed)  # refused now
        return inputs

    def _resume_advice(self) -> str:
        steps = sorted(int(p.name) for p in self.run_dir.checkpoints.glob("*") if p.name.isdigit()) \
            if self.run_dir.checkpoints.is_dir() else []
        where = f"from {self.run_dir.checkpoints}/{steps[-1]}" if steps else "from the start (no checkpoint yet)"
        return f"restart every process with the same command to resume {where}"

    def _check_resumable(self) -> None:
        """A run directory may be continued with a changed schedule, mesh or kernel, but not with a different
        model or different data."""
        if not self.run_dir.started():
            return  # empty, or what a refused start left: start afresh
        changed = resume_changes(read_saved(self.run_dir.config), self.cfg, str(self.run_dir))
        if changed:
            print(f"continuing {self.run_dir} with changed settings: {'; '.join(changed)}")

    def _claim(self) -> None:
        """Makes the run directory this process's alone (RunInUseError if another trainer has it), noting what was
        there, so that a start refused later can be undone."""
        self._created = first_missing(self.run_dir.path)
        self.run_dir.ensure_writable()
        self._before = self.run_dir.entries()
        lock = WriterLock(self.run_dir)
        lock.acquire()
        self.lock = lock
        if self.library_logs is not None:
            self.library_logs.attach(self.run_dir.logs / "train.log")

    def _mark_started(self) -> None:
        """Every check passed and the starting state is built: from here on the directory is a run (config.yaml
        is the mark; a resumed run's copy becomes the settings it goes on with)."""
        if self.main_process:
            write_atomically(self.run_dir.config, to_yaml(self.cfg))
        self.started = True

    def _abandon(self) -> None:
        """A start refused before _mark_started: what it wrote is removed, so trying again starts afresh."""
        if self.lock is None:
            return
        remove_new_entries(self.run_dir, self._before)
        self.lock.release(remove=self.run_dir.lock.name not in self._before)
        remove_created(self.run_dir, self._created)

    def build(self) -> Program:
        self.program = build_program(self.cfg, self.model_config, self.mesh, self.objective)
        built, mc = self.program.setup, self.model_config
        print(f"model: {count_params(mc) / 1e6:.2f}M parameters ({mc.num_layers} layers, {mc.num_heads} heads, "
              f"{mc.d_model} wide, block {mc.block_size}, vocab {mc.vocab_size}); "
              f"devices: {jax.devices()[0].platform} x{jax.device_count()}")
        print(f"mesh: {' x '.join(f'{axis} {n}' for axis, n in built.mesh.shape.items())}; parameters + optimizer "
              "state per device: "
              f"{built.bytes_per_device() / 2**20:,.1f} MiB")
        # Not in a notebook: the tip means restarting the kernel with an environment variable, which someone
        # exploring there has not asked for (gptjax.bench and docs/benchmarks.md say it to those timing steps).
        if jax.default_backend() == "cpu" and self.main_process and "ipykernel" not in sys.modules and \
                (tip := hostmem_advice()):
            print(tip)
        return self.program

    def initial_state(self) -> tuple[TrainState, int]:
        """The newest readable checkpoint's state, or a fresh one (with checkpoint.init_from's weights)."""
        built, t, init_from = self.program.setup, self.cfg.train, self.cfg.checkpoint.init_from
        if self.checkpoints.latest_step() is not None:  # a step-0 checkpoint (an imported model) counts too
            state, meta = self.checkpoints.restore(built.target())
            start = int(state.step)
            print(f"resumed from {self.checkpoints.directory}/{start}")
            if meta.get("data") and meta["data"] != self.loader.state(start):
                print(f"warning: the data differs from when step {start} was saved ({meta['data']} then, "
                      f"{self.loader.state(start)} now); training goes on, but not as an uninterrupted run would",
                      file=sys.stderr)
            if init_from:
                print(f"note: checkpoint.init_from is only used when a run starts; continuing from step {start}")
            return state, start
        state = built.init(t.seed)
        if init_from:
            state = state.replace(params=weights_from(Source.find(init_from), built, self.inputs.tokenizer))
        return state, 0

    def reference_scores(self, params) -> None:
        """DPO: the reference model's log-probabilities of every pair's responses, added to the loader's and the
        validation rows. The reference is the model the run starts from (its step-0 parameters); the scores are
        computed once and kept in RUN/data/reference.npz, tied to the rows they score, so a resume reuses them."""
        file = self.run_dir.data / "reference.npz"
        # The rows' record (RUN/data/source.json) names what they were made from: scores of other rows are stale.
        key = hashlib.sha256(self.run_dir.data_source.read_bytes()).hexdigest()
        splits = {"train": self.loader.columns, **{f"val_{n}": v for n, v in self.inputs.val.items()}}
        # Saved scores are reused only by a resumed run, whose reference is by construction the model it started
        # from; a run starting now (params given) scores its own starting model, whatever a file says.
        saved = None if params is not None else _read_reference(file, key, splits)
        if saved is None:
            if params is None:
                raise TrainingError(f"{file} (the DPO reference's scores) is missing or was made for other rows, "
                                    "and a resumed run no longer has the reference model's weights; start a new "
                                    "--workdir from checkpoint.init_from")
            began = time.perf_counter()
            step = objectives.make_logprob_step(self.program.setup.graphdef, self.program.setup.shardings.params,
                                                self.program.batch_sharding)
            saved = {split: self._score(step, params, columns) for split, columns in splits.items()}
            if self.main_process:
                try:
                    np.savez(file, key=np.array(key), **{f"{split}/{k}": v for split, d in saved.items()
                                                        for k, v in d.items()})
                except OSError as e:
                    raise RunDirError(f"cannot write {file}: {e.strerror or e}") from None
                print(f"dpo: the reference's log-probabilities of {len(saved['train']['ref_chosen']):,} training "
                      f"pairs, computed in {time.perf_counter() - began:.1f}s")
        self.loader.add_columns(saved["train"])
        for name in self.inputs.val:
            self.inputs.val[name].update(saved[f"val_{name}"])

    def _score(self, step, params, columns) -> dict[str, np.ndarray]:
        t = self.cfg.train
        count = len(columns["chosen_tokens"])
        batches = eval_rows(columns, t.batch_size, -(-count // t.batch_size), process_index=jax.process_index(),
                            process_count=jax.process_count())
        chosen, rejected = zip(*[(distributed.fetch(c), distributed.fetch(r))
                                 for c, r in (step(params, self.program.to_device(b)) for b in batches)])
        return {"ref_chosen": np.concatenate(chosen)[:count].astype(np.float32),
                "ref_rejected": np.concatenate(rejected)[:count].astype(np.float32)}

    def checkpoint_meta(self, step: int) -> dict:
        """What a checkpoint records besides the arrays (see gptjax.checkpoint)."""
        return {"seed": self.cfg.train.seed, "dropout_key": "fold_in(key(train.seed), step)",
                "data": self.loader.state(step), "init_from": self.cfg.checkpoint.init_from}

    def save(self, info: StepInfo) -> None:
        self.checkpoints.save(info.step, info.state, self.cfg.to_dict(), self.checkpoint_meta(info.step))

    # -- the loop -------------------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Trains (or continues) the run; returns the final metrics (with `stopped_at` if a signal stopped it)."""
        self.lock, self.started = None, False
        self.last_val_loss, self.end_step = None, None  # (step, val_loss) of the latest evaluation; train.target_loss
        self.began = time.perf_counter()
        distributed.initialize(self.cfg.distributed)  # before anything starts JAX's backend
        self.peer_watch = distributed.PeerWatch(self._resume_advice) if jax.process_count() > 1 else None
        error = None
        try:
            with tracking.LibraryLogs() as self.library_logs:
                return self._run()
        except BaseException as e:
            error = e
            if not self.started:
                self._abandon()
            raise
        finally:
            if self.peer_watch is not None:
                self.peer_watch.close(error)
            if self.lock is not None:
                self.lock.release()

    def _run(self) -> dict:
        cfg, t = self.cfg, self.cfg.train
        self.prepare()
        self.build()
        ck = cfg.checkpoint
        self.checkpoints = Checkpoints(self.run_dir.path, keep=ck.keep, keep_best=ck.keep_best)
        try:
            self.state, start = self.initial_state()
            if cfg.data.source == "preferences":
                self.reference_scores(self.state.params if start == 0 else None)
            self._mark_started()
        except BaseException:
            self.checkpoints.close()
            raise
        if start >= t.steps:
            print(f"{self.run_dir} already trained {start} steps (train.steps={t.steps}); raise train.steps to "
                  "continue")
        if len(self.inputs.train) > 1 and self.main_process:
            for row in self.loader.describe(t.steps):
                print(f"data: {row['source']}: weight {row['weight']:.2f}, {row['tokens']:,} tokens, "
                      f"{row['epochs']:.2f} epochs over {t.steps} steps")
        self.tracker = tracking.Tracker(self.run_dir.path if self.main_process else None, resume_step=start,
                                        config=cfg)
        self.policy = NonFinitePolicy(t.nonfinite, t.max_consecutive_skips)
        hooks = (self._default_hooks() if self.default_hooks else []) + self.hooks
        self._listeners = ([ProgressLog(self)] if self.default_hooks else []) + self.metric_hooks
        self.final = {}
        try:
            self._loop(start, hooks)
        finally:
            self.last_checkpoint = self.checkpoints.latest_step()
            try:
                self.checkpoints.close()
            finally:
                for listener in self._listeners:
                    getattr(listener, "close", lambda: None)()
                self.tracker.close()
        if "stopped_at" not in self.final:
            end = self.end_step if self.end_step is not None else max(start, t.steps)
            for fn in ([print_sample, print_next_steps] if self.default_hooks else []) + self.finish_hooks:
                fn(StepInfo(end, self.state, self))
        return self.final

    def _loop(self, start: int, hooks: list[Hook]) -> None:
        t, program = self.cfg.train, self.program
        if start == 0:
            self._run_hooks([h for h in hooks if h.at_start], 0)
        pending = None  # (step, metrics still on the device): read one step late
        stop = StopRequest()
        try:
            batches = self.loader.iterate(start)
            train_step = program.train_step
            if start < t.steps:
                began = time.perf_counter()
                train_step = train_step.lower(self.state, program.to_device(self.loader.batch(start))).compile()
                print(f"compiled the train step in {time.perf_counter() - began:.1f}s")
            self.throughput.restart()
            for step in range(start + 1, t.steps + 1):
                self.state, metrics = train_step(self.state, program.to_device(next(batches)))
                if pending is not None:
                    self._read(*pending)
                pending = (step, metrics)
                stopping = stop.requested(step)
                due = [h for h in hooks if h.due(step, last=step == t.steps, stopping=stopping)]
                if pending is not None and any(h.read_metrics for h in due):
                    self._read(*pending)
                    pending = None
                self._run_hooks(due, step)
                if self._reached_target(step, pending):
                    return
                if stopping:
                    self.checkpoints.wait()
                    saved = self.checkpoints.latest_step() == step
                    tracking.echo(f"stopped by {stop.received} after step {step}; " + (
                        f"checkpoint saved in {self.checkpoints.directory}/{step}; run the same command to resume"
                        if saved else "no checkpoint saved"))
                    self.final["stopped_at"] = step
                    return
            if pending is not None:
                self._read(*pending)
        finally:
            stop.restore()

    def _reached_target(self, step: int, pending) -> bool:
        """train.target_loss: whether this step's evaluation reached it; then the run ends here, as if train.steps
        were this step (a checkpoint of it saved, and metrics.jsonl told the steps, tokens and seconds it took)."""
        target, evaluated = self.cfg.train.target_loss, self.last_val_loss
        if not target or evaluated is None or evaluated[0] != step or not evaluated[1] <= target:
            return False
        if pending is not None:
            self._read(*pending)
        self.checkpoints.wait()
        if self.checkpoints.latest_step() != step:
            self.save(StepInfo(step, self.state, self))
        tokens = step * self.cfg.train.batch_size * self.model_config.block_size
        seconds = time.perf_counter() - self.began
        self.tracker.write(step, target_loss=target, reached_target=evaluated[1], tokens=tokens,
                           seconds=round(seconds, 2))
        tracking.echo(f"reached val loss {evaluated[1]:.4f} <= train.target_loss={target:g} at step {step} "
                      f"({tokens:,} tokens, {seconds:.1f}s since the run started)")
        self.final.update(target_reached_at=step, tokens=tokens, seconds=seconds)
        self.end_step = step
        return True

    def _read(self, step: int, metrics) -> None:
        """A step's metrics as floats: checked, then handed to the metric hooks."""
        metrics = {k: float(distributed.fetch(v)) for k, v in metrics.items()}
        self.throughput.steps += 1
        self.policy.check(step, metrics, self.checkpoints.latest_step())
        for listener in self._listeners:
            listener(step, metrics)
        self.final = metrics

    def _run_hooks(self, hooks: list[Hook], step: int) -> None:
        for hook in hooks:
            began = time.perf_counter()
            result = hook.fn(StepInfo(step, self.state, self))
            if result:
                self.final.update(result)
            if not hook.counted:
                self.throughput.exclude(time.perf_counter() - began)

    def _default_hooks(self) -> list[Hook]:
        """Checkpoints (before evaluation, as a crash in evaluation must not lose the step), then evaluation;
        ProgressLog reads every step's metrics and print_sample runs at the finish."""
        cfg, t = self.cfg, self.cfg.train
        return [Hook(self.save, every=cfg.checkpoint.every, at_stop=True, read_metrics=True, counted=True),
                Hook(Evaluation(self), every=t.eval_every, at_start=bool(t.eval_every))]


def _read_reference(file: Path, key: str, splits: dict) -> dict | None:
    """Saved reference scores for these rows (by their record's hash and their counts), or None."""
    try:
        with np.load(file) as z:
            if str(z["key"]) != key:
                return None
            saved = {}
            for name in z.files:
                if name != "key":
                    split, column = name.split("/", 1)
                    saved.setdefault(split, {})[column] = z[name]
    except (OSError, ValueError, KeyError):
        return None
    if set(saved) != set(splits) or any(len(saved[s]["ref_chosen"]) != len(c["chosen_tokens"])
                                        for s, c in splits.items()):
        return None
    return saved


def train(cfg: ml_collections.ConfigDict, run_dir: str | Path) -> dict:
    """Trains (or continues) the run in run_dir with the default hooks; returns the final metrics."""
    return Trainer(cfg, run_dir).run()
