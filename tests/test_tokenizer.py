import time

import numpy as np
import pytest
from conftest import data_path

from gptjax.tokenizer import (BPETokenizer, ByteTokenizer, CharTokenizer, TokenizerError, build_tokenizer,
                              load_tokenizer)

INPUTS = ("address.txt", "corpus.en", "german.txt", "tinystories_sample.txt")


@pytest.fixture
def gpt2_vocab_merges_dir(gpt2_dir, tmp_path):
    """A directory with only GPT-2's original vocab.json + merges.txt (linked, not copied)."""
    d = tmp_path / "gpt2_files"
    d.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (d / name).symlink_to(gpt2_dir / name)
    return d


def test_gpt2_ids_from_json_and_from_vocab_merges(gpt2_dir, gpt2_vocab_merges_dir):
    for spec in (gpt2_dir / "tokenizer.json", gpt2_dir, gpt2_vocab_merges_dir):
        tok = build_tokenizer(str(spec))
        assert isinstance(tok, BPETokenizer)
        assert tok.encode("Hello world").tolist() == [15496, 995]
        assert tok.vocab_size == 50257 and tok.eot_id == 50256
    assert build_tokenizer(str(gpt2_dir)).name == "gpt2"


def test_gpt2_special_token_and_both_builds_agree(gpt2_dir, gpt2_vocab_merges_dir):
    a, b = build_tokenizer(str(gpt2_dir)), build_tokenizer(str(gpt2_vocab_merges_dir))
    text = "one<|endoftext|>two\n\n  three  \n"
    assert a.encode(text).tolist() == b.encode(text).tolist()
    assert 50256 in a.encode(text).tolist()
    assert a.decode(a.encode(text)) == text


@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("spec", ["gpt2", "byte"])
def test_round_trip_on_test_inputs(name, spec, gpt2_dir):
    text = data_path("tokenizer_test_inputs", name).read_text(encoding="utf-8")
    tok = build_tokenizer(str(gpt2_dir) if spec == "gpt2" else "byte")
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert tok.decode(ids) == text


def test_bpe_chunked_encoding_equals_whole_text(gpt2_dir, shakespeare_path):
    # encode() splits long text into chunks for encode_batch; the ids must not change.
    tok = build_tokenizer(str(gpt2_dir))
    text = shakespeare_path.read_text() + data_path("tokenizer_test_inputs", "corpus.en").read_text()
    text += "end \n  \n\n\nx\ty  \n" * 5000  # whitespace runs across line ends, where a naive split would differ
    whole = tok.tokenizer.encode(text, add_special_tokens=False).ids
    assert tok.encode(text).tolist() == whole


def test_char_tokenizer_on_shakespeare(shakespeare_path):
    text = shakespeare_path.read_text()
    tok = build_tokenizer("char", text)
    assert isinstance(tok, CharTokenizer) and tok.vocab_size == 65 and tok.eot_id is None
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.max() == 64
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode("\n")) == "\n" and tok.encode("\n").tolist() == [0]  # sorted: '\n' first


def test_char_unseen_character_error():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(TokenizerError, match=r"'é' \(U\+00E9, position 2\)") as e:
        tok.encode("abé")
    assert "\n" not in str(e.value)
    with pytest.raises(TokenizerError, match="char tokenizer needs"):
        build_tokenizer("char")


def test_char_non_bmp_round_trip():
    text = "a😀b\u00e9\n"
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text


def test_byte_tokenizer():
    tok = build_tokenizer("byte")
    assert isinstance(tok, ByteTokenizer) and tok.vocab_size == 256
    assert tok.encode("é").tolist() == [0xC3, 0xA9]
    assert tok.decode([0xC3]) == "\ufffd"  # a cut multi-byte character decodes, replaced
    with pytest.raises(TokenizerError, match="256"):
        tok.decode([300])


def test_save_load_round_trip(tmp_path, gpt2_dir):
    toks = [build_tokenizer("char", "hello world\n"), build_tokenizer("byte"), build_tokenizer(str(gpt2_dir))]
    text = "hello world\n"
    for i, tok in enumerate(toks):
        tok.save(tmp_path / str(i))
        loaded = load_tokenizer(tmp_path / str(i))
        assert loaded == tok and type(loaded) is type(tok)
        assert (loaded.name, loaded.vocab_size, loaded.eot_id) == (tok.name, tok.vocab_size, tok.eot_id)
        assert loaded.encode(text).tolist() == tok.encode(text).tolist()
    assert toks[0] != build_tokenizer("char", "hello")


def test_load_from_empty_directory(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer saved"):
        load_tokenizer(tmp_path)


def test_missing_local_path():
    with pytest.raises(TokenizerError, match="does not exist"):
        build_tokenizer("/nonexistent/gpt2")


def test_hub_name_offline_fails_fast_with_local_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(TokenizerError) as e:
        build_tokenizer("some-org/no-such-tokenizer")
    assert time.monotonic() - t0 < 5
    message = str(e.value)
    assert "\n" not in message and "could not be fetched" in message
    assert "tokenizer.json" in message and "--config.data.tokenizer=/path/to/gpt2" in message


def test_a_tokenizer_is_identified_by_its_content_not_its_name(tmp_path, gpt2_dir):
    from_files = build_tokenizer(str(gpt2_dir))  # vocab.json + merges.txt
    from_json = build_tokenizer(str(gpt2_dir / "tokenizer.json"))
    assert from_files == from_json and from_files.fingerprint == from_json.fingerprint
    from_files.save(tmp_path / "a folder named anything")
    moved = load_tokenizer(tmp_path / "a folder named anything")
    moved.name = "renamed"
    assert moved == from_json
    assert CharTokenizer.from_text("abc") == CharTokenizer(list("cab"), name="other")
    assert CharTokenizer.from_text("abc") != CharTokenizer.from_text("abd")
    assert ByteTokenizer() != CharTokenizer.from_text("abc")
    merges = (gpt2_dir / "merges.txt").read_text().splitlines()
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / "vocab.json").write_text((gpt2_dir / "vocab.json").read_text())
    (tmp_path / "edited" / "merges.txt").write_text("\n".join(merges[:1] + merges[2:] + merges[1:2]) + "\n")
    assert build_tokenizer(str(tmp_path / "edited")) != from_files  # one merge's rank changed
