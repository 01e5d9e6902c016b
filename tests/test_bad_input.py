"""Every command, given input it cannot use, says so in one line and exits 2, before doing the work and without
writing anything: a config file that raises, an override that is not a value, an output location that is a
file or read-only, a checkpoint step that does not exist, a task lm-eval does not know."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

TINY = ["--config.data.max_chars=50000", "--config.model.num_layers=1", "--config.model.num_heads=2",
        "--config.model.d_model=32", "--config.model.block_size=32", "--config.train.batch_size=8",
        "--config.train.steps=2", "--config.train.eval_batches=1", "--config.train.sample_tokens=0",
        "--config.optim.warmup_steps=1", "--config.model.vocab_size=512"]  # padded: a char run that exports


def gptjax(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptjax", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def one_line(result: subprocess.CompletedProcess, pattern: str, code: int = 2) -> None:
    assert result.returncode == code, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr[-3000:]
    assert re.search(pattern, errors[0]), errors[0]


@pytest.fixture(scope="module")
def read_only_dir() -> Path:
    """A directory no write reaches, even for root (tests here often run as root, whom permissions do not stop):
    /sys is mounted read-only wherever this runs in a container or as a user."""
    probe = Path("/sys/gptjax-write-probe")
    try:
        probe.write_text("x")
    except OSError:
        return Path("/sys/gptjax-out")
    probe.unlink()
    pytest.skip("no read-only location on this machine")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("bad_input") / "run"
    result = gptjax("train", "--workdir", workdir, *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_a_config_file_that_raises(tmp_path):
    (tmp_path / "mine.py").write_text("import os\nvalue = 1 / 0\n")
    one_line(gptjax("train", "--config", tmp_path / "mine.py", "--workdir", tmp_path / "run"),
             r"config file .*mine.py failed to load: ZeroDivisionError: division by zero \(line 2\)")
    assert not (tmp_path / "run").exists()


def test_an_override_that_is_not_a_value(tmp_path):
    one_line(gptjax("train", "--workdir", tmp_path / "run", "--config.train.steps=[1,"),
             r"--config.train.steps=\[1, is not a value gptjax can read")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["a file", "read-only"])
def test_prepare_into_a_location_it_cannot_write(tmp_path, read_only_dir, where):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "cfg.py").write_text(
        "from gptjax.data.prepare import base_config, source\n"
        f"def get_config():\n    c = base_config()\n    c.sources.web = source('jsonl', {str(tmp_path / 'raw')!r})\n"
        "    return c\n")
    out = tmp_path / "blocker" if where == "a file" else read_only_dir
    (tmp_path / "blocker").write_text("not a directory")
    one_line(gptjax("prepare", "--config", tmp_path / "cfg.py", "--workdir", out),
             rf"cannot write to the output directory {out}: .*; choose a writable --workdir")


def test_evaluate_checks_that_it_can_write_its_result_before_scoring(trained, read_only_dir):
    eval_dir = trained / "eval"
    eval_dir.symlink_to(read_only_dir)  # RUN/eval cannot be written
    try:
        result = gptjax("evaluate", "--workdir", trained, "--task", "val_loss")
    finally:
        eval_dir.unlink()
    one_line(result, r"cannot write to the run's eval directory .*eval")
    assert "val_loss" not in result.stdout  # it did not score first


def test_sample_a_step_that_does_not_exist(trained):
    one_line(gptjax("sample", "--workdir", trained, "--step", 999, "--max_new_tokens", 4),
             r"has no checkpoint of step 999 \(it has steps: 2\); pick one of those")


def test_export_into_a_read_only_location(trained, read_only_dir):
    one_line(gptjax("hf", "export", trained, read_only_dir), rf"cannot write to the output directory {read_only_dir}")


def test_bench_json_into_a_read_only_location_is_refused_before_the_benchmark(tmp_path, read_only_dir):
    result = gptjax("bench", "--json", read_only_dir.parent / "bench.json", "--steps", 1)
    one_line(result, rf"cannot write to the --json directory {read_only_dir.parent}")
    assert "tok/s" not in result.stdout


def test_lm_eval_with_a_task_it_does_not_know(tmp_path):
    pytest.importorskip("lm_eval")
    one_line(gptjax("lm-eval", "--model", "gptjax", "--model_args", f"workdir={tmp_path}", "--tasks",
                    "no_such_task"), r"Tasks not found: no_such_task; `gptjax lm-eval ls tasks` lists")


# ----------------------------------------------------------------------------------------------------------------
# Offline: a command that needs the Hugging Face hub says so in one line, at once, having written nothing


@pytest.fixture
def offline(monkeypatch):
    from gptjax import lm_eval_adapter, tokenizer
    from gptjax.data import prepare

    for module in (tokenizer, prepare, lm_eval_adapter):
        monkeypatch.setattr(module, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_prepare_of_a_hub_dataset_offline(tmp_path, offline, capsys):
    from gptjax.data import prepare

    (tmp_path / "cfg.py").write_text("from gptjax.data.prepare import base_config, source\n"
                                     "def get_config():\n    c = base_config()\n"
                                     "    c.sources.web = source('hf', 'HuggingFaceFW/fineweb-edu')\n    return c\n")
    assert prepare.main(["--config", str(tmp_path / "cfg.py"), "--workdir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the hub cannot be reached (no network?)" in err[0] and "HF_DATASETS_OFFLINE" in err[0]
    assert not (tmp_path / "out").exists()
    # A hub tokenizer offline: refused before the cleaning, not after it.
    (tmp_path / "notes.txt").write_text("some words " * 100)
    assert prepare.main(["--source", str(tmp_path / "notes.txt"), "--workdir", str(tmp_path / "out"),
                         "--config.tokenizer.name=gpt2"]) == 2
    assert "could not be fetched from the Hugging Face hub" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_lm_eval_of_a_hub_task_offline(tmp_path, offline, monkeypatch, capsys):
    import datasets
    import huggingface_hub

    from gptjax import lm_eval_adapter
    from gptjax.trainer import train
    from gptjax.config import load_config

    train(load_config(None, [t.removeprefix("--config.") for t in TINY]), tmp_path / "run")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", huggingface_hub.constants.HF_HUB_OFFLINE)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", datasets.config.HF_HUB_OFFLINE)
    monkeypatch.setattr(sys, "argv", ["lm-eval", "run", "--model", "gptjax", "--model_args",
                                      f"workdir={tmp_path / 'run'}", "--tasks", "hellaswag", "--limit", "2"])
    capsys.readouterr()
    assert lm_eval_adapter.main() == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the Hugging Face hub cannot be reached" in errors[0]


# ----------------------------------------------------------------------------------------------------------------
# Post-training


def post_training(tmp_path, *args, tokenizer=None):
    return gptjax("train", "--workdir", tmp_path / "run", *TINY, "--config.model.vocab_size=0", *args,
                  *([f"--config.data.tokenizer={tokenizer}"] if tokenizer else []))


@pytest.mark.parametrize("records,pattern", [
    (None, r"data.path=.*does not exist"),
    ("", r"holds no records"),
    ('not json\n{"messages": "text"}\n[1]\n', r"no record of .* could be used \(not valid JSON.*: 1; \"messages\" is "
                                                r"not a list of messages: 1; not a JSON object: 1\)"),
])
def test_chat_records_that_cannot_be_used(tmp_path, tiny_bpe, records, pattern):
    path = tmp_path / "sft.jsonl"
    if records is not None:
        path.write_text(records)
    one_line(post_training(tmp_path, "--config.data.source=chat", f"--config.data.path={path}",
                           "--config.data.val_fraction=0", tokenizer=tiny_bpe), pattern)
    assert not (tmp_path / "run").exists()


def test_chat_without_a_tokenizer_or_with_one_that_cannot_hold_the_template(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text('{"prompt": "q", "completion": "a"}\n')
    one_line(post_training(tmp_path, "--config.data.source=chat", f"--config.data.path={path}"),
             r"needs a tokenizer: set checkpoint.init_from")
    one_line(post_training(tmp_path, "--config.data.source=chat", f"--config.data.path={path}", tokenizer="byte"),
             r"special tokens <\|im_start\|>, <\|im_end\|>, which a byte tokenizer cannot hold")
    one_line(post_training(tmp_path, "--config.data.source=chat", f"--config.data.path={path}",
                           "--config.data.chat_template={% for m in messages", tokenizer="byte"), r"not valid Jinja")
    assert not (tmp_path / "run").exists()


def test_chat_needs_a_path_and_document_masks_are_for_pretraining(tmp_path):
    one_line(post_training(tmp_path, "--config.data.source=preferences"), r"needs data.path")
    one_line(post_training(tmp_path, "--config.data.source=chat", "--config.data.path=x.jsonl",
                           "--config.data.document_mask=true"), r"document_mask is for pretraining")
    one_line(post_training(tmp_path, "--config.dpo.beta=0"), r"dpo.beta=0.* must be positive")


def test_sample_messages_that_are_not_a_conversation(trained, tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text('[{"role": "user"}]')
    one_line(gptjax("sample", "--workdir", trained, "--messages", bad), r"conversation 1: .*\"role\": str")
    one_line(gptjax("sample", "--workdir", trained, "--chat", "--prompt", "hi"), r"has no chat template")
    one_line(gptjax("sample", "--workdir", trained, "--system", "be brief"), r"--system needs --chat")


def test_pubmedqa_from_a_file_that_is_not_pubmedqa(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    one_line(gptjax("pubmedqa", "--source", tmp_path / "x.json", "--out",
                    tmp_path / "out"), r"holds no PubMedQA record")
    assert not (tmp_path / "out").exists()
