"""The "baby" Shakespeare character model that nanoGPT trains on a CPU: 4 layers, 4 heads, 128 wide, context 64,
batch 12, 2,000 steps, no dropout. nanoGPT reaches a validation loss of about 1.88 with it.

Offline, pass a local copy of the text: --config.data.path=/path/to/tinyshakespeare.txt
"""

from gptjax.presets import baby_shakespeare


def get_config():
    return baby_shakespeare()
