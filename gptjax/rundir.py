"""The run directory: one object that knows where each of a run's files lives, and writes them safely.

    RUN/config.yaml          the resolved config (`--config RUN/config.yaml` repeats the run)
    RUN/tokenizer/           the tokenizer; its presence marks RUN/data as complete
    RUN/data/{train,val}/    token shards of a text source (prepared shard sources are read where they are)
    RUN/checkpoints/<step>/  orbax checkpoints; RUN/checkpoints_best/ the lowest validation loss (keep_best)
    RUN/metrics.jsonl        one JSON object per logged step; RUN/tensorboard/ the same as event files
    RUN/eval/<task>.json     results of `gptjax evaluate`

docs/run_directory.md describes each file. Every module that reads or writes one of them asks RunDir for its path.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from gptjax.errors import GptjaxError


class RunDirError(GptjaxError):
    """The run directory cannot be written (read-only, full disk)."""

    exit_code = 1


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

    def eval_result(self, task: str, name: str | None = None) -> Path:
        return self.eval / (f"{task}-{name}.json" if name else f"{task}.json")

    def has_prepared_data(self) -> bool:
        """A text source's shards were written completely (the tokenizer is saved last)."""
        return self.tokenizer.exists() and (self.data / "train").exists()

    def ensure_writable(self) -> None:
        """Fails at start, before any work, when the run directory cannot be written."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise RunDirError(f"cannot write to the run directory {self.path}: {e.strerror or e}; choose a "
                              "writable --workdir") from None


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
