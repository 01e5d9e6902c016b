"""Two processes x 2 CPU devices on 127.0.0.1 train exactly as one process with 4 devices."""

import json
import os
import re
import socket
import subprocess
import sys

from conftest import REPO

TINY = ["--config.data.max_chars=200000", "--config.model.num_layers=2", "--config.model.d_model=64",
        "--config.model.num_heads=2", "--config.model.block_size=32", "--config.train.batch_size=8",
        "--config.train.steps=10", "--config.train.log_every=1", "--config.train.eval_every=5",
        "--config.train.eval_batches=2", "--config.train.sample_tokens=0"]
SEPARATOR = "-" * 80


def env(local_devices: int) -> dict:
    # PJRT_NPROC at least twice the local device count, or CPU collectives deadlock on 2 cores.
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PJRT_NPROC": str(2 * local_devices),
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={local_devices}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(run_dir):
    return [r.get("loss", r.get("val_loss")) for r in map(json.loads, (run_dir / "metrics.jsonl").open())]


def test_two_processes_match_one_process_with_the_same_devices(tmp_path):
    port = free_port()
    # Both runs end with a sample, decoded by every process together over the 4 devices.
    sample = [a for a in TINY if "sample_tokens" not in a] + ["--config.train.sample_tokens=24"]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "gptjax.train", "--workdir", str(tmp_path / "two"), *sample,
         f"--config.distributed.coordinator_address=127.0.0.1:{port}", "--config.distributed.num_processes=2",
         f"--config.distributed.process_id={i}"], cwd=REPO, env=env(2), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    single = subprocess.run([sys.executable, "-m", "gptjax.train", "--workdir", str(tmp_path / "one"), *sample],
                            cwd=REPO, env=env(4), capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    assert "mesh: data 4 x" in outputs[0] and "mesh: data 4 x" in single.stdout  # the same 4-device mesh both ways
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert len(two) == len(one) == 13  # 10 training lines, 3 evaluations; written once, by process 0
    assert max(abs(a - b) for a, b in zip(two, one)) < 1e-5
    assert SEPARATOR not in outputs[1]  # printed by process 0 only
    assert outputs[0].split(SEPARATOR)[1] == single.stdout.split(SEPARATOR)[1]


def test_a_dead_process_stops_the_others_within_the_heartbeat_timeout(tmp_path):
    import time

    port = free_port()
    args = [a for a in TINY if "train.steps" not in a] + ["--config.train.steps=100000",
                                                          "--config.distributed.heartbeat_timeout=5",
                                                          "--config.checkpoint.every=10"]
    logs = [open(tmp_path / f"p{i}.log", "w+") for i in range(2)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "gptjax.train", "--workdir", str(tmp_path / "run"), *args,
         f"--config.distributed.coordinator_address=127.0.0.1:{port}", "--config.distributed.num_processes=2",
         f"--config.distributed.process_id={i}"], cwd=REPO, env=env(2), stdout=logs[i], stderr=subprocess.STDOUT)
        for i in range(2)]
    try:
        deadline = time.time() + 300
        while "step     20/" not in (tmp_path / "p1.log").read_text():  # training, collectives running
            assert time.time() < deadline and procs[1].poll() is None, (tmp_path / "p1.log").read_text()[-2000:]
            time.sleep(0.5)
        procs[1].kill()
        killed = time.time()
        returncode = procs[0].wait(timeout=60)  # never hangs: the coordinator notices the missing heartbeats
        assert returncode == 1 and time.time() - killed < 60  # not SIGABRT (-6) with a native stack dump
        log = (tmp_path / "p0.log").read_text()
        errors = [line for line in log.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and log.strip().splitlines()[-1] == errors[0], log[-3000:]
        assert re.search(r"^error: lost contact with process 1 of this multi-host run .*; restart "
                         r"every process with the same command to resume from .*checkpoints/\d+", errors[0]), errors[0]
        assert "Fatal Python error" not in log and "Stack trace" not in log
    finally:
        for p in procs:
            p.kill()


def test_sigterm_to_one_process_stops_all_after_the_same_step(tmp_path):
    """A preempted host: JAX's preemption service tells every process, they agree on a step, save, and exit 0."""
    import re
    import signal
    import time

    port = free_port()
    args = [a for a in TINY if "train.steps" not in a] + ["--config.train.steps=100000"]
    logs = [tmp_path / f"p{i}.log" for i in range(2)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "gptjax.train", "--workdir", str(tmp_path / "run"), *args,
         f"--config.distributed.coordinator_address=127.0.0.1:{port}", "--config.distributed.num_processes=2",
         f"--config.distributed.process_id={i}"], cwd=REPO, env=env(2), stdout=open(logs[i], "w"),
        stderr=subprocess.STDOUT) for i in range(2)]
    try:
        deadline = time.time() + 300
        while "step     15/" not in logs[1].read_text():
            assert time.time() < deadline and procs[1].poll() is None, logs[1].read_text()[-2000:]
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGTERM)
        assert [p.wait(timeout=120) for p in procs] == [0, 0], logs[0].read_text()[-2000:]
        stopped = [re.search(r"stopped by SIGTERM after step (\d+)", log.read_text()).group(1) for log in logs]
        assert stopped[0] == stopped[1] and (tmp_path / "run" / "checkpoints" / stopped[0]).is_dir()
    finally:
        for p in procs:
            p.kill()


def test_an_error_on_one_process_is_reported_by_the_others_instead_of_a_hang(tmp_path):
    # Only process 0 reads the text (the others wait for its data): a missing file fails there alone.
    port = free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "gptjax.train", "--workdir", str(tmp_path / "run"), *TINY,
         "--config.data.source=text", f"--config.data.path={tmp_path / 'missing.txt'}",
         f"--config.distributed.coordinator_address=127.0.0.1:{port}", "--config.distributed.num_processes=2",
         f"--config.distributed.process_id={i}"], cwd=REPO, env=env(2), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        (_, err0), (_, err1) = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode == 2 and err0.strip().splitlines()[-1].startswith("error: text file"), err0[-2000:]
    last = err1.strip().splitlines()[-1]
    assert procs[1].returncode == 1 and re.match(r"error: process 0 of this multi-host run stopped: text file .*"
                                                 r"missing.txt does not exist.*; restart every process", last), err1
    assert "Check failure stack trace" not in err1
