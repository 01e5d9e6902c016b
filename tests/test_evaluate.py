"""Evaluation: task loaders, the batched log-likelihood scorer, metrics, the CLI, and agreement with lm-eval."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

# lm-eval loads local json through `datasets`: it must never try the hub (the test machines are offline). Set before
# anything imports datasets, which reads these once.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import data_path
from gptjax.config import load_config
from gptjax.data.shards import write_shard
from gptjax.evaluate import Scorer, choice_metrics, evaluate_task, length_buckets
from gptjax.run import load_run
from gptjax.tasks import Example, Task, TaskError, load_task
from gptjax.trainer import train

REPO = Path(__file__).resolve().parents[1]
BLOCK = 64
# A byte tokenizer, so any evaluation text encodes; a few steps are enough for the model to prefer some text.
TINY = [
    "data.max_chars=100000", "data.tokenizer=byte",
    "model.num_layers=2", "model.num_heads=2", "model.d_model=64", f"model.block_size={BLOCK}",
    "train.batch_size=8", "train.steps=40", "train.eval_every=0", "train.eval_batches=2", "train.log_every=20",
    "train.sample_tokens=0", "optim.lr=3e-3", "optim.min_lr=3e-4", "optim.warmup_steps=10",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval_runs") / "tiny"
    train(load_config(None, TINY), path)
    return path


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def direct_loglikelihood(run, context: str, continuation: str) -> tuple[float, bool]:
    """The reference: one unpadded forward pass over the last block_size+1 tokens, in float64 on the host."""
    scorer = Scorer(run)
    ctx, cont = scorer.encode_pair(context, continuation)
    seq = (ctx + cont)[-(BLOCK + 1):]
    logits = np.asarray(run.model(jnp.asarray([seq[:-1]])), np.float64)[0]
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - \
        logits.max(-1, keepdims=True)
    positions = range(len(seq) - 1 - len(cont), len(seq) - 1)
    return (sum(logp[p, seq[p + 1]] for p in positions),
            all(int(np.argmax(logits[p])) == seq[p + 1] for p in positions))


CUSTOM = [
    {"question": "What is 2 + 2?", "choices": ["3", "4", "five"], "answer": 1},
    {"question": "Which word is a Python keyword?", "choices": ["lambda", "banana"], "answer": "lambda"},
    {"question": "What does len() return for an empty list?", "choices": ["0", "None", "an error"], "answer": 0},
    {"question": "Which module reads JSON?", "choices": ["json", "os", "math", "re"], "answer": "json"},
    {"question": "What starts a comment?", "choices": ["#", "//", "--"], "answer": 0},
    {"question": "Which prints text?", "choices": ["print", "input", "open"], "answer": 0},
    {"question": "What is the value of True and False?", "choices": ["True", "False"], "answer": 1},
    {"question": "How is a function defined?", "choices": ["def", "func", "function", "fn"], "answer": "def"},
]


# ----------------------------------------------------------------------------------------------------------------
# Loaders on tiny hand-written files


def test_hellaswag_preprocessing_matches_lm_eval(tmp_path):
    path = write_jsonl(tmp_path / "hs.jsonl", [
        {"ind": 1, "activity_label": "Cooking", "ctx_a": "A man takes a pan.", "ctx_b": "he",
         "endings": ["puts it down [title] Done.", "eats it.", "  runs  away.", "sings."], "label": "2"},
        {"ind": 2, "activity_label": "Sport", "ctx_a": "A girl runs.", "ctx_b": "",
         "endings": ["a", "b", "c", "d"], "label": 0},
    ])
    task = load_task("hellaswag", path)
    first = task.examples[0]
    assert first.gold == 2 and task.kind == "multiple_choice" and task.num_available == 2
    assert [c for c, _ in first.pairs] == ["Cooking: A man takes a pan. He"] * 4
    assert [x for _, x in first.pairs] == [" puts it down. Done.", " eats it.", " runs away.", " sings."]
    assert first.norm_lengths == [len("puts it down. Done."), len("eats it."), len("runs away."), len("sings.")]
    one_shot = load_task("hellaswag", path, shots=1).examples[0]
    # the exemplar is the other example, solved with its gold ending, then a blank line
    assert one_shot.pairs[0][0] == "Sport: A girl runs. a\n\nCooking: A man takes a pan. He"


def test_winogrande_partial_evaluation(tmp_path):
    path = write_jsonl(tmp_path / "dev.jsonl", [
        {"sentence": "The cup fell off the table because _ was wobbly.", "option1": "the cup",
         "option2": "the table"},
        {"sentence": "Tom beat Bill because _ was faster.", "option1": "Tom", "option2": "Bill"},
    ])
    (tmp_path / "dev-labels.lst").write_text("2\n1\n")
    task = load_task("winogrande", path)
    assert task.kind == "partial"
    assert task.examples[0].pairs == [("The cup fell off the table because the cup", " was wobbly."),
                                      ("The cup fell off the table because the table", " was wobbly.")]
    assert [e.gold for e in task.examples] == [1, 0]


def test_mmlu_shots_header_and_letters(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "dev").mkdir()
    (tmp_path / "test" / "high_school_math_test.csv").write_text('"What is 1+1, really?",1,2,3,4,B\nQ2,a,b,c,d,D\n')
    (tmp_path / "dev" / "high_school_math_dev.csv").write_text("Ex1,w,x,y,z,C\nEx2,p,q,r,s,A\n")
    task = load_task("mmlu", tmp_path, shots=2, limit=1)
    assert len(task.examples) == 1 and task.num_available == 2
    ex = task.examples[0]
    assert ex.gold == 1 and ex.group == "high_school_math"
    assert [x for _, x in ex.pairs] == [" A", " B", " C", " D"]
    assert ex.pairs[0][0] == (
        "The following are multiple choice questions (with answers) about high school math.\n\n"
        "Ex1\nA. w\nB. x\nC. y\nD. z\nAnswer: C\n\n"
        "Ex2\nA. p\nB. q\nC. r\nD. s\nAnswer: A\n\n"
        "What is 1+1, really?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:")
    with pytest.raises(TaskError, match="fewer than --shots 3"):
        load_task("mmlu", tmp_path, shots=3)


def test_lambada_and_custom(tmp_path):
    lam = load_task("lambada", write_jsonl(tmp_path / "l.jsonl", [{"text": "the cat sat on the mat"}]))
    assert lam.examples[0].pairs == [("the cat sat on the", " mat")] and lam.kind == "loglikelihood"
    custom = load_task("custom", write_jsonl(tmp_path / "c.jsonl", CUSTOM), shots=3)
    assert [e.gold for e in custom.examples] == [1, 0, 0, 0, 0, 0, 1, 0]  # answer texts became indices
    for i, ex in enumerate(custom.examples):
        context = ex.pairs[0][0]
        assert context.endswith(f"Question: {CUSTOM[i]['question']}\nAnswer:")
        assert context.count("Question: ") == 4  # 3 exemplars + the item
        assert context.count(CUSTOM[i]["question"]) == 1  # never its own exemplar
    assert load_task("custom", tmp_path / "c.jsonl", shots=3).examples[0].pairs == custom.examples[0].pairs


@pytest.mark.parametrize("task, body, message", [
    ("custom", ['{"question": "q", "choices": ["a", "b"], "answer": 0}', '{"question": "q", "choices": "ab"}'],
     r"c\.jsonl:2: field 'choices' must be a list"),
    ("custom", ['{"question": "q", "choices": ["a", "b"], "answer": "c"}'], r"c\.jsonl:1: field 'answer' 'c'"),
    ("custom", ['{"question": "q", "choices": ["a", "b"], "answer": 5}'], r"c\.jsonl:1: field 'answer' 5 is not"),
    ("custom", ['{"choices": ["a", "b"], "answer": 0}'], r"c\.jsonl:1: missing field 'question'"),
    ("custom", ['{"question": "q", "choices": ["a", "b"], "answer": 0}', "", "{not json"],
     r"c\.jsonl:3: not valid JSON"),
    ("hellaswag", ['{"ctx_a": "x", "ctx_b": "y", "activity_label": "z", "endings": ["a"], "label": 3}'],
     r"c\.jsonl:1: field 'label' must be an index"),
    ("winogrande", ['{"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}'],
     r"c\.jsonl:1: field 'sentence' must hold exactly one '_'"),
    ("lambada", ['{"txt": "a b"}'], r"c\.jsonl:1: missing field 'text'"),
])
def test_malformed_files_name_file_line_and_field(tmp_path, task, body, message):
    path = write_jsonl(tmp_path / "c.jsonl", body)
    with pytest.raises(TaskError, match=message):
        load_task(task, path)


def test_bad_requests(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", CUSTOM[:2])
    with pytest.raises(TaskError, match="need at least 3 examples.*but it has 2"):
        load_task("custom", path, shots=2)  # the scored item cannot be its own exemplar
    with pytest.raises(TaskError, match="unknown task 'piqa'"):
        load_task("piqa", path)
    with pytest.raises(TaskError, match="does not exist"):
        load_task("custom", tmp_path / "missing.jsonl")
    (tmp_path / "bad_test.csv").write_text("q,a,b,c,d,E\n")
    with pytest.raises(TaskError, match=r"bad_test\.csv:1: answer column"):
        load_task("mmlu", tmp_path / "bad_test.csv")


# ----------------------------------------------------------------------------------------------------------------
# Slices of the real files


@pytest.mark.parametrize("task, parts, choices", [
    ("hellaswag", ("hellaswag_val.jsonl",), 4),
    ("winogrande", ("winogrande", "dev.jsonl"), 2),
    ("mmlu", ("mmlu",), 4),
    ("lambada", ("lambada", "lambada_test.jsonl"), 1),
])
def test_real_files_load(task, parts, choices):
    path = data_path("eval", *parts)
    loaded = load_task(task, path, shots=5 if task == "mmlu" else 0, limit=20)
    expected = {"hellaswag": 10042, "winogrande": 1267, "mmlu": 14042, "lambada": 5153}[task]
    assert loaded.num_available == expected
    assert all(len(e.pairs) == choices and 0 <= e.gold < choices for e in loaded.examples)
    if task == "mmlu":
        assert len(loaded.examples) == 57 * 20 and loaded.examples[0].group == "abstract_algebra"
        assert loaded.examples[0].pairs[0][0].count("\nAnswer:") == 6  # 5 dev exemplars + the question
    else:
        assert len(loaded.examples) == 20
    if task == "winogrande":  # the answers agree with dev-labels.lst
        labels = (path.parent / "dev-labels.lst").read_text().split()[:20]
        assert [str(e.gold + 1) for e in loaded.examples] == labels


def test_real_slice_scores(run):
    path = data_path("eval", "hellaswag_val.jsonl")
    result = evaluate_task(run, "hellaswag", path, limit=20, batch_size=8)
    assert result["counts"]["examples"] == 20 and result["counts"]["requests"] == 80
    assert 0 <= result["metrics"]["acc"] <= 1 and 0 <= result["metrics"]["acc_norm"] <= 1


# ----------------------------------------------------------------------------------------------------------------
# The scorer


def test_scores_equal_a_direct_computation(run):
    scorer = Scorer(run, batch_size=4)
    long_context = "def main():\n    return 0\n" * 8  # > block_size bytes: cut from the left
    requests = [("import os", "\nimport sys"), ("x = ", "1"), ("hello ", "world"), (long_context, "\n"),
                ("class A:\n", "    pass\n    " * 3)]
    for (context, continuation), (ll, greedy) in zip(requests, scorer.loglikelihood(requests)):
        ref_ll, ref_greedy = direct_loglikelihood(run, context, continuation)
        assert ll == pytest.approx(ref_ll, abs=2e-4), (context, continuation)
        assert greedy == ref_greedy
    # the trailing space moved into the continuation, as lm-eval's _encode_pair does
    assert scorer.encode_pair("hello ", "world") == (list(b"hello"), list(b" world"))
    assert scorer.encode_pair("", "ab")[0] == [ord("\n")]  # no end-of-text in a byte vocabulary


def test_greedy_flag_is_true_for_the_models_own_continuation(run):
    from gptjax.sample import generate

    prompt = "def main():"  # no trailing whitespace: it would move into the scored continuation
    tokens = generate(run.graphdef, run.params, run.tokenizer.encode(prompt), block_size=BLOCK, max_new_tokens=6,
                      temperature=0.0)[0]
    continuation = bytes(tokens.tolist()).decode("utf-8", errors="strict")
    ll, greedy = Scorer(run).loglikelihood([(prompt, continuation)])[0]
    assert greedy and ll < 0
    other = "x" if continuation[-1] != "x" else "y"
    assert not Scorer(run).loglikelihood([(prompt, continuation[:-1] + other)])[0][1]


def test_batching_and_padding_do_not_change_scores(run):
    requests = [("a", "b"), ("def f(x):\n", "    return x\n"), ("# comment " * 10, "\n"), ("x", "=" * 20),
                ("import numpy as np\n", "np.zeros(3)"), ("for i in range(3):", " print(i)"), ("", "pass")]
    alone = [Scorer(run, batch_size=1).loglikelihood([r])[0] for r in requests]
    together = Scorer(run, batch_size=3).loglikelihood(requests)
    big = Scorer(run, batch_size=16).loglikelihood(requests)
    for a, b, c in zip(alone, together, big):
        # float32 sums of tens of log-probabilities, added in another order per batch shape: a few ulps apart
        assert a[0] == pytest.approx(b[0], rel=1e-6, abs=1e-5) and a[0] == pytest.approx(c[0], rel=1e-6, abs=1e-5)
        assert a[1] == b[1] == c[1]


def test_long_continuations_are_scored_in_windows(run):
    scorer = Scorer(run, batch_size=4)
    text = "def function_number_one(argument):\n    return argument * 2\n" * 3  # > 2 blocks of bytes
    ids = list(text.encode())
    ll = scorer.loglikelihood_rolling([text])[0]
    # lm-eval's rolling windows: block_size tokens predicted per window, the first from the prefix token.
    seq, expected = [ord("\n")] + ids, 0.0
    for a in range(1, len(seq), BLOCK):
        b = min(a + BLOCK, len(seq))
        s = max(0, b - 1 - BLOCK)
        logp = jax.nn.log_softmax(run.model(jnp.asarray([seq[s:b - 1]]))[0], axis=-1)
        expected += float(sum(logp[p - 1 - s, seq[p]] for p in range(a, b)))
    assert ll == pytest.approx(expected, abs=5e-4)
    assert length_buckets(BLOCK) == [16, 32, 64] and length_buckets(100) == [16, 32, 64, 100]


def test_acc_norm_divides_by_choice_length():
    # choice 1 has the higher total log-likelihood, choice 0 the higher per character.
    ex = Example([("q", " a long right answer"), ("q", " no")], 0, [len("a long right answer"), 2])
    task = Task("custom", "multiple_choice", "x", 0, [ex], 1)
    metrics = choice_metrics(task, [(-19.0, False), (-4.0, True)])
    assert metrics["acc"] == 0.0 and metrics["acc_norm"] == 1.0 and metrics["acc_bytes"] == 1.0


def test_val_loss_equals_the_mean_token_loss(run, run_dir, tmp_path):
    tokens = np.frombuffer(b"def add(a, b):\n    return a + b\n" * 6, np.uint8).astype(np.int64)
    write_shard(tmp_path / "val" / "00000.ds", [tokens], tokenizer_name="byte", vocab_size=256)
    result = evaluate_task(run, "val_loss", tmp_path / "val", batch_size=2)
    losses = []
    for start in range(0, len(tokens) - 1, BLOCK):
        window = tokens[start:start + BLOCK + 1]
        logp = jax.nn.log_softmax(run.model(jnp.asarray([window[:-1]], jnp.int32))[0], axis=-1)
        losses += [-float(logp[i, window[i + 1]]) for i in range(len(window) - 1)]
    assert result["counts"] == {"windows": 3, "tokens": len(tokens) - 1}
    assert result["metrics"]["val_loss"] == pytest.approx(np.mean(losses), abs=1e-5)
    assert result["metrics"]["perplexity"] == pytest.approx(np.exp(np.mean(losses)), rel=1e-5)
    # the run's own validation split by default (RUN/data/val), or a prepared directory's val/
    own = evaluate_task(run, "val_loss", run_dir=run_dir, limit=3)
    assert own["counts"] == {"windows": 3, "tokens": 3 * BLOCK} and own["data"] == str(run_dir / "data" / "val")
    assert evaluate_task(run, "val_loss", run_dir / "data", limit=3)["metrics"] == own["metrics"]
    # A run loaded from disk knows its directory; one built in memory has to be told.
    assert evaluate_task(run, "val_loss", limit=3)["metrics"] == own["metrics"]
    with pytest.raises(TaskError, match="needs its directory"):
        evaluate_task(dataclasses.replace(run, run_dir=None), "val_loss")


def test_custom_task_and_shots(run, tmp_path):
    path = write_jsonl(tmp_path / "domain.jsonl", CUSTOM)
    zero = evaluate_task(run, "custom", path, batch_size=8)
    assert zero["counts"] == {"examples": 8, "available": 8, "requests": 24, "rows": 24,  # 3+2+3+4+3+3+2+4 choices
                              "unencodable": 0}
    assert zero["step"] == 40 and zero["shots"] == 0
    two = evaluate_task(run, "custom", path, shots=2, limit=4, batch_size=8)
    assert two["counts"]["examples"] == 4 and two["shots"] == 2


# ----------------------------------------------------------------------------------------------------------------
# The CLI


def test_cli_writes_results_and_rejects_bad_input(run_dir, tmp_path):
    data = write_jsonl(tmp_path / "domain.jsonl", CUSTOM)
    cmd = [sys.executable, "-m", "gptjax.evaluate", "--workdir", str(run_dir)]
    done = subprocess.run(cmd + ["--task", "custom", "--data", str(data), "--limit", "5", "--batch_size", "4"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads((run_dir / "eval" / "custom-domain-limit5-step40.json").read_text())
    assert result["task"] == "custom" and result["step"] == 40 and result["limit"] == 5
    # Other options: another file, the first one left as it was.
    again = subprocess.run(cmd + ["--task", "custom", "--data", str(data), "--limit", "3", "--shots", "1"],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "eval" / "custom-domain-1shot-limit3-step40.json").read_text())["limit"] == 3
    assert json.loads((run_dir / "eval" / "custom-domain-limit5-step40.json").read_text()) == result
    assert result["data"] == str(data) and result["counts"]["examples"] == 5 and "acc_norm" in result["metrics"]
    assert "custom at step 40: acc" in done.stdout

    write_jsonl(tmp_path / "broken.jsonl", ['{"question": "q", "choices": ["a"], "answer": 0}'])
    for args, message in [(["--task", "custom", "--data", str(tmp_path / "broken.jsonl")], "broken.jsonl:1: field"),
                          (["--task", "hellaswag"], "needs --data"),
                          (["--task", "custom", "--data", str(data), "--step", "7"], "7")]:
        bad = subprocess.run(cmd + args, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert bad.returncode == 2, (args, bad.stderr)
        lines = bad.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and message in lines[-1], (args, bad.stderr)
        assert "Traceback" not in bad.stderr


# ----------------------------------------------------------------------------------------------------------------
# lm-evaluation-harness


TASK_YAML = """task: gptjax_domain_test
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def test_lm_eval_agrees_with_gptjax(run, run_dir, tmp_path):
    import lm_eval
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    from gptjax.lm_eval_adapter import GptjaxLM

    # lm-eval reads integer answers as indices; write them as such so both read the same gold.
    records = [dict(r, answer=r["choices"].index(r["answer"]) if isinstance(r["answer"], str) else r["answer"])
               for r in CUSTOM]
    data = write_jsonl(tmp_path / "domain.jsonl", records)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "domain.yaml").write_text(TASK_YAML.format(data=data))
    assert get_model("gptjax") is GptjaxLM
    lm = GptjaxLM(run=run, batch_size=8)
    out = lm_eval.simple_evaluate(model=lm, tasks=["gptjax_domain_test"], log_samples=True,
                                  task_manager=TaskManager(include_path=str(tmp_path / "tasks")))
    theirs = out["results"]["gptjax_domain_test"]
    ours = evaluate_task(run, "custom", data, batch_size=8)["metrics"]
    assert theirs["acc,none"] == pytest.approx(ours["acc"], abs=1e-3)
    assert theirs["acc_norm,none"] == pytest.approx(ours["acc_norm"], abs=1e-3)
    # the same requests, too: lm-eval's (context, continuation) pairs are exactly ours, scored alike
    task = load_task("custom", data)
    samples = out["samples"]["gptjax_domain_test"]
    assert len(samples) == len(task.examples)
    for sample in samples:
        assert [tuple(a) for a in sample["arguments"]] == task.examples[sample["doc_id"]].pairs

    # rolling log-likelihood and greedy generation through the adapter
    from gptjax.sample import generate

    text = "import os\nimport sys\n"
    rolling = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])[0]
    assert rolling == pytest.approx(Scorer(run).loglikelihood([("", text)])[0][0], abs=1e-4)
    expected = bytes(generate(run.graphdef, run.params, run.tokenizer.encode("def "), block_size=BLOCK,
                              max_new_tokens=12, temperature=0.0)[0].tolist()).decode("utf-8", "replace")
    stop = expected[5:7]
    got = lm.generate_until([Instance("generate_until", {}, ("def ", {"until": [stop], "max_gen_toks": 12}), 0)])
    assert got == [expected[:expected.index(stop)]]

    # A context longer than the window keeps its last block_size - max_gen_toks tokens, as lm-eval's hf model does.
    context = "def main():\n    return 1\n" * 20
    kept = run.tokenizer.encode(context)[-(BLOCK - 12):]
    expected = bytes(generate(run.graphdef, run.params, kept, block_size=BLOCK, max_new_tokens=12,
                              temperature=0.0)[0].tolist()).decode("utf-8", "replace")
    got = lm.generate_until([Instance("generate_until", {}, (context, {"until": ["\x00"], "max_gen_toks": 12}), 0)])
    assert got == [expected]

    # how lm-eval builds it from --model_args, with the --batch_size it always passes (1 when not given)
    built = GptjaxLM.create_from_arg_string(f"workdir={run_dir},batch_size=4", {"device": "cpu", "batch_size": 1})
    assert built.run.step == 40 and built.scorer.batch_size == 4
    assert GptjaxLM.create_from_arg_string(f"workdir={run_dir}", {"batch_size": 1}).scorer.batch_size == 16
    assert GptjaxLM.create_from_arg_string(f"workdir={run_dir}", {"batch_size": 8}).scorer.batch_size == 8


LM_EVAL_TASK_YAML = {
    # lm-eval's own preprocessing (its hellaswag and winogrande task code) on a local slice of the real file
    "hellaswag": """process_docs: !function utils.process_docs
doc_to_text: "{{query}}"
doc_to_target: "{{label}}"
doc_to_choice: "choices"
metric_list:
  - metric: acc
  - metric: acc_norm
""",
    "winogrande": """doc_to_text: !function utils.doc_to_text
doc_to_target: !function utils.doc_to_target
doc_to_choice: !function utils.doc_to_choice
metric_list:
  - metric: acc
""",
}
LM_EVAL_UTILS = {"hellaswag": "from lm_eval.tasks.hellaswag.utils import process_docs  # noqa: F401\n",
                 "winogrande": "from lm_eval.tasks.winogrande.preprocess_winogrande import (  # noqa: F401\n"
                               "    doc_to_choice, doc_to_target, doc_to_text)\n"}


@pytest.mark.parametrize("task, parts", [("hellaswag", ("hellaswag_val.jsonl",)),
                                         ("winogrande", ("winogrande", "dev.jsonl"))])
def test_requests_match_lm_evals_own_preprocessing(run, tmp_path, task, parts):
    """Our loaders against lm-eval's task code on a slice of the real file: the same (context, continuation)
    requests, so the same accuracy."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from gptjax.lm_eval_adapter import GptjaxLM

    lines = data_path("eval", *parts).read_text().splitlines()[:12]
    data = write_jsonl(tmp_path / "slice.jsonl", lines)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "utils.py").write_text(LM_EVAL_UTILS[task])
    name = f"gptjax_{task}_test"
    (tasks / f"{task}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    validation: {data}\n"
        f"validation_split: validation\noutput_type: multiple_choice\n" + LM_EVAL_TASK_YAML[task])
    out = lm_eval.simple_evaluate(model=GptjaxLM(run=run, batch_size=8), tasks=[name], log_samples=True,
                                  task_manager=TaskManager(include_path=str(tasks)))
    loaded = load_task(task, data)
    samples = out["samples"][name]
    assert len(samples) == 12
    for sample in samples:
        assert [tuple(a) for a in sample["arguments"]] == loaded.examples[sample["doc_id"]].pairs
    ours = evaluate_task(run, task, data, batch_size=8)["metrics"]
    theirs = out["results"][name]
    assert theirs["acc,none"] == pytest.approx(ours["acc"], abs=1e-3)
    if task == "hellaswag":
        assert theirs["acc_norm,none"] == pytest.approx(ours["acc_norm"], abs=1e-3)


def test_tasks_scored_during_training(tmp_path):
    """train.eval_tasks: a small task scored at every evaluation, logged beside the validation loss."""
    from gptjax.config import ConfigError
    from gptjax.trainer import train

    data = write_jsonl(tmp_path / "domain.jsonl", CUSTOM)
    overrides = [o for o in TINY if not o.startswith(("train.steps", "train.eval_every"))]
    train(load_config(None, overrides + ["train.steps=10", "train.eval_every=5", f"train.eval_tasks=custom:{data}:3"]),
          tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in evals] == [0, 5, 10]
    assert all(0.0 <= r["custom_domain_acc"] <= 1.0 and "custom_domain_acc_norm" in r for r in evals)
    for spec, message in [("nosuch:x.jsonl", "is not TASK:PATH"), (f"custom:{tmp_path}/missing.jsonl", "does not exist")]:
        with pytest.raises(ConfigError, match=message):
            train(load_config(None, overrides + [f"train.eval_tasks={spec}"]), tmp_path / "bad")


def test_an_item_a_char_tokenizer_cannot_encode_counts_as_wrong(tmp_path):
    """A character model meets a character it never saw: that item is wrong and counted, the task goes on."""
    char_run = tmp_path / "char"
    train(load_config(None, [t for t in TINY if not t.startswith("data.tokenizer")]
                      + ["data.tokenizer=char", "train.steps=2"]), char_run)
    run = load_run(char_run)
    items = CUSTOM[:4] + [{"question": "Which is a café?", "choices": ["bistro", "garage"], "answer": 0}]
    result = evaluate_task(run, "custom", write_jsonl(tmp_path / "items.jsonl", items))
    assert result["counts"]["examples"] == 5 and result["counts"]["unencodable"] == 1
    alone = evaluate_task(run, "custom", write_jsonl(tmp_path / "four.jsonl", CUSTOM[:4]))
    assert result["metrics"]["acc"] == pytest.approx(alone["metrics"]["acc"] * 4 / 5)
    with pytest.raises(TaskError, match="no item of .* can be encoded by the run's char tokenizer"):
        evaluate_task(run, "custom", write_jsonl(tmp_path / "none.jsonl", items[4:]))
