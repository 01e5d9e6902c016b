"""checkpoint.init_from: start a run from another model's weights (fine-tuning), as nanoGPT's init_from does.

    source = Source.find(cfg.checkpoint.init_from)    # RUN, RUN/checkpoints/STEP, or a Hugging Face directory
    adopted = adopt_architecture(cfg, source)         # the model section follows the source's architecture
    params = weights_from(source, built, tokenizer)   # its weights, checked against this run's model and data

The architecture comes from the source: a model key the config leaves at its built-in default takes the source's
value, so `init_from=RUN` alone is enough. A key the config sets (in its file or on the command line) to something
else is an error, and one error lists every such key. What does not change the weights' meaning (attention kernel,
remat, dtype, dropout: config.RUNTIME_MODEL_KEYS) stays the config's own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gptjax.checkpoint import CheckpointError
from gptjax.config import RUNTIME_MODEL_KEYS, ConfigError, base_config, read_saved
from gptjax.hf import HFError, dotted, hf_tokenizer, load_hf, model_values
from gptjax.model import ModelConfig
from gptjax.run import RunError, load_run
from gptjax.rundir import RunDir
from gptjax.state import Setup
from gptjax.tokenizer import BPETokenizer, Tokenizer, TokenizerError, load_tokenizer

# Not taken from the source: the vocabulary follows this run's tokenizer (checked against the source's), and the
# initialization (its scale, zero output projections) does not matter to weights that are loaded.
_NOT_ADOPTED = (*RUNTIME_MODEL_KEYS, "vocab_size", "init_std", "zero_init_out")


@dataclasses.dataclass
class Source:
    text: str  # as the config says it
    path: Path
    step: int | None  # a run's checkpoint step (None: its newest)
    kind: str  # "run" or "hf"

    @classmethod
    def find(cls, text: str) -> "Source":
        path, step = Path(text), None
        if path.name.isdigit() and RunDir(path.parent.parent).checkpoints == path.parent:
            path, step = path.parent.parent, int(path.name)
        if RunDir(path).config.exists():
            return cls(text, path, step, "run")
        if (path / "config.json").exists():
            return cls(text, path, step, "hf")
        raise ConfigError(f"checkpoint.init_from={text} is not a run directory (with config.yaml and "
                          "checkpoints/), a RUN/checkpoints/STEP directory, or a Hugging Face model directory")

    def tokenizer(self) -> Tokenizer:
        """The source's tokenizer (with its chat template, if it has one), without reading its weights."""
        try:
            if self.kind == "run":
                return load_tokenizer(RunDir(self.path).tokenizer)
            return hf_tokenizer(self.path)
        except (HFError, TokenizerError) as e:
            raise ConfigError(f"checkpoint.init_from={self.text}: {e}") from None

    def model(self) -> dict:
        """The source's model section (nothing but configuration files read)."""
        try:
            if self.kind == "run":
                return dict(read_saved(RunDir(self.path).config).get("model") or {})
            return model_values(self.path)
        except HFError as e:
            raise ConfigError(f"checkpoint.init_from={self.text}: {e}") from None


def _architecture(model: dict, vocab_size: int = 1) -> dict:
    """The keys that decide the weights, with defaults resolved (d_ff=0 is 4*d_model, num_kv_heads=0 is MHA)."""
    defaults = base_config().model.to_dict()
    fields = {k: v for k, v in {**defaults, **model}.items() if k in defaults}
    resolved = ModelConfig(**{**fields, "vocab_size": vocab_size})
    fields.update(d_ff=resolved.ff_dim, num_kv_heads=resolved.kv_heads)
    return {k: v for k, v in fields.items() if k not in _NOT_ADOPTED}


def adopt_architecture(cfg, source: Source) -> dict:
    """Sets cfg.model's architecture keys that are at their built-in defaults to the source's; ConfigError naming
    every key set to another value than the source's. A Hugging Face source may be given a shorter block_size
    (its position table is cut). Returns {key: value} of what was taken from the source."""
    defaults = base_config().model.to_dict()
    theirs = _architecture(source.model())
    mine = _architecture(cfg.model.to_dict())
    adopted, conflicts = {}, []
    for key, value in theirs.items():
        if mine[key] == value:
            continue
        if key in ("d_ff", "num_kv_heads") and cfg.model[key] == 0:  # 0 stands for a default that now differs
            adopted[key] = value
        elif cfg.model[key] == defaults[key]:
            adopted[key] = value
        elif key == "block_size" and source.kind == "hf" and mine[key] < value:
            continue  # a shorter context keeps the first block_size positions
        else:
            conflicts.append(f"model.{key}={cfg.model[key]!r} (the source has {value!r})")
    if conflicts:
        raise ConfigError(f"checkpoint.init_from={source.text} holds another architecture than this config sets: "
                          f"{', '.join(conflicts)}; leave those keys out to take the source's, or start from "
                          "another source")
    for key, value in adopted.items():
        cfg.model[key] = value
    return adopted


def weights_from(source: Source, built: Setup, tokenizer: Tokenizer):
    """The source's parameters for this run's model (the optimizer starts afresh): the architecture and the
    tokenizer must be the same (the tokenizer by its content, not its name or folder)."""
    try:
        if source.kind == "run":
            other = load_run(source.path, source.step, mesh=built.mesh)
        else:  # a shorter context than the pretrained one keeps the first block_size positions
            other = load_hf(source.path, block_size=built.model_config.block_size, mesh=built.mesh)
    except (RunError, HFError, CheckpointError) as e:
        raise ConfigError(f"checkpoint.init_from={source.text}: {e}") from None
    mine = _architecture(dataclasses.asdict(built.model_config), built.model_config.vocab_size)
    theirs = _architecture(dataclasses.asdict(other.model_config), other.model_config.vocab_size)
    if wrong := [f"model.{k}={mine[k]!r} (the source has {theirs[k]!r})" for k in mine if theirs[k] != mine[k]]:
        raise ConfigError(f"checkpoint.init_from={source.text} holds another architecture than this run's: "
                          f"{', '.join(wrong)}; use the same architecture to start from its weights")
    params = other.params
    if other.tokenizer != tokenizer:  # by content: the same vocabulary and rules under any name or folder
        added = added_tokens(other.tokenizer, tokenizer)
        if added is None:
            raise ConfigError(f"checkpoint.init_from={source.text} was trained with the "
                              f"{other.tokenizer.describe()}, but this run's data uses the {tokenizer.describe()}; "
                              "tokenize the data with the same tokenizer (data.tokenizer)")
        params = grow_vocabulary(params, built, [tokenizer.token_id(t) for t in added], other.tokenizer.vocab_size)
        print(f"tokens new to the model: {', '.join(added)} (their embedding rows start at the mean of the "
              "others)")
    elif other.model_config.vocab_size != built.model_config.vocab_size:
        params = grow_vocabulary(params, built, [], other.tokenizer.vocab_size)
    print(f"initialized from {source.path} step {other.step} (weights only; the optimizer starts afresh)")
    return params


def added_tokens(theirs: Tokenizer, mine: Tokenizer) -> list[str] | None:
    """The special tokens `mine` adds to `theirs` (a chat template's), or None when they differ otherwise."""
    if not (isinstance(theirs, BPETokenizer) and isinstance(mine, BPETokenizer)):
        return None
    have = {t.content for t in theirs.tokenizer.get_added_tokens_decoder().values()}
    extra = [t.content for _, t in sorted(mine.tokenizer.get_added_tokens_decoder().items()) if t.content not in have]
    return extra if extra and theirs.with_special_tokens(extra) == mine else None


def grow_vocabulary(params, built: Setup, new_ids: list[int], known: int):
    """The source's parameters with the token table (and an untied head) resized to this model's vocabulary: rows
    of tokens the source had are kept, and every other row (new tokens, padding) starts at the mean of the
    source's first `known` rows, so a new token begins as an average token rather than as noise."""
    size = built.model_config.vocab_size

    def resize(key_path, table):
        axis = {"wte.embedding": 0, "lm_head.kernel": 1}.get(dotted(key_path))
        if axis is None:
            return table
        table = np.moveaxis(np.asarray(jax.device_get(table)), axis, 0)
        out = np.repeat(table[:known].mean(axis=0, keepdims=True), size, axis=0).astype(table.dtype)
        keep = np.setdiff1d(np.arange(min(known, size, len(table))), new_ids)
        out[keep] = table[keep]
        return jnp.asarray(np.moveaxis(out, 0, axis))

    return jax.device_put(jax.tree_util.tree_map_with_path(resize, params), built.shardings.params)
