"""Sources from paths: what a file or a folder of files holds, so that data is named without writing a config.

    sources_from_paths(["notes/", "web=crawl.jsonl.gz"])
    # {"notes_txt": {"kind": "text", "path": "notes", "glob": "**/*.txt"}, "notes_md": ..., "web": {...}}

A file's kind comes from its name: .txt/.md/.rst/.text are text (one document per file), .jsonl/.ndjson (also
gzipped) are JSON lines with a "text" field, .parquet a table with a "text" column, .warc/.warc.gz web archives.
A folder is read recursively, one source per file suffix it holds. NAME=PATH names a source; otherwise the name
is the path's own (and the suffix, for a folder with several). Files of other kinds in a folder are not read.
"""

from __future__ import annotations

import re
from pathlib import Path

from gptjax.config import ConfigError

KINDS = {  # name suffix -> source kind
    ".txt": "text", ".md": "text", ".rst": "text", ".text": "text",
    ".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".ndjson": "jsonl", ".ndjson.gz": "jsonl",
    ".parquet": "parquet",
    ".warc": "warc", ".warc.gz": "warc",
}


def suffix_of(path: Path) -> str | None:
    """The known suffix the file's name ends with (the longest: .jsonl.gz rather than none), or None."""
    name = path.name.lower()
    return next((suffix for suffix in sorted(KINDS, key=len, reverse=True) if name.endswith(suffix)), None)


def sources_from_paths(specs: list[str]) -> dict[str, dict]:
    """{name: {kind, path, glob}} (the arguments of gptjax.data.prepare.source) for each [NAME=]PATH;
    ConfigError for a path that does not exist or holds no file of a known kind, naming what it found. A folder
    gives one source per file suffix it holds (notes_txt, notes_md), each read recursively."""
    sources: dict = {}
    for spec in specs:
        name, _, text = spec.partition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
        path = Path(text).expanduser()
        if not path.exists():
            raise ConfigError(f"data path {text} does not exist; give files or folders of "
                              f"{', '.join(KINDS)} files")
        base = _name(name or path.name.split(".")[0])
        if path.is_file():
            suffix = suffix_of(path)
            if suffix is None:
                raise ConfigError(f"data path {text}: cannot tell what {path.name} holds from its name; name it "
                                  f"with one of {', '.join(KINDS)}")
            found = {suffix: dict(kind=KINDS[suffix], path=str(path), glob="")}
        else:
            files = [p for p in path.rglob("*") if p.is_file()]
            suffixes = sorted({s for p in files if (s := suffix_of(p))})
            if not suffixes:
                others = sorted({p.suffix or p.name for p in files})[:8]
                raise ConfigError(f"data path {text} holds no {', '.join(KINDS)} files (found: "
                                  f"{', '.join(others) or 'nothing'})")
            found = {s: dict(kind=KINDS[s], path=str(path), glob=f"**/*{s}") for s in suffixes}
        for suffix, s in found.items():
            key = base if len(found) == 1 else f"{base}_{_name(suffix)}"
            if key in sources:
                raise ConfigError(f"two data paths are both named {key!r}; name them: NAME=PATH")
            sources[key] = s
    return sources


def _name(text: str) -> str:
    return re.sub(r"\W+", "_", text).strip("_").lower() or "data"
