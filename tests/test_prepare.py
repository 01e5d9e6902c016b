"""The data-preparation chain end to end: a generated corpus with planted problems, and the shared corpora."""

import gzip
import json
import random
import time

import numpy as np
import pytest

from conftest import REPO, data_path
from gptjax.config import ConfigError
from gptjax.data import DataError
from gptjax.data import prepare as prepare_module
from gptjax.data.prepare import base_config, load, prepare, source
from gptjax.data.stages import CLEANING_CODE

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
         "they you were their one all we can her has there been if more when will would who so no court river "
         "market garden letter window morning history science village doctor patient judge evidence trial "
         "contract statute appeal record season harvest engine signal bridge mountain forest ocean island "
         "teacher student library museum theatre painting music song story novel poem author reader writer "
         "city street house family friend neighbour council meeting report budget policy plan decision "
         "question answer reason result effect cause change growth decline value price cost benefit risk").split()


def paragraph(rng, n_words):
    words = [rng.choice(WORDS) for _ in range(n_words)]
    sentences, i = [], 0
    while i < len(words):
        k = rng.randint(8, 16)
        sentences.append(" ".join(words[i:i + k]).capitalize() + ".")
        i += k
    return " ".join(sentences)


def planted_corpus(directory, rng):
    """60 distinct documents, 5 exact copies, 5 near copies, 3 junk, 2 empty, 1 huge, 1 with a bad UTF-8 byte."""
    docs = [{"id": f"doc{i}", "text": paragraph(rng, rng.randint(150, 250))} for i in range(60)]
    exact = [{"id": f"exact{i}", "text": docs[i]["text"]} for i in range(5)]
    near = []
    for i in range(5, 10):
        words = docs[i]["text"].split(" ")
        for j in rng.sample(range(len(words)), 3):
            words[j] = "altered"
        near.append({"id": f"near{i}", "text": " ".join(words)})
    junk = [{"id": f"junk{i}", "text": "\n".join(["Buy now! Best prices online."] * 40)} for i in range(3)]
    empty = [{"id": "empty0", "text": ""}, {"id": "empty1", "text": "   \n\t "}]
    huge = [{"id": "huge", "text": paragraph(rng, 120_000)}]
    lines = [json.dumps(d).encode() for d in docs + exact + near + junk + empty + huge]
    lines.append(json.dumps({"id": "badutf8", "text": paragraph(rng, 200)}).encode().replace(b"The", b"Th\xffe", 1))
    directory.mkdir(parents=True)
    with gzip.open(directory / "part-0.jsonl.gz", "wb") as f:
        f.write(b"\n".join(lines) + b"\n")


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare")
    planted_corpus(root / "raw", random.Random(0))
    cfg = base_config()
    cfg.sources.web = source("jsonl", str(root / "raw"))
    cfg.tokenizer.train, cfg.tokenizer.vocab_size = True, 400
    cfg.split.val_fraction = 0.2
    began = time.perf_counter()
    report = prepare(cfg, root / "out")
    return root, cfg, report, time.perf_counter() - began


def test_planted_problems_are_removed_and_counted(planted_run):
    root, _, report, _ = planted_run
    web = report["sources"]["web"]
    steps = {row["step"]: row for row in web["cleaning"]}
    reader = next(row for name, row in steps.items() if "READER" in name)
    assert reader["bad_utf8_replaced"] == 1 and reader["empty_skipped"] == 1  # "" is dropped on reading...
    assert next(row for name, row in steps.items() if "Normalize" in name)["removed_empty"] == 1  # ..."  \n" here
    repetition = next(row for name, row in steps.items() if "Repetition" in name)
    quality = next(row for name, row in steps.items() if "Quality" in name)
    assert repetition["dropped"] + quality["dropped"] == 4  # the 3 junk pages and the huge document
    assert web["dedup"]["exact"]["removed"] == 5 and web["dedup"]["minhash"]["removed"] == 5
    tokens = web["tokens"]
    assert tokens["train"]["documents"] + tokens["val"]["documents"] == 61  # 60 distinct + the repaired record
    assert 0 < tokens["val"]["documents"] < 25
    assert (root / "out" / "web" / "removed" / "gopher_repetition").is_dir()
    assert json.loads((root / "out" / "report.json").read_text())["sources"]["web"]["dedup"]["documents_out"] == 61
    markdown = (root / "out" / "report.md").read_text()
    assert "| web |" in markdown
    # What report.json counts of skipped or changed records, report.md says too.
    assert "bad_utf8_replaced 1" in markdown and "empty_skipped 1" in markdown and "removed_empty 1" in markdown


def test_the_output_trains_as_a_shard_source(planted_run, tmp_path):
    from gptjax.config import load_config
    from gptjax.trainer import train

    root, _, _, _ = planted_run
    cfg = load_config(None, ["data.source=shards", f"data.shards={root / 'out' / 'web'}", "model.num_layers=1",
                             "model.d_model=32", "model.num_heads=2", "model.block_size=32", "train.steps=3",
                             "train.batch_size=4", "train.eval_batches=1", "train.sample_tokens=0",
                             "optim.warmup_steps=1"])
    final = train(cfg, tmp_path / "run")
    assert final["val_loss"] > 0


def test_trained_tokenizer_round_trips(planted_run):
    from gptjax.tokenizer import load_tokenizer

    root, _, report, _ = planted_run
    tokenizer = load_tokenizer(root / "out" / "tokenizer")
    assert tokenizer.vocab_size == 400 and report["sources"]["web"]["tokens"]["chars_per_token"] > 1.5
    for name in ("address.txt", "german.txt", "tinystories_sample.txt"):
        text = data_path("tokenizer_test_inputs", name).read_text()
        assert tokenizer.decode(tokenizer.encode(text).tolist()) == text


def test_rerun_skips_finished_stages(planted_run):
    root, cfg, report, first = planted_run
    began = time.perf_counter()
    again = prepare(cfg, root / "out")
    assert again["sources"]["web"]["dedup"] == report["sources"]["web"]["dedup"]
    assert again["sources"]["web"]["tokens"]["train"] == report["sources"]["web"]["tokens"]["train"]
    assert time.perf_counter() - began < first


def steps_of(report) -> list[str]:
    return [row["step"] for row in report["sources"]["web"]["cleaning"]]


def test_a_changed_setting_or_input_redoes_its_stage_and_those_after_it(tmp_path, capsys, monkeypatch):
    planted_corpus(tmp_path / "raw", random.Random(1))
    cfg = base_config()
    cfg.sources.web = source("jsonl", str(tmp_path / "raw"))
    cfg.tokenizer.name = "byte"
    cfg.stages.gopher_quality = False
    first = prepare(cfg, tmp_path / "out")
    assert not any("Gopher Quality" in step for step in steps_of(first))
    capsys.readouterr()

    cfg.stages.gopher_quality = True  # a stage turned on: the cleaning is redone, not skipped as finished
    second = prepare(cfg, tmp_path / "out")
    said = capsys.readouterr().out
    assert "[web] cleaning: stages.gopher_quality: False -> True; doing it again" in said
    assert "[web] deduplication: the stage before it was redone; doing it again" in said
    assert any("Gopher Quality" in step for step in steps_of(second))

    with gzip.open(tmp_path / "raw" / "part-1.jsonl.gz", "wt") as f:  # more input: it reaches the output
        for i in range(5):
            f.write(json.dumps({"id": f"new{i}", "text": paragraph(random.Random(100 + i), 200)}) + "\n")
    third = prepare(cfg, tmp_path / "out")
    assert "1 input file added (part-1.jsonl.gz)" in capsys.readouterr().out
    assert third["sources"]["web"]["dedup"]["documents_out"] == second["sources"]["web"]["dedup"]["documents_out"] + 5

    cfg.stages.minhash_threshold = 0.7  # used to be an error asking to delete the logs by hand
    prepare(cfg, tmp_path / "out")
    said = capsys.readouterr().out
    assert "[web] deduplication: minhash_threshold: 0.8 -> 0.7; doing it again" in said
    assert "[web] cleaning:" not in said  # the stage before it is unchanged: skipped

    prepare(cfg, tmp_path / "out", force=True)
    said = capsys.readouterr().out
    assert "[web] cleaning: --force; doing it again" in said and "[web] deduplication: --force; doing it again" in said

    # Cleaning code that changed what it keeps (a new word tokenizer for the filters, say) cleans again.
    monkeypatch.setattr(prepare_module, "CLEANING_CODE", "gptjax cleaning v0")
    prepare(cfg, tmp_path / "out")
    said = capsys.readouterr().out
    assert f"[web] cleaning: made_by: {CLEANING_CODE!r} -> 'gptjax cleaning v0'; doing it again" in said


def test_datatrove_logs_go_to_the_log_files_not_the_terminal(tmp_path, capfd):
    planted_corpus(tmp_path / "raw", random.Random(2))
    cfg = base_config()
    cfg.sources.web = source("jsonl", str(tmp_path / "raw"))
    cfg.tokenizer.name = "byte"
    cfg.executor.tasks = cfg.executor.workers = 2  # tasks in worker processes too
    prepare(cfg, tmp_path / "out")
    out, err = capfd.readouterr()
    assert err == ""
    assert all(line.startswith(("[web]", "#", "|", "-", "Removed", "Time")) for line in out.splitlines() if line), out
    logs = tmp_path / "out" / "logs" / "web"
    assert "2/2 tasks completed" in (logs / "clean" / "console.log").read_text()
    assert "Processing done" in (logs / "dedup" / "logs" / "minhash_4_filter" / "console.log").read_text()


@pytest.mark.parametrize("override, message", [
    ("sources.web.path=/nonexistent/corpus", "sources.web.path: /nonexistent/corpus does not exist"),
    ("sources.web.kind=csv", "sources.web.kind='csv' is not one of: jsonl, text, parquet, warc, hf"),
    ("sources.news.path=x", "unknown key sources.news"),
])
def test_bad_sources_fail_before_any_work(tmp_path, override, message):
    (tmp_path / "cfg.py").write_text(
        "from gptjax.data.prepare import base_config, source\n"
        f"def get_config():\n    c = base_config()\n    c.sources.web = source('jsonl', {str(tmp_path)!r})\n"
        "    return c\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(str(tmp_path / "cfg.py"), [override])


def test_worked_example(tmp_path, monkeypatch, capsys):
    """docs/worked_example.md, shrunk: prepare the shipped web + legal mixture (plus the medical corpus), train on
    it, evaluate on examples/legal_mc.jsonl, sample, fine-tune from the run, export to Hugging Face."""
    corpora = data_path("corpora")
    monkeypatch.setenv("GPTJAX_DATA_DIR", str(corpora.parent))
    cfg = load(str(REPO / "configs/data/legal_web.py"), [])
    cfg.sources.pubmed = source("jsonl", str(corpora / "pubmed" / "pubmedqa_abstracts.jsonl"))  # the medical corpus
    report = prepare(cfg, tmp_path / "legal_web")
    for name in ("web", "web_warc", "legal", "pubmed"):
        tokens = report["sources"][name]["tokens"]
        assert tokens["train"]["tokens"] > 0 and tokens["val"]["tokens"] > 0, name
    assert report["sources"]["web"]["dedup"]["exact"]["removed"] > 0  # the crawl sample repeats pages
    assert (tmp_path / "legal_web" / "report.json").exists()

    # ...and the shipped training config trains on the result (shrunk to a few steps).
    from gptjax.config import load_config
    from gptjax.trainer import train

    out = tmp_path / "legal_web"
    run = load_config(REPO / "configs/legal_web.py", [
        f"data.shards={out / 'web'}:0.5,{out / 'web_warc'}:0.2,{out / 'legal'}:0.3", "model.num_layers=1",
        "model.d_model=32", "model.num_heads=2", "model.block_size=32", "train.steps=2", "train.batch_size=4",
        "train.eval_batches=1", "train.sample_tokens=0", "optim.warmup_steps=1"])
    final = train(run, tmp_path / "run")
    assert {"val_loss", "val_loss_web", "val_loss_web_warc", "val_loss_legal"} <= set(final)

    from gptjax import evaluate, hf, sample

    assert evaluate.main(["--workdir", str(tmp_path / "run"), "--task", "custom",
                          "--data", str(REPO / "examples/legal_mc.jsonl")]) == 0
    scored = json.loads((tmp_path / "run" / "eval" / "custom-legal_mc-step2.json").read_text())
    assert scored["counts"]["examples"] == 16 and 0 <= scored["metrics"]["acc"] <= 1
    capsys.readouterr()
    assert sample.main(["--workdir", str(tmp_path / "run"), "--prompt", "The court held that",
                        "--max_new_tokens", "8", "--stop", "\n\n"]) == 0
    assert capsys.readouterr().out.startswith("The court held that")

    tuned = load_config(REPO / "configs/legal_web.py", [
        f"data.shards={out / 'legal'}", "model.num_layers=1", "model.d_model=32", "model.num_heads=2",
        "model.block_size=32", "train.steps=2", "train.batch_size=4", "train.eval_batches=1", "train.sample_tokens=0",
        "optim.warmup_steps=1", "optim.lr=6e-5", f"checkpoint.init_from={tmp_path / 'run'}"])
    assert "val_loss" in train(tuned, tmp_path / "legal_ft")

    assert hf.main(["export", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tokens = np.arange(1, 17, dtype=np.int32)[None] * 37
    with torch.no_grad():
        theirs = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    from gptjax.run import load_run

    ours = np.asarray(load_run(tmp_path / "run").model(tokens))
    assert np.abs(ours - theirs[..., :ours.shape[-1]]).max() < 1e-4


def test_parquet_text_and_local_hf_dataset_sources(tmp_path):
    import datasets

    rng = random.Random(1)
    texts = [paragraph(rng, 120) for _ in range(12)]
    ds = datasets.Dataset.from_dict({"id": [f"d{i}" for i in range(12)], "text": texts})
    ds.save_to_disk(str(tmp_path / "saved"))  # what load_dataset(...).save_to_disk writes; stands in for a hub name
    ds.to_parquet(str(tmp_path / "pq" / "part-0.parquet"))
    (tmp_path / "txt").mkdir()
    for i, text in enumerate(texts[:5]):
        (tmp_path / "txt" / f"{i}.txt").write_text(text)
    cfg = base_config()
    cfg.sources.hub = source("hf", str(tmp_path / "saved"))
    cfg.sources.pq = source("parquet", str(tmp_path / "pq"))
    cfg.sources.txt = source("text", str(tmp_path / "txt"))
    cfg.tokenizer.name = "byte"
    report = prepare(cfg, tmp_path / "out")
    assert {name: r["dedup"]["documents_out"] for name, r in report["sources"].items()} == \
        {"hub": 12, "pq": 12, "txt": 5}


def test_a_parquet_file_without_the_text_column_is_named_before_any_work(tmp_path):
    import datasets

    from gptjax.data import DataError

    (tmp_path / "pq").mkdir()
    datasets.Dataset.from_dict({"id": ["a"], "text": ["fine"]}).to_parquet(str(tmp_path / "pq" / "good.parquet"))
    datasets.Dataset.from_dict({"id": ["b"], "body": ["lost"]}).to_parquet(str(tmp_path / "pq" / "other.parquet"))
    cfg = base_config()
    cfg.sources.pq = source("parquet", str(tmp_path / "pq"))
    with pytest.raises(DataError, match=r"sources.pq: .*other.parquet has no 'text' column \(its columns: id, "
                                        r"body\); set --config.sources.pq.text_key"):
        prepare(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_task_is_an_error_naming_it_not_a_pending_job(tmp_path, monkeypatch):
    import gptjax.data.prepare as prepare_module
    from gptjax.data import DataError

    planted_corpus(tmp_path / "raw", random.Random(2))
    real = prepare_module.cleaning_pipeline

    def failing(cfg, s, out):
        def explode(data, rank=0, world_size=1):
            for document in data:
                raise RuntimeError(f"boom in {document.id}")
            yield from data

        steps = real(cfg, s, out)
        return steps[:1] + [explode] + steps[1:]

    monkeypatch.setattr(prepare_module, "cleaning_pipeline", failing)
    cfg = base_config()
    cfg.tokenizer.name = "byte"  # no hub: the tokenizer is checked before any stage
    cfg.sources.web = source("jsonl", str(tmp_path / "raw"))
    with pytest.raises(DataError, match=r"1 of 1 tasks of web/clean failed \(task 0: RuntimeError: boom in doc0\); "
                                        r"its log: .*task_00000.log"):
        prepare(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "report.json").exists()


def test_executor_kinds(tmp_path):
    from gptjax.data.executors import make_executor

    cfg = base_config()
    cfg.executor.kind, cfg.executor.partition, cfg.executor.tasks = "slurm", "batch", 4
    executor = make_executor([], tmp_path / "logs", cfg)  # built, not submitted
    assert type(executor).__name__ == "SlurmPipelineExecutor" and executor.tasks == 4
    cfg.executor.partition = ""
    cfg.sources.web = source("jsonl", str(tmp_path))
    with pytest.raises(ConfigError, match="needs executor.partition"):
        from gptjax.data.prepare import validate
        validate(cfg)
    cfg.executor.kind = "ray"
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="executor.kind='ray' needs ray"):
            make_executor([], tmp_path / "logs", cfg)


def test_slurm_submits_once_with_this_environment_and_waits_for_queued_jobs(tmp_path, monkeypatch):
    import os
    import sys

    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "sbatch_calls"
    # A fake Slurm: sbatch keeps each script it is given and answers with a job id; squeue lists the job while
    # the file `queued` exists.
    (fake / "sbatch").write_text(f"""#!/bin/sh
for last; do :; done
cp "$last" "{tmp_path}/script-$(ls {tmp_path} | grep -c script-)"
echo "$@" >> "{calls}"
echo "Submitted batch job 4242"
""")
    (fake / "squeue").write_text(f"""#!/bin/sh
[ -e "{tmp_path}/down" ] && echo "slurm_load_jobs error: Unable to contact slurm controller" >&2 && exit 1
[ -e "{tmp_path}/queued" ] && echo PENDING
[ -e "{tmp_path}/forgotten" ] && echo "slurm_load_jobs error: Invalid job id specified" >&2 && exit 1
exit 0
""")
    for tool in ("sbatch", "squeue"):
        (fake / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    planted_corpus(tmp_path / "raw", random.Random(3))
    cfg = base_config()
    cfg.tokenizer.name = "byte"  # no hub: the tokenizer is checked before any stage
    cfg.sources.web = source("jsonl", str(tmp_path / "raw"))
    cfg.executor.kind, cfg.executor.partition = "slurm", "batch"

    first = prepare(cfg, tmp_path / "out")
    assert first["pending"] == ["web"]
    submitted = len(calls.read_text().splitlines())
    assert submitted >= 1
    script = (tmp_path / "script-0").read_text()
    assert f'export PATH="{os.path.dirname(sys.executable)}:$PATH"' in script  # the submitting environment
    assert "launch_pickled_pipeline" in script

    (tmp_path / "queued").write_text("")
    again = prepare(cfg, tmp_path / "out")  # jobs still pending: nothing is submitted again
    assert again["pending"] == ["web"] and len(calls.read_text().splitlines()) == submitted
    (tmp_path / "down").write_text("")  # squeue cannot say: nothing is submitted either
    assert prepare(cfg, tmp_path / "out")["pending"] == ["web"] and len(calls.read_text().splitlines()) == submitted
    (tmp_path / "down").unlink()

    # The job ended and its task failed: the next run says so, naming the task's error; the one after it submits
    # the unfinished task again.
    (tmp_path / "queued").unlink()
    (tmp_path / "forgotten").write_text("")
    task_log = tmp_path / "out" / "logs" / "web" / "clean" / "logs" / "task_00000.log"
    task_log.parent.mkdir(parents=True, exist_ok=True)
    task_log.write_text("Traceback (most recent call last):\n  ...\nMemoryError: out of memory on node7\n")
    with pytest.raises(DataError, match=r"1 of 1 tasks of web/clean failed in Slurm job 4242 \(task 0: MemoryError: "
                                        r"out of memory on node7\).*fix the cause and run the same command: those "
                                        r"tasks are submitted again"):
        prepare(cfg, tmp_path / "out")
    assert len(calls.read_text().splitlines()) == submitted
    assert prepare(cfg, tmp_path / "out")["pending"] == ["web"]
    assert len(calls.read_text().splitlines()) > submitted


def test_language_identification_works_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = random.Random(2)
    raw = tmp_path / "raw"
    raw.mkdir()
    german = ("Der Hof entschied, dass der Vertrag nichtig war, weil die Parteien sich über den Preis nicht "
              "geeinigt hatten und die Berufung deshalb ohne Erfolg blieb. ") * 8
    docs = [{"id": f"en{i}", "text": paragraph(rng, 150)} for i in range(6)] + [{"id": "de", "text": german}]
    (raw / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg = base_config()
    cfg.sources.web = source("jsonl", str(raw))
    cfg.stages.languages, cfg.stages.gopher_quality, cfg.stages.gopher_repetition = "en", False, False
    cfg.tokenizer.name = "byte"
    report = prepare(cfg, tmp_path / "out")
    language = next(row for row in report["sources"]["web"]["cleaning"] if "Language" in row["step"])
    assert language["dropped_language_de"] == 1 and language["forwarded"] == 6
