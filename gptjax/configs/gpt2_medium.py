"""GPT-2 medium (350M: 24 layers, 16 heads, 1024 wide), block 1024, vocab 50257 padded to 50304."""

from gptjax.presets import gpt2


def get_config():
    return gpt2("medium")
