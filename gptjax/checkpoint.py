"""Checkpoints in the run directory, with orbax: RUN/checkpoints/<step>/{state, config, meta}.

    state   the whole TrainState (parameters, optimizer state, step), as tensorstore arrays (no pickle)
    config  the resolved run config, JSON
    meta    JSON: checkpoint format version, gptjax version, step, the dropout seed, the data loader's position,
            and a checksum of every array of `state`

The checksums are computed on the devices when a checkpoint is saved and again after it is restored: a flipped
bit or an overwritten block anywhere in an array's files makes the restored array disagree with its checksum, and
the checkpoint is then treated like any unreadable one (moved aside, the one before it used, a warning naming the
array). Each is a position-weighted sum of the array's 32-bit words modulo 2**32; the weights are odd, so any
change confined to one word always shows, and any other with probability 1 - 2**-32.

The data position and the dropout randomness are functions of (seed, step), so the step restores them exactly;
`meta` records them so a resumed run can check that the data it reads is the data the checkpoint was trained on.

orbax writes each checkpoint under a temporary name (<step>.orbax-checkpoint-tmp) and renames it when complete, so
a save cut short is never taken for a checkpoint; it is reported and removed when the run is next opened. A
checkpoint that cannot be read is skipped, with a warning, in favour of the one before it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from gptjax import __version__, distributed
from gptjax.errors import GptjaxError
from gptjax.rundir import RunDir

FORMAT_VERSION = 2  # raise when the layout of `state` changes; older checkpoints are then refused by name
READABLE_VERSIONS = (1, 2)  # 1: the same layout, without checksums (restored with a warning that it is unverified)
TMP_MARKER = ".orbax-checkpoint-tmp"


class CheckpointError(GptjaxError, RuntimeError):
    """A checkpoint cannot be written or read; the message says which, why, and what is still intact."""

    exit_code = 1  # the run could not go on; its earlier checkpoints are intact


# Why a write fails on a full or refusing disk: these are named in the message whichever file failed first.
_WRITE_ERRNOS = (errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO)


def _reason(error: Exception) -> str:
    """The operating system's words for a failed write. Tensorstore wraps them in a long message, and how it says
    them depends on which of a checkpoint's files failed first: with an os_error_code, or as the bare strerror."""
    text = str(error)
    os_error = re.search(r"([A-Z][A-Za-z ]+?) \[os_error_code='?(\d+)'?\]", text)
    if os_error:
        return f"{os_error.group(1)}, errno {os_error.group(2)}"
    for code in _WRITE_ERRNOS:
        if os.strerror(code) in text:
            return f"{os.strerror(code)}, errno {code}"
    text = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return text[:300]


def _ignore_closed_loop_callbacks() -> None:
    """When an asynchronous write fails, its remaining I/O callbacks find orbax's event loop closed and would each
    print a traceback (as 'unraisable' exceptions) that says nothing the error does not. Installed once."""
    previous = sys.unraisablehook
    if getattr(previous, "gptjax_filter", False):
        return

    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value)):
            previous(unraisable)

    hook.gptjax_filter = True
    sys.unraisablehook = hook


# ----------------------------------------------------------------------------------------------------------------
# Checksums


def _words(x: jax.Array) -> jax.Array:
    """An array's bits as uint32 words (8-byte elements: two words each; narrower ones widened)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    if size == 8:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)  # a trailing axis of 2
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _array_checksum(x: jax.Array) -> jax.Array:
    # No reshape: the linear index is built from per-axis iotas, so a sharded array is summed where it lies.
    words = _words(x)
    index = jnp.zeros(words.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(words.ndim)):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, words.shape, axis) * jnp.uint32(stride % 2**32)
        stride *= words.shape[axis]
    return jnp.sum(words * (index * jnp.uint32(2) + jnp.uint32(1)), dtype=jnp.uint32)


_checksums_on_device = jax.jit(lambda leaves: [_array_checksum(x) for x in leaves])


def checksums(tree) -> dict[str, int]:
    """{array's path in the tree: its checksum}, computed on the devices that hold it (every process must call
    this in a multi-host run)."""
    paths, leaves = zip(*jax.tree_util.tree_leaves_with_path(tree)) if jax.tree.leaves(tree) else ((), ())
    sums = _checksums_on_device(list(leaves))
    return {jax.tree_util.keystr(path): int(np.asarray(distributed.fetch(s))) for path, s in zip(paths, sums)}


def _verify(tree, saved: dict[str, int]) -> None:
    """Raises ValueError naming the first restored array that differs from its checksum at save time."""
    for name, value in checksums(tree).items():
        if name in saved and saved[name] != value:
            raise ValueError(f"array state{name} does not match its checksum (the checkpoint's files were changed "
                             "or damaged after it was written)")
        if name not in saved:
            raise ValueError(f"array state{name} has no checksum in the checkpoint's meta")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _manager(directory: Path, keep: int, create: bool) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create, enable_async_checkpointing=True,
                                           cleanup_tmp_directories=create)
    try:
        return ocp.CheckpointManager(directory, options=options)
    except OSError as e:
        raise CheckpointError(f"cannot use {directory} for checkpoints: {e.strerror or e}; choose a --workdir "
                              "on a writable disk") from None


class Checkpoints:
    """The run's checkpoints: the last `keep` saved, and with keep_best the one with the lowest
    validation loss in RUN/checkpoints_best. read_only opens an existing run without creating or cleaning."""

    def __init__(self, run_dir: str | Path, *, keep: int = 2, keep_best: bool = False, read_only: bool = False):
        _ignore_closed_loop_callbacks()
        run_dir = RunDir(Path(run_dir).absolute())
        self.directory = run_dir.checkpoints
        self.read_only = read_only
        if not read_only:
            self._report_unfinished(self.directory)
        self.manager = _manager(self.directory, keep, create=not read_only)
        self.best_directory = best_dir = run_dir.checkpoints_best
        self.best = _manager(best_dir, 1, create=True) if keep_best and not read_only else (
            _manager(best_dir, 1, create=False) if best_dir.is_dir() else None)
        self.best_loss = self._saved_best_loss()
        self._saving: tuple[int, Path] | None = None  # the save in flight, to name it if it fails

    # ------------------------------------------------------------------------------------------------------------
    # Saving

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, config: dict, meta: dict) -> None:
        """Starts an asynchronous save (training continues while it is written); a failed write, reported by this
        call or the next, raises CheckpointError and leaves the earlier checkpoints as they were."""
        self._save(self.manager, self.directory, step, state, config, meta)

    def save_if_best(self, step: int, val_loss: float, state, config: dict, meta: dict) -> bool:
        """With keep_best: saves into checkpoints_best when val_loss is the lowest so far."""
        if self.best is None or (self.best_loss is not None and val_loss >= self.best_loss):
            return False
        self._save(self.best, self.best.directory, step, state, config, {**meta, "val_loss": val_loss})
        self.best_loss = val_loss
        return True

    def _save(self, manager, directory, step, state, config, meta) -> None:
        meta = {"format_version": FORMAT_VERSION, "gptjax_version": __version__, "step": step, **meta,
                "checksums": checksums(state)}
        self._settle(manager)
        self._saving = (step, Path(directory))
        try:
            manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                       config=ocp.args.JsonSave(config),
                                                       meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as e:  # noqa: BLE001  (a full disk surfaces as whatever the storage layer raises)
            raise self._write_error(manager, e) from None

    def _settle(self, manager) -> None:
        try:
            manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise self._write_error(manager, e) from None

    def _write_error(self, manager, error: Exception) -> CheckpointError:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # its abandoned write tasks, reported again at exit
        step, directory = self._saving or ("?", manager.directory)
        # The directories on disk, not the manager's list: it already counts the failed step and forgets the
        # oldest one, which is only deleted once a save succeeds.
        kept = ", ".join(map(str, sorted(int(p.name) for p in Path(directory).iterdir() if p.name.isdigit())))
        return CheckpointError(f"could not write the checkpoint of step {step} to {directory} ({_reason(error)}); the "
                               f"earlier checkpoints are intact (steps: {kept or 'none'}); free disk space or choose a "
                               "writable --workdir, then run the same command to resume")

    def wait(self) -> None:
        """Blocks until the save in flight is on disk (raising CheckpointError if it failed)."""
        self._settle(self.manager)
        if self.best is not None:
            self._settle(self.best)

    def close(self) -> None:
        """Waits for saves in flight, then releases the managers; call before the process exits."""
        try:
            self.wait()
        finally:
            self.manager.close()
            if self.best is not None:
                self.best.close()

    # ------------------------------------------------------------------------------------------------------------
    # Restoring

    def restore(self, target, step: int | None = None, *, best: bool = False):
        """(state, meta) of checkpoint `step` (default: the newest readable one), restored into the structure,
        shapes, dtypes and shardings of `target` (arrays or jax.ShapeDtypeStructs with .sharding): a checkpoint
        saved on one mesh is read onto any other. An unreadable newest checkpoint is skipped with a warning."""
        manager = self.best if best else self.manager
        if manager is None or manager.latest_step() is None:
            raise CheckpointError(f"{self.best_directory if best else self.directory} holds no checkpoint")
        if step is not None and step not in manager.all_steps():
            steps = ", ".join(map(str, sorted(manager.all_steps())))
            raise CheckpointError(f"{manager.directory} has no checkpoint of step {step} (it has steps: {steps}); "
                                  "pick one of those, or leave the step out for the newest")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        candidates = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
        errors = []
        for candidate in candidates:
            path = Path(manager.directory) / str(candidate)
            meta = self._read_meta(path)
            if meta is not None and meta.get("format_version") not in READABLE_VERSIONS:
                raise CheckpointError(
                    f"checkpoint {path} has format version {meta.get('format_version')} (gptjax "
                    f"{meta.get('gptjax_version', '?')}); this gptjax {__version__} reads versions "
                    f"{', '.join(map(str, READABLE_VERSIONS))}; use the gptjax that wrote it, or start a new --workdir")
            try:
                if meta is None:
                    raise ValueError("its meta item is missing or unreadable")
                restored = manager.restore(candidate, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract)))
                if "checksums" in meta:
                    _verify(restored.state, meta["checksums"])
                else:
                    _warn(f"checkpoint {path} carries no checksums (written by gptjax "
                          f"{meta.get('gptjax_version', '?')}); its arrays are used unverified")
                return restored.state, meta
            except Exception as e:  # noqa: BLE001  (corrupt files surface as assorted storage errors)
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if "structures do not match" in reason:  # a readable checkpoint of another state layout
                    raise CheckpointError(
                        f"checkpoint {path} holds a differently structured train state than this config builds "
                        "(a changed model or optimizer layout); run with the saved config (--config "
                        f"{self.directory.parent}/config.yaml) or use a new --workdir") from None
                errors.append(f"{candidate}: {reason}")
                if step is None and candidate != candidates[-1]:
                    _warn(f"checkpoint {path} could not be read ({reason[:300]}); using the one before it")
                    if not self.read_only and jax.process_index() == 0:  # kept for inspection, out of the way
                        path.rename(path.with_name(f"{candidate}.unreadable"))
                        manager.reload()
        if step is not None:  # the one asked for: say which others there are
            others = ", ".join(str(s) for s in sorted(manager.all_steps()) if s != step) or "none"
            raise CheckpointError(f"checkpoint {step} in {manager.directory} cannot be read ({errors[0][:300]}); "
                                  f"other steps there: {others}; pick one of those, or leave the step out for the "
                                  "newest readable one")
        raise CheckpointError(f"no readable checkpoint in {manager.directory} ({'; '.join(errors)[:600]}); "
                              "if the model changed since it was saved, use a new --workdir")

    @staticmethod
    def _read_meta(path: Path) -> dict | None:
        meta_dir = path / "meta"
        files = [meta_dir / "metadata"] if (meta_dir / "metadata").exists() else list(meta_dir.glob("*"))
        for file in files:
            try:
                return json.loads(file.read_text())
            except (OSError, ValueError):
                continue
        if not meta_dir.exists() and (path / "state").exists():
            return {"format_version": 0}  # written before checkpoints carried a meta item
        return None

    def _saved_best_loss(self) -> float | None:
        if self.best is None or self.best.latest_step() is None:
            return None
        meta = self._read_meta(Path(self.best.directory) / str(self.best.latest_step()))
        return None if meta is None else meta.get("val_loss")

    @staticmethod
    def _report_unfinished(directory: Path) -> None:
        if directory.is_dir():
            for tmp in sorted(directory.glob(f"*{TMP_MARKER}*")):
                _warn(f"{tmp} is a checkpoint whose save never finished (the process stopped while writing it); "
                      "it is ignored and removed")
