"""Every command in the README runs, shrunk to a tiny model and a few steps, in the order the README gives them (so
`sample --workdir runs/baby` reads the run the command above it trained) -- or it is marked in the README as needing
a GPU, a cluster or the internet, or named below as exercised by another test."""

import gzip
import importlib
import json
import random
import re
import shlex
from pathlib import Path

import pytest

from conftest import DATA_DIR, REPO

MARKERS = ("# needs the internet", "# needs a GPU", "# needs 8 GPUs", "# needs a SLURM cluster")

# Commands that another test already runs, shrunk (they need the shared corpora and take tens of seconds).
COVERED = {
    "python -m gptjax.data.prepare --config configs/data/legal_web.py --workdir prepared/legal_web":
        "tests/test_prepare.py::test_worked_example",
    "python -m gptjax.train --config configs/legal_web.py": "tests/test_prepare.py::test_worked_example",
    "make test": ".ci/run",
}

# Appended to every training command (later overrides win): the README's recipe, at toy size.
SHRINK_TRAIN = ["--config.model.num_layers=1", "--config.model.num_heads=2", "--config.model.d_model=32",
                "--config.model.block_size=32", "--config.model.dtype=float32", "--config.model.attention=xla",
                "--config.train.steps=3", "--config.train.batch_size=4", "--config.train.grad_accum=1",
                "--config.train.eval_every=0", "--config.train.eval_batches=1", "--config.train.log_every=1",
                "--config.train.sample_tokens=4", "--config.data.max_chars=100000", "--config.checkpoint.every=0"]
# Post-training examples need room for a prompt and its reply: a longer block than SHRINK_TRAIN's
SHRINK_POST = ["--config.model.block_size=128"]
SHRINK = {"gptjax.train": SHRINK_TRAIN, "gptjax.sample": ["--max_new_tokens", "4"],
          "gptjax.data.pubmedqa": ["--limit", "40", "--context_words", "20"],
          "gptjax.bench": SHRINK_TRAIN + ["--steps", "1", "--warmup", "0", "--peak_size", "64", "--loader_batches", "2",
                                          "--seeds", "1"],  # --to-loss: one seed
          "gptjax.evaluate": ["--limit", "2"]}


def readme_commands() -> list[tuple[str, str]]:
    """(command, trailing comment) for every command line of the README's bash blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                code, _, comment = line.partition(" #")
                commands.append((" ".join(code.split()), "# " + comment.strip() if comment else ""))
    return commands


def test_every_command_is_run_or_marked():
    commands = readme_commands()
    assert len(commands) > 15
    for command, comment in commands:
        runnable = command.startswith(("python -m gptjax.", "make train"))
        assert runnable or command in COVERED or comment.startswith(MARKERS), command
    for target in set(COVERED.values()):
        path, _, name = target.partition("::")
        assert f"def {name}(" in (REPO / path).read_text() if name else "make test" in (REPO / path).read_text()


def substitutions(tmp_path: Path) -> dict[str, str]:
    """The README's placeholders, pointed at local files (shared data where present, small stand-ins if not)."""
    from gptjax.data import stdlib_corpus

    text = DATA_DIR / "tinyshakespeare.txt"
    if not text.exists():
        text = tmp_path / "text.txt"
        text.write_text(stdlib_corpus(max_chars=100_000))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(stdlib_corpus(max_chars=100_000))
    notes = tmp_path / "notes"  # the README's own files: a folder of notes and a gzipped jsonl, in English prose
    notes.mkdir()
    rng = random.Random(0)
    words = ("the of and to in a is that for it as was with be by on not this are or from at which court river "
             "market garden letter window morning history science village doctor judge evidence trial").split()

    def prose():
        return "\n\n".join(" ".join(rng.choice(words) for _ in range(80)).capitalize() + "." for _ in range(4))

    for i in range(6):
        (notes / f"{i}.txt").write_text(prose())
    with gzip.open(tmp_path / "papers.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"text": prose()}) + "\n" for _ in range(6))
    return {"/path/to/tinyshakespeare.txt": str(text), "/path/to/gpt2": str(DATA_DIR / "gpt2"),
            "--data notes/": f"--data {notes}", "--data papers.jsonl.gz": f"--data {tmp_path / 'papers.jsonl.gz'}",
            "/path/to/corpus.txt": str(corpus), "/path/to/mmlu": str(DATA_DIR / "eval" / "mmlu"),
            "/models/gpt2": str(tmp_path / "hf_gpt2"),
            "/path/to/ori_pqal.json": str(DATA_DIR / "corpora" / "pubmed" / "ori_pqal.json")}


def tiny_hf_gpt2(directory: Path) -> None:
    """A small random GPT2LMHeadModel with GPT-2's tokenizer: what `hf import /models/gpt2` reads."""
    import shutil

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    shutil.copy(DATA_DIR / "gpt2" / "tokenizer.json", directory / "tokenizer.json")


def test_readme_commands_run_shrunk(tmp_path, monkeypatch, capsys):
    if not (DATA_DIR / "gpt2").exists():
        pytest.skip(f"{DATA_DIR / 'gpt2'} not found (the GPT-2 recipes need its tokenizer files)")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    for shared in ("configs", "examples", "scripts"):
        (sandbox / shared).symlink_to(REPO / shared)
    subs = substitutions(tmp_path)
    tiny_hf_gpt2(tmp_path / "hf_gpt2")
    monkeypatch.chdir(sandbox)
    ran = []
    for command, comment in readme_commands():
        if command in COVERED or comment.startswith(MARKERS):
            continue
        for placeholder, value in subs.items():
            command = command.replace(placeholder, value)
        command = re.sub(r"\$'([^']*)'", lambda m: shlex.quote(m.group(1).encode().decode("unicode_escape")),
                         command)  # bash's $'\n\n'
        argv = shlex.split(command)
        if argv[0] == "make":  # make train [ARGS=...]: the training module in the venv make builds
            module, args = "gptjax.train", []
        else:
            assert argv[:2] == ["python", "-m"], command
            module, args = argv[2], argv[3:]
        main = importlib.import_module(module).main
        status = main(args + SHRINK.get(module, []) + (SHRINK_POST if "pubmedqa" in command and
                                                         module == "gptjax.train" else []))
        output = capsys.readouterr()
        assert status in (0, None), f"{command}\n{output.out[-2000:]}\n{output.err[-2000:]}"
        ran.append(command)
    assert len(ran) >= 12
    assert (sandbox / "runs" / "baby_ft" / "config.yaml").exists() and (sandbox / "exports" / "gpt2_small").is_dir()
