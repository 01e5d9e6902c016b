"""Where a run's numbers go: RUN/metrics.jsonl (always), TensorBoard event files in RUN/tensorboard/, and
optionally Weights & Biases; and whether to draw live progress bars.

    tracker = Tracker(run_dir, resume_step=start, config=cfg)   # on the one process that writes
    tracker.write(step, loss=..., lr=...)                       # a training line
    tracker.write(step, val_loss=...)                           # an evaluation line
    tracker.close()

    tensorboard --logdir RUN/tensorboard
"""

from __future__ import annotations

import importlib.util
import json
import logging
import logging.handlers
import math
import sys
import time
from pathlib import Path

from gptjax.config import ConfigError, to_yaml
from gptjax.rundir import RunDir, write_atomically


# ----------------------------------------------------------------------------------------------------------------
# Progress bars


def interactive(stream=None) -> bool:
    """The one place that decides whether to draw progress bars: only when someone watches stderr. In CI, log
    files and nohup, carriage-return redraws would fill the log with bar fragments, so plain lines are printed."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def progress_bar(total: int | None, desc: str, unit: str, *, initial: int = 0, leave: bool = True,
                 enabled: bool = True):
    """A tqdm bar on stderr; when stderr is not a terminal (or enabled is False), a disabled one, which draws
    nothing and costs nothing, so callers update it either way."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=sys.stderr,
                dynamic_ncols=True, disable=not (enabled and interactive()))


def echo(text: str, file=None) -> None:
    """print() that leaves any live progress bar intact (tqdm clears it, prints, and redraws it)."""
    from tqdm import tqdm

    file = sys.stdout if file is None else file
    tqdm.write(text, file=file)
    file.flush()


# ----------------------------------------------------------------------------------------------------------------
# Metrics


# ----------------------------------------------------------------------------------------------------------------
# Library logs


# The libraries whose log records would otherwise reach the terminal: orbax logs through absl, and a failed
# checkpoint write there is hundreds of lines, tracebacks included, before gptjax's own one-line account of it.
LIBRARY_LOGGERS = ("absl", "orbax", "jax", "tensorstore", "asyncio", "datatrove")


class _LazyFileHandler(logging.FileHandler):
    """A file handler that makes its file (and directory) at the first record, so a quiet run writes nothing."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(path, delay=True)

    def _open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def handleError(self, record):  # a full disk: the log is lost, and says nothing on the terminal either
        pass


class LibraryLogs:
    """While in the block, library log records (LIBRARY_LOGGERS) stay off the terminal: held in memory until
    attach(path) names their file (a run directory is only written once it is claimed), then written there.

        with LibraryLogs() as logs:
            ...                      # checks: nothing is written anywhere yet
            logs.attach(RUN / "logs" / "train.log")
    """

    def __init__(self):
        self.held = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
        self.file: _LazyFileHandler | None = None
        self._saved = []

    def _route(self, handler: logging.Handler) -> None:
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).handlers = [handler]

    def __enter__(self) -> "LibraryLogs":
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.handlers, logger.propagate))
            logger.propagate = False
        self._route(self.held)
        return self

    def attach(self, path: Path) -> None:
        self.file = _LazyFileHandler(Path(path))
        self.file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
        self.held.setTarget(self.file)
        self.held.flush()
        self._route(self.file)

    def __exit__(self, *exc) -> None:
        for logger, handlers, propagate in self._saved:
            logger.handlers, logger.propagate = handlers, propagate
        self.held.close()  # never attached (a start refused before its run directory was claimed): dropped
        if self.file is not None:
            self.file.close()


def check_wandb(cfg) -> None:
    """log.wandb=true needs the wandb package: fail at start, not after the data is prepared."""
    if cfg.log.wandb and importlib.util.find_spec("wandb") is None:
        raise ConfigError("log.wandb=true needs Weights & Biases, which is not installed: `pip install wandb` "
                          "(and `wandb login`), or set log.wandb=false")


def tag(key: str, training: bool) -> str:
    """metrics.jsonl key -> TensorBoard / W&B name: train/loss, eval/val_loss, eval/hellaswag_acc, ..."""
    return f"{'train' if training else 'eval'}/{key}"


class Tracker:
    """Fans each metrics line out to metrics.jsonl, TensorBoard and (log.wandb) W&B.

    Resuming from step N (N > 0) forgets what was logged after step N (written before a crash, and about to be
    trained again); starting at step 0 forgets everything logged before, since the step-0 evaluation runs again.
    So metrics.jsonl always reads as one run, and TensorBoard (by a purge_step marker) shows no step twice.
    A Tracker with run_dir=None (the processes other than the first) writes nothing."""

    def __init__(self, run_dir: str | Path | None, resume_step: int = 0, config=None):
        self.file = self.tensorboard = self.wandb = None
        if run_dir is None:
            return
        run_dir = RunDir(run_dir)
        self._truncate(run_dir.metrics, resume_step)
        self.file = open(run_dir.metrics, "a")
        log = config.log if config is not None else None
        if log is None or log.tensorboard:
            from tensorboardX import SummaryWriter

            if not resume_step:  # starting over: an earlier attempt's curves would only be hidden, as empty charts
                for stale in run_dir.tensorboard.glob("events.out.tfevents.*"):
                    stale.unlink()
            # purge_step: events of earlier files at steps >= it are hidden (TensorBoard reads the marker). The
            # suffix keeps two writers started within one second (a quick restart) from sharing a file name, and
            # sorts their files in the order they were started, which is the order TensorBoard reads them in.
            self.tensorboard = SummaryWriter(str(run_dir.tensorboard),
                                             purge_step=resume_step + 1 if resume_step else None,
                                             flush_secs=30, filename_suffix=f".{time.time_ns()}")
            if config is not None:  # the resolved config beside the curves (TensorBoard's Text tab), as YAML
                self.tensorboard.add_text("config", "```\n" + to_yaml(config) + "```", global_step=resume_step)
        if log is not None and log.wandb:
            self.wandb = self._start_wandb(run_dir, config, resume_step)

    @staticmethod
    def _truncate(path: Path, resume_step: int) -> None:
        if not path.exists():
            return
        def step(line: str) -> float:
            try:
                return json.loads(line).get("step", 0)
            except (ValueError, AttributeError):
                return math.inf  # a line cut short by a crash: dropped
        kept = [line for line in path.read_text().splitlines() if resume_step and step(line) <= resume_step]
        write_atomically(path, "".join(line + "\n" for line in kept))

    @staticmethod
    def _start_wandb(run_dir: RunDir, config, resume_step: int):
        import wandb

        id_path = run_dir.wandb_id
        # Starting over (step 0) is a new W&B run: the old one's steps could not be written again.
        run_id = id_path.read_text().strip() if resume_step and id_path.exists() else wandb.util.generate_id()
        id_path.write_text(run_id + "\n")
        log = config.log
        # resume="allow": the same W&B run continues after a restart. W&B ignores steps lower than the last one it
        # saw, so steps redone after a crash keep their first values there (metrics.jsonl and TensorBoard show
        # the redone ones).
        return wandb.init(project=log.wandb_project, entity=log.wandb_entity or None,
                          name=log.wandb_name or run_dir.path.name, id=run_id, resume="allow", dir=str(run_dir),
                          config=config.to_dict())

    @property
    def writing(self) -> bool:
        return self.file is not None

    def write(self, step: int, **scalars) -> None:
        """One metrics line. A line with `loss` is a training line (train/...), any other an evaluation line
        (eval/...). Flushed at once, so a crash loses nothing and TensorBoard shows it live."""
        if self.file is None:
            return
        self.file.write(json.dumps({"step": step, **scalars}) + "\n")
        self.file.flush()
        training = "loss" in scalars
        numbers = {tag(k, training): float(v) for k, v in scalars.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.tensorboard is not None:
            for name, value in numbers.items():
                self.tensorboard.add_scalar(name, value, global_step=step)
            self.tensorboard.flush()
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)

    def close(self) -> None:
        for closing in (self.file, self.tensorboard):
            if closing is not None:
                closing.close()
        if self.wandb is not None:
            self.wandb.finish()
        self.file = self.tensorboard = self.wandb = None
