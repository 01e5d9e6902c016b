"""Step speed of litgpt's pretraining step (its GPT model under torch.compile) on gptjax's benchmark shapes.

Run it in its own environment, outside gptjax's (torch 2.13 CPU, litgpt):

    python scripts/peers/litgpt_step.py --shape gpt2 --steps 5 --warmup 2 --json litgpt.json

The step is the one `litgpt pretrain` runs (litgpt/pretrain.py): the model wrapped in `torch.compile`, litgpt's
`chunked_cross_entropy`, backward, gradient clipping at 1.0, AdamW, zero_grad; Fabric's CPU wrappers, which add
nothing at 32-bit precision on one device, are left out. The shapes are gptjax's bench shapes (see
hf_trainer_step.py); litgpt has no learned position table, so its model uses rotary embeddings on every head
dimension (a few elementwise operations per layer), and GPT-2's LayerNorm, biases, 4x GELU MLP and sequential
residuals otherwise. The first steps compile and are left out of the timing.
"""

import time

import litgpt
import torch
from litgpt.config import Config
from litgpt.model import GPT
from litgpt.utils import chunked_cross_entropy
from peer_common import SHAPES, parse_args, report


def main():
    args = parse_args(__doc__, lambda parser: parser.add_argument(
        "--no-compile", action="store_true", help="eager, as `litgpt pretrain --compile false`"))
    layers, heads, width, block, vocab, batch = SHAPES[args.shape]
    config = Config(block_size=block, n_layer=layers, n_head=heads, n_embd=width, vocab_size=vocab,
                    padded_vocab_size=vocab, bias=True, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP",
                    intermediate_size=4 * width, parallel_residual=False, rotary_percentage=1.0)
    torch.manual_seed(0)
    model = GPT(config).float()
    model.max_seq_length = block
    step_model = model if args.no_compile else torch.compile(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.1, betas=(0.9, 0.95))
    data = torch.randint(0, vocab, (batch, block + 1), generator=torch.Generator().manual_seed(0))
    times = []
    for i in range(args.warmup + args.steps):
        began = time.perf_counter()
        input_ids, targets = data[:, :block].contiguous(), data[:, 1:].contiguous()
        loss = chunked_cross_entropy(step_model(input_ids), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss.item()
        if i >= args.warmup:
            times.append(time.perf_counter() - began)
    report("litgpt" + (" (eager)" if args.no_compile else " (torch.compile)"), args.shape, times, model, args.json,
           litgpt=getattr(litgpt, "__version__", "0.5.13"))


if __name__ == "__main__":
    main()
