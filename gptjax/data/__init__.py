"""Training data: text sources, datatrove-format token shards, and a step-deterministic window loader.

    text = stdlib_corpus()                                    # or read_text(path, url)
    prepare_splits(text, tokenizer, out_dir, val_fraction=0.1, name="stdlib")
    loader = WindowLoader(open_split(out_dir / "train"), seq_len=128, batch_size=12, seed=1337)
    for step, batch in enumerate(loader.iterate(start_step), start_step): ...   # batch: int32 [B, seq_len+1]
"""

from gptjax.errors import GptjaxError


class DataError(GptjaxError, ValueError):
    """Data that cannot be used as asked (missing, truncated, inconsistent, too short); the message says what to do."""


# Imported after DataError, which the submodules import from here.
from gptjax.data.loader import WindowLoader, eval_batches  # noqa: E402
from gptjax.data.shards import TokenShard, open_split, write_shard  # noqa: E402
from gptjax.data.sources import prepare_splits, read_text, stdlib_corpus  # noqa: E402

__all__ = [
    "DataError",
    "TokenShard",
    "WindowLoader",
    "eval_batches",
    "open_split",
    "prepare_splits",
    "read_text",
    "stdlib_corpus",
    "write_shard",
]
