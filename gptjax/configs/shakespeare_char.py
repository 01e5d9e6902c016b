"""nanoGPT's shakespeare_char recipe: a 6-layer, 6-head, 384-wide character model, context 256, dropout 0.2.

Offline, pass a local copy of the text: --config.data.path=/path/to/tinyshakespeare.txt
"""

from gptjax.presets import shakespeare_char


def get_config():
    return shakespeare_char()
