"""gptjax.rundir: every run-directory path in one place, and writes that are all-or-nothing."""

import os

import pytest

from gptjax.errors import GptjaxError
from gptjax.rundir import RunDir, RunDirError, write_atomically


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
    with pytest.raises(RunDirError, match="cannot write to the run directory .*: Not a directory") as e:
        RunDir(blocker / "run").ensure_writable()
    assert isinstance(e.value, GptjaxError) and e.value.exit_code == 1
    RunDir(tmp_path / "ok").ensure_writable()
    assert list((tmp_path / "ok").iterdir()) == []  # the probe file is gone
