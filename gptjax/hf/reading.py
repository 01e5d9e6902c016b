"""Reading a Hugging Face directory: its config, safetensors weights and tokenizer as a gptjax Run (load_hf),
or written out as a gptjax run directory (import_hf)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from safetensors import safe_open

from gptjax.checkpoint import Checkpoints
from gptjax.config import base_config, to_yaml, validate
from gptjax.hf import GPT2_LAYER, INDEX_FILE, SUPPORTED, WEIGHTS_FILE, HFError, dotted, fresh_directory
from gptjax.model import ModelConfig
from gptjax.run import Run
from gptjax.rundir import RunDir, write_atomically
from gptjax.sharding import make_mesh
from gptjax.state import setup
from gptjax.step import TrainState
from gptjax.tokenizer import BPETokenizer, Tokenizer, build_tokenizer, env_flag, hub_reachable


def _resolve_source(src: str | Path) -> tuple[Path, str, str]:
    """(local directory, name, tokenizer spec) for a local HF model directory, or for a hub name when
    huggingface_hub can fetch it. The spec is what data.tokenizer should say to rebuild the same tokenizer."""
    path = Path(src).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise HFError(f"{src} is not a Hugging Face model directory (no config.json); pass the directory that "
                          "save_pretrained wrote")
        return path, path.resolve().name, str(path.resolve())  # absolute: the config may be used from elsewhere
    text = str(src)
    if text.startswith(("/", ".", "~")) or text.count("/") > 1:
        raise HFError(f"{src} does not exist; pass a local Hugging Face model directory (config.json + "
                      f"{WEIGHTS_FILE})")
    return _download(text), text, text


def _download(name: str) -> Path:
    """A hub model's config, safetensors and tokenizer files (nothing else), from the cache or the hub."""
    hint = "pass a local directory written by save_pretrained"
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise HFError(f"{name!r} is not a local directory and huggingface_hub is not installed to fetch it; "
                      f"{hint}") from None
    patterns = ["*.json", "*.safetensors", "*.txt", "tokenizer.model"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns, local_files_only=True))
    except Exception:  # noqa: BLE001  (not cached: fall through to the network)
        pass
    if env_flag("HF_HUB_OFFLINE") or env_flag("TRANSFORMERS_OFFLINE"):
        reason = "offline (HF_HUB_OFFLINE) and not in the local cache"
    elif not hub_reachable():
        reason = "the hub is unreachable and it is not in the local cache"
    else:
        try:
            return Path(snapshot_download(name, allow_patterns=patterns))
        except Exception as e:  # noqa: BLE001
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    raise HFError(f"{name!r} is not a local directory and could not be fetched from the Hugging Face hub "
                  f"({reason}); {hint}")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise HFError(f"cannot read {path}: {e}") from None


FLOAT_DTYPES = ("BF16", "F16", "F32", "F64")


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a host array. Read through safetensors' flax loader, since its numpy
    loader cannot hold bfloat16 (numpy has no such type), which most released checkpoints use; on the CPU device,
    so a large model is never staged through one accelerator's memory."""
    tensors = {}
    try:
        with jax.default_device(jax.devices("cpu")[0]), safe_open(str(file), framework="flax") as f:
            for name in f.keys():
                dtype = f.get_slice(name).get_dtype()
                if dtype not in FLOAT_DTYPES:
                    raise HFError(f"{file}: tensor {name} has dtype {dtype}; only float checkpoints (F32, F16, "
                                  "BF16) can be imported")
                tensors[name] = np.asarray(f.get_tensor(name))
    except HFError:
        raise
    except Exception as e:  # noqa: BLE001  (the Rust reader raises its own error types)
        raise HFError(f"cannot read {file}: {str(e).splitlines()[0]}") from None
    return tensors


def _read_weights(directory: Path) -> dict[str, np.ndarray]:
    if (directory / WEIGHTS_FILE).exists():
        return _read_safetensors(directory / WEIGHTS_FILE)
    if (directory / INDEX_FILE).exists():  # sharded: weight_map names the file of each tensor
        files = sorted(set(_read_json(directory / INDEX_FILE).get("weight_map", {}).values()))
        tensors = {}
        for file in files:
            tensors.update(_read_safetensors(directory / file))
        return tensors
    if any(directory.glob("*.bin")) or any(directory.glob("*.pt")):
        raise HFError(f"{directory} holds PyTorch pickle weights but no {WEIGHTS_FILE}; convert them once with "
                      "transformers (from_pretrained(...).save_pretrained(dir, safe_serialization=True))")
    raise HFError(f"{directory} has no {WEIGHTS_FILE} (or {INDEX_FILE}); pass a directory written by save_pretrained")


def _architecture(hf: dict, where: Path) -> str:
    archs, model_type = hf.get("architectures") or [], hf.get("model_type")
    arch = archs[0] if archs else None
    if model_type == "gpt2" and arch in (None, "GPT2LMHeadModel"):
        return "gpt2"
    if model_type == "llama" and arch in (None, "LlamaForCausalLM"):
        return "llama"
    raise HFError(f"{where}/config.json describes {arch or '?'} (model_type {model_type!r}); gptjax converts only "
                  f"{SUPPORTED}")


def _require(hf: dict, where: Path, key: str, ok, default, what: str):
    value = hf.get(key, default)
    if not ok(value):
        raise HFError(f"{where}/config.json has {key}={value!r}, which gptjax's model cannot represent ({what})")
    return value


def _gpt2_model_config(hf: dict, where: Path) -> dict:
    _require(hf, where, "activation_function", lambda v: v in ("gelu_new", "gelu_pytorch_tanh"), "gelu_new",
             "the MLP is gelu with the tanh approximation: gelu_new or gelu_pytorch_tanh")
    _require(hf, where, "scale_attn_weights", lambda v: v is True, True, "attention scores are scaled by 1/sqrt(hd)")
    _require(hf, where, "scale_attn_by_inverse_layer_idx", lambda v: not v, False, "no per-layer attention scaling")
    _require(hf, where, "add_cross_attention", lambda v: not v, False, "a decoder without cross-attention")
    d = hf["n_embd"]
    return dict(vocab_size=hf["vocab_size"], block_size=hf["n_positions"], num_layers=hf["n_layer"],
                num_heads=hf["n_head"], d_model=d, d_ff=hf.get("n_inner") or 4 * d, norm="layernorm",
                norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)), mlp="gelu", position="learned",
                tie_embeddings=bool(hf.get("tie_word_embeddings", True)), use_bias=True,
                init_std=float(hf.get("initializer_range", 0.02)))


def _llama_rope_theta(hf: dict, where: Path) -> float:
    # transformers 5 writes rope_parameters {rope_type, rope_theta}; older files have rope_theta and rope_scaling.
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = params.get("rope_type") or params.get("type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise HFError(f"{where}/config.json uses rope scaling {kind!r} (rope_scaling/rope_parameters), which gptjax's "
                      "model cannot represent (plain RoPE with one rope_theta only)")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _llama_model_config(hf: dict, where: Path) -> dict:
    _require(hf, where, "hidden_act", lambda v: v == "silu", "silu", "the gated MLP is swiglu: silu")
    attention_bias = bool(hf.get("attention_bias", False))
    mlp_bias = bool(hf.get("mlp_bias", False))
    if attention_bias != mlp_bias:
        raise HFError(f"{where}/config.json has attention_bias={attention_bias} but mlp_bias={mlp_bias}; gptjax's "
                      "model has one use_bias switch for every projection")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    _require(hf, where, "head_dim", lambda v: v in (None, d // heads), None,
             f"the head size is hidden_size / num_attention_heads = {d // heads}")
    return dict(vocab_size=hf["vocab_size"], block_size=hf["max_position_embeddings"],
                num_layers=hf["num_hidden_layers"], num_heads=heads,
                num_kv_heads=hf.get("num_key_value_heads") or heads,
                d_model=d, d_ff=hf["intermediate_size"], norm="rmsnorm", norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
                mlp="swiglu", position="rope", rope_theta=_llama_rope_theta(hf, where),
                tie_embeddings=bool(hf.get("tie_word_embeddings", False)), use_bias=attention_bias,
                init_std=float(hf.get("initializer_range", 0.02)))


class _Tensors:
    """The checkpoint's tensors, taken one by one, so that whatever is left over (a part gptjax would silently
    drop) is an error rather than a quietly different model."""

    def __init__(self, tensors: dict[str, np.ndarray], where: Path, ignore: str):
        self.tensors, self.where, self.ignore = dict(tensors), where, re.compile(ignore)

    def take(self, name: str) -> np.ndarray:
        if name not in self.tensors:
            raise HFError(f"{self.where} has no tensor {name}; the weights do not match config.json")
        return np.asarray(self.tensors.pop(name), dtype=np.float32)  # fp32 master weights, as gptjax trains

    def drop(self, name: str) -> None:
        self.tensors.pop(name, None)

    def check_consumed(self) -> None:
        left = sorted(k for k in self.tensors if not self.ignore.search(k))
        if left:
            more = f" and {len(left) - 5} more" if len(left) > 5 else ""
            raise HFError(f"{self.where} holds tensors gptjax's model has no place for: {', '.join(left[:5])}{more}")


def _stack(take, n: int, fmt: str, transform=lambda a: a) -> np.ndarray:
    return np.stack([transform(take(fmt.format(i))) for i in range(n)])


def _gpt2_weights(tensors: dict, mc: ModelConfig, where: Path) -> dict[str, np.ndarray]:
    # Keys are "transformer.h.0..." from save_pretrained, "h.0..." in the original OpenAI-converted files.
    pre = "transformer." if "transformer.wte.weight" in tensors else ""
    # attn.bias / attn.masked_bias are causal-mask buffers some files carry, not parameters.
    t = _Tensors(tensors, where, r"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$")
    L = mc.num_layers
    out = {"wte.embedding": t.take(pre + "wte.weight"), "wpe.embedding": t.take(pre + "wpe.weight")[: mc.block_size]}
    for ours, theirs in GPT2_LAYER:
        out[f"blocks.{ours}"] = _stack(t.take, L, pre + "h.{}." + theirs)  # Conv1D weights are [in, out] already
    out["ln_f.scale"], out["ln_f.bias"] = t.take(pre + "ln_f.weight"), t.take(pre + "ln_f.bias")
    if not mc.use_bias and (nonzero := [k for k, a in out.items() if k.endswith(".bias") and np.any(a)]):
        raise HFError(f"{where}/config.json records a bias-free gptjax model (gptjax.use_bias=false), but "
                      f"{nonzero[0]} is not zero: the model was trained with biases since; remove the 'gptjax' "
                      "entry from config.json to load it with its biases")
    if mc.tie_embeddings:
        t.drop("lm_head.weight")  # a copy of wte when a file stores it
    else:
        out["lm_head.kernel"] = t.take("lm_head.weight").T
    t.check_consumed()
    return out


def _llama_weights(tensors: dict, mc: ModelConfig, where: Path) -> dict[str, np.ndarray]:
    t = _Tensors(tensors, where, r"rotary_emb\.inv_freq$")  # a buffer older files carry; recomputed from theta
    L, layer = mc.num_layers, "model.layers.{}."
    T = lambda a: a.T  # noqa: E731  (torch Linear weights are [out, in]; gptjax kernels are [in, out])
    qkv = ["q_proj", "k_proj", "v_proj"]
    out = {
        "wte.embedding": t.take("model.embed_tokens.weight"),
        "blocks.ln_1.scale": _stack(t.take, L, layer + "input_layernorm.weight"),
        "blocks.ln_2.scale": _stack(t.take, L, layer + "post_attention_layernorm.weight"),
        # q, k, v heads side by side in one kernel: q heads first, then k, then v (see model.Attention).
        "blocks.attn.qkv.kernel": np.stack([np.concatenate(
            [t.take(f"model.layers.{i}.self_attn.{p}.weight").T for p in qkv], axis=1) for i in range(L)]),
        "blocks.attn.out.kernel": _stack(t.take, L, layer + "self_attn.o_proj.weight", T),
        "blocks.mlp.gate.kernel": _stack(t.take, L, layer + "mlp.gate_proj.weight", T),
        "blocks.mlp.up.kernel": _stack(t.take, L, layer + "mlp.up_proj.weight", T),
        "blocks.mlp.down.kernel": _stack(t.take, L, layer + "mlp.down_proj.weight", T),
        "ln_f.scale": t.take("model.norm.weight"),
    }
    if mc.use_bias:
        out["blocks.attn.qkv.bias"] = np.stack([np.concatenate(
            [t.take(f"model.layers.{i}.self_attn.{p}.bias") for p in qkv]) for i in range(L)])
        out["blocks.attn.out.bias"] = _stack(t.take, L, layer + "self_attn.o_proj.bias")
        for p, ours in [("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")]:
            out[f"blocks.mlp.{ours}.bias"] = _stack(t.take, L, layer + f"mlp.{p}.bias")
    if mc.tie_embeddings:
        t.drop("lm_head.weight")
    else:
        out["lm_head.kernel"] = t.take("lm_head.weight").T
    t.check_consumed()
    return out


def _hf_tokenizer(directory: Path, name: str) -> Tokenizer:
    """The model's tokenizer as a gptjax BPETokenizer (any HF `tokenizers` model), named like data.tokenizer would
    name it, so that a fine-tuning run with data.tokenizer=SRC matches the imported run's tokenizer."""
    if (directory / "tokenizer.json").exists() or (directory / "vocab.json").exists():
        tokenizer = build_tokenizer(str(directory))
    elif not (directory / "tokenizer.model").exists():
        raise HFError(f"{directory} has no tokenizer (tokenizer.json, vocab.json + merges.txt, or tokenizer.model); "
                      "save it beside the model with AutoTokenizer.from_pretrained(...).save_pretrained(dir)")
    else:  # only a sentencepiece tokenizer.model: transformers converts it to a fast (tokenizers) tokenizer
        try:
            from transformers import AutoTokenizer

            backend = AutoTokenizer.from_pretrained(str(directory)).backend_tokenizer
        except Exception as e:  # noqa: BLE001  (missing transformers, sentencepiece, or files)
            raise HFError(f"{directory} has only a sentencepiece tokenizer.model, which transformers could not convert "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); save a tokenizer.json "
                          "beside the model with AutoTokenizer.from_pretrained(...).save_pretrained(dir)") from None
        tokenizer = BPETokenizer(backend, name=name)
    tokenizer.name = name
    tokenizer.chat_template = _chat_template(directory)
    return tokenizer


def _chat_template(directory: Path) -> str | None:
    """The model's chat template: chat_template.jinja (transformers 5 writes it), or tokenizer_config.json's
    chat_template (a string, or a list of named templates, of which 'default' or the first)."""
    if (directory / "chat_template.jinja").exists():
        return (directory / "chat_template.jinja").read_text(encoding="utf-8")
    config = directory / "tokenizer_config.json"
    template = _read_json(config).get("chat_template") if config.exists() else None
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None


def hf_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a Hugging Face model directory (with its chat template), without reading the weights."""
    directory, name, _ = _resolve_source(path)
    return _hf_tokenizer(directory, name)


def _run_config(model_values: dict, tokenizer_spec: str) -> ml_collections.ConfigDict:
    cfg = base_config()
    for key, value in model_values.items():
        cfg.model[key] = value
    cfg.data.tokenizer = tokenizer_spec  # fine-tuning on new text re-reads the tokenizer from the same place
    validate(cfg)
    return cfg


def model_values(path: str | Path) -> dict:
    """The gptjax model section that a Hugging Face model directory's config.json describes (nothing else read)."""
    directory, _, _ = _resolve_source(path)
    return _model_values(_read_json(directory / "config.json"), directory)


def _model_values(hf: dict, directory: Path) -> dict:
    arch = _architecture(hf, directory)
    try:
        values = _gpt2_model_config(hf, directory) if arch == "gpt2" else _llama_model_config(hf, directory)
    except KeyError as e:
        raise HFError(f"{directory}/config.json lacks {e.args[0]}, which a {arch} config needs") from None
    # What the HF architecture cannot say, recorded by gptjax's export: a bias-free model exported as GPT-2 (which
    # always has biases) carries zeros, and comes back bias-free.
    if (hf.get("gptjax") or {}).get("use_bias") is False:
        values["use_bias"] = False
    return values


def load_hf(path: str | Path, *, block_size: int | None = None, mesh=None):
    """A Hugging Face GPT2LMHeadModel or LlamaForCausalLM directory (or, when no such directory exists and
    huggingface_hub can fetch it, a hub name) as a gptjax Run at step 0, with parameters on `mesh` (default: every
    device). block_size caps the context (a RoPE model's max_position_embeddings can be far longer than needed;
    a learned position table is cut to it)."""
    directory, name, spec = _resolve_source(path)
    hf = _read_json(directory / "config.json")
    arch = _architecture(hf, directory)
    values = _model_values(hf, directory)
    if block_size is not None:
        if not 0 < block_size <= values["block_size"]:
            raise HFError(f"block_size={block_size} must be in 1..{values['block_size']} (the model's context)")
        values["block_size"] = block_size
    tokenizer = _hf_tokenizer(directory, name)
    if tokenizer.vocab_size > values["vocab_size"]:
        raise HFError(f"the tokenizer in {directory} has {tokenizer.vocab_size} tokens but the model only "
                      f"{values['vocab_size']} (config.json vocab_size); the tokenizer does not belong to this model")
    cfg = _run_config(values, spec)
    model_config = ModelConfig.from_config(cfg.model, tokenizer.vocab_size)
    weights = _read_weights(directory)
    arrays = (_gpt2_weights if arch == "gpt2" else _llama_weights)(weights, model_config, directory)

    built = setup(cfg, model_config, mesh if mesh is not None else make_mesh(cfg.mesh))

    def fill(key_path, leaf):
        key = dotted(key_path)
        array = arrays[key]
        if array.shape != leaf.shape:
            raise HFError(f"{directory}: {key} converts to shape {array.shape} but the model built from config.json "
                          f"expects {leaf.shape}; the weights do not match config.json")
        return array.astype(leaf.dtype)

    params = jax.tree_util.tree_map_with_path(fill, built.abstract_state.params)
    params = jax.device_put(params, built.shardings.params)
    return Run(cfg, model_config, tokenizer, built.graphdef, params, 0)


def import_hf(src: str | Path, run_dir: str | Path, *, block_size: int | None = None) -> Path:
    """Writes a gptjax run directory from a Hugging Face model: config.yaml, tokenizer/, and checkpoints/0 holding
    the converted parameters with a fresh optimizer state, so gptjax.sample, load_run, evaluation and
    checkpoint.init_from=RUN_DIR use it like a trained run."""
    run_dir = RunDir(run_dir)
    fresh_directory(run_dir.path, "run directory")
    mesh = make_mesh(base_config().mesh)
    run = load_hf(src, block_size=block_size, mesh=mesh)
    built = setup(run.config, run.model_config, mesh)
    opt_state = jax.jit(built.tx.init, out_shardings=built.shardings.opt_state)(run.params)
    step = jax.device_put(jnp.zeros((), jnp.int32), built.shardings.step)
    state = TrainState(step=step, params=run.params, opt_state=opt_state)

    run_dir.path.mkdir(parents=True, exist_ok=True)
    write_atomically(run_dir.config, to_yaml(run.config))
    run.tokenizer.save(run_dir.tokenizer)
    checkpoints = Checkpoints(run_dir.path)
    try:
        checkpoints.save(0, state, run.config.to_dict(), {"seed": run.config.train.seed, "imported_from": str(src)})
    finally:
        checkpoints.close()
    return run_dir.path
