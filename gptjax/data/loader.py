"""Random training windows, as nanoGPT's get_batch draws them, but a pure function of (seed, step).

Each example is seq_len+1 consecutive tokens from a uniformly random start over all shards (inputs = [:-1],
targets = [1:]); windows may cross document boundaries, as in nanoGPT. The random generator of example i is
seeded from (seed, i) by grain's random_map, so the batch for step s never depends on what was read before:
a resumed run sees exactly the batches an uninterrupted one would, and any number of reader threads agree.
"""

from __future__ import annotations

import os
from typing import Iterator

import grain
import numpy as np

from gptjax.data import DataError
from gptjax.data.shards import TokenShard


class WindowLoader:
    def __init__(self, shards: list[TokenShard], seq_len: int, batch_size: int, seed: int):
        if not shards:
            raise DataError("WindowLoader needs at least one token shard")
        if seq_len < 1 or batch_size < 1:
            raise DataError(f"seq_len={seq_len} and batch_size={batch_size} must be positive")
        self.shards = list(shards)
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.window = seq_len + 1
        # Start positions per shard; drawing one index over all of them picks a shard with probability
        # proportional to its windows and then a uniform offset, in one draw.
        starts = np.array([max(0, len(s) - self.window + 1) for s in self.shards], dtype=np.int64)
        if starts.sum() == 0:
            where = os.path.commonpath([str(s.path.parent) for s in self.shards])
            longest = max(len(s) for s in self.shards)
            raise DataError(f"block size {seq_len} is larger than any token stream in {where} (longest: {longest} "
                            f"tokens, a window needs {self.window}); lower model.block_size")
        self.num_windows = int(starts.sum())
        self._first_start = np.concatenate([[0], np.cumsum(starts)])  # global index of each shard's first window

        # An endless stream of example slots; what each holds comes only from the per-index generator. grain
        # requires the seed to fit in 32 bits.
        self._batches = (grain.MapDataset.range(1).repeat()
                         .random_map(self._example, seed=seed % (1 << 32))
                         .batch(batch_size))

    def _example(self, _slot, rng: np.random.Generator) -> np.ndarray:
        i = int(rng.integers(self.num_windows))
        shard = int(np.searchsorted(self._first_start, i, side="right")) - 1
        offset = i - int(self._first_start[shard])
        return np.asarray(self.shards[shard].tokens[offset : offset + self.window], dtype=np.int32)

    def batch(self, step: int) -> np.ndarray:
        """The int32 [batch_size, seq_len+1] batch of `step`; the same for every call with the same seed."""
        return self._batches[step]

    def iterate(self, start_step: int = 0, prefetch: int = 2, num_threads: int | None = None
                ) -> Iterator[np.ndarray]:
        """batch(start_step), batch(start_step + 1), ... without end, read ahead by `prefetch` batches on
        `num_threads` threads (default: up to 4). prefetch=0 reads each batch when it is asked for."""
        if num_threads is None:
            num_threads = min(4, os.cpu_count() or 1)
        options = grain.ReadOptions(num_threads=num_threads if prefetch > 0 else 0, prefetch_buffer_size=prefetch)
        return iter(self._batches[start_step:].to_iter_dataset(options))

    def __repr__(self) -> str:
        return (f"WindowLoader({len(self.shards)} shards, {self.num_windows} windows, seq_len={self.seq_len}, "
                f"batch_size={self.batch_size}, seed={self.seed})")


def eval_batches(shards: list[TokenShard], seq_len: int, batch_size: int, num_batches: int, seed: int
                 ) -> list[np.ndarray]:
    """A fixed set of batches (the same on every call), so validation losses are comparable across evaluations
    and runs."""
    loader = WindowLoader(shards, seq_len, batch_size, seed)
    return [loader.batch(i) for i in range(num_batches)]
