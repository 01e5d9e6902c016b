"""GPT-2 xl (1558M: 48 layers, 25 heads, 1600 wide), block 1024, vocab 50257 padded to 50304."""

from gptjax.presets import gpt2


def get_config():
    return gpt2("xl")
