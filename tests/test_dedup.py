"""Deduplication on a planted corpus: 300 distinct documents, groups of exact copies, near-duplicate pairs."""

import gzip
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from conftest import data_path
from datatrove.utils.text import ngrams, simplify_text

from gptjax.data import DataError
from gptjax.data.dedup import N_GRAMS, deduplicate, minhash_config

N_DISTINCT, N_EXACT_GROUPS, N_NEAR = 300, 30, 40


def shingles(text: str) -> set[str]:
    """The word n-grams MinHash hashes (datatrove's simplify_text, then whitespace words)."""
    return {" ".join(g) for g in ngrams(simplify_text(text).split(), N_GRAMS)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def sentence_text(words: list[str]) -> str:
    out, i = [], 0
    while i < len(words):  # sentences of 6-15 words, so the text carries case and punctuation to normalize
        n = 6 + (i * 7) % 10
        out.append(" ".join(words[i : i + n]).capitalize() + ".")
        i += n
    return " ".join(out)


def near_copy(words: list[str], vocab: list[str], rng: random.Random) -> list[str]:
    """~5% of the words changed in two places, each a substitution, insertion or deletion of a short span (Jaccard on
    5-grams falls by about one 5-gram per changed word plus four per place: 0.82 to 0.95 here)."""
    words = list(words)
    span = max(1, round(0.025 * len(words)))
    for _ in range(2):
        at = rng.randrange(len(words) - span)
        kind = rng.choice(["substitute", "insert", "delete"])
        if kind == "substitute":
            words[at : at + span] = rng.choices(vocab, k=span)
        elif kind == "insert":
            words[at:at] = rng.choices(vocab, k=span)
        else:
            del words[at : at + span]
    return words


def make_corpus(input_dir: Path, seed: int = 0) -> dict:
    rng = random.Random(seed)
    vocab = sorted({"".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9))) for _ in range(4000)})
    originals = [rng.choices(vocab, k=rng.randint(150, 300)) for _ in range(N_DISTINCT)]
    docs = [{"id": f"orig-{i}", "text": sentence_text(w), "metadata": {"n": i}} for i, w in enumerate(originals)]
    groups = {}  # original id -> ids of all its copies (itself included)
    for i in range(N_EXACT_GROUPS):
        copies = [f"orig-{i}"] + [f"copy-{i}-{k}" for k in range(rng.randint(1, 3))]
        docs += [{"id": c, "text": docs[i]["text"], "metadata": {"source": "copy"}} for c in copies[1:]]
        groups[f"orig-{i}"] = copies
    pairs = {}
    for i in range(N_EXACT_GROUPS, N_EXACT_GROUPS + N_NEAR):
        near = {"id": f"near-{i}", "text": sentence_text(near_copy(originals[i], vocab, rng)), "metadata": {}}
        pairs[f"orig-{i}"] = (f"orig-{i}", near["id"], jaccard(docs[i]["text"], near["text"]))
        docs.append(near)
    rng.shuffle(docs)
    input_dir.mkdir(parents=True)
    thirds = [docs[k::3] for k in range(3)]  # both formats, several files
    for name, part in zip(["a.jsonl.gz", "b.jsonl.gz", "sub/c.jsonl"], thirds):
        (input_dir / name).parent.mkdir(exist_ok=True)
        data = b"".join(orjson.dumps(d) + b"\n" for d in part)
        (input_dir / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    (input_dir / "README.txt").write_text("not a jsonl file: must be ignored")
    return {"docs": docs, "groups": groups, "pairs": pairs}


def read_docs(folder: Path) -> list[dict]:
    docs = []
    for path in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(path) as f:
            docs += [orjson.loads(line) for line in f]
    return docs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dedup")
    corpus = make_corpus(root / "in")
    args = (root / "in", root / "out", root / "work")
    start = time.perf_counter()
    report = deduplicate(*args, tasks=2, exclusions_dir=root / "removed")
    seconds = time.perf_counter() - start
    return dict(corpus, root=root, args=args, report=report, seconds=seconds, out=read_docs(root / "out"))


def test_planted_near_duplicates_qualify(tmp_path):
    corpus = make_corpus(tmp_path / "in")
    similarities = [j for _, _, j in corpus["pairs"].values()]
    assert min(similarities) >= 0.8 and max(similarities) < 1.0, similarities
    # and distinct documents share (almost) no 5-grams
    a, b = corpus["docs"][:2]
    assert jaccard(a["text"], b["text"]) < 0.05


def test_exact_copies_collapse_to_one(run):
    kept = Counter(d["id"] for d in run["out"])
    assert all(n == 1 for n in kept.values())
    for copies in run["groups"].values():
        assert sum(c in kept for c in copies) == 1, copies
    planted = sum(len(c) - 1 for c in run["groups"].values())
    assert run["report"]["exact"] == {
        "documents_in": N_DISTINCT + planted + N_NEAR,
        "removed": planted,
        "clusters": N_EXACT_GROUPS,
    }


def test_near_duplicates_collapse_and_distinct_documents_survive(run):
    kept = {d["id"] for d in run["out"]}
    caught = sum((a in kept) + (b in kept) == 1 for a, b, _ in run["pairs"].values())
    assert all((a in kept) or (b in kept) for a, b, _ in run["pairs"].values())
    assert caught >= 0.95 * N_NEAR, f"recall {caught}/{N_NEAR}"
    planted = set(run["groups"]) | set(run["pairs"])
    assert all(f"orig-{i}" in kept for i in range(N_DISTINCT) if f"orig-{i}" not in planted)
    assert run["report"]["minhash"] == {"documents_in": N_DISTINCT + N_NEAR, "removed": caught, "clusters": caught}
    assert run["report"]["documents_out"] == len(kept) == N_DISTINCT + N_NEAR - caught


def test_exclusions_hold_exactly_the_removed_documents(run):
    removed = read_docs(run["root"] / "removed")
    all_ids = {d["id"] for d in run["docs"]}
    kept = {d["id"] for d in run["out"]}
    assert sorted(d["id"] for d in removed) == sorted(all_ids - kept)
    texts = {d["id"]: d["text"] for d in run["docs"]}
    assert all(d["text"] == texts[d["id"]] for d in removed)


def test_rerun_skips_completed_work(run):
    start = time.perf_counter()
    report = deduplicate(*run["args"], tasks=2, exclusions_dir=run["root"] / "removed")
    seconds = time.perf_counter() - start
    assert report == run["report"]
    assert read_docs(run["root"] / "out") == run["out"]
    assert seconds < max(1.0, run["seconds"] / 3), (seconds, run["seconds"])


def test_changed_settings_on_same_work_dir_refused(run):
    with pytest.raises(DataError, match="other inputs or settings"):
        deduplicate(*run["args"], tasks=2, minhash_threshold=0.9, exclusions_dir=run["root"] / "removed")


def test_bad_inputs_raise_one_line_errors(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no .jsonl or .jsonl.gz files"):
        deduplicate(tmp_path / "in", tmp_path / "out", tmp_path / "work")
    for bad in (0.3, 1.0, 1.5):
        with pytest.raises(DataError, match="minhash_threshold"):
            deduplicate(tmp_path / "in", tmp_path / "out", tmp_path / "work", minhash_threshold=bad)


def test_minhash_curve_catches_threshold_pairs():
    for t in (0.5, 0.7, 0.8, 0.9, 0.95):
        c = minhash_config(t)
        assert 1 - (1 - t**c.hashes_per_bucket) ** c.num_buckets >= 0.99
    c = minhash_config(0.8)
    assert (c.n_grams, c.num_buckets, c.hashes_per_bucket) == (5, 32, 9)
    assert 1 - (1 - 0.5**9) ** 32 < 0.07  # pairs at Jaccard 0.5 are rarely merged


def test_cc_web_exact_duplicates(tmp_path):
    source = data_path("corpora", "cc_web")
    files = sorted(source.glob("*.jsonl.gz"))
    if not files:
        pytest.skip(f"no .jsonl.gz files in {source}")
    (tmp_path / "in").mkdir()
    texts = []
    for f in files:
        shutil.copy(f, tmp_path / "in" / f.name)
        with gzip.open(f) as fh:
            texts += [orjson.loads(line)["text"] for line in fh]
    counts = Counter(t for t in texts if t)  # the reader skips documents with empty text
    expected_removed = sum(n - 1 for n in counts.values())
    report = deduplicate(tmp_path / "in", tmp_path / "out", tmp_path / "work", workers=2, tasks=2)
    assert report["exact"]["documents_in"] == sum(counts.values())
    assert report["exact"]["removed"] == expected_removed >= 1
    assert report["exact"]["clusters"] == sum(n > 1 for n in counts.values())
    out = read_docs(tmp_path / "out")
    assert len(out) == report["documents_out"] == len(counts) - report["minhash"]["removed"]
    assert len({d["text"] for d in out}) == len(out)


def test_interrupted_run_resumes(run):
    # as if the last stage had died before finishing task 1: its completion mark and output never written
    (run["root"] / "work" / "logs" / "minhash_4_filter" / "completions" / "00001").unlink()
    (run["root"] / "out" / "00001.jsonl.gz").unlink()
    assert deduplicate(*run["args"], tasks=2, exclusions_dir=run["root"] / "removed") == run["report"]
    assert read_docs(run["root"] / "out") == run["out"]


@pytest.mark.parametrize("exact, minhash", [(True, False), (False, True)])
def test_one_stage_alone(tmp_path, exact, minhash):
    corpus = make_corpus(tmp_path / "in")
    report = deduplicate(tmp_path / "in", tmp_path / "out", tmp_path / "work", exact=exact, minhash=minhash)
    out = read_docs(tmp_path / "out")
    assert set(report) == {"exact" if exact else "minhash", "documents_out"}
    assert report["documents_out"] == len(out) == N_DISTINCT + (N_NEAR if exact else 0)  # MinHash also catches copies
    assert len(out) == len({d["id"] for d in out})
    assert (report["exact"] if exact else report["minhash"])["removed"] == len(corpus["docs"]) - len(out)
