"""Writing a Hugging Face directory from a gptjax run: GPT-2-style models as GPT2LMHeadModel, modern ones as
LlamaForCausalLM (export_hf)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from safetensors.numpy import save_file

from gptjax.config import load_config
from gptjax.hf import GPT2_LAYER, WEIGHTS_FILE, HFError, dotted, fresh_directory
from gptjax.model import ModelConfig
from gptjax.run import load_run
from gptjax.rundir import RunDir
from gptjax.tokenizer import EOT, BPETokenizer, ByteTokenizer, CharTokenizer, Tokenizer, load_tokenizer


# What each family needs of a model: (key, value, why). Anything else cannot be written as that architecture.
_GPT2_NEEDS = [("norm_position", "pre"), ("norm", "layernorm"), ("mlp", "gelu"), ("qk_norm", False),
               ("logit_softcap", 0.0)]
_LLAMA_NEEDS = [("norm_position", "pre"), ("norm", "rmsnorm"), ("mlp", "swiglu"), ("qk_norm", False),
                ("logit_softcap", 0.0)]


def export_family(mc: ModelConfig) -> str:
    """'gpt2' or 'llama': the HF architecture that holds this model exactly, or HFError naming what prevents it.
    The position embedding decides the candidate (learned: GPT-2, rope: Llama); the rest must then agree."""
    family, needs = ("gpt2", _GPT2_NEEDS) if mc.position == "learned" else ("llama", _LLAMA_NEEDS)
    wrong = [f"model.{key}={getattr(mc, key)!r} (needs {want!r})" for key, want in needs if getattr(mc, key) != want]
    if family == "gpt2" and mc.kv_heads != mc.num_heads:
        wrong.append(f"model.num_kv_heads={mc.num_kv_heads} (GPT-2 has no grouped-query attention; needs 0)")
    if wrong:
        arch = "GPT2LMHeadModel" if family == "gpt2" else "LlamaForCausalLM"
        raise HFError(f"a model with model.position={mc.position!r} exports as {arch}, which cannot represent "
                      f"{', '.join(wrong)}; only GPT-2-style (learned, layernorm, gelu, pre-norm, MHA) and Llama-style "
                      "(rope, rmsnorm, swiglu, pre-norm) models without qk_norm or logit_softcap can be exported")
    return family


def _gpt2_export(p: dict, mc: ModelConfig) -> tuple[dict, dict]:
    L, d = mc.num_layers, mc.d_model
    zeros = lambda *shape: np.zeros((L, *shape), np.float32)  # noqa: E731
    if not mc.use_bias:  # GPT-2 always has biases: zeros make it compute exactly what the bias-free model does
        for key, shape in [("ln_1.bias", (d,)), ("ln_2.bias", (d,)), ("attn.qkv.bias", (3 * d,)),
                           ("attn.out.bias", (d,)), ("mlp.up.bias", (mc.ff_dim,)), ("mlp.down.bias", (d,))]:
            p[f"blocks.{key}"] = zeros(*shape)
        p["ln_f.bias"] = np.zeros((d,), np.float32)
    t = {"transformer.wte.weight": p["wte.embedding"], "transformer.wpe.weight": p["wpe.embedding"],
         "transformer.ln_f.weight": p["ln_f.scale"], "transformer.ln_f.bias": p["ln_f.bias"]}
    for ours, theirs in GPT2_LAYER:
        for i in range(L):
            t[f"transformer.h.{i}.{theirs}"] = p[f"blocks.{ours}"][i]
    if not mc.tie_embeddings:
        t["lm_head.weight"] = p["lm_head.kernel"].T
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": mc.vocab_size,
        "n_positions": mc.block_size, "n_embd": d, "n_layer": L, "n_head": mc.num_heads, "n_inner": mc.ff_dim,
        "activation_function": "gelu_new", "layer_norm_epsilon": mc.norm_eps, "initializer_range": mc.init_std,
        "resid_pdrop": mc.dropout, "embd_pdrop": mc.dropout, "attn_pdrop": mc.attn_dropout,
        # GPT-2 has biases everywhere, so a bias-free model is written with zeros: this says so, for the import.
        "gptjax": {"use_bias": mc.use_bias},
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": mc.tie_embeddings,
    }
    return t, config


def _llama_export(p: dict, mc: ModelConfig) -> tuple[dict, dict]:
    L, H, KV, hd = mc.num_layers, mc.num_heads, mc.kv_heads, mc.head_dim
    split = [H * hd, (H + KV) * hd]  # the fused qkv kernel's q | k | v columns
    t = {"model.embed_tokens.weight": p["wte.embedding"], "model.norm.weight": p["ln_f.scale"]}
    for i in range(L):
        layer = f"model.layers.{i}."
        t[layer + "input_layernorm.weight"] = p["blocks.ln_1.scale"][i]
        t[layer + "post_attention_layernorm.weight"] = p["blocks.ln_2.scale"][i]
        for name, kernel in zip(("q_proj", "k_proj", "v_proj"), np.split(p["blocks.attn.qkv.kernel"][i], split, 1)):
            t[layer + f"self_attn.{name}.weight"] = kernel.T
        t[layer + "self_attn.o_proj.weight"] = p["blocks.attn.out.kernel"][i].T
        for ours, theirs in [("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")]:
            t[layer + f"mlp.{theirs}.weight"] = p[f"blocks.mlp.{ours}.kernel"][i].T
        if mc.use_bias:
            for name, bias in zip(("q_proj", "k_proj", "v_proj"), np.split(p["blocks.attn.qkv.bias"][i], split)):
                t[layer + f"self_attn.{name}.bias"] = bias
            t[layer + "self_attn.o_proj.bias"] = p["blocks.attn.out.bias"][i]
            for ours, theirs in [("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")]:
                t[layer + f"mlp.{theirs}.bias"] = p[f"blocks.mlp.{ours}.bias"][i]
    if not mc.tie_embeddings:
        t["lm_head.weight"] = p["lm_head.kernel"].T
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": mc.vocab_size,
        "hidden_size": mc.d_model, "intermediate_size": mc.ff_dim, "num_hidden_layers": L,
        "num_attention_heads": H, "num_key_value_heads": KV, "head_dim": hd, "hidden_act": "silu",
        "max_position_embeddings": mc.block_size, "rms_norm_eps": mc.norm_eps, "initializer_range": mc.init_std,
        # Both spellings: transformers 5 reads rope_parameters, 4.x reads rope_theta.
        "rope_theta": mc.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": mc.rope_theta},
        "attention_bias": mc.use_bias, "mlp_bias": mc.use_bias, "attention_dropout": mc.attn_dropout,
        "tie_word_embeddings": mc.tie_embeddings,
    }
    return t, config


UNK = "<unk>"


def hf_tokenizer_object(tokenizer: Tokenizer, unk_id: int | None = None):
    """An equivalent HF `tokenizers.Tokenizer` (same ids for the same text, same decoding). A char tokenizer
    needs unk_id, a spare id of the model's table for characters outside its vocabulary: gptjax refuses those, an
    HF tokenizer cannot refuse, and without an unknown token it would drop them from the text without a word."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers

    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.tokenizer
    if isinstance(tokenizer, ByteTokenizer):
        # Byte-level BPE with the 256 single bytes as its whole vocabulary and no merges: every byte is one token
        # whose id is the byte's value, exactly as gptjax's byte tokenizer. The ByteLevel pre-tokenizer spells each
        # byte as a printable character (GPT-2's table, _bytes_to_unicode); use_regex=False keeps text unsplit.
        byte_chars = _bytes_to_unicode()
        vocab = {byte_chars[b]: b for b in range(256)}
        tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        return tok
    if isinstance(tokenizer, CharTokenizer):
        # One token per character, ids in the char tokenizer's (sorted) order. With no pre-tokenizer the whole text
        # is one word that BPE without merges splits into characters; Fuse joins them back without separators.
        if unk_id is None or unk_id < tokenizer.vocab_size:
            raise HFError(f"a char tokenizer needs a spare id ({tokenizer.vocab_size} or more) for characters outside "
                          "its vocabulary in Hugging Face form")
        vocab = {c: i for i, c in enumerate(tokenizer.chars)} | {UNK: unk_id}
        tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
        tok.decoder = decoders.Fuse()
        return tok
    raise HFError(f"no Hugging Face equivalent for the {tokenizer.kind} tokenizer {tokenizer.name}")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which the ByteLevel pre-tokenizer uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def _unk_id(tokenizer: Tokenizer, mc: ModelConfig) -> int | None:
    """For a char tokenizer, the first padded row of the model's table (never a training target, so its logit
    was pushed down and sampling leaves it alone); HFError when the table has none."""
    if not isinstance(tokenizer, CharTokenizer):
        return None
    if mc.vocab_size <= tokenizer.vocab_size:
        raise HFError(f"a char-tokenizer run exports only with a spare row in its vocabulary table, for characters "
                      f"outside the {tokenizer.vocab_size} it knows (a Hugging Face tokenizer cannot refuse them as "
                      f"gptjax does, and would drop them silently); train with model.vocab_size="
                      f"{tokenizer.vocab_size + 1} or more")
    return tokenizer.vocab_size


def _write_tokenizer(tokenizer: Tokenizer, mc: ModelConfig, out_dir: Path) -> None:
    hf_tok = hf_tokenizer_object(tokenizer, _unk_id(tokenizer, mc))
    hf_tok.save(str(out_dir / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": mc.block_size,
              "clean_up_tokenization_spaces": False}
    if tokenizer.eot_id is not None:
        config.update(bos_token=EOT, eos_token=EOT)
    if isinstance(tokenizer, CharTokenizer):
        config.update(unk_token=UNK)
    if tokenizer.chat_template:  # transformers' apply_chat_template then gives the ids the run was trained on
        config.update(chat_template=tokenizer.chat_template)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _run_model_config(run_dir: RunDir) -> tuple[ModelConfig, Tokenizer]:
    """The run's model config and tokenizer, read without touching the checkpoint (so a model that cannot be
    exported is refused at once)."""
    if not run_dir.config.exists():
        raise HFError(f"{run_dir} has no config.yaml; pass a run directory written by gptjax.train or gptjax.hf import")
    cfg = load_config(run_dir.config)
    tokenizer = load_tokenizer(run_dir.tokenizer)
    return ModelConfig.from_config(cfg.model, tokenizer.vocab_size), tokenizer


def export_hf(run_dir: str | Path, out_dir: str | Path, step: int | None = None, *, best: bool = False) -> Path:
    """Writes checkpoint `step` (default: the newest; best=True: checkpoints_best) of a gptjax run as a Hugging Face
    directory: config.json, model.safetensors (float32), tokenizer.json + tokenizer_config.json. A padded
    vocabulary (model.vocab_size > the tokenizer's) keeps its padded size as config.json's vocab_size."""
    run_dir, out_dir = RunDir(run_dir), Path(out_dir)
    mc, tokenizer = _run_model_config(run_dir)
    family = export_family(mc)
    _unk_id(tokenizer, mc)  # refused now, before anything is written
    fresh_directory(out_dir, "output directory")
    run = load_run(run_dir.path, step, best=best)
    host = jax.device_get(run.params)
    params = {}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(host)[0]:
        params[dotted(key_path)] = np.asarray(leaf, dtype=np.float32)
    tensors, config = (_gpt2_export if family == "gpt2" else _llama_export)(params, mc)
    eot = run.tokenizer.eot_id
    config.update(bos_token_id=eot, eos_token_id=eot, dtype="float32", use_cache=True)

    out_dir.mkdir(parents=True, exist_ok=True)
    # Contiguous copies: slices and transposes are views, which safetensors cannot write.
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out_dir / WEIGHTS_FILE),
              metadata={"format": "pt"})  # transformers refuses safetensors files without a format tag
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    _write_tokenizer(run.tokenizer, mc, out_dir)
    return out_dir
