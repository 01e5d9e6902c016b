"""A run's inputs: its tokenizer and token shards, prepared in (or found from) the run directory.

    inputs = prepare_data(cfg, run_dir)      # tokenizer, {source: train shards}, {source: val shards}, weights

Text sources (the stdlib corpus, data.path) are tokenized once into RUN/data/{train,val}, with a record of what
from (RUN/data/source.json: the data settings and a SHA-256 of the text); a run whose text changed since refuses
to start rather than train on stale tokens. Prepared shard directories (data.source=shards, from
gptjax.data.prepare) are read where they are. Post-training records (data.source=chat or preferences) become rows
(gptjax.data.conversations) in RUN/data/rows.npz, under the same rule: made again only when the records, the chat
template, the tokenizer or the row settings changed, and then only with data.retokenize on a started run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
from pathlib import Path
from typing import NamedTuple

import ml_collections
import numpy as np

from gptjax.config import parse_mixture
from gptjax.data import DataError, TokenShard, prepare
from gptjax.data.chat import ChatTemplate, read_records
from gptjax.data.conversations import check_usable, describe_report, preference_rows, sft_rows, split_records
from gptjax.data.loader import WindowLoader
from gptjax.data.shards import open_split
from gptjax.data.sources import prepare_splits, read_text, stdlib_corpus
from gptjax.errors import GptjaxError
from gptjax.rundir import RunDir, RunDirError, write_atomically
from gptjax.tokenizer import Tokenizer, build_tokenizer, load_tokenizer


class Inputs(NamedTuple):
    tokenizer: Tokenizer
    train: dict[str, list[TokenShard]]  # source name -> its training shards (rows: {column: array})
    val: dict[str, list[TokenShard]]  # the sources that have a validation split
    weights: dict[str, float] | None  # data.shards' mixture weights (None: every window equally likely)

    @property
    def rows(self) -> bool:
        """train and val hold post-training rows ({column: array}, gptjax.data.packing), not token shards."""
        return any(isinstance(split, dict) for split in self.train.values())


def prepare_data(cfg: ml_collections.ConfigDict, run_dir: str | Path | RunDir, write: bool = True, *,
                 base_tokenizer: Tokenizer | None = None) -> Inputs:
    """The run's tokenizer and shards. write=False (processes other than the first) only reads what the first
    process wrote. base_tokenizer: the tokenizer of the model the run starts from (checkpoint.init_from), which
    post-training data is tokenized with unless data.tokenizer names one."""
    d, run_dir = cfg.data, RunDir(run_dir)
    if d.source in ("chat", "preferences"):
        return _post_training_rows(cfg, run_dir, write, base_tokenizer)
    if d.source == "shards":
        mixture = parse_mixture(d.shards)
        train = {name: open_split(s.path / "train") for name, s in mixture.items()}
        val = {name: open_split(s.path / "val") for name, s in mixture.items() if (s.path / "val").exists()}
        tokenizer = shards_tokenizer(d.tokenizer, [s.path for s in mixture.values()])
        if write and not (run_dir.tokenizer.exists() and _saved_tokenizer(run_dir) == tokenizer):
            tokenizer.save(run_dir.tokenizer)  # the run directory alone is enough to sample from the model
        weights = None if any(s.weight is None for s in mixture.values()) else {
            name: s.weight for name, s in mixture.items()}
        return Inputs(tokenizer, train, val, weights)

    if d.source == "files":
        return _curated_files(cfg, run_dir, write)
    if write:
        tokenizer = _text_data(cfg, run_dir)
    else:
        tokenizer = load_tokenizer(run_dir.tokenizer)
    val = {d.source: open_split(run_dir.data / "val")} if (run_dir.data / "val").exists() else {}
    return Inputs(tokenizer, {d.source: open_split(run_dir.data / "train")}, val, None)


def _curated_files(cfg: ml_collections.ConfigDict, run_dir: RunDir, write: bool) -> Inputs:
    """data.source=files: the files cleaned, filtered, deduplicated and tokenized by gptjax.data.prepare into
    RUN/prepared (a source per file, or per suffix of a folder; its report in RUN/prepared/report.md), then read
    as one mixture, every window equally likely. prepare redoes a stage only when its files or settings changed,
    so a resume costs a check."""
    d = cfg.data
    spec = d.tokenizer
    if spec == "char":  # the default, for one text; the sources of files each get the same, from any text
        spec = "byte"
        if write:
            print("data: the char tokenizer needs one text to take its characters from; files are tokenized as "
                  "bytes (set data.tokenizer=gpt2, a tokenizer.json or a directory for BPE)")
    out = run_dir.path / "prepared"
    pcfg = prepare.load(None, [f"tokenizer.name={spec}", f"split.val_fraction={d.val_fraction}"],
                        [p.strip() for p in d.path.split(",") if p.strip()])
    # What the tokens are made from: on a started run, files that changed are refused (as a changed text is),
    # since prepare would otherwise redo its stages and the run go on with other data without a word.
    now = {"source": "files", "paths": d.path, "tokenizer": spec, "val_fraction": d.val_fraction,
           "files": [f for s in pcfg.sources.values() for f in prepare.input_files(s)]}
    saved = _read_json(run_dir.data_source)
    if write and run_dir.started() and saved is not None and saved != now:
        if not d.retokenize:
            raise DataError(f"the data files changed since {out} was prepared from them "
                            f"({prepare.describe_change(saved, now)}); the run would go on with other data; start "
                            "a new --workdir, or set --config.data.retokenize=true to prepare them again and "
                            "continue this run on them")
        print(f"data: the files changed ({prepare.describe_change(saved, now)}); preparing them again "
              "(data.retokenize=true)")
    if write:
        prepare.prepare(pcfg, out)
        run_dir.data_source.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(run_dir.data_source, json.dumps(now, indent=1))
    tokenizer = load_tokenizer(out / "tokenizer")
    if write and not (run_dir.tokenizer.exists() and _saved_tokenizer(run_dir) == tokenizer):
        tokenizer.save(run_dir.tokenizer)
    names = list(pcfg.sources)
    for name in names:
        if not any((out / name / "train").glob("*.ds")):
            raise DataError(f"no document of source {name} ({pcfg.sources[name].path}) was left after cleaning and "
                            f"deduplication (see {out / 'report.md'}); check the files, or leave that path out")
    train = {name: open_split(out / name / "train") for name in names}
    val = {name: open_split(out / name / "val") for name in names if any((out / name / "val").glob("*.ds"))}
    return Inputs(tokenizer, train, val, None)


ROWS_VERSION = 1  # how records become rows; a change here makes every run's rows again


def _post_training_rows(cfg: ml_collections.ConfigDict, run_dir: RunDir, write: bool,
                        base: Tokenizer | None) -> Inputs:
    d = cfg.data
    rows_file = run_dir.data / "rows.npz"
    if not write:
        return _rows_inputs(load_tokenizer(run_dir.tokenizer), rows_file, d.source)
    if d.tokenizer != "char" or base is None:  # "char" is the default: unset, the starting model's tokenizer
        if d.tokenizer == "char":
            raise DataError(f"data.source={d.source} needs a tokenizer: set checkpoint.init_from to the model to "
                            "fine-tune (its tokenizer is used), or data.tokenizer (gpt2, a tokenizer.json, a "
                            "directory)")
        base = build_tokenizer(d.tokenizer)
    template = ChatTemplate.choose(d.chat_template, base)
    tokenizer = template.extend(base)
    added = tokenizer.vocab_size - base.vocab_size
    records = list(read_records(d.path))
    if d.val_path:
        train, val = records, list(read_records(d.val_path))
    else:
        train, val = split_records(records, d.val_fraction)
    length = cfg.model.block_size
    now = {"source": d.source, "version": ROWS_VERSION, "path": d.path, "val_path": d.val_path,
           "val_fraction": d.val_fraction, "records": _records_hash(train), "val_records": _records_hash(val),
           "template": template.fingerprint(), "tokenizer": tokenizer.fingerprint, "block_size": length,
           "pack": d.pack if d.source == "chat" else False}
    saved = _read_json(run_dir.data_source)
    if saved == now and rows_file.exists():
        return _rows_inputs(load_tokenizer(run_dir.tokenizer), rows_file, d.source)
    if run_dir.started() and saved is not None:
        change = ", ".join(f"{k} {saved.get(k)!r} -> {v!r}" if k not in ("records", "val_records") else
                           f"the {'training' if k == 'records' else 'held-out'} records' content"
                           for k, v in now.items() if saved.get(k) != v)
        if not d.retokenize:
            raise DataError(f"the post-training data changed since {rows_file} was made ({change}); the run would "
                            "go on with other data; start a new --workdir, or set --config.data.retokenize=true")
        print(f"data: {change}; making the rows again (data.retokenize=true)")
    print(f"data: chat template: {template.origin}" + (f"; {added} special token{'s' * (added > 1)} added to the "
                                                       f"tokenizer ({', '.join(template.special_tokens())})"
                                                       if added else ""))
    build = (lambda recs: sft_rows(recs, template, tokenizer, length, d.pack)) if d.source == "chat" else \
        (lambda recs: preference_rows(recs, template, tokenizer, length))
    built = {"train": build(train)}
    check_usable("training", built["train"].report, d.path)
    if val:
        built["val"] = build(val)
    report = {split: b.report for split, b in built.items()}
    for split, b in built.items():
        print(describe_report(split, b.report))
    try:
        run_dir.data.mkdir(parents=True, exist_ok=True)
        run_dir.data_source.unlink(missing_ok=True)  # written last: its presence marks the rows complete
        arrays = {f"{split}/{k}": v for split, b in built.items() for k, v in b.rows.items()}
        with open(rows_file.with_suffix(".tmp"), "wb") as f:
            np.savez(f, **arrays)
        rows_file.with_suffix(".tmp").replace(rows_file)
        tokenizer.save(run_dir.tokenizer)
        write_atomically(run_dir.data / "report.json", json.dumps(report, indent=1))
    except OSError as e:
        raise RunDirError(f"cannot write the rows to {run_dir.data}: {e.strerror or e}; free disk space or choose "
                          "a writable --workdir") from None
    write_atomically(run_dir.data_source, json.dumps(now, indent=1))
    return _rows_inputs(tokenizer, rows_file, d.source)


def _records_hash(records: list) -> str:
    digest = hashlib.sha256()
    for r in records:
        digest.update(json.dumps(r if not isinstance(r, Exception) else str(r), sort_keys=True, ensure_ascii=False,
                                 default=str).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _rows_inputs(tokenizer: Tokenizer, rows_file: Path, name: str) -> Inputs:
    with np.load(rows_file) as z:
        splits: dict[str, dict] = {}
        for key in z.files:
            split, column = key.split("/", 1)
            splits.setdefault(split, {})[column] = z[key]
    return Inputs(tokenizer, {name: splits["train"]}, {name: splits["val"]} if "val" in splits else {}, None)


def _text_data(cfg: ml_collections.ConfigDict, run_dir: RunDir) -> Tokenizer:
    """RUN/data for a text source: reused when it was made from the same text with the same settings, made when
    there is none, and otherwise (the text changed under a run) refused, unless data.retokenize."""
    d = cfg.data
    text = stdlib_corpus(d.max_chars) if d.source == "stdlib" else read_text(d.path, d.url, d.max_chars)
    now = fingerprint(cfg, text)
    saved = _read_json(run_dir.data_source) if run_dir.has_prepared_data() else None
    if saved is not None and same_data(saved, now):
        return load_tokenizer(run_dir.tokenizer)
    tokenizer = None
    if run_dir.started() and run_dir.has_prepared_data():
        if saved is None:  # tokenized by a gptjax that kept no fingerprint: what is there now is taken as it
            print(f"warning: {run_dir.data} carries no record of what it was tokenized from; it is used as it is, "
                  "and the current input is recorded", file=sys.stderr)
            write_atomically(run_dir.data_source, json.dumps(now, indent=1))
            return load_tokenizer(run_dir.tokenizer)
        change = describe_change(saved, now)
        if not d.retokenize:
            raise DataError(f"{change} since {run_dir.data} was tokenized from it; the run would go on with the "
                            f"old tokens; start a new --workdir for the new text, or set --config.data.retokenize="
                            "true to tokenize it again and continue this run on it")
        print(f"data: {change}; tokenizing it again with the run's tokenizer (data.retokenize=true)")
        tokenizer = load_tokenizer(run_dir.tokenizer)  # the model's vocabulary stays the run's
    elif run_dir.has_prepared_data():
        print(f"data: {run_dir.data} was made from other input or settings and no run has started on it; "
              "tokenizing again")
    if tokenizer is None:
        tokenizer = build_tokenizer(d.tokenizer, text)
    try:
        run_dir.data_source.unlink(missing_ok=True)  # written last again: its presence marks the data complete
        counts = prepare_splits(text, tokenizer, run_dir.data, d.val_fraction, name=d.source)
        tokenizer.save(run_dir.tokenizer)
    except OSError as e:
        raise RunDirError(f"cannot write the tokenized data to {run_dir.data}: {e.strerror or e}; free disk space "
                          "or choose a writable --workdir") from None
    write_atomically(run_dir.data_source, json.dumps(now, indent=1))
    print(f"data: {len(text):,} characters -> {counts.get('train', 0):,} training + {counts.get('val', 0):,} "
          f"validation tokens ({tokenizer.name} tokenizer, vocabulary {tokenizer.vocab_size})")
    return tokenizer


# What decides the tokens: the settings, and the text itself (by content; size and time are kept to describe a change)
_DATA_SETTINGS = ("source", "tokenizer", "val_fraction", "max_chars")


def fingerprint(cfg: ml_collections.ConfigDict, text: str) -> dict:
    d = cfg.data
    record = {key: d[key] for key in _DATA_SETTINGS}
    record.update(chars=len(text), sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest())
    if d.source == "text":
        path = Path(d.path).expanduser().absolute()
        stat = path.stat()
        record.update(path=str(path), bytes=stat.st_size, mtime_ns=stat.st_mtime_ns)
    return record


def same_data(saved: dict, now: dict) -> bool:
    return all(saved.get(key) == now[key] for key in (*_DATA_SETTINGS, "sha256"))


def describe_change(saved: dict, now: dict) -> str:
    settings = [f"data.{key} {saved.get(key)!r} -> {now[key]!r}" for key in _DATA_SETTINGS
                if saved.get(key) != now[key]]
    if settings:
        return f"the data settings changed ({', '.join(settings)})"
    if now["source"] != "text":
        return (f"the {now['source']} corpus changed ({saved.get('chars', '?'):,} -> {now['chars']:,} characters, "
                "different content)")

    def when(ns):
        return datetime.datetime.fromtimestamp(ns / 1e9).isoformat(timespec="seconds") if ns else "?"

    return (f"data.path={now['path']} changed (then {saved.get('bytes', '?'):,} bytes, modified "
            f"{when(saved.get('mtime_ns'))}; now {now['bytes']:,} bytes, modified {when(now['mtime_ns'])}; "
            "different content)")


def _saved_tokenizer(run_dir: RunDir) -> Tokenizer | None:
    try:
        return load_tokenizer(run_dir.tokenizer)
    except GptjaxError:
        return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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
    def largest(split) -> int:  # token shards, or rows' columns
        if isinstance(split, dict):
            return max(int(v.max()) for k, v in split.items() if k.endswith(("tokens", "targets")))
        return max(s.max_token_id() for s in split)

    biggest = max([loader.max_token_id()] + [largest(split) for split in val.values()])
    if biggest >= vocab_size:
        raise DataError(f"the data holds token id {biggest}, beyond the model's vocabulary of "
                        f"{vocab_size} ({tokenizer.name}): the shards were written with another "
                        "tokenizer; set data.tokenizer to that one (or save it as tokenizer/ beside the shards)")
