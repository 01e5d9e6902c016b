"""GPT-2 large (774M: 36 layers, 20 heads, 1280 wide), block 1024, vocab 50257 padded to 50304."""

from gptjax.presets import gpt2


def get_config():
    return gpt2("large")
