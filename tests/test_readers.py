import gzip
import json

import pytest

from datatrove.pipeline.readers import JsonlReader

from gptjax.data.readers import BAD_JSON_SKIPPED, UTF8_REPLACED, UTF8_SKIPPED, SafeJsonlReader


def write_corpus(path, bad_line: int = 2, n: int = 6):
    """n records; record `bad_line` carries an invalid UTF-8 byte, and one extra line is not JSON."""
    lines = []
    for i in range(n):
        line = json.dumps({"id": f"doc{i}", "text": f"document number {i} caf\u00e9"}).encode()
        if i == bad_line:
            line = line.replace(b"number", b"num\xffber")
        lines.append(line)
    lines.insert(4, b"{not json")
    lines.insert(5, b"")
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")


def read_all(reader):
    docs = list(reader.run(rank=0, world_size=1))
    counted = reader.stats.stats  # (Stats itself has no `in`: it would iterate its defaultdict forever)
    stats = {name: counted[name].total for name in (UTF8_REPLACED, UTF8_SKIPPED, BAD_JSON_SKIPPED) if name in counted}
    return docs, stats


def test_datatrove_jsonl_reader_loses_the_rest_of_the_file(tmp_path):
    # Why SafeJsonlReader exists: the upstream reader stops at the first bad byte.
    write_corpus(tmp_path / "a.jsonl.gz")
    docs = list(JsonlReader(str(tmp_path)).run(rank=0, world_size=1))
    assert len(docs) < 5


def test_bad_utf8_is_replaced_per_record_and_counted(tmp_path):
    write_corpus(tmp_path / "a.jsonl.gz")
    docs, stats = read_all(SafeJsonlReader(str(tmp_path)))
    assert [d.id for d in docs] == [f"doc{i}" for i in range(6)]
    assert "num\ufffdber" in docs[2].text and docs[3].text.endswith("caf\u00e9")
    assert stats == {UTF8_REPLACED: 1, BAD_JSON_SKIPPED: 1}


def test_bad_utf8_records_can_be_skipped(tmp_path):
    write_corpus(tmp_path / "a.jsonl.gz")
    docs, stats = read_all(SafeJsonlReader(str(tmp_path), on_bad_utf8="skip"))
    assert [d.id for d in docs] == ["doc0", "doc1", "doc3", "doc4", "doc5"]
    assert stats == {UTF8_SKIPPED: 1, BAD_JSON_SKIPPED: 1}


def test_plain_jsonl_and_metadata(tmp_path):
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": "x", "text": "hello", "source": "legal"}) + "\n")
    docs, stats = read_all(SafeJsonlReader(str(tmp_path)))
    assert [(d.id, d.text, d.metadata["source"]) for d in docs] == [("x", "hello", "legal")]
    assert stats == {}


def test_unknown_policy():
    with pytest.raises(ValueError, match="on_bad_utf8='drop' is not one of: replace, skip"):
        SafeJsonlReader("/tmp", on_bad_utf8="drop")


def counters(reader) -> dict:
    from gptjax.data.readers import REPORTED_COUNTERS

    counted = reader.stats.stats
    return {name: counted[name].total for name in REPORTED_COUNTERS if name in counted}


def test_records_of_the_wrong_shape_are_skipped_and_counted(tmp_path):
    from gptjax.data.readers import EMPTY_SKIPPED, NOT_AN_OBJECT_SKIPPED, TEXT_NOT_STRING_SKIPPED

    lines = ['{"id": "ok1", "text": "fine"}', '{"id": "n", "text": 42}', '{"id": "l", "text": ["a", "b"]}',
             '{"id": "o", "text": {"nested": "x"}}', '{"id": "z", "text": null}', '{"id": "m"}', "42", "[1, 2]",
             '"just a string"', '{"id": "ok2", "text": "also fine"}']
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    reader = SafeJsonlReader(str(tmp_path))
    docs = list(reader.run(rank=0, world_size=1))
    assert [d.id for d in docs] == ["ok1", "ok2"]
    assert counters(reader) == {TEXT_NOT_STRING_SKIPPED: 3, EMPTY_SKIPPED: 2, NOT_AN_OBJECT_SKIPPED: 3}


def test_a_truncated_file_keeps_its_first_records_and_the_other_files_are_read(tmp_path, caplog):
    from gptjax.data.readers import TRUNCATED_FILES

    for name in ("a", "b", "c"):
        with gzip.open(tmp_path / f"{name}.jsonl.gz", "wt") as f:
            for i in range(2000):
                f.write(json.dumps({"id": f"{name}{i}", "text": f"record {i} of file {name} " * 5}) + "\n")
    damaged = tmp_path / "b.jsonl.gz"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    reader = SafeJsonlReader(str(tmp_path))
    ids = [d.id for d in reader.run(rank=0, world_size=1)]
    from_b = [i for i in ids if i.startswith("b")]
    assert sum(i.startswith("a") for i in ids) == 2000 and sum(i.startswith("c") for i in ids) == 2000
    assert 0 < len(from_b) < 2000 and from_b == [f"b{i}" for i in range(len(from_b))]
    assert counters(reader) == {TRUNCATED_FILES: 1}
