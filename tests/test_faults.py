"""Checkpoints and faults with real processes and real signals: exact resume after SIGKILL, preemption by SIGTERM
and SIGINT, a save cut short, an unreadable checkpoint, a full disk, an unwritable directory, non-finite losses,
restoring onto another mesh, fine-tuning from another run, and bad input that must be refused without touching
the run directory."""

import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import REPO
from gptjax.checkpoint import FORMAT_VERSION, Checkpoints
from gptjax.config import load_config
from gptjax.data.shards import write_shard
from gptjax.model import ModelConfig
from gptjax.run import load_run
from gptjax.state import setup
from gptjax.step import make_train_step

# Slow enough per step (tens of ms) that a signal lands mid-run, small enough to compile in seconds.
TINY = ["--config.data.max_chars=200000", "--config.model.num_layers=2", "--config.model.num_heads=2",
        "--config.model.d_model=64", "--config.model.block_size=64", "--config.train.batch_size=32",
        "--config.train.log_every=1", "--config.train.eval_every=0", "--config.train.eval_batches=2",
        "--config.train.sample_tokens=0", "--config.optim.warmup_steps=10", "--config.optim.decay_steps=400"]


def env(devices: int = 1) -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PJRT_NPROC": str(max(2, 2 * devices)),
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "PYTHONUNBUFFERED": "1"}


def command(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gptjax.train", "--workdir", str(workdir), *TINY, *args]


def run(workdir: Path, *args: str, devices: int = 1, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command(workdir, *args), cwd=REPO, env=env(devices), capture_output=True, text=True,
                          timeout=600, **kw)


def spawn(workdir: Path, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(command(workdir, *args), cwd=REPO, env=env(), stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)


def wait_for_step(proc: subprocess.Popen, log: Path, step: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not re.search(rf"^step +{step}/", log.read_text(), re.M):
        assert proc.poll() is None, f"the run ended before step {step}:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)


def train_losses(workdir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def snapshot(directory: Path) -> dict:
    """Every file's bytes and modification time: what 'nothing was touched' means. (RUN/.lock is not the run's
    content: it names the last trainer that opened the run.)"""
    return {str(p.relative_to(directory)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}


def one_line_error(result: subprocess.CompletedProcess, code: int, pattern: str, quiet: bool = True) -> None:
    """Exit code `code` and one line 'error: ...' matching pattern, last; quiet: no traceback either."""
    assert result.returncode == code, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr[-3000:]
    assert not quiet or "Traceback" not in result.stderr, result.stderr[-3000:]
    assert re.search(pattern, errors[0]), errors[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """20 steps, checkpoints at 10 and 20."""
    workdir = tmp_path_factory.mktemp("faults") / "run"
    result = run(workdir, "--config.train.steps=20", "--config.checkpoint.every=10")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


# ----------------------------------------------------------------------------------------------------------------
# Exact resume


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    steps = 200
    whole = run(tmp_path / "whole", f"--config.train.steps={steps}", "--config.checkpoint.every=20")
    assert whole.returncode == 0, whole.stderr[-3000:]

    log = tmp_path / "killed.log"
    proc = spawn(tmp_path / "killed", log, f"--config.train.steps={steps}", "--config.checkpoint.every=20")
    wait_for_step(proc, log, 70)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = Checkpoints(tmp_path / "killed", read_only=True)
    resumed_from = kept.latest_step()
    kept.close()
    assert resumed_from is not None and 20 <= resumed_from < steps

    resumed = run(tmp_path / "killed", f"--config.train.steps={steps}", "--config.checkpoint.every=20")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {tmp_path / 'killed'}/checkpoints/{resumed_from}" in resumed.stdout

    # The same loss at every step (metrics.jsonl holds one line per step: the killed run's lines past its
    # checkpoint were dropped on resume and written again), and bitwise the same final parameters.
    a, b = train_losses(tmp_path / "whole"), train_losses(tmp_path / "killed")
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    assert a == b
    for x, y in zip(jax.tree.leaves(load_run(tmp_path / "whole").params),
                    jax.tree.leaves(load_run(tmp_path / "killed").params)):
        assert np.array_equal(np.asarray(x), np.asarray(y))


# ----------------------------------------------------------------------------------------------------------------
# Preemption


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_and_exits_zero(tmp_path, sig):
    log = tmp_path / "run.log"
    proc = spawn(tmp_path / "run", log, "--config.train.steps=100000", "--config.checkpoint.every=0")
    wait_for_step(proc, log, 15)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    output = log.read_text()
    stopped = int(re.search(rf"stopped by {sig.name} after step (\d+); checkpoint saved in ", output).group(1))
    assert stopped >= 15 and (tmp_path / "run" / "checkpoints" / str(stopped)).is_dir()

    resumed = run(tmp_path / "run", f"--config.train.steps={stopped + 5}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"checkpoints/{stopped}" in resumed.stdout and f"step {stopped + 5:>6}/" in resumed.stdout


# ----------------------------------------------------------------------------------------------------------------
# One trainer per run directory


def test_a_second_trainer_is_refused_and_the_first_is_unharmed(tmp_path):
    workdir = tmp_path / "run"
    # Two at once on a directory that does not exist yet: one trains, the other refuses at once.
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [spawn(workdir, log, "--config.train.steps=30", "--config.checkpoint.every=10") for log in logs]
    codes = sorted(p.wait(timeout=600) for p in procs)
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 2], outputs
    refused = next(o for o in outputs if "error:" in o)
    assert re.search(r"^error: .*run is being trained by another process \(pid \d+ on .*\); wait for it", refused,
                     re.M) and "Traceback" not in refused, refused
    assert sorted(train_losses(workdir)) == list(range(1, 31))  # every line of the one run, once

    # An existing run being trained: a second trainer is refused, sample reads it meanwhile, the first goes on.
    log = tmp_path / "long.log"
    proc = spawn(workdir, log, "--config.train.steps=100000", "--config.checkpoint.every=10")
    wait_for_step(proc, log, 45)
    second = run(workdir, "--config.train.steps=100000")
    one_line_error(second, 2, rf"{workdir} is being trained by another process \(pid {proc.pid} on ")
    sampled = subprocess.run([sys.executable, "-m", "gptjax.sample", "--workdir", str(workdir), "--max_new_tokens",
                              "8", "--prompt", "def"], cwd=REPO, env=env(), capture_output=True, text=True,
                             timeout=300)
    assert sampled.returncode == 0 and sampled.stdout.strip(), sampled.stderr[-3000:]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    stopped = int(re.search(r"stopped by SIGTERM after step (\d+)", log.read_text()).group(1))
    assert sorted(train_losses(workdir)) == list(range(1, stopped + 1))
    # The holder is gone, so the lock is free: the run resumes (a SIGKILLed holder frees it the same way).
    resumed = run(workdir, f"--config.train.steps={stopped + 2}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]


# ----------------------------------------------------------------------------------------------------------------
# Saves cut short, unreadable checkpoints


def test_killed_while_saving_resumes_from_a_complete_checkpoint(tmp_path):
    """A checkpoint every step keeps a save in flight almost always, so SIGKILL lands inside one."""
    log = tmp_path / "run.log"
    proc = spawn(tmp_path / "run", log, "--config.train.steps=100000", "--config.checkpoint.every=1",
                 "--config.checkpoint.keep=3")
    wait_for_step(proc, log, 25)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    unfinished = list((tmp_path / "run" / "checkpoints").glob("*.orbax-checkpoint-tmp*"))
    resumed = run(tmp_path / "run", "--config.train.steps=40", "--config.checkpoint.every=1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    if unfinished:
        assert "whose save never finished" in resumed.stderr
    assert not list((tmp_path / "run" / "checkpoints").glob("*.orbax-checkpoint-tmp*"))


def test_half_written_and_unreadable_checkpoints_are_skipped(finished_run, tmp_path):
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    checkpoints = workdir / "checkpoints"
    # A save cut short: orbax's temporary name, half its files.
    partial = checkpoints / "30.orbax-checkpoint-tmp"
    shutil.copytree(checkpoints / "20", partial)
    shutil.rmtree(partial / "state")
    # The newest complete one made unreadable: its array data truncated.
    for data in (checkpoints / "20" / "state").rglob("d/*"):
        data.write_bytes(data.read_bytes()[:10])
    resumed = run(workdir, "--config.train.steps=25")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "30.orbax-checkpoint-tmp is a checkpoint whose save never finished" in resumed.stderr
    assert re.search(r"checkpoints/20 could not be read .*; using the one before it", resumed.stderr)
    assert f"resumed from {checkpoints}/10" in resumed.stdout
    assert (checkpoints / "20.unreadable").is_dir()  # kept for inspection
    assert sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())[-1] == 25


# ----------------------------------------------------------------------------------------------------------------
# Disk full, unwritable directory


def test_full_disk_is_a_clear_error_and_keeps_earlier_checkpoints(finished_run, tmp_path):
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    before = {p: snapshot(workdir / "checkpoints" / p) for p in ("10", "20")}

    def small_files():  # every file this process writes stops growing at 64 KiB: a disk that fills up
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    result = subprocess.run(command(workdir, "--config.train.steps=40", "--config.checkpoint.every=10"), cwd=REPO,
                            env=env(), capture_output=True, text=True, timeout=600, preexec_fn=small_files)
    # orbax logs the failed write from its own thread, into RUN/logs/train.log: the terminal gets one line.
    one_line_error(result, 1, r"could not write the checkpoint of step 30 to .*checkpoints \(File too large, "
                              r"errno 27\); the earlier checkpoints are intact \(steps: 10, 20\)")
    assert result.stderr.count("Event loop is closed") == 0 and "absl" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr[-3000:]
    assert "File too large" in (workdir / "logs" / "train.log").read_text()
    assert {p: snapshot(workdir / "checkpoints" / p) for p in ("10", "20")} == before
    assert load_run(workdir).step == 20


def test_unwritable_run_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run(blocker / "run", "--config.train.steps=5")
    one_line_error(result, 2, rf"cannot write to the run directory {blocker}/run: Not a directory; choose a "
                              "writable --workdir")


# ----------------------------------------------------------------------------------------------------------------
# Non-finite losses


def test_non_finite_loss_stops_keeping_the_last_checkpoint(finished_run, tmp_path):
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    before = snapshot(workdir / "checkpoints")
    result = run(workdir, "--config.train.steps=40", "--config.optim.lr=1e30", "--config.optim.min_lr=1e30",
                 "--config.optim.grad_clip=0", "--config.checkpoint.every=10")
    one_line_error(result, 1, r"(loss|grad norm|param norm) became (nan|inf) at step 2\d; the checkpoint of step 20 "
                              r"is kept")
    assert snapshot(workdir / "checkpoints") == before


def test_skipping_non_finite_steps_leaves_the_state_unchanged():
    """train.nonfinite=skip: a batch that makes the loss non-finite changes nothing but the step count."""
    cfg = load_config(None, ["model.num_layers=1", "model.d_model=32", "model.num_heads=2", "model.block_size=16",
                             "model.tie_embeddings=false", "model.dtype=float16", "train.batch_size=4",
                             "train.nonfinite=skip"])
    built = setup(cfg, ModelConfig.from_config(cfg.model, vocab_size=50))
    step = make_train_step(built.graphdef, built.tx, built.schedule, grad_accum=1, seed=0, skip_nonfinite=True)
    state = built.init(0)
    table = state.params["wte"]["embedding"]
    # Token 7's embedding is finite in the float32 weights but overflows float16: any batch holding it fails.
    table[...] = table[...].at[7].set(1e5)
    good = np.random.default_rng(0).integers(8, 50, (4, 17)).astype(np.int32)
    bad = good.copy()
    bad[0, 3] = 7
    before = [np.asarray(x) for x in jax.tree.leaves(state)]
    state, metrics = step(state, bad)
    assert int(metrics["skipped"]) == 1 and not np.isfinite(float(metrics["loss"]))
    after = [np.asarray(x) for x in jax.tree.leaves(state)]
    assert int(state.step) == 1
    for x, y in zip(before[1:], after[1:]):  # everything but the step counter, bit for bit
        assert np.array_equal(x, y)
    state, metrics = step(state, good)
    assert int(metrics["skipped"]) == 0 and np.isfinite(float(metrics["loss"])) and int(state.step) == 2
    assert not all(np.array_equal(x, y) for x, y in zip(after[1:], [np.asarray(v) for v in jax.tree.leaves(state)][1:]))


def test_skip_mode_gives_up_after_too_many_in_a_row(tmp_path):
    result = run(tmp_path / "run", "--config.train.steps=40", "--config.optim.lr=1e30", "--config.optim.min_lr=1e30",
                 "--config.optim.grad_clip=0", "--config.train.nonfinite=skip",
                 "--config.train.max_consecutive_skips=3")
    one_line_error(result, 1, r"became (nan|inf) at step \d+, 4 skipped steps in a row "
                              r"\(train.max_consecutive_skips=3\)")
    assert "update skipped (1 so far)" in result.stderr


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint contents, best checkpoint, another mesh, fine-tuning


def test_checkpoint_holds_no_pickle_and_records_its_position(finished_run):
    step_dir = finished_run / "checkpoints" / "20"
    for path in step_dir.rglob("*"):
        if not path.is_file():
            continue
        in_array_store = path.name == "manifest.ocdbt" or path.parent.name == "d"  # tensorstore's own format
        if not in_array_store and path.name != "commit_success.txt":
            json.loads(path.read_text())  # everything else is JSON
    meta = json.loads((step_dir / "meta" / "metadata").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["step"] == 20 and meta["seed"] == 1337
    assert meta["data"]["next_step"] == 20 and meta["data"]["batch_size"] == 32
    config = json.loads((step_dir / "config" / "metadata").read_text())
    assert config["model"]["d_model"] == 64


def test_keep_best_saves_the_lowest_validation_loss(tmp_path):
    result = run(tmp_path / "run", "--config.train.steps=30", "--config.train.eval_every=10",
                 "--config.checkpoint.keep_best=true", "--config.optim.lr=3e-3")
    assert result.returncode == 0, result.stderr[-3000:]
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if "val_loss" in line]
    best_step = min((r for r in evals if r["step"] > 0), key=lambda r: r["val_loss"])["step"]
    assert [p.name for p in (tmp_path / "run" / "checkpoints_best").iterdir() if p.name.isdigit()] == [str(best_step)]
    assert load_run(tmp_path / "run", best=True).step == best_step


def test_restore_onto_other_meshes(tmp_path):
    """Saved with fsdp=8; continued with data=2 x fsdp=4; sampled from on 8 devices and on 1."""
    workdir = tmp_path / "run"
    first = run(workdir, "--config.train.steps=10", "--config.mesh.data=1", "--config.mesh.fsdp=8", devices=8)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "fsdp 8" in first.stdout
    more = run(workdir, "--config.train.steps=20", "--config.mesh.data=2", "--config.mesh.fsdp=4", devices=8)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resumed from" in more.stdout and "mesh: data 2 x fsdp 4 x" in more.stdout
    samples = []
    for devices in (8, 1):
        result = subprocess.run([sys.executable, "-m", "gptjax.sample", "--workdir", str(workdir), "--temperature",
                                 "0", "--max_new_tokens", "30", "--prompt", "def "], cwd=REPO, env=env(devices),
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        samples.append(result.stdout)
    assert samples[0] == samples[1] and len(samples[0]) > 30


def test_init_from_another_run(finished_run, tmp_path):
    result = run(tmp_path / "tuned", "--config.train.steps=5", "--config.train.eval_every=5",
                 f"--config.checkpoint.init_from={finished_run}", "--config.optim.lr=1e-4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"initialized from {finished_run} step 20 (weights only; the optimizer starts afresh)" in result.stdout
    tuned = [json.loads(line) for line in (tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()]
    # Starting from trained weights: the first validation loss is far below an untrained model's (ln 96 ~ 4.6).
    assert tuned[0]["step"] == 0 and tuned[0]["val_loss"] < 3.6
    # A specific step, and an architecture that does not match.
    step10 = run(tmp_path / "from10", "--config.train.steps=1",
                 f"--config.checkpoint.init_from={finished_run}/checkpoints/10")
    assert step10.returncode == 0 and "step 10 (weights only" in step10.stdout
    wider = run(tmp_path / "wider", "--config.train.steps=1", "--config.model.d_model=96",
                f"--config.checkpoint.init_from={finished_run}")
    one_line_error(wider, 2, r"init_from=.* holds another architecture than this config sets: model.d_model=96 "
                             r"\(the source has 64\)")


# ----------------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2 (or 1), nothing in the run directory touched


def shard_dir(root: Path, tokens: np.ndarray, vocab: int) -> Path:
    for split in ("train", "val"):
        write_shard(root / split / "00000.ds", [tokens], tokenizer_name="test", vocab_size=vocab)
    return root


@pytest.mark.parametrize("args, code, pattern", [
    (["--config.model.num_layer=3"], 2, r"unknown key model.num_layer \(did you mean model.num_layers\?\)"),
    (["--config.train.steps=ten"], 2, r"train.steps must be an integer, got 'ten'"),
    (["--config.model.d_model=128"], 2, r"holds a run with model.d_model=64, not 128"),
    (["--config.train.steps=30", "--config.mesh.data=3"], 2, r"mesh .* needs 3 devices, but there are 1"),
])
def test_bad_input_leaves_the_run_untouched(finished_run, args, code, pattern):
    before = snapshot(finished_run)
    one_line_error(run(finished_run, *args), code, pattern)
    assert snapshot(finished_run) == before


@pytest.mark.parametrize("case", ["vocab_size", "block_size", "init_from", "download"])
def test_a_refused_start_leaves_nothing_behind_and_can_be_tried_again(finished_run, tmp_path, case):
    args, pattern = {
        "vocab_size": (["--config.model.vocab_size=10"], r"model.vocab_size=10 is smaller than the tokenizer's"),
        "block_size": (["--config.data.max_chars=600"], r"block size 64 is larger than"),
        "init_from": ([f"--config.checkpoint.init_from={finished_run}", "--config.model.d_model=32"],
                      r"model.d_model=32 \(the source has 64\)"),
        "download": (["--config.data.source=text", f"--config.data.path={tmp_path / 'gone.txt'}",
                      "--config.data.url=http://127.0.0.1:9/input.txt"], r"the download from .* failed"),
    }[case]
    workdir = tmp_path / "runs" / "x"
    one_line_error(run(workdir, "--config.train.steps=2", *args), 2, pattern)
    assert not (tmp_path / "runs").exists()  # not even the parent it made for it
    # A directory that was there (empty) is left as it was.
    workdir.mkdir(parents=True)
    one_line_error(run(workdir, "--config.train.steps=2", *args), 2, pattern)
    assert list(workdir.iterdir()) == []
    if case == "vocab_size":  # the corrected command is not refused as "a run with other settings"
        retried = run(workdir, "--config.train.steps=2")
        assert retried.returncode == 0, retried.stderr[-3000:]


def test_checkpoint_from_another_format_version(finished_run, tmp_path):
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    meta_file = workdir / "checkpoints" / "20" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "format_version": 99, "gptjax_version": "9.0"}))
    before = snapshot(workdir)
    one_line_error(run(workdir, "--config.train.steps=30"), 1,
                   r"checkpoints/20 has format version 99 \(gptjax 9.0\); this gptjax .* reads versions 1, 2")
    assert snapshot(workdir) == before


def test_token_ids_beyond_the_vocabulary(tmp_path):
    shards = shard_dir(tmp_path / "shards", np.arange(5000) % 1000, vocab=1000)
    result = run(tmp_path / "run", "--config.data.source=shards", f"--config.data.shards={shards}",
                 "--config.data.tokenizer=byte", "--config.train.steps=2")
    one_line_error(result, 2, r"the data holds token id 999, beyond the model's vocabulary of 2\d\d \(byte\)")


def test_missing_and_truncated_shards(tmp_path):
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    one_line_error(run(tmp_path / "a", "--config.data.source=shards", f"--config.data.shards={empty}",
                       "--config.data.tokenizer=byte"), 2, r"no token shards \(\*.ds\) in .*empty/train")
    shards = shard_dir(tmp_path / "shards", np.arange(5000) % 200, vocab=256)
    ds = shards / "train" / "00000.ds"
    ds.write_bytes(ds.read_bytes()[:-3])
    one_line_error(run(tmp_path / "b", "--config.data.source=shards", f"--config.data.shards={shards}",
                       "--config.data.tokenizer=byte"), 2, r"00000.ds is truncated")


def test_block_size_larger_than_any_document_stream(tmp_path):
    shards = shard_dir(tmp_path / "shards", np.arange(50) % 200, vocab=256)
    one_line_error(run(tmp_path / "run", "--config.data.source=shards", f"--config.data.shards={shards}",
                       "--config.data.tokenizer=byte"), 2, r"block size 64 is larger than any token stream")
