"""The benchmark harness (gptjax.bench), its FLOP count, and the host-memory re-execution (gptjax.hostmem)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax.extend import core as jax_core

from gptjax import hostmem
from gptjax.bench import format_table, main, run_benchmark
from gptjax.config import load_config
from gptjax.flops import flops_per_token, matmul_flops, matmul_weights, traced_matmuls
from gptjax.model import GPT, ModelConfig
from gptjax.step import make_loss_fn

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.num_layers=2", "model.num_heads=2", "model.d_model=32", "model.block_size=16", "train.batch_size=4"]
FAST = dict(steps=3, warmup=1, peak_size=256, loader_batches=5)


def small(**kw) -> ModelConfig:
    return ModelConfig(vocab_size=100, block_size=16, num_layers=2, num_heads=4, d_model=32, **kw)


def test_flops_per_token_by_hand():
    # GPT-2 layout: per layer qkv 32x96 + out 32x32 + mlp 32x128 twice = 12,288 weights; 2 layers + head 32x100.
    assert matmul_weights(small()) == 2 * (32 * 96 + 32 * 32 + 2 * 32 * 128) + 32 * 100 == 27_776
    # 6 per weight, plus attention: 12 * layers 2 * heads 4 * head size 8 * context 16 (not halved).
    assert flops_per_token(small()) == 6 * 27_776 + 12 * 2 * 4 * 8 * 16 == 178_944
    # GQA (2 kv heads) and SwiGLU (3 matrices of 32 x 128: 8*32/3 rounded up to 64s): 15,360 weights per layer.
    assert matmul_weights(small(num_kv_heads=2, mlp="swiglu")) == 2 * (32 * 64 + 32 * 32 + 3 * 32 * 128) + 3200
    assert flops_per_token(small(num_kv_heads=2, mlp="swiglu")) == 6 * 33_920 + 12_288


def _dot_flops(jaxpr) -> int:
    """2 * (output elements) * (contracted size) of every dot_general the program runs, from its output's shape
    (loops counted length times)."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            contracted = math.prod(eqn.invars[0].aval.shape[d] for d in lhs_contract)
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * contracted
        repeat = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(sub, jax_core.ClosedJaxpr):
                    total += repeat * _dot_flops(sub.jaxpr)
                elif isinstance(sub, jax_core.Jaxpr):
                    total += repeat * _dot_flops(sub)
    return total


@pytest.mark.parametrize("options", [{}, dict(num_kv_heads=2, mlp="swiglu"), dict(tie_embeddings=False),
                                     dict(scan_layers=True, position="rope", use_bias=False)])
def test_flops_formula_equals_the_matmuls_of_the_train_step(options):
    """The formula against every matmul JAX traces for the loss and its gradients (forward + backward)."""
    cfg = small(**options)
    graphdef, params = nnx.split(GPT(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    tokens = jnp.zeros((4, cfg.block_size + 1), jnp.int32)
    program = jax.make_jaxpr(jax.value_and_grad(make_loss_fn(graphdef)))(params, tokens)
    assert _dot_flops(program.jaxpr) == flops_per_token(cfg) * 4 * cfg.block_size
    # gptjax.flops' own walk over the program (what the matmul floor times) finds the same matmuls
    assert sum(times * matmul_flops(lhs, rhs, params) for lhs, rhs, params, times
               in traced_matmuls(program.jaxpr)) == _dot_flops(program.jaxpr)


def test_benchmark_reports_every_figure():
    cfg = load_config("configs/shakespeare_char_cpu.py", TINY)
    r = run_benchmark(cfg, **FAST, floor=True)
    assert r["tokens_per_step"] == 4 * 16 and r["parameters"] > 0
    assert r["tokens_per_sec"] == pytest.approx(r["tokens_per_step"] / (r["step_ms_pipelined"] / 1e3))
    assert r["model_flops_per_sec"] == pytest.approx(r["flops_per_token"] * r["tokens_per_sec"])
    assert r["step_ms_p10"] <= r["step_ms_median"] <= r["step_ms_p90"]
    assert r["matmul_peak_flops"] > 0 and 0 < r["mfu_measured"] == pytest.approx(
        r["model_flops_per_sec"] / r["matmul_peak_flops"])
    assert r["published_peak_flops"] is None and r["mfu_published"] is None  # a CPU has no published peak here
    assert r["compile_s"] > 0 and r["time_to_first_step_s"] > r["init_s"] + r["compile_s"] + r["first_step_s"]
    assert r["host_rss_peak_bytes"] > 0 and r["xla_temp_bytes"] >= 0 and r["page_faults_per_step"] >= 0
    # fp32 Adam: parameters once, two moments
    assert r["optimizer_bytes_per_device"] >= 2 * r["param_bytes_per_device"] > 0
    assert r["loader_tokens_per_sec"] > 0 and math.isfinite(r["final_loss"])
    assert 0 < r["matmul_floor_ms"] < 10 * r["step_ms_median"] and 0 <= r["data_s"] < r["time_to_first_step_s"]
    table = format_table(r)
    for label in ("step time", "throughput", "model FLOP/s", "MFU", "compile", "memory", "state/device", "input",
                  "matmuls alone"):
        assert label in table


def test_benchmark_on_a_mesh_of_devices(tmp_path):
    """Eight simulated devices, fsdp=4 x data=2: bytes per device shrink and the step still runs."""
    code = ("import sys, jax; jax.config.update('jax_num_cpu_devices', 8)\n"
            "from gptjax.bench import main; sys.exit(main(sys.argv[1:]))")
    args = ["--config", "configs/shakespeare_char_cpu.py", *[f"--config.{o}" for o in TINY],
            "--config.train.batch_size=8", "--config.mesh.data=2", "--config.mesh.fsdp=4", "--steps=2",
            "--warmup=0", "--peak_size=128", "--loader_batches=2", "--json", str(tmp_path / "b.json")]
    env = {**os.environ, "PJRT_NPROC": "16", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads((tmp_path / "b.json").read_text())
    assert figures["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1} and figures["devices"].startswith("8 x cpu")
    single = run_benchmark(load_config("configs/shakespeare_char_cpu.py", TINY), **FAST)
    assert figures["param_bytes_per_device"] < single["param_bytes_per_device"]


def test_command_line_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--config", "configs/shakespeare_char_cpu.py", *[f"--config.{o}" for o in TINY], "--steps", "2",
            "--warmup", "0", "--peak_size", "128", "--loader_batches", "3", "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("python -m gptjax.bench --config configs/shakespeare_char_cpu.py") and "MFU" in printed
    figures = json.loads(out.read_text())
    assert figures["command"].startswith("python -m gptjax.bench") and figures["steps"] == 2


def test_real_data_prepared_in_the_workdir(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 400)
    cfg = load_config("configs/shakespeare_char_cpu.py", TINY + [f"data.path={text}"])
    r = run_benchmark(cfg, workdir=tmp_path / "run", **FAST)
    assert "prepared in" in r["data"] and (tmp_path / "run" / "data" / "train").is_dir()
    assert r["model"].startswith("ModelConfig(vocab_size=") and "vocab_size=65" not in r["model"]  # the text's own


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps=0"),
    (["--config.model.num_layerz=3"], "num_layerz"),
    (["--config.data.tokenizer=/no/such/tokenizer.json"], "--vocab_size"),
    (["--config.train.batch_size=3", "--config.train.grad_accum=2"], "grad_accum"),
    (["--json", "/no/such/dir/bench.json"], "--json"),
])
def test_bad_input_is_one_line(args, message, capsys):
    base = ["--config", "configs/shakespeare_char_cpu.py", *[f"--config.{o}" for o in TINY], "--peak_size", "0"]
    assert main(base + args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_host_malloc_tunables_environment():
    env = hostmem.tunables_env({"PATH": "/bin"})
    if sys.platform != "linux":
        assert env is None
        return
    assert env["GLIBC_TUNABLES"] == hostmem.TUNABLES and env["PATH"] == "/bin"
    merged = hostmem.tunables_env({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=2048"})
    assert merged["GLIBC_TUNABLES"] == "glibc.rtld.optional_static_tls=2048:" + hostmem.TUNABLES
    assert hostmem.tunables_env(env) is None  # already set: no second re-execution
    assert hostmem.tunables_env({hostmem.OPT_OUT: "default"}) is None


def test_in_process_training_is_told_about_the_tunables(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv(hostmem.OPT_OUT, raising=False)
    tip = hostmem.advice()
    if sys.platform == "linux":
        assert tip.startswith("note: on a CPU") and hostmem.TUNABLES in tip
    monkeypatch.setenv("GLIBC_TUNABLES", hostmem.TUNABLES)
    assert hostmem.advice() is None


@pytest.mark.skipif(sys.platform != "linux", reason="glibc tunables")
def test_entry_point_reexecutes_once_with_the_tunables(tmp_path):
    script = tmp_path / "entry.py"
    script.write_text("import os\nfrom gptjax.hostmem import reexec_with_tunables\nprint('start', flush=True)\n"
                      "reexec_with_tunables()\nprint(os.environ['GLIBC_TUNABLES'])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", hostmem.OPT_OUT)}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60).stdout
    assert out.split("\n")[:3] == ["start", "start", hostmem.TUNABLES]  # ran twice, the second time with them set
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         env={**env, hostmem.OPT_OUT: "default", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}).stdout
    assert out.split("\n")[:2] == ["start", "glibc.malloc.hugetlb=0"]


def test_two_processes_bench_one_step_and_one_table(tmp_path):
    """A multi-host benchmark: 2 processes x 2 CPU devices over 127.0.0.1, the config's data prepared once (by
    process 0) in the shared workdir, the table printed once."""
    from test_multihost import env, free_port

    text = tmp_path / "text.txt"
    text.write_text("It was the best of times, it was the worst of times.\n" * 300)
    port = free_port()
    args = ["--config", "configs/shakespeare_char_cpu.py", *[f"--config.{o}" for o in TINY],
            "--config.train.batch_size=8", f"--config.data.path={text}", "--workdir", str(tmp_path / "run"),
            "--steps=2", "--warmup=0", "--peak_size=0", "--loader_batches=2",
            f"--config.distributed.coordinator_address=127.0.0.1:{port}", "--config.distributed.num_processes=2"]
    procs = [subprocess.Popen([sys.executable, "-m", "gptjax.bench", *args, f"--config.distributed.process_id={i}"],
                              cwd=REPO, env=env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert "throughput" in outputs[0] and "'data': 4" in outputs[0] and "throughput" not in outputs[1]
