"""Records -> training rows for SFT (packed conversations) and DPO (prompt + chosen, prompt + rejected).

    built = sft_rows(records, template, tokenizer, length=block_size, pack=True)
    built.rows       {column: [N, length]} (gptjax.data.packing's columns)
    built.report     records read, used, skipped (by reason), truncated, rows, tokens in the loss

Every record that is not used is counted under its reason; a record longer than the block is cut at its end
(counted as truncated), and dropped only when nothing of its reply would be left.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
from typing import Iterable, Iterator

import numpy as np

from gptjax.data import DataError
from gptjax.data.chat import ChatTemplate, RecordError, preference_messages, sft_messages
from gptjax.data.packing import empty_rows, fit, pack, place
from gptjax.tokenizer import Tokenizer


@dataclasses.dataclass
class Built:
    rows: dict[str, np.ndarray]
    report: dict


def record_key(record) -> str:
    """A stable hash of a record's content (for splits that do not move when records are added or reordered)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def split_records(records: Iterable, val_fraction: float) -> tuple[list, list]:
    """(train, val): a record is held out when its content hash falls in the first val_fraction of the range."""
    train, val = [], []
    for r in records:
        if isinstance(r, RecordError) or not val_fraction:
            train.append(r)
        elif int(record_key(r)[:8], 16) / 16 ** 8 < val_fraction:
            val.append(r)
        else:
            train.append(r)
    return train, val


class _Counter:
    def __init__(self):
        self.read, self.truncated, self.skipped = 0, 0, collections.Counter()

    def report(self, used: int, rows: dict, length: int, pairs: bool = False) -> dict:
        seg = rows.get("segment_ids", rows.get("chosen_segment_ids"))
        mask = rows.get("loss_mask", rows.get("chosen_loss_mask"))
        count = len(seg) if seg is not None else 0
        filled = int((seg > 0).sum()) if count else 0
        return {"records": self.read, "used": used, "skipped": dict(self.skipped), "truncated": self.truncated,
                "rows": count, "row_length": length, ("pairs" if pairs else "examples"): used,
                "fill": round(filled / (count * length), 4) if count else 0.0,
                "loss_tokens": int(mask.sum()) if count else 0}


def _parsed(records: Iterable, counter: _Counter, parse) -> Iterator:
    """parse(record) of each record that parses; every other one counted under its reason."""
    for record in records:
        counter.read += 1
        try:
            if isinstance(record, RecordError):  # a line the reader could not make a record of
                raise record
            parsed = parse(record)
        except RecordError as e:
            counter.skipped[str(e)] += 1
            continue
        yield parsed


def sft_rows(records: Iterable, template: ChatTemplate, tokenizer: Tokenizer, length: int,
             pack_rows: bool = True) -> Built:
    counter, examples = _Counter(), []
    for ids, in_loss in _parsed(records, counter, lambda r: template.encode(tokenizer, sft_messages(r))):
        ids, in_loss, cut = fit(ids, in_loss, length)
        if cut == "truncated":
            counter.truncated += 1
        elif cut:
            counter.skipped[cut] += 1
            continue
        examples.append((ids, in_loss))
    rows = pack(examples, length, pack=pack_rows)
    return Built(rows, counter.report(len(examples), rows, length))


def preference_rows(records: Iterable, template: ChatTemplate, tokenizer: Tokenizer, length: int) -> Built:
    """Each pair as two rows, prompt + chosen and prompt + rejected (columns chosen_* and rejected_*), with the
    loss mask on the response alone."""
    counter, pairs = _Counter(), []

    def sides(record):
        prompt, chosen, rejected = preference_messages(record)
        prompt_text, _ = template.render(prompt, add_generation_prompt=True)
        encoded = []
        for response in (chosen, rejected):
            text, _ = template.render(prompt + response)
            if not text.startswith(prompt_text):
                raise RecordError("the template renders the prompt differently once a reply follows")
            encoded.append(template.encode(tokenizer, prompt + response, after=len(prompt_text)))
        return encoded

    for encoded in _parsed(records, counter, sides):
        fitted = [fit(ids, in_loss, length) for ids, in_loss in encoded]
        if any(cut not in (None, "truncated") for *_, cut in fitted):
            counter.skipped[next(cut for *_, cut in fitted if cut not in (None, "truncated"))] += 1
            continue
        counter.truncated += any(cut == "truncated" for *_, cut in fitted)
        pairs.append([(ids, in_loss) for ids, in_loss, _ in fitted])
    rows = {}
    for side, index in (("chosen", 0), ("rejected", 1)):
        side_rows = empty_rows(len(pairs), length)
        for row, pair in enumerate(pairs):
            place(side_rows, row, 0, 1, *pair[index])
        rows.update({f"{side}_{k}": v for k, v in side_rows.items()})
    return Built(rows, counter.report(len(pairs), rows, length, pairs=True))


def describe_report(name: str, report: dict) -> str:
    """One line for the terminal."""
    unit = "pairs" if "pairs" in report else "examples"
    skipped = sum(report["skipped"].values())
    reasons = "; ".join(f"{why}: {n}" for why, n in sorted(report["skipped"].items(), key=lambda kv: -kv[1]))
    line = (f"data: {name}: {report['records']:,} records -> {report[unit]:,} {unit} in {report['rows']:,} rows of "
            f"{report['row_length']} tokens ({100 * report['fill']:.0f}% filled, {report['loss_tokens']:,} tokens "
            f"in the loss)")
    if report["truncated"]:
        line += f"; {report['truncated']:,} cut at the block's end"
    if skipped:
        line += f"; {skipped:,} skipped ({reasons})"
    return line


def check_usable(name: str, report: dict, path: str) -> None:
    unit = "pairs" if "pairs" in report else "examples"
    if report["records"] and not report[unit]:
        reasons = "; ".join(f"{why}: {n}" for why, n in report["skipped"].items())
        raise DataError(f"no record of {path} ({name}) could be used ({reasons}); see the formats in "
                        "docs/post_training.md")
    if not report["records"]:
        raise DataError(f"{path} holds no records ({name})")
