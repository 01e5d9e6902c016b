"""What the peer drivers share (each runs in its peer's own environment, with torch): the shapes of gptjax's
bench runs, the machine's matmul rate at the time, and the report."""

import argparse
import json
import statistics
import time

import torch

SHAPES = {  # layers, heads, width, block, vocabulary, batch: gptjax.bench's --config gpt2_small (1 x 1024, f32)
    "gpt2": (12, 12, 768, 1024, 50304, 1),  # and --config shakespeare_char_cpu
    "baby": (4, 4, 128, 64, 65, 12),
}


def matmul_peak(size=4096, repeats=3):
    """GFLOP/s of an f32 size^3 matmul in this process (the machine's state at the time, as gptjax.bench
    measures it)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best / 1e9


def report(peer: str, shape: str, step_seconds: list[float], model, json_path: str | None, **versions) -> None:
    """Prints the median step and tokens/s, and writes every figure to json_path if given."""
    _, _, _, block, _, batch = SHAPES[shape]
    median = statistics.median(step_seconds)
    result = {"peer": peer, "torch": torch.__version__, **versions, "shape": shape,
              "threads": torch.get_num_threads(), "step_seconds": step_seconds, "median_step_seconds": median,
              "tokens_per_second": batch * block / median,
              "parameters": sum(p.numel() for p in model.parameters()), "matmul_peak_gflops": matmul_peak()}
    print(f"{peer}, {shape}: median step {median * 1000:.1f} ms over {len(step_seconds)} steps, "
          f"{result['tokens_per_second']:,.0f} tokens/s; f32 4096^3 matmul {result['matmul_peak_gflops']:.0f} GFLOP/s")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)


def parse_args(doc: str, add_arguments=None) -> argparse.Namespace:
    """The drivers' common options (--shape, --steps, --warmup, --threads, --json) and their own; sets the
    threads."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gpt2")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them (they compile, if any)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the figures to this file")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error(f"--steps {args.steps} and --threads {args.threads} must be at least 1, --warmup "
                     f"{args.warmup} at least 0")
    torch.set_num_threads(args.threads)
    return args
