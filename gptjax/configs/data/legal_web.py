"""A general + legal mixture: Common Crawl web text (jsonl.gz and WARC) and U.S. court opinions.

    python -m gptjax.data.prepare --config configs/data/legal_web.py --workdir prepared/legal_web

Files are read from $GPTJAX_DATA_DIR/corpora (default ../shared/data/corpora); point a source elsewhere with
--config.sources.NAME.path=... . Then train on the result with configs/legal_web.py.
"""

import os
from pathlib import Path

from gptjax.data.prepare import base_config, source

DATA = Path(os.environ.get("GPTJAX_DATA_DIR", Path(__file__).resolve().parents[4] / "shared" / "data"))


def get_config():
    c = base_config()
    c.sources.web = source("jsonl", str(DATA / "corpora/cc_web"), glob="*.jsonl.gz")
    c.sources.web_warc = source("warc", str(DATA / "corpora/cc_web/warc"))
    c.sources.legal = source("jsonl", str(DATA / "corpora/legal/legal_docs.jsonl"))
    c.stages.gopher_quality = True
    c.stages.gopher_repetition = True
    c.tokenizer.name = str(DATA / "gpt2")  # GPT-2's BPE from local files; 'gpt2' fetches it from the hub
    c.split.val_fraction = 0.05
    return c
