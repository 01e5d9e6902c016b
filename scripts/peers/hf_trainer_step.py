"""Step speed of Hugging Face transformers' Trainer (PyTorch eager, SDPA attention) on gptjax's benchmark shapes.

Run it in its own environment, outside gptjax's (torch 2.13 CPU, transformers, accelerate):

    python scripts/peers/hf_trainer_step.py --shape gpt2 --steps 5 --warmup 1 --json hf.json

The model is GPT2LMHeadModel with the shape of gptjax's bench run (`--shape gpt2`: 12 layers, 12 heads, 768 wide,
block 1024, vocabulary 50304, batch 1; `--shape baby`: 4 layers, 4 heads, 128 wide, block 64, vocabulary 65,
batch 12), f32, no dropout, trained by Trainer with AdamW and gradient clipping on random tokens. Each step is timed
from one `on_step_end` to the next (an eager CPU step has finished when it returns), warm-up steps left out.
"""

import tempfile
import time

import torch
from torch.utils.data import Dataset
from peer_common import SHAPES, parse_args, report
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments


class RandomWindows(Dataset):
    def __init__(self, n, block, vocab):
        self.tokens = torch.randint(0, vocab, (n, block), generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, i):
        return {"input_ids": self.tokens[i], "labels": self.tokens[i]}


class StepTimes(TrainerCallback):
    def __init__(self):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def main():
    args = parse_args(__doc__)
    layers, heads, width, block, vocab, batch = SHAPES[args.shape]
    config = GPT2Config(n_layer=layers, n_head=heads, n_embd=width, n_positions=block, vocab_size=vocab,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).float()
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    total = args.warmup + 1 + args.steps
    times = StepTimes()
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch, max_steps=total, learning_rate=6e-4,
            weight_decay=0.1, adam_beta2=0.95, max_grad_norm=1.0, lr_scheduler_type="cosine", warmup_steps=2,
            logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
            disable_tqdm=True, seed=0)
        trainer = Trainer(model=model, args=training, train_dataset=RandomWindows(total * batch, block, vocab),
                          callbacks=[times])
        trainer.train()
    steps = [b - a for a, b in zip(times.ends[args.warmup:], times.ends[args.warmup + 1:])]
    report("transformers Trainer", args.shape, steps, model, args.json,
           transformers=__import__("transformers").__version__)


if __name__ == "__main__":
    main()
