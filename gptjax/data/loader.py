"""Random training windows from a weighted mixture of token sources, as a pure function of (seed, step).

Each example is seq_len+1 consecutive tokens (inputs = [:-1], targets = [1:]) from a random start, as nanoGPT's
get_batch draws them; windows may cross document boundaries. Example g of the global batch stream draws, from a
generator seeded by (seed, g) alone, first a source (with the mixture's weights) and then a window uniformly among
that source's windows. So:
- the batch for step s never depends on what was read before: a resumed run sees exactly the batches an
  uninterrupted one would, and any number of reader threads agree;
- with several processes, each reads only its rows of the global batch, and the rows of all processes together
  are the global batch a single process would read.
"""

from __future__ import annotations

import os
from typing import Iterator, Mapping

import grain
import numpy as np

from gptjax.data import DataError
from gptjax.data.shards import TokenShard

# Far more steps than any run takes; grain's range is lazy, so its length costs nothing.
_MAX_EXAMPLES = 1 << 62


class _Source:
    """The windows of one source's shards, indexed 0..num_windows-1 across shards."""

    def __init__(self, name: str, shards: list[TokenShard], window: int):
        if not shards:
            raise DataError(f"data source {name!r} has no token shards")
        self.name, self.shards = name, list(shards)
        self.num_tokens = sum(len(s) for s in self.shards)
        starts = np.array([max(0, len(s) - window + 1) for s in self.shards], dtype=np.int64)
        if starts.sum() == 0:
            where = os.path.commonpath([str(s.path.parent) for s in self.shards])
            longest = max(len(s) for s in self.shards)
            raise DataError(f"block size {window - 1} is larger than any token stream in {where} (longest: {longest} "
                            f"tokens, a window needs {window}); lower model.block_size")
        self.num_windows = int(starts.sum())
        self._first = np.concatenate([[0], np.cumsum(starts)])  # index of each shard's first window

    def window(self, i: int, length: int) -> np.ndarray:
        shard = int(np.searchsorted(self._first, i, side="right")) - 1
        offset = i - int(self._first[shard])
        return np.asarray(self.shards[shard].tokens[offset : offset + length], dtype=np.int32)


class WindowLoader:
    """Batches of random windows. `sources` is a list of shards (one source) or {name: shards} (a mixture).

    weights: {name: weight} (normalized here); default: proportional to each source's windows, i.e. every window
    of every source equally likely. batch_size is the global batch; process `process_index` of `process_count`
    reads its batch_size / process_count rows."""

    def __init__(self, sources: list[TokenShard] | Mapping[str, list[TokenShard]], seq_len: int, batch_size: int,
                 seed: int, *, weights: Mapping[str, float] | None = None, process_index: int = 0,
                 process_count: int = 1):
        if seq_len < 1 or batch_size < 1:
            raise DataError(f"seq_len={seq_len} and batch_size={batch_size} must be positive")
        if batch_size % process_count or not 0 <= process_index < process_count:
            raise DataError(f"batch size {batch_size} cannot be split evenly over {process_count} processes "
                            f"(process {process_index}); use a batch size divisible by the process count")
        if not isinstance(sources, Mapping):
            sources = {"data": sources}
        self.window = seq_len + 1
        self.sources = [_Source(name, shards, self.window) for name, shards in sources.items()]
        self.weights = self._normalize(weights)
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.process_index, self.local_batch_size = process_index, batch_size // process_count

        self._batches = (grain.MapDataset.range(_MAX_EXAMPLES)
                         .map(self._local_example)
                         .batch(self.local_batch_size))

    def _normalize(self, weights: Mapping[str, float] | None) -> np.ndarray:
        names = [s.name for s in self.sources]
        if weights is None:
            w = np.array([s.num_windows for s in self.sources], dtype=np.float64)
        else:
            unknown = set(weights) - set(names)
            missing = set(names) - set(weights)
            if unknown or missing:
                raise DataError(f"mixture weights name {sorted(weights)} but the sources are {names}")
            w = np.array([weights[n] for n in names], dtype=np.float64)
            if np.any(w < 0) or w.sum() <= 0:
                raise DataError(f"mixture weights {dict(weights)} must be non-negative with a positive sum")
        return w / w.sum()

    def _local_example(self, local_index: int) -> np.ndarray:
        step, row = divmod(local_index, self.local_batch_size)
        global_index = step * self.batch_size + self.process_index * self.local_batch_size + row
        rng = np.random.default_rng([self.seed % (1 << 63), global_index])
        source = self.sources[int(rng.choice(len(self.sources), p=self.weights))]
        return source.window(int(rng.integers(source.num_windows)), self.window)

    def batch(self, step: int) -> np.ndarray:
        """This process's int32 [local_batch_size, seq_len+1] rows of the batch of `step`."""
        return self._batches[step]

    def iterate(self, start_step: int = 0, prefetch: int = 2, num_threads: int | None = None
                ) -> Iterator[np.ndarray]:
        """batch(start_step), batch(start_step + 1), ... without end, read ahead by `prefetch` batches on
        `num_threads` threads (default: up to 4). prefetch=0 reads each batch when it is asked for."""
        if num_threads is None:
            num_threads = min(4, os.cpu_count() or 1)
        options = grain.ReadOptions(num_threads=num_threads if prefetch > 0 else 0, prefetch_buffer_size=prefetch)
        return iter(self._batches[start_step:].to_iter_dataset(options))

    def state(self, next_step: int) -> dict:
        """The loader's position as JSON: batches are a pure function of (seed, step), so the next step is the whole
        iterator state; the rest identifies the data, so a resumed run can tell that it reads what it read before."""
        return dict(next_step=next_step, seed=self.seed, seq_len=self.seq_len, batch_size=self.batch_size,
                    sources={s.name: s.num_tokens for s in self.sources},
                    weights=[round(float(w), 6) for w in self.weights])

    def max_token_id(self) -> int:
        """The largest token id in any source (read once, in chunks)."""
        return max(shard.max_token_id() for s in self.sources for shard in s.shards)

    def describe(self, steps: int) -> list[dict]:
        """Per source: tokens, weight, and the epochs of it that `steps` steps will read (reported before training)."""
        tokens_read = steps * self.batch_size * self.seq_len
        return [dict(source=s.name, tokens=s.num_tokens, weight=round(float(w), 4),
                     epochs=round(float(w) * tokens_read / s.num_tokens, 3))
                for s, w in zip(self.sources, self.weights)]

    def __repr__(self) -> str:
        mix = ", ".join(f"{s.name}: {w:.2f}" for s, w in zip(self.sources, self.weights))
        return (f"WindowLoader({mix}; seq_len={self.seq_len}, batch_size={self.batch_size}, seed={self.seed}, "
                f"process {self.process_index} reads {self.local_batch_size} rows)")


def eval_batches(shards: list[TokenShard], seq_len: int, batch_size: int, num_batches: int, seed: int, *,
                 process_index: int = 0, process_count: int = 1) -> list[np.ndarray]:
    """A fixed set of batches (the same on every call), so validation losses are comparable across evaluations
    and runs; with several processes, this process's rows of them."""
    loader = WindowLoader(shards, seq_len, batch_size, seed, process_index=process_index, process_count=process_count)
    return [loader.batch(i) for i in range(num_batches)]
