"""A modern 12-layer, 768-wide model: RoPE, SwiGLU, RMSNorm, pre-norm, grouped-query attention (12 query heads
sharing 4 key/value heads), no biases, untied output head. Otherwise GPT-2 small's recipe."""

from gptjax.presets import modern


def get_config():
    return modern("small")
