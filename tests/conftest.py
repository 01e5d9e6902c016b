"""Shared test fixtures. Real data (tinyshakespeare, GPT-2 tokenizer files, corpora) is read from one setting,
GPTJAX_DATA_DIR (default: ../shared/data beside the repository); tests that need it skip when it is absent."""

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("GPTJAX_DATA_DIR", REPO.parent / "shared" / "data"))
# The compilation cache of every run the tests start (train.compile_cache=auto), in this process and the ones it
# starts: one for the session, never the user's own.
_CACHE = tempfile.TemporaryDirectory(prefix="gptjax-test-xla-")
os.environ["GPTJAX_CACHE_DIR"] = _CACHE.name


def data_path(*parts: str) -> Path:
    """A file under GPTJAX_DATA_DIR, or skip the test with a message saying what is missing."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found (set GPTJAX_DATA_DIR to the shared data directory)")
    return path


@pytest.fixture
def shakespeare_path() -> Path:
    return data_path("tinyshakespeare.txt")


@pytest.fixture
def gpt2_dir() -> Path:
    return data_path("gpt2")


@pytest.fixture(scope="session")
def tiny_bpe(tmp_path_factory) -> Path:
    """A small byte-level BPE (GPT-2's kind, with <|endoftext|>) trained here, so tests of BPE-only features need
    no shared data: the path of its tokenizer.json."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["What is the answer? The answer is yes, because the study shows it. No, maybe not. " * 3,
            "Aspirin reduces fever and pain; the trial enrolled patients with numbers 0 1 2 3 4 5 6 7 8 9."]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text * 20, trainer)
    path = tmp_path_factory.mktemp("tiny_bpe") / "tokenizer.json"
    tok.save(str(path))
    return path
