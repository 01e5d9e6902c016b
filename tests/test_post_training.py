"""Post-training through the Trainer: SFT on packed conversations from a pretrained run (special tokens added, the
embedding grown), exact resume, changed records refused, DPO against the frozen starting model (its scores kept
with the data), export with the chat template, and `sample --chat`. The objectives are checked on their own: the
SFT loss ignores prompt targets, the DPO loss is the paper's formula."""

import functools
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import REPO
from gptjax.config import load_config
from gptjax.data.chat import ChatTemplate
from gptjax.data.conversations import preference_rows, sft_rows
from gptjax.init_from import grow_vocabulary
from gptjax.model import GPT, ModelConfig
from gptjax.objectives import dpo_loss, sequence_logprobs, sft_loss
from gptjax.run import load_run
from gptjax.state import setup
from gptjax.step import make_eval_step
from gptjax.tokenizer import build_tokenizer, load_tokenizer
from gptjax.trainer import TrainingError, train

MODEL = ["model.num_layers=2", "model.num_heads=2", "model.d_model=64", "model.block_size=64",
         "train.batch_size=8", "train.eval_batches=2", "train.log_every=5", "train.sample_tokens=0",
         "optim.warmup_steps=2", "train.eval_every=0"]


def questions(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(question, right answer, wrong answer) about parity: learnable by a tiny model."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 100))
        right, wrong = ("yes", "no") if k % 2 == 0 else ("no", "yes")
        out.append((f"Is {k} even?", f"The answer is {right}.", f"The answer is {wrong}."))
    return out


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_bpe):
    root = tmp_path_factory.mktemp("post")
    sft = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
           for q, a, _ in questions(160, 0)]
    pref = [{"prompt": q, "chosen": a, "rejected": b} for q, a, b in questions(96, 1)]
    return dict(root=root, bpe=tiny_bpe,
                sft=write_jsonl(root / "sft.jsonl", sft), sft_val=write_jsonl(root / "sft_val.jsonl", sft[:16]),
                pref=write_jsonl(root / "pref.jsonl", pref))


@pytest.fixture(scope="module")
def pretrained(data):
    run = data["root"] / "base"
    train(load_config(None, MODEL + ["train.steps=10", f"data.tokenizer={data['bpe']}", "data.max_chars=100000"]),
          run)
    return run


def sft_config(data, base, *extra):
    return load_config(None, MODEL + ["data.source=chat", f"data.path={data['sft']}",
                                      f"data.val_path={data['sft_val']}", f"checkpoint.init_from={base}",
                                      "optim.lr=3e-3", *extra])


@pytest.fixture(scope="module")
def sft_run(data, pretrained):
    run = data["root"] / "sft"
    train(sft_config(data, pretrained, "train.steps=30", "train.eval_every=15", "optim.decay_steps=30"), run)
    return run


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------------------------
# The objectives on their own


def tiny_rows(tok, template):
    records = [{"prompt": q, "completion": a} for q, a, _ in questions(6, 2)]
    return sft_rows(records, template, tok, 64).rows


@pytest.fixture(scope="module")
def chat_setup(tiny_bpe):
    base = build_tokenizer(str(tiny_bpe))
    template = ChatTemplate.choose("", base)
    tok = template.extend(base)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=64, num_layers=2, num_heads=2, d_model=32),
                rngs=nnx.Rngs(0))
    return tok, template, model


def test_the_sft_loss_ignores_prompt_targets(chat_setup):
    tok, template, model = chat_setup
    rows = {k: jnp.asarray(v) for k, v in tiny_rows(tok, template).items()}
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(params, rows):
        return sft_loss(nnx.merge(graphdef, params), rows, deterministic=True, rngs=None)[0]

    base_loss, base_grads = jax.value_and_grad(loss)(params, rows)
    mask = np.asarray(rows["loss_mask"])
    prompt = np.argwhere(~mask & (np.asarray(rows["segment_ids"]) > 0))[3]
    changed = dict(rows, targets=rows["targets"].at[tuple(prompt)].set(7))
    loss2, grads2 = jax.value_and_grad(loss)(params, changed)
    assert float(loss2) == float(base_loss)
    jax.tree.map(np.testing.assert_array_equal, grads2, base_grads)
    # the guard: an assistant target does count
    reply = tuple(np.argwhere(mask)[0])
    assert float(loss(params, dict(rows, targets=rows["targets"].at[reply].set(7)))) != float(base_loss)


def test_the_dpo_loss_is_the_papers_formula(chat_setup):
    tok, template, model = chat_setup
    records = [{"prompt": q, "chosen": a, "rejected": b} for q, a, b in questions(4, 3)]
    rows = {k: jnp.asarray(v) for k, v in preference_rows(records, template, tok, 64).rows.items()}
    rng = np.random.default_rng(0)
    ref_c, ref_r = (jnp.asarray(rng.normal(-20, 3, 4), jnp.float32) for _ in range(2))
    batch = dict(rows, ref_chosen=ref_c, ref_rejected=ref_r)
    beta = 0.3
    loss, m = dpo_loss(model, batch, beta=beta, deterministic=True, rngs=None)

    # numpy, from the logits: log-softmax, the response tokens' log-probabilities summed, then the formula
    def logp(side):
        logits = np.asarray(model(rows[f"{side}_tokens"], positions=rows[f"{side}_positions"],
                                  segment_ids=rows[f"{side}_segment_ids"]), np.float64)
        logits -= logits.max(-1, keepdims=True)
        logsm = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        picked = np.take_along_axis(logsm, np.asarray(rows[f"{side}_targets"])[..., None], -1)[..., 0]
        return (picked * np.asarray(rows[f"{side}_loss_mask"])).sum(-1)

    z = beta * ((logp("chosen") - np.asarray(ref_c)) - (logp("rejected") - np.asarray(ref_r)))
    expected = np.mean(np.log1p(np.exp(-z)))  # -log(sigmoid(z))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(m["reward_margin"]), z.mean(), rtol=1e-5, atol=1e-5)
    assert float(m["reward_accuracy"]) == np.mean(z > 0)
    # the policy equal to the reference: every reward is 0 and the loss log 2
    same = dict(batch, ref_chosen=sequence_logprobs(model, {k[7:]: v for k, v in rows.items() if k[:7] == "chosen_"}),
                ref_rejected=sequence_logprobs(model, {k[9:]: v for k, v in rows.items() if k[:9] == "rejected_"}))
    np.testing.assert_allclose(float(dpo_loss(model, same, beta=beta, deterministic=True, rngs=None)[0]),
                               np.log(2), rtol=1e-5)


def test_the_reference_scores_pairs_exactly_as_the_loss_does():
    """Before the first step the policy is the reference, so validation must find every reward exactly 0:
    scored another way (each side in its own forward pass, say), rounding leaves margins of about 1e-5 at this
    size, and reward_accuracy counts about half of them as preferred."""
    from gptjax.objectives import make_logprob_step

    V, T, B = 4000, 256, 8
    model = GPT(ModelConfig(vocab_size=V, block_size=T, num_layers=2, num_heads=4, d_model=128), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    batch = {}
    for side in ("chosen", "rejected"):
        batch.update({f"{side}_tokens": rng.integers(0, V, (B, T)), f"{side}_targets": rng.integers(0, V, (B, T)),
                      f"{side}_positions": np.broadcast_to(np.arange(T), (B, T)),
                      f"{side}_segment_ids": np.ones((B, T)), f"{side}_loss_mask": rng.random((B, T)) < 0.5})
    batch = {k: jnp.asarray(v, jnp.bool_ if k.endswith("mask") else jnp.int32) for k, v in batch.items()}
    graphdef, params = nnx.split(model, nnx.Param)
    ref_chosen, ref_rejected = make_logprob_step(graphdef)(params, batch)
    evaluate = make_eval_step(graphdef, objective=functools.partial(dpo_loss, beta=0.1))  # as validation runs it
    m = evaluate(params, dict(batch, ref_chosen=ref_chosen, ref_rejected=ref_rejected))
    assert float(m["reward_margin"]) == 0.0 and float(m["reward_accuracy"]) == 0.0


def test_new_token_rows_start_at_the_mean_of_the_others():
    cfg = load_config(None, MODEL)
    small = ModelConfig(vocab_size=10, block_size=8, num_layers=1, num_heads=2, d_model=8, tie_embeddings=False)
    params = nnx.state(GPT(small, rngs=nnx.Rngs(0)), nnx.Param)
    big = setup(cfg, ModelConfig(**{**small.__dict__, "vocab_size": 12}))
    grown = grow_vocabulary(params, big, [10, 11], known=10)
    old, new = np.asarray(params["wte"]["embedding"][...]), np.asarray(grown["wte"]["embedding"][...])
    np.testing.assert_array_equal(new[:10], old)
    np.testing.assert_allclose(new[10], old.mean(0), rtol=1e-6)
    head = np.asarray(grown["lm_head"]["kernel"][...])
    assert head.shape == (8, 12)
    np.testing.assert_allclose(head[:, 11], np.asarray(params["lm_head"]["kernel"][...]).mean(1), rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Runs


def test_sft_from_a_pretrained_run_learns_the_replies(sft_run, pretrained):
    tok, base = load_tokenizer(sft_run / "tokenizer"), load_tokenizer(pretrained / "tokenizer")
    assert tok.vocab_size == base.vocab_size + 2 and tok.chat_template
    assert (sft_run / "data" / "report.json").exists()
    rows = metrics(sft_run)
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    assert val[-1] < val[0] - 0.5, val
    assert all(r["tokens_in_loss"] > 0 for r in rows if "tokens_in_loss" in r)


def test_sft_resume_is_bitwise_the_uninterrupted_run(data, pretrained, sft_run, tmp_path):
    # the same schedule in both parts: the cosine spans 30 steps (by default it would follow train.steps)
    train(sft_config(data, pretrained, "train.steps=18", "train.eval_every=15", "optim.decay_steps=30"), tmp_path / "r")
    train(sft_config(data, pretrained, "train.steps=30", "train.eval_every=15", "optim.decay_steps=30"), tmp_path / "r")
    a, b = load_run(sft_run), load_run(tmp_path / "r")
    assert a.step == b.step == 30
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a.params), jax.device_get(b.params))


def test_changed_records_are_refused_then_made_again_on_request(data, pretrained, tmp_path, capsys):
    records = tmp_path / "sft.jsonl"
    records.write_text(data["sft"].read_text())
    cfg = load_config(None, MODEL + ["data.source=chat", f"data.path={records}", f"checkpoint.init_from={pretrained}",
                                     "train.steps=2"])
    train(cfg, tmp_path / "r")
    with open(records, "a") as f:
        f.write(json.dumps({"prompt": "Is 3 even?", "completion": "The answer is no."}) + "\n")
    cfg.train.steps = 4
    with pytest.raises(Exception, match="changed since"):
        train(cfg, tmp_path / "r")
    cfg.data.retokenize = True
    train(cfg, tmp_path / "r")
    assert "making the rows again" in capsys.readouterr().out


def test_dpo_against_the_starting_model(data, sft_run, tmp_path, capsys):
    cfg = load_config(None, MODEL + ["data.source=preferences", f"data.path={data['pref']}",
                                     f"checkpoint.init_from={sft_run}", "train.steps=12", "train.eval_every=12",
                                     "optim.lr=1e-3", "dpo.beta=0.5", "data.val_fraction=0.2"])
    final = train(cfg, tmp_path / "dpo")
    out = capsys.readouterr().out
    assert "reference's log-probabilities" in out
    assert {"reward_margin", "reward_accuracy", "chosen_reward", "rejected_reward"} <= set(final)
    first = next(r for r in metrics(tmp_path / "dpo") if "val_loss" in r)
    # the policy is the reference: every reward exactly 0, so no pair counts as preferred yet
    assert abs(first["val_loss"] - np.log(2)) < 1e-6 and first["val_reward_margin"] == 0
    assert first["val_reward_accuracy"] == 0
    assert (tmp_path / "dpo" / "data" / "reference.npz").exists()
    # a resume reuses the saved scores ...
    cfg.train.steps = 14
    train(cfg, tmp_path / "dpo")
    assert "reference's log-probabilities" not in capsys.readouterr().out
    # ... and refuses to go on when they are gone, as the reference's weights are no longer at hand
    (tmp_path / "dpo" / "data" / "reference.npz").write_bytes(b"damaged")
    cfg.train.steps = 16
    with pytest.raises(TrainingError, match="reference"):
        train(cfg, tmp_path / "dpo")


def test_dpo_resume_is_bitwise_the_uninterrupted_run(data, sft_run, tmp_path):
    def cfg(steps):
        return load_config(None, MODEL + ["data.source=preferences", f"data.path={data['pref']}",
                                          f"checkpoint.init_from={sft_run}", f"train.steps={steps}",
                                          "optim.decay_steps=8", "data.val_fraction=0"])

    train(cfg(8), tmp_path / "whole")
    train(cfg(5), tmp_path / "parts")
    train(cfg(8), tmp_path / "parts")
    a, b = load_run(tmp_path / "whole"), load_run(tmp_path / "parts")
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a.params), jax.device_get(b.params))


def test_export_carries_the_template_and_transformers_agrees(sft_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from gptjax.hf import export_hf

    out = export_hf(sft_run, tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    messages = [{"role": "user", "content": "Is 42 even?"}, {"role": "assistant", "content": "The answer is yes."}]
    tok = load_tokenizer(sft_run / "tokenizer")
    template = ChatTemplate.choose("", tok)
    ids, _ = template.encode(tok, messages)
    assert hf_tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"] == ids.tolist()
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out))
    with torch.no_grad():
        theirs = model(torch.tensor(ids[None].astype(np.int64))).logits.numpy()
    run = load_run(sft_run)
    mine = np.asarray(nnx.merge(run.graphdef, run.params)(jnp.asarray(ids[None])))
    np.testing.assert_allclose(theirs, mine[..., :theirs.shape[-1]], atol=2e-4)


def test_custom_questions_are_put_to_a_chat_model_in_its_template(sft_run, pretrained, tmp_path):
    from gptjax.evaluate import evaluate_task
    from gptjax.tasks import load_task

    task = write_jsonl(tmp_path / "parity.jsonl", [{"question": q, "choices": ["yes", "no"],
                                                    "answer": "yes" if "answer is yes" in a else "no"}
                                                   for q, a, _ in questions(12, 5)])
    chat = evaluate_task(load_run(sft_run), "custom", data=task, shots=1)
    text = evaluate_task(load_run(pretrained), "custom", data=task)
    assert chat["format"] == "chat" and text["format"] == "text" and 0 <= chat["metrics"]["acc"] <= 1
    tok = load_tokenizer(sft_run / "tokenizer")
    template = ChatTemplate.choose("", tok)
    loaded = load_task("custom", task, shots=1,
                       chat=lambda m: template.render(m, add_generation_prompt=True)[0])
    context = loaded.examples[0].pairs[0][0]
    assert context.startswith("<|im_start|>user\n") and context.count("<|im_start|>user") == 2  # the exemplar
    assert context.endswith("<|im_start|>assistant\nAnswer:")


def test_a_run_replies_from_python(sft_run):
    import gptjax

    run = gptjax.load_run(sft_run)
    reply = run.chat("Is 12 even?", max_new_tokens=12)
    assert isinstance(reply, str) and "<|im_end|>" not in reply
    assert run.chat([{"role": "user", "content": "Is 12 even?"}], max_new_tokens=12) == reply  # greedy


def test_lm_eval_applies_the_runs_chat_template(sft_run, pretrained):
    pytest.importorskip("lm_eval")
    from gptjax.lm_eval_adapter import GptjaxLM

    messages = [{"role": "user", "content": "Is 4 even?"}]
    lm = GptjaxLM(run=load_run(sft_run))
    assert lm.chat_template() and lm.apply_chat_template(messages) == "<|im_start|>user\nIs 4 even?<|im_end|>\n" \
        "<|im_start|>assistant\n"
    with pytest.raises(Exception, match="no chat template"):
        GptjaxLM(run=load_run(pretrained)).apply_chat_template(messages)


def test_init_from_a_hugging_face_directory_keeps_its_chat_template(data, sft_run, tmp_path, capsys):
    from gptjax.hf import export_hf

    exported = export_hf(sft_run, tmp_path / "hf")
    train(load_config(None, MODEL + ["data.source=chat", f"data.path={data['sft']}", f"checkpoint.init_from={exported}",
                                     "train.steps=2"]), tmp_path / "again")
    out = capsys.readouterr().out
    assert "chat template: the hf tokenizer's own" in out and "special token" not in out  # nothing to add
    assert load_tokenizer(tmp_path / "again" / "tokenizer") == load_tokenizer(sft_run / "tokenizer")


def test_dpo_sharded_over_fsdp_matches_one_device(data, sft_run, tmp_path):
    """The same DPO steps with the state split over 4 devices (fsdp) and on 1: the same losses and rewards."""
    from test_faults import env

    def dpo(devices, mesh):
        args = [f"--config.{o}" for o in MODEL + ["data.source=preferences", f"data.path={data['pref']}",
                                                  f"checkpoint.init_from={sft_run}", "train.steps=4",
                                                  "train.log_every=1", "data.val_fraction=0"]]
        done = subprocess.run([sys.executable, "-m", "gptjax.train", "--workdir", str(tmp_path / mesh), *args,
                               f"--config.mesh.fsdp={devices}", "--config.mesh.data=1"], cwd=REPO, env=env(devices),
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line) for line in (tmp_path / mesh / "metrics.jsonl").read_text().splitlines()]

    one, four = dpo(1, "one"), dpo(4, "fsdp4")
    assert len(one) == len(four) == 4
    for a, b in zip(one, four):
        # At step 1 the policy is the reference, so every pair's margin is 0 up to rounding, and whether it lands
        # above 0 (reward_accuracy) is the sign of that rounding, which the sharding changes.
        for key in ("loss", "reward_margin") + (("reward_accuracy",) if a["step"] > 1 else ()):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (key, a, b)


def test_sample_chat_replies_and_refuses_a_model_without_a_template(sft_run, pretrained):
    def sample(run, *args):
        return subprocess.run([sys.executable, "-m", "gptjax.sample", "--workdir", str(run), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=300)

    done = sample(sft_run, "--chat", "--prompt", "Is 12 even?", "--temperature", "0", "--max_new_tokens", "20")
    assert done.returncode == 0, done.stderr
    assert "<|im_start|>" not in done.stdout and done.stdout.strip()
    refused = sample(pretrained, "--chat", "--prompt", "hi")
    assert refused.returncode == 2 and "no chat template" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
