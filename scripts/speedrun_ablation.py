"""The speedrun ablation of docs/benchmarks.md ("Faster to a loss"): nanoGPT's baby Shakespeare recipe with
AdamW, then Muon, each recipe option alone on top of Muon, and all together, every one timed to the same
validation loss over three seeds by `python -m gptjax.bench --to-loss`.

    python scripts/speedrun_ablation.py /path/to/tinyshakespeare.txt --out runs/ablation [--target 1.886]
        [--only NAME,NAME]

Prints one markdown row per variant as it finishes, and writes OUT/NAME.json (the harness's figures).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

MUON = ["optim.name=muon", "train.steps=600", "optim.decay_steps=600"]
VARIANTS = {
    "adamw": [],  # the recipe as nanoGPT runs it: 2,000 steps
    "muon": MUON,
    "muon + qk_norm": MUON + ["model.qk_norm=true"],
    "muon + logit_softcap=30": MUON + ["model.logit_softcap=30"],
    "muon + zero_init_out": MUON + ["model.zero_init_out=true"],
    "muon + z_loss=1e-4": MUON + ["train.z_loss=1e-4"],
    "muon + wsd": MUON + ["optim.schedule=wsd"],
    "muon + all four": MUON + ["model.qk_norm=true", "model.logit_softcap=30", "model.zero_init_out=true",
                               "train.z_loss=1e-4"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text", help="tinyshakespeare.txt")
    parser.add_argument("--out", required=True, help="a new directory for the runs and figures")
    parser.add_argument("--target", type=float, default=1.886, help="the validation loss to reach")
    parser.add_argument("--seeds", default="3")
    parser.add_argument("--eval_every", type=int, default=50)
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    args = parser.parse_args()
    out = Path(args.out)
    names = args.only.split(",") if args.only else list(VARIANTS)
    print("| recipe | reached | steps to target | tokens | whole command, s | in the run, s |\n|---|---|---|---|---|---|")
    for name in names:
        slug = name.replace(" + ", "+").replace(" ", "_").replace("=", "")
        overrides = [f"data.path={args.text}", f"train.eval_every={args.eval_every}", "checkpoint.every=0",
                     *VARIANTS[name]]
        figures = out / f"{slug}.json"
        command = [sys.executable, "-m", "gptjax.bench", "--to-loss", str(args.target), "--seeds", args.seeds,
                   "--config", "shakespeare_char_cpu", "--workdir", str(out / slug), "--json", str(figures),
                   *(f"--config.{o}" for o in overrides)]
        out.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"| {name} | failed: {(done.stderr.strip().splitlines() or ['?'])[-1]} |", flush=True)
            continue
        r = json.loads(figures.read_text())

        def spread(key, fmt="{:,.0f}"):
            if key not in r:
                return "-"
            s = r[key]
            return f"{fmt.format(s['mean'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"

        print(f"| {name} | {r['reached']} of {len(r['runs'])} | {spread('step')} | {spread('tokens')} | "
              f"{spread('wall_seconds', '{:.1f}')} | {spread('seconds', '{:.1f}')} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
