"""gptjax.inputs: a text source is tokenized once, tied to what it was made from, and never reused stale."""

import json
import os

import pytest

from gptjax.config import load_config
from gptjax.data import DataError
from gptjax.inputs import prepare_data
from gptjax.rundir import RunDir, RunDirError

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 200


def config(path, *overrides):
    return load_config(None, ["data.source=text", f"data.path={path}", "data.tokenizer=byte", *overrides])


def tokens(run_dir: RunDir) -> bytes:
    return (run_dir.data / "train" / "00000.ds").read_bytes()


@pytest.fixture
def started_run(tmp_path):
    """A run directory with its data prepared and the run started (its config.yaml written)."""
    text = tmp_path / "input.txt"
    text.write_text(TEXT)
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    prepare_data(config(text), run_dir)
    run_dir.config.write_text("started: true\n")
    return text, run_dir


def test_unchanged_text_is_reused(started_run, capsys):
    text, run_dir = started_run
    record = json.loads(run_dir.data_source.read_text())
    assert record["bytes"] == len(TEXT) and record["path"] == str(text) and len(record["sha256"]) == 64
    before = tokens(run_dir)
    os.utime(text, ns=(1, 1))  # touched, same content: still the same data
    capsys.readouterr()
    prepare_data(config(text), run_dir)
    assert tokens(run_dir) == before and "characters ->" not in capsys.readouterr().out


@pytest.mark.parametrize("change", ["append", "same size", "same size and time"])
def test_changed_text_is_refused_naming_the_way_on(started_run, change):
    text, run_dir = started_run
    stat = text.stat()
    if change == "append":
        text.write_text(TEXT + "More text.\n")
    else:
        text.write_text(TEXT.replace("First", "Fresh"))
        if change == "same size and time":
            os.utime(text, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    before = {p.name: p.read_bytes() for p in run_dir.data.rglob("*") if p.is_file()}
    with pytest.raises(DataError, match=rf"data.path={text} changed \(then {len(TEXT):,} bytes.*different content\) "
                                        r"since .*data was tokenized from it.*new --workdir.*data.retokenize=true"):
        prepare_data(config(text), run_dir)
    assert {p.name: p.read_bytes() for p in run_dir.data.rglob("*") if p.is_file()} == before


def test_retokenize_tokenizes_the_new_text_with_the_runs_tokenizer(started_run, capsys):
    text, run_dir = started_run
    text.write_text(TEXT + "More text.\n")
    inputs = prepare_data(config(text, "data.retokenize=true"), run_dir)
    assert "tokenizing it again with the run's tokenizer" in capsys.readouterr().out
    assert json.loads(run_dir.data_source.read_text())["bytes"] == len(TEXT) + 11
    assert inputs.tokenizer.name == "byte"
    prepare_data(config(text), run_dir)  # recorded: the next start reuses it without the flag


def test_changed_settings_before_any_run_started_just_prepare_again(tmp_path, capsys):
    text = tmp_path / "input.txt"
    text.write_text(TEXT)
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    prepare_data(config(text), run_dir)  # a start that was then refused: no config.yaml
    first = tokens(run_dir)
    prepare_data(config(text, "data.val_fraction=0.5"), run_dir)
    assert "tokenizing again" in capsys.readouterr().out and tokens(run_dir) != first


def test_a_full_disk_while_tokenizing_is_one_clear_error(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gptjax.data.sources.write_shard", full)
    text = tmp_path / "input.txt"
    text.write_text(TEXT)
    with pytest.raises(RunDirError, match=r"cannot write the tokenized data to .*data: No space left on device; "
                                          "free disk space"):
        prepare_data(config(text), RunDir(tmp_path / "run"))
