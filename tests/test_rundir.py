"""gptjax.rundir: every run-directory path in one place, and writes that are all-or-nothing."""

import os

import pytest

from gptjax.errors import GptjaxError
from gptjax.rundir import RunDir, RunDirError, UnwritableError, write_atomically


def test_paths(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.config == tmp_path / "r" / "config.yaml"
    assert run.checkpoints.name == "checkpoints" and run.checkpoints_best.name == "checkpoints_best"
    assert run.metrics.name == "metrics.jsonl" and run.tensorboard.name == "tensorboard"
    assert run.eval_result("custom", "legal") == tmp_path / "r" / "eval" / "custom-legal.json"
    assert run.eval_result("val_loss") == tmp_path / "r" / "eval" / "val_loss.json"
    assert os.fspath(run) == str(tmp_path / "r") and RunDir(run) == run  # accepted wherever a path is


def test_prepared_data_needs_the_tokenizer_which_is_written_last(tmp_path):
    run = RunDir(tmp_path)
    (run.data / "train").mkdir(parents=True)
    assert not run.has_prepared_data()  # a preparation cut short before the tokenizer was saved
    run.tokenizer.mkdir()
    assert run.has_prepared_data()


def test_write_atomically_keeps_the_old_content_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    write_atomically(path, "old\n")

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(path), "write_text", full_disk)
    with pytest.raises(RunDirError, match=r"cannot write .*config.yaml: No space left on device"):
        write_atomically(path, "new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_an_unwritable_run_directory_is_one_error_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UnwritableError, match="cannot write to the run directory .*: Not a directory") as e:
        RunDir(blocker / "run").ensure_writable()
    assert isinstance(e.value, GptjaxError) and e.value.exit_code == 2  # a bad --workdir: the input's fault
    RunDir(tmp_path / "ok").ensure_writable()
    assert list((tmp_path / "ok").iterdir()) == []  # the probe file is gone


def run_locked(path, ready, release):
    from gptjax.rundir import WriterLock

    lock = WriterLock(RunDir(path))
    lock.acquire()
    ready.set()
    release.wait(30)
    lock.release()


def test_the_writer_lock_is_one_holder_at_a_time_and_freed_when_its_process_dies(tmp_path):
    import multiprocessing

    from gptjax.rundir import RunInUseError, WriterLock

    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=run_locked, args=(tmp_path, ready, release))
    holder.start()
    assert ready.wait(60)
    with pytest.raises(RunInUseError, match=rf"{tmp_path} is being trained by another process \(pid {holder.pid} on "):
        WriterLock(RunDir(tmp_path)).acquire()
    holder.kill()  # no release: the kernel frees the lock with the process
    holder.join()
    mine = WriterLock(RunDir(tmp_path))
    mine.acquire()
    assert f"pid {os.getpid()} " in (tmp_path / ".lock").read_text()
    second = WriterLock(RunDir(tmp_path))  # in the same process too (a notebook running two trainers)
    with pytest.raises(RunInUseError):
        second.acquire()
    mine.release(remove=True)
    assert not (tmp_path / ".lock").exists()
    second.acquire()
    second.release()
