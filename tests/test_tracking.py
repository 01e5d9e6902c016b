"""Metrics tracking (metrics.jsonl, TensorBoard, W&B) and progress bars, on tiny real training runs."""

import contextlib
import importlib.util
import io
import json
import shutil
from pathlib import Path

import pytest

from gptjax import tracking
from gptjax.config import ConfigError, load_config
from gptjax.trainer import train
from test_train import TINY

QUICK = TINY + ["data.max_chars=60000", "train.sample_tokens=0", "train.eval_every=10", "train.log_every=10",
                "checkpoint.every=10", "checkpoint.keep=5"]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def read_jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def read_tensorboard(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def expected_scalars(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard should hold, from metrics.jsonl: train/<key> from lines with a loss, eval/<key> else."""
    expected: dict[str, list] = {}
    for r in records:
        prefix = "train" if "loss" in r else "eval"
        for key, value in r.items():
            if key != "step":
                expected.setdefault(f"{prefix}/{key}", []).append((r["step"], value))
    return expected


def assert_same(tensorboard: dict, expected: dict) -> None:
    assert set(tensorboard) == set(expected)
    for tag, points in expected.items():
        assert [s for s, _ in tensorboard[tag]] == [s for s, _ in points], tag  # each step once, in order
        assert [v for _, v in tensorboard[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag  # float32


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """20 steps with checkpoints at 10 and 20, output captured in plain (non-terminal) streams."""
    run_dir = tmp_path_factory.mktemp("tracking") / "run"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        train(load_config(None, QUICK + ["train.steps=20"]), run_dir)
    return run_dir, out.getvalue(), err.getvalue()


def test_tensorboard_holds_every_scalar_of_metrics_jsonl(run):
    run_dir, _, _ = run
    records = read_jsonl(run_dir)
    assert [r["step"] for r in records if "val_loss" in r] == [0, 10, 20]
    scalars = read_tensorboard(run_dir)
    assert {"train/loss", "train/lr", "train/grad_norm", "train/param_norm", "train/tokens_per_sec", "train/mfu",
            "eval/val_loss"} <= set(scalars)
    assert_same(scalars, expected_scalars(records))


def test_tensorboard_holds_the_resolved_config(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _, _ = run
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text == "```\n" + (run_dir / "config.yaml").read_text() + "```"


def test_no_progress_bar_when_not_a_terminal(run):
    _, out, err = run
    assert "step     20/20 | loss" in out and "step     10 | val loss" in out  # the plain periodic lines
    for text in (out, err):
        assert "\r" not in text and "\x1b[" not in text  # no bar redraws or cursor movement
        assert "step/s" not in text and "s/step" not in text


def test_resume_after_a_crash_shows_each_step_once(run, monkeypatch):
    """As after a crash past step 10: the checkpoint of step 20 is lost, so steps 11-20 are trained again (with
    another learning rate, so the redone values differ), then on to 30. Here stderr is a terminal: the bar is drawn."""
    run_dir, _, _ = run
    resumed = run_dir.parent / "resumed"
    shutil.copytree(run_dir, resumed)
    before = {r["step"]: r for r in read_jsonl(resumed) if "loss" in r}
    shutil.rmtree(resumed / "checkpoints" / "20")
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        train(load_config(None, QUICK + ["train.steps=30", "optim.lr=1e-3", "optim.min_lr=1e-4"]), resumed)
    assert "resumed from" in out.getvalue()
    records = read_jsonl(resumed)
    train_steps = [r["step"] for r in records if "loss" in r]
    assert train_steps == [10, 20, 30]
    assert [r["step"] for r in records if "val_loss" in r] == [0, 10, 20, 30]
    redone = next(r for r in records if r["step"] == 20 and "loss" in r)
    assert redone["lr"] != before[20]["lr"]
    assert records[:3] == [r for r in read_jsonl(run_dir)][:3]  # up to step 10: kept as it was
    assert_same(read_tensorboard(resumed), expected_scalars(records))
    bar = terminal.getvalue()
    assert "train:" in bar and "\r" in bar and "30/30" in bar and "loss=" in bar and "tok/s=" in bar


def test_restart_from_step_zero_forgets_the_earlier_attempt(tmp_path):
    """A run that died before its first checkpoint starts over: its step-0 evaluation runs again."""
    first = tracking.Tracker(tmp_path, resume_step=0)
    first.write(0, val_loss=5.0)
    first.write(10, loss=4.0, lr=1e-3)
    first.close()
    second = tracking.Tracker(tmp_path, resume_step=0)
    second.write(0, val_loss=4.5)
    second.close()
    assert read_jsonl(tmp_path) == [{"step": 0, "val_loss": 4.5}]
    assert read_tensorboard(tmp_path) == {"eval/val_loss": [(0, 4.5)]}


def test_other_processes_write_nothing(tmp_path):
    tracker = tracking.Tracker(None, resume_step=0)
    tracker.write(1, loss=1.0)
    tracker.close()
    assert not tracker.writing and list(tmp_path.iterdir()) == []


def test_tensorboard_can_be_turned_off(tmp_path):
    tracker = tracking.Tracker(tmp_path, config=load_config(None, ["log.tensorboard=false"]))
    tracker.write(1, loss=2.0)
    tracker.close()
    assert read_jsonl(tmp_path) == [{"step": 1, "loss": 2.0}] and not (tmp_path / "tensorboard").exists()


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_enabled_but_not_installed_fails_at_start(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"log.wandb=true needs Weights & Biases.*`pip install wandb`"):
        train(load_config(None, QUICK + ["log.wandb=true"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # before any work
    from gptjax.train import main

    assert main(["--workdir", str(tmp_path / "cli"), "--config.log.wandb=true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: log.wandb=true needs") and "pip install wandb" in err[0]


def test_wandb_needs_a_project():
    with pytest.raises(ConfigError, match="log.wandb=true needs log.wandb_project"):
        load_config(None, ["log.wandb=true", "log.wandb_project="])


def test_the_terminal_decision():
    assert tracking.interactive(FakeTerminal()) is True
    assert tracking.interactive(io.StringIO()) is False
    closed = io.StringIO()
    closed.close()
    assert tracking.interactive(closed) is False


def test_progress_bar_draws_only_on_a_terminal(monkeypatch):
    for stream, drawn in ((io.StringIO(), False), (FakeTerminal(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        bar = tracking.progress_bar(5, "work", "item")
        assert bar.disable is not drawn
        for _ in range(5):
            bar.update()
        bar.close()
        assert ("5/5" in stream.getvalue()) is drawn
    bar = tracking.progress_bar(5, "work", "item", enabled=False)  # e.g. not the writing process
    assert bar.disable


def test_evaluation_shows_a_bar_on_a_terminal_only(run, monkeypatch, capsys):
    from gptjax import evaluate

    run_dir, _, _ = run
    args = ["--workdir", str(run_dir), "--task", "val_loss", "--limit", "40", "--batch_size", "8"]
    assert evaluate.main(args) == 0
    plain = capsys.readouterr()
    assert "val_loss at step 20" in plain.out and "\r" not in plain.err + plain.out
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert evaluate.main(args) == 0
    drawn = terminal.getvalue()  # the bar redraws at most every 0.1 s: this quick pass may show only its start
    assert "\rval_loss:" in drawn and "/40 [" in drawn and "window/s" in drawn


def test_data_preparation_shows_its_stages_on_a_terminal(tmp_path, monkeypatch, capsys):
    import random

    from gptjax.data.prepare import base_config, prepare, source
    from test_prepare import paragraph

    rng = random.Random(0)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "docs.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": paragraph(rng, 120)})
                                                         + "\n" for i in range(8)))
    cfg = base_config()
    cfg.sources.web = source("jsonl", str(tmp_path / "raw"))
    cfg.tokenizer.name = "byte"
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    prepare(cfg, tmp_path / "out")
    assert "prepare: 100%" in terminal.getvalue() and "4/4" in terminal.getvalue()  # clean, dedup, tokenizer, tokenize
    out = capsys.readouterr().out
    assert "[web] reading and cleaning" in out and "[web] tokenizing" in out and "\r" not in out
