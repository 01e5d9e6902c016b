"""The validation loss of runs with and without data.document_mask, each scored both ways on the same windows.

    python scripts/document_mask_effect.py runs/plain runs/masked [--batches 40]

A window of a token stream holds the end of one document and the start of others. Scored plainly, a token may be
predicted from the documents before it in the window; scored with the document mask, only from its own. Each run
is scored on the same fixed validation windows both ways, so the table shows what the mask changes in training
(the rows) apart from what it changes in scoring (the columns).
"""

import argparse
import functools
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from gptjax.data.loader import eval_batches
from gptjax.data.shards import open_split
from gptjax.evaluate import default_val_dirs
from gptjax.run import load_run
from gptjax.step import next_token_loss


def losses(run_dir: Path, batches: int, batch_size: int) -> dict[str, float]:
    run = load_run(run_dir)
    eot = run.tokenizer.eot_id
    shards = [s for d in default_val_dirs(run, run_dir).values() for s in open_split(d)]
    windows = eval_batches(shards, run.model_config.block_size, batch_size, batches, seed=0)

    @functools.partial(jax.jit, static_argnames="masked")
    def loss(params, tokens, masked):
        return next_token_loss(nnx.merge(run.graphdef, params), tokens, deterministic=True, rngs=None,
                               eot_id=eot if masked else None)

    return {way: float(np.mean([loss(run.params, b, masked=way == "masked") for b in windows]))
            for way in ("plain", "masked")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()
    print("| run | trained with document_mask | val loss, scored plainly | val loss, scored with the mask |")
    print("|---|---|---|---|")
    for run_dir in args.runs:
        masked = load_run(run_dir).config.data.document_mask
        result = losses(run_dir, args.batches, args.batch_size)
        print(f"| {run_dir} | {masked} | {result['plain']:.4f} | {result['masked']:.4f} |")


if __name__ == "__main__":
    main()
