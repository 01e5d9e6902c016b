"""Tokenizers: characters, raw UTF-8 bytes, or a byte-level BPE (GPT-2 and friends) through HF `tokenizers`.

All three share one small interface (`Tokenizer`) so the data pipeline, training and sampling never care which is
in use, and each can `save` itself into a run directory so sampling from a checkpoint later decodes exactly as
training encoded:

    tok = build_tokenizer("char", text)     # or "byte", "/path/to/gpt2", "/path/to/tokenizer.json", "gpt2"
    ids = tok.encode("hello")              # int32 numpy array
    tok.save(run_dir); load_tokenizer(run_dir) == tok
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import re
import socket
from pathlib import Path
from typing import Sequence

import numpy as np

from gptjax.errors import GptjaxError

EOT = "<|endoftext|>"
SAVED_FILE = "gptjax_tokenizer.json"  # what save() writes; a BPE also writes its tokenizer.json beside it
BPE_FILE = "tokenizer.json"

# Byte-level BPE is encoded in independent chunks so encode_batch can use every core on MBs of text. ~64K
# characters per chunk keeps the batch parallel without many tiny calls.
_CHUNK_CHARS = 1 << 16
# A chunk may only end after "x\n" when the next line starts with a non-space: with GPT-2-style regexes no
# pre-token spans such a point (runs of whitespace, where "\n\n" or " \n" merge, are never cut), so chunked and
# whole-text encodings are identical.
_CHUNK_BOUNDARY = re.compile(r"\S\n(?=\S)")


class TokenizerError(GptjaxError, ValueError):
    """A tokenizer that cannot be built or used; the message says what to pass instead."""


class Tokenizer(abc.ABC):
    """The interface every tokenizer implements. `encode` returns int32 ids; `eot_id` is None when there is no
    end-of-text token."""

    kind: str  # what load_tokenizer dispatches on
    name: str
    vocab_size: int
    eot_id: int | None = None
    # A Jinja chat template (Hugging Face's chat_template) for conversations; see gptjax.data.chat. Saved with the
    # tokenizer and exported in tokenizer_config.json; not part of the fingerprint (it changes no text's ids).
    chat_template: str | None = None

    @abc.abstractmethod
    def encode(self, text: str) -> np.ndarray: ...

    @abc.abstractmethod
    def decode(self, ids: Sequence[int] | np.ndarray) -> str: ...

    def encode_with_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, starts): the same ids as encode(text), and for each the index of the character of `text` where
        it starts (a token inside a character, such as a byte of 'é', has that character's index)."""
        ids = self.encode(text)
        return ids, np.arange(len(ids), dtype=np.int64)  # one token per character; byte-level kinds override

    def token_id(self, token: str) -> int | None:
        """The id of a token (a special token such as '<|im_end|>'), or None when the vocabulary lacks it."""
        return None

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"kind": self.kind, "name": self.name, **self._extra_state(directory)}
        if self.chat_template is not None:
            state["chat_template"] = self.chat_template
        (directory / SAVED_FILE).write_text(json.dumps(state, ensure_ascii=False))

    def _extra_state(self, directory: Path) -> dict:
        return {}

    def _content(self) -> object:
        """What decides the ids a text encodes to, as JSON-serializable data."""
        return None

    @property
    def fingerprint(self) -> str:
        """A hash of what decides the ids each text encodes to: two tokenizers with the same fingerprint give a
        model the same inputs, whatever they are called or wherever their files lie (name is for display only)."""
        content = json.dumps([self.kind, self.vocab_size, self.eot_id, self._content()], sort_keys=True,
                             ensure_ascii=False)
        return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    def describe(self) -> str:
        return f"{self.kind} tokenizer {self.name!r} ({self.vocab_size} tokens, fingerprint {self.fingerprint})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokenizer) and self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size}, eot_id={self.eot_id})"


def _as_ids(ids, vocab_size: int, name: str) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = int(ids[(ids < 0) | (ids >= vocab_size)][0])
        raise TokenizerError(f"token id {bad} is outside the {name} tokenizer's vocabulary of size {vocab_size}")
    return ids


class CharTokenizer(Tokenizer):
    """One id per distinct character of the training text, in sorted order (nanoGPT's shakespeare_char)."""

    kind = "char"

    def __init__(self, chars: Sequence[str], name: str = "char"):
        chars = list(chars)
        if not chars:
            raise TokenizerError("a char tokenizer needs a non-empty text to take its vocabulary from")
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise TokenizerError("a char tokenizer's vocabulary must be distinct single characters")
        self.chars = sorted(chars)
        self.name = name
        self.vocab_size = len(self.chars)
        self._codepoints = np.array([ord(c) for c in self.chars], dtype=np.uint32)
        # A dense code point -> id table makes encoding one numpy gather; the extra last slot (-1) catches every
        # code point above the vocabulary's largest.
        self._lut = np.full(int(self._codepoints.max()) + 2, -1, dtype=np.int32)
        self._lut[self._codepoints] = np.arange(self.vocab_size, dtype=np.int32)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    def encode(self, text: str) -> np.ndarray:
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        ids = self._lut[np.minimum(cps, len(self._lut) - 1)]
        missing = ids < 0
        if missing.any():
            pos = int(missing.argmax())
            ch = text[pos]
            raise TokenizerError(
                f"character {ch!r} (U+{ord(ch):04X}, position {pos}) is not in the char tokenizer's vocabulary of "
                f"{self.vocab_size} characters; build it from text containing it, or use data.tokenizer=byte")
        return ids

    def decode(self, ids) -> str:
        ids = _as_ids(ids, self.vocab_size, "char")
        return self._codepoints[ids].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def _extra_state(self, directory: Path) -> dict:
        return {"chars": "".join(self.chars)}

    def _content(self) -> object:
        return "".join(self.chars)


class ByteTokenizer(Tokenizer):
    """The 256 byte values of the UTF-8 encoding: no vocabulary to build, any text encodes."""

    kind = "byte"

    def __init__(self, name: str = "byte"):
        self.name = name
        self.vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8).astype(np.int32)

    def decode(self, ids) -> str:
        # A sampled sequence can stop inside a multi-byte character; show a replacement rather than fail.
        return _as_ids(ids, 256, "byte").astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def encode_with_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        lengths = [len(c.encode("utf-8", "surrogatepass")) for c in text]
        return self.encode(text), np.repeat(np.arange(len(text), dtype=np.int64), lengths)


class BPETokenizer(Tokenizer):
    """A HF `tokenizers.Tokenizer` (byte-level BPE such as GPT-2's). Special tokens are never added on encode:
    training text is a stream, and document separators are the caller's choice (eot_id)."""

    kind = "bpe"

    def __init__(self, tokenizer, name: str):
        self.tokenizer = tokenizer
        self.name = name
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.eot_id = tokenizer.token_to_id(EOT)
        self._chunkable = _safe_to_chunk(tokenizer)

    def encode(self, text: str) -> np.ndarray:
        chunks = _split_chunks(text) if self._chunkable else [text]
        if len(chunks) == 1:
            return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int32)
        encodings = self.tokenizer.encode_batch(chunks, add_special_tokens=False)
        return np.concatenate([np.asarray(e.ids, dtype=np.int32) for e in encodings])

    def decode(self, ids) -> str:
        ids = _as_ids(ids, self.vocab_size, self.name)
        return self.tokenizer.decode(ids.tolist(), skip_special_tokens=False)

    def encode_with_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        encoding = self.tokenizer.encode(text, add_special_tokens=False)  # whole: chunking is for long texts
        starts = np.asarray([start for start, _ in encoding.offsets], dtype=np.int64)
        return np.asarray(encoding.ids, dtype=np.int32), starts

    def token_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def with_special_tokens(self, tokens: Sequence[str]) -> "BPETokenizer":
        """A copy with `tokens` added as special tokens (never split, never merged into others) after the
        vocabulary, those it already has left as they are; the ids of every other text stay the same."""
        import tokenizers

        copy = tokenizers.Tokenizer.from_str(self.tokenizer.to_str())
        copy.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in tokens
                                 if copy.token_to_id(t) is None])
        result = BPETokenizer(copy, self.name)
        result.chat_template = self.chat_template
        return result

    def _extra_state(self, directory: Path) -> dict:
        self.tokenizer.save(str(directory / BPE_FILE))
        return {"file": BPE_FILE}

    def _content(self) -> object:
        # Not the decoder, post-processor, padding or truncation: they change neither the ids nor their meaning
        # (GPT-2's tokenizer.json and its vocab.json + merges.txt differ only in the post-processor).
        state = json.loads(self.tokenizer.to_str())
        return {key: state.get(key) for key in ("normalizer", "pre_tokenizer", "model", "added_tokens")}


def _safe_to_chunk(tokenizer) -> bool:
    """Whether line-boundary chunks encode exactly like the whole text: no normalizer, and a pre-tokenizer built
    only from regex splits and ByteLevel without a prefix space (which would add a space to every chunk)."""
    if tokenizer.normalizer is not None or tokenizer.pre_tokenizer is None:
        return False
    state = json.loads(tokenizer.pre_tokenizer.__getstate__())
    parts = state.get("pretokenizers", [state]) if state.get("type") == "Sequence" else [state]
    for part in parts:
        if part.get("type") == "ByteLevel" and not part.get("add_prefix_space", False):
            continue
        if part.get("type") in ("Split", "Digits"):
            continue
        return False
    return True


def _split_chunks(text: str) -> list[str]:
    chunks, start = [], 0
    while len(text) - start > _CHUNK_CHARS:
        m = _CHUNK_BOUNDARY.search(text, start + _CHUNK_CHARS)
        if m is None:
            break
        chunks.append(text[start : m.end()])
        start = m.end()
    chunks.append(text[start:])
    return chunks


# ----------------------------------------------------------------------------------------------------------------
# Building from a config string, and loading what save() wrote


def build_tokenizer(spec: str, text: str | None = None) -> Tokenizer:
    """`spec` is 'char' (vocabulary from `text`), 'byte', a tokenizer.json file, a directory holding tokenizer.json
    or vocab.json + merges.txt, or a Hugging Face hub name such as 'gpt2'."""
    if spec == "char":
        if text is None:
            raise TokenizerError("the char tokenizer needs the training text to take its vocabulary from")
        return CharTokenizer.from_text(text)
    if spec == "byte":
        return ByteTokenizer()
    path = Path(spec).expanduser()
    if path.exists():
        return _bpe_from_path(path)
    if spec.startswith(("/", ".", "~")) or spec.endswith(".json"):
        raise TokenizerError(f"tokenizer path {spec} does not exist; pass a tokenizer.json or a directory with "
                             "tokenizer.json or vocab.json and merges.txt")
    return _bpe_from_hub(spec)


def _bpe_from_path(path: Path) -> BPETokenizer:
    if path.is_dir():
        if (path / BPE_FILE).exists():
            return BPETokenizer(_load_json(path / BPE_FILE), name=path.resolve().name)
        vocab, merges = path / "vocab.json", path / "merges.txt"
        if vocab.exists() and merges.exists():
            return BPETokenizer(_gpt2_style(vocab, merges), name=path.resolve().name)
        raise TokenizerError(f"tokenizer directory {path} has neither tokenizer.json nor vocab.json + merges.txt")
    name = path.resolve().parent.name if path.name == BPE_FILE else path.stem
    return BPETokenizer(_load_json(path), name=name)


def _load_json(path: Path):
    import tokenizers

    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises a bare Exception for malformed files
        raise TokenizerError(f"cannot read tokenizer file {path}: {str(e).splitlines()[0]}") from None


def _gpt2_style(vocab: Path, merges: Path):
    """GPT-2's byte-level BPE from its original two files."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers

    try:
        tok = tokenizers.Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    except Exception as e:
        raise TokenizerError(f"cannot read {vocab} / {merges}: {str(e).splitlines()[0]}") from None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if tok.token_to_id(EOT) is not None:  # mark it special so it is never split; never grow the vocabulary
        tok.add_special_tokens([EOT])
    return tok


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    # huggingface_hub retries a failed connection for ~25 s; one quick connect avoids that wait offline.
    host = re.sub(r"^https?://", "", os.environ.get("HF_ENDPOINT", "https://huggingface.co")).split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _bpe_from_hub(name: str) -> BPETokenizer:
    hint = ("pass a local tokenizer.json or a directory with vocab.json and merges.txt, "
            "e.g. --config.data.tokenizer=/path/to/gpt2")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise TokenizerError(f"tokenizer {name!r} is not a local path and huggingface_hub is not installed to "
                             f"fetch it; {hint}") from None
    # The environment is read now, not when huggingface_hub was imported, so HF_HUB_OFFLINE set later counts.
    offline = env_flag("HF_HUB_OFFLINE") or env_flag("TRANSFORMERS_OFFLINE")
    reason = "offline (HF_HUB_OFFLINE) and not in the local cache"
    try:
        file = hf_hub_download(name, BPE_FILE, local_files_only=True)
    except Exception:
        file = None
        if not offline:
            if not hub_reachable():
                reason = "the hub is unreachable and it is not in the local cache"
            else:
                try:
                    file = hf_hub_download(name, BPE_FILE)
                except Exception as e:
                    reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if file is None:
        raise TokenizerError(f"tokenizer {name!r} could not be fetched from the Hugging Face hub ({reason}); {hint}")
    return BPETokenizer(_load_json(Path(file)), name=name)


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """The tokenizer `Tokenizer.save(directory)` wrote."""
    directory = Path(directory)
    state_file = directory / SAVED_FILE
    if not state_file.exists():
        raise TokenizerError(f"no tokenizer saved in {directory} ({SAVED_FILE} is missing); "
                             "it is written by Tokenizer.save, e.g. into the run directory by training")
    try:
        state = json.loads(state_file.read_text())
        kind, name = state["kind"], state["name"]
    except (ValueError, KeyError) as e:
        raise TokenizerError(f"{state_file} is not a saved tokenizer ({e}); save the tokenizer again") from None
    if kind == "char":
        tokenizer = CharTokenizer(list(state["chars"]), name=name)
    elif kind == "byte":
        tokenizer = ByteTokenizer(name=name)
    elif kind == "bpe":
        tokenizer = BPETokenizer(_load_json(directory / state.get("file", BPE_FILE)), name=name)
    else:
        raise TokenizerError(f"{state_file}: unknown tokenizer kind {kind!r} (expected char, byte or bpe)")
    tokenizer.chat_template = state.get("chat_template")
    return tokenizer
