"""PubMedQA, step 2 of 3: supervised fine-tuning of the base model on question -> "Answer: <decision>. <reasoning>"
conversations (packed, the loss on the replies only), with the held-out multiple-choice task scored as it trains.

    python -m gptjax.train --config sft_pubmedqa --workdir runs/pubmedqa/sft

The base model's GPT-2 tokenizer gets the chat template's <|im_start|> and <|im_end|> (their embedding rows start
at the mean of the others). checkpoint.init_from may also name a Hugging Face model directory.
"""

from gptjax.config import base_config

DATA = "runs/pubmedqa/data"


def get_config():
    c = base_config()
    c.checkpoint.init_from = "runs/pubmedqa/base"
    c.data.source = "chat"
    c.data.path = f"{DATA}/sft_train.jsonl"
    c.data.val_path = f"{DATA}/sft_val.jsonl"
    c.optim.lr, c.optim.min_lr = 3e-4, 3e-5
    c.optim.warmup_steps = 20
    c.optim.beta2 = 0.95
    c.train.steps = 200
    c.train.batch_size = 8
    c.train.eval_every = 50
    c.train.eval_batches = 11
    c.train.log_every = 25
    c.train.eval_tasks = f"custom:{DATA}/heldout_mc.jsonl"
    c.train.sample_tokens = 60
    return c
