"""PubMedQA (PQA-L: question, abstract contexts, long answer, yes/no/maybe) as post-training data, split by PMID.

    python -m gptjax.data.pubmedqa --source ori_pqal.json --out runs/pubmedqa/data

writes, with no PMID in more than one split (`held_out` is the share of PMIDs held out, chosen by a hash of the PMID
so the split never depends on order or on the other records):

    pretrain.jsonl             {"text"}: the training PMIDs' abstracts (contexts and conclusion), for a base model
    sft_train.jsonl, sft_val.jsonl     {"messages"}: the question with its context -> "Answer: <decision>. <reasoning>"
    dpo_train.jsonl, dpo_val.jsonl     {"prompt", "chosen", "rejected"}: chosen the right decision with its reasoning,
                                       rejected a wrong decision (each of the two others) with the same reasoning
    heldout_mc.jsonl           {"question", "choices": ["yes", "no", "maybe"], "answer"}: gptjax.evaluate's custom task
    split.json                 the PMIDs of each split, and the counts

sft_val and dpo_val are a part of the training PMIDs (for validation losses during training); heldout_mc is the
held-out PMIDs alone, never trained on, not even in pretraining. Contexts are cut to --context_words words so that
an example fits a CPU-sized block.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from gptjax.command import ArgumentParser
from gptjax.data import DataError
from gptjax.errors import report_errors
from gptjax.rundir import check_writable

DECISIONS = ("yes", "no", "maybe")


def _share(pmid: str, salt: str) -> float:
    return int(hashlib.sha256(f"{salt}:{pmid}".encode()).hexdigest()[:8], 16) / 16 ** 8


def read_pqal(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"cannot read {path} as PubMedQA's ori_pqal.json ({getattr(e, 'strerror', None) or e})") \
            from None
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path} is not PubMedQA's ori_pqal.json (a JSON object of PMID -> record)")
    usable = {}
    for pmid, r in data.items():
        if (isinstance(r, dict) and isinstance(r.get("QUESTION"), str) and isinstance(r.get("CONTEXTS"), list)
                and isinstance(r.get("LONG_ANSWER"), str) and r.get("final_decision") in DECISIONS):
            usable[str(pmid)] = r
    if not usable:
        raise DataError(f"{path} holds no PubMedQA record (QUESTION, CONTEXTS, LONG_ANSWER, final_decision)")
    return usable


def question_text(record: dict, context_words: int) -> str:
    words = " ".join(c for c in record["CONTEXTS"] if isinstance(c, str)).split()
    context = " ".join(words[:context_words]) + (" ..." if len(words) > context_words else "")
    return f"{record['QUESTION']}\nContext: {context}"


def reply(decision: str, record: dict) -> str:
    return f"Answer: {decision}. {record['LONG_ANSWER']}"


def build(source: Path, out: Path, *, held_out: float = 0.2, val: float = 0.1, context_words: int = 120,
          limit: int | None = None) -> dict:
    records = read_pqal(source)  # before anything is written
    check_writable(out, "--out", "choose a writable folder")
    pmids = sorted(records)[:limit]
    test = [p for p in pmids if _share(p, "heldout") < held_out]
    train = [p for p in pmids if p not in set(test)]
    val_ids = {p for p in train if _share(p, "val") < val}
    files: dict[str, list] = {name: [] for name in ("pretrain", "sft_train", "sft_val", "dpo_train", "dpo_val",
                                                    "heldout_mc")}
    for pmid in train:
        r = records[pmid]
        files["pretrain"].append({"text": "\n\n".join([*r["CONTEXTS"], r["LONG_ANSWER"]])})
        question, right = question_text(r, context_words), r["final_decision"]
        split = "val" if pmid in val_ids else "train"
        files[f"sft_{split}"].append({"messages": [{"role": "user", "content": question},
                                                   {"role": "assistant", "content": reply(right, r)}]})
        for wrong in (d for d in DECISIONS if d != right):
            files[f"dpo_{split}"].append({"prompt": question, "chosen": reply(right, r),
                                          "rejected": reply(wrong, r)})
    for pmid in test:
        r = records[pmid]
        files["heldout_mc"].append({"question": question_text(r, context_words), "choices": list(DECISIONS),
                                    "answer": r["final_decision"], "pmid": pmid})
    for name, rows in files.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                                           encoding="utf-8")
    summary = {"source": str(source), "held_out": held_out, "val": val, "context_words": context_words,
               "counts": {name: len(rows) for name, rows in files.items()},
               "pmids": {"train": [p for p in train if p not in val_ids], "val": sorted(val_ids), "held_out": test}}
    (out / "split.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gptjax.data.pubmedqa", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="PubMedQA's ori_pqal.json")
    parser.add_argument("--out", required=True, help="the folder to write the files into")
    parser.add_argument("--held_out", type=float, default=0.2, help="share of PMIDs held out for evaluation")
    parser.add_argument("--val", type=float, default=0.1, help="share of the training PMIDs for validation losses")
    parser.add_argument("--context_words", type=int, default=120, help="words of each abstract's context kept")
    parser.add_argument("--limit", type=int, help="use only the first N PMIDs (in sorted order)")
    args = parser.parse_args(argv)
    if not 0 < args.held_out < 1 or not 0 <= args.val < 1 or args.context_words < 1 or (args.limit or 1) < 1:
        parser.error("--held_out must be in (0, 1), --val in [0, 1), --context_words and --limit positive")

    def work() -> None:
        out = Path(args.out)
        summary = build(Path(args.source), out, held_out=args.held_out, val=args.val,
                        context_words=args.context_words, limit=args.limit)
        counts = summary["counts"]
        print(f"PubMedQA -> {out}: {len(summary['pmids']['train']) + len(summary['pmids']['val'])} training PMIDs "
              f"({counts['sft_train']} SFT + {counts['sft_val']} validation conversations, {counts['dpo_train']} + "
              f"{counts['dpo_val']} preference pairs, {counts['pretrain']} abstracts to pretrain on); "
              f"{len(summary['pmids']['held_out'])} held-out PMIDs in heldout_mc.jsonl")

    return report_errors(work)


if __name__ == "__main__":
    sys.exit(main())
