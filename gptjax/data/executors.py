"""Running datatrove pipelines: the executor a config asks for, its console output kept in log files, and what
its logs say afterwards (failed tasks and their errors, per-step counters).

datatrove logs every task to LOGGING_DIR/logs/task_NNNNN.log and, through loguru, to the terminal: its INFO lines and
each stats block (twice) buried prepare's own progress. Here the terminal copy goes to LOGGING_DIR/console.log
instead, with anything else the stage writes to stderr.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.logging import setup_default_logger

from gptjax import tracking
from gptjax.config import ConfigError
from gptjax.data import DataError

CONSOLE_LOG = "console.log"


@contextlib.contextmanager
def quiet(log: Path):
    """stderr, and datatrove's loguru console logger with it, appended to `log` while the block runs."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as sink, contextlib.redirect_stderr(sink):
        setup_default_logger()  # loguru holds the stderr object it was given: give it the redirected one
        try:
            yield
        finally:
            setup_default_logger()
    setup_default_logger()


class QuietLocalExecutor(LocalPipelineExecutor):
    """LocalPipelineExecutor whose tasks' console output goes to LOGGING_DIR/console.log, also in worker processes,
    where sys.stderr is the real one again."""

    def _launch_run_for_rank(self, *args, **kwargs):
        with quiet(Path(self.logging_dir.path) / CONSOLE_LOG):
            return super()._launch_run_for_rank(*args, **kwargs)


def make_executor(pipeline: list, logging_dir: Path, cfg, name: str = "gptjax"):
    """datatrove's executor of the configured kind. Slurm submits jobs and returns; ray needs `pip install ray`."""
    e = cfg.executor
    if e.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        # The job runs datatrove's launch_pickled_pipeline, installed beside this Python: put its directory
        # first on the job's PATH, so the job uses the environment that submitted it (a venv, a conda env).
        env = f'export PATH="{Path(sys.executable).parent}:$PATH"'
        return SlurmPipelineExecutor(pipeline, tasks=e.tasks, workers=e.workers, logging_dir=str(logging_dir),
                                     partition=e.partition, time=e.time, cpus_per_task=e.cpus_per_task,
                                     mem_per_cpu_gb=e.mem_per_cpu_gb, job_name=name, env_command=env)
    if e.kind == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("executor.kind='ray' needs ray, which is not installed: `pip install ray`, "
                              "or use executor.kind='local'")
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(pipeline, tasks=e.tasks, workers=e.workers, logging_dir=str(logging_dir),
                                   cpus_per_task=e.cpus_per_task, mem_per_cpu_gb=e.mem_per_cpu_gb)
    return QuietLocalExecutor(pipeline, tasks=e.tasks, workers=e.workers, logging_dir=str(logging_dir))


def run_datatrove(pipeline: list, logging_dir: Path, cfg) -> bool:
    """Runs a stage; False when it was submitted to Slurm and has not finished yet. A task that failed is a
    DataError naming the task and its error: at once on this machine and on Ray, on the first run after its
    Slurm job ended on Slurm (the run after that submits the unfinished tasks again)."""
    stage = f"{logging_dir.parent.name}/{logging_dir.name}"
    if cfg.executor.kind == "slurm":
        job, state = slurm_job(logging_dir)
        if state == "queued":
            tracking.echo(f"{stage}: Slurm job {job} is still queued or running; not submitted again")
            return False
        if state and state.startswith("unknown"):  # submitting again could run every task twice
            tracking.echo(f"{stage}: the state of Slurm job {job} is {state}; not submitted again")
            return False
        if state == "ended":
            (logging_dir / SLURM_JOB).rename(logging_dir / f"{SLURM_JOB}.ended")  # reported once, below
            if failed := failed_tasks(logging_dir, cfg.executor.tasks):
                raise task_failure(logging_dir, cfg, failed, f"in Slurm job {job} ",
                                   "those tasks are submitted again")
    try:
        with quiet(logging_dir / CONSOLE_LOG):
            executor = make_executor(pipeline, logging_dir, cfg)
            executor.run()
    except Exception:  # noqa: BLE001  (the executors re-raise a task's failure as whatever it was)
        if not failed_tasks(logging_dir, cfg.executor.tasks):
            raise
    else:
        if cfg.executor.kind == "slurm" and getattr(executor, "job_id", None) not in (None, -1):
            (logging_dir / SLURM_JOB).write_text(str(executor.job_id))
    failed = failed_tasks(logging_dir, cfg.executor.tasks)
    if not failed or cfg.executor.kind == "slurm":
        return not failed
    raise task_failure(logging_dir, cfg, failed, "", "finished tasks are skipped")


def task_failure(logging_dir: Path, cfg, failed: list[int], where: str, then: str) -> DataError:
    rank = failed[0]
    return DataError(f"{len(failed)} of {cfg.executor.tasks} tasks of {logging_dir.parent.name}/{logging_dir.name} "
                     f"failed {where}(task {rank}: {task_error(logging_dir, rank)}); its log: "
                     f"{logging_dir / 'logs' / f'task_{rank:05d}.log'}; fix the cause and run the same command: "
                     f"{then}")


SLURM_JOB = "slurm_job_id"  # in a stage's logging_dir: the Slurm job that runs its tasks, until it has ended


def slurm_job(logging_dir: Path) -> tuple[str | None, str | None]:
    """The stage's recorded Slurm job and its state: "queued" (squeue lists it, pending or running), "ended",
    "unknown: why" (squeue could not say), or (None, None) without a record."""
    path = logging_dir / SLURM_JOB
    if not path.exists():
        return None, None
    job = path.read_text().strip()
    try:
        listed = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return job, f"unknown: squeue did not run ({e})"
    if listed.returncode == 0:  # it lists nothing for a job that has just ended
        return job, "queued" if listed.stdout.strip() else "ended"
    if "invalid job id" in listed.stderr.lower():  # one it no longer knows
        return job, "ended"
    return job, f"unknown: squeue failed ({listed.stderr.strip()[:200] or f'exit {listed.returncode}'})"


def failed_tasks(logging_dir: Path, tasks: int) -> list[int]:
    done = {int(p.name) for p in (logging_dir / "completions").glob("*") if p.name.isdigit()}
    return [rank for rank in range(tasks) if rank not in done]


def task_error(logging_dir: Path, rank: int) -> str:
    """The last error line a task logged (datatrove logs a failed task's traceback), or a pointer to its log."""
    log = logging_dir / "logs" / f"task_{rank:05d}.log"
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log written"
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (errors[-1] if errors else lines[-1] if lines else "its log is empty")[:300]


def stage_stats(logging_dir: Path) -> list[dict]:
    """Per pipeline step of a finished datatrove stage: its name and counters (documents in/out, removals...)."""
    path = logging_dir / "stats.json"
    if not path.exists():
        return []
    rows = []
    for step in json.loads(path.read_text()):
        counters = {k: (v.get("total") if isinstance(v, dict) else v) for k, v in step.get("stats", {}).items()}
        rows.append({"step": step.get("name"), **counters})
    return rows
