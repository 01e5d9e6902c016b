"""GPT-2 small (124M: 12 layers, 12 heads, 768 wide), block 1024, vocab 50257 padded to 50304."""

from gptjax.presets import gpt2


def get_config():
    return gpt2("small")
