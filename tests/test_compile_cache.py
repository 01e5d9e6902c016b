"""The persistent compilation cache: where it goes, what happens when it cannot, and that a second start of the
same run compiles nothing."""

import os
import subprocess
import sys

import jax
import pytest

from conftest import REPO
from gptjax.compile_cache import default_directory, use_compile_cache
from gptjax.config import ConfigError


@pytest.fixture(autouse=True)
def restore_jax_cache():
    before = jax.config.jax_compilation_cache_dir
    yield
    use_compile_cache(before or "")


def test_auto_is_the_user_cache_unless_gptjax_cache_dir_says_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("GPTJAX_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_directory() == tmp_path / "xdg" / "gptjax" / "xla"
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "mine"))
    assert use_compile_cache("auto") == tmp_path / "mine" and (tmp_path / "mine").is_dir()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    assert use_compile_cache(str(tmp_path / "there")) == tmp_path / "there"
    assert use_compile_cache("") is None and jax.config.jax_compilation_cache_dir is None


def test_a_cache_that_cannot_be_written(monkeypatch, capsys):
    with pytest.raises(ConfigError, match=r"train.compile_cache='/sys/gptjax-cache' cannot be written .*"
                                          r"train.compile_cache=''"):
        use_compile_cache("/sys/gptjax-cache")  # asked for by name: refused before the run starts
    monkeypatch.setenv("GPTJAX_CACHE_DIR", "/sys/gptjax-cache")
    assert use_compile_cache("auto") is None  # the default: the run goes on without it
    assert "warning: the compilation cache is off: /sys/gptjax-cache cannot be written" in capsys.readouterr().err


def test_a_second_start_of_the_same_run_reads_the_compiled_step(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "GPTJAX_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    args = ["--config.data.max_chars=20000", "--config.model.num_layers=1", "--config.model.d_model=32",
            "--config.model.num_heads=2", "--config.model.block_size=32", "--config.train.steps=2",
            "--config.train.sample_tokens=0", "--config.train.eval_batches=1"]

    def train(workdir):
        done = subprocess.run([sys.executable, "-m", "gptjax.train", "--workdir", str(tmp_path / workdir), *args],
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.name.startswith("jit_train_step")}

    first = train("run")
    assert len(first) == 1  # compiled, and stored
    assert train("again") == first  # the same program: read back, not compiled and stored again
