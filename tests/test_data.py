import time

import numpy as np
import pytest

from gptjax.data import (DataError, TokenShard, WindowLoader, eval_batches, open_split, prepare_splits, read_text,
                         stdlib_corpus, write_shard)
from gptjax.tokenizer import ByteTokenizer, CharTokenizer, build_tokenizer


def _docs(rng, vocab_size, n=5):
    return [rng.integers(0, vocab_size, size=int(rng.integers(0, 50))) for _ in range(n)]


# ----------------------------------------------------------------------------------------------------------------
# Shards


@pytest.mark.parametrize("vocab_size,dtype", [(256, np.uint16), (65536, np.uint16), (100_000, np.uint32)])
def test_shard_round_trip(tmp_path, vocab_size, dtype):
    docs = _docs(np.random.default_rng(0), vocab_size)
    docs[0] = np.array([vocab_size - 1, 0], dtype=np.int64)  # the largest id survives the narrow dtype
    path = tmp_path / "s.ds"
    n = write_shard(path, docs, tokenizer_name="t", vocab_size=vocab_size)
    shard = TokenShard(path)
    assert n == len(shard) == sum(len(d) for d in docs)
    assert shard.tokens.dtype == dtype and isinstance(shard.tokens, np.memmap)
    np.testing.assert_array_equal(shard.tokens, np.concatenate(docs))
    np.testing.assert_array_equal(shard.doc_ends, np.cumsum([len(d) for d in docs]))
    assert shard.tokenizer_name == "t"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.ds", "s.ds.index", "s.ds.metadata"]  # no temp files


def test_shard_bytes_equal_datatrove_writer(tmp_path):
    # datatrove's own writer (no torch needed) must produce the same three files for the same documents.
    from datatrove.pipeline.tokens.tokenizer import TokenizedFile

    docs = _docs(np.random.default_rng(1), 50257)
    ours = tmp_path / "ours.ds"
    write_shard(ours, docs, tokenizer_name="gpt2", vocab_size=50257)
    theirs = TokenizedFile(str(tmp_path), "theirs.ds", tokenizer_name_or_path="gpt2", save_final_metadata=True)
    for doc in docs:
        theirs.write(doc.tolist(), None)
    theirs.close()
    for suffix in ("", ".index"):
        assert (tmp_path / f"ours.ds{suffix}").read_bytes() == (tmp_path / f"theirs.ds{suffix}").read_bytes()
    ours_meta = (tmp_path / "ours.ds.metadata").read_text().splitlines()
    theirs_meta = (tmp_path / "theirs.ds.metadata").read_text().splitlines()
    assert ours_meta[:2] == theirs_meta[:2]
    np.testing.assert_array_equal(TokenShard(tmp_path / "theirs.ds").tokens, np.concatenate(docs))


def test_datatrove_merger_reads_our_shards(tmp_path):
    # datatrove's DocumentTokenizerMerger (torch-free) reads a folder of our shards and writes its own; reading
    # that back checks both directions: datatrove parses our tokens/index/metadata, we parse its output.
    from datatrove.pipeline.tokens.merger import DocumentTokenizerMerger

    rng = np.random.default_rng(2)
    docs = {name: _docs(rng, 100_000) for name in ("a", "b")}
    for name, ds in docs.items():
        write_shard(tmp_path / "in" / f"{name}.ds", ds, tokenizer_name="big", vocab_size=100_000)
    merger = DocumentTokenizerMerger(str(tmp_path / "in"), str(tmp_path / "out"), save_filename="merged",
                                     shuffle=False, progress=False)
    merger.run()
    (shard,) = open_split(tmp_path / "out")
    all_docs = docs["a"] + docs["b"]
    assert shard.tokenizer_name == "big" and shard.token_size == 4
    np.testing.assert_array_equal(shard.tokens, np.concatenate(all_docs))
    np.testing.assert_array_equal(shard.doc_ends, np.cumsum([len(d) for d in all_docs]))


def test_datatrove_reader_reads_our_shards(tmp_path):
    pytest.importorskip("torch", reason="datatrove's dataset readers need torch")
    from datatrove.utils.dataset import DatatroveFolderDataset

    tokens = np.arange(100) % 300
    write_shard(tmp_path / "00000.ds", [tokens[:40], tokens[40:]], tokenizer_name="t", vocab_size=300)
    ds = DatatroveFolderDataset(str(tmp_path), seq_len=9, token_size=2)
    assert len(ds) == 10
    np.testing.assert_array_equal(ds[3]["input_ids"].numpy(), tokens[30:40])


def test_truncated_shard(tmp_path):
    path = tmp_path / "s.ds"
    write_shard(path, [np.arange(10)], tokenizer_name="t", vocab_size=16)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match="truncated"):
        TokenShard(path)
    path.write_bytes(path.read_bytes()[:-1])  # whole tokens, but fewer than the metadata says
    with pytest.raises(DataError, match="metadata says 10"):
        TokenShard(path)


def test_bad_index(tmp_path):
    path = tmp_path / "s.ds"
    write_shard(path, [np.arange(10)], tokenizer_name="t", vocab_size=16)
    np.array([4, 9], dtype="<u8").tofile(f"{path}.index")
    with pytest.raises(DataError, match="last document end 9, shard holds 10"):
        TokenShard(path)


def test_out_of_vocab_ids(tmp_path):
    for bad in (16, -1):
        with pytest.raises(DataError, match=f"s.ds: token id {bad} is outside the vocabulary of size 16"):
            write_shard(tmp_path / "s.ds", [np.arange(3), np.array([1, bad])], tokenizer_name="t", vocab_size=16)
    assert list(tmp_path.iterdir()) == []  # a failed write leaves nothing behind
    with pytest.raises(DataError, match="tokenizer name"):
        write_shard(tmp_path / "s.ds", [np.arange(3)], tokenizer_name="a|b", vocab_size=16)


def test_missing_shard_and_empty_split(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        TokenShard(tmp_path / "nope.ds")
    with pytest.raises(DataError, match=f"no token shards .* in {tmp_path}"):
        open_split(tmp_path)


def test_open_split_sorted(tmp_path):
    for name in ("b.ds", "a.ds", "c.ds"):
        write_shard(tmp_path / name, [np.arange(5)], tokenizer_name="t", vocab_size=8)
    (tmp_path / "d.ds.tmp-1").write_bytes(b"\0\0")  # a killed write's leftovers are not a shard
    assert [s.path.name for s in open_split(tmp_path)] == ["a.ds", "b.ds", "c.ds"]


# ----------------------------------------------------------------------------------------------------------------
# Loader


def _stream_shards(tmp_path, lengths=(1000, 300, 40)):
    stream = np.arange(sum(lengths)) % 50_000
    bounds = np.cumsum((0,) + tuple(lengths))
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        write_shard(tmp_path / f"{i:05d}.ds", [stream[a:b]], tokenizer_name="t", vocab_size=50_000)
    return open_split(tmp_path), stream


def test_loader_deterministic_by_step(tmp_path):
    shards, _ = _stream_shards(tmp_path)
    a = WindowLoader(shards, seq_len=16, batch_size=4, seed=7)
    b = WindowLoader(open_split(tmp_path), seq_len=16, batch_size=4, seed=7)
    assert a.batch(0).shape == (4, 17) and a.batch(0).dtype == np.int32
    for step in (0, 5, 123456):
        np.testing.assert_array_equal(a.batch(step), b.batch(step))
    it = a.iterate(start_step=10)
    for step in range(10, 20):
        np.testing.assert_array_equal(next(it), b.batch(step))
    it = b.iterate(start_step=3, prefetch=0)
    np.testing.assert_array_equal(next(it), a.batch(3))
    c = WindowLoader(shards, seq_len=16, batch_size=4, seed=8)
    assert not np.array_equal(a.batch(0), c.batch(0))
    assert not np.array_equal(a.batch(0), a.batch(1))


def test_windows_are_real_substrings(tmp_path):
    shards, stream = _stream_shards(tmp_path, lengths=(1000, 300, 32))
    loader = WindowLoader(shards, seq_len=32, batch_size=64, seed=0)
    seen_shards = set()
    for step in range(4):
        for window in loader.batch(step):
            start = int(window[0])
            # consecutive tokens of the stream: inputs [:-1] and targets [1:] are the same window shifted by one
            np.testing.assert_array_equal(window, stream[start : start + 33])
            seen_shards.add(int(np.searchsorted([1000, 1300], start, side="right")))
    assert seen_shards == {0, 1}  # the 32-token shard has no 33-token window


def test_loader_shard_probability_follows_windows(tmp_path):
    shards, _ = _stream_shards(tmp_path, lengths=(900, 100))
    loader = WindowLoader(shards, seq_len=9, batch_size=500, seed=1)
    starts = np.concatenate([loader.batch(s)[:, 0] for s in range(4)])
    in_small = np.mean(starts >= 900)
    assert 0.07 < in_small < 0.13  # 91 of 982 windows


def test_block_size_too_large(tmp_path):
    shards, _ = _stream_shards(tmp_path, lengths=(100, 50))
    with pytest.raises(DataError, match=r"block size 100 is larger than any token stream in .*\(longest: 100 "
                                        r"tokens.*lower model.block_size"):
        WindowLoader(shards, seq_len=100, batch_size=2, seed=0)
    WindowLoader(shards, seq_len=99, batch_size=2, seed=0)  # exactly one window fits


def test_eval_batches_fixed(tmp_path):
    shards, _ = _stream_shards(tmp_path)
    a = eval_batches(shards, 8, 3, 4, seed=5)
    b = eval_batches(shards, 8, 3, 4, seed=5)
    assert len(a) == 4 and all(x.shape == (3, 9) for x in a)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------------------------------------------
# Sources


def test_stdlib_corpus_deterministic_and_sized():
    text = stdlib_corpus()
    assert text == stdlib_corpus()
    assert len(text) > 2_000_000  # several MB of Python on any CPython 3
    assert "# ===== argparse.py =====\n" in text and "def " in text
    assert "site-packages" not in text.split("\n", 1)[0]
    short = stdlib_corpus(max_chars=10_000)
    assert len(short) == 10_000 and text.startswith(short)


def test_read_text_local_and_max_chars(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("héllo world", encoding="utf-8")
    assert read_text(path) == "héllo world"
    assert read_text(str(path), max_chars=3) == "hél"


def test_read_text_missing_without_url(tmp_path):
    with pytest.raises(DataError, match="--config.data.path") as e:
        read_text(tmp_path / "missing.txt")
    assert "missing.txt" in str(e.value) and "\n" not in str(e.value)


def test_read_text_download_fails_fast(tmp_path, capsys):
    t0 = time.monotonic()
    with pytest.raises(DataError) as e:
        read_text(tmp_path / "missing.txt", url="http://127.0.0.1:9/x")
    assert time.monotonic() - t0 < 10
    message = str(e.value)
    assert "\n" not in message and "http://127.0.0.1:9/x" in message and "--config.data.path" in message
    assert not (tmp_path / "missing.txt").exists() and list(tmp_path.iterdir()) == []
    assert "downloading" in capsys.readouterr().out


def test_prepare_splits(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    tok = CharTokenizer.from_text(text)
    counts = prepare_splits(text, tok, tmp_path, val_fraction=0.1, name="letters")
    assert counts == {"train": 900, "val": 100}
    train, val = open_split(tmp_path / "train"), open_split(tmp_path / "val")
    assert tok.decode(train[0].tokens) == text[:900] and tok.decode(val[0].tokens) == text[900:]
    assert train[0].tokenizer_name == "char"

    counts = prepare_splits(text, ByteTokenizer(), tmp_path, val_fraction=0.0, name="letters")
    assert counts == {"train": 1000}
    assert not list((tmp_path / "val").glob("*.ds"))  # the old val split is gone, not silently reused
    with pytest.raises(DataError, match="train split of tiny is empty"):
        prepare_splits("a", ByteTokenizer(), tmp_path / "x", val_fraction=0.1, name="tiny")


def test_prepare_splits_gpt2_shakespeare(tmp_path, shakespeare_path, gpt2_dir):
    tok = build_tokenizer(str(gpt2_dir))
    counts = prepare_splits(shakespeare_path.read_text(), tok, tmp_path, val_fraction=0.1, name="shakespeare")
    # nanoGPT's prepare.py for shakespeare reports 301,966 train and 36,059 val tokens
    assert counts == {"train": 301966, "val": 36059}
    shard = open_split(tmp_path / "train")[0]
    assert shard.tokens.dtype == np.uint16 and shard.tokenizer_name == "gpt2"


# ----------------------------------------------------------------------------------------------------------------
# Mixtures


def _mixture(tmp_path):
    sources = {}
    for name, base, length in (("web", 0, 5000), ("legal", 10_000, 800), ("med", 20_000, 300)):
        write_shard(tmp_path / name / "00000.ds", [np.arange(base, base + length)], tokenizer_name="t",
                    vocab_size=50_000)
        sources[name] = open_split(tmp_path / name)
    return sources


def source_of(windows):
    return np.select([windows[:, 0] >= 20_000, windows[:, 0] >= 10_000], ["med", "legal"], "web")


def test_mixture_delivers_the_configured_weights(tmp_path):
    weights = {"web": 0.7, "legal": 0.2, "med": 0.1}
    loader = WindowLoader(_mixture(tmp_path), seq_len=16, batch_size=100, seed=3, weights=weights)
    drawn = source_of(np.concatenate([loader.batch(s) for s in range(100)]))  # 10,000 sequences
    for name, weight in weights.items():
        assert abs(np.mean(drawn == name) - weight) < 0.02
    # A small source is repeated as often as its weight asks: epochs are reported before training.
    report = {r["source"]: r for r in loader.describe(steps=100)}
    assert report["med"]["tokens"] == 300 and report["med"]["epochs"] == pytest.approx(0.1 * 100 * 100 * 16 / 300, abs=1e-3)


def test_default_weights_follow_the_number_of_windows(tmp_path):
    loader = WindowLoader(_mixture(tmp_path), seq_len=16, batch_size=100, seed=3)
    drawn = source_of(np.concatenate([loader.batch(s) for s in range(50)]))
    assert abs(np.mean(drawn == "web") - 4985 / (4985 + 785 + 285)) < 0.02


def test_processes_read_disjoint_rows_of_the_global_batch(tmp_path):
    sources = _mixture(tmp_path)
    whole = WindowLoader(sources, seq_len=8, batch_size=12, seed=9, weights={"web": 1, "legal": 1, "med": 1})
    parts = [WindowLoader(sources, seq_len=8, batch_size=12, seed=9, weights={"web": 1, "legal": 1, "med": 1},
                          process_index=p, process_count=3) for p in range(3)]
    for step in (0, 7):
        np.testing.assert_array_equal(np.concatenate([p.batch(step) for p in parts]), whole.batch(step))
    assert parts[1].batch(0).shape == (4, 9)


def test_bad_mixtures(tmp_path):
    sources = _mixture(tmp_path)
    with pytest.raises(DataError, match="mixture weights name"):
        WindowLoader(sources, seq_len=8, batch_size=4, seed=0, weights={"web": 1.0})
    with pytest.raises(DataError, match="non-negative with a positive sum"):
        WindowLoader(sources, seq_len=8, batch_size=4, seed=0, weights={"web": 0, "legal": 0, "med": 0})
    with pytest.raises(DataError, match="cannot be split evenly over 3 processes"):
        WindowLoader(sources, seq_len=8, batch_size=4, seed=0, process_count=3)
