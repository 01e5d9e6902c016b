"""GPT-2 pretraining data from the Hugging Face hub: FineWeb-Edu, streamed (only the documents read are
downloaded), cleaned, deduplicated and tokenized with GPT-2's BPE.

    python -m gptjax.data.prepare --config configs/data/fineweb_edu.py --workdir prepared/fineweb_edu
    python -m gptjax.train --config configs/gpt2_small.py --config.data.source=shards \\
        --config.data.shards=prepared/fineweb_edu/fineweb_edu

Needs the internet. `sources.fineweb_edu.limit` sets how many documents are read (2M documents are about 2B
tokens); raise it, or run on Slurm (`executor.kind=slurm`) for more.
"""

from gptjax.data.prepare import base_config, source


def get_config():
    c = base_config()
    c.sources.fineweb_edu = source("hf", "HuggingFaceFW/fineweb-edu", streaming=True, limit=2_000_000)
    c.stages.languages = "en"
    c.stages.gopher_quality = True
    c.stages.gopher_repetition = True
    c.tokenizer.name = "gpt2"  # GPT-2's BPE from the hub; a local directory with vocab.json + merges.txt also works
    c.split.val_fraction = 0.005
    return c
