"""Token shards in datatrove's tokenized format, so shards written here and by a datatrove pipeline
(DocumentTokenizer, DocumentTokenizerMerger) are interchangeable:

    NAME.ds           little-endian token ids, uint16 (uint32 when the vocabulary exceeds 65536 ids)
    NAME.ds.index     little-endian uint64 cumulative document END offsets, in tokens
    NAME.ds.metadata  "{tokenizer_name}|{token_size}", "{token_count}", a human-readable count

Readers memory-map the token file, so a split of many GB costs no RAM until windows are read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from gptjax.data import DataError

INDEX_SUFFIX = ".index"
METADATA_SUFFIX = ".metadata"
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


def token_size_for(vocab_size: int) -> int:
    """Bytes per token, by datatrove's rule: uint16 holds ids up to 65535, i.e. a vocabulary of 65536."""
    return 4 if vocab_size > np.iinfo(np.uint16).max + 1 else 2


def _human(count: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit} tokens"
    return f"{count} tokens"


def write_shard(path: str | os.PathLike, documents: Iterable[np.ndarray], *, tokenizer_name: str,
                vocab_size: int) -> int:
    """Writes the documents (1-D arrays of token ids) as one shard; returns its token count.

    All three files are written under temporary names and renamed into place with the .ds last, so a write
    that is killed part-way never leaves a shard that looks complete (readers look for *.ds)."""
    path = Path(path)
    if path.suffix != ".ds":
        raise DataError(f"token shard path {path} must end with .ds (datatrove's naming)")
    if "|" in tokenizer_name or "\n" in tokenizer_name:  # the metadata's first line is "name|token_size"
        raise DataError(f"token shard {path}: tokenizer name {tokenizer_name!r} may not contain '|' or a newline")
    token_size = token_size_for(vocab_size)
    dtype = _DTYPES[token_size]
    path.parent.mkdir(parents=True, exist_ok=True)
    final = {"": path, INDEX_SUFFIX: Path(f"{path}{INDEX_SUFFIX}"), METADATA_SUFFIX: Path(f"{path}{METADATA_SUFFIX}")}
    tmp = {k: Path(f"{p}.tmp-{os.getpid()}") for k, p in final.items()}
    ends: list[int] = []
    total = 0
    try:
        with open(tmp[""], "wb") as f:
            for doc in documents:
                doc = np.asarray(doc).reshape(-1)
                if doc.size and not np.issubdtype(doc.dtype, np.integer):
                    raise DataError(f"token shard {path}: documents must be integer token ids, got dtype {doc.dtype}")
                if doc.size and (doc.min() < 0 or doc.max() >= vocab_size):
                    bad = int(doc[(doc < 0) | (doc >= vocab_size)][0])
                    raise DataError(f"token shard {path}: token id {bad} is outside the vocabulary of size "
                                    f"{vocab_size}; check that the tokenizer matches vocab_size")
                f.write(doc.astype(dtype, copy=False).tobytes())
                total += int(doc.size)
                ends.append(total)
        np.asarray(ends, dtype="<u8").tofile(tmp[INDEX_SUFFIX])
        tmp[METADATA_SUFFIX].write_text(f"{tokenizer_name}|{token_size}\n{total}\n{_human(total)}")
        # An older shard of the same name goes first, so its tokens are never paired with the new index.
        path.unlink(missing_ok=True)
        for key in (INDEX_SUFFIX, METADATA_SUFFIX, ""):
            os.replace(tmp[key], final[key])
    finally:
        for p in tmp.values():
            p.unlink(missing_ok=True)
    return total


class TokenShard:
    """One .ds file, memory-mapped. `tokens` (uint16/uint32), `doc_ends` (uint64 ends), `len()` in tokens."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"token shard {self.path} does not exist")
        self.tokenizer_name, self.token_size, meta_count = self._read_metadata()
        nbytes = self.path.stat().st_size
        if nbytes % self.token_size:
            raise DataError(f"token shard {self.path} is truncated: {nbytes} bytes is not a multiple of the "
                            f"{self.token_size}-byte token size; write it again")
        self.num_tokens = nbytes // self.token_size
        if meta_count is not None and meta_count != self.num_tokens:
            raise DataError(f"token shard {self.path} holds {self.num_tokens} tokens but its metadata says "
                            f"{meta_count} (truncated or overwritten); write it again")
        self.doc_ends = self._read_index()
        self.tokens = self._map()

    def _read_metadata(self) -> tuple[str | None, int, int | None]:
        meta = Path(f"{self.path}{METADATA_SUFFIX}")
        if not meta.exists():  # datatrove can skip it; its default token size is 2
            return None, 2, None
        lines = meta.read_text().splitlines()
        try:
            name, size = lines[0].rsplit("|", 1)
            size = int(size)
            count = int(lines[1]) if len(lines) > 1 and lines[1].strip() else None
        except (IndexError, ValueError):
            raise DataError(f"{meta} is malformed: expected 'tokenizer|token_size' then a token count") from None
        if size not in _DTYPES:
            raise DataError(f"{meta}: token size {size} is not 2 or 4 bytes")
        return name, size, count

    def _read_index(self) -> np.ndarray:
        index = Path(f"{self.path}{INDEX_SUFFIX}")
        if not index.exists():  # no document boundaries saved: the shard is one document
            return np.array([self.num_tokens], dtype=np.uint64)
        if index.stat().st_size % 8:
            raise DataError(f"index {index} is truncated (size not a multiple of 8 bytes); write the shard again")
        ends = np.fromfile(index, dtype="<u8")
        last = int(ends[-1]) if ends.size else 0
        if last != self.num_tokens or (ends.size > 1 and np.any(ends[1:] < ends[:-1])):
            raise DataError(f"index {index} does not match its shard: last document end {last}, shard holds "
                            f"{self.num_tokens} tokens; write the shard again")
        return ends

    def _map(self) -> np.ndarray:
        dtype = _DTYPES[self.token_size]
        if self.num_tokens == 0:  # mmap cannot map an empty file
            return np.zeros(0, dtype=dtype)
        return np.memmap(self.path, dtype=dtype, mode="r")

    def __len__(self) -> int:
        return self.num_tokens

    def max_token_id(self, chunk: int = 1 << 26) -> int:
        """The largest id in the shard (-1 if empty); scanned in chunks, so a large shard costs no RAM."""
        if not hasattr(self, "_max_id"):
            self._max_id = max((int(self.tokens[i:i + chunk].max()) for i in range(0, self.num_tokens, chunk)),
                               default=-1)
        return self._max_id

    # A pickled memmap would carry a copy of the whole file; a worker process reopens it by path instead.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "tokens"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.tokens = self._map()

    def __repr__(self) -> str:
        return f"TokenShard({str(self.path)!r}, tokens={self.num_tokens}, docs={len(self.doc_ends)})"


def open_split(directory: str | os.PathLike) -> list[TokenShard]:
    """Every *.ds shard in `directory`, in sorted name order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"token shard directory {directory} does not exist")
    paths = sorted(directory.glob("*.ds"))
    if not paths:
        raise DataError(f"no token shards (*.ds) in {directory}; write them with gptjax.data.prepare_splits "
                        "or a datatrove DocumentTokenizer pipeline")
    shards = [TokenShard(p) for p in paths]
    named = {s.tokenizer_name: s for s in shards if s.tokenizer_name}
    if len(named) > 1:
        (a, sa), (b, sb) = list(named.items())[:2]
        raise DataError(f"shards in {directory} come from different tokenizers: {sa.path.name} ({a}) and "
                        f"{sb.path.name} ({b}); keep one tokenizer per directory")
    return shards
