"""The GPU check: everything a CPU cannot prove, in one command that fits in 8 minutes on one H100/H200.

    python scripts/gpu_check.py --out gpu_check        # on the GPU machine: writes gpu_check/summary.{json,md}
    python scripts/gpu_check.py --dry-run              # anywhere: lists every command and checks that each parses

Steps, in order (each with its own time limit, so one that hangs cannot take the rest with it):
  tests        the GPU-only tests: cudnn and pallas against xla, forward and gradients, bf16, several shapes, GQA
  kernels      the benchmark harness on gpt2_small, bf16, with xla, cudnn and pallas at a batch that fills the GPU
  medium       gpt2_medium's MFU (against the published 989 TFLOP/s bf16 dense peak of an H100/H200)
  fit          the largest gpt2_small batch that fits, with remat none and full
  first step   time to the first step, cold (empty compilation cache) and warm (the same command again)
  loss         300 steps of the baby Shakespeare recipe on data that needs no network: the loss must fall

docs/gpu.md says what a CPU checks instead; record what this prints in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
BENCH = [PY, "-m", "gptjax.bench"]
SMALL = ["--config", "configs/gpt2_small.py", "--config.model.dtype=bfloat16", "--config.train.grad_accum=1"]
FIT_BATCHES = (32, 64, 128, 256)  # doubled until one does not fit


def steps(out: Path) -> list[dict]:
    """Every command of the check: name, argv, time limit (s), and what its result is read from."""
    plan = [dict(name="tests", timeout=150,
                 argv=[PY, "-m", "pytest", "-q", "tests/test_attention.py", "tests/test_packing.py", "-k", "on_gpu",
                       "-p", "no:cacheprovider", f"--junitxml={out / 'tests.xml'}"])]
    for kernel in ("xla", "cudnn", "pallas"):
        plan.append(dict(name=f"kernels {kernel}", timeout=90, json=out / f"small_{kernel}.json",
                         argv=BENCH + SMALL + [f"--config.model.attention={kernel}", "--config.train.batch_size=32",
                                               "--steps", "20", "--warmup", "3", "--loader_batches", "20",
                                               "--json", str(out / f"small_{kernel}.json")]))
    plan.append(dict(name="medium", timeout=90, json=out / "medium.json",
                     argv=BENCH + ["--config", "configs/gpt2_medium.py", "--config.model.dtype=bfloat16",
                                   "--config.model.attention=auto", "--config.train.batch_size=16",
                                   "--config.train.grad_accum=1", "--steps", "10", "--warmup", "2",
                                   "--loader_batches", "20", "--json", str(out / "medium.json")]))
    for remat in ("none", "full"):
        for batch in FIT_BATCHES:
            name = f"fit remat={remat} batch={batch}"
            plan.append(dict(name=name, timeout=40, json=out / f"fit_{remat}_{batch}.json", fit=(remat, batch),
                             argv=BENCH + SMALL + ["--config.model.attention=auto", f"--config.model.remat={remat}",
                                                   f"--config.train.batch_size={batch}", "--steps", "1", "--warmup",
                                                   "0", "--peak_size", "0", "--loader_batches", "1",
                                                   "--json", str(out / f"fit_{remat}_{batch}.json")]))
    for when in ("cold", "warm"):  # the same command twice, sharing one fresh cache
        plan.append(dict(name=f"first step {when}", timeout=90, json=out / f"first_{when}.json", cache=True,
                         argv=BENCH + SMALL + ["--config.model.attention=auto", "--config.train.batch_size=16",
                                               "--steps", "2", "--warmup", "0", "--peak_size", "0",
                                               "--loader_batches", "1", "--json", str(out / f"first_{when}.json")]))
    plan.append(dict(name="loss", timeout=120, metrics=out / "loss_run" / "metrics.jsonl",
                     argv=[PY, "-m", "gptjax.train", "--config", "configs/shakespeare_char.py",
                           "--workdir", str(out / "loss_run"), "--config.data.source=stdlib",
                           "--config.data.max_chars=2000000", "--config.train.steps=300",
                           "--config.train.eval_every=100", "--config.train.log_every=10",
                           "--config.train.sample_tokens=0", "--config.model.dtype=bfloat16",
                           "--config.model.attention=auto", "--config.model.attn_dropout=0"]))
    return plan


def check_parses(step: dict) -> str | None:
    """None when the command's arguments and config overrides are accepted, else why not (nothing runs)."""
    argv = step["argv"]
    if argv[1:3] == ["-m", "pytest"]:
        done = subprocess.run([*argv[:3], "--collect-only", "-q", *[a for a in argv[3:] if "junitxml" not in a]],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
        return None if done.returncode == 0 else (done.stdout + done.stderr)[-500:]
    from gptjax.command import parse_args
    from gptjax.config import ConfigError, load_config

    module = argv[2]

    def options(parser):  # the tool's own options, as its main() declares them
        if module == "gptjax.bench":
            for flag in ("--steps", "--warmup", "--peak_size", "--loader_batches", "--vocab_size"):
                parser.add_argument(flag, type=int)
            parser.add_argument("--json")

    try:
        args, overrides = parse_args(argv[3:], prog=module, doc=module, add_arguments=options)
        load_config(str(REPO / args.config), overrides)
    except (SystemExit, ConfigError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def run(step: dict, env: dict) -> dict:
    began = time.perf_counter()
    try:
        done = subprocess.run(step["argv"], capture_output=True, text=True, cwd=REPO, env=env,
                              timeout=step["timeout"])
        rc, tail = done.returncode, (done.stdout + done.stderr)[-1500:]
    except subprocess.TimeoutExpired:
        rc, tail = "timeout", f"stopped after {step['timeout']} s"
    result = {"name": step["name"], "rc": rc, "seconds": round(time.perf_counter() - began, 1)}
    if rc != 0:
        result["tail"] = tail
    if rc == 0 and "json" in step:
        figures = json.loads(Path(step["json"]).read_text())
        result.update({k: figures.get(k) for k in ("tokens_per_sec", "mfu_published", "step_ms", "compile_s",
                                                   "time_to_first_step_s", "peak_bytes", "device")})
    if rc == 0 and "metrics" in step:
        losses = [json.loads(line)["loss"] for line in Path(step["metrics"]).read_text().splitlines()
                  if '"loss"' in line]
        result.update(first_loss=losses[0], last_loss=losses[-1], loss_fell=losses[-1] < losses[0] - 1.0)
    return result


def markdown(results: list[dict]) -> str:
    lines = ["# GPU check", "", f"{time.strftime('%Y-%m-%d %H:%M')}, `python scripts/gpu_check.py`", "",
             "| step | rc | s | tokens/s | MFU (published peak) | first step s | notes |", "|---|---|---|---|---|---|---|"]
    for r in results:
        mfu = f"{100 * r['mfu_published']:.1f}%" if r.get("mfu_published") else ""
        tps = f"{r['tokens_per_sec']:,.0f}" if r.get("tokens_per_sec") else ""
        first = f"{r['time_to_first_step_s']:.1f}" if r.get("time_to_first_step_s") else ""
        notes = f"loss {r['first_loss']:.2f} -> {r['last_loss']:.2f}" if "last_loss" in r else ""
        if r["rc"] != 0:
            notes = ((r.get("tail") or "").strip().splitlines() or [""])[-1][:120]
        lines.append(f"| {r['name']} | {r['rc']} | {r['seconds']} | {tps} | {mfu} | {first} | {notes} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check", help="directory for the results (default gpu_check)")
    parser.add_argument("--dry-run", action="store_true", help="list the commands and check that each parses")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    plan = steps(out)
    if args.dry_run:
        bad = 0
        for step in plan:
            problem = check_parses(step)
            bad += problem is not None
            print(f"{'ok ' if problem is None else 'BAD'} {step['name']:<24} {step['timeout']:>4} s  "
                  f"{' '.join(step['argv'][1:])}" + (f"\n    {problem}" if problem else ""))
        print(f"{len(plan)} commands, {sum(s['timeout'] for s in plan)} s at most; {bad} do not parse")
        return 1 if bad else 0
    out.mkdir(parents=True, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="gptjax-gpu-check-cache-")
    results, too_big = [], set()
    for step in plan:
        if "fit" in step and step["fit"][0] in too_big:
            continue  # a smaller batch with this remat did not fit: a larger one will not either
        env = {**os.environ, "GPTJAX_CACHE_DIR": cache if step.get("cache") else tempfile.mkdtemp()}
        results.append(run(step, env))
        print(json.dumps(results[-1]), flush=True)
        if "fit" in step and results[-1]["rc"] != 0:
            too_big.add(step["fit"][0])
    (out / "summary.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(results))
    print(markdown(results))
    return 0 if all(r["rc"] == 0 for r in results if not r["name"].startswith("fit")) else 1


if __name__ == "__main__":
    sys.exit(main())
