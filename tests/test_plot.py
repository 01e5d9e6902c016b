"""python -m gptjax.plot: loss curves of runs and data-preparation reports, as PNG files."""

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from gptjax import plot

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(directory: Path, steps: int = 200, batch_size: int = 8, block_size: int = 32, scale: float = 1.0,
             config: bool = True) -> Path:
    """A run directory as gptjax.train leaves it, as far as plotting reads it: metrics.jsonl and config.yaml."""
    directory.mkdir(parents=True)
    rng = random.Random(steps)
    lines = []
    for step in range(0, steps + 1, 10):
        if step:
            loss = scale * (4 * math.exp(-step / 80) + 1.5) + rng.uniform(-0.2, 0.2)
            lines.append({"step": step, "loss": loss, "lr": 1e-3, "grad_norm": 1.0, "param_norm": 20.0,
                          "tokens_per_sec": 1000.0, "mfu": 0.1})
        if step % 50 == 0:
            lines.append({"step": step, "val_loss": scale * (4 * math.exp(-step / 80) + 1.6)})
    (directory / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if config:
        (directory / "config.yaml").write_text(f"model:\n  block_size: {block_size}\ntrain:\n  batch_size: "
                                               f"{batch_size}\n")
    return directory


def image(path: Path):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000, len(data)  # a real figure, not an empty canvas
    return matplotlib.image.imread(path)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptjax.plot", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_one_run_from_the_command_line(tmp_path):
    run = fake_run(tmp_path / "baseline")
    result = cli(str(run), "--out", str(tmp_path / "one.png"), "--smooth", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {tmp_path / 'one.png'}"
    pixels = image(tmp_path / "one.png")
    assert pixels.shape[1] > pixels.shape[0] * 2  # two panels side by side: against step and against tokens


def test_two_runs_on_one_figure(tmp_path):
    a, b = fake_run(tmp_path / "small"), fake_run(tmp_path / "large", steps=300, scale=0.8)
    plot.plot_runs([a], tmp_path / "one.png")
    plot.plot_runs([a, b], tmp_path / "two.png")
    one, two = image(tmp_path / "one.png"), image(tmp_path / "two.png")
    assert one.shape == two.shape and (one != two).any()  # the second run's curves (and legend) were drawn
    assert plot.run_names([a, b]) == ["small", "large"]
    assert plot.run_names([a, tmp_path / "x" / "small"]) == [str(a), str(tmp_path / "x" / "small")]


def test_without_a_config_only_the_step_axis(tmp_path):
    run = fake_run(tmp_path / "bare", config=False)
    pixels = image(plot.plot_runs([run], tmp_path / "bare.png"))
    assert pixels.shape[1] < pixels.shape[0] * 2


def test_smoothing_is_a_trailing_mean():
    values = plot.smooth(__import__("numpy").array([1.0, 3.0, 5.0, 7.0]), 2)
    assert list(values) == [1.0, 2.0, 4.0, 6.0]


def test_a_cut_last_line_is_skipped_but_a_broken_middle_line_is_an_error(tmp_path):
    run = fake_run(tmp_path / "crashed")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 210, "lo')
    train, val = plot.read_metrics(run)
    assert train[-1]["step"] == 200
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:3] + ["not json"] + lines[3:]) + "\n")
    with pytest.raises(plot.PlotError, match=r"metrics.jsonl:4 is not a JSON object"):
        plot.read_metrics(run)


@pytest.mark.parametrize("setup, message", [
    (lambda d: d.mkdir(), "has no metrics.jsonl"),
    (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text("")), "holds no training or validation losses yet "
                                                                    "(it is empty)"),
    (lambda d: None, "is not a directory"),
])
def test_run_errors_are_one_line(tmp_path, capsys, setup, message):
    setup(tmp_path / "run")
    assert plot.main([str(tmp_path / "run"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'run'}") and message in err[0], err
    assert not (tmp_path / "x.png").exists()


def test_one_bad_run_fails_before_anything_is_drawn(tmp_path, capsys):
    good = fake_run(tmp_path / "good")
    assert plot.main([str(good), str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]) == 2
    assert "missing is not a directory" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_argument_errors(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    for args, message in ([[], "give one or more run directories"],
                          [[str(run), "--smooth", "0"], "--smooth 0 must be at least 1"],
                          [[str(run), "--out", str(tmp_path / "x.jpg")], "expected a .png file"],
                          [[str(run), "--data-report", str(tmp_path / "r.json")], "not both"]):
        assert plot.main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)


@pytest.fixture(scope="module")
def report_path(tmp_path_factory):
    """A real report.json, from a small gptjax.data.prepare run with a duplicate, a junk page and an empty
    document planted."""
    from gptjax.data.prepare import base_config, prepare, source
    from test_prepare import paragraph

    root = tmp_path_factory.mktemp("report")
    rng = random.Random(0)
    docs = [{"id": f"d{i}", "text": paragraph(rng, 150)} for i in range(12)]
    docs += [{"id": "copy", "text": docs[0]["text"]},
             {"id": "junk", "text": "\n".join(["Buy now! Best prices online."] * 40)}, {"id": "empty", "text": ""}]
    (root / "raw").mkdir()
    (root / "raw" / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg = base_config()
    cfg.sources.web = source("jsonl", str(root / "raw"))
    cfg.tokenizer.name = "byte"
    prepare(cfg, root / "out")
    return root / "out" / "report.json"


def test_data_report(report_path, tmp_path):
    report = plot.read_report(report_path)
    rows = dict(plot.removals(report))
    assert rows["web / dedup: exact duplicates"] == 1
    assert rows["web / READER: Jsonl (safe): empty_skipped"] == 1
    assert rows["web / FILTER: Gopher Repetition: dropped_dup_line_frac"] == 1  # the reason, emoji stripped
    assert not any(label.endswith(": dropped") for label in rows)  # the total is not counted twice
    result = cli("--data-report", str(report_path), "--out", str(tmp_path / "data.png"))
    assert result.returncode == 0, result.stderr
    image(tmp_path / "data.png")


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    ('{"timings": {}}', "is not a data-preparation report: no 'sources'"),
    ('{"sources": {"web": {"cleaning": "x", "dedup": {}}}}', "source 'web' lacks its 'cleaning' list"),
    ('{"sources": {"web": {"cleaning": [3], "dedup": {}}}}', "has a 'cleaning' entry that is not an object"),
])
def test_malformed_reports(tmp_path, capsys, content, message):
    (tmp_path / "report.json").write_text(content)
    assert plot.main(["--data-report", str(tmp_path / "report.json"), "--out", str(tmp_path / "data.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "data.png").exists()


def test_missing_report(tmp_path, capsys):
    assert plot.main(["--data-report", str(tmp_path / "nope.json")]) == 2
    assert "nope.json does not exist" in capsys.readouterr().err
