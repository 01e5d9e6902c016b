"""train.target_loss (stop at a validation loss) and the harness on it (`python -m gptjax.bench --to-loss`)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO
from gptjax.checkpoint import Checkpoints
from gptjax.config import ConfigError, load_config
from gptjax.speedrun import parse_seeds, result_of
from gptjax.trainer import Trainer

QUICK = ["data.max_chars=40000", "model.num_layers=1", "model.num_heads=2", "model.d_model=32",
         "model.block_size=16", "train.batch_size=4", "train.steps=40", "train.eval_every=5", "train.eval_batches=1",
         "train.log_every=5", "train.sample_tokens=0", "optim.warmup_steps=1"]


def metrics_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_stops_at_the_first_evaluation_at_or_below_the_target(tmp_path, capsys):
    """The evaluation at step 0 does not count (nothing trained yet); the one at step 5 is below any loss this
    far above the start, so the run ends there as if train.steps were 5: a checkpoint of step 5, and a line
    telling the steps, tokens and seconds."""
    final = Trainer(load_config(None, QUICK + ["train.target_loss=50"]), tmp_path / "run").run()
    assert final["target_reached_at"] == 5 and final["tokens"] == 5 * 4 * 16
    lines = metrics_lines(tmp_path / "run")
    target = [r for r in lines if "reached_target" in r]
    assert len(target) == 1 and target[0]["step"] == 5 and target[0]["target_loss"] == 50
    assert target[0]["reached_target"] == next(r["val_loss"] for r in lines if r["step"] == 5 and "val_loss" in r)
    assert max(r["step"] for r in lines) == 5  # nothing trained after it
    ck = Checkpoints(tmp_path / "run")
    assert ck.latest_step() == 5
    ck.close()
    said = capsys.readouterr().out
    assert "<= train.target_loss=50 at step 5 (320 tokens" in said
    assert "run " + str(tmp_path / "run") + ": step 5" in said


def test_a_target_never_reached_trains_every_step(tmp_path):
    cfg = load_config(None, QUICK + ["train.steps=10", "train.target_loss=0.01"])
    final = Trainer(cfg, tmp_path / "run").run()
    assert "target_reached_at" not in final
    assert not any("reached_target" in r for r in metrics_lines(tmp_path / "run"))
    assert result_of(tmp_path / "run") == {"reached": False, "best_val_loss": pytest.approx(
        min(r["val_loss"] for r in metrics_lines(tmp_path / "run") if "val_loss" in r))}


def test_seeds_are_a_count_or_a_list():
    assert parse_seeds("3") == [1337, 1, 2] and parse_seeds("1") == [1337]
    assert parse_seeds("5,7") == [5, 7] and parse_seeds("42,") == [42]
    for bad, said in [("x", "give a count"), ("0", "at least one"), ("1,1", "named twice"), ("", "empty")]:
        with pytest.raises(ConfigError, match=said):
            parse_seeds(bad)


def bench(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "gptjax.bench", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_bench_to_loss_runs_each_seed_and_reports_the_spread(tmp_path):
    out = bench("--to-loss", "50", "--seeds", "1337,7", "--workdir", str(tmp_path / "runs"), "--json",
                str(tmp_path / "r.json"), *(f"--config.{o}" for o in QUICK))
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    assert "seed 1337: val loss" in out.stdout and "seed 7: val loss" in out.stdout
    assert "target val loss 50: reached by 2 of 2 seeds (evaluated every 5 steps)" in out.stdout
    result = json.loads((tmp_path / "r.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [1337, 7] and result["reached"] == 2
    assert result["step"] == {"mean": 5, "min": 5, "max": 5} and result["tokens"]["mean"] == 320
    assert all(r["wall_seconds"] >= r["seconds"] > 0 for r in result["runs"])
    assert result["command"].startswith("python -m gptjax.bench --to-loss 50")
    for seed in (1337, 7):  # each seed's own run directory, with the seed it was asked for
        saved = (tmp_path / "runs" / f"seed_{seed}" / "config.yaml").read_text()
        assert f"seed: {seed}\n" in saved and "target_loss: 50.0" in saved


@pytest.mark.parametrize("args, said", [
    (["--to-loss", "-1"], "--to-loss -1: give the validation loss to reach"),
    (["--to-loss", "2", "--seeds", "1,1"], "a seed is named twice"),
    (["--to-loss", "2", "--config.optim.name=lion"], "optim.name='lion' is not one of: adamw, muon"),
])
def test_bench_to_loss_refuses_bad_input_in_one_line(tmp_path, args, said):
    out = bench(*args, "--workdir", str(tmp_path / "runs"))
    assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bench_to_loss_wants_a_fresh_directory(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "old").write_text("x")
    out = bench("--to-loss", "2", "--workdir", str(tmp_path / "runs"))
    assert out.returncode == 2 and "is not empty" in out.stderr


@pytest.mark.parametrize("where, said", [
    ("a_file", "is a file, not a directory"),
    ("a_file/runs", "cannot create it"),  # a file in the way stops even root, who ignores permissions
])
def test_bench_to_loss_names_a_workdir_it_cannot_use(tmp_path, where, said):
    (tmp_path / "a_file").write_text("x")
    out = bench("--to-loss", "2", "--workdir", str(tmp_path / where))
    assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert (tmp_path / "a_file").read_text() == "x"
