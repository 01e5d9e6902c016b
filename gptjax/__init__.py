"""gptjax: train, sample and evaluate GPT-style language models with JAX and Flax NNX.

    import gptjax
    cfg = gptjax.load_config("configs/shakespeare_char_cpu.py", ["data.path=input.txt", "train.steps=200"])
    metrics = gptjax.Trainer(cfg, "runs/baby").run()   # the final metrics: loss, val_loss, ...
    run = gptjax.load_run("runs/baby")                 # Run(step 200, ... parameters: 4 layers, ...)
    run.sample("ROMEO:", max_new_tokens=100)           # prompt + continuation, as a str
    gptjax.evaluate_task(run, "val_loss")

The names below are imported on first use, so `import gptjax` (and `gptjax --help`) stays fast and pulls in JAX
only when a model is touched. `gptjax.train` is the training command's module (`python -m gptjax.train`), as
every other submodule is; train from Python with gptjax.Trainer. notebooks/quickstart.ipynb walks through all of it
on a tiny model; docs/architecture.md maps the modules.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> the module that defines it. Every one is also importable from that module directly.
_EXPORTS = {
    # configuration
    "load_config": "gptjax.config", "base_config": "gptjax.config", "ConfigError": "gptjax.config",
    "GptjaxError": "gptjax.errors",
    # the model
    "GPT": "gptjax.model", "ModelConfig": "gptjax.model", "count_params": "gptjax.model",
    # tokenizers and data
    "load_tokenizer": "gptjax.tokenizer", "build_tokenizer": "gptjax.tokenizer",
    "prepare_data": "gptjax.inputs",  # a run's text -> its tokenizer and token shards (what training does first)
    "prepare": "gptjax.data.prepare",  # the datatrove pipeline behind `gptjax prepare`
    "WindowLoader": "gptjax.data.loader", "open_split": "gptjax.data.shards",
    # training and runs
    "Trainer": "gptjax.trainer", "Hook": "gptjax.hooks", "setup": "gptjax.state", "Setup": "gptjax.state",
    "RunDir": "gptjax.rundir", "load_run": "gptjax.api", "Run": "gptjax.api",
    # using a trained run
    "generate": "gptjax.sample", "generate_batch": "gptjax.sample",
    "evaluate_task": "gptjax.evaluate",
    "load_hf": "gptjax.hf", "import_hf": "gptjax.hf", "export_hf": "gptjax.hf",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name == "train":  # until `import gptjax.train` makes it the command's module
        raise AttributeError("gptjax.train is the training command's module; from Python, train with "
                             "gptjax.Trainer(cfg, run_dir).run()")
    raise AttributeError(f"module 'gptjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
