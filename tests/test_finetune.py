"""Domain fine-tuning: a model pretrained on general text continues on a domain mixture from its checkpoint
(checkpoint.init_from, a fresh optimizer, a lower learning rate); the domain validation loss falls while the general
one is reported beside it."""

import json

import numpy as np

from gptjax.config import load_config
from gptjax.data import prepare_splits, stdlib_corpus
from gptjax.tokenizer import build_tokenizer
from gptjax.trainer import train

MODEL = ["model.num_layers=2", "model.num_heads=2", "model.d_model=64", "model.block_size=64",
         "train.batch_size=16", "train.eval_batches=4", "train.log_every=10", "train.sample_tokens=0",
         "data.tokenizer=byte"]


def legal_text(n_sentences: int, seed: int) -> str:
    """Court-opinion-like prose from templates: a domain far from the general corpus (Python source)."""
    rng = np.random.default_rng(seed)
    parties = ["the plaintiff", "the defendant", "the appellant", "the respondent", "the trustee", "the board"]
    verbs = ["moved to dismiss", "appealed the judgment", "filed a motion for summary judgment",
             "sought an injunction", "breached the contract", "waived the objection"]
    holdings = ["the district court erred", "the claim is barred by the statute of limitations",
                "the evidence was sufficient", "the agency acted within its discretion",
                "the contract was unenforceable", "due process was satisfied"]
    out = []
    for _ in range(n_sentences):
        p, v, h = rng.choice(parties), rng.choice(verbs), rng.choice(holdings)
        out.append(f"In this case {p} {v}. We hold that {h}, and we affirm in part.")
    return "\n".join(out)


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_domain_loss_falls_while_general_is_reported(tmp_path):
    tokenizer = build_tokenizer("byte")
    sources = {"general": stdlib_corpus(max_chars=200_000), "legal": legal_text(3000, seed=0)}
    for name, text in sources.items():
        prepare_splits(text, tokenizer, tmp_path / name, val_fraction=0.1, name=name)
        tokenizer.save(tmp_path / name / "tokenizer")

    base = tmp_path / "base"
    train(load_config(None, MODEL + ["data.source=shards", f"data.shards={tmp_path / 'general'}",
                                     "train.steps=60", "train.eval_every=0", "optim.lr=3e-3"]), base)

    tuned = tmp_path / "tuned"
    mixture = f"{tmp_path / 'general'}:0.2,{tmp_path / 'legal'}:0.8"
    final = train(load_config(None, MODEL + [
        "data.source=shards", f"data.shards={mixture}", "train.steps=40", "train.eval_every=20",
        f"checkpoint.init_from={base}", "optim.lr=1e-3", "optim.warmup_steps=5"]), tuned)

    evals = [r for r in read_metrics(tuned) if "val_loss" in r]
    assert [r["step"] for r in evals] == [0, 20, 40]
    assert all("val_loss_general" in r and "val_loss_legal" in r for r in evals)
    start, end = evals[0], evals[-1]
    # From the pretrained weights: general text is already modelled, the domain is not; fine-tuning closes most
    # of that gap, and the general loss is there to watch for forgetting.
    assert start["val_loss_general"] < start["val_loss_legal"]
    assert end["val_loss_legal"] < start["val_loss_legal"] - 0.5
    assert np.isfinite(end["val_loss_general"]) and final["val_loss_legal"] == end["val_loss_legal"]
