"""One command for every gptjax tool: `gptjax SUBCOMMAND [ARGS...]`.

    gptjax train --config configs/shakespeare_char_cpu.py --workdir runs/baby
    gptjax sample --workdir runs/baby --prompt "ROMEO:"
    gptjax evaluate --workdir runs/baby --task val_loss
    gptjax SUBCOMMAND --help

Each subcommand is the tool's own command line (`python -m gptjax.train` and so on) with the same arguments,
output and exit status: the arguments after the subcommand's name are handed to that module's main() untouched.
"""

from __future__ import annotations

import difflib
import importlib
import sys

from gptjax import __version__, command
from gptjax.hostmem import reexec_with_tunables

# name -> (module, what it does). Modules are imported only when their subcommand runs, so `gptjax --help` and
# a mistyped subcommand answer at once instead of first importing JAX.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("gptjax.train", "train (or resume) a run: --config FILE --workdir DIR --config.SECTION.KEY=VALUE"),
    "sample": ("gptjax.sample", "generate text from a trained run or a Hugging Face directory"),
    "evaluate": ("gptjax.evaluate", "validation loss, or a benchmark task (HellaSwag, MMLU, custom, ...)"),
    "prepare": ("gptjax.data.prepare", "raw text -> cleaned, deduplicated token shards (datatrove)"),
    "crawl": ("gptjax.data.crawl", "fetch web pages politely into JSON lines (and WARC)"),
    "pubmedqa": ("gptjax.data.pubmedqa", "PubMedQA -> SFT, preference and held-out task files, split by PMID"),
    "hf": ("gptjax.hf", "import a Hugging Face model as a run, or export a run to Hugging Face"),
    "bench": ("gptjax.bench", "time the train step: tokens/s, MFU, compile time, memory, input pipeline"),
    "plot": ("gptjax.plot", "plot runs' loss curves, or a data-preparation report, to a PNG"),
    "config": ("gptjax.show_config", "show a resolved config, what every key means, or the shipped configs"),
    "lm-eval": ("gptjax.lm_eval_adapter", "lm-evaluation-harness's command line, with gptjax as a model"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: gptjax [-h] [--version] SUBCOMMAND [ARGS...]", "",
             "Train, sample and evaluate GPT-style language models with JAX and Flax NNX.", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "`gptjax SUBCOMMAND --help` shows a subcommand's arguments. Each is also `python -m MODULE`:",
              "  " + ", ".join(module for module, _ in COMMANDS.values())]
    return "\n".join(lines)


def _fail(message: str) -> int:
    # One line, like every gptjax tool's bad input, and argparse's status for a usage error.
    print(f"gptjax: error: {message} (see gptjax --help)", file=sys.stderr)
    return 2


LM_EVAL_NOTE = """gptjax lm-eval: lm-evaluation-harness's own command line, with gptjax registered as a model:

    gptjax lm-eval run --model gptjax --model_args workdir=RUN[,step=N|best=true][,batch_size=16] --tasks hellaswag

workdir is a run directory written by gptjax train. lm-eval's own options follow.
"""


def _run_lm_eval(argv: list[str]) -> int:
    # lm-eval's command line reads sys.argv itself; importing the adapter registers the "gptjax" model with it.
    try:
        adapter = importlib.import_module("gptjax.lm_eval_adapter")
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "lm_eval":
            return _fail("`gptjax lm-eval` needs lm-evaluation-harness: pip install 'gptjax[eval]'")
        raise
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(LM_EVAL_NOTE)
    saved = sys.argv
    sys.argv = ["gptjax lm-eval", *argv]
    try:
        return adapter.main()
    finally:
        sys.argv = saved


def main(argv: list[str] | None = None, *, real_command_line: bool | None = None) -> int:
    """`gptjax SUBCOMMAND ARGS...`; argv None reads sys.argv. real_command_line (default: argv is None) says the
    process was started for this command, so train and bench may re-execute it with the host memory tunables."""
    real_command_line = argv is None if real_command_line is None else real_command_line
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    first, rest = argv[0], argv[1:]
    if first in ("-h", "--help"):
        print(usage())
        return 0
    if first == "--version":
        print(f"gptjax {__version__}")
        return 0
    if first not in COMMANDS:
        what = "option" if first.startswith("-") else "subcommand"
        close = difflib.get_close_matches(first.lstrip("-"), COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; choose from {', '.join(COMMANDS)}"
        return _fail(f"unknown {what} {first!r}{hint}")
    if first == "lm-eval":
        return _run_lm_eval(rest)
    if real_command_line and first in ("train", "bench"):  # before JAX loads: see gptjax.hostmem
        reexec_with_tunables()
    command.invoked_as = f"gptjax {first}"  # usage and errors name the command as it was typed
    try:
        status = importlib.import_module(COMMANDS[first][0]).main(rest)
    finally:
        command.invoked_as = None
    return 0 if status is None else int(status)


def train() -> int:
    """The gptjax-train console script."""
    return main(["train", *sys.argv[1:]], real_command_line=True)


def bench() -> int:
    """The gptjax-bench console script."""
    return main(["bench", *sys.argv[1:]], real_command_line=True)


if __name__ == "__main__":
    sys.exit(main())
