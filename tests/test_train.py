"""End-to-end training on CPU: tiny models, real files, real processes."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import load_config
from gptjax.model import ModelConfig
from gptjax.run import load_run
from gptjax.state import setup
from gptjax.step import make_train_step
from gptjax.trainer import TrainingError, train

REPO = Path(__file__).resolve().parents[1]

TINY = [
    "data.max_chars=300000",
    "model.num_layers=2", "model.num_heads=2", "model.d_model=64", "model.block_size=32",
    "train.batch_size=8", "train.steps=60", "train.eval_every=30", "train.eval_batches=4", "train.log_every=10",
    "train.sample_tokens=20", "optim.lr=3e-3", "optim.min_lr=3e-4", "optim.warmup_steps=10",
]


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    final = train(load_config(None, TINY), run_dir)
    return run_dir, final


def test_loss_falls_and_everything_is_recorded(trained_run):
    run_dir, final = trained_run
    records = read_metrics(run_dir)
    train_losses = [r["loss"] for r in records if "loss" in r]
    val = [r for r in records if "val_loss" in r]
    assert all("step" in r for r in records)
    assert [r["step"] for r in val] == [0, 30, 60]
    assert train_losses[-1] < train_losses[0] - 0.5
    assert val[-1]["val_loss"] < val[0]["val_loss"] - 1.0
    assert final["val_loss"] == val[-1]["val_loss"]
    assert all(r["tokens_per_sec"] > 0 and 0 < r["mfu"] < 1 for r in records if "loss" in r)
    assert load_config(run_dir / "config.yaml").to_dict() == load_config(None, TINY).to_dict()
    assert (run_dir / "checkpoints" / "60").is_dir()


def test_sample_cli_uses_the_trained_weights(trained_run):
    run_dir, _ = trained_run
    result = subprocess.run([sys.executable, "-m", "gptjax.sample", "--workdir", str(run_dir), "--prompt", "def ",
                             "--max_new_tokens", "30", "--temperature", "0"], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("def ") and len(result.stdout) > 20


def test_rerun_continues_from_the_checkpoint(trained_run, capsys):
    run_dir, _ = trained_run
    train(load_config(None, TINY + ["train.steps=70"]), run_dir)
    out = capsys.readouterr().out
    assert "resumed from" in out and "train.steps: 60 -> 70" in out
    steps = [r["step"] for r in read_metrics(run_dir) if "loss" in r]
    assert steps[-1] == 70 and steps.count(60) == 1


def test_rerun_with_a_different_model_is_refused(trained_run):
    from gptjax.config import ConfigError
    with pytest.raises(ConfigError, match="holds a run with model.num_layers=2, not 3"):
        train(load_config(None, TINY + ["model.num_layers=3"]), trained_run[0])


def test_non_finite_loss_stops_with_the_step(tmp_path):
    cfg = load_config(None, TINY + ["optim.lr=1e30", "optim.min_lr=1e30", "optim.grad_clip=0", "train.steps=30",
                                    "train.eval_every=0", "train.sample_tokens=0"])
    with pytest.raises(TrainingError, match=r"(loss|grad norm|param norm) became (nan|inf) at step \d+; no checkpoint was saved"):
        train(cfg, tmp_path / "nan")


def test_gradient_accumulation_equals_the_full_batch():
    cfg = load_config(None, TINY)
    model_config = ModelConfig.from_config(cfg.model, vocab_size=50)
    built = setup(cfg, model_config)
    batch = jax.random.randint(jax.random.key(0), (8, 33), 0, 50)
    results = []
    for k in (1, 4):
        step = make_train_step(built.graphdef, built.tx, built.schedule, grad_accum=k, seed=0)
        state = built.init(0)
        for _ in range(3):
            state, metrics = step(state, batch)
        results.append((state.params, float(metrics["loss"]), float(metrics["grad_norm"])))
    (p1, l1, g1), (p4, l4, g4) = results
    assert abs(l1 - l4) < 1e-5 and abs(g1 - g4) < 1e-5 * g1
    # Only float32 summation order differs. Adam divides by sqrt(v), so for a near-zero gradient a rounding
    # difference can move an update by up to lr (here <= 1e-3 in warmup): 2e-5 bounds that over 3 steps.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=2e-5), p1, p4)


def test_bf16_compute_keeps_fp32_master_weights(tmp_path):
    final = train(load_config(None, TINY + ["model.dtype=bfloat16", "train.steps=30", "train.sample_tokens=0"]),
                  tmp_path / "bf16")
    run = load_run(tmp_path / "bf16")
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(run.params))
    assert final["val_loss"] < 3.5


def test_default_job_runs_from_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gptjax.train", "--workdir", str(tmp_path / "default"), "--config.train.steps=20",
         "--config.train.log_every=10", "--config.train.eval_every=10", "--config.data.max_chars=200000",
         "--config.train.sample_tokens=40"],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "step     20/20" in result.stdout and "val loss" in result.stdout
    sample, after = result.stdout.rstrip().rsplit("-" * 80, 1)  # the printed sample, then where the run is
    assert "-" * 80 in sample and after.lstrip().startswith("run ") and "continue: the same command" in after


def test_shakespeare_recipe_with_gpt2_tokenizer(tmp_path, shakespeare_path, gpt2_dir):
    cfg = load_config(REPO / "configs/gpt2_small.py", [
        f"data.path={shakespeare_path}", f"data.tokenizer={gpt2_dir}", "data.max_chars=100000",
        "model.num_layers=1", "model.num_heads=2", "model.d_model=32", "model.block_size=64", "model.dtype=float32",
        "train.batch_size=4", "train.grad_accum=2", "train.steps=4", "train.eval_every=0", "train.eval_batches=2",
        "train.log_every=2", "train.sample_tokens=5", "optim.warmup_steps=2"])
    final = train(cfg, tmp_path / "bpe")
    assert np.isfinite(final["val_loss"]) and final["val_loss"] < 11.0  # ln(50304) = 10.8 at init
    run = load_run(tmp_path / "bpe")
    assert run.tokenizer.encode("Hello world").tolist() == [15496, 995]
    assert run.model_config.vocab_size == 50304  # padded table, GPT-2's 50,257-token tokenizer


def test_baby_shakespeare_config_from_the_command_line(tmp_path, shakespeare_path):
    result = subprocess.run(
        [sys.executable, "-m", "gptjax.train", "--config", "configs/shakespeare_char_cpu.py",
         "--workdir", str(tmp_path / "baby"), "--config.data.path", str(shakespeare_path),
         "--config.train.steps=20", "--config.train.eval_every=10", "--config.train.log_every=10"],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "vocab 65" in result.stdout and "step     20/20" in result.stdout


def test_missing_text_offline_says_how_to_pass_a_local_file(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gptjax.train", "--config", "configs/shakespeare_char_cpu.py",
         "--workdir", str(tmp_path / "run"), f"--config.data.path={tmp_path / 'missing.txt'}",
         "--config.data.url=http://127.0.0.1:9/input.txt"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "missing.txt is missing and the download from http://127.0.0.1:9/input.txt failed" in line
    assert "--config.data.path=" in line


def test_training_from_a_prepared_shard_directory(tmp_path):
    from gptjax.data import prepare_splits, stdlib_corpus
    from gptjax.tokenizer import build_tokenizer

    text = stdlib_corpus(max_chars=200_000)
    tokenizer = build_tokenizer("byte")
    prepare_splits(text, tokenizer, tmp_path / "shards", val_fraction=0.1, name="stdlib")
    tokenizer.save(tmp_path / "shards" / "tokenizer")
    overrides = [o for o in TINY if not o.startswith("data.")] + [
        "data.source=shards", f"data.shards={tmp_path / 'shards'}", "train.steps=20", "train.sample_tokens=0"]
    final = train(load_config(None, overrides), tmp_path / "run")
    assert np.isfinite(final["val_loss"])
    assert load_run(tmp_path / "run").model_config.vocab_size == 256
    assert not (tmp_path / "run" / "data").exists()  # prepared shards are read in place, not copied


def test_missing_shard_directory_is_a_clear_error(tmp_path):
    from gptjax.data import DataError
    with pytest.raises(DataError, match="train"):
        train(load_config(None, TINY + ["data.source=shards", f"data.shards={tmp_path / 'nowhere'}"]), tmp_path / "r")


def test_training_on_a_weighted_mixture(tmp_path, capsys):
    from gptjax.data import prepare_splits, stdlib_corpus
    from gptjax.tokenizer import build_tokenizer

    text = stdlib_corpus(max_chars=300_000)
    tokenizer = build_tokenizer("byte")
    for name, part in (("code", text[:200_000]), ("prose", text[200_000:])):
        prepare_splits(part, tokenizer, tmp_path / name, val_fraction=0.1, name=name)
        tokenizer.save(tmp_path / name / "tokenizer")
    spec = f"{tmp_path / 'code'}:0.75,{tmp_path / 'prose'}:0.25"
    overrides = [o for o in TINY if not o.startswith("data.")] + [
        "data.source=shards", f"data.shards={spec}", "train.steps=10", "train.eval_every=5", "train.sample_tokens=0"]
    final = train(load_config(None, overrides), tmp_path / "run")
    out = capsys.readouterr().out
    assert "data: code: weight 0.75" in out and "data: prose: weight 0.25" in out
    assert final["val_loss"] == pytest.approx(0.75 * final["val_loss_code"] + 0.25 * final["val_loss_prose"])


@pytest.mark.parametrize("spec, message", [
    ("a:0.5,b", "give one directory, or a weight for every directory"),
    ("a:x", "is not DIR or DIR:WEIGHT"),
    ("x/a:1,y/a:1", "names two sources 'a'"),
])
def test_bad_mixture_specs(tmp_path, spec, message):
    from gptjax.config import ConfigError
    with pytest.raises(ConfigError, match=message):
        train(load_config(None, TINY + ["data.source=shards", f"data.shards={spec}"]), tmp_path / "r")


def test_bf16_compute_tracks_fp32_on_baby_shakespeare(tmp_path, shakespeare_path):
    """200 steps of the baby recipe with bf16 compute against fp32 (same seed and data).

    Tolerance: the validation losses agree within 0.01 and the training losses, averaged over each 50-step
    window, within 0.01. bf16 keeps 8 bits of mantissa, so single logits move by ~1e-2 relative, but the master
    weights, the softmax and the loss stay fp32 and a mean over thousands of tokens averages the rounding out:
    measured here, the differences were at most 1.5e-4 (windows) and 7e-5 (validation)."""
    curves = {}
    for dtype in ("float32", "bfloat16"):
        cfg = load_config(REPO / "configs/shakespeare_char_cpu.py", [
            f"data.path={shakespeare_path}", f"model.dtype={dtype}", "train.steps=200", "optim.decay_steps=200",
            "train.log_every=1", "train.eval_every=100", "train.sample_tokens=0"])
        train(cfg, tmp_path / dtype)
        curves[dtype] = read_metrics(tmp_path / dtype)
    train32 = np.array([r["loss"] for r in curves["float32"] if "loss" in r])
    train16 = np.array([r["loss"] for r in curves["bfloat16"] if "loss" in r])
    assert len(train32) == len(train16) == 200
    assert np.max(np.abs(train32.reshape(4, 50).mean(1) - train16.reshape(4, 50).mean(1))) < 0.01
    val32 = [r["val_loss"] for r in curves["float32"] if "val_loss" in r]
    val16 = [r["val_loss"] for r in curves["bfloat16"] if "val_loss" in r]
    assert max(abs(a - b) for a, b in zip(val32, val16)) < 0.01
    assert val16[-1] < val16[0] - 1.0  # and it learns
