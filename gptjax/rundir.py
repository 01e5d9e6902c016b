"""The run directory: one object that knows where each of a run's files lives, and writes them safely.

    RUN/config.yaml          the resolved config (`--config RUN/config.yaml` repeats the run)
    RUN/tokenizer/           the tokenizer; its presence marks RUN/data as complete
    RUN/data/{train,val}/    token shards of a text source (prepared shard sources are read where they are)
    RUN/checkpoints/<step>/  orbax checkpoints; RUN/checkpoints_best/ the lowest validation loss (keep_best)
    RUN/metrics.jsonl        one JSON object per logged step; RUN/tensorboard/ the same as event files
    RUN/eval/<task>-*.json   results of `gptjax evaluate`, named after their data, options and step
    RUN/.lock                held (flock) by the one trainer writing the run; names it
    RUN/logs/train.log       what the libraries log (orbax, absl, jax), kept off the terminal

A directory is a run once config.yaml is in it: the trainer writes it only after every check has passed and the
starting state is built, so a start that was refused leaves no run behind and can simply be tried again.

docs/run_directory.md describes each file. Every module that reads or writes one of them asks RunDir for its path.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import fcntl
import os
import shutil
import socket
import sys
from pathlib import Path

from gptjax.errors import GptjaxError


class RunDirError(GptjaxError):
    """The run directory cannot be written (read-only, full disk)."""

    exit_code = 1


class UnwritableError(GptjaxError):
    """An output location that cannot be written, found at start (exit 2, like any unusable input)."""


class RunInUseError(GptjaxError):
    """Another trainer holds the run directory."""


@dataclasses.dataclass(frozen=True)
class RunDir:
    path: Path

    def __init__(self, path: str | os.PathLike):
        object.__setattr__(self, "path", Path(path))

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    config = property(lambda self: self.path / "config.yaml")
    tokenizer = property(lambda self: self.path / "tokenizer")
    data = property(lambda self: self.path / "data")
    checkpoints = property(lambda self: self.path / "checkpoints")
    checkpoints_best = property(lambda self: self.path / "checkpoints_best")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    tensorboard = property(lambda self: self.path / "tensorboard")
    wandb_id = property(lambda self: self.path / "wandb_run_id")  # kept so a resumed run continues its W&B run
    eval = property(lambda self: self.path / "eval")
    data_source = property(lambda self: self.path / "data" / "source.json")  # what RUN/data was tokenized from
    lock = property(lambda self: self.path / ".lock")
    logs = property(lambda self: self.path / "logs")  # library logs (orbax, absl, jax), kept off the terminal

    def started(self) -> bool:
        """A run was started here (its config.yaml, written once every check passed), not a refused start."""
        return self.config.exists()

    def eval_result(self, task: str, name: str | None = None) -> Path:
        return self.eval / (f"{task}-{name}.json" if name else f"{task}.json")

    def has_prepared_data(self) -> bool:
        """A text source's shards were written completely (the tokenizer is saved last)."""
        return self.tokenizer.exists() and (self.data / "train").exists()

    def entries(self) -> set[str]:
        return {p.name for p in self.path.iterdir()} if self.path.is_dir() else set()

    def ensure_writable(self) -> None:
        """Fails at start, before any work, when the run directory cannot be written."""
        check_writable(self.path, "the run directory", "choose a writable --workdir")


def check_writable(directory: Path, what: str, advice: str) -> None:
    """Fails before any work when `directory` (made if it is missing) cannot be written: a bad output location
    is the input's fault (exit 2), found before the work it would have lost."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UnwritableError(f"cannot write to {what} {directory}: {e.strerror or e}; {advice}") from None


def write_atomically(path: Path, text: str) -> None:
    """A file is either its old or its new content, never half of one (a full disk, a kill)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"cannot write {path}: {e.strerror or e}; free disk space or choose a writable "
                          "--workdir") from None


class WriterLock:
    """The one trainer of a run directory: an exclusive flock on RUN/.lock, which records its holder. The kernel
    releases it when the process dies however it dies, so a killed run never blocks its restart. Readers (sample,
    evaluate) take no lock."""

    def __init__(self, run_dir: RunDir):
        self.run_dir, self.fd = run_dir, None

    def acquire(self) -> None:
        path = self.run_dir.lock
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise UnwritableError(f"cannot write to the run directory {self.run_dir}: {e.strerror or e}; "
                                      "choose a writable --workdir") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_quietly(path) or "a process that has not named itself yet"
                os.close(fd)
                raise RunInUseError(f"{self.run_dir} is being trained by another process ({holder}); wait for it "
                                    "to finish or stop it, or use another --workdir (gptjax sample and evaluate "
                                    "can read the run meanwhile)") from None
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                print(f"warning: {self.run_dir} is on a file system without locks ({e.strerror}); nothing stops a "
                      "second trainer from using it at the same time", file=sys.stderr)
            try:  # the file may have been removed by a start that was abandoned just before we locked it
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        holder = f"pid {os.getpid()} on {socket.gethostname()}, since {since}: {' '.join(sys.argv) or 'python'}"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only its holder goes unnamed
            pass

    def release(self, remove: bool = False) -> None:
        if self.fd is None:
            return
        if remove:
            self.run_dir.lock.unlink(missing_ok=True)
        os.close(self.fd)  # closing releases the flock
        self.fd = None


def _read_quietly(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def remove_new_entries(run_dir: RunDir, before: set[str]) -> None:
    """Undoes a start that was refused: removes what it added to the run directory (but the lock, which its
    holder removes as it lets go)."""
    for name in run_dir.entries() - before - {run_dir.lock.name}:
        target = run_dir.path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def remove_created(run_dir: RunDir, created: Path | None) -> None:
    """Removes the run directory, and the parents made for it, if a refused start made them and they are empty."""
    if created is None:
        return
    path = run_dir.path
    while True:
        try:
            path.rmdir()  # only if empty: another process may have put something there meanwhile
        except OSError:
            return
        if path == created:
            return
        path = path.parent


def first_missing(path: Path) -> Path | None:
    """The outermost directory of `path` that does not exist yet (what mkdir -p would create first), or None."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path
