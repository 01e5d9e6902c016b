"""Where training text comes from, and turning it into train/val token shards.

The default corpus is the running interpreter's own standard library: every machine with Python has it, so the
built-in job trains with no download. For CPython 3.11 it is about 520 files, 8.8 MB (215 distinct characters).
"""

from __future__ import annotations

import os
import sys
import sysconfig
import urllib.request
from pathlib import Path

from gptjax.data import DataError
from gptjax.data.shards import write_shard

# Directories left out of the stdlib corpus: tests and third-party packages are not the library, idlelib and
# lib2to3 are applications, encodings/ is mostly generated codec tables and pydoc_data/ one generated string.
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "encodings", "pydoc_data",
              "turtledemo", "__pycache__", "ensurepip"}
# Generated per machine (build paths, compiler flags): would make the corpus differ between identical Pythons.
_SKIP_PREFIXES = ("_sysconfigdata",)
_SEPARATOR = "# ===== {} =====\n"
_HINT = "pass a local file with --config.data.path=/path/to/file.txt"


def stdlib_corpus(max_chars: int = 0) -> str:
    """The standard library's .py sources in sorted path order, each file preceded by a header line naming it.

    Deterministic for a given Python version; `max_chars` > 0 keeps only the first max_chars characters."""
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DataError(f"the standard library directory {root} of {sys.executable} is missing; {_HINT}")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("config-")]
        files += [Path(dirpath, f) for f in filenames if f.endswith(".py") and not f.startswith(_SKIP_PREFIXES)]
    parts, size = [], 0
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        try:
            source = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):  # a few files carry legacy encodings; they are not worth guessing
            continue
        if source and not source.endswith("\n"):
            source += "\n"
        parts.append(_SEPARATOR.format(path.relative_to(root).as_posix()) + source)
        size += len(parts[-1])
        if 0 < max_chars <= size:
            break
    if not parts:
        raise DataError(f"no readable .py files under the standard library directory {root}; {_HINT}")
    text = "".join(parts)
    return text[:max_chars] if max_chars > 0 else text


def read_text(path: str | os.PathLike, url: str | None = None, max_chars: int = 0) -> str:
    """A local UTF-8 text file; when it is missing and `url` is given, it is downloaded to `path` first."""
    path = Path(path).expanduser()
    if not path.exists():
        if url is None:
            raise DataError(f"text file {path} does not exist; {_HINT}")
        _download(url, path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"text file {path} is not UTF-8 (byte {e.start}: {e.reason}); convert it to UTF-8") from None
    except OSError as e:
        raise DataError(f"cannot read text file {path}: {e.strerror}; {_HINT}") from None
    return text[:max_chars] if max_chars > 0 else text


def _download(url: str, path: Path, timeout: float = 30.0) -> None:
    print(f"downloading {url} -> {path}", flush=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, path)  # a failed download never leaves a partial file under the real name
    except (OSError, ValueError) as e:  # URLError, timeouts and HTTP errors are OSErrors; a bad URL a ValueError
        reason = getattr(e, "reason", None) or e
        raise DataError(f"text file {path} is missing and the download from {url} failed ({reason}); {_HINT}") \
            from None
    finally:
        tmp.unlink(missing_ok=True)


def prepare_splits(text: str, tokenizer, out_dir: str | os.PathLike, val_fraction: float, name: str) -> dict:
    """Tokenizes `text` into out_dir/train/00000.ds and out_dir/val/00000.ds; returns {split: token count}.

    val is the last `val_fraction` of the characters (nanoGPT's split); val_fraction == 0 writes no val split.
    `name` labels the corpus in errors. Other shards in those split directories are removed: they would
    otherwise be read as part of the split."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} must be in [0, 1)")
    cut = int(len(text) * (1.0 - val_fraction))
    splits = {"train": text[:cut]}
    if val_fraction > 0:
        splits["val"] = text[cut:]
    encoded = {split: tokenizer.encode(part) for split, part in splits.items()}
    for split, ids in encoded.items():
        if len(ids) == 0:
            raise DataError(f"the {split} split of {name} is empty ({len(text)} characters, val_fraction="
                            f"{val_fraction}); use more text or change data.val_fraction")
    out_dir = Path(out_dir)
    for split in ("train", "val"):
        for stale in (out_dir / split).glob("*.ds"):
            for p in (stale, Path(f"{stale}.index"), Path(f"{stale}.metadata")):
                p.unlink(missing_ok=True)
    return {split: write_shard(out_dir / split / "00000.ds", [ids], tokenizer_name=tokenizer.name,
                               vocab_size=tokenizer.vocab_size)
            for split, ids in encoded.items()}
