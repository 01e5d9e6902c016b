"""GPT-2 small (124M) on FineWeb-Edu with the recipe measured on the CPU speedrun (configs/speedrun_cpu.py):
Muon for the blocks' matrices, AdamW for the rest, on GPT-2's architecture. Meant for one 8-GPU node.

UNTESTED ON A GPU: this recipe has only been measured at CPU size (docs/benchmarks.md, "Faster to a loss"); its
learning rates are the CPU-sized ones, and the step count a guess. Measure it before relying on it:

    python -m gptjax.data.prepare --config configs/data/fineweb_edu.py --workdir prepared/fineweb_edu
    python -m gptjax.bench --to-loss 3.28 --seeds 3 --config speedrun_gpt2 \\
        --config.data.shards=prepared/fineweb_edu/fineweb_edu --workdir runs/speedrun_gpt2

(3.28 is the FineWeb validation loss the modded-nanogpt records race to; FineWeb-Edu's is not the same number.)
"""

from gptjax.presets import gpt2


def get_config():
    c = gpt2("small")
    c.data.source = "shards"
    c.data.shards = "prepared/fineweb_edu/fineweb_edu"
    c.optim.name = "muon"
    c.optim.muon_lr = 0.02
    c.optim.lr, c.optim.min_lr = 6e-4, 6e-5  # the AdamW half: embeddings, norms, biases
    c.optim.warmup_steps = 250
    c.train.batch_size = 512  # x 1024 tokens = 524,288 tokens a step
    c.train.grad_accum = 8  # 64 sequences per micro-batch: 8 per GPU on 8 GPUs
    c.train.steps = 6000
    c.train.eval_every = 125
    c.train.eval_batches = 40
    c.checkpoint.every = 1000
    return c
