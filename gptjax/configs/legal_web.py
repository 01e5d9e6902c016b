"""Train a small GPT-2-style model on the general + legal mixture that configs/data/legal_web.py prepares:

    python -m gptjax.data.prepare --config configs/data/legal_web.py --workdir prepared/legal_web
    python -m gptjax.train --config configs/legal_web.py

Web text and court opinions are blended 70/30 by weight; the validation loss is reported per source as well.
"""

from gptjax.config import base_config

PREPARED = "prepared/legal_web"


def get_config():
    c = base_config()
    c.data.source = "shards"
    c.data.shards = f"{PREPARED}/web:0.5,{PREPARED}/web_warc:0.2,{PREPARED}/legal:0.3"
    c.model.num_layers, c.model.num_heads, c.model.d_model = 6, 6, 384
    c.model.block_size = 256
    c.model.vocab_size = 50304  # GPT-2's tokenizer, padded
    c.model.use_bias = False
    c.model.dropout = 0.1
    c.optim.lr, c.optim.min_lr = 6e-4, 6e-5
    c.optim.warmup_steps = 200
    c.optim.beta2 = 0.95
    c.train.steps = 3000
    c.train.batch_size = 32
    c.train.eval_every = 250
    c.train.eval_batches = 20
    c.train.log_every = 50
    c.train.sample_prompt = "The court held that"
    c.checkpoint.every = 500
    return c
