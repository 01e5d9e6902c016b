"""PubMedQA, step 3 of 3: Direct Preference Optimization of the SFT model: the right decision with its reasoning
preferred over a wrong decision with the same reasoning. The reference is the SFT model (the run's starting
point); its log-probabilities are computed once and kept in RUN/data/reference.npz.

    python -m gptjax.train --config dpo_pubmedqa --workdir runs/pubmedqa/dpo
"""

from gptjax.config import base_config

DATA = "runs/pubmedqa/data"


def get_config():
    c = base_config()
    c.checkpoint.init_from = "runs/pubmedqa/sft"
    c.data.source = "preferences"
    c.data.path = f"{DATA}/dpo_train.jsonl"
    c.data.val_path = f"{DATA}/dpo_val.jsonl"
    c.dpo.beta = 0.1
    c.optim.lr, c.optim.min_lr = 1e-4, 1e-5
    c.optim.warmup_steps = 10
    c.optim.beta2 = 0.95
    c.optim.weight_decay = 0.0
    c.train.steps = 150
    c.train.batch_size = 8
    c.train.eval_every = 50
    c.train.eval_batches = 21
    c.train.log_every = 25
    c.train.eval_tasks = f"custom:{DATA}/heldout_mc.jsonl"
    c.train.sample_tokens = 60
    return c
