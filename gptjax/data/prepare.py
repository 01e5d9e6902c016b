"""Prepare training data: sources -> cleaning and quality filters -> deduplication -> tokenizer -> token shards.

    python -m gptjax.data.prepare --config configs/data/legal_web.py --workdir prepared/legal_web

datatrove runs every document stage (its local executor; its logs and completion markers under OUT/logs make a
re-run skip finished work and an interrupted run resume). Each stage records what it was made from (the source's
settings, the stage settings, every input file's size and modification time: OUT/logs/NAME/*.inputs.json); when
that changes, the stage and the stages after it are redone, with a line saying why. --force redoes everything.
The output directory holds, per source NAME:

    OUT/NAME/curated/           documents after normalization and filters (jsonl.gz)
    OUT/NAME/removed/STAGE/     what each filter removed, for auditing
    OUT/NAME/deduped/           documents after exact and MinHash deduplication
    OUT/NAME/train/, val/       token shards (datatrove's .ds format), split by document
    OUT/NAME/tokenizer/         the tokenizer, so each OUT/NAME is a training source on its own
    OUT/report.json, report.md  documents and characters per stage, removals by reason, tokens, timings

Train on a weighted mixture of the results with
    --config.data.source=shards --config.data.shards=OUT/web:0.7,OUT/legal:0.3
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import ml_collections
import numpy as np
import yaml

from gptjax import tracking
from gptjax.command import parse_args
from gptjax.config import ConfigError, load_config, to_yaml
from gptjax.data import DataError
from gptjax.data.dedup import deduplicate
from gptjax.data.executors import run_datatrove, stage_stats
from gptjax.data.paths import sources_from_paths
from gptjax.data.readers import REPORTED_COUNTERS, SafeJsonlReader
from gptjax.data.shards import write_shard
from gptjax.data.stages import (CLEANING_CODE, EnglishWords, FineWebQuality, LanguageFilter, MainText, Normalize,
                                TextFileReader, WarcFileReader)
from gptjax.errors import report_errors
from gptjax.rundir import RunDir, RunDirError, check_writable, first_missing, remove_created
from gptjax.tokenizer import BPETokenizer, Tokenizer, build_tokenizer, env_flag, hub_reachable

SOURCE_KINDS = ("jsonl", "text", "parquet", "warc", "hf")
FILTERS = ("gopher_repetition", "gopher_quality", "c4", "fineweb")  # the quality filters, in the order they run
SKIPPABLE = ("normalize", "languages", *FILTERS, "pii", "exact_dedup", "minhash_dedup")


def source(kind: str, path: str, *, glob: str = "", text_key: str = "text", limit: int = 0,
           on_bad_utf8: str = "replace", skip: str = "", streaming: bool = False) -> ml_collections.ConfigDict:
    """One input. kind: jsonl (also .jsonl.gz), text (a file per document), parquet, warc (main text extracted from
    the HTML with trafilatura), hf (a Hugging Face dataset name, or a local directory in its place). path: a file,
    a directory, or a hub name; glob: which files of a directory to read (default: all). skip: comma-separated
    stages not to apply to this source (domain text such as court opinions fails web-text heuristics).
    streaming: for hub datasets, read as a stream instead of downloading the whole dataset first."""
    s = ml_collections.ConfigDict(dict(kind=kind, path=path, glob=glob, text_key=text_key, limit=limit,
                                       on_bad_utf8=on_bad_utf8, skip=skip, streaming=streaming))
    s.lock()
    return s


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.sources = ml_collections.ConfigDict()  # name -> source(...); config files add their own
    c.stages = dict(
        normalize=True,  # NFC Unicode, collapsed spaces, at most one blank line in a row
        gopher_repetition=True,
        gopher_quality=True,
        c4=False,  # C4's line-level rules (terminal punctuation, javascript, policy lines...)
        fineweb=False,
        languages="",  # comma-separated ISO codes to keep (e.g. "en"), by offline fastText language ID; "": all
        language_min_score=0.65,
        pii=False,  # mask email and public IP addresses
        exact_dedup=True,
        minhash_dedup=True,
        minhash_threshold=0.8,  # Jaccard similarity above which near-duplicates are removed
        keep_removed=True,  # write what each filter removed under OUT/NAME/removed/
    )
    c.tokenizer = dict(
        name="gpt2",  # as data.tokenizer: 'gpt2' (hub), a tokenizer.json, or a directory with vocab.json+merges.txt
        train=False,  # train a byte-level BPE on the curated documents instead
        vocab_size=32768,
        special_tokens="<|endoftext|>",  # comma-separated; the first one separates documents
    )
    c.split = dict(val_fraction=0.01)  # share of documents (chosen by a hash of their id) held out for validation
    # local: this machine (datatrove's LocalPipelineExecutor); slurm / ray: datatrove's executors for a cluster,
    # configured by the keys below (datatrove's own arguments of the same names).
    c.executor = dict(kind="local", tasks=1, workers=1, partition="", time="24:00:00", cpus_per_task=1,
                      mem_per_cpu_gb=2)
    c.lock()
    c.sources.unlock()
    return c


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Everything that can be checked before any work starts: sources exist and are of known kinds."""
    if not cfg.sources:
        raise ConfigError("no sources: add some in the config, e.g. c.sources.web = source('jsonl', 'data/web')")
    for name, s in cfg.sources.items():
        if s.kind not in SOURCE_KINDS:
            raise ConfigError(f"sources.{name}.kind={s.kind!r} is not one of: {', '.join(SOURCE_KINDS)}")
        if s.on_bad_utf8 not in ("replace", "skip"):
            raise ConfigError(f"sources.{name}.on_bad_utf8={s.on_bad_utf8!r} is not one of: replace, skip")
        unknown = set(_skipped(s)) - set(SKIPPABLE)
        if unknown:
            raise ConfigError(f"sources.{name}.skip names unknown stages {sorted(unknown)}; stages: "
                              f"{', '.join(SKIPPABLE)}")
        if s.kind != "hf" and not Path(s.path).exists():
            raise ConfigError(f"sources.{name}.path: {s.path} does not exist (set GPTJAX_DATA_DIR or override "
                              f"--config.sources.{name}.path=...)")
    if cfg.executor.kind not in ("local", "slurm", "ray"):
        raise ConfigError(f"executor.kind={cfg.executor.kind!r} is not one of: local, slurm, ray")
    if cfg.executor.kind == "slurm" and not cfg.executor.partition:
        raise ConfigError("executor.kind='slurm' needs executor.partition (the Slurm partition to submit to)")
    if not 0.0 < cfg.stages.minhash_threshold < 1.0:
        raise ConfigError(f"stages.minhash_threshold={cfg.stages.minhash_threshold} must be in (0, 1)")
    if not 0.0 <= cfg.split.val_fraction < 1.0:
        raise ConfigError(f"split.val_fraction={cfg.split.val_fraction} must be in [0, 1)")
    if cfg.tokenizer.train and cfg.tokenizer.vocab_size < 257:
        raise ConfigError(f"tokenizer.vocab_size={cfg.tokenizer.vocab_size} must exceed the 256 byte symbols")


def _skipped(s) -> list[str]:
    return [name.strip() for name in s.skip.split(",") if name.strip()]


def load(path: str | None, overrides: list[str], paths: list[str] = ()) -> ml_collections.ConfigDict:
    """The config file (or none), then a source for each of `paths` ([NAME=]PATH: gptjax.data.paths), then the
    overrides (which may set those sources' keys: --config.sources.NAME.text_key=body)."""
    def base():
        c = base_config()
        if path and Path(path).suffix in (".yaml", ".yml"):  # a saved config: recreate its sources to fill in
            for name in (yaml.safe_load(Path(path).read_text()) or {}).get("sources", {}) or {}:
                c.sources[name] = source("jsonl", "")
        return c

    def add_paths(cfg):
        for name, spec in sources_from_paths(list(paths)).items():
            if name in cfg.sources:
                raise ConfigError(f"--source {name}: the config already has a source of that name; name it: "
                                  "--source OTHER=PATH")
            cfg.sources[name] = source(**spec)
    return load_config(path, overrides, base=base, check=validate, extend=add_paths if paths else None)


# ----------------------------------------------------------------------------------------------------------------
# Stage 1: read, normalize, filter (datatrove)


def _reader(s: ml_collections.ConfigDict):
    from datatrove.pipeline.readers import HuggingFaceDatasetReader, ParquetReader


    path = Path(s.path)
    folder, glob = (str(path.parent), path.name) if path.is_file() else (s.path, s.glob or None)
    # A progress bar per file where someone is watching; plain logs otherwise.
    common = dict(glob_pattern=glob, limit=s.limit or -1, text_key=s.text_key, doc_progress=tracking.interactive())
    if s.kind == "jsonl":
        return SafeJsonlReader(folder, on_bad_utf8=s.on_bad_utf8, **common)
    if s.kind == "text":
        return TextFileReader(folder, **common)
    if s.kind == "parquet":
        return ParquetReader(folder, **common)
    if s.kind == "warc":
        return WarcFileReader(folder, **common)
    # hf: a hub name, or a local directory in its place (saved with save_to_disk, or data files)
    if path.is_dir() and any(path.glob("*.parquet")):
        return ParquetReader(folder, **common)
    if path.is_dir() and any(path.glob("*.jsonl*")):
        return SafeJsonlReader(folder, on_bad_utf8=s.on_bad_utf8, **common)
    return HuggingFaceDatasetReader(s.path, dataset_options={"split": "train"}, load_from_disk=path.is_dir(),
                                    streaming=s.streaming and not path.is_dir(), limit=s.limit or -1,
                                    text_key=s.text_key, doc_progress=tracking.interactive())


def quality_filter(name: str, exclusion_writer=None):
    """One of datatrove's quality filters (FILTERS) at its defaults, counting English words as EnglishWords
    does; exclusion_writer: where the documents it removes are written."""
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter

    make = dict(gopher_repetition=GopherRepetitionFilter, gopher_quality=GopherQualityFilter, c4=C4QualityFilter,
                fineweb=FineWebQuality)[name]
    return make(exclusion_writer=exclusion_writer, language=_english_words())


@functools.cache
def _english_words() -> EnglishWords:  # one per process: datatrove caches word lists by tokenizer
    return EnglishWords()


def cleaning_pipeline(cfg, s, out: Path) -> list:
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.writers import JsonlWriter

    st = {name: value if name not in _skipped(s) else type(value)() for name, value in cfg.stages.items()}

    def removed(stage):
        return JsonlWriter(str(out / "removed" / stage)) if cfg.stages.keep_removed else None

    steps = [_reader(s)]
    if s.kind == "warc":
        steps.append(MainText(timeout=5.0))
    if st["normalize"]:
        steps.append(Normalize())
    if st["languages"]:  # first: the quality heuristics are for the kept languages
        steps.append(LanguageFilter([code.strip() for code in st["languages"].split(",") if code.strip()],
                                    cfg.stages.language_min_score, exclusion_writer=removed("language")))
    steps += [quality_filter(name, removed(name)) for name in FILTERS if st[name]]
    if st["pii"]:
        steps.append(PIIFormatter())
    steps.append(JsonlWriter(str(out / "curated")))
    return steps


# ----------------------------------------------------------------------------------------------------------------
# Stages 3-4: tokenizer and shards


def iter_documents(directory: Path):
    """(id, text) of every document in a directory of jsonl.gz files written by datatrove, in file order."""
    import gzip

    for path in sorted(directory.glob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    yield str(record.get("id")), record["text"]


def train_bpe(cfg, directories: list[Path]) -> Tokenizer:
    """A byte-level BPE trained with `tokenizers` on the deduplicated documents of every source."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    special = [t.strip() for t in cfg.tokenizer.special_tokens.split(",") if t.strip()]
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.tokenizer.vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator((text for d in directories for _, text in iter_documents(d)), trainer=trainer)
    return BPETokenizer(tok, name="bpe")


def _unit_hash(doc_id: str) -> float:
    return int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:8], "little") / 2**64


def validation_ids(doc_ids: list[str], fraction: float) -> set[str]:
    """Documents held out by a hash of their id: stable across re-runs and independent of document order. A small
    source still gives at least one validation document (when it has two or more and fraction > 0)."""
    if fraction <= 0 or len(doc_ids) < 2:
        return set()
    held = {i for i in doc_ids if _unit_hash(i) < fraction}
    return held or {min(doc_ids, key=_unit_hash)}


def write_token_shards(tokenizer: Tokenizer, documents: Path, out: Path, val_fraction: float,
                       shard_tokens: int = 100_000_000) -> dict:
    """Tokenizes every document (end-of-text appended when the tokenizer has one) into out/{train,val}/NNNNN.ds."""
    splits = {"train": [], "val": []}
    counts = {"train": {"documents": 0, "tokens": 0, "shards": 0}, "val": {"documents": 0, "tokens": 0, "shards": 0}}
    chars = 0
    eot = [] if tokenizer.eot_id is None else [tokenizer.eot_id]

    def flush(split):
        if splits[split]:
            index = counts[split]["shards"]
            write_shard(out / split / f"{index:05d}.ds", splits[split], tokenizer_name=tokenizer.name,
                        vocab_size=tokenizer.vocab_size)
            counts[split]["shards"] += 1
            splits[split] = []

    pending = {"train": 0, "val": 0}
    # Ids first (a small source must still get a validation document): reading twice keeps memory flat.
    doc_ids = [doc_id for doc_id, _ in iter_documents(documents)]
    held_out = validation_ids(doc_ids, val_fraction)
    bar = tracking.progress_bar(len(doc_ids), f"tokenizing {documents.parent.name}", "doc", leave=False)
    for doc_id, text in iter_documents(documents):
        bar.update()
        split = "val" if doc_id in held_out else "train"
        ids = np.concatenate([tokenizer.encode(text), np.asarray(eot, np.int32)])
        splits[split].append(ids)
        counts[split]["documents"] += 1
        counts[split]["tokens"] += len(ids)
        chars += len(text)
        pending[split] += len(ids)
        if pending[split] >= shard_tokens:
            flush(split)
            pending[split] = 0
    for split in splits:
        flush(split)
    bar.close()
    total = counts["train"]["tokens"] + counts["val"]["tokens"]
    return {**counts, "characters": chars, "chars_per_token": round(chars / max(total, 1), 3)}


# ----------------------------------------------------------------------------------------------------------------
# The whole chain


# ----------------------------------------------------------------------------------------------------------------
# What each stage was made from: a finished stage is reused only when that is unchanged


def input_files(s: ml_collections.ConfigDict) -> list[list]:
    """[path, bytes, mtime_ns] of every file a source reads (none for a hub dataset, named by its config)."""
    path = Path(s.path)
    if not path.exists():
        return []
    files = [path] if path.is_file() else sorted(p for p in path.rglob(s.glob or "*") if p.is_file())
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def describe_change(saved: dict | None, now: dict) -> str:
    """What differs between a stage's recorded inputs and the current ones, in a few words."""
    if saved is None:
        return "no record of what its output was made from (an earlier gptjax, or an interrupted start)"
    changes = []
    before, after = {f[0]: f[1:] for f in saved.get("files", [])}, {f[0]: f[1:] for f in now.get("files", [])}
    added, gone = sorted(set(after) - set(before)), sorted(set(before) - set(after))
    changed = sorted(f for f in set(before) & set(after) if before[f] != after[f])
    for label, names in (("added", added), ("removed", gone), ("changed", changed)):
        if names:
            changes.append(f"{len(names)} input file{'s' * (len(names) > 1)} {label} ({Path(names[0]).name}"
                           + (", ..." if len(names) > 1 else "") + ")")

    def flat(d, prefix=""):
        return {k2: v2 for k, v in d.items() if k != "files"
                for k2, v2 in (flat(v, f"{prefix}{k}.").items() if isinstance(v, dict) else [(f"{prefix}{k}", v)])}

    old, new = flat(saved), flat(now)
    changes += [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
                if old.get(key) != new.get(key) and not key.startswith("upstream")]
    if not changes and saved.get("upstream") != now.get("upstream"):
        changes.append("the stage before it was redone")
    return "; ".join(changes) or "its record differs"


_DEDUP_SETTINGS = ("exact_dedup", "minhash_dedup", "minhash_threshold")  # the deduplication stage's, not cleaning's


def preflight(cfg: ml_collections.ConfigDict) -> Tokenizer | None:
    """What can fail before anything is written, checked first: every source readable as configured, and the
    tokenizer (one that cannot be had, offline or from a wrong path, fails now rather than after the cleaning).
    Returns the tokenizer, or None when one is to be trained."""
    for name, s in cfg.sources.items():
        check_columns(name, s)
        check_reachable(name, s)
    return None if cfg.tokenizer.train else build_tokenizer(cfg.tokenizer.name)


def check_reachable(name: str, s: ml_collections.ConfigDict) -> None:
    """A hub dataset with the hub out of reach is one line now, not the datasets library's minute of retries and
    a failed task."""
    if s.kind != "hf" or Path(s.path).exists() or env_flag("HF_DATASETS_OFFLINE") or env_flag("HF_HUB_OFFLINE"):
        return
    if not hub_reachable():
        raise DataError(f"sources.{name}: {s.path} is a Hugging Face hub dataset, and the hub cannot be reached (no "
                        f"network?); connect, point sources.{name}.path at a local copy, or set HF_DATASETS_OFFLINE=1 "
                        "to read it from the local cache")


def check_columns(name: str, s: ml_collections.ConfigDict) -> None:
    """Every parquet file of a source has its text column (datatrove would drop a file's rows with a warning in
    a log): one line naming the file, the columns it has and the key to set, before any work."""
    path = Path(s.path)
    if s.kind not in ("parquet", "hf") or not path.exists():
        return
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else sorted(path.rglob(s.glob or "*.parquet"))
    for file in (f for f in files if f.suffix == ".parquet"):
        try:
            columns = pq.read_schema(file).names
        except Exception as e:  # noqa: BLE001  (pyarrow's errors for a damaged file)
            raise DataError(f"sources.{name}: {file} is not a readable parquet file ({e}); remove or repair it") \
                from None
        if s.text_key not in columns:
            raise DataError(f"sources.{name}: {file} has no {s.text_key!r} column (its columns: "
                            f"{', '.join(columns)}); set --config.sources.{name}.text_key to the one that holds "
                            "the text, or move the file to a source of its own")


def fresh_stage(name: str, stage: str, record: dict, record_path: Path, outputs: list[Path], force: bool) -> None:
    """Reuse a stage's output (datatrove's completion markers skip finished work) only when it was made from
    `record`; otherwise remove its output and logs, saying why, so that it and the stages after it run again."""
    saved = json.loads(record_path.read_text()) if record_path.exists() else None
    existing = [p for p in outputs if p.exists()]
    if saved != record or force:
        if existing:
            why = "--force" if force else describe_change(saved, record)
            tracking.echo(f"[{name}] {stage}: {why}; doing it again")
        for path in existing:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1))


def prepare(cfg: ml_collections.ConfigDict, out: str | Path, *, force: bool = False) -> dict:
    """Runs every stage for every source into `out`; a stage whose inputs and settings are unchanged since it
    last finished is skipped, one whose are not is redone with the stages after it. force: redo everything."""
    tokenizer = preflight(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(cfg))
    report: dict = {"sources": {}, "timings": {}}
    documents: dict[str, Path] = {}  # per source: the directory of documents to tokenize
    pending: list[str] = []  # sources whose cleaning jobs are still queued or running (Slurm)
    # On a terminal, a bar over the stages: clean, dedup and tokenize per source, and the tokenizer (a stage that
    # is skipped still counts, so the bar ends full).
    stages = tracking.progress_bar(3 * len(cfg.sources) + 1, "prepare", "stage")

    def timed(label, fn, *args, **kwargs):
        began = time.perf_counter()
        result = fn(*args, **kwargs)
        report["timings"][label] = round(time.perf_counter() - began, 2)
        return result

    for name, s in cfg.sources.items():
        logs = out / "logs" / name
        clean = {"made_by": CLEANING_CODE, "source": s.to_dict(), "tasks": cfg.executor.tasks,
                 "files": input_files(s), "stages": {k: v for k, v in cfg.stages.items() if k not in _DEDUP_SETTINGS}}
        fresh_stage(name, "cleaning", clean, logs / "clean.inputs.json",
                    [logs / "clean", out / name / "curated", out / name / "removed"], force)
        tracking.echo(f"[{name}] reading and cleaning {s.path}")
        if not timed(f"{name}/clean", run_datatrove, cleaning_pipeline(cfg, s, out / name), logs / "clean", cfg):
            pending.append(name)
            continue
        stages.update()
        if not any((out / name / "curated").glob("*.jsonl*")):
            raise DataError(f"source {name!r} ({s.path}) yielded no documents after cleaning; see "
                            f"{out / name / 'removed'} and {logs / 'clean'}")
        enabled = {stage: cfg.stages[stage] and stage not in _skipped(s) for stage in ("exact_dedup", "minhash_dedup")}
        cleaning = stage_stats(logs / "clean")
        if any(enabled.values()):
            dedup_inputs = {"upstream": hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest(),
                            **enabled, "minhash_threshold": cfg.stages.minhash_threshold,
                            "tasks": cfg.executor.tasks, "workers": cfg.executor.workers}
            fresh_stage(name, "deduplication", dedup_inputs, logs / "dedup.inputs.json",
                        [logs / "dedup", out / name / "deduped", out / name / "removed" / "duplicates"], force)
            tracking.echo(f"[{name}] deduplicating")
            dedup = timed(f"{name}/dedup", deduplicate, out / name / "curated", out / name / "deduped",
                          logs / "dedup", exact=enabled["exact_dedup"], minhash=enabled["minhash_dedup"],
                          minhash_threshold=cfg.stages.minhash_threshold, tasks=cfg.executor.tasks,
                          workers=cfg.executor.workers,
                          exclusions_dir=out / name / "removed" / "duplicates" if cfg.stages.keep_removed else None)
            documents[name] = out / name / "deduped"
        else:
            kept = cleaning[-1].get("total", 0) if cleaning else 0
            dedup = {"exact": {"documents_in": kept, "removed": 0, "clusters": 0},
                     "minhash": {"documents_in": kept, "removed": 0, "clusters": 0}, "documents_out": kept}
            documents[name] = out / name / "curated"
        report["sources"][name] = {"path": s.path, "kind": s.kind, "cleaning": cleaning, "dedup": dedup}
        stages.update()

    if pending:  # Slurm runs the cleaning jobs; datatrove's completion markers let a re-run pick up from here
        stages.close()
        print(f"cleaning of {', '.join(pending)} is with Slurm (logs: {out / 'logs'}); run the same command again "
              "when its jobs have finished: finished stages are skipped", flush=True)
        return {**report, "pending": pending}
    deduped = list(documents.values())
    if cfg.tokenizer.train:
        tracking.echo(f"training a byte-level BPE tokenizer ({cfg.tokenizer.vocab_size} tokens)")
        tokenizer = timed("tokenizer", train_bpe, cfg, deduped)
    tokenizer.save(out / "tokenizer")
    report["tokenizer"] = {"name": tokenizer.name, "vocab_size": tokenizer.vocab_size}
    stages.update()

    for name in cfg.sources:
        tracking.echo(f"[{name}] tokenizing")
        for split in ("train", "val"):
            for stale in (out / name / split).glob("*.ds*"):
                stale.unlink()
        tokens = timed(f"{name}/tokenize", write_token_shards, tokenizer, documents[name], out / name,
                       cfg.split.val_fraction)
        tokens["tokens_per_second"] = round((tokens["train"]["tokens"] + tokens["val"]["tokens"])
                                            / max(report["timings"][f"{name}/tokenize"], 1e-9))
        tokenizer.save(out / name / "tokenizer")
        report["sources"][name]["tokens"] = tokens
        stages.update()
    stages.close()

    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(render_report(report))
    print(render_report(report))
    return report


def render_report(report: dict) -> str:
    lines = ["# Data preparation report", "",
             "| source | documents read | after cleaning | after dedup | exact dups | near dups | train tokens | "
             "val tokens | chars/token |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["sources"].items():
        cleaning = r["cleaning"]
        read = cleaning[0].get("documents", 0) if cleaning else 0
        kept = cleaning[-1].get("total", 0) if cleaning else 0  # the writer's count
        dedup, tokens = r["dedup"], r.get("tokens", {})
        lines.append(f"| {name} | {read:,} | {kept:,} | {dedup['documents_out']:,} | "
                     f"{dedup['exact']['removed']:,} | {dedup['minhash']['removed']:,} | "
                     f"{tokens.get('train', {}).get('tokens', 0):,} | {tokens.get('val', {}).get('tokens', 0):,} | "
                     f"{tokens.get('chars_per_token', 0)} |")
    lines += ["", "Removed or changed by stage (every record skipped is counted):", ""]
    before = len(lines)
    for name, r in report["sources"].items():
        for step in r["cleaning"]:
            dropped = {k: v for k, v in step.items()
                       if v and (k.startswith(("dropped", "removed")) or k in REPORTED_COUNTERS)}
            if dropped:
                lines.append(f"- {name} / {step['step']}: " + ", ".join(f"{k} {v:,}" for k, v in dropped.items()))
    if len(lines) == before:
        lines.append("- none: no cleaning step removed or changed a document")
    lines += ["", "Time per stage (s): " + ", ".join(f"{k} {v}" for k, v in report["timings"].items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    def options(parser):
        parser.add_argument("--force", action="store_true",
                            help="redo every stage, even those whose inputs and settings did not change")
        parser.add_argument("--source", action="append", default=[], metavar="[NAME=]PATH",
                            help="a file or folder of .txt/.md, .jsonl(.gz), .parquet or .warc(.gz) files to "
                                 "prepare, without a config file (repeatable; a folder gives a source per suffix)")

    args, overrides = parse_args(argv, prog="python -m gptjax.data.prepare", doc=__doc__, add_arguments=options)
    out = Path(args.workdir or Path("prepared") / (Path(args.config).stem if args.config else "data"))

    def work() -> None:
        cfg = load(args.config, overrides, args.source)
        created = first_missing(out)
        check_writable(out, "the output directory", "choose a writable --workdir")
        try:
            preflight(cfg)  # sources and tokenizer, before any work
        except BaseException:
            remove_created(RunDir(out), created)  # a refused start leaves no empty directory behind
            raise
        try:
            prepare(cfg, out, force=args.force)
        except OSError as e:  # a disk that fills up on the way (the inputs' own errors are DataErrors)
            where = f" ({e.filename})" if e.filename else ""
            raise RunDirError(f"cannot write to {out}{where}: {e.strerror or e}; free disk space or choose another "
                              "--workdir, then run the same command: finished stages are skipped") from None

    return report_errors(work)


if __name__ == "__main__":
    sys.exit(main())
