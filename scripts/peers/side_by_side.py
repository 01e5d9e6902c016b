"""gptjax's train step against its peers' on one CPU, alternating (gptjax, peer, gptjax, peer, ...), so that a
ratio compares runs taken minutes apart on the same machine state.

    python scripts/peers/side_by_side.py --shape gpt2 --rounds 2 --out /tmp/peers \
        --peer hf=/path/to/hf-venv/bin/python --peer litgpt=/path/to/litgpt-venv/bin/python

Each peer runs in its own environment (the python given), outside gptjax's: `hf` is transformers' Trainer
(hf_trainer_step.py), `litgpt` litgpt's pretraining step under torch.compile (litgpt_step.py), `litgpt-eager` the
same without compiling. gptjax's figure is `gptjax.bench` on the same shape: `--shape gpt2` is the GPT-2-small
shape (1 x 1024 tokens, f32, AdamW, layers unrolled as on a CPU), `--shape baby` the baby Shakespeare recipe
(12 x 64, f32). Every run's JSON is kept in --out; the table gives tokens/s and, for each peer run, gptjax's
tokens/s in the runs just before and after it over the peer's (above 1: gptjax is faster).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GPTJAX = {
    "gpt2": ["--config", "gpt2_small", "--config.train.batch_size=1", "--config.train.grad_accum=1",
             "--config.model.dtype=float32", "--config.model.scan_layers=false", "--steps", "5", "--warmup", "1"],
    "baby": ["--config", "shakespeare_char_cpu", "--steps", "100"],
}
PEERS = {"hf": ("hf_trainer_step.py", []), "litgpt": ("litgpt_step.py", []),
         "litgpt-eager": ("litgpt_step.py", ["--no-compile"])}
PEER_STEPS = {"gpt2": ["--steps", "5", "--warmup", "2"], "baby": ["--steps", "100", "--warmup", "10"]}


def run(command: list[str], json_path: Path) -> dict:
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = ((done.stderr or done.stdout).strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"failed (exit {done.returncode}): {last}")
    return json.loads(json_path.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(GPTJAX), default="gpt2")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=PYTHON",
                        help=f"a peer ({', '.join(PEERS)}) and the python of its environment")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give at least 1")
    peers = []
    for given in args.peer:
        name, _, python = given.partition("=")
        if name not in PEERS or not python:
            parser.error(f"--peer {given}: give NAME=PYTHON with NAME one of {', '.join(PEERS)}")
        if not (Path(python).is_file() and os.access(python, os.X_OK)):
            parser.error(f"--peer {given}: {python} is not an executable python (the peer's environment's)")
        peers.append((name, python))
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        parser.error(f"--out {args.out} exists and is not an empty directory; a measurement keeps its runs: give a "
                     "new directory")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"--out {args.out}: cannot create it ({e.strerror})")
    rows = []  # (name, round, tokens/s, matmul GFLOP/s)
    for r in range(args.rounds):
        for name, python in [("gptjax", sys.executable)] + peers:
            path = args.out / f"{args.shape}_{name}_{r}.json"
            if name == "gptjax":
                result = run([python, "-m", "gptjax.bench", *GPTJAX[args.shape], "--json", str(path)], path)
                rows.append((name, r, result["tokens_per_sec"], result["matmul_peak_flops"] / 1e9))
            else:
                script, extra = PEERS[name]
                result = run([python, str(HERE / script), "--shape", args.shape, *PEER_STEPS[args.shape], *extra,
                              "--json", str(path)], path)
                rows.append((name, r, result["tokens_per_second"], result["matmul_peak_gflops"]))
            print(f"  {name} round {r}: {rows[-1][2]:,.1f} tokens/s (f32 4096^3 matmul {rows[-1][3]:.0f} GFLOP/s)",
                  flush=True)
    own = [row for row in rows if row[0] == "gptjax"]
    print(f"\n{args.shape}: tokens/s per run, and gptjax over the peer (gptjax's runs either side of it)")
    for name, _ in peers:
        ratios = []
        for _, r, tps, _ in (row for row in rows if row[0] == name):
            around = [o[2] for o in own if o[1] in (r, r + 1)]
            ratios.append(statistics.fmean(around) / tps)
        runs = [f"{row[2]:,.1f}" for row in rows if row[0] == name]
        print(f"  {name:13s} {', '.join(runs)} tokens/s; gptjax / {name}: {', '.join(f'{x:.2f}' for x in ratios)}")
    print(f"  {'gptjax':13s} {', '.join(f'{o[2]:,.1f}' for o in own)} tokens/s")


if __name__ == "__main__":
    main()
