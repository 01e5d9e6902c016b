"""Evaluation tasks: each public file format turned into scoring requests, formatted as lm-evaluation-harness does
so gptjax's scores and lm-eval's agree on the same model.

    task = load_task("hellaswag", "eval/hellaswag_val.jsonl", shots=0, limit=100)
    task.examples[0].pairs  # [(context, continuation), ...] one per choice; .gold is the right one

Kinds of task:
- multiple_choice: one context, one continuation per choice (" " + choice text); acc and acc_norm.
- partial: winogrande's partial evaluation; each option is put into the context before the blank and the same
  continuation (the rest of the sentence) is scored; acc only, since the scored text is the same for every option.
- loglikelihood: one (context, continuation) per example (lambada's last word); acc is whether greedy decoding
  reproduces the continuation, plus its log-likelihood.

A custom task is a jsonl file of {"question": str, "choices": [str, ...], "answer": index or choice text}: a team
can evaluate its own domain questions with the same scorer.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import re
from pathlib import Path
from typing import Iterator

from gptjax.errors import GptjaxError

TASKS = ("hellaswag", "winogrande", "mmlu", "lambada", "custom")
FEWSHOT_DELIMITER = "\n\n"  # between exemplars, and between the last exemplar and the scored item (lm-eval's)
MMLU_LETTERS = ("A", "B", "C", "D")
# lm-eval samples few-shot exemplars with random.Random(1234); the exemplars of item i are drawn with seed
# (FEWSHOT_SEED, i), so they do not depend on --limit or on which other items are scored.
FEWSHOT_SEED = 1234


class TaskError(GptjaxError, ValueError):
    """An evaluation file that cannot be read: the message names the file, line and field."""


@dataclasses.dataclass(frozen=True)
class Example:
    pairs: list[tuple[str, str]]  # (context, continuation) per choice, or a single pair for a loglikelihood task
    gold: int  # the index of the right pair
    norm_lengths: list[int]  # acc_norm divides each choice's log-likelihood by this (the choice's characters)
    group: str = ""  # mmlu subject: results are also reported per group


@dataclasses.dataclass
class Task:
    name: str
    kind: str  # multiple_choice | partial | loglikelihood
    data: str  # the file or directory it was read from
    shots: int
    examples: list[Example]
    num_available: int  # examples in the data before --limit


# ----------------------------------------------------------------------------------------------------------------
# Reading files with errors that point at the line


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TaskError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TaskError(f"cannot read {path}: {e}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno}); each line must be one "
                            "JSON object") from None
        if not isinstance(record, dict):
            raise TaskError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def _field(record: dict, name: str, kind, path: Path, line: int):
    if name not in record:
        raise TaskError(f"{path}:{line}: missing field {name!r} (fields present: {', '.join(sorted(record)) or 'none'})")
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise TaskError(f"{path}:{line}: field {name!r} must be a {want}, got {type(value).__name__} {value!r:.60}")
    return value


def _string_list(record: dict, name: str, path: Path, line: int, count: int | None = None) -> list[str]:
    value = _field(record, name, list, path, line)
    if not value or not all(isinstance(v, str) for v in value):
        raise TaskError(f"{path}:{line}: field {name!r} must be a non-empty list of strings")
    if count is not None and len(value) != count:
        raise TaskError(f"{path}:{line}: field {name!r} has {len(value)} entries, expected {count}")
    return value


def _fewshot_picks(index: int, pool_size: int, shots: int) -> list[int]:
    """`shots` distinct indices of the pool other than `index` (lm-eval's trick: draw one extra, drop the item)."""
    rng = random.Random(FEWSHOT_SEED * 1_000_003 + index)
    picks = [j for j in rng.sample(range(pool_size), min(shots + 1, pool_size)) if j != index]
    return picks[:shots]


def _check_shots(shots: int, pool: int, where: str) -> None:
    if shots < 0:
        raise TaskError(f"shots={shots} must be >= 0")
    if shots >= pool:
        raise TaskError(f"{shots} shots need at least {shots + 1} examples in {where} (the scored item is never its "
                        f"own exemplar), but it has {pool}; lower --shots")


def _prefix(exemplars: list[str], header: str = "") -> str:
    return header + "".join(e + FEWSHOT_DELIMITER for e in exemplars)


def _limited(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, limit)


def _multiple_choice(name: str, kind: str, path: Path, docs: list[tuple[list[str], list[str], int]], shots: int,
                     limit: int | None, normalize_by: str = "continuation") -> Task:
    """A Task from docs [(one context per choice, one continuation per choice, gold index)]: each item scored as
    (exemplars + context, " " + continuation), the exemplars being other items' gold context and continuation.
    normalize_by: which text's length acc_norm divides by (the part that differs between choices)."""
    if not docs:
        raise TaskError(f"{path} holds no examples")
    _check_shots(shots, len(docs), str(path))
    examples = []
    for i in range(_limited(len(docs), limit)):
        contexts, continuations, gold = docs[i]
        picks = _fewshot_picks(i, len(docs), shots) if shots else []
        prefix = _prefix([f"{docs[j][0][docs[j][2]]} {docs[j][1][docs[j][2]]}" for j in picks])
        lengths = [len(t) for t in (continuations if normalize_by == "continuation" else contexts)]
        examples.append(Example([(prefix + c, " " + k) for c, k in zip(contexts, continuations)], gold, lengths))
    return Task(name, kind, str(path), shots, examples, len(docs))


# ----------------------------------------------------------------------------------------------------------------
# HellaSwag: rowanz jsonl (ctx_a, ctx_b, activity_label, endings, label)


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's cleanup: WikiHow's ' [title]' markers become sentence ends, other [bracketed] artifacts go."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def load_hellaswag(path: Path, shots: int = 0, limit: int | None = None) -> Task:
    docs = []
    for line, record in _read_jsonl(path):
        ctx_a = _field(record, "ctx_a", str, path, line)
        ctx_b = _field(record, "ctx_b", str, path, line)
        label = _field(record, "activity_label", str, path, line)
        endings = _string_list(record, "endings", path, line)
        gold = record.get("label")
        gold = int(gold) if isinstance(gold, str) and gold.strip().isdigit() else gold
        if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(endings):
            raise TaskError(f"{path}:{line}: field 'label' must be an index into the {len(endings)} endings, got "
                            f"{record.get('label')!r}")
        query = hellaswag_preprocess(label + ": " + ctx_a + " " + ctx_b.capitalize())
        docs.append(([query] * len(endings), [hellaswag_preprocess(e) for e in endings], gold))
    return _multiple_choice("hellaswag", "multiple_choice", path, docs, shots, limit)


# ----------------------------------------------------------------------------------------------------------------
# WinoGrande: dev.jsonl (sentence with "_", option1, option2, answer "1"/"2"), optionally labels in dev-labels.lst


def load_winogrande(path: Path, shots: int = 0, limit: int | None = None) -> Task:
    labels_file = path.with_name(path.stem + "-labels.lst")
    labels = labels_file.read_text().split() if labels_file.exists() else None
    docs = []
    for n, (line, record) in enumerate(_read_jsonl(path)):
        sentence = _field(record, "sentence", str, path, line)
        options = [_field(record, "option1", str, path, line), _field(record, "option2", str, path, line)]
        if sentence.count("_") != 1:
            raise TaskError(f"{path}:{line}: field 'sentence' must hold exactly one '_' (the blank), found "
                            f"{sentence.count('_')}")
        answer = record.get("answer")
        if answer is None and labels is not None:
            answer = labels[n] if n < len(labels) else None
        if str(answer) not in ("1", "2"):
            raise TaskError(f"{path}:{line}: field 'answer' must be '1' or '2' (or given in {labels_file.name}), got "
                            f"{answer!r}")
        if labels is not None and n < len(labels) and labels[n] != str(answer):
            raise TaskError(f"{path}:{line}: answer {answer!r} disagrees with line {n + 1} of {labels_file} "
                            f"({labels[n]!r}); fix one of them")
        blank = sentence.index("_")
        # lm-eval's partial evaluation: the context ends with the option, the scored continuation is the rest.
        contexts = [sentence[:blank] + option for option in options]
        rest = sentence[blank + 1:].strip()
        docs.append((contexts, [rest, rest], int(answer) - 1))
    return _multiple_choice("winogrande", "partial", path, docs, shots, limit, normalize_by="context")


# ----------------------------------------------------------------------------------------------------------------
# MMLU: hendrycks CSVs (question, A, B, C, D, answer letter; no header), k-shot exemplars from dev/


def _read_mmlu_csv(path: Path) -> list[tuple[str, list[str], int]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise TaskError(f"cannot read {path}: {e.strerror or e}") from None
    docs = []
    for line, row in enumerate(rows, 1):
        if len(row) != 6:
            raise TaskError(f"{path}:{line}: expected 6 columns (question,A,B,C,D,answer), got {len(row)}")
        answer = row[5].strip()
        if answer not in MMLU_LETTERS:
            raise TaskError(f"{path}:{line}: answer column must be one of A, B, C, D, got {row[5]!r}")
        docs.append((row[0], row[1:5], MMLU_LETTERS.index(answer)))
    return docs


def _mmlu_text(question: str, choices: list[str]) -> str:
    # lm-eval's mmlu template: "{{question.strip()}}\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer:"
    return question.strip() + "".join(f"\n{letter}. {c}" for letter, c in zip(MMLU_LETTERS, choices)) + "\nAnswer:"


def _mmlu_files(path: Path) -> list[Path]:
    """The CSVs to score: one file, a split directory (mmlu/test), or the mmlu directory (its test split)."""
    if path.is_file():
        return [path]
    if (path / "test").is_dir():
        path = path / "test"
    files = sorted(path.glob("*.csv")) if path.is_dir() else []
    if not files:
        raise TaskError(f"{path} holds no MMLU CSV files; pass the mmlu directory (with test/ and dev/), a split "
                        "directory such as mmlu/val, or one <subject>_<split>.csv file")
    return files


def load_mmlu(path: Path, shots: int = 0, limit: int | None = None) -> Task:
    """shots exemplars are the first `shots` rows of dev/<subject>_dev.csv (lm-eval's first_n); `limit` applies per
    subject, as lm-eval's --limit applies per subtask."""
    if not path.exists():
        raise TaskError(f"{path} does not exist")
    if shots < 0:
        raise TaskError(f"shots={shots} must be >= 0")
    examples, available = [], 0
    for file in _mmlu_files(path):
        subject, sep, _ = file.stem.rpartition("_")
        if not sep:
            raise TaskError(f"{file}: MMLU files are named <subject>_<split>.csv")
        header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        exemplars = []
        if shots:
            dev_file = file.parent.parent / "dev" / f"{subject}_dev.csv"
            if not dev_file.exists():
                raise TaskError(f"{shots}-shot MMLU needs {dev_file} (the dev split's exemplars); pass --shots 0 or "
                                "keep the mmlu directory layout (dev/, test/, val/)")
            dev = _read_mmlu_csv(dev_file)
            if shots > len(dev):
                raise TaskError(f"{dev_file} has {len(dev)} exemplars, fewer than --shots {shots}")
            exemplars = [f"{_mmlu_text(q, c)} {MMLU_LETTERS[a]}" for q, c, a in dev[:shots]]
        prefix = _prefix(exemplars, header)
        docs = _read_mmlu_csv(file)
        available += len(docs)
        for question, choices, gold in docs[:_limited(len(docs), limit)]:
            context = prefix + _mmlu_text(question, choices)
            examples.append(Example([(context, " " + letter) for letter in MMLU_LETTERS], gold, [1, 1, 1, 1],
                                    group=subject))
    if not examples:
        raise TaskError(f"{path} holds no MMLU questions")
    return Task("mmlu", "multiple_choice", str(path), shots, examples, available)


# ----------------------------------------------------------------------------------------------------------------
# LAMBADA: {"text"} per line; the last word is the target


def load_lambada(path: Path, shots: int = 0, limit: int | None = None) -> Task:
    if shots:
        raise TaskError("lambada is zero-shot only (its texts are whole passages); drop --shots")
    examples, available = [], 0
    for line, record in _read_jsonl(path):
        text = _field(record, "text", str, path, line)
        if " " not in text.strip():
            raise TaskError(f"{path}:{line}: field 'text' needs a context and a last word separated by a space")
        available += 1
        if limit is None or len(examples) < limit:
            # lm-eval's lambada_openai: context = all words but the last, continuation = " " + last word.
            context, last = text.rsplit(" ", 1)
            examples.append(Example([(context, " " + last)], 0, [len(last)]))
    if not examples:
        raise TaskError(f"{path} holds no examples")
    return Task("lambada", "loglikelihood", str(path), 0, examples, available)


# ----------------------------------------------------------------------------------------------------------------
# Custom: {"question", "choices": [...], "answer": index or choice text}


def custom_text(question: str) -> str:
    """How a custom question is put to the model; the continuation is " " + the choice."""
    return f"Question: {question}\nAnswer:"


def load_custom(path: Path, shots: int = 0, limit: int | None = None, chat=None) -> Task:
    """Exemplars (shots > 0) are other questions of the same file with their right answer, drawn per item.

    chat: for a model fine-tuned on conversations, a function rendering messages with its chat template (the
    assistant's turn opened): each question is then the user's message, the exemplars earlier turns, and the
    choices continue the assistant's reply after "Answer:"."""
    if chat is not None:
        return _chat_custom(path, shots, limit, chat)
    docs = [([custom_text(q)] * len(choices), choices, answer) for q, choices, answer in _custom_items(path)]
    return _multiple_choice("custom", "multiple_choice", path, docs, shots, limit)


def _custom_items(path: Path) -> list[tuple[str, list[str], int]]:
    items = []
    for line, record in _read_jsonl(path):
        question = _field(record, "question", str, path, line)
        choices = _string_list(record, "choices", path, line)
        if len(choices) < 2:
            raise TaskError(f"{path}:{line}: field 'choices' needs at least 2 choices, got {len(choices)}")
        answer = _field(record, "answer", (int, str), path, line)
        if isinstance(answer, str):
            if answer not in choices:
                raise TaskError(f"{path}:{line}: field 'answer' {answer!r} is neither an index nor one of the "
                                f"choices {choices}")
            answer = choices.index(answer)
        elif not 0 <= answer < len(choices):
            raise TaskError(f"{path}:{line}: field 'answer' {answer} is not an index into the {len(choices)} choices")
        items.append((question, choices, answer))
    return items


def _chat_custom(path: Path, shots: int, limit: int | None, chat) -> Task:
    items = _custom_items(path)
    if not items:
        raise TaskError(f"{path} holds no examples")
    _check_shots(shots, len(items), str(path))
    examples = []
    for i in range(_limited(len(items), limit)):
        question, choices, gold = items[i]
        turns = []
        for j in _fewshot_picks(i, len(items), shots) if shots else []:
            turns += [{"role": "user", "content": items[j][0]},
                      {"role": "assistant", "content": f"Answer: {items[j][1][items[j][2]]}"}]
        context = chat(turns + [{"role": "user", "content": question}]) + "Answer:"
        examples.append(Example([(context, " " + c) for c in choices], gold, [len(c) for c in choices]))
    return Task("custom", "multiple_choice", str(path), shots, examples, len(items))


_LOADERS = {"hellaswag": load_hellaswag, "winogrande": load_winogrande, "mmlu": load_mmlu,
            "lambada": load_lambada, "custom": load_custom}


def load_task(name: str, data, shots: int = 0, limit: int | None = None, *, chat=None) -> Task:
    """chat: see load_custom (the other tasks are text, scored as lm-eval scores them, and ignore it)."""
    if name not in _LOADERS:
        raise TaskError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    if data is None:
        raise TaskError(f"task {name} needs its data file: pass --data PATH (see shared/data/eval)")
    if limit is not None and limit < 1:
        raise TaskError(f"limit={limit} must be positive")
    path = Path(data).expanduser()
    if not path.exists():
        raise TaskError(f"{path} does not exist")
    if name == "custom":
        return load_custom(path, shots, limit, chat)
    return _LOADERS[name](path, shots, limit)
