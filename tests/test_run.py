"""gptjax.run: opening a finished run, and the notebook API's Run on top of it."""

import shutil

import pytest

import gptjax
from gptjax.config import load_config
from gptjax.run import Run, RunError, load_run
from gptjax.sample import complete
from gptjax.trainer import train

QUICK = ["data.max_chars=40000", "model.num_layers=1", "model.num_heads=2", "model.d_model=32",
         "model.block_size=16", "train.batch_size=4", "train.steps=3", "train.eval_every=0", "train.eval_batches=1",
         "train.log_every=1", "train.sample_tokens=0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "tiny"
    train(load_config(None, QUICK), path)
    return path


def test_load_run(run_dir):
    run = load_run(run_dir)
    assert type(run) is Run and run.step == 3 and run.run_dir == run_dir
    assert run.num_params == gptjax.count_params(run.model_config)
    assert not hasattr(run, "sample")  # the core Run knows nothing of sampling or evaluation


def test_the_notebook_run_samples_and_evaluates_itself(run_dir):
    run = gptjax.load_run(run_dir)
    assert isinstance(run, Run) and repr(run) == repr(load_run(run_dir))
    text = run.sample("de", max_new_tokens=5, temperature=0)
    assert text == complete(load_run(run_dir), "de", 5, temperature=0) and text.startswith("de")
    assert run.evaluate("val_loss")["metrics"]["val_loss"] > 0  # its own validation split, found from run_dir


def test_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(RunError, match="has no config.yaml: is it a run directory written by gptjax.train?") as e:
        load_run(tmp_path)
    assert e.value.exit_code == 2  # bad input, for every command that opens a run


def test_a_run_that_never_saved_a_step(tmp_path, run_dir):
    shutil.copy(run_dir / "config.yaml", tmp_path)
    shutil.copytree(run_dir / "tokenizer", tmp_path / "tokenizer")
    with pytest.raises(RunError, match="checkpoints holds no checkpoint yet: train \\(or resume\\) the run first"):
        load_run(tmp_path)


def test_a_missing_checkpoint_step_is_a_run_error(run_dir):
    with pytest.raises(RunError, match=r"has no checkpoint of step 99 \(it has steps: 3\)"):
        load_run(run_dir, step=99)
