"""The baby Shakespeare speedrun: nanoGPT's CPU recipe (configs/shakespeare_char_cpu.py: 4 layers, 4 heads, 128
wide, context 64, batch 12) trained to the validation loss nanoGPT reaches in 2,000 steps, with the recipe that
got there fastest in the ablation of docs/benchmarks.md ("Faster to a loss"): Muon for the blocks' matrices
(AdamW for the rest), a 700-step warmup-cosine schedule, stopping at val loss 1.886. The other options measured
there (QK-norm, logit soft-capping, z-loss, zero-initialized projections, warmup-stable-decay) did not move the
loss beyond the seed-to-seed spread, so they are left off.

    python -m gptjax.train --config speedrun_cpu --config.data.path=/path/to/tinyshakespeare.txt
    python -m gptjax.bench --to-loss 1.886 --seeds 3 --config speedrun_cpu \\
        --config.data.path=/path/to/tinyshakespeare.txt
"""

from gptjax.presets import baby_shakespeare


def get_config():
    c = baby_shakespeare()
    c.optim.name = "muon"  # muon_lr 0.02 for the matrices, optim.lr 1e-3 (AdamW) for embeddings and norms
    c.train.steps = 700  # every seed reaches the target before the schedule ends
    c.optim.decay_steps = 700
    c.train.target_loss = 1.886  # nanoGPT's baby recipe after 2,000 steps on this machine (docs/benchmarks.md)
    c.train.eval_every = 50
    c.checkpoint.every = 0
    return c
