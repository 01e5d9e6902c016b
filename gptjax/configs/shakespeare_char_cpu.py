"""The "baby" Shakespeare character model that nanoGPT trains on a CPU: 4 layers, 4 heads, 128 wide, context 64,
batch 12, 2,000 steps, no dropout. nanoGPT reaches a validation loss of about 1.88 with it.

Offline, pass a local copy of the text: --config.data.path=/path/to/tinyshakespeare.txt
"""

from gptjax.presets import shakespeare_char


def get_config():
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
