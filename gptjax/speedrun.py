"""Time to a validation loss (`python -m gptjax.bench --to-loss L`): steps, tokens and wall time to reach L,
over several seeds.

    python -m gptjax.bench --to-loss 1.88 --config shakespeare_char_cpu --seeds 1337,1,2 --workdir runs/speedrun

Each seed is one `python -m gptjax.train` command with train.target_loss=L and its own run directory (WORKDIR/
seed_S), run in its own process as a user would run it, start-up, data preparation and compilation included. The
run evaluates every train.eval_every steps and stops at the first evaluation at or below L, so the steps found
are a multiple of train.eval_every: a smaller one finds the crossing more exactly and costs more evaluation time.

Reported per seed: the step and tokens at which L was reached, the whole command's wall time (what nanoGPT's
"about 3 minutes" measures), and the run's own seconds to the target; a seed that ends train.steps above L is
reported with its best validation loss. Then the mean and spread (min to max) over the seeds that reached it.
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gptjax.config import ConfigError, load_config
from gptjax.errors import GptjaxError


def parse_seeds(text: str) -> list[int]:
    """'1337,1,2' -> [1337, 1, 2]; '3' -> 3 seeds [1337, 1, 2] (train.seed's default, then 1, 2, ...)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a count (3) or seeds separated by commas (1337,1,2)") from None
    if not values:
        raise ConfigError("--seeds is empty: give a count (3) or seeds separated by commas (1337,1,2)")
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise ConfigError(f"--seeds {text}: at least one seed")
        return [1337, *range(1, values[0])]
    if len(set(values)) != len(values):
        raise ConfigError(f"--seeds {text}: a seed is named twice")
    return values


def result_of(run_dir: Path) -> dict:
    """What a run's metrics.jsonl says about its target: {reached, step, tokens, seconds, best_val_loss}."""
    best, target = math.inf, None
    metrics = run_dir / "metrics.jsonl"
    for line in metrics.read_text().splitlines() if metrics.exists() else []:
        record = json.loads(line)
        if "val_loss" in record:
            best = min(best, record["val_loss"])
        if "reached_target" in record:
            target = record
    if target is None:
        return {"reached": False, "best_val_loss": best if math.isfinite(best) else None}
    return {"reached": True, "step": target["step"], "tokens": target["tokens"], "seconds": target["seconds"],
            "val_loss": target["reached_target"], "best_val_loss": best}


def time_to_loss(target: float, config: str | None, overrides: list[str], seeds: list[int],
                 workdir: Path | None = None, python: str = sys.executable) -> dict:
    """Runs one training command per seed (see the module's doc) in workdir (default: a new temporary
    directory); returns every figure."""
    if target <= 0:
        raise ConfigError(f"--to-loss {target:g}: give the validation loss to reach (positive)")
    cfg = load_config(config, overrides)  # a bad config is named once here, not once per seed
    if workdir is not None and workdir.exists() and not workdir.is_dir():
        raise GptjaxError(f"--workdir {workdir} is a file, not a directory: give a new directory")
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise GptjaxError(f"--workdir {workdir} is not empty; the runs of a measurement start fresh: give a new "
                          "directory")
    try:
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="gptjax-speedrun-"))
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GptjaxError(f"--workdir {workdir}: cannot create it ({e.strerror}); give a directory you can "
                          "write to") from None
    print(f"runs in {workdir}", flush=True)
    runs = []
    for seed in seeds:
        run_dir = workdir / f"seed_{seed}"
        command = [python, "-m", "gptjax.train", *(["--config", config] if config else []),
                   "--workdir", str(run_dir), *(f"--config.{o}" for o in overrides),
                   f"--config.train.seed={seed}", f"--config.train.target_loss={target}",
                   "--config.train.sample_tokens=0"]
        log = workdir / f"seed_{seed}.log"
        began = time.perf_counter()
        with log.open("w") as out:
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - began
        if code != 0:
            tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
            raise GptjaxError(f"seed {seed}: the training command failed (exit {code}): {tail[0]}; its output is "
                              f"in {log}")
        run = {"seed": seed, "wall_seconds": round(wall, 2), **result_of(run_dir)}
        runs.append(run)
        print(describe(run, target), flush=True)
    reached = [r for r in runs if r["reached"]]
    summary = {"target": target, "config": config, "overrides": overrides, "seeds": seeds, "runs": runs,
               "block_size": cfg.model.block_size, "batch_size": cfg.train.batch_size,
               "eval_every": cfg.train.eval_every, "reached": len(reached)}
    for key in ("step", "tokens", "wall_seconds", "seconds"):
        values = [r[key] for r in reached]
        if values:
            summary[key] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}
    return summary


def describe(run: dict, target: float) -> str:
    if not run["reached"]:
        best = run["best_val_loss"]
        return (f"seed {run['seed']}: did not reach {target:g} (best val loss "
                f"{'none' if best is None else f'{best:.4f}'}), {run['wall_seconds']:.1f}s")
    return (f"seed {run['seed']}: val loss {run['val_loss']:.4f} at step {run['step']:,} ({run['tokens']:,} tokens); "
            f"{run['wall_seconds']:.1f}s for the whole command, {run['seconds']:.1f}s in the run")


def format_summary(summary: dict) -> str:
    lines = [f"target val loss {summary['target']:g}: reached by {summary['reached']} of {len(summary['runs'])} "
             f"seeds (evaluated every {summary['eval_every']} steps)"]
    for key, name in (("step", "steps"), ("tokens", "tokens"), ("wall_seconds", "whole command, s"),
                      ("seconds", "in the run, s")):
        if key in summary:
            s = summary[key]
            lines.append(f"  {name:<18} mean {s['mean']:,.1f}  (min {s['min']:,.1f}, max {s['max']:,.1f})")
    return "\n".join(lines)


def command_line(argv: list[str]) -> str:
    return " ".join(["python -m gptjax.bench", *map(shlex.quote, argv)])
