"""The `gptjax` command: subcommands dispatch to each tool's main(argv) with the rest of the arguments."""

import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

from gptjax import cli

REPO = Path(__file__).resolve().parents[1]


def gptjax_command(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    # `python -m gptjax.cli` is what the console script `gptjax` runs (gptjax.cli:main), minus the installation.
    return subprocess.run([sys.executable, "-m", "gptjax.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def test_help_lists_every_subcommand_without_importing_jax():
    result = gptjax_command("--help")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and
              not line.startswith("  gptjax.")]
    assert listed == list(cli.COMMANDS)
    assert {"train", "sample", "evaluate", "prepare", "crawl", "hf", "lm-eval"} <= set(listed)
    # --help must answer at once: a subcommand's module (and JAX) is imported only when it runs.
    probe = subprocess.run([sys.executable, "-c", "import sys; from gptjax.cli import main; main(['--help']); "
                            "print('jax' in sys.modules)"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert probe.stdout.strip().endswith("False"), probe.stdout + probe.stderr


def test_every_subcommand_module_has_a_main_that_takes_argv():
    import inspect

    for name, (module, _) in cli.COMMANDS.items():
        if name == "lm-eval":  # lm-eval's own command line reads sys.argv; cli swaps it in (tested below)
            continue
        main = import_module(module).main
        assert "argv" in inspect.signature(main).parameters, f"{module}.main cannot be handed the arguments"


def test_a_subcommand_help_is_the_tools_own_help():
    result = gptjax_command("sample", "--help")
    assert result.returncode == 0, result.stderr
    assert "--max_new_tokens" in result.stdout and "--workdir" in result.stdout


@pytest.mark.parametrize("name, option", [("train", "--workdir"), ("evaluate", "--task"), ("prepare", "--config"),
                                          ("crawl", "--sitemap"), ("hf", "{import,export}")])
def test_each_subcommand_help(name, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    assert option in capsys.readouterr().out


def test_lm_eval_gets_the_arguments_and_sys_argv_is_restored(capsys):
    pytest.importorskip("lm_eval")
    argv_before = list(sys.argv)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["lm-eval", "run", "--help"])  # lm-eval's `run` subcommand: only there if argv was handed on
    assert exit_.value.code == 0
    assert "usage: lm-eval run --model <model>" in capsys.readouterr().out
    assert sys.argv == argv_before


@pytest.mark.parametrize("argv, message", [
    (["bogus"], "gptjax: error: unknown subcommand 'bogus'; choose from train, sample,"),
    (["trian", "--workdir", "x"], "gptjax: error: unknown subcommand 'trian'; did you mean 'train'?"),
    (["--workdir", "x"], "gptjax: error: unknown option '--workdir'"),
])
def test_an_unknown_subcommand_is_one_line_and_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message) and captured.err.count("\n") == 1, captured.err


def test_an_unknown_subcommand_from_the_shell():
    result = gptjax_command("bogus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "unknown subcommand 'bogus'" in result.stderr


def test_no_subcommand_prints_usage_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: gptjax" in capsys.readouterr().err


def test_the_console_scripts_resolve():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["gptjax"] == "gptjax.cli:main"
    assert {"gptjax-train", "gptjax-sample", "gptjax-evaluate", "gptjax-hf", "gptjax-prepare",
            "gptjax-crawl"} <= set(scripts)
    for name, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(import_module(module), function)), f"{name} = {target} does not resolve"


def test_train_then_sample_through_the_command(tmp_path, capsys):
    run_dir = tmp_path / "tiny"
    result = gptjax_command(
        "train", "--workdir", str(run_dir), "--config.data.max_chars=20000", "--config.model.num_layers=1",
        "--config.model.num_heads=2", "--config.model.d_model=32", "--config.model.block_size=32",
        "--config.train.batch_size=4", "--config.train.steps=2", "--config.train.eval_every=0",
        "--config.train.eval_batches=1", "--config.train.log_every=1", "--config.train.sample_tokens=0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "config.yaml").exists() and (run_dir / "checkpoints").is_dir()

    # The status and the errors of the tool come through: a missing run is the sample tool's exit 2.
    assert cli.main(["sample", "--workdir", str(tmp_path / "nowhere")]) == 2
    assert "has no config.yaml" in capsys.readouterr().err

    assert cli.main(["sample", "--workdir", str(run_dir), "--prompt", "def ", "--max_new_tokens", "12",
                     "--temperature", "0"]) == 0
    printed = capsys.readouterr().out
    # The command and the notebook API (Run.sample) decode the same greedy continuation.
    import gptjax

    run = gptjax.load_run(run_dir)
    expected = run.sample("def ", max_new_tokens=12, temperature=0)
    assert expected.startswith("def ") and len(expected) > len("def ")
    assert printed == expected + "\n"
    # A list of prompts, as repeated --prompt flags: one batch, one text each, in order.
    assert cli.main(["sample", "--workdir", str(run_dir), "--prompt", "def ", "--prompt", "class A", "--max_new_tokens",
                     "12", "--temperature", "0"]) == 0
    batch = run.sample(["def ", "class A"], max_new_tokens=12, temperature=0)
    assert batch[0] == expected and batch[1].startswith("class A")
    printed = capsys.readouterr().out
    assert all(f"--- prompt {i + 1}\n{text}\n" in printed for i, text in enumerate(batch))
    assert run.step == 2 and f"step 2, {run.num_params:,} parameters: 1 layers" in repr(run)


def test_help_names_the_command_as_typed_shows_defaults_and_takes_both_spellings(capsys):
    from gptjax import cli, sample

    with pytest.raises(SystemExit) as done:
        cli.main(["sample", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: gptjax sample ")
    assert "--max-new-tokens MAX_NEW_TOKENS, --max_new_tokens MAX_NEW_TOKENS" in text
    assert "tokens to generate after each prompt (default: 200)" in " ".join(text.split())
    with pytest.raises(SystemExit):
        sample.main(["--help"])  # started as python -m gptjax.sample: named so
    assert capsys.readouterr().out.startswith("usage: python -m gptjax.sample ")
    parser = __import__("gptjax.command", fromlist=["ArgumentParser"]).ArgumentParser(prog="x")
    parser.add_argument("--max_new_tokens", type=int, default=1)
    assert parser.parse_args(["--max-new-tokens", "3"]).max_new_tokens == 3
    assert parser.parse_args(["--max_new_tokens", "4"]).max_new_tokens == 4


def test_lm_eval_help_says_how_to_name_a_run(capsys):
    pytest.importorskip("lm_eval")
    from gptjax import cli

    try:
        cli.main(["lm-eval", "--help"])
    except SystemExit:
        pass
    assert "--model gptjax --model_args workdir=RUN" in capsys.readouterr().out
