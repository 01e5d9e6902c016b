"""How many documents of each shared corpus each quality filter removes, alone and as the defaults together.

    python scripts/filter_removals.py                      # gptjax's English words (spaCy's, less punctuation)
    python scripts/filter_removals.py --words datatrove    # datatrove's own: spaCy's tokens, punctuation included

Reads the corpora under $GPTJAX_DATA_DIR/corpora (default ../shared/data/corpora) as `gptjax.data.prepare` reads
them (reader, main-text extraction for WARC, normalization), then runs every filter of `FILTERS` on every document.
Prints a markdown table (the one in docs/data_filters.md) and the most common reasons per filter.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gptjax.data import prepare  # noqa: E402

DATA = Path(os.environ.get("GPTJAX_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")) / "corpora"
SOURCES = dict(
    cc_web=prepare.source("jsonl", str(DATA / "cc_web"), glob="*.jsonl.gz"),
    cc_web_warc=prepare.source("warc", str(DATA / "cc_web" / "warc")),
    pubmed=prepare.source("jsonl", str(DATA / "pubmed" / "pubmedqa_abstracts.jsonl")),
    legal=prepare.source("jsonl", str(DATA / "legal" / "legal_docs.jsonl")),
)
DEFAULTS = [name for name in prepare.FILTERS if prepare.base_config().stages[name]]


def documents(s, scratch: Path):
    """The source's documents as the cleaning stage hands them to the filters."""
    cfg = prepare.base_config()
    for name in prepare.FILTERS:
        cfg.stages[name] = False
    data = None
    for step in prepare.cleaning_pipeline(cfg, s, scratch)[:-1]:  # the last step is the writer
        data = step.run(data) if data is not None else step.run()
    return list(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, of: " + ", ".join(SOURCES))
    parser.add_argument("--words", choices=("gptjax", "datatrove"), default="gptjax",
                        help="gptjax: spaCy's English words without punctuation tokens (what prepare uses); "
                             "datatrove: datatrove's default for 'en' (spaCy's tokens, punctuation counted as words)")
    args = parser.parse_args()
    language = None if args.words == "gptjax" else "en"
    filters = {name: prepare.quality_filter(name) for name in prepare.FILTERS}
    if language:
        for f in filters.values():
            f.language = language
    rows, reasons = [], collections.defaultdict(collections.Counter)
    began = time.perf_counter()
    for source in args.sources.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            docs = documents(SOURCES[source], Path(scratch))
        removed = collections.Counter()
        for doc in docs:
            first = None
            for name, f in filters.items():
                verdict = f.filter(doc)
                if verdict is not True:
                    removed[name] += 1
                    reasons[source, name][verdict[1] if isinstance(verdict, tuple) else "removed"] += 1
                    if first is None and name in DEFAULTS:
                        first = name
            removed["defaults"] += first is not None
        rows.append((source, len(docs), removed))
    print(f"words: {args.words}; defaults: {' + '.join(DEFAULTS)}; {time.perf_counter() - began:.0f} s\n")
    print("| source | documents | " + " | ".join(prepare.FILTERS) + " | defaults together |")
    print("|---|---:|" + "---:|" * (len(prepare.FILTERS) + 1))
    for source, n, removed in rows:
        cells = [f"{removed[name]} ({100 * removed[name] / max(n, 1):.1f}%)" for name in (*prepare.FILTERS, "defaults")]
        print(f"| {source} | {n} | " + " | ".join(cells) + " |")
    print()
    for (source, name), counts in reasons.items():
        print(f"- {source} / {name}: " + ", ".join(f"{why} {k}" for why, k in counts.most_common(4)))


if __name__ == "__main__":
    main()
