"""Plot training runs, or a data-preparation report, to a PNG.

    python -m gptjax.plot runs/a runs/b --out loss.png --smooth 20     # loss curves of several runs, compared
    python -m gptjax.plot --data-report prepared/legal_web/report.json --out data.png

Runs: train loss (raw faint, smoothed by a trailing mean of --smooth log points) and val loss against the step
and, where RUN/config.yaml gives the batch shape, against tokens seen; each run is named by its directory.
Data report: train/val tokens per source, and documents removed per source and stage, by reason.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from gptjax.command import ArgumentParser
from gptjax.errors import GptjaxError, report_errors
from gptjax.rundir import RunDir


class PlotError(GptjaxError, ValueError):
    """Input that cannot be plotted; the message names the file and what is wrong with it."""


# ----------------------------------------------------------------------------------------------------------------
# Reading


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(training lines, evaluation lines) of RUN/metrics.jsonl."""
    path = RunDir(run_dir).metrics
    if not run_dir.is_dir():
        raise PlotError(f"{run_dir} is not a directory (expected a run directory written by gptjax.train)")
    if not path.exists():
        raise PlotError(f"{run_dir} has no metrics.jsonl: not a run directory, or its training has not logged yet")
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):  # the last line of a run killed mid-write: the rest is still a run
                continue
            raise PlotError(f"{path}:{number} is not a JSON object: {line[:60]!r}") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
            raise PlotError(f"{path}:{number} is not a metrics line with a step: {line[:60]!r}")
        records.append(record)
    train = [r for r in records if isinstance(r.get("loss"), (int, float))]
    val = [r for r in records if isinstance(r.get("val_loss"), (int, float))]
    if not train and not val:
        raise PlotError(f"{path} holds no training or validation losses yet" + (" (it is empty)" if not records
                                                                                else ""))
    return train, val


def tokens_per_step(run_dir: Path) -> int | None:
    """train.batch_size x model.block_size from RUN/config.yaml; None when that is missing or unreadable."""
    import yaml

    try:
        cfg = yaml.safe_load(RunDir(run_dir).config.read_text()) or {}
        return int(cfg["train"]["batch_size"]) * int(cfg["model"]["block_size"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points (fewer at the start), so the curve does not lead the data."""
    if window <= 1 or len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values.astype(float), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def run_names(run_dirs: list[Path]) -> list[str]:
    """Each run by its directory name; by its path when two runs share a name."""
    names = [d.resolve().name for d in run_dirs]
    return [str(d) if names.count(n) > 1 else n for d, n in zip(run_dirs, names)]


# ----------------------------------------------------------------------------------------------------------------
# Figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, and none is opened on a desktop either
    import matplotlib.pyplot as plt

    return plt


def plot_runs(run_dirs: list[Path], out: Path, window: int = 10) -> Path:
    """One figure comparing runs: loss against step, and against tokens when every run's config gives it."""
    runs = [(d, *read_metrics(d), tokens_per_step(d)) for d in run_dirs]  # every error before any drawing
    with_tokens = all(per_step for *_, per_step in runs)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if with_tokens else 1, figsize=(13 if with_tokens else 7.5, 4.8), squeeze=False)
    axes = axes[0]
    for i, ((_, train, val, per_step), name) in enumerate(zip(runs, run_names(run_dirs))):
        color = f"C{i % 10}"
        for ax, scale in zip(axes, [1, per_step]):
            if train:
                steps = np.array([r["step"] for r in train], float) * scale
                losses = np.array([r["loss"] for r in train], float)
                if window > 1:
                    ax.plot(steps, losses, color=color, alpha=0.25, linewidth=0.8)
                ax.plot(steps, smooth(losses, window), color=color, linewidth=1.6, label=f"{name} train")
            if val:
                ax.plot(np.array([r["step"] for r in val], float) * scale, [r["val_loss"] for r in val],
                        color=color, linestyle="--", marker="o", markersize=3.5, label=f"{name} val")
    for ax, label in zip(axes, ["step", "tokens"]):
        ax.set_xlabel(label)
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    title = "train loss" + (f" (mean of {window} points)" if window > 1 else "") + " and val loss"
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, out)


def read_report(path: Path) -> dict:
    """A report.json written by gptjax.data.prepare, checked for the parts that are plotted."""
    if not path.is_file():
        raise PlotError(f"{path} does not exist (expected OUT/report.json from gptjax.data.prepare)")
    try:
        report = json.loads(path.read_text())
    except ValueError as e:
        raise PlotError(f"{path} is not JSON ({e})") from None
    sources = report.get("sources") if isinstance(report, dict) else None
    if not isinstance(sources, dict) or not sources:
        raise PlotError(f"{path} is not a data-preparation report: no 'sources' mapping of source name to results")
    for name, r in sources.items():
        if not isinstance(r, dict) or not isinstance(r.get("cleaning"), list) or not isinstance(r.get("dedup"), dict):
            raise PlotError(f"{path}: source {name!r} lacks its 'cleaning' list or 'dedup' results")
        if not all(isinstance(step, dict) for step in r["cleaning"]):
            raise PlotError(f"{path}: source {name!r} has a 'cleaning' entry that is not an object")
    return report


def stage_name(step: str) -> str:
    """datatrove's step names carry emoji ('🔻 - FILTER: 👯 Gopher Repetition'): fonts lack them; keep the words."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s:()./-]", "", str(step))).strip(" -:") or "?"


def removals(report: dict) -> list[tuple[str, int]]:
    """('source / stage: reason', documents) for every removal in the report, cleaning stages then dedup."""
    rows = []
    for name, r in report["sources"].items():
        for step in r["cleaning"]:
            for key, value in step.items():
                # 'dropped' totals its 'dropped_<reason>' breakdown: show the reasons when there are any.
                # '<what>_skipped': documents a reader left out (empty ones).
                removal = key.startswith(("dropped", "removed")) or key.endswith("_skipped")
                if removal and isinstance(value, (int, float)) and value:
                    if key == "dropped" and any(k.startswith("dropped_") for k in step):
                        continue
                    rows.append((f"{name} / {stage_name(step.get('step', '?'))}: {key}", int(value)))
        for kind in ("exact", "minhash"):
            removed = (r["dedup"].get(kind) or {}).get("removed", 0)
            if removed:
                rows.append((f"{name} / dedup: {kind} duplicates", int(removed)))
    return rows


def plot_report(path: Path, out: Path) -> Path:
    report = read_report(path)
    sources = report["sources"]
    names = list(sources)
    train_tokens = [sources[n].get("tokens", {}).get("train", {}).get("tokens", 0) for n in names]
    val_tokens = [sources[n].get("tokens", {}).get("val", {}).get("tokens", 0) for n in names]
    rows = removals(report)
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, max(4.0, 0.35 * len(rows) + 1.5)),
                                      gridspec_kw={"width_ratios": [1, 1.6]})
    x = np.arange(len(names))
    left.bar(x, train_tokens, label="train")
    left.bar(x, val_tokens, bottom=train_tokens, label="val")
    left.set_xticks(x, names, rotation=30 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center")
    left.set_ylabel("tokens")
    left.set_title("tokens per source")
    left.legend()
    if rows:
        y = np.arange(len(rows))
        right.barh(y, [count for _, count in rows], color="C3")
        right.set_yticks(y, [label for label, _ in rows], fontsize="small")
        right.invert_yaxis()
        right.set_xlabel("documents")
        right.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        right.text(0.5, 0.5, "nothing removed", ha="center", va="center", transform=right.transAxes)
        right.set_axis_off()
    right.set_title("documents removed, by stage and reason")
    fig.suptitle(f"data preparation: {path}")
    fig.tight_layout()
    return _save(fig, plt, out)


def _save(fig, plt, out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except OSError as e:
        raise PlotError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gptjax.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run directories (each with metrics.jsonl)")
    parser.add_argument("--out", type=Path, help="the PNG to write (default: loss.png, or data_report.png)")
    parser.add_argument("--smooth", type=int, default=10, help="train loss: mean of this many log points (1: raw)")
    parser.add_argument("--data-report", type=Path, help="plot this report.json of gptjax.data.prepare instead")
    args = parser.parse_args(argv)

    return report_errors(lambda: _plot(args))


def _plot(args: argparse.Namespace) -> None:
    if args.data_report and args.runs:
        raise PlotError("give run directories or --data-report, not both")
    if not args.data_report and not args.runs:
        raise PlotError("give one or more run directories (or --data-report prepared/X/report.json)")
    if args.smooth < 1:
        raise PlotError(f"--smooth {args.smooth} must be at least 1 (1: no smoothing)")
    if args.out is not None and args.out.suffix.lower() != ".png":
        raise PlotError(f"--out {args.out}: expected a .png file")
    if args.data_report:
        out = plot_report(args.data_report, args.out or Path("data_report.png"))
    else:
        out = plot_runs(args.runs, args.out or Path("loss.png"), args.smooth)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
