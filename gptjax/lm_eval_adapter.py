"""gptjax as a model of EleutherAI's lm-evaluation-harness, so any of its tasks can be run on a trained run:

    python -m gptjax.lm_eval_adapter run --model gptjax --model_args workdir=runs/x,batch_size=32 --tasks hellaswag
    # (lm_eval's own command line, with the "gptjax" model registered first; or from Python:)
    import gptjax.lm_eval_adapter, lm_eval
    lm_eval.simple_evaluate(model="gptjax", model_args="workdir=runs/x", tasks=["hellaswag"])

Importing this module registers the model name "gptjax". Log-likelihoods come from gptjax.evaluate.Scorer, the
same scorer as `python -m gptjax.evaluate`, so both report the same accuracy on the same requests.
model_args: workdir (required), step or best=True (which checkpoint), batch_size (default 16; also lm-eval's own
--batch_size), max_gen_toks (default 256).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from gptjax.data.chat import ChatTemplate
from gptjax.errors import GptjaxError, report_errors
from gptjax.evaluate import DEFAULT_BATCH_SIZE, Scorer
from gptjax.run import load_run
from gptjax.sample import cut_at_stop, generate_batch
from gptjax.tokenizer import hub_reachable


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@register_model("gptjax")
class GptjaxLM(LM):
    def __init__(self, workdir: str | None = None, step: int | None = None, best=False,
                 batch_size: int | str | None = DEFAULT_BATCH_SIZE, max_gen_toks: int = 256, run=None, **unused):
        """Loads RUN=workdir (or takes a loaded `run` from Python). lm-eval passes device/max_batch_size too;
        JAX places the model itself, so those are accepted and ignored."""
        super().__init__()
        if run is None:
            if not workdir:
                raise ValueError("the gptjax model needs model_args workdir=<run directory written by gptjax.train>")
            run = load_run(Path(workdir), None if step in (None, "") else int(step), best=_as_bool(best))
        if isinstance(batch_size, str) and batch_size.startswith("auto"):
            batch_size = DEFAULT_BATCH_SIZE  # no memory probing here; pass a number to choose
        self.run = run
        self.scorer = Scorer(run, int(batch_size or DEFAULT_BATCH_SIZE))
        self.max_gen_toks = int(max_gen_toks)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "GptjaxLM":
        """--model_args ARGS plus what lm-eval adds from its own flags. lm-eval always passes --batch_size (1 when
        not given), which would clash with model_args' batch_size: model_args wins, then an explicit --batch_size
        other than that default, then this model's own default."""
        from lm_eval import utils

        args = utils.simple_parse_args_string(arg_string)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        cli_batch = extra.pop("batch_size", None)
        if "batch_size" not in args and cli_batch not in (None, 1, "1"):
            args["batch_size"] = cli_batch
        return cls(**args, **extra)

    @property
    def tokenizer_name(self) -> str:
        return self.run.tokenizer.name

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The run's chat template (an SFT run's, or an imported model's), for lm-eval's --apply_chat_template."""
        return self.run.tokenizer.chat_template or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt=True) -> str:
        if not self.run.tokenizer.chat_template:
            raise GptjaxError(f"--apply_chat_template: the {self.run.tokenizer.name} tokenizer of this run has no chat "
                              "template (the model was not fine-tuned on conversations); leave the flag out")
        template = ChatTemplate.choose("", self.run.tokenizer)
        return template.render(chat_history, add_generation_prompt=add_generation_prompt)[0]

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.scorer.loglikelihood([req.args[:2] for req in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        return self.scorer.loglikelihood_rolling([req.args[0] for req in requests])

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy continuation of each context, cut before the first `until` string (default: end of text).
        Requests with the same stop strings and length limit are decoded together, batch_size at a time."""
        tokenizer, block = self.run.tokenizer, self.run.model_config.block_size
        eot = [tokenizer.decode([tokenizer.eot_id])] if tokenizer.eot_id is not None else []
        if tokenizer.chat_template:  # a chat model's reply ends with its turn
            end = ChatTemplate.choose("", tokenizer).end_of_turn(tokenizer)
            eot += [tokenizer.decode([end])] if end is not None and end != tokenizer.eot_id else []
        groups: dict[tuple, list[int]] = {}
        settings = []
        for i, req in enumerate(requests):
            kwargs = dict(req.args[1] or {})
            until = kwargs.get("until") or []
            until = tuple(([until] if isinstance(until, str) else list(until)) + eot)
            settings.append((until, int(kwargs.get("max_gen_toks", self.max_gen_toks))))
            groups.setdefault(settings[-1], []).append(i)
        outputs: list[str] = [""] * len(requests)
        for (until, max_new), indices in groups.items():
            for start in range(0, len(indices), self.scorer.batch_size):
                chunk = indices[start:start + self.scorer.batch_size]
                # The context keeps its last block_size - max_gen_toks tokens, as lm-eval's hf model does, so that
                # the continuation fits the window without the context sliding under it.
                keep = max(1, block - max_new)
                prompts = [(tokenizer.encode(requests[i].args[0]) if requests[i].args[0]
                            else [self.scorer.prefix_id])[-keep:] for i in chunk]
                rows = generate_batch(self.run.graphdef, self.run.params, prompts, block_size=block,
                                      max_new_tokens=max_new, temperature=0.0, stop_strings=list(until),
                                      tokenizer=tokenizer, vocab_size=tokenizer.vocab_size)
                for i, row in zip(chunk, rows):
                    outputs[i] = cut_at_stop(tokenizer.decode(row.tolist()), until)
                    self.cache_hook.add_partial("generate_until", (requests[i].args[0], requests[i].args[1]),
                                                outputs[i])
        return outputs

def main() -> int:
    """lm_eval's command line, with this module (and so the "gptjax" model) loaded; a task name it does not know
    (or a gptjax error loading the run) is one line and exit 2, like every gptjax command's bad input."""
    from lm_eval.__main__ import cli_evaluate

    offline = not hub_reachable()
    if offline:  # a hub task then fails at once from the local cache, not after a minute of retries
        import datasets
        import huggingface_hub

        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
        huggingface_hub.constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True

    def work() -> None:
        try:
            cli_evaluate()
        except ValueError as e:
            if not str(e).startswith("Tasks not found"):
                raise
            raise GptjaxError(f"{e}; `gptjax lm-eval ls tasks` lists the tasks lm-eval knows") from None
        except ConnectionError as e:  # datasets' own, raised for a hub dataset it cannot fetch or find cached
            where = "the Hugging Face hub cannot be reached" if offline else "it could not be fetched"
            raise GptjaxError(f"a task's dataset is on the Hugging Face hub and {where} ({str(e)[:200]}); connect, "
                              "or score a local copy with python -m gptjax.evaluate --task TASK --data FILE") from None

    return report_errors(work)


if __name__ == "__main__":
    sys.exit(main())
