"""gptjax: train, sample and evaluate GPT-style language models with JAX and Flax NNX.

    import gptjax
    cfg = gptjax.load_config("configs/shakespeare_char_cpu.py", ["data.path=input.txt", "train.steps=200"])
    metrics = gptjax.train(cfg, "runs/baby")           # the final metrics: loss, val_loss, ...
    run = gptjax.load_run("runs/baby")                 # Run(step 200, ... parameters: 4 layers, ...)
    run.sample("ROMEO:", max_new_tokens=100)           # prompt + continuation, as a str
    gptjax.evaluate_task(run, "val_loss", run_dir="runs/baby")

The names below are imported on first use, so `import gptjax` (and `gptjax --help`) stays fast and pulls in JAX
only when a model is touched. notebooks/quickstart.ipynb walks through all of it on a tiny model.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# name -> the module that defines it. Every one is also importable from that module directly.
_EXPORTS = {
    # configuration
    "load_config": "gptjax.config", "base_config": "gptjax.config", "ConfigError": "gptjax.config",
    # the model
    "GPT": "gptjax.model", "ModelConfig": "gptjax.model", "count_params": "gptjax.model",
    # tokenizers and data
    "load_tokenizer": "gptjax.tokenizer", "build_tokenizer": "gptjax.tokenizer",
    "prepare_data": "gptjax.rundir",  # a run's text -> its tokenizer and token shards (what train does first)
    "prepare": "gptjax.data.prepare",  # the datatrove pipeline behind `gptjax prepare`
    "WindowLoader": "gptjax.data.loader", "open_split": "gptjax.data.shards",
    # training and runs
    "train": "gptjax.train", "setup": "gptjax.state", "Setup": "gptjax.state",
    "load_run": "gptjax.state", "Run": "gptjax.state",
    # using a trained run
    "generate": "gptjax.sample", "generate_batch": "gptjax.sample",
    "evaluate_task": "gptjax.evaluate",
    "load_hf": "gptjax.hf", "import_hf": "gptjax.hf", "export_hf": "gptjax.hf",
}

__all__ = sorted(_EXPORTS)


def _resolve(name: str):
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    if name != "train":  # cached in the package; `train` is served by the property below, never cached
        globals()[name] = value
    return value


def __getattr__(name: str):
    if name in _EXPORTS:
        return _resolve(name)
    raise AttributeError(f"module 'gptjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """`gptjax.train` is both a submodule and the function `train` in it. Importing a submodule sets it as an
    attribute of its package, so whichever import ran first would decide what `gptjax.train` is. This property
    makes it the function always; the module stays importable (`from gptjax.train import main`,
    `python -m gptjax.train`) through sys.modules."""

    @property
    def train(self):
        return _resolve("train")

    @train.setter
    def train(self, value):
        if not isinstance(value, types.ModuleType):  # the import system recording the submodule: nothing to do
            raise AttributeError("gptjax.train is the training function; patch gptjax.train.train instead")


sys.modules[__name__].__class__ = _Package
