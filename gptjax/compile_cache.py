"""JAX's persistent compilation cache: a program compiled once (a train step, an eval step) is read back from disk
the next time a process builds it, so a resumed run or a re-run of a recipe starts its first step without
compiling again.

    directory = use_compile_cache(cfg.train.compile_cache)   # 'auto', a directory, or '' (off)

'auto' is $GPTJAX_CACHE_DIR when set, else $XDG_CACHE_HOME/gptjax/xla (default ~/.cache/gptjax/xla): one cache per
user, shared by every run, since a program's cache key is its full content (shapes, shardings, the compiler's
version and flags), never a name. JAX only stores programs that took longer than a second to compile.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import jax
from jax._src import compilation_cache

from gptjax.config import ConfigError

OFF = ("", "off", "none", "false")


def default_directory() -> Path:
    if os.environ.get("GPTJAX_CACHE_DIR"):
        return Path(os.environ["GPTJAX_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gptjax" / "xla"


def use_compile_cache(setting: str) -> Path | None:
    """Points JAX's persistent cache at the directory `setting` names, or turns it off; returns the directory in
    use (None: off). A directory named explicitly that cannot be written is a ConfigError; the 'auto' one that
    cannot is a warning, and the run goes on without a cache (it only saves time)."""
    setting = str(setting).strip()
    directory = None if setting.lower() in OFF else default_directory() if setting == "auto" else Path(setting)
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=directory).close()
        except OSError as e:
            if setting != "auto":
                raise ConfigError(f"train.compile_cache={setting!r} cannot be written ({e.strerror or e}); name "
                                  "a writable directory, or turn the cache off with train.compile_cache=''") from None
            print(f"warning: the compilation cache is off: {directory} cannot be written ({e.strerror or e}); "
                  "set train.compile_cache to a writable directory", file=sys.stderr)
            directory = None
    value = str(directory) if directory is not None else None
    if jax.config.jax_compilation_cache_dir != value or jax.config.jax_enable_compilation_cache != bool(value):
        jax.config.update("jax_enable_compilation_cache", bool(value))
        jax.config.update("jax_compilation_cache_dir", value)
        compilation_cache.reset_cache()  # the cache opens its directory once: let it open the new one
    return directory
