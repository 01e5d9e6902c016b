"""Examples packed into fixed-length rows, and the loader that serves those rows.

An example is ids [n] and in_loss [n] (which tokens are to be predicted: an SFT reply, a DPO response). Packing
places whole examples one after another in rows of `length` tokens, each row holding

    tokens       int32 [length]  the examples' ids, then padding (0)
    segment_ids  int32 [length]  1, 2, ... for the examples of the row, 0 for padding: attention stays inside one
    positions    int32 [length]  0, 1, ... restarting with each example, as if it were alone
    targets      int32 [length]  the next token of the same example (0 at an example's last token)
    loss_mask    bool  [length]  targets[j] is one of the example's in_loss tokens

so an example computes as it would alone in a row, and no example reads another. Examples are placed by
first-fit decreasing (few padded tokens); pack=False gives each example its own row.

PackedLoader serves rows in a random order that is a pure function of (seed, step), like WindowLoader: epoch e
is a permutation drawn from (seed, e), so a resumed run reads exactly what an uninterrupted one would.
"""

from __future__ import annotations

import bisect
import os
from typing import Iterator, Mapping, Sequence

import grain
import numpy as np

from gptjax.data import DataError

ROW_DTYPES = {"tokens": "int32", "segment_ids": "int32", "positions": "int32", "targets": "int32",
              "loss_mask": "bool"}
ROW_FIELDS = tuple(ROW_DTYPES)
_MAX_EXAMPLES = 1 << 62


def empty_rows(count: int, length: int) -> dict[str, np.ndarray]:
    return {k: np.zeros((count, length), dtype) for k, dtype in ROW_DTYPES.items()}


def batch_shapes(source: str, batch_size: int, block_size: int) -> dict[str, tuple[tuple[int, ...], str]] | None:
    """{leaf: (shape, dtype)} of the batch a data.source's loader gives (None: the pretraining windows, int32
    [batch_size, block_size + 1]): what a train step is traced with before any data is read."""
    rows = {k: ((batch_size, block_size), dtype) for k, dtype in ROW_DTYPES.items()}
    if source == "chat":
        return rows
    if source == "preferences":  # both sides of each pair, and the reference's scores of them
        return {**{f"{side}_{k}": v for side in ("chosen", "rejected") for k, v in rows.items()},
                "ref_chosen": ((batch_size,), "float32"), "ref_rejected": ((batch_size,), "float32")}
    return None


def place(rows: dict[str, np.ndarray], row: int, offset: int, segment: int, ids: np.ndarray,
          in_loss: np.ndarray) -> None:
    """Writes one example at rows[...][row, offset:offset + len(ids)] as segment `segment`."""
    n = len(ids)
    where = slice(offset, offset + n)
    rows["tokens"][row, where] = ids
    rows["segment_ids"][row, where] = segment
    rows["positions"][row, where] = np.arange(n)
    rows["targets"][row, offset:offset + n - 1] = ids[1:]
    rows["loss_mask"][row, offset:offset + n - 1] = in_loss[1:]


def pack(examples: Sequence[tuple[np.ndarray, np.ndarray]], length: int, *, pack: bool = True
         ) -> dict[str, np.ndarray]:
    """Rows (see the module docstring) holding every example; each must fit in `length` tokens."""
    lengths = np.array([len(ids) for ids, _ in examples], dtype=np.int64)
    if len(lengths) and lengths.max() > length:
        raise ValueError(f"an example of {lengths.max()} tokens does not fit a row of {length}")
    if not pack:
        bins = [[i] for i in range(len(examples))]
    else:
        # First-fit decreasing, with the rows' free space kept sorted so each example finds the fullest row it
        # fits in (best fit) by bisection.
        bins, free = [], []  # free: sorted (space left, row)
        for i in np.argsort(-lengths, kind="stable"):
            n = int(lengths[i])
            k = bisect.bisect_left(free, (n, -1))
            if k < len(free):
                space, row = free.pop(k)
            else:
                space, row = length, len(bins)
                bins.append([])
            bins[row].append(int(i))
            if space - n > 0:
                bisect.insort(free, (space - n, row))
    rows = empty_rows(len(bins), length)
    for row, members in enumerate(bins):
        offset = 0
        for segment, i in enumerate(sorted(members), start=1):
            ids, in_loss = examples[i]
            place(rows, row, offset, segment, np.asarray(ids), np.asarray(in_loss, bool))
            offset += len(ids)
    return rows


def fit(ids: np.ndarray, in_loss: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    """An example cut to `length` tokens (its end dropped): (ids, in_loss, None), or with a reason when nothing
    of it would be learned ('truncated' is reported, not a reason to drop)."""
    if len(ids) <= length:
        return ids, in_loss, None
    ids, in_loss = ids[:length], in_loss[:length]
    if not in_loss[1:].any():
        return ids, in_loss, f"its prompt alone fills the {length}-token block"
    return ids, in_loss, "truncated"


class PackedLoader:
    """Batches of rows of one or more sets of columns ({column: [N, ...] array}, every column with N rows).

    Has the interface the Trainer uses of WindowLoader (batch, iterate, state, describe, weights, max_token_id);
    each batch is {column: [local_batch_size, ...]}. Several sources are read as one set (rows of all of them in
    one random order)."""

    def __init__(self, sources: Mapping[str, Mapping[str, np.ndarray]], batch_size: int, seed: int, *,
                 process_index: int = 0, process_count: int = 1):
        if batch_size % process_count:
            raise DataError(f"batch size {batch_size} cannot be split evenly over {process_count} processes")
        names = list(sources)
        self.columns = {k: np.concatenate([np.asarray(sources[n][k]) for n in names])
                        for k in sources[names[0]]}
        self.num_rows = len(next(iter(self.columns.values())))
        if self.num_rows == 0:
            raise DataError(f"no examples to train on in {', '.join(names)} (see the data report above)")
        self.names, self.seed, self.batch_size = names, seed, batch_size
        self._counts = {n: len(next(iter(sources[n].values()))) for n in names}
        self.weights = np.array([self._counts[n] / self.num_rows for n in names])
        self.process_index, self.local_batch_size = process_index, batch_size // process_count
        self.seq_len = self.columns["tokens"].shape[-1] if "tokens" in self.columns else 0
        self._batches = (grain.MapDataset.range(_MAX_EXAMPLES).map(self._local_row).batch(self.local_batch_size))

    def _row_index(self, global_index: int) -> int:
        epoch, i = divmod(global_index, self.num_rows)
        order = np.random.default_rng([self.seed % (1 << 63), epoch]).permutation(self.num_rows)
        return int(order[i])

    def _local_row(self, local_index: int) -> dict[str, np.ndarray]:
        step, row = divmod(local_index, self.local_batch_size)
        index = self._row_index(step * self.batch_size + self.process_index * self.local_batch_size + row)
        return {k: v[index] for k, v in self.columns.items()}

    def batch(self, step: int) -> dict[str, np.ndarray]:
        return self._batches[step]

    def iterate(self, start_step: int = 0, prefetch: int = 2, num_threads: int | None = None
                ) -> Iterator[dict[str, np.ndarray]]:
        if num_threads is None:
            num_threads = min(4, os.cpu_count() or 1)
        options = grain.ReadOptions(num_threads=num_threads if prefetch > 0 else 0, prefetch_buffer_size=prefetch)
        return iter(self._batches[start_step:].to_iter_dataset(options))

    def add_columns(self, columns: Mapping[str, np.ndarray]) -> None:
        """More per-row values (a DPO reference's log-probabilities), in the order of the rows given."""
        for k, v in columns.items():
            if len(v) != self.num_rows:
                raise ValueError(f"column {k} has {len(v)} rows, the loader {self.num_rows}")
            self.columns[k] = np.asarray(v)

    def state(self, next_step: int) -> dict:
        return dict(next_step=next_step, seed=self.seed, batch_size=self.batch_size, rows=self._counts,
                    seq_len=self.seq_len)

    def describe(self, steps: int) -> list[dict]:
        rows_read = steps * self.batch_size
        return [dict(source=n, tokens=int((self.columns["segment_ids"] > 0).sum()) if "segment_ids" in self.columns
                     else 0, weight=round(float(w), 4), epochs=round(rows_read / self.num_rows, 3))
                for n, w in zip(self.names, self.weights)]

    def max_token_id(self) -> int:
        return max(int(v.max()) for k, v in self.columns.items() if k.endswith("tokens") or k.endswith("targets"))

    def epochs(self, steps: int) -> float:
        return steps * self.batch_size / self.num_rows

    def __repr__(self) -> str:
        return (f"PackedLoader({self.num_rows} rows of {', '.join(self.names)}; batch_size={self.batch_size}, "
                f"seed={self.seed})")


def eval_rows(columns: Mapping[str, np.ndarray], batch_size: int, num_batches: int, *, process_index: int = 0,
              process_count: int = 1) -> list[dict[str, np.ndarray]]:
    """Validation batches: the rows in order, each once, up to num_batches; the last batch is filled up with empty
    rows (all zeros: no token in the loss), which the objectives leave out of their means."""
    n = len(next(iter(columns.values())))
    count = min(num_batches, -(-n // batch_size))
    local = batch_size // process_count
    batches = []
    for b in range(count):
        index = np.arange(b * batch_size, (b + 1) * batch_size)[process_index * local:(process_index + 1) * local]
        batch = {}
        for k, v in columns.items():
            v = np.asarray(v)
            rows = np.zeros((len(index), *v.shape[1:]), v.dtype)
            real = index < n
            rows[real] = v[index[real]]
            batch[k] = rows
        batches.append(batch)
    return batches
