"""Your own files in one command: sources from paths (gptjax.data.paths), `prepare --source`, `train --data`."""

import json
import os
import random
import subprocess
import sys

import pytest

from conftest import REPO
from gptjax.config import ConfigError, load_config
from gptjax.data import prepare
from gptjax.data.paths import sources_from_paths

WORDS = ("the of and to in a is that for it as was with be by on not this are or from at which court patient "
         "river market garden letter window morning history science village doctor judge evidence trial contract "
         "statute appeal record season harvest engine signal bridge mountain forest ocean island teacher").split()


def paragraph(rng, n=70):
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def my_files(root, seed=0):
    """A folder as a user has one: text notes at the top, JSON lines in a subfolder, and files of no known kind."""
    rng = random.Random(seed)
    (root / "sub").mkdir(parents=True)
    for i in range(12):
        (root / f"note{i}.txt").write_text("\n\n".join(paragraph(rng) for _ in range(3)))
    with open(root / "sub" / "records.jsonl", "w") as f:
        for i in range(15):
            f.write(json.dumps({"id": i, "text": "\n\n".join(paragraph(rng) for _ in range(3))}) + "\n")
    (root / "sub" / "image.png").write_bytes(b"\x89PNG")
    return root


def test_a_folder_gives_a_source_per_kind_of_file(tmp_path):
    root = my_files(tmp_path / "My Notes")
    found = sources_from_paths([str(root), f"extra={root / 'note0.txt'}"])
    assert {name: (s["kind"], s["glob"]) for name, s in found.items()} == {
        "my_notes_jsonl": ("jsonl", "**/*.jsonl"), "my_notes_txt": ("text", "**/*.txt"), "extra": ("text", "")}
    assert len(prepare.input_files(prepare.source(**found["my_notes_txt"]))) == 12  # the whole tree


@pytest.mark.parametrize("make, message", [
    (lambda p: p, r"data path .*missing does not exist"),
    (lambda p: (p.mkdir(), (p / "a.png").write_bytes(b"x"), p)[-1], r"holds no .* files \(found: \.png\)"),
    (lambda p: (p.with_suffix(".csv").write_text("a,b"), p.with_suffix(".csv"))[-1],
     r"cannot tell what missing.csv holds from its name"),
])
def test_a_path_of_nothing_usable_is_one_line(tmp_path, make, message):
    with pytest.raises(ConfigError, match=message):
        sources_from_paths([str(make(tmp_path / "missing"))])
    with pytest.raises(ConfigError, match="both named 'a'"):
        (tmp_path / "x").mkdir()
        (tmp_path / "x" / "a.txt").write_text("one")
        (tmp_path / "y").mkdir()
        (tmp_path / "y" / "a.txt").write_text("two")
        sources_from_paths([str(tmp_path / "x" / "a.txt"), str(tmp_path / "y" / "a.txt")])


@pytest.mark.parametrize("overrides, message", [
    (["data.source=jsonl"], r"data.source='jsonl' is not one of: stdlib, text, shards, files, chat, preferences; for your own files"),
    (["data.source=text", "data.path={root}"], r"is a folder; data.source='text' reads one text file; for your own"),
    (["data.source=text", "data.path={root}/sub/records.jsonl"], r"is not plain text: .* raw bytes .*data.source=files"),
    (["data.source=files"], r"data.source='files' needs data.path"),
])
def test_own_files_named_the_wrong_way_say_the_right_one(tmp_path, overrides, message):
    root = my_files(tmp_path / "mine")
    with pytest.raises(ConfigError, match=message):
        load_config(None, [o.format(root=root) for o in overrides])


def test_prepare_a_source_named_on_the_command_line(tmp_path, capsys):
    root = my_files(tmp_path / "mine")
    status = prepare.main(["--source", f"notes={root}", "--workdir", str(tmp_path / "out"),
                           "--config.tokenizer.name=byte", "--config.sources.notes_txt.skip=gopher_repetition"])
    assert status == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["sources"]) == {"notes_txt", "notes_jsonl"}
    assert report["sources"]["notes_txt"]["cleaning"][0]["documents"] == 12
    # A key of a source that does not exist says so, and how to add one.
    assert prepare.main(["--config.sources.mine.kind=text", "--workdir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "sources has no 'mine' (it is empty)" in err and "--source NAME=PATH" in err


def test_train_on_a_folder_in_one_command(tmp_path):
    root = my_files(tmp_path / "mine")
    run = tmp_path / "run"
    small = ["--config.model.num_layers=1", "--config.model.d_model=32", "--config.model.num_heads=2",
             "--config.model.block_size=32", "--config.train.eval_batches=1", "--config.train.sample_tokens=0",
             "--config.optim.warmup_steps=1"]

    def train(*args):
        return subprocess.run([sys.executable, "-m", "gptjax.train", "--data", str(root), "--workdir", str(run),
                               *small, *args], capture_output=True, text=True, cwd=REPO, timeout=600,
                              env={**os.environ})

    first = train("--config.train.steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "| mine_txt | 12 |" in first.stdout and (run / "prepared" / "report.md").exists()
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "val_loss" in line]
    assert {"val_loss_mine_txt", "val_loss_mine_jsonl"} <= set(evals[-1])
    assert train("--config.train.steps=3").returncode == 0  # resumed: the files are the same

    # evaluate finds the run's own validation splits, and reports each source's loss as training does.
    from gptjax import evaluate

    assert evaluate.main(["--workdir", str(run), "--task", "val_loss"]) == 0
    scored = json.loads((run / "eval" / "val_loss-step3.json").read_text())["metrics"]
    parts = [scored["val_loss_mine_txt"], scored["val_loss_mine_jsonl"]]
    assert min(parts) <= scored["val_loss"] <= max(parts)

    (root / "note99.txt").write_text(paragraph(random.Random(9)) * 3)  # the files change under the run
    refused = train("--config.train.steps=4")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "the data files changed since" in refused.stderr and "1 input file added (note99.txt)" in refused.stderr
    again = train("--config.train.steps=4", "--config.data.retokenize=true")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "| mine_txt | 13 |" in again.stdout
