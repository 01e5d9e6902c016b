"""Deduplication with datatrove's own stages: exact (identical text), then MinHash near-duplicates.

    report = deduplicate(Path("raw"), Path("dedup"), Path("work/dedup"), exclusions_dir=Path("removed"))
    # {"exact": {"documents_in", "removed", "clusters"}, "minhash": {...}, "documents_out"}

Each stage is a LocalPipelineExecutor with its own logging_dir under work_dir, so datatrove's completion tracking
makes a finished run a no-op and an interrupted one resume where it stopped. Kept documents are written as jsonl.gz
(datatrove's Document format) to output_dir; removed ones to exclusions_dir/exact and exclusions_dir/minhash, for
auditing. As everywhere in datatrove, the reader skips documents whose text is empty.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import (
    ExactDedupConfig,
    ExactDedupFilter,
    ExactDedupSignature,
    ExactFindDedups,
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.typeshelper import ExtensionHelperSD
from datatrove.utils.word_tokenizers import WordTokenizer

from gptjax.data import DataError
from gptjax.data.executors import CONSOLE_LOG, QuietLocalExecutor, quiet
from gptjax.data.readers import SafeJsonlReader

# MinHash LSH: a pair with Jaccard similarity s (on word 5-gram shingles) shares all r hashes of one bucket with
# probability s^r, so it becomes a duplicate candidate with probability P(s) = 1 - (1 - s^r)^b over b buckets.
# For a threshold t we want P(t) >= RECALL, and the steepest S-curve (largest r) that needs at most MAX_BUCKETS
# buckets, because datatrove clusters candidates without checking their real similarity: every pair the curve
# lets through below t is a document lost. For t = 0.8 that is r = 9, b = 32 (288 hashes per document):
#   P(0.9) = 1.000  P(0.85) = 0.9997  P(0.8) = 0.990  P(0.7) = 0.73  P(0.6) = 0.28  P(0.5) = 0.06  P(0.3) = 0.001
# (datatrove's default 14 x 8 has P(0.8) = 0.92). Unrelated texts share almost no 5-grams (s near 0), so they are
# never paired. 5-grams are datatrove's default: long enough that common phrases do not make texts look alike.
N_GRAMS = 5
RECALL = 0.99
MAX_BUCKETS = 32
MAX_HASHES_PER_BUCKET = 20


def minhash_config(threshold: float) -> MinhashConfig:
    """The MinhashConfig whose S-curve catches pairs at `threshold` with probability RECALL (see above)."""
    best = None
    for r in range(1, MAX_HASHES_PER_BUCKET + 1):
        b = math.ceil(math.log(1 - RECALL) / math.log(1 - threshold**r))
        if b <= MAX_BUCKETS:
            best = (r, b)
    return MinhashConfig(n_grams=N_GRAMS, num_buckets=best[1], hashes_per_bucket=best[0])


class WhitespaceWords(WordTokenizer):
    """Splits on whitespace. MinHash tokenizes text already lowercased and stripped of punctuation by datatrove's
    simplify_text, where this is what a word is for space-separated languages, at a fraction of spaCy's cost."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def _text(doc) -> str:  # the return annotation tells ExactDedupSignature to hash str
    return doc.text


def _input_files(input_dir: Path) -> list[str]:
    files = [p for p in input_dir.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz"))]
    return sorted(p.relative_to(input_dir).as_posix() for p in files)


def _check_work_dir(work_dir: Path, params: dict) -> None:
    """Completion tracking trusts that work_dir belongs to this very run: refuse one made for other inputs/settings."""
    path = work_dir / "dedup.json"
    if path.exists() and json.loads(path.read_text()) != params:
        raise DataError(f"{work_dir} holds a dedup run of other inputs or settings; delete it or use another work_dir")
    work_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(params, indent=1))


def _stat(logging_dir: Path, step, key: str) -> int:
    """Sum of one stat of one step over the per-task stats files (they survive re-runs that skip finished tasks)."""
    total = 0
    for path in (logging_dir / "stats").glob("*.json"):
        for step_stats in json.loads(path.read_text()):
            if step_stats["name"] == f"{step.type}: {step.name}":
                value = step_stats["stats"].get(key, 0)
                total += value["total"] if isinstance(value, dict) else value
    return total


def deduplicate(
    input_dir: Path,
    output_dir: Path,
    work_dir: Path,
    *,
    exact: bool = True,
    minhash: bool = True,
    minhash_threshold: float = 0.8,
    tasks: int = 1,
    workers: int = 1,
    text_key: str = "text",
    id_key: str = "id",
    exclusions_dir: Path | None = None,
) -> dict:
    """Deduplicate the jsonl / jsonl.gz documents under input_dir into output_dir; returns the counts per stage.

    Per stage: documents_in, removed, clusters (groups of duplicates found; a group of k keeps one, removes k-1).

    tasks: shards the input (and the intermediate data) into this many tasks; workers: how many run at once.
    Keep tasks the same when re-running with the same work_dir (its results are per task).
    """
    input_dir, output_dir, work_dir = Path(input_dir), Path(output_dir), Path(work_dir)
    exclusions_dir = Path(exclusions_dir) if exclusions_dir else None
    if not exact and not minhash:
        raise DataError("deduplicate(exact=False, minhash=False) has nothing to do; enable exact or minhash")
    if not 0.5 <= minhash_threshold < 1:
        raise DataError(f"minhash_threshold={minhash_threshold} is outside [0.5, 1); use e.g. 0.8 (Jaccard on 5-grams)")
    if tasks < 1 or workers < 1:
        raise DataError(f"tasks={tasks}, workers={workers}: both must be at least 1")
    files = _input_files(input_dir) if input_dir.is_dir() else []
    if not files:
        raise DataError(f"no .jsonl or .jsonl.gz files under {input_dir}; point input_dir at the documents to dedup")
    sizes = [(input_dir / f).stat().st_size for f in files]
    params = dict(input_dir=str(input_dir.resolve()), output_dir=str(output_dir.resolve()), files=files, sizes=sizes,
                  exact=exact, minhash=minhash, minhash_threshold=minhash_threshold, tasks=tasks, text_key=text_key,
                  id_key=id_key, exclusions_dir=str(exclusions_dir.resolve()) if exclusions_dir else None)
    _check_work_dir(work_dir, params)
    (work_dir / "inputs.txt").write_text("".join(f + "\n" for f in files))
    with quiet(work_dir / "logs" / CONSOLE_LOG):  # building the steps logs too
        _stages(input_dir, output_dir, work_dir, exact, minhash, minhash_threshold, tasks, workers, text_key, id_key,
                exclusions_dir).run()  # runs the stages it depends on first, skipping tasks already completed
    return _report(work_dir, exact, minhash)


def _stages(input_dir, output_dir, work_dir, exact, minhash, threshold, tasks, workers, text_key, id_key,
            exclusions_dir) -> LocalPipelineExecutor:
    """The last executor of the chain; each one names the one before it in depends=."""
    logs = work_dir / "logs"

    def executor(name, pipeline, depends, n_tasks=tasks):
        return QuietLocalExecutor(pipeline, tasks=n_tasks, workers=min(workers, n_tasks), logging_dir=str(logs / name),
                              depends=depends)

    def excluded(name):
        return JsonlWriter(str(exclusions_dir / name)) if exclusions_dir else None

    # A filter must see the documents in the same order as its signature step did: same reader, same tasks.
    def source():
        return SafeJsonlReader(str(input_dir), paths_file=str(work_dir / "inputs.txt"), text_key=text_key,
                               id_key=id_key)

    last = None
    if exact:
        config = ExactDedupConfig(content_getter=_text)
        sigs, dups = work_dir / "exact" / "sigs", work_dir / "exact" / "dups"
        kept = work_dir / "exact" / "kept" if minhash else output_dir
        last = executor("exact_1_signature", [source(), ExactDedupSignature(str(sigs), config, finder_workers=tasks)],
                        None)
        last = executor("exact_2_find", [ExactFindDedups(str(sigs), str(dups), config)], last)
        last = executor("exact_3_filter", [source(), ExactDedupFilter(str(dups), config, excluded("exact")),
                                           JsonlWriter(str(kept))], last)
        if minhash:  # the near-dup stage reads what exact dedup kept (our writer: valid UTF-8, standard keys)
            def source():
                return SafeJsonlReader(str(kept), glob_pattern="*.jsonl.gz", recursive=False)

    if minhash:
        config = minhash_config(threshold)
        sigs, buckets, clusters = (work_dir / "minhash" / d for d in ("sigs", "buckets", "clusters"))
        last = executor("minhash_1_signature",
                        [source(), MinhashDedupSignature(str(sigs), config, language=WhitespaceWords())], last)
        last = executor("minhash_2_buckets", [MinhashDedupBuckets(str(sigs), str(buckets), config=config)], last,
                        n_tasks=config.num_buckets)
        last = executor("minhash_3_cluster", [MinhashDedupCluster(str(buckets), str(clusters), config=config)], last,
                        n_tasks=1)
        last = executor("minhash_4_filter", [source(), MinhashDedupFilter(str(clusters), excluded("minhash")),
                                             JsonlWriter(str(output_dir))], last)
    return last


def _report(work_dir: Path, exact: bool, minhash: bool) -> dict:
    logs = work_dir / "logs"
    report = {}
    if exact:
        # ExactFindDedups writes one (kept doc, copies removed) record of two uint32 per group of identical texts
        counts = (work_dir / "exact" / "dups").rglob("*" + ExtensionHelperSD.stage_2_counts)
        report["exact"] = {
            "documents_in": _stat(logs / "exact_3_filter", ExactDedupFilter, "total"),
            "removed": _stat(logs / "exact_3_filter", ExactDedupFilter, "dropped"),
            "clusters": sum(p.stat().st_size for p in counts) // 8,
        }
        documents_out = _stat(logs / "exact_3_filter", ExactDedupFilter, "forwarded")
    if minhash:
        # MinhashDedupCluster counts every document in a cluster ("duplicates") and all but one per cluster
        # ("to_remove"), so their difference is the number of clusters
        in_clusters = _stat(logs / "minhash_3_cluster", MinhashDedupCluster, "duplicates")
        to_remove = _stat(logs / "minhash_3_cluster", MinhashDedupCluster, "to_remove")
        report["minhash"] = {
            "documents_in": _stat(logs / "minhash_4_filter", MinhashDedupFilter, "total"),
            "removed": _stat(logs / "minhash_4_filter", MinhashDedupFilter, "dropped"),
            "clusters": in_clusters - to_remove,
        }
        documents_out = _stat(logs / "minhash_4_filter", MinhashDedupFilter, "forwarded")
    return report | {"documents_out": documents_out}
