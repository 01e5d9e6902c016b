"""Seeing and picking configs: a preset by name from any directory, the resolved config, what each key means."""

import os
import subprocess
import sys

import yaml

from conftest import REPO
from gptjax.config import load_config, shipped_configs
from gptjax.show_config import describe_keys, key_help, main


def gptjax(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "gptjax.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_a_preset_by_name_from_another_directory(tmp_path):
    shown = gptjax("train", "--config", "gpt2_small", "--config.train.steps=40", "--print_config", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    cfg = yaml.safe_load(shown.stdout)
    assert cfg["model"]["num_layers"] == 12 and cfg["train"]["steps"] == 40
    assert list(tmp_path.iterdir()) == []  # printing the config starts nothing
    wrong = gptjax("train", "--config", "gpt2_smal", cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    assert "config file gpt2_smal does not exist; did you mean gpt2_small?" in wrong.stderr
    assert {"gpt2_small", "shakespeare_char_cpu", "data/legal_web"} <= set(shipped_configs())


def test_config_show_prints_what_the_run_would_save(tmp_path, capsys):
    assert main(["show", "--config", "shakespeare_char_cpu", "--config.optim.lr=3e-4"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "shown.yaml").write_text(printed)
    again = load_config(str(tmp_path / "shown.yaml"))
    assert again.to_dict() == load_config("shakespeare_char_cpu", ["optim.lr=3e-4"]).to_dict()


def test_every_key_is_listed_with_its_meaning(capsys):
    meanings = key_help()
    assert meanings["train.grad_accum"] == "micro-batches per step; batch_size must be divisible by it"
    assert meanings["model.vocab_size"].startswith("0: the tokenizer's vocabulary size")
    text = describe_keys("model")
    assert "  attention = 'xla' [xla | cudnn | pallas | auto]" in text and "train:" not in text
    assert main(["keys", "optim"]) == 0 and "warmup_steps = 100" in capsys.readouterr().out
    assert main(["keys", "modle"]) == 2 and "no config section 'modle'" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
