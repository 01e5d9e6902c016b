"""Hugging Face interop (gptjax.hf): transformers' own models are the reference on both sides.

Every parameter is perturbed before comparing: a fresh model has zero biases and unit norm scales, which would let
a bias or scale written to the wrong place (or dropped) go unnoticed.
"""

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tokenizers
import yaml
from tokenizers import decoders, models

from conftest import REPO, data_path
from gptjax.checkpoint import Checkpoints
from gptjax.config import base_config, to_yaml, validate
from gptjax.hf import HFError, export_family, export_hf, import_hf, load_hf, main
from gptjax.model import ModelConfig
from gptjax.run import load_run
from gptjax.state import setup
from gptjax.tokenizer import ByteTokenizer, CharTokenizer, build_tokenizer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = 1e-4  # float32 on both sides; the only differences are summation orders
TEXT = "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n"


def _tiny_hf_tokenizer(directory):
    """A 96-token tokenizer.json (printable ASCII + <|endoftext|>), built without gptjax, so HF-side tests need no
    shared data."""
    vocab = {chr(i): i - 32 for i in range(32, 127)}
    vocab["\n"] = len(vocab)
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(directory / "tokenizer.json"))
    return tok.get_vocab_size()


def _perturb_torch(model, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor(np.asarray(tokens), dtype=torch.long)).logits.numpy()


def _tokens(vocab, shape=(2, 12), seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=shape).astype(np.int32)


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _gpt2_dir(path, vocab_size=128, tie=True):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=vocab_size, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                  tie_word_embeddings=tie, bos_token_id=None, eos_token_id=None,
                                  attn_implementation="eager")
    model = _perturb_torch(transformers.GPT2LMHeadModel(cfg))
    model.save_pretrained(path)
    return model


def _llama_dir(path, **overrides):
    torch.manual_seed(0)
    kw = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=False, rms_norm_eps=1e-5,
              rope_theta=500.0, attn_implementation="eager")
    kw.update(overrides)
    model = _perturb_torch(transformers.LlamaForCausalLM(transformers.LlamaConfig(**kw)))
    model.save_pretrained(path)
    return model


# ----------------------------------------------------------------------------------------------------------------
# Import


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_load_hf_matches_transformers_logits(tmp_path, kind):
    src = tmp_path / kind
    model = _gpt2_dir(src) if kind == "gpt2" else _llama_dir(src)
    n_tokens = _tiny_hf_tokenizer(src)
    run = load_hf(src)
    mc = run.model_config
    if kind == "gpt2":
        assert (mc.position, mc.norm, mc.mlp, mc.tie_embeddings, mc.use_bias) == ("learned", "layernorm", "gelu",
                                                                                 True, True)
    else:  # GQA, untied, and a non-default theta: each must reach the model
        assert (mc.position, mc.norm, mc.mlp, mc.kv_heads, mc.tie_embeddings, mc.rope_theta, mc.norm_eps) == (
            "rope", "rmsnorm", "swiglu", 2, False, 500.0, 1e-5)
    assert mc.vocab_size == 128 and run.tokenizer.vocab_size == n_tokens  # padded vocabulary kept
    tokens = _tokens(128)
    diff = _max_diff(run.model(tokens), _hf_logits(model, tokens))
    print(f"import {kind}: max |logit diff| = {diff:.2e}")
    assert diff < TOL
    short = load_hf(src, block_size=8)  # a shorter context: the position table is cut, the outputs stay the same
    assert short.model_config.block_size == 8
    assert _max_diff(short.model(tokens[:, :8]), _hf_logits(model, tokens[:, :8])) < TOL


def test_load_hf_reads_bfloat16_and_sharded_files(tmp_path):
    model = _llama_dir(tmp_path / "fp32", tie_word_embeddings=True, attention_bias=True, mlp_bias=True)
    src = tmp_path / "bf16"
    model.to(torch.bfloat16).save_pretrained(src, max_shard_size="20KB")  # bf16 (not numpy-readable), sharded
    assert (src / "model.safetensors.index.json").exists() and not (src / "model.safetensors").exists()
    _tiny_hf_tokenizer(src)
    run = load_hf(src)
    assert run.model_config.use_bias and run.model_config.tie_embeddings
    tokens = _tokens(128)
    # The reference reads the same bf16 files in float32 (casting `model` back would leave its RoPE frequency
    # buffer rounded to bf16).
    reference = _hf_logits(transformers.AutoModelForCausalLM.from_pretrained(
        src, dtype=torch.float32, attn_implementation="eager").eval(), tokens)
    diff = _max_diff(run.model(tokens), reference)
    print(f"import llama bf16 sharded: max |logit diff| = {diff:.2e}")
    assert diff < TOL


# ----------------------------------------------------------------------------------------------------------------
# Export


def _make_run(run_dir, tokenizer, **model):
    """A gptjax run directory holding one perturbed random checkpoint (step 0)."""
    cfg = base_config()
    for key, value in {**dict(block_size=16, num_layers=2, num_heads=4, d_model=32), **model}.items():
        cfg.model[key] = value
    validate(cfg)
    model_config = ModelConfig.from_config(cfg.model, tokenizer.vocab_size)
    built = setup(cfg, model_config)
    state = built.init(0)
    leaves, treedef = jax.tree.flatten(state.params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    state = state.replace(params=treedef.unflatten(
        [leaf + 0.1 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]))
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    tokenizer.save(run_dir / "tokenizer")
    checkpoints = Checkpoints(run_dir)
    checkpoints.save(0, state, cfg.to_dict(), {})
    checkpoints.close()
    return run_dir


EXPORT_CASES = {
    # GPT-2 style, char tokenizer, padded vocabulary, untied head
    "gpt2_untied_padded": (lambda: CharTokenizer.from_text(TEXT), dict(vocab_size=64, tie_embeddings=False),
                           "GPT2LMHeadModel"),
    # GPT-2 style without biases: written as GPT-2 with zero biases
    "gpt2_nobias": (lambda: ByteTokenizer(), dict(use_bias=False), "GPT2LMHeadModel"),
    # modern: rope, rmsnorm, swiglu, GQA, untied, no biases
    "llama_gqa_untied": (lambda: ByteTokenizer(), dict(position="rope", norm="rmsnorm", mlp="swiglu", num_kv_heads=2,
                                                       tie_embeddings=False, use_bias=False, rope_theta=5000.0,
                                                       norm_eps=1e-6), "LlamaForCausalLM"),
    # modern, tied, MQA, with biases (attention_bias + mlp_bias)
    "llama_mqa_tied_bias": (lambda: CharTokenizer.from_text(TEXT), dict(position="rope", norm="rmsnorm",
                                                                        mlp="swiglu", num_kv_heads=1, d_ff=40,
                                                                        vocab_size=40),
                            "LlamaForCausalLM"),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_loads_in_transformers_with_matching_logits(tmp_path, case):
    make_tokenizer, model, arch = EXPORT_CASES[case]
    tokenizer = make_tokenizer()
    run_dir = _make_run(tmp_path / "run", tokenizer, **model)
    out = export_hf(run_dir, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [arch]
    run = load_run(run_dir)
    assert config["vocab_size"] == run.model_config.vocab_size  # the padded size, not the tokenizer's
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    assert type(hf_model).__name__ == arch
    tokens = _tokens(run.model_config.vocab_size)
    diff = _max_diff(run.model(tokens), _hf_logits(hf_model, tokens))
    print(f"export {case}: max |logit diff| = {diff:.2e}")
    assert diff < TOL
    # The exported tokenizer gives the same ids and text as the run's.
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok(TEXT)["input_ids"] == tokenizer.encode(TEXT).tolist()
    assert hf_tok.decode(tokenizer.encode(TEXT).tolist()) == TEXT


def test_a_char_tokenizer_export_marks_unknown_characters_instead_of_dropping_them(tmp_path):
    tokenizer = CharTokenizer.from_text(TEXT)
    with pytest.raises(HFError, match=r"exports only with a spare row .* train with model.vocab_size=\d+ or more"):
        export_hf(_make_run(tmp_path / "exact", tokenizer), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    out = export_hf(_make_run(tmp_path / "padded", tokenizer, vocab_size=64), tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    unk = tokenizer.vocab_size
    ids = hf_tok("To be, é")["input_ids"]
    assert ids == tokenizer.encode("To be, ").tolist() + [unk] and hf_tok.unk_token_id == unk  # not dropped
    with pytest.raises(Exception, match="not in the char tokenizer's vocabulary"):
        tokenizer.encode("To be, é")  # gptjax refuses it


def test_byte_tokenizer_export_covers_non_ascii(tmp_path):
    from gptjax.hf import hf_tokenizer_object

    text = "héllo wörld — ✓ \t\r\n 日本"
    tok = hf_tokenizer_object(ByteTokenizer())
    assert tok.encode(text).ids == list(text.encode("utf-8"))
    assert tok.decode(list(text.encode("utf-8"))) == text


# ----------------------------------------------------------------------------------------------------------------
# Round trip, run directory and CLI


def test_import_export_round_trip_and_run_directory(tmp_path, capsys):
    """HF GPT-2 (with the real GPT-2 tokenizer) -> run directory -> HF: the same tensors come back, and the run
    directory samples and fine-tunes like a trained run."""
    gpt2 = data_path("gpt2")
    src = tmp_path / "hf"
    model = _gpt2_dir(src, vocab_size=50257)
    shutil.copy(gpt2 / "tokenizer.json", src / "tokenizer.json")
    run_dir = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "gptjax.hf", "import", str(src), str(run_dir)], cwd=REPO, check=True,
                   capture_output=True, text=True)
    run = load_run(run_dir)
    assert run.step == 0 and run.tokenizer.eot_id == 50256
    tokens = _tokens(50257)
    diff = _max_diff(run.model(tokens), _hf_logits(model, tokens))
    print(f"import_hf gpt2 (real tokenizer): max |logit diff| = {diff:.2e}")
    assert diff < TOL

    assert main(["export", str(run_dir), str(tmp_path / "back")]) == 0
    from safetensors.numpy import load_file

    original, back = load_file(str(src / "model.safetensors")), load_file(str(tmp_path / "back/model.safetensors"))
    original = {k: v for k, v in original.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    assert sorted(back) == sorted(original)
    for key in original:
        np.testing.assert_array_equal(back[key], original[key], err_msg=key)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back", attn_implementation="eager")
    assert _max_diff(_hf_logits(reloaded.eval(), tokens), _hf_logits(model, tokens)) == 0.0

    # Fine-tuning from the imported run: the same tokenizer from the same place, checkpoint.init_from=RUN.
    from gptjax.sample import main as sample_main
    from gptjax.trainer import train

    assert sample_main(["--workdir", str(run_dir), "--max_new_tokens", "3", "--prompt", "Hello"]) == 0
    (tmp_path / "text.txt").write_text(TEXT * 20)
    cfg = base_config()
    for key, value in dict(run.config.model).items():
        cfg.model[key] = value
    cfg.data.source, cfg.data.path, cfg.data.tokenizer = "text", str(tmp_path / "text.txt"), str(src)
    cfg.checkpoint.init_from = str(run_dir)
    cfg.train.update(steps=2, batch_size=2, eval_every=0, eval_batches=1, log_every=1, sample_tokens=0)
    cfg.model.block_size = run.config.model.block_size
    validate(cfg)
    metrics = train(cfg, tmp_path / "ft")
    assert f"initialized from {run_dir} step 0" in capsys.readouterr().out
    assert np.isfinite(metrics["loss"])


def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys):
    for argv, expected in [
        (["import", str(tmp_path / "missing"), str(tmp_path / "run")], "does not exist"),
        (["export", str(tmp_path / "missing"), str(tmp_path / "out")], "no config.yaml"),
        (["export", str(tmp_path)], "the following arguments are required: out_dir"),  # argparse's own errors too
    ]:
        try:
            status = main(argv)
        except SystemExit as e:
            status = e.code
        err = capsys.readouterr().err.strip()
        assert status == 2, argv
        assert err.startswith("error: ") and "\n" not in err and expected in err, err


# ----------------------------------------------------------------------------------------------------------------
# What cannot be converted


def test_unsupported_hf_models_are_named(tmp_path):
    src = tmp_path / "scaled"
    _llama_dir(src, rope_scaling={"rope_type": "linear", "factor": 2.0})
    _tiny_hf_tokenizer(src)
    with pytest.raises(HFError, match="rope scaling 'linear'"):
        load_hf(src)

    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    with pytest.raises(HFError, match="BertForMaskedLM.*GPT2LMHeadModel and LlamaForCausalLM"):
        load_hf(other)

    relu = tmp_path / "relu"
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=128, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                                         activation_function="relu")).save_pretrained(relu)
    with pytest.raises(HFError, match="activation_function='relu'"):
        load_hf(relu)

    no_tok = tmp_path / "no_tokenizer"
    _gpt2_dir(no_tok)
    with pytest.raises(HFError, match="has no tokenizer"):
        load_hf(no_tok)

    extra = tmp_path / "extra"
    _gpt2_dir(extra)
    _tiny_hf_tokenizer(extra)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(extra / "model.safetensors"))
    tensors["transformer.h.0.attn.q_norm.weight"] = np.ones(8, np.float32)
    save_file(tensors, str(extra / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(HFError, match="no place for: transformer.h.0.attn.q_norm.weight"):
        load_hf(extra)


@pytest.mark.parametrize("model, named", [
    (dict(norm_position="post"), "model.norm_position='post'"),
    (dict(mlp="relu2"), "model.mlp='relu2'"),
    (dict(position="rope", norm="rmsnorm", mlp="swiglu", qk_norm=True), "model.qk_norm=True"),
    (dict(position="learned", norm="rmsnorm"), "model.norm='rmsnorm'"),
    (dict(position="rope", norm="layernorm", mlp="gelu"), "model.norm='layernorm'"),
    (dict(num_kv_heads=2), "model.num_kv_heads=2"),
    (dict(logit_softcap=30.0), "model.logit_softcap=30.0"),  # neither computes tanh-capped logits
    (dict(position="rope", norm="rmsnorm", mlp="swiglu", logit_softcap=15.0), "model.logit_softcap=15.0"),
])
def test_export_refuses_what_neither_architecture_holds(tmp_path, model, named):
    mc = ModelConfig(vocab_size=64, block_size=16, num_layers=1, num_heads=4, d_model=32, **model)
    with pytest.raises(HFError, match=named.replace("(", r"\(")):
        export_family(mc)
    # Through the CLI: refused from config.yaml alone, before any checkpoint is read.
    cfg = base_config()
    for key, value in dict(vocab_size=64, block_size=16, num_layers=1, num_heads=4, d_model=32, **model).items():
        cfg.model[key] = value
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    ByteTokenizer().save(run_dir / "tokenizer")
    assert main(["export", str(run_dir), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_hub_name_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # an empty cache
    with pytest.raises(HFError, match="'someone/model' is not a local directory and could not be fetched.*offline"):
        load_hf("someone/model")


def test_import_refuses_a_non_empty_run_directory(tmp_path):
    src = tmp_path / "hf"
    _gpt2_dir(src)
    _tiny_hf_tokenizer(src)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("keep me")
    with pytest.raises(HFError, match="not empty"):
        import_hf(src, tmp_path / "run")
    assert build_tokenizer(str(src)).vocab_size == 97  # the directory's tokenizer itself is fine


def test_fine_tune_straight_from_a_hugging_face_directory(tmp_path, capsys):
    """checkpoint.init_from=HF_DIR: the pretrained weights (their position table cut to a shorter block) with a
    fresh optimizer; the run's data tokenized with the model's own tokenizer.json."""
    from gptjax.trainer import train

    src = tmp_path / "hf"
    _gpt2_dir(src, vocab_size=128)
    _tiny_hf_tokenizer(src)
    (tmp_path / "text.txt").write_text(TEXT * 20)
    cfg = base_config()
    cfg.model.update(vocab_size=128, block_size=16, num_layers=2, num_heads=4, d_model=32)
    cfg.data.source, cfg.data.path, cfg.data.tokenizer = "text", str(tmp_path / "text.txt"), str(src / "tokenizer.json")
    cfg.checkpoint.init_from = str(src)
    cfg.train.update(steps=2, batch_size=2, eval_every=0, eval_batches=1, log_every=1, sample_tokens=0)
    validate(cfg)
    assert np.isfinite(train(cfg, tmp_path / "ft")["loss"])
    assert f"initialized from {src} step 0 (weights only" in capsys.readouterr().out
    cfg.model.d_model = 64
    with pytest.raises(Exception, match=r"holds another architecture than this config sets: model.d_model=64 "
                                        r"\(the source has 32\)"):
        train(cfg, tmp_path / "wider")


def test_fine_tune_from_an_export_in_a_folder_of_any_name(tmp_path, capsys):
    """An exported run, in a folder named anything, with its tokenizer read from a copy elsewhere: the tokenizer is
    the same by content, and the architecture (bias-free, untied) comes back from the export, not from the config."""
    from gptjax.trainer import train

    (tmp_path / "tok").mkdir()
    _tiny_hf_tokenizer(tmp_path / "tok")
    tokenizer = build_tokenizer(str(tmp_path / "tok" / "tokenizer.json"))
    run_dir = _make_run(tmp_path / "base", tokenizer, use_bias=False, tie_embeddings=False, num_layers=3)
    export = export_hf(run_dir, tmp_path / "my model, v2")
    assert load_hf(export).model_config.use_bias is False  # the export says so; GPT-2 itself always has biases
    (tmp_path / "text.txt").write_text(TEXT * 20)
    cfg = base_config()  # no model keys: they come from the export
    cfg.data.source, cfg.data.path = "text", str(tmp_path / "text.txt")
    cfg.data.tokenizer = str(tmp_path / "tok")  # the same tokenizer from another folder
    cfg.checkpoint.init_from = str(export)
    cfg.train.update(steps=2, batch_size=2, eval_every=0, eval_batches=1, log_every=1, sample_tokens=0)
    validate(cfg)
    assert np.isfinite(train(cfg, tmp_path / "ft")["loss"])
    said = capsys.readouterr().out
    assert "model from checkpoint.init_from: block_size=16, d_ff=128, d_model=32, num_layers=3, " \
           "tie_embeddings=False, use_bias=False" in said and f"initialized from {export} step 0" in said
    saved = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())["model"]
    assert saved["use_bias"] is False and saved["num_layers"] == 3
    cfg.train.steps = 3
    assert np.isfinite(train(cfg, tmp_path / "ft")["loss"])  # the same command (one step more) resumes it
    cfg.train.steps = 2

    # Every key that disagrees, named at once.
    cfg.model.num_layers, cfg.model.norm = 5, "rmsnorm"
    with pytest.raises(Exception, match=r"model.norm='rmsnorm' \(the source has 'layernorm'\), model.num_layers=5 "
                                        r"\(the source has 3\); leave those keys out"):
        train(cfg, tmp_path / "other")

