"""PubMedQA, step 1 of 3: a small GPT-2-tokenizer model pretrained on the training PMIDs' abstracts (never the
held-out ones, whose conclusions hold their answers). CPU-sized: about 10 minutes on 2 cores.

    python -m gptjax.data.pubmedqa --source ori_pqal.json --out runs/pubmedqa/data
    python -m gptjax.train --config pubmedqa_base --workdir runs/pubmedqa/base --config.data.tokenizer=/path/to/gpt2

Then configs/sft_pubmedqa.py and configs/dpo_pubmedqa.py; docs/post_training.md has the figures.
"""

from gptjax.config import base_config

DATA = "runs/pubmedqa/data"


def get_config():
    c = base_config()
    c.data.source = "files"
    c.data.path = f"{DATA}/pretrain.jsonl"
    c.data.tokenizer = "gpt2"  # a hub name; offline, a local directory with GPT-2's vocab.json and merges.txt
    c.data.val_fraction = 0.05
    c.model.num_layers, c.model.num_heads, c.model.d_model = 4, 4, 128
    c.model.block_size = 256
    c.model.use_bias = False
    c.optim.lr, c.optim.min_lr = 1e-3, 1e-4
    c.optim.warmup_steps = 50
    c.optim.beta2 = 0.95
    c.train.steps = 400
    c.train.batch_size = 8
    c.train.eval_every = 100
    c.train.eval_batches = 10
    c.train.log_every = 25
    c.train.sample_prompt = "Patients with"
    c.train.sample_tokens = 60
    return c
