"""Train a GPT.

    python -m gptjax.train                                   # the built-in job: a small model on Python's stdlib
    python -m gptjax.train --config configs/shakespeare_char_cpu.py --workdir runs/baby
    python -m gptjax.train --config configs/gpt2_small.py --config.train.batch_size=8
    python -m gptjax.train --data notes/ --data papers.jsonl        # your own files, curated first

Running it again on the same --workdir continues from the latest checkpoint, exactly; SIGTERM or Ctrl-C saves a
checkpoint and exits 0. The run directory holds config.yaml (the resolved config: `--config RUN/config.yaml`
repeats the run), tokenizer/, data/ (token shards), checkpoints/, metrics.jsonl (one JSON object per line:
`loss` on training lines, `val_loss` on evaluation lines) and the same numbers as TensorBoard event files in
tensorboard/ (log.wandb=true: also Weights & Biases). docs/run_directory.md has the details. On a terminal a
progress bar shows the steps, ETA, tokens/s and loss; elsewhere (logs, CI) a line every train.log_every steps.
The loop itself is gptjax.trainer.Trainer.
"""

from __future__ import annotations

import sys
import traceback

if __name__ == "__main__":  # `python -m gptjax.train`: host memory settings before JAX loads (see gptjax.hostmem)
    from gptjax.hostmem import reexec_with_tunables

    reexec_with_tunables()

from pathlib import Path  # noqa: E402

from gptjax import distributed  # noqa: E402
from gptjax.command import parse_args  # noqa: E402
from gptjax.config import load_config, to_yaml  # noqa: E402
from gptjax.errors import report_errors  # noqa: E402
from gptjax.trainer import Trainer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    def options(parser):
        parser.add_argument("--print_config", action="store_true",
                            help="print the resolved config as YAML (what the run would save) and exit")
        parser.add_argument("--data", action="append", default=[], metavar="[NAME=]PATH",
                            help="train on your own files: a .txt/.md, .jsonl(.gz), .parquet or .warc(.gz) file, or "
                                 "a folder of them (repeatable); they are cleaned, deduplicated and tokenized into "
                                 "RUN/prepared first (data.source=files)")

    args, overrides = parse_args(argv, prog="python -m gptjax.train", doc=__doc__, add_arguments=options)
    if args.data:
        overrides = ["data.source=files", f"data.path={','.join(args.data)}", *overrides]
    workdir = Path(args.workdir or Path("runs") / (Path(args.config).stem if args.config else "default"))

    def work() -> None:
        cfg = load_config(args.config, overrides)
        if args.print_config:
            print(to_yaml(cfg), end="")
            return
        Trainer(cfg, workdir).run()

    try:
        status = report_errors(work)
    except BaseException:  # a bug: its traceback, then out as any failed process of a multi-process run goes
        traceback.print_exc()
        distributed.leave(1)
        raise
    distributed.leave(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
