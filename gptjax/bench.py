"""Benchmark the real train step: `python -m gptjax.bench --config configs/X.py [--config.KEY=VALUE ...]`.

Builds the run exactly as gptjax.train does (mesh, shardings, donated state, the same jitted step, batches from
the grain loader), compiles, runs warm-up steps, then times steps two ways: each step waited for (median and
spread), and steps dispatched back to back with metrics read one step late, as training runs them (throughput).
Then, separately so the two never compete for the CPU, it times the input pipeline alone and the matmul peak of
this device. One table is printed; --json writes every figure.

    step time, tokens/s, model FLOP/s, MFU (against the published peak of the device where one is known, and
    against the matmul peak measured in the same run), compile time, time from start to the first step, peak
    device memory (or XLA's memory plan where the device reports none) and host RSS, parameter and optimizer
    bytes per device, and the loader's tokens/s.

`python -m gptjax.bench --to-loss L [--seeds 3]` measures the other half of training cost instead: steps, tokens
and wall time to a validation loss, over seeds (gptjax.speedrun); the timing options above do not apply to it.

FLOPs are counted by gptjax.flops (6 per matmul weight per token, plus attention over the whole block, not halved
for causality). Data: random tokens written as token shards and read by the real loader (default), or, with
--workdir, the config's own data prepared there as training would.
"""

from __future__ import annotations

import sys
import time

if __name__ == "__main__":  # `python -m gptjax.bench`: host memory settings before JAX loads (see gptjax.hostmem)
    from gptjax.hostmem import reexec_with_tunables

    reexec_with_tunables()

_STARTED = time.perf_counter()  # before JAX is imported: "time to first step" includes start-up

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from gptjax import distributed, sharding, speedrun  # noqa: E402
from gptjax.command import parse_args  # noqa: E402
from gptjax.compile_cache import use_compile_cache  # noqa: E402
from gptjax.config import ConfigError, load_config  # noqa: E402
from gptjax.data.loader import WindowLoader  # noqa: E402
from gptjax.data.shards import TokenShard, write_shard  # noqa: E402
from gptjax.errors import GptjaxError, report_errors  # noqa: E402
from gptjax.flops import (flops_per_token, matmul_floor, matmul_weights, measured_matmul_peak,  # noqa: E402
                          published_peak)
from gptjax.inputs import prepare_data  # noqa: E402
from gptjax.model import ModelConfig, count_params  # noqa: E402
from gptjax.rundir import check_writable  # noqa: E402
from gptjax.step import make_loss_fn  # noqa: E402
from gptjax.trainer import build_program  # noqa: E402

# Vocabulary of the random tokens when model.vocab_size=0 (the tokenizer's size) and no data is prepared.
TOKENIZER_VOCAB = {"char": 65, "byte": 256, "gpt2": 50257}


def synthetic_shards(directory: Path, vocab_size: int, num_tokens: int, seed: int = 0) -> list[TokenShard]:
    """Random tokens as two token shards: what the loader reads when the benchmark brings no data of its own."""
    rng = np.random.default_rng(seed)
    shards = []
    for i in range(2):
        path = directory / f"synthetic_{i}.ds"
        docs = (rng.integers(0, vocab_size, size=4096, dtype=np.int64) for _ in range(-(-num_tokens // 8192)))
        write_shard(path, docs, tokenizer_name="synthetic", vocab_size=vocab_size)
        shards.append(TokenShard(path))
    return shards


def loader_throughput(loader: WindowLoader, batches: int, start: int = 0) -> float:
    """Tokens/s the loader delivers alone: batches read as training reads them (prefetching threads), nothing else
    running."""
    it = loader.iterate(start)
    next(it)  # the threads start and fill their buffer; that start-up is not throughput
    began = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - began
    return batches * loader.local_batch_size * loader.seq_len / seconds


def _memory(compiled) -> dict:
    """Peak device memory where the device keeps statistics (GPU, TPU); otherwise XLA's plan for the step."""
    out = {}
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    try:
        plan = compiled.memory_analysis()
        out["xla_temp_bytes"] = int(plan.temp_size_in_bytes)
        out["xla_argument_bytes"] = int(plan.argument_size_in_bytes)
        out["xla_output_bytes"] = int(plan.output_size_in_bytes)
    except Exception:  # not every backend implements it; the figure is then left out, not invented
        pass
    # ru_maxrss is KiB on Linux, bytes on macOS
    out["host_rss_peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin"
                                                                                        else 1024)
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_benchmark(cfg: ml_collections.ConfigDict, *, steps: int = 10, warmup: int = 2,
                  workdir: str | Path | None = None, vocab_size: int | None = None, peak_size: int = 4096,
                  loader_batches: int = 200, floor: bool = False) -> dict:
    """Every figure of the table as a dict (see the module docstring). steps: timed steps (each way);
    warmup: steps run after the first and before timing; peak_size: side of the square matmul whose FLOP/s is
    the measured peak (0 skips it); floor: also time the step's matmuls one by one (gptjax.flops.matmul_floor;
    one device only), to see how much of the step they are."""
    if steps < 1 or warmup < 0:
        raise ConfigError(f"--steps={steps} must be at least 1 and --warmup={warmup} at least 0")
    t = cfg.train
    distributed.initialize(cfg.distributed)  # a multi-host benchmark times the multi-host step
    mesh = sharding.make_mesh(cfg.mesh)
    sharding.check_batch_split(t.batch_size, t.grad_accum, mesh)
    cache = use_compile_cache(t.compile_cache)  # as training: a second benchmark of the same step compiles nothing
    with tempfile.TemporaryDirectory(prefix="gptjax-bench-") as tmp:
        began = time.perf_counter()
        if workdir is not None:  # the config's own data, prepared (or reused) as training would
            if cfg.data.source in ("chat", "preferences"):
                raise ConfigError(f"gptjax.bench --workdir times training windows of token shards, not "
                                  f"data.source={cfg.data.source}'s rows; leave out --workdir to time the same model "
                                  "on random tokens")
            if distributed.is_main():  # as in training: one process writes, the others read what it wrote
                prepare_data(cfg, Path(workdir))
            distributed.barrier("data prepared")
            inputs = prepare_data(cfg, Path(workdir), write=False)
            train_sources, weights = inputs.train, inputs.weights
            vocab, data = inputs.tokenizer.vocab_size, f"{cfg.data.source} data prepared in {workdir}"
        else:
            vocab = vocab_size or cfg.model.vocab_size or TOKENIZER_VOCAB.get(cfg.data.tokenizer)
            if not vocab:
                raise ConfigError(f"model.vocab_size=0 takes the tokenizer's size, which is unknown for "
                                  f"data.tokenizer={cfg.data.tokenizer!r} without data: pass --vocab_size N, or "
                                  f"--workdir DIR to prepare the config's data")
            tokens = max(2_000_000, 4 * (steps + warmup + loader_batches) * t.batch_size * (cfg.model.block_size + 1))
            train_sources, weights = {"synthetic": synthetic_shards(Path(tmp), vocab, tokens // 2)}, None
            data = f"random tokens (vocabulary {vocab}) in token shards"
        data_seconds = time.perf_counter() - began
        model_config = ModelConfig.from_config(cfg.model, vocab)
        loader = WindowLoader(train_sources, model_config.block_size, t.batch_size, seed=t.seed, weights=weights,
                              process_index=jax.process_index(), process_count=jax.process_count())
        result = _time_steps(cfg, model_config, mesh, loader, steps, warmup, floor)
        result["data"], result["data_s"] = data, data_seconds
        # Alone, after the steps: the loader's ceiling, to compare with what training consumed.
        result["loader_tokens_per_sec"] = loader_throughput(loader, loader_batches, start=steps + warmup + 1)
        result["loader_over_training"] = result["loader_tokens_per_sec"] / result["tokens_per_sec"]
    dtype = model_config.dtype  # the peak of the model's own compute dtype
    result["published_peak_flops"] = published_peak()
    result["matmul_peak_flops"] = measured_matmul_peak(dtype, peak_size, repeats=5) if peak_size else None
    result["matmul_peak_shape"] = f"{dtype} {peak_size}^3" + (" (f32 accumulation)" if dtype != "float32" else "")
    per_device = result["model_flops_per_sec"] / mesh.size
    for key, peak in (("mfu_published", result["published_peak_flops"]), ("mfu_measured", result["matmul_peak_flops"])):
        result[key] = per_device / peak if peak else None
    result["time_to_first_step_s"] = result.pop("_first_step_at") - _STARTED
    result["compile_cache"] = str(cache) if cache else None
    return result


def _time_steps(cfg, model_config: ModelConfig, mesh, loader: WindowLoader, steps: int, warmup: int,
                floor: bool) -> dict:
    t = cfg.train
    began = time.perf_counter()
    program = build_program(cfg, model_config, mesh)  # what gptjax.train runs
    built, step_fn = program.setup, program.train_step
    batches = loader.iterate(0)

    def next_batch():
        return program.to_device(next(batches))

    state = built.init(t.seed)
    jax.block_until_ready(state)
    init_seconds = time.perf_counter() - began
    began = time.perf_counter()
    batch = next_batch()
    compiled = step_fn.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - began
    began = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    first_step_at = time.perf_counter()
    first_step_seconds = first_step_at - began
    for _ in range(warmup):
        state, metrics = compiled(state, next_batch())
    jax.block_until_ready(metrics)

    waited = []  # each step on its own: its duration, host dispatch included
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        batch = next_batch()
        began = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        waited.append(time.perf_counter() - began)

    faults_per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / steps

    # As gptjax.train runs: no wait between steps, the previous step's metrics read while this one computes.
    began, pending = time.perf_counter(), None
    for _ in range(steps):
        state, metrics = compiled(state, next_batch())
        if pending is not None:
            float(pending["loss"])
        pending = metrics
    loss = float(pending["loss"])
    pipelined = (time.perf_counter() - began) / steps
    if not math.isfinite(loss):
        raise ConfigError(f"the benchmarked steps reached a non-finite loss ({loss}); check optim.lr and the config")

    tokens_per_step = t.batch_size * model_config.block_size
    flops_per_step = flops_per_token(model_config) * tokens_per_step
    floor_s = None
    if floor and mesh.size == 1:  # a sharded step's matmuls are not its global shapes on one device
        micro = batch[: t.batch_size // t.grad_accum]
        floor_s, _ = matmul_floor(jax.value_and_grad(make_loss_fn(built.graphdef)), state.params, micro)
        floor_s *= t.grad_accum
    state_bytes = {part: sharding.bytes_per_device(getattr(built.abstract_state, part), getattr(built.shardings, part))
                   for part in ("params", "opt_state")}
    device = jax.devices()[0]
    return dict(
        model=repr(model_config), parameters=count_params(model_config), matmul_weights=matmul_weights(model_config),
        dtype=model_config.dtype, attention=model_config.attention, scan_layers=model_config.scan_layers,
        remat=model_config.remat, batch_size=t.batch_size, grad_accum=t.grad_accum, block_size=model_config.block_size,
        mesh=dict(built.mesh.shape), devices=f"{jax.device_count()} x {device.platform} ({device.device_kind})",
        machine=_cpu_name() if device.platform == "cpu" else device.device_kind,
        steps=steps, warmup=warmup, init_s=init_seconds, compile_s=compile_seconds, first_step_s=first_step_seconds,
        _first_step_at=first_step_at,
        step_ms_median=1e3 * float(np.median(waited)), step_ms_p10=1e3 * float(np.percentile(waited, 10)),
        step_ms_p90=1e3 * float(np.percentile(waited, 90)), step_ms_pipelined=1e3 * pipelined,
        tokens_per_step=tokens_per_step, tokens_per_sec=tokens_per_step / pipelined,
        flops_per_token=flops_per_token(model_config), model_flops_per_sec=flops_per_step / pipelined,
        param_bytes_per_device=state_bytes["params"], optimizer_bytes_per_device=state_bytes["opt_state"],
        final_loss=loss, page_faults_per_step=faults_per_step,
        matmul_floor_ms=None if floor_s is None else 1e3 * floor_s, **_memory(compiled))


def _gib(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} B"


def _flops(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("PFLOP/s", 1e15), ("TFLOP/s", 1e12), ("GFLOP/s", 1e9)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 1e6:,.1f} MFLOP/s"


def format_table(r: dict) -> str:
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    memory = (f"device peak {_gib(r['device_peak_bytes'])}" if "device_peak_bytes" in r else
              "no device statistics; XLA's plan: " + (f"{_gib(r['xla_temp_bytes'])} temporaries, "
                                                    f"{_gib(r['xla_argument_bytes'])} arguments"
                                                    if "xla_temp_bytes" in r else "n/a"))
    rows = [
        ("model", r["model"]),
        ("run", f"{r['dtype']}, attention {r['attention']}, scan_layers {r['scan_layers']}, remat {r['remat']}; "
                f"mesh {r['mesh']} on {r['devices']}; {r['machine']}"),
        ("batch", f"{r['batch_size']} x {r['block_size']} = {r['tokens_per_step']:,} tokens per step "
                  f"(grad_accum {r['grad_accum']}); {r['data']}"),
        ("step time", f"median {r['step_ms_median']:,.1f} ms (p10 {r['step_ms_p10']:,.1f}, p90 "
                      f"{r['step_ms_p90']:,.1f}; {r['steps']} steps, each waited for); back to back "
                      f"{r['step_ms_pipelined']:,.1f} ms"),
        ("throughput", f"{r['tokens_per_sec']:,.0f} tokens/s ({r['steps']} steps back to back, metrics read one "
                       f"step late)"),
        ("model FLOP/s", f"{_flops(r['model_flops_per_sec'])} ({r['flops_per_token'] / 1e6:,.2f} MFLOP per token: "
                         f"6 x {r['matmul_weights'] / 1e6:,.2f}M matmul weights + 12 L H hd T attention)"),
        ("MFU", f"{pct(r['mfu_measured'])} of the matmul peak measured here ({_flops(r['matmul_peak_flops'])}, "
                f"{r['matmul_peak_shape']}); {pct(r['mfu_published'])} of the published peak "
                f"({_flops(r['published_peak_flops'])})"),
        ("compile", f"{r['compile_s']:.2f} s (lower + compile); first step done {r['time_to_first_step_s']:.1f} s "
                    f"after the process started: data {r['data_s']:.1f} s, state {r['init_s']:.1f} s, compile, first "
                    f"step {r['first_step_s']:.1f} s; compilation cache: {r.get('compile_cache') or 'off'}"),
        ("memory", f"{memory}; host RSS peak {_gib(r['host_rss_peak_bytes'])}; "
                   f"{r['page_faults_per_step']:,.0f} page faults per step"),
        ("state/device", f"parameters {_gib(r['param_bytes_per_device'])}, optimizer "
                         f"{_gib(r['optimizer_bytes_per_device'])}"),
        ("input", f"{r['loader_tokens_per_sec']:,.0f} tokens/s from the loader alone = "
                  f"{r['loader_over_training']:,.1f}x what training consumed"),
    ]
    if r.get("matmul_floor_ms") is not None:
        rows.append(("matmuls alone", f"{r['matmul_floor_ms']:,.1f} ms per step, each timed on its own = "
                                      f"{100 * r['matmul_floor_ms'] / r['step_ms_median']:.0f}% of the median step"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--steps", type=int, default=10, help="timed steps, each way (default 10)")
        parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first (default 2)")
        parser.add_argument("--vocab_size", type=int, help="vocabulary of the random tokens when model.vocab_size=0")
        parser.add_argument("--peak_size", type=int, default=4096,
                            help="side of the square matmul timed as this device's peak (0: skip)")
        parser.add_argument("--loader_batches", type=int, default=200, help="batches read to time the loader")
        parser.add_argument("--matmul_floor", action="store_true",
                            help="also time the step's matmuls one by one: the step if all else were free")
        parser.add_argument("--json", help="also write every figure to this JSON file")
        parser.add_argument("--to-loss", type=float,
                            help="instead of timing steps: train until the validation loss reaches this, once per "
                                 "seed, and report steps, tokens and wall time to it (see gptjax.speedrun)")
        parser.add_argument("--seeds", default="3", help="with --to-loss: how many seeds (1337, 1, 2, ...), or "
                                                         "the seeds themselves, comma-separated")

    args, overrides = parse_args(argv, prog="python -m gptjax.bench", doc=__doc__, add_arguments=options,
                                 workdir_help="prepare and read the config's data here (default: random tokens); "
                                              "with --to-loss: where each seed's run goes (default: a new "
                                              "temporary directory)")

    def work() -> None:
        if args.json:  # say so now, not after the whole run
            if Path(args.json).is_dir():
                raise GptjaxError(f"--json {args.json} is a directory; give a file in it")
            if not Path(args.json).resolve().parent.is_dir():
                raise GptjaxError(f"--json {args.json}: its directory does not exist")
            check_writable(Path(args.json).resolve().parent, "the --json directory", "choose a writable path")
        command = speedrun.command_line(argv if argv is not None else sys.argv[1:])
        if args.to_loss is not None:
            summary = speedrun.time_to_loss(args.to_loss, args.config, overrides, speedrun.parse_seeds(args.seeds),
                                            Path(args.workdir) if args.workdir else None)
            print(f"{command}\n" + speedrun.format_summary(summary))
            if args.json:
                Path(args.json).write_text(json.dumps({**summary, "command": command}, indent=1) + "\n")
            return
        result = run_benchmark(load_config(args.config, overrides), steps=args.steps, warmup=args.warmup,
                               workdir=args.workdir, vocab_size=args.vocab_size, peak_size=args.peak_size,
                               loader_batches=args.loader_batches, floor=args.matmul_floor)
        if not distributed.is_main():
            return
        print(f"{command}\n" + format_table(result))
        if args.json:
            result["command"] = command
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")

    return report_errors(work)


if __name__ == "__main__":
    sys.exit(main())
