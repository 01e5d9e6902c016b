"""Run configuration: the full schema, loading (.py or .yaml), dotted overrides, validation.

Every key a run understands is declared in `base_config()` with its default and type, so a config file only
states what differs, a typo is an error instead of a silently ignored setting, and the resolved config written
into the run directory (config.yaml) repeats the run exactly.

    python -m gptjax.train --config configs/shakespeare_char.py --config.model.dropout=0.1
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import os
import re
import traceback
from pathlib import Path
from typing import Any

import ml_collections
import yaml
from ml_collections import config_dict

from gptjax.errors import GptjaxError
from gptjax.tasks import TASKS


class ConfigError(GptjaxError, ValueError):
    """A config that cannot run: the message names the key and what would be valid."""


# Keys whose value must be one of a fixed set. One table, used by validation and by error messages.
CHOICES: dict[str, tuple[str, ...]] = {
    "model.norm_position": ("pre", "post"),
    "model.norm": ("layernorm", "rmsnorm"),
    "model.mlp": ("gelu", "swiglu", "relu2"),
    "model.position": ("learned", "rope"),
    "model.attention": ("xla", "cudnn", "pallas", "auto"),
    "model.remat": ("none", "full", "dots"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.param_dtype": ("float32", "bfloat16"),
    "data.source": ("stdlib", "text", "shards", "files", "chat", "preferences"),
    "train.nonfinite": ("stop", "skip"),
    "optim.name": ("adamw", "muon"),
    "optim.schedule": ("cosine", "wsd"),
}


def _optional(kind: type) -> config_dict.FieldReference:
    return config_dict.placeholder(kind)


def base_config() -> ml_collections.ConfigDict:
    """Every key with its default. Config files start from this and change what they need."""
    c = ml_collections.ConfigDict()

    # The defaults train the built-in job: a small character model on Python's own standard library.
    c.model = dict(
        vocab_size=0,  # 0: the tokenizer's vocabulary size; larger pads the table (GPT-2: 50257 -> 50304)
        block_size=128,  # context length; also the size of the learned position table
        num_layers=4,
        num_heads=4,
        num_kv_heads=0,  # 0: same as num_heads (MHA); 1: MQA; in between: GQA
        d_model=128,
        d_ff=0,  # 0: 4*d_model for gelu/relu2, 8/3*d_model rounded up to a multiple of 64 for swiglu
        norm_position="pre",
        norm="layernorm",
        norm_eps=1e-5,
        mlp="gelu",
        position="learned",
        rope_theta=10000.0,
        qk_norm=False,
        tie_embeddings=True,
        use_bias=True,
        dropout=0.0,  # on embeddings and on each residual branch
        attn_dropout=0.0,  # on attention probabilities; only the 'xla' attention computes them
        init_std=0.02,
        # Output projections of attention and MLP (the residual branches' last matrices) start at zero, so every
        # block starts as the identity (modded-nanogpt); false: normal(init_std / sqrt(2 * num_layers)) as GPT-2
        zero_init_out=False,
        # > 0: logits = cap * tanh(logits / cap), bounded to (-cap, cap) (Gemma 2, modded-nanogpt use 30 or 15)
        logit_softcap=0.0,
        dtype="float32",  # compute dtype; parameters stay in param_dtype (fp32 master weights)
        param_dtype="float32",
        attention="xla",
        remat="none",  # none | full | dots: recompute activations in the backward pass to fit larger batches
        scan_layers=False,  # true: compile one layer and loop over it, so compile time stays flat in depth
    )
    c.data = dict(
        # stdlib: this interpreter's standard library sources; text: data.path; shards: data.shards; files: data.path
        # is files or folders of .txt, .jsonl, .parquet, .warc, cleaned and tokenized into RUN/prepared first;
        # chat: conversations for supervised fine-tuning (SFT); preferences: prompt/chosen/rejected pairs for DPO
        # (see docs/post_training.md)
        source="stdlib",
        # source=text: a local text file; files: PATH[,PATH...] ([NAME=]PATH); chat, preferences: a .jsonl file,
        # a folder of them, a `datasets` folder or a hub dataset name
        path=_optional(str),
        url=_optional(str),  # where to download data.path from when it is missing and the machine is online
        # Prepared token shards: DIR (with train/, optional val/ and tokenizer/), or a weighted mixture
        # DIR:WEIGHT,DIR:WEIGHT,... (weights are normalized; without weights, every window is equally likely).
        shards=_optional(str),
        tokenizer="char",  # char | byte | gpt2 | a tokenizer.json / directory with vocab.json+merges.txt | hub name
        val_fraction=0.1,  # the tail of the text held out for validation (nanoGPT: 10%)
        max_chars=0,  # 0: all; otherwise read at most this many characters of the source
        # A text source that changed since RUN/data was tokenized from it stops the run from starting; true:
        # tokenize it again (with the run's tokenizer) and continue the run on the new text.
        retokenize=False,
        # chat, preferences: held-out records (else data.val_fraction of the records, chosen by their content)
        val_path=_optional(str),
        # chat, preferences: the Jinja chat template: '' (the tokenizer's own, as an imported model has it, else
        # the default), 'default' (ChatML), a .jinja file, or the template itself; its <|...|> tokens are added
        chat_template="",
        pack=True,  # chat: pack several conversations into each row (attention never crosses between them)
        # Pretraining on token streams: attention stops at end-of-text tokens, so a window's documents do not see
        # each other (positions restart at each); needs a tokenizer with an end-of-text token
        document_mask=False,
    )
    # Direct Preference Optimization (data.source=preferences): the reference is the model the run starts from
    c.dpo = dict(
        beta=0.1,  # how far the policy may move from the reference (larger: closer to it)
    )
    c.optim = dict(
        # adamw: every parameter; muon: Muon for the blocks' matrices (at muon_lr), AdamW for embeddings, an untied
        # head, norms and biases (see gptjax/optim.py)
        name="adamw",
        lr=1e-3,
        min_lr=1e-4,  # the schedule decays to this (Muon's to min_lr scaled by muon_lr / lr)
        # cosine: warmup, then a cosine to min_lr at decay_steps; wsd: warmup, lr held, then a linear decay to
        # min_lr over the last `cooldown` fraction of decay_steps (warmup-stable-decay)
        schedule="cosine",
        cooldown=0.2,  # schedule=wsd: the fraction of decay_steps spent decaying to min_lr
        warmup_steps=100,
        decay_steps=0,  # 0: train.steps
        weight_decay=0.1,
        decay_embeddings=False,  # also apply weight decay to token/position embeddings
        beta1=0.9,
        beta2=0.99,
        eps=1e-8,
        grad_clip=1.0,  # global-norm clipping; 0 disables
        muon_lr=0.02,  # optim.name=muon: the peak learning rate of the matrices Muon updates
        muon_momentum=0.95,  # Muon's momentum (Nesterov)
        muon_weight_decay=0.0,  # decoupled weight decay of those matrices (times their learning rate)
    )
    c.train = dict(
        steps=2000,
        batch_size=12,  # sequences per optimizer step (across micro-batches)
        grad_accum=1,  # micro-batches per step; batch_size must be divisible by it
        eval_every=250,  # 0: only at the end
        eval_batches=20,
        # > 0: stop at the first evaluation whose validation loss is at most this (a checkpoint is saved there);
        # metrics.jsonl records the step, tokens and seconds it took (see `python -m gptjax.bench --to-loss`)
        target_loss=0.0,
        # z-loss (PaLM): adds z_loss * mean(logsumexp(logits)^2) to the training loss, which keeps the softmax's
        # normalizer near 1 (logits from drifting); validation reports the cross-entropy alone
        z_loss=0.0,
        log_every=50,
        seed=1337,
        sample_tokens=300,  # printed at the end of training; 0: no sample
        sample_prompt="",
        # Benchmark tasks scored at every evaluation, "TASK:PATH[:LIMIT],...": e.g. "hellaswag:eval/hs.jsonl:200,
        # custom:legal_mc.jsonl" (tasks: hellaswag, winogrande, mmlu, lambada, custom; see gptjax.evaluate).
        eval_tasks="",
        nonfinite="stop",  # a NaN/Inf loss or gradient: stop (keeping the last checkpoint), or skip the update
        max_consecutive_skips=10,  # with nonfinite=skip: this many skipped steps in a row stop the run
        # JAX's persistent compilation cache, so a resume or re-run skips compiling: 'auto' (~/.cache/gptjax/xla,
        # or $GPTJAX_CACHE_DIR), a directory, or '' (off). See gptjax/compile_cache.py.
        compile_cache="auto",
    )
    # Devices as a (data, fsdp, tensor) mesh; -1 takes the devices the other axes leave (see gptjax/sharding.py).
    c.mesh = dict(
        data=-1,
        fsdp=1,
        tensor=1,
    )
    # Several processes (hosts): each runs the same command with its own process_id; auto finds them on SLURM.
    c.distributed = dict(
        coordinator_address="",  # host:port of process 0
        num_processes=1,
        process_id=0,
        auto=True,
        init_timeout=300,  # seconds to wait for every process to join
        heartbeat_timeout=60,  # seconds without a sign of life before a process is declared dead and the run stops
    )
    c.checkpoint = dict(
        every=0,  # 0: only at the end of training (and when a signal stops the run)
        keep=2,  # the newest checkpoints kept; older ones are deleted
        keep_best=False,  # also keep the checkpoint with the lowest validation loss, in RUN/checkpoints_best
        init_from=_optional(str),  # start from another run's weights (RUN or RUN/checkpoints/STEP): fine-tuning
    )
    # Where metrics go besides RUN/metrics.jsonl (always written): TensorBoard and Weights & Biases.
    c.log = dict(
        tensorboard=True,  # event files in RUN/tensorboard/ (`tensorboard --logdir RUN/tensorboard`)
        wandb=False,  # also log to Weights & Biases (`pip install wandb`, then `wandb login`)
        wandb_project="gptjax",
        wandb_entity="",  # "": your default W&B entity
        wandb_name="",  # "": the run directory's name
    )
    c.lock()  # assigning an unknown key now raises instead of adding it
    return c


# ----------------------------------------------------------------------------------------------------------------
# Loading and overriding


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None, *,
                base=None, check=None, extend=None) -> ml_collections.ConfigDict:
    """Loads base() (default: base_config), then a .py (get_config()) or .yaml file, then extend(cfg) when given,
    then `key.path=value` overrides, and validates with check() (default: validate). Other commands pass their
    own schema."""
    base, check = base or base_config, check or validate
    cfg = base()
    if path is not None:
        path = find_config(path)
        if path.suffix == ".py":
            cfg = _load_py(path)
        elif path.suffix in (".yaml", ".yml"):
            _apply_mapping(cfg, _load_yaml(path), prefix="")
        else:
            raise ConfigError(f"config file {path}: expected a .py (with get_config()) or .yaml file")
    if extend is not None:
        extend(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        set_value(cfg, key, parse_override(cfg, key, raw))
    check(cfg)
    return cfg


# The configs that ship with gptjax, inside the package (the repository's configs/ points here), so that a preset
# is named from any directory: --config gpt2_small, --config data/legal_web.
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


def shipped_configs() -> list[str]:
    return sorted(p.relative_to(SHIPPED_CONFIGS).with_suffix("").as_posix() for p in SHIPPED_CONFIGS.rglob("*.py"))


def find_config(path: str | os.PathLike) -> Path:
    """A config file's path: the file itself, or the shipped config of that name (with or without .py)."""
    given = Path(path)
    if given.exists():
        return given
    shipped = SHIPPED_CONFIGS / given.with_suffix(".py") if not given.is_absolute() else None
    if shipped is not None and given.suffix in ("", ".py") and shipped.exists():
        return shipped
    names = shipped_configs()
    close = difflib.get_close_matches(given.with_suffix("").as_posix(), names, n=1)
    raise ConfigError(f"config file {path} does not exist" + (f"; did you mean {close[0]}?" if close else "")
                      + f" (shipped configs: {', '.join(names)})")


def parse_override(cfg: ml_collections.ConfigDict, key: str, raw: str) -> Any:
    """The value of `--config.KEY=RAW`: the text as it is for a string key (a prompt like 'ROMEO:' is not YAML),
    otherwise read as YAML (numbers, true/false, null)."""
    if raw == "":
        return ""
    parent, leaf = _parent(cfg, key), key.split(".")[-1]
    if parent is not None and not isinstance(parent[leaf], ml_collections.ConfigDict) and \
            parent.get_ref(leaf).get_type() is str:
        return None if raw in ("null", "~") else raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"--config.{key}={raw} is not a value gptjax can read (as YAML: {problem}); give a "
                          "number, true/false, or text") from None


def _parent(cfg: ml_collections.ConfigDict, key: str):
    """The section holding key's leaf, or None when the path does not exist (set_value then names the problem)."""
    node = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, ml_collections.ConfigDict) and parts[-1] in node else None


def _load_py(path: Path) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(f"gptjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"config file {path} has a syntax error at line {e.lineno}: {e.msg}") from None
    except Exception as e:  # noqa: BLE001  (the file is the user's code: whatever it raises, name it)
        raise ConfigError(f"config file {path} failed to load: {_where(e, path)}") from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {path} has no get_config() function; define one that returns "
                          "gptjax.config.base_config() with your changes")
    try:
        cfg = module.get_config()
    except (AttributeError, KeyError) as e:  # ConfigDict raises these for unknown keys
        raise ConfigError(f"config file {path}: {_explain_unknown(e)}") from None
    except TypeError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"config file {path}: get_config() raised {_where(e, path)}") from None
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"config file {path}: get_config() must return gptjax.config.base_config() with changes")
    return cfg


def _where(error: Exception, path: Path) -> str:
    """'ZeroDivisionError: division by zero (line 3)': the error and the line of the config file it came from."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if Path(frame.filename).resolve() == path.resolve()]
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    return text + (f" (line {lines[-1]})" if lines else "")


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections (model, data, optim, train, ...)")
    return data


def _apply_mapping(cfg: ml_collections.ConfigDict, data: dict, prefix: str) -> None:
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            _lookup_section(cfg, full)  # raises for an unknown section
            _apply_mapping(cfg, value, prefix=f"{full}.")
        else:
            set_value(cfg, full, value)


def _lookup_section(cfg: ml_collections.ConfigDict, key: str):
    node = cfg
    for i, part in enumerate(key.split(".")):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            _raise_unknown(node, key.split(".")[: i + 1])
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"{key} is a value, not a section")
    return node


def _raise_unknown(node, parts: list[str]):
    key = ".".join(parts)
    valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
    close = difflib.get_close_matches(parts[-1], valid, n=1)
    hint = f" (did you mean {'.'.join(parts[:-1] + close)}?)" if close else ""
    where = ".".join(parts[:-1]) or "the config"
    if not valid:  # an open section (prepare's sources) that the config file has put nothing in
        raise ConfigError(f"unknown key {key}: {where} has no {parts[-1]!r} (it is empty); add one in a config "
                          f"file first" + (", or name files with --source NAME=PATH" if where == "sources" else ""))
    raise ConfigError(f"unknown key {key}{hint}; valid keys in {where}: {', '.join(valid)}")


def _explain_unknown(e: Exception) -> str:
    text = str(e)
    key = re.search(r'Key "([^"]+)" does not exist', text) or re.search(r"'([^']+)'", text)
    hint = re.search(r'Did you mean "([^"]+)"', text)
    if key is None:
        return text.splitlines()[0]
    return f"unknown key {key.group(1)}" + (f" (did you mean {hint.group(1)}?)" if hint else "")


def set_value(cfg: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets cfg[key] (a dotted path) with a type check that names the key."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            _raise_unknown(node, parts[: i + 1])
        node = node[part]
    leaf = parts[-1]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        _raise_unknown(node, parts)
    if isinstance(node[leaf], ml_collections.ConfigDict):
        raise ConfigError(f"{key} is a section; set one of its keys: {', '.join(sorted(node[leaf].keys()))}")
    expected = node.get_ref(leaf).get_type()
    value = _coerce(key, value, expected)
    node[leaf] = value


def _coerce(key: str, value: Any, expected: type | None) -> Any:
    if value is None or expected is None:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):  # YAML reads "3e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a number where a string goes: a tokenizer name like "1234" stays valid
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{key} must be {expected.__name__}, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------------------------
# Validation: everything that can be known to be wrong before a device is touched


FILES_HINT = ("; for your own files (.txt, .jsonl, .parquet, .warc, or folders of them) use data.source=files "
              "with data.path=PATH[,PATH...] (or `train --data PATH`): they are cleaned, deduplicated and tokenized "
              "into the run directory first")
NOT_PLAIN_TEXT = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".parquet", ".warc", ".warc.gz", ".gz", ".zip")


def validate(cfg: ml_collections.ConfigDict) -> None:
    for key, allowed in CHOICES.items():
        section, leaf = key.split(".")
        if section != "model" and cfg[section][leaf] not in allowed:  # the model's: check_model below
            hint = FILES_HINT if key == "data.source" else ""
            raise ConfigError(f"{key}={cfg[section][leaf]!r} is not one of: {', '.join(allowed)}{hint}")

    m, d, o, t = cfg.model, cfg.data, cfg.optim, cfg.train
    check_model(m, vocab_size_known=False)
    _positive(t, "train", ("steps", "batch_size", "grad_accum", "eval_batches", "log_every"))
    _non_negative(t, "train", ("eval_every", "sample_tokens", "max_consecutive_skips"))
    _non_negative(o, "optim", ("warmup_steps", "decay_steps", "weight_decay", "grad_clip"))
    _non_negative(cfg.checkpoint, "checkpoint", ("every",))
    if cfg.checkpoint.keep < 1:
        raise ConfigError(f"checkpoint.keep={cfg.checkpoint.keep} must be at least 1")
    if t.batch_size % t.grad_accum:
        raise ConfigError(f"train.grad_accum={t.grad_accum} must divide train.batch_size={t.batch_size}")
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={d.val_fraction} must be in [0, 1)")
    if d.source in ("chat", "preferences") and not d.path:
        raise ConfigError(f"data.source={d.source!r} needs data.path: a .jsonl file of records (or a folder of them, "
                          "a `datasets` folder, a hub dataset name); see docs/post_training.md")
    if d.document_mask and d.source in ("chat", "preferences"):
        raise ConfigError(f"data.document_mask is for pretraining on token streams; data.source={d.source!r} "
                          "already keeps each example apart (data.pack)")
    if o.name == "muon" and not (o.muon_lr > 0 and 0 <= o.muon_momentum < 1 and o.muon_weight_decay >= 0):
        raise ConfigError(f"optim.muon_lr={o.muon_lr} must be > 0, optim.muon_momentum={o.muon_momentum} in [0, 1) "
                          f"and optim.muon_weight_decay={o.muon_weight_decay} zero or positive")
    if not 0 < o.cooldown <= 1:
        raise ConfigError(f"optim.cooldown={o.cooldown} must be in (0, 1]: the fraction of the steps the wsd "
                          "schedule spends decaying")
    if t.target_loss < 0 or t.z_loss < 0:
        raise ConfigError(f"train.target_loss={t.target_loss} and train.z_loss={t.z_loss} must be zero (off) or "
                          "positive")
    if t.z_loss and d.source == "preferences":
        raise ConfigError("train.z_loss is for next-token objectives (pretraining, SFT); DPO's loss has no "
                          "softmax normalizer to hold near 1: set it to 0")
    if cfg.dpo.beta <= 0:
        raise ConfigError(f"dpo.beta={cfg.dpo.beta} must be positive")
    if d.source in ("text", "files") and not d.path:
        raise ConfigError(f"data.source={d.source!r} needs data.path, e.g. --config.data.path=input.txt"
                          + (" (or a folder, or several paths separated by commas)" if d.source == "files" else ""))
    if d.source == "text" and d.path and Path(d.path).is_dir():
        raise ConfigError(f"data.path={d.path} is a folder; data.source='text' reads one text file{FILES_HINT}")
    if d.source == "text" and d.path and d.path.lower().endswith(NOT_PLAIN_TEXT):
        raise ConfigError(f"data.path={d.path} is not plain text: data.source='text' would train on its raw bytes "
                          f"(JSON syntax and all){FILES_HINT}")
    if d.source == "shards" and not d.shards:
        raise ConfigError("data.source='shards' needs data.shards (a directory with train/ and val/ token shards)")
    if cfg.log.wandb and not cfg.log.wandb_project:
        raise ConfigError("log.wandb=true needs log.wandb_project (the W&B project to log to)")
    if o.lr <= 0 or o.min_lr < 0 or o.min_lr > o.lr:
        raise ConfigError(f"optim.lr={o.lr} must be > 0 and optim.min_lr={o.min_lr} within [0, lr]")
    if d.source == "shards":
        parse_mixture(d.shards)  # the spec's syntax; its directories are read when the data is prepared
    parse_eval_tasks(t.eval_tasks, check_files=False)


def uses_segments(cfg: ml_collections.ConfigDict) -> bool:
    """Whether the batches carry segment ids (packed SFT rows, or document-masked pretraining windows), which
    the attention kernel must honour."""
    return (cfg.data.source == "chat" and cfg.data.pack) or cfg.data.document_mask


def check_model(m, *, vocab_size_known: bool = True) -> None:
    """The model section's own rules, the one place they are written: m is the config's model section, or a
    ModelConfig's fields as a dict. vocab_size_known=False allows vocab_size 0 (the tokenizer's size, filled in
    later)."""
    get = m.__getitem__
    for key, allowed in CHOICES.items():
        section, leaf = key.split(".")
        if section == "model" and get(leaf) not in allowed:
            raise ConfigError(f"{key}={get(leaf)!r} is not one of: {', '.join(allowed)}")
    positive = ("block_size", "num_layers", "num_heads", "d_model") + (("vocab_size",) if vocab_size_known else ())
    for leaf in positive:
        if get(leaf) <= 0:
            raise ConfigError(f"model.{leaf}={get(leaf)} must be positive")
    for leaf in ("vocab_size", "num_kv_heads", "d_ff"):
        if get(leaf) < 0:
            raise ConfigError(f"model.{leaf}={get(leaf)} must be zero or positive")
    heads, width = get("num_heads"), get("d_model")
    if width % heads:
        raise ConfigError(f"model.num_heads={heads} must divide model.d_model={width}")
    kv = get("num_kv_heads") or heads
    if heads % kv:
        raise ConfigError(f"model.num_kv_heads={kv} must divide model.num_heads={heads}")
    if get("position") == "rope" and (width // heads) % 2:
        raise ConfigError(f"model.position='rope' needs an even head size, got {width // heads}")
    if get("logit_softcap") < 0:
        raise ConfigError(f"model.logit_softcap={get('logit_softcap')} must be zero (off) or positive")
    for leaf in ("dropout", "attn_dropout"):
        if not 0.0 <= get(leaf) < 1.0:
            raise ConfigError(f"model.{leaf}={get(leaf)} must be in [0, 1)")
    if get("attn_dropout") > 0 and get("attention") != "xla":
        raise ConfigError(f"model.attn_dropout>0 needs model.attention='xla' (fused kernels compute no attention "
                          f"probabilities to drop); got attention={get('attention')!r}")


def _positive(section, name, keys):
    for k in keys:
        if section[k] <= 0:
            raise ConfigError(f"{name}.{k}={section[k]} must be positive")


def _non_negative(section, name, keys):
    for k in keys:
        if section[k] < 0:
            raise ConfigError(f"{name}.{k}={section[k]} must be zero or positive")


# ----------------------------------------------------------------------------------------------------------------
# The config's small languages, turned into structures (each checked here, once)


@dataclasses.dataclass(frozen=True)
class ShardSource:
    """One prepared shard directory of data.shards (DIR with train/, optional val/ and tokenizer/)."""

    name: str  # the directory's name: how the source is named in logs and metrics (val_loss_<name>)
    path: Path
    weight: float | None  # None: no weights given (every window equally likely)


def parse_mixture(spec: str) -> dict[str, ShardSource]:
    """data.shards: 'DIR' or 'DIR:WEIGHT,DIR:WEIGHT,...' -> {name: ShardSource}, in the order given."""
    sources: dict[str, ShardSource] = {}
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        path, _, weight = item.rpartition(":") if ":" in item else (item, "", "")
        try:
            value = float(weight) if weight else None
        except ValueError:
            raise ConfigError(f"data.shards: {item!r} is not DIR or DIR:WEIGHT (weight a number)") from None
        name = Path(path).name
        if name in sources:
            raise ConfigError(f"data.shards names two sources {name!r}; give each source its own directory name")
        sources[name] = ShardSource(name, Path(path), value)
    weights = [s.weight for s in sources.values()]
    if not sources or (None in weights and len(set(weights)) > 1):
        raise ConfigError(f"data.shards={spec!r}: give one directory, or a weight for every directory")
    return sources


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """One entry of train.eval_tasks."""

    name: str  # the metrics' prefix: the task, or custom_<file stem>
    task: str
    path: Path
    limit: int | None


def parse_eval_tasks(spec: str, *, check_files: bool = True) -> list[EvalTask]:
    """train.eval_tasks 'TASK:PATH[:LIMIT],...' -> [EvalTask]; check_files: each PATH must exist (checked when a
    run starts; a config file may name files of another machine)."""
    tasks: list[EvalTask] = []
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        task, _, rest = item.partition(":")
        path, limit = rest, None
        head, _, tail = rest.rpartition(":")
        if head and tail.isdigit():
            path, limit = head, int(tail)
        if task not in TASKS or not path:
            raise ConfigError(f"train.eval_tasks: {item!r} is not TASK:PATH[:LIMIT] with TASK one of "
                              f"{', '.join(TASKS)}")
        if check_files and not Path(path).exists():
            raise ConfigError(f"train.eval_tasks: {path} (for {task}) does not exist")
        name = f"{task}_{Path(path).stem}" if task == "custom" else task
        if any(name == other.name for other in tasks):
            raise ConfigError(f"train.eval_tasks names {name} twice")
        tasks.append(EvalTask(name, task, Path(path), limit))
    return tasks


# ----------------------------------------------------------------------------------------------------------------
def settings_warnings(cfg: ml_collections.ConfigDict) -> list[str]:
    """Settings that are valid but most likely not what was meant; the trainer prints them at start."""
    o, t = cfg.optim, cfg.train
    found = []
    if o.warmup_steps > t.steps:
        found.append(f"optim.warmup_steps={o.warmup_steps} is more than train.steps={t.steps}: the learning rate "
                     f"never reaches optim.lr={o.lr:g}; lower optim.warmup_steps")
    if o.decay_steps and o.decay_steps < o.warmup_steps:
        found.append(f"optim.decay_steps={o.decay_steps} ends before optim.warmup_steps={o.warmup_steps}: the "
                     "learning rate decays before it has warmed up; raise optim.decay_steps (0: train.steps)")
    elif o.decay_steps > t.steps > o.warmup_steps:  # a pinned decay that a shortened run never finishes
        done = (t.steps - o.warmup_steps) / (o.decay_steps - o.warmup_steps)
        end = o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * done))
        found.append(f"optim.decay_steps={o.decay_steps} is more than train.steps={t.steps}: the run ends at "
                     f"lr {end:.3g}, before the cosine reaches optim.min_lr={o.min_lr:g}; set optim.decay_steps=0 "
                     "to decay over train.steps")
    return found


# Continuing a run with a changed config


# Model keys that change how the model runs, not what its parameters are: a run may continue with them changed,
# and weights move between models that differ only in them.
RUNTIME_MODEL_KEYS = ("attention", "remat", "scan_layers", "dtype", "dropout", "attn_dropout")
RESUMABLE_SECTIONS = ("model", "optim", "train", "mesh", "distributed", "checkpoint", "dpo")
RUNTIME_DATA_KEYS = ("retokenize",)  # how a run treats its data, not which data it is


def resume_changes(saved: dict, cfg: ml_collections.ConfigDict, where: str) -> list[str]:
    """What differs between a run's saved config (a dict read from its config.yaml) and cfg, as 'key: old -> new'
    lines; ConfigError when the model or the data differ, which a run cannot continue with."""
    new = cfg.to_dict()
    saved_optimizer = saved.get("optim", {}).get("name", "adamw")  # runs from before optim.name used AdamW
    if saved_optimizer != new["optim"]["name"]:
        raise ConfigError(f"{where} holds a run trained with optim.name={saved_optimizer!r}, whose optimizer state "
                          f"cannot continue as {new['optim']['name']!r}; start a new --workdir from its weights "
                          f"(--config.checkpoint.init_from={where}), or keep optim.name={saved_optimizer}")
    for section in ("model", "data"):
        for key, value in new[section].items():
            if key in {"model": RUNTIME_MODEL_KEYS, "data": RUNTIME_DATA_KEYS}[section]:
                continue
            if saved.get(section, {}).get(key, value) != value:
                raise ConfigError(
                    f"{where} holds a run with {section}.{key}={saved[section][key]!r}, not {value!r}; "
                    f"use a new --workdir (or the saved config: --config {where}/config.yaml)")
    return [f"{s}.{k}: {saved[s][k]!r} -> {v!r}"
            for s in RESUMABLE_SECTIONS for k, v in new[s].items()
            if s in saved and saved[s].get(k, v) != v and (s != "model" or k in RUNTIME_MODEL_KEYS)]


def read_saved(path: Path) -> dict:
    """A run's config.yaml as a plain dict (not validated: an older run may hold keys since renamed)."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path} cannot be read ({e}); restore it, or use a new --workdir") from None


def to_yaml(cfg: ml_collections.ConfigDict) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_config(cfg: ml_collections.ConfigDict, path: str | os.PathLike) -> None:
    Path(path).write_text(to_yaml(cfg))
