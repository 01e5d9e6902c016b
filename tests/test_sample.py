"""Decoding with the KV cache, checked against recomputing the whole context: tiny models on a CPU."""

import functools
import string
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gptjax import sample
from gptjax.config import load_config
from gptjax.model import GPT, KVCache, ModelConfig
from gptjax.sample import cut_at_stop, generate, generate_batch, main, sample_logits
from gptjax.tokenizer import CharTokenizer

REPO = Path(__file__).resolve().parents[1]
BLOCK = 32


@functools.cache
def tiny(position="rope", kv_heads=2, scan_layers=False, qk_norm=False):
    """A random model whose logits are far apart (init_std 0.3), so float rounding never flips an argmax."""
    cfg = ModelConfig(vocab_size=50, block_size=BLOCK, num_layers=2, num_heads=4, d_model=32, num_kv_heads=kv_heads,
                      position=position, scan_layers=scan_layers, qk_norm=qk_norm, init_std=0.3)
    graphdef, params = nnx.split(GPT(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    return cfg, graphdef, params


@functools.cache
def full_forward(position="rope", kv_heads=2):
    """Logits [V] after the last of up to BLOCK tokens, by the full forward pass (one shape: padded at the end,
    which causal attention never lets earlier positions see)."""
    cfg, graphdef, params = tiny(position, kv_heads)
    forward = jax.jit(lambda buffer: nnx.merge(graphdef, params)(buffer))

    def last_logits(context):
        buffer = np.zeros((1, BLOCK), np.int32)
        buffer[0, : len(context)] = context
        return np.asarray(forward(buffer)[0, len(context) - 1])

    return last_logits


@pytest.mark.parametrize("position, kv_heads, scan_layers, qk_norm", [
    ("learned", 0, False, False),  # MHA
    ("learned", 2, True, True),  # GQA, rolled layer loop, qk-norm
    ("rope", 1, False, False),  # MQA
    ("rope", 2, False, False),  # GQA
])
def test_cached_greedy_equals_full_recompute(position, kv_heads, scan_layers, qk_norm):
    _, graphdef, params = tiny(position, kv_heads, scan_layers, qk_norm)
    prompt = [3, 14, 15, 9, 26]
    kw = dict(block_size=BLOCK, max_new_tokens=BLOCK - len(prompt), num_samples=2, temperature=0.0)  # fills the block
    cached = generate(graphdef, params, prompt, **kw)
    full = generate(graphdef, params, prompt, use_cache=False, **kw)
    assert cached.shape == (2, BLOCK - len(prompt))
    np.testing.assert_array_equal(cached, full)
    assert len(set(cached[0].tolist())) > 3  # a real continuation, not one token repeated


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_prefill_then_decode_logits_match_the_full_forward(position):
    cfg, graphdef, params = tiny(position, 2)
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, cfg.vocab_size)
    model = nnx.merge(graphdef, params)
    full = model(tokens)

    @jax.jit
    def cached(tokens, start):
        # Prefill 7 tokens, then decode one token at a time from a different position in each row (row 1 rewrites
        # slots 4..6, which its prefill filled: a right-padded prompt of 4 tokens).
        logits, cache = model(tokens[:, :7], cache=KVCache.zeros(cfg, 2, 16), cache_index=0)

        def step(cache, i):
            at = start + i
            token = jnp.take_along_axis(tokens, at[:, None], axis=1)
            step_logits, cache = model(token, cache=cache, cache_index=at)
            return cache, step_logits[:, 0]

        _, steps = jax.lax.scan(step, cache, jnp.arange(16 - 7))
        return logits, steps.transpose(1, 0, 2)

    start = jnp.array([7, 4])
    prefill, steps = cached(tokens, start)
    np.testing.assert_allclose(prefill, full[:, :7], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(steps[0], full[0, 7:16], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(steps[1], full[1, 4:13], rtol=1e-5, atol=1e-5)


def test_learned_positions_refuse_a_cache_longer_than_the_table():
    cfg, _, _ = tiny("learned", 0)
    with pytest.raises(ValueError, match=r"cache of 33 positions is longer than the learned position table "
                                         r"\(model.block_size=32\)"):
        KVCache.zeros(cfg, 1, BLOCK + 1)


def refill_policy_greedy(prompt, steps):
    """Greedy decoding by recomputing, at each token, exactly the context the cache policy keeps: everything since
    the last refill, which starts from the last 24 of 32 tokens (block_size - block_size // 4)."""
    last_logits, keep = full_forward(), BLOCK - BLOCK // 4
    context, tokens = list(prompt)[-BLOCK:], []
    for _ in range(steps):
        if tokens:
            if len(context) == BLOCK:
                context = context[-keep:]
            context.append(tokens[-1])
        tokens.append(int(np.argmax(last_logits(context))))
    return tokens


def test_past_the_block_a_full_row_refills_with_three_quarters_of_a_block():
    _, graphdef, params = tiny()
    prompt, kw = [7, 1, 30, 2], dict(block_size=BLOCK, max_new_tokens=80, temperature=0.0)  # 2.5 blocks
    tokens = generate(graphdef, params, prompt, **kw)[0]
    np.testing.assert_array_equal(tokens, generate(graphdef, params, prompt, seed=9, **kw)[0])
    np.testing.assert_array_equal(tokens, refill_policy_greedy(prompt, 80))


def test_a_batch_of_prompts_decodes_each_row_as_alone():
    _, graphdef, params = tiny()
    # Rows fill the cache at different steps, so each refills on its own schedule; the third is cut to 32 tokens.
    prompts = [[7, 1, 30, 2], [1], list(range(10, 50))]
    rows = generate_batch(graphdef, params, prompts, block_size=BLOCK, max_new_tokens=80, temperature=0.0)
    for prompt, row in zip(prompts, rows):
        assert row.shape == (80,)
        np.testing.assert_array_equal(row, refill_policy_greedy(prompt, 80))


def test_sampling_respects_top_k_and_seed():
    cfg, graphdef, params = tiny()
    prompt = [3, 14, 15, 9, 26]
    kw = dict(block_size=BLOCK, max_new_tokens=BLOCK - len(prompt), num_samples=2)  # shapes as above: no compiling
    # At a temperature that flattens the distribution, top_k=3 still draws every token from the 3 likeliest.
    hot = dict(kw, temperature=5.0, top_k=3)
    a = generate(graphdef, params, prompt, seed=1, **hot)
    last_logits = full_forward()
    for row in a:
        for i, token in enumerate(row):
            assert token in np.argsort(last_logits(prompt + row[:i].tolist()))[-3:]
    np.testing.assert_array_equal(a, generate(graphdef, params, prompt, seed=1, **hot))
    assert not np.array_equal(a, generate(graphdef, params, prompt, seed=2, **hot))
    # Token i is drawn with the same key by both paths, so the same seed gives the same samples.
    np.testing.assert_array_equal(a, generate(graphdef, params, prompt, seed=1, use_cache=False, **hot))
    # top_k=1 is greedy whatever the temperature.
    greedy = generate(graphdef, params, prompt, temperature=0.0, **kw)
    assert (a != greedy).mean() > 0.3
    np.testing.assert_array_equal(generate(graphdef, params, prompt, temperature=1.0, top_k=1, **kw), greedy)


def test_a_padded_vocabulary_is_never_drawn():
    logits = jnp.zeros((64, 50)).at[:, 40:].set(10.0)  # the padding rows (ids 40..49) look the most likely
    key = jax.random.key(0)
    assert sample_logits(logits, key, 0.0, 0, 1.0).min() >= 40  # without vocab_size
    for temperature, top_k, top_p in [(0.0, 0, 1.0), (1.0, 0, 1.0), (1.0, 5, 1.0), (1.0, 0, 0.5)]:
        drawn = sample_logits(logits, key, temperature, top_k, top_p, vocab_size=40)
        assert drawn.max() < 40


def test_stop_ids_and_stop_strings_cut_rows_and_end_decoding_early(monkeypatch):
    _, graphdef, params = tiny()
    tokenizer = CharTokenizer((string.ascii_letters + string.digits)[:50])
    prompts = [tokenizer.encode("abc"), tokenizer.encode("Kq")]
    kw = dict(block_size=BLOCK, max_new_tokens=29, temperature=0.0)
    free = generate_batch(graphdef, params, prompts, **kw)
    texts = [tokenizer.decode(row) for row in free]
    stops = [texts[0][8:10], texts[1][5:8]]
    # With a char tokenizer a stop string is complete after the token that ends its first occurrence.
    expected = [min(t.find(s) + len(s) for s in stops if s in t) for t in texts]

    calls = []
    decode_steps = sample._decode_steps
    monkeypatch.setattr(sample, "_decode_steps", lambda *a, **k: calls.append(a[5] - a[4]) or decode_steps(*a, **k))
    cut = generate_batch(graphdef, params, prompts, stop_strings=stops, tokenizer=tokenizer, check_every=4, **kw)
    for row, full_row, n in zip(cut, free, expected):
        np.testing.assert_array_equal(row, full_row[:n])
    assert calls and set(calls) == {4} and len(calls) == -(-(max(expected) - 1) // 4)  # not all 7 chunks
    for row, text in zip(cut, texts):
        trimmed = cut_at_stop(tokenizer.decode(row), stops)
        assert text.startswith(trimmed) and any(text[len(trimmed):].startswith(s) for s in stops)

    stop_id = int(free[0][6])
    [row] = generate_batch(graphdef, params, prompts[:1], stop_ids=[stop_id], **kw)
    np.testing.assert_array_equal(row, free[0][: free[0].tolist().index(stop_id)])  # the stop token is left out
    with pytest.raises(ValueError, match="stop_strings are found in decoded text, so they need the tokenizer"):
        generate_batch(graphdef, params, prompts, stop_strings=["a"], **kw)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate_batch(graphdef, params, [[1], []], **kw)


# ----------------------------------------------------------------------------------------------------------------
# The command line, on a (barely) trained run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from gptjax.trainer import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(load_config(None, [
        "data.max_chars=50000", "model.num_layers=1", "model.num_heads=2", "model.d_model=32",
        f"model.block_size={BLOCK}", "train.batch_size=4", "train.steps=3", "train.eval_every=0",
        "train.log_every=3", "train.sample_tokens=0", "checkpoint.every=1"]), run_dir)
    return run_dir


def test_cli_decodes_a_batch_of_prompts_with_stop_strings(run_dir, tmp_path):
    from gptjax.run import load_run

    (tmp_path / "prompts.txt").write_text("class \n\nimport\n")
    result = subprocess.run(
        [sys.executable, "-m", "gptjax.sample", "--workdir", str(run_dir), "--prompt", "def ", "--prompt_file",
         str(tmp_path / "prompts.txt"), "--num_samples", "2", "--max_new_tokens", "40", "--temperature", "0",
         "--stop", "\n", "--stop", "e", "--step", "2"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tokens/s after compilation (batch of 6)" in result.stderr
    lines = result.stdout.splitlines()  # no output holds a newline: it is a stop string
    prompts = ["def ", "class ", "import"]
    assert lines[::2] == [f"--- prompt {p}, sample {s}" for p in (1, 2, 3) for s in (1, 2)]
    run = load_run(run_dir, 2)
    rows = generate_batch(run.graphdef, run.params, [run.tokenizer.encode(p) for p in prompts], block_size=BLOCK,
                          max_new_tokens=40, temperature=0.0, stop_strings=["\n", "e"], tokenizer=run.tokenizer,
                          vocab_size=run.tokenizer.vocab_size)
    expected = [p + cut_at_stop(run.tokenizer.decode(row), ["\n", "e"]) for p, row in zip(prompts, rows)]
    assert lines[1::2] == [text for text in expected for _ in range(2)]


def test_cli_errors_name_the_problem(run_dir, tmp_path, capsys):
    assert main(["--workdir", str(tmp_path / "nowhere")]) == 2
    assert "has no config.yaml" in capsys.readouterr().err
    assert main(["--workdir", str(run_dir), "--step", "7"]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert main(["--workdir", str(run_dir), "--prompt", "\u20ac"]) == 2
    assert "error: cannot encode the prompt: character '\u20ac'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--hf", str(tmp_path), "--best"])
    assert "--hf reads a single model" in capsys.readouterr().err
