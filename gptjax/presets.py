"""Model presets shared by the config files: GPT-2's sizes, and a modern variant of the same shapes."""

from __future__ import annotations

import ml_collections

from gptjax.config import base_config

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"

# name: (layers, heads, width) as in GPT-2's release.
GPT2_SIZES = {
    "small": (12, 12, 768),  # 124M
    "medium": (24, 16, 1024),  # 350M
    "large": (36, 20, 1280),  # 774M
    "xl": (48, 25, 1600),  # 1558M
}


def gpt2(size: str) -> ml_collections.ConfigDict:
    """GPT-2 with nanoGPT's reproduction recipe (about 0.5M tokens a step, AdamW 6e-4 -> 6e-5, beta2 0.95).

    Data defaults to tiny Shakespeare with the GPT-2 tokenizer so the preset runs as is; point data.* at your own
    corpus (data.source='shards' for a prepared mixture) for real training."""
    c = base_config()
    c.model.num_layers, c.model.num_heads, c.model.d_model = GPT2_SIZES[size]
    c.model.vocab_size = 50304  # 50257 padded to a multiple of 64: same model, faster matmuls
    c.model.block_size = 1024
    c.model.use_bias = True
    c.model.dtype = "bfloat16"
    c.model.attention = "auto"  # cuDNN's fused attention on a GPU, the XLA reference elsewhere
    c.model.scan_layers = True  # 12-48 layers: compile one and loop, instead of compiling each
    c.data.source = "text"
    c.data.path = "data/shakespeare/input.txt"
    c.data.url = SHAKESPEARE_URL
    c.data.tokenizer = "gpt2"
    c.optim.lr, c.optim.min_lr = 6e-4, 6e-5
    c.optim.warmup_steps = 2000
    c.optim.beta2 = 0.95
    c.optim.weight_decay = 0.1
    c.train.steps = 600_000
    c.train.batch_size = 480  # x 1024 tokens = 491,520 tokens a step
    c.train.grad_accum = 40
    c.train.eval_every = 1000
    c.train.eval_batches = 200
    c.train.log_every = 10
    c.checkpoint.every = 1000
    return c


def modern(size: str) -> ml_collections.ConfigDict:
    """The GPT-2 shape with today's choices: RoPE, SwiGLU, RMSNorm, grouped-query attention, no biases, untied head."""
    c = gpt2(size)
    c.model.position = "rope"
    c.model.mlp = "swiglu"
    c.model.norm = "rmsnorm"
    c.model.norm_position = "pre"
    c.model.num_kv_heads = c.model.num_heads // 3 if c.model.num_heads % 3 == 0 else c.model.num_heads // 2
    c.model.use_bias = False
    c.model.tie_embeddings = False
    return c


def shakespeare_char() -> ml_collections.ConfigDict:
    """nanoGPT's shakespeare_char recipe: 6 layers, 6 heads, 384 wide, context 256, dropout 0.2, character-level.

    The text is read from data.path; when that file is missing and the machine is online it is downloaded there."""
    c = base_config()
    c.data.source = "text"
    c.data.path = "data/shakespeare/input.txt"
    c.data.url = SHAKESPEARE_URL
    c.data.tokenizer = "char"
    c.data.val_fraction = 0.1  # the last 10% of the play text, as nanoGPT

    c.model.num_layers, c.model.num_heads, c.model.d_model = 6, 6, 384
    c.model.block_size = 256
    c.model.dropout = 0.2
    c.model.attn_dropout = 0.2
    c.model.use_bias = False

    c.optim.lr, c.optim.min_lr = 1e-3, 1e-4
    c.optim.warmup_steps = 100
    c.optim.beta2 = 0.99  # a little larger than usual: few tokens per step
    c.optim.weight_decay = 0.1

    c.train.steps = 5000
    c.train.batch_size = 64
    c.train.eval_every = 250
    c.train.eval_batches = 200
    c.train.log_every = 10
    c.train.sample_prompt = "\n"
    c.checkpoint.every = 250
    return c


def baby_shakespeare() -> ml_collections.ConfigDict:
    """The "baby" character model nanoGPT trains on a CPU: 4 layers, 4 heads, 128 wide, context 64, batch 12,
    2,000 steps, no dropout (configs/shakespeare_char_cpu.py; configs/speedrun_cpu.py trains it faster)."""
    c = shakespeare_char()
    c.model.num_layers, c.model.num_heads, c.model.d_model = 4, 4, 128
    c.model.block_size = 64
    c.model.dropout = 0.0
    c.model.attn_dropout = 0.0
    c.train.batch_size = 12
    c.train.steps = 2000
    c.optim.decay_steps = 2000
    c.train.eval_batches = 20
    c.train.log_every = 100
    c.checkpoint.every = 500
    return c
