"""Conversations for post-training: the records users have (TRL's formats), a chat template, and token ids with
the positions the loss is on.

    template = ChatTemplate.choose(cfg.data.chat_template, tokenizer)     # the model's own, a file, or DEFAULT
    tokenizer = template.extend(tokenizer)        # its special tokens added (<|im_start|>, <|im_end|>)
    ids, in_loss = template.encode(tokenizer, messages)    # in_loss: the assistant's tokens

Records (one JSON object per line of a .jsonl, a `datasets` directory, or a hub dataset):
    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}, ...]}
    {"prompt": "..." | [messages], "completion": "..." | [messages]}          (a string is one user / assistant turn)
    {"prompt": ..., "chosen": "..." | [messages], "rejected": "..." | [messages]}     (preferences, for DPO)

A template is Jinja, rendered as Hugging Face's apply_chat_template renders it (same environment, same globals),
so that an exported model's tokenizer_config.json gives transformers exactly the ids gptjax trained on. Which text
is the assistant's comes from the template's {% generation %} blocks (Hugging Face's convention for assistant
masks); a template without them (most hub models') is rendered turn by turn instead, and the text an assistant turn
adds to the conversation is the assistant's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Iterator

import numpy as np

from gptjax.data import DataError
from gptjax.tokenizer import BPETokenizer, Tokenizer, hub_reachable

# ChatML (as Qwen and many open models use it), with the assistant's text and its end marker in {% generation %}:
# the model learns to end its turn, and sampling stops at <|im_end|>.
DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>' + '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Special tokens a template written for gptjax uses: <|name|> (ChatML, Llama 3 and most open models' convention)
SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_.-]+\|>")

# Private-use code points that mark where a {% generation %} block's text begins and ends while rendering
_OPEN, _CLOSE = "\ue000", "\ue001"


class RecordError(DataError):
    """A record that cannot be used: the message is its reason, counted in the data report (the record is
    skipped; the run goes on)."""


def _environment():
    """Hugging Face's chat-template environment: sandboxed, trim_blocks and lstrip_blocks, loop controls, the
    raise_exception / strftime_now globals and a tojson that does not escape HTML, plus {% generation %}."""
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

        def _mark(self, caller):
            return _OPEN + caller() + _CLOSE

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
    return env


class ChatTemplate:
    def __init__(self, source: str, origin: str):
        import jinja2

        self.source, self.origin = source, origin
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise DataError(f"the chat template ({origin}) is not valid Jinja: {e.message} (line {e.lineno}); fix "
                            "it, or leave data.chat_template empty for the default") from None
        self.marks_generation = "generation" in re.findall(r"{%-?\s*(\w+)", source)

    @classmethod
    def choose(cls, setting: str, tokenizer: Tokenizer) -> "ChatTemplate":
        """data.chat_template: '' (the tokenizer's own, as an imported model brings it; else DEFAULT_TEMPLATE),
        'default', a file holding a template, or a template itself."""
        if not setting:
            if tokenizer.chat_template:
                return cls(tokenizer.chat_template, f"the {tokenizer.name} tokenizer's own")
            return cls(DEFAULT_TEMPLATE, "gptjax's default, ChatML")
        if setting == "default":
            return cls(DEFAULT_TEMPLATE, "gptjax's default, ChatML")
        if "{{" in setting or "{%" in setting:
            return cls(setting, "data.chat_template")
        path = Path(setting).expanduser()
        try:
            return cls(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"data.chat_template={setting}: cannot read it ({getattr(e, 'strerror', None) or e}); "
                            "give a Jinja file, a template, 'default', or leave it empty") from None

    # -- tokens ---------------------------------------------------------------------------------------------------

    def special_tokens(self) -> list[str]:
        """The <|...|> tokens the template writes, in order of first use."""
        return list(dict.fromkeys(SPECIAL_TOKEN.findall(self.source)))

    def extend(self, tokenizer: Tokenizer) -> Tokenizer:
        """The tokenizer with this template's special tokens (those it lacks) and the template itself. A char or
        byte tokenizer cannot hold a multi-character token: DataError when the template needs one."""
        missing = [t for t in self.special_tokens() if tokenizer.token_id(t) is None]
        if missing and not isinstance(tokenizer, BPETokenizer):
            raise DataError(f"the chat template ({self.origin}) uses the special tokens {', '.join(missing)}, which "
                            f"a {tokenizer.kind} tokenizer cannot hold; use a BPE tokenizer (data.tokenizer=gpt2, a "
                            "tokenizer.json, or checkpoint.init_from a model that has one), or a template without "
                            "them")
        if missing:
            tokenizer = tokenizer.with_special_tokens(missing)
        else:  # a copy, so the caller's tokenizer keeps its own template
            tokenizer = _copy(tokenizer)
        tokenizer.chat_template = self.source
        return tokenizer

    def end_of_turn(self, tokenizer: Tokenizer) -> int | None:
        """The token that ends an assistant turn (<|im_end|> for ChatML), where sampling a reply stops: the
        template's text after the assistant's content, when that is one token."""
        text, spans = self.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}])
        reply = "".join(text[a:b] for a, b in spans)
        after = reply[reply.find("ok") + 2:].strip() if "ok" in reply else ""
        ids = tokenizer.encode(after) if after else []
        return int(ids[0]) if len(ids) == 1 else tokenizer.eot_id

    # -- rendering ------------------------------------------------------------------------------------------------

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> tuple[str, list[tuple[int, int]]]:
        """The conversation as text, and the [start, end) character spans of the assistant's text in it."""
        if self.marks_generation:
            return self._render_marked(messages, add_generation_prompt)
        text = self._render(messages, add_generation_prompt)
        spans = []
        for i, message in enumerate(messages):  # what each assistant turn adds to the text before it
            if message.get("role") != "assistant":
                continue
            before = self._render(messages[:i], add_generation_prompt=True)
            upto = self._render(messages[:i + 1])
            if not (text.startswith(upto) and upto.startswith(before)):
                raise DataError(f"the chat template ({self.origin}) does not render a conversation as its turns one "
                                "after another, so the assistant's text cannot be found in it; add {% generation %}"
                                " ... {% endgeneration %} around the assistant's content (Hugging Face's marking)")
            spans.append((len(before), len(upto)))
        return text, spans

    def _render(self, messages, add_generation_prompt=False) -> str:
        return self._render_marked(messages, add_generation_prompt)[0]

    def _render_marked(self, messages, add_generation_prompt):
        import jinja2

        try:
            marked = self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                           bos_token="", eos_token="")
        except jinja2.TemplateError as e:
            raise RecordError(f"the chat template refused it ({e.message if hasattr(e, 'message') else e})") from None
        text, spans, pos = [], [], 0
        for piece in re.split(f"([{_OPEN}{_CLOSE}])", marked):
            if piece == _OPEN:
                start = pos
            elif piece == _CLOSE:
                spans.append((start, pos))
            else:
                text.append(piece)
                pos += len(piece)
        return "".join(text), spans

    def encode(self, tokenizer: Tokenizer, messages: list[dict], *, after: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, in_loss): the rendered conversation's ids (exactly tokenizer.encode(text)), and which of them are
        the assistant's (a token starting inside an assistant span at or after character `after`)."""
        text, spans = self.render(messages)
        if any(c in text for c in (_OPEN, _CLOSE)):
            raise RecordError("it holds the private-use characters U+E000/U+E001, which mark assistant text")
        ids, starts = tokenizer.encode_with_offsets(text)
        in_loss = np.zeros(len(ids), dtype=bool)
        for a, b in spans:
            if b > after:
                in_loss |= (starts >= max(a, after)) & (starts < b)
        return ids, in_loss

    def fingerprint(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


def _copy(tokenizer: Tokenizer) -> Tokenizer:
    return copy.copy(tokenizer)


# ----------------------------------------------------------------------------------------------------------------
# Records


def as_messages(value, what: str, default_role: str) -> list[dict]:
    """A string (one turn of default_role) or a list of {"role": str, "content": str} -> a list of messages."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if not isinstance(value, list) or not value:
        raise RecordError(f"{what} is neither a string nor a non-empty list of messages")
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise RecordError(f"{what} holds a message that is not {{\"role\": str, \"content\": str}}")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def sft_messages(record) -> list[dict]:
    """The conversation of an SFT record (messages, or prompt + completion); RecordError when there is none."""
    if not isinstance(record, dict):
        raise RecordError("not a JSON object")
    if "messages" in record:
        if not isinstance(record["messages"], list):
            raise RecordError("\"messages\" is not a list of messages")
        messages = as_messages(record["messages"], "messages", "user")
    elif "prompt" in record and "completion" in record:
        messages = as_messages(record["prompt"], "prompt", "user") + \
            as_messages(record["completion"], "completion", "assistant")
    else:
        raise RecordError("neither \"messages\" nor \"prompt\" and \"completion\"")
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise RecordError("no assistant turn with text")
    return messages


def preference_messages(record) -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt, chosen, rejected) messages of a preference record; RecordError when it is not one."""
    if not isinstance(record, dict):
        raise RecordError("not a JSON object")
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in record]
    if missing:
        raise RecordError(f"no {' or '.join(repr(k) for k in missing)}")
    prompt = as_messages(record["prompt"], "prompt", "user")
    chosen = as_messages(record["chosen"], "chosen", "assistant")
    rejected = as_messages(record["rejected"], "rejected", "assistant")
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if not any(m["role"] == "assistant" and m["content"].strip() for m in turns):
            raise RecordError(f"{name} has no assistant turn with text")
    if chosen == rejected:
        raise RecordError("chosen and rejected are the same")
    return prompt, chosen, rejected


def read_records(path: str) -> Iterator[object | RecordError]:
    """Every record of data.path: a .jsonl file, a folder of them, a `datasets` folder (save_to_disk), or a hub
    dataset name (its train split). A line that is not JSON is yielded as a RecordError, so it is counted."""
    p = Path(path).expanduser()
    if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "state.json").exists()
                       or (p / "dataset_dict.json").exists()):
        yield from _dataset_rows(_load_from_disk(p))
        return
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.jsonl") if f.is_file())
        if not files:
            raise DataError(f"data.path={path} is a folder with no .jsonl file (nor a `datasets` save_to_disk "
                            "folder); put the records one JSON object per line in .jsonl files")
    elif p.is_file():
        files = [p]
    elif path.startswith(("/", ".", "~")) or p.suffix:
        raise DataError(f"data.path={path} does not exist; give a .jsonl file, a folder of them, a `datasets` "
                        "folder, or a Hugging Face dataset name")
    else:
        yield from _dataset_rows(_load_hub(path))
        return
    for file in files:
        with open(file, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except (UnicodeDecodeError, ValueError):
                    yield RecordError("not valid JSON (or not UTF-8)")


def _dataset_rows(dataset) -> Iterator[dict]:
    for row in dataset:
        yield dict(row)


def _load_from_disk(p: Path):
    import datasets

    try:
        loaded = datasets.load_from_disk(str(p))
    except Exception as e:  # noqa: BLE001  (datasets raises many kinds for a damaged folder)
        raise DataError(f"cannot read the `datasets` folder {p}: {type(e).__name__}: {str(e).splitlines()[0]}") \
            from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise DataError(f"the `datasets` folder {p} has no train split (it has {', '.join(loaded)})")
        loaded = loaded["train"]
    return loaded


def _load_hub(name: str):
    import datasets

    if not hub_reachable():
        raise DataError(f"data.path={name} is not a local file or folder, and the Hugging Face hub (to fetch it as "
                        "a dataset) is unreachable; give a local .jsonl file or folder")
    try:
        return datasets.load_dataset(name, split="train")
    except Exception as e:  # noqa: BLE001
        raise DataError(f"data.path={name}: the hub dataset could not be loaded ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); give a local .jsonl file or folder") from None
