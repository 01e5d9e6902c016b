"""A run directory before training starts: checking it may be continued, preparing its data, and the inputs a run
takes from elsewhere (another run's weights, benchmark tasks), each checked with a one-line error before any work.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import ml_collections
import yaml

from gptjax.checkpoint import CheckpointError
from gptjax.config import ConfigError
from gptjax.data import DataError
from gptjax.data.loader import WindowLoader
from gptjax.data.shards import open_split
from gptjax.data.sources import prepare_splits, read_text, stdlib_corpus
from gptjax.model import ModelConfig
from gptjax.state import Setup, load_run
from gptjax.tokenizer import Tokenizer, build_tokenizer, load_tokenizer


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, ...); the message says what happened and what is kept."""


# ----------------------------------------------------------------------------------------------------------------
# Run directory and data


# Model keys that change how the model runs, not what its parameters are: a run may continue with them changed.
RUNTIME_MODEL_KEYS = ("attention", "remat", "scan_layers", "dtype", "dropout", "attn_dropout")


def check_resumable(run_dir: Path, cfg: ml_collections.ConfigDict) -> None:
    """A run directory may be continued with a changed schedule, mesh or kernel, but not with a different model
    or different data."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists() or not (run_dir / "tokenizer").exists():
        return  # nothing was built from the saved config yet (e.g. its data could not be read): start afresh
    try:
        saved = yaml.safe_load(saved_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{saved_path} cannot be read ({e}); restore it, or use a new --workdir") from None
    new = cfg.to_dict()
    for section in ("model", "data"):
        for key, value in new[section].items():
            if section == "model" and key in RUNTIME_MODEL_KEYS:
                continue
            if saved.get(section, {}).get(key, value) != value:
                raise ConfigError(
                    f"{run_dir} holds a run with {section}.{key}={saved[section][key]!r}, not {value!r}; "
                    f"use a new --workdir (or the saved config: --config {run_dir}/config.yaml)")
    changed = [f"{s}.{k}: {saved[s][k]!r} -> {v!r}"
               for s in ("model", "optim", "train", "mesh", "distributed", "checkpoint")
               for k, v in new[s].items()
               if s in saved and saved[s].get(k, v) != v and (s != "model" or k in RUNTIME_MODEL_KEYS)]
    if changed:
        print(f"continuing {run_dir} with changed settings: {'; '.join(changed)}")


def ensure_writable(run_dir: Path) -> None:
    """Fails at start, before any work, when the run directory cannot be written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"cannot write to the run directory {run_dir}: {e.strerror or e}; choose a writable "
                            "--workdir") from None


def write_atomically(path: Path, text: str) -> None:
    """A file is either its old or its new content, never half of one (a full disk, a kill)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise TrainingError(f"cannot write {path}: {e.strerror or e}; free disk space or choose a writable "
                            "--workdir") from None


def parse_mixture(spec: str) -> dict[str, tuple[Path, float | None]]:
    """data.shards: 'DIR' or 'DIR:WEIGHT,DIR:WEIGHT,...' -> {name: (dir, weight or None)}; a source is named by
    its directory."""
    sources: dict[str, tuple[Path, float | None]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        path, _, weight = item.rpartition(":") if ":" in item else (item, "", "")
        try:
            value = float(weight) if weight else None
        except ValueError:
            raise ConfigError(f"data.shards: {item!r} is not DIR or DIR:WEIGHT (weight a number)") from None
        name = Path(path).name
        if name in sources:
            raise ConfigError(f"data.shards names two sources {name!r}; give each source its own directory name")
        sources[name] = (Path(path), value)
    weights = [w for _, w in sources.values()]
    if not sources or (None in weights and len(set(weights)) > 1):
        raise ConfigError(f"data.shards={spec!r}: give one directory, or a weight for every directory")
    return sources


def prepare_data(cfg: ml_collections.ConfigDict, run_dir: Path, write: bool = True):
    """Returns (tokenizer, {source: train shards}, {source: val shards}, weights or None).

    Text sources are tokenized once into RUN/data/{train,val}; prepared shard directories are read in place.
    write=False (processes other than the first) only reads what the first process wrote."""
    d = cfg.data
    data_dir, tokenizer_dir = run_dir / "data", run_dir / "tokenizer"
    if d.source == "shards":
        mixture = parse_mixture(d.shards)
        train_sources = {name: open_split(path / "train") for name, (path, _) in mixture.items()}
        val_sources = {name: open_split(path / "val") for name, (path, _) in mixture.items() if (path / "val").exists()}
        tokenizer = shards_tokenizer(d.tokenizer, [path for path, _ in mixture.values()])
        if write:
            tokenizer.save(tokenizer_dir)  # the run directory alone is enough to sample from the model
        weights = None if None in [w for _, w in mixture.values()] else {n: w for n, (_, w) in mixture.items()}
        return tokenizer, train_sources, val_sources, weights

    if write and not (tokenizer_dir.exists() and (data_dir / "train").exists()):
        text = stdlib_corpus(d.max_chars) if d.source == "stdlib" else read_text(d.path, d.url, d.max_chars)
        tokenizer = build_tokenizer(d.tokenizer, text)
        counts = prepare_splits(text, tokenizer, data_dir, d.val_fraction, name=d.source)
        print(f"data: {len(text):,} characters -> {counts} tokens ({tokenizer.name}, vocab {tokenizer.vocab_size})")
        tokenizer.save(tokenizer_dir)  # last: its presence marks the data as complete
    tokenizer = load_tokenizer(tokenizer_dir)
    val = {d.source: open_split(data_dir / "val")} if (data_dir / "val").exists() else {}
    return tokenizer, {d.source: open_split(data_dir / "train")}, val, None


def shards_tokenizer(spec: str, roots: list[Path]) -> Tokenizer:
    """The tokenizer saved beside prepared shards (ROOT/tokenizer), the same for every source; else data.tokenizer."""
    saved = [load_tokenizer(root / "tokenizer") for root in roots if (root / "tokenizer").exists()]
    if saved:
        if any(t != saved[0] for t in saved):
            raise DataError(f"the shard directories {', '.join(map(str, roots))} were tokenized with different "
                            "tokenizers; a mixture needs one")
        return saved[0]
    if spec == "char":
        raise DataError(f"{roots[0]} has no tokenizer/ directory and a char tokenizer cannot be rebuilt without its "
                        "text; save the tokenizer there, or set data.tokenizer to the one the shards were made with")
    return build_tokenizer(spec)


def parse_eval_tasks(spec: str) -> list[tuple[str, str, Path, int | None]]:
    """train.eval_tasks 'TASK:PATH[:LIMIT],...' -> [(name, task, path, limit)]; checked before training starts."""
    from gptjax.tasks import TASKS

    tasks = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        task, _, rest = item.partition(":")
        path, limit = rest, None
        head, _, tail = rest.rpartition(":")
        if head and tail.isdigit():
            path, limit = head, int(tail)
        if task not in TASKS or not path:
            raise ConfigError(f"train.eval_tasks: {item!r} is not TASK:PATH[:LIMIT] with TASK one of "
                              f"{', '.join(TASKS)}")
        if not Path(path).exists():
            raise ConfigError(f"train.eval_tasks: {path} (for {task}) does not exist")
        name = f"{task}_{Path(path).stem}" if task == "custom" else task
        if any(name == other for other, *_ in tasks):
            raise ConfigError(f"train.eval_tasks names {name} twice")
        tasks.append((name, task, Path(path), limit))
    return tasks


def check_vocabulary(loader: WindowLoader, val_sources: dict, model_config: ModelConfig, tokenizer: Tokenizer) -> None:
    """Token ids the embedding table does not have would be read as garbage (XLA clamps gathers), not fail."""
    biggest = max([loader.max_token_id()] + [s.max_token_id() for shards in val_sources.values() for s in shards])
    if biggest >= model_config.vocab_size:
        raise DataError(f"the data holds token id {biggest}, beyond the model's vocabulary of "
                        f"{model_config.vocab_size} ({tokenizer.name}): the shards were written with another "
                        "tokenizer; set data.tokenizer to that one (or save it as tokenizer/ beside the shards)")


def init_params(source: str, built: Setup, tokenizer: Tokenizer):
    """checkpoint.init_from: the weights of another run (RUN, or RUN/checkpoints/STEP) or of a Hugging Face model
    directory (GPT-2 or Llama), for fine-tuning; the optimizer starts afresh. The architecture and the tokenizer
    must be the same."""
    path = Path(source)
    step = None
    if path.name.isdigit() and path.parent.name == "checkpoints":
        path, step = path.parent.parent, int(path.name)
    try:
        if (path / "config.yaml").exists():
            other = load_run(path, step, mesh=built.mesh)
        elif (path / "config.json").exists():
            from gptjax.hf import HFError, load_hf

            try:  # a shorter context than the pretrained one keeps the first block_size positions
                other = load_hf(path, block_size=built.model_config.block_size, mesh=built.mesh)
            except HFError as e:
                raise ConfigError(f"checkpoint.init_from={source}: {e}") from None
        else:
            raise ConfigError(f"checkpoint.init_from={source} is not a run directory (with config.yaml and "
                              "checkpoints/), a RUN/checkpoints/STEP directory, or a Hugging Face model directory")
    except (FileNotFoundError, CheckpointError) as e:
        raise ConfigError(f"checkpoint.init_from={source}: {e}") from None
    def architecture(model_config: ModelConfig) -> dict:  # defaults resolved: d_ff=0 is the same model as 4*d
        fields = dataclasses.asdict(model_config)
        fields.update(d_ff=model_config.ff_dim, num_kv_heads=model_config.kv_heads)
        return {k: v for k, v in fields.items() if k not in RUNTIME_MODEL_KEYS and k != "init_std"}

    mine, theirs = architecture(built.model_config), architecture(other.model_config)
    for key, value in mine.items():
        if theirs[key] != value:
            raise ConfigError(f"checkpoint.init_from={source} holds a model with model.{key}={theirs[key]!r}, but "
                              f"this config has {value!r}; use the same architecture to start from its weights")
    if other.tokenizer != tokenizer:
        raise ConfigError(f"checkpoint.init_from={source} was trained with the {other.tokenizer.name} tokenizer, "
                          f"but this run's data uses {tokenizer.name}; tokenize the data with the same tokenizer")
    print(f"initialized from {path} step {other.step} (weights only; the optimizer starts afresh)")
    return other.params
