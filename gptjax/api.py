"""The importable API for notebooks and scripts: what `import gptjax` offers (see gptjax/__init__.py).

It sits at the top of the package, so it may join what the layers below keep apart: a Run loaded here also
samples and evaluates itself, through gptjax.sample and gptjax.evaluate, which take a Run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gptjax import evaluate, run, sample


@dataclasses.dataclass(repr=False)
class Run(run.Run):
    """A trained run (gptjax.run.Run) with .sample(), .chat() and .evaluate()."""

    def sample(self, prompt: str | list[str] = "", max_new_tokens: int = 200, **kwargs) -> str | list[str]:
        """The prompt and one sampled continuation, or a list of them for a list of prompts (one batch):
        gptjax.sample.complete (temperature, top_k, top_p, seed, stop)."""
        return sample.complete(self, prompt, max_new_tokens, **kwargs)

    def chat(self, messages: list[dict] | str, max_new_tokens: int = 200, **kwargs) -> str:
        """The assistant's reply to a conversation (or to one user message), in the model's chat template:
        gptjax.sample.chat (greedy unless temperature is given)."""
        return sample.chat(self, messages, max_new_tokens, **kwargs)

    def evaluate(self, task: str = "val_loss", data=None, **kwargs) -> dict:
        """gptjax.evaluate.evaluate_task on this run; val_loss defaults to the run's own validation split."""
        return evaluate.evaluate_task(self, task, data, **kwargs)


def load_run(run_dir: str | Path, step: int | None = None, *, best: bool = False, mesh=None) -> Run:
    """gptjax.run.load_run, as a Run that samples and evaluates itself."""
    loaded = run.load_run(run_dir, step, best=best, mesh=mesh)
    return Run(**{field.name: getattr(loaded, field.name) for field in dataclasses.fields(loaded)})
