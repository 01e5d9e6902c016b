"""A run's inputs: its tokenizer and token shards, prepared in (or found from) the run directory.

    inputs = prepare_data(cfg, run_dir)      # tokenizer, {source: train shards}, {source: val shards}, weights

Text sources (the stdlib corpus, data.path) are tokenized once into RUN/data/{train,val}; prepared shard
directories (data.source=shards, from gptjax.data.prepare) are read where they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import ml_collections

from gptjax.config import parse_mixture
from gptjax.data import DataError, TokenShard
from gptjax.data.loader import WindowLoader
from gptjax.data.shards import open_split
from gptjax.data.sources import prepare_splits, read_text, stdlib_corpus
from gptjax.rundir import RunDir
from gptjax.tokenizer import Tokenizer, build_tokenizer, load_tokenizer


class Inputs(NamedTuple):
    tokenizer: Tokenizer
    train: dict[str, list[TokenShard]]  # source name -> its training shards
    val: dict[str, list[TokenShard]]  # the sources that have a validation split
    weights: dict[str, float] | None  # data.shards' mixture weights (None: every window equally likely)


def prepare_data(cfg: ml_collections.ConfigDict, run_dir: str | Path | RunDir, write: bool = True) -> Inputs:
    """The run's tokenizer and shards. write=False (processes other than the first) only reads what the first
    process wrote."""
    d, run_dir = cfg.data, RunDir(run_dir)
    if d.source == "shards":
        mixture = parse_mixture(d.shards)
        train = {name: open_split(s.path / "train") for name, s in mixture.items()}
        val = {name: open_split(s.path / "val") for name, s in mixture.items() if (s.path / "val").exists()}
        tokenizer = shards_tokenizer(d.tokenizer, [s.path for s in mixture.values()])
        if write:
            tokenizer.save(run_dir.tokenizer)  # the run directory alone is enough to sample from the model
        weights = None if any(s.weight is None for s in mixture.values()) else {
            name: s.weight for name, s in mixture.items()}
        return Inputs(tokenizer, train, val, weights)

    if write and not run_dir.has_prepared_data():
        text = stdlib_corpus(d.max_chars) if d.source == "stdlib" else read_text(d.path, d.url, d.max_chars)
        tokenizer = build_tokenizer(d.tokenizer, text)
        counts = prepare_splits(text, tokenizer, run_dir.data, d.val_fraction, name=d.source)
        print(f"data: {len(text):,} characters -> {counts} tokens ({tokenizer.name}, vocab {tokenizer.vocab_size})")
        tokenizer.save(run_dir.tokenizer)  # last: its presence marks the data as complete
    tokenizer = load_tokenizer(run_dir.tokenizer)
    val = {d.source: open_split(run_dir.data / "val")} if (run_dir.data / "val").exists() else {}
    return Inputs(tokenizer, {d.source: open_split(run_dir.data / "train")}, val, None)


def shards_tokenizer(spec: str, roots: list[Path]) -> Tokenizer:
    """The tokenizer saved beside prepared shards (ROOT/tokenizer), the same for every source; else data.tokenizer."""
    saved = [load_tokenizer(root / "tokenizer") for root in roots if (root / "tokenizer").exists()]
    if saved:
        if any(t != saved[0] for t in saved):
            raise DataError(f"the shard directories {', '.join(map(str, roots))} were tokenized with different "
                            "tokenizers; a mixture needs one")
        return saved[0]
    if spec == "char":
        raise DataError(f"{roots[0]} has no tokenizer/ directory and a char tokenizer cannot be rebuilt without its "
                        "text; save the tokenizer there, or set data.tokenizer to the one the shards were made with")
    return build_tokenizer(spec)


def check_vocabulary(loader: WindowLoader, val: dict, vocab_size: int, tokenizer: Tokenizer) -> None:
    """Token ids the embedding table does not have would be read as garbage (XLA clamps gathers), not fail."""
    biggest = max([loader.max_token_id()] + [s.max_token_id() for shards in val.values() for s in shards])
    if biggest >= vocab_size:
        raise DataError(f"the data holds token id {biggest}, beyond the model's vocabulary of "
                        f"{vocab_size} ({tokenizer.name}): the shards were written with another "
                        "tokenizer; set data.tokenizer to that one (or save it as tokenizer/ beside the shards)")
