"""scripts/gpu_check.py, the one command run whenever a GPU is lent: its dry run on this machine lists every
command and checks that each parses (its real run is recorded in docs/benchmarks.md)."""

import importlib.util
import subprocess
import sys

from conftest import REPO


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dry_run_lists_every_command_and_each_parses(tmp_path):
    done = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    listed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("ok ")]
    assert {"tests", "kernels", "medium", "fit", "first", "loss"} <= set(listed)
    assert "0 do not parse" in done.stdout
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_a_command_that_does_not_parse_is_named(tmp_path):
    script = load_script()
    step = next(s for s in script.steps(tmp_path) if s["name"] == "medium")
    assert script.check_parses(step) is None
    broken = dict(step, argv=[*step["argv"], "--config.model.num_layer=3"])
    assert "unknown key model.num_layer" in script.check_parses(broken)
    broken = dict(step, argv=[*step["argv"], "--stepz", "3"])
    assert script.check_parses(broken).startswith("SystemExit")
