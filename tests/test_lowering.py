"""The train step, built as training builds it, lowered for CUDA on this CPU: the kernels, dtypes, donation and
collectives each config promises are in the program (gptjax.lowering; docs/gpu.md says what this covers)."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from gptjax import attention
from gptjax.attention import resolve_attention, target_backend
from gptjax.config import ConfigError, load_config
from gptjax.lowering import broken_promises, lower_train_step

SMALL = ["model.num_layers=2", "model.d_model=64", "model.num_heads=4", "model.block_size=128", "train.batch_size=8"]
MODERN = ["model.position=rope", "model.mlp=swiglu", "model.norm=rmsnorm", "model.num_kv_heads=2",
          "model.use_bias=false", "model.tie_embeddings=false", "model.qk_norm=true"]
PACKED = ("data.source=chat", "data.path=sft.jsonl")  # the data is never read: lowering traces shapes
MESHES = {"1dev": ["mesh.data=1", "mesh.fsdp=1", "mesh.tensor=1"], "data8": ["mesh.data=8", "mesh.fsdp=1"],
          "fsdp8": ["mesh.data=1", "mesh.fsdp=8"], "fsdp4xtensor2": ["mesh.data=1", "mesh.fsdp=4", "mesh.tensor=2"]}


def case(arch, dtype, kernel, layers, remat, mesh, *extra):
    return (f"{arch}-{dtype}-{kernel}-{layers}-remat_{remat}-{mesh}" + "".join(f"-{e}" for e in extra),
            SMALL + (MODERN if arch == "modern" else []) + MESHES[mesh] + list(extra)
            + [f"model.dtype={dtype}", f"model.attention={kernel}", f"model.scan_layers={layers == 'scanned'}",
               f"model.remat={remat}"])


# Every value of each axis appears, and each pairing that matters: pallas and cudnn with both layer layouts and
# every remat policy; both dtypes with the fused kernels and with xla; every mesh.
CASES = dict([
    case("gpt2", "bfloat16", "pallas", "unrolled", "none", "fsdp8"),
    case("gpt2", "bfloat16", "pallas", "scanned", "full", "1dev"),
    case("gpt2", "float32", "pallas", "unrolled", "dots", "data8"),
    case("gpt2", "bfloat16", "xla", "unrolled", "none", "data8"),
    case("gpt2", "float32", "xla", "scanned", "none", "fsdp4xtensor2"),
    case("gpt2", "bfloat16", "auto", "unrolled", "none", "1dev"),
    case("gpt2", "float32", "auto", "unrolled", "none", "1dev"),
    case("gpt2", "bfloat16", "pallas", "unrolled", "none", "1dev", "model.block_size=96"),  # padded to 128
    case("gpt2", "bfloat16", "pallas", "unrolled", "none", "data8", "train.grad_accum=2"),
    case("modern", "bfloat16", "pallas", "scanned", "full", "fsdp4xtensor2"),
    case("modern", "bfloat16", "pallas", "unrolled", "dots", "fsdp8"),
    case("modern", "bfloat16", "cudnn", "scanned", "full", "fsdp8"),
    case("modern", "bfloat16", "cudnn", "unrolled", "dots", "1dev"),
    case("modern", "float32", "xla", "unrolled", "full", "fsdp8"),
    case("modern", "bfloat16", "xla", "scanned", "dots", "1dev"),
    # SFT's packed rows (segment ids, restarting positions, a loss mask) and DPO's pairs
    case("gpt2", "bfloat16", "pallas", "unrolled", "none", "fsdp8", *PACKED),
    case("modern", "bfloat16", "pallas", "scanned", "full", "1dev", *PACKED, "model.block_size=96"),
    case("modern", "bfloat16", "xla", "unrolled", "none", "data8", *PACKED),
    case("gpt2", "bfloat16", "cudnn", "unrolled", "none", "fsdp8", "data.source=preferences", "data.path=p.jsonl"),
    case("modern", "bfloat16", "auto", "unrolled", "none", "data8", "data.document_mask=true"),  # auto: pallas
    # the speedrun's recipe options: Muon's Newton-Schulz on sharded matrices, soft-capped logits, z-loss
    case("modern", "bfloat16", "cudnn", "scanned", "none", "fsdp4xtensor2", "optim.name=muon",
         "model.logit_softcap=30", "train.z_loss=0.0001", "model.zero_init_out=true"),
])
# The same steps compiled for the 8 CPU devices: XLA's SPMD partitioner (the same pass as on a GPU) inserts the
# collectives each mesh implies. xla attention, since Triton kernels compile only for a GPU.
COLLECTIVES = {f"collectives:{mesh}": case("gpt2", "float32", "xla", "unrolled", "none", mesh)[1] for mesh in MESHES}


@pytest.fixture(scope="module")
def lowered():
    result = subprocess.run([sys.executable, "tests/scripts/lower_for_cuda.py", json.dumps(CASES | COLLECTIVES)],
                            capture_output=True, text=True, cwd=REPO, timeout=900,
                            env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
                                 "PJRT_NPROC": "16"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])


@pytest.mark.parametrize("name", CASES)
def test_the_cuda_program_keeps_what_the_config_promises(lowered, name):
    result = lowered[name]
    assert "error" not in result
    assert result["broken"] == []
    assert result["donated"] == result["state_arrays"]


def test_kernels_are_where_they_are_asked_for(lowered):
    unrolled = lowered["gpt2-bfloat16-pallas-unrolled-remat_none-fsdp8"]
    assert unrolled["kernels"] == {"mha_forward": 2, "mha_preprocess_backward": 2, "mha_backward": 2}  # per layer
    assert lowered["gpt2-bfloat16-pallas-unrolled-remat_none-1dev-model.block_size=96"]["kernels"]["mha_forward"] == 2
    # remat=dots keeps matmul outputs only: each layer's forward kernel runs again in the backward pass.
    assert lowered["modern-bfloat16-cudnn-unrolled-remat_dots-1dev"]["kernels"] == {
        "__cudnn$fmhaSoftmax": 4, "__cudnn$fmhaSoftmaxBackward": 2}
    for name in ("gpt2-bfloat16-xla-unrolled-remat_none-data8", "gpt2-float32-auto-unrolled-remat_none-1dev"):
        assert lowered[name]["kernels"] == {} and lowered[name]["score_matrices"], name


def test_auto_is_cudnn_for_half_precision_on_a_gpu(lowered):
    assert lowered["gpt2-bfloat16-auto-unrolled-remat_none-1dev"]["attention"] == "cudnn"
    assert lowered["gpt2-float32-auto-unrolled-remat_none-1dev"]["attention"] == "xla"
    with target_backend("gpu"):
        assert resolve_attention("auto", "float16") == "cudnn"
    assert resolve_attention("auto", "bfloat16") == "xla"  # this machine


def test_bf16_matmuls_take_bf16_and_the_scores_accumulate_in_f32(lowered):
    assert set(lowered["gpt2-bfloat16-xla-unrolled-remat_none-data8"]["dots"]) == {"bf16/bf16/bf16", "bf16/bf16/f32"}
    assert set(lowered["gpt2-bfloat16-pallas-unrolled-remat_none-fsdp8"]["dots"]) == {"bf16/bf16/bf16"}
    assert set(lowered["gpt2-float32-xla-scanned-remat_none-fsdp4xtensor2"]["dots"]) == {"f32/f32/f32"}


def test_each_mesh_gets_the_collectives_its_sharding_implies(lowered):
    ops = {mesh: lowered[f"collectives:{mesh}"]["collectives"] for mesh in MESHES}
    assert ops["1dev"] == {}
    assert ops["data8"].get("all-reduce") and not ops["data8"].get("all-gather")  # gradients summed, params whole
    assert ops["fsdp8"].get("all-gather")  # parameters gathered for use
    assert ops["fsdp4xtensor2"].get("all-gather") and ops["fsdp4xtensor2"].get("all-reduce")


def test_packed_rows_give_the_pallas_kernel_segment_ids(lowered):
    packed = lowered["gpt2-bfloat16-pallas-unrolled-remat_none-fsdp8-data.source=chat-data.path=sft.jsonl"]
    assert packed["kernels"] == {"mha_forward": 2, "mha_preprocess_backward": 2, "mha_backward": 2}
    assert packed["broken"] == []  # which includes: every forward and backward call takes the segment ids
    masked = lowered["modern-bfloat16-auto-unrolled-remat_none-data8-data.document_mask=true"]
    assert masked["attention"] == "pallas" and masked["broken"] == []
    dpo = lowered["gpt2-bfloat16-cudnn-unrolled-remat_none-fsdp8-data.source=preferences-data.path=p.jsonl"]
    assert dpo["kernels"] == {"CustomSPMDPartitioning/2": 2, "CustomSPMDPartitioning/3": 2}  # pairs are not packed


def test_the_speedrun_options_lower_for_cuda_on_a_mesh(lowered):
    muon = lowered["modern-bfloat16-cudnn-scanned-remat_none-fsdp4xtensor2-optim.name=muon-model.logit_softcap=30-"
                   "train.z_loss=0.0001-model.zero_init_out=true"]
    assert muon["broken"] == [] and muon["kernels"] == {"CustomSPMDPartitioning/2": 1, "CustomSPMDPartitioning/3": 1}
    # bf16 matmuls for the model; f32 ones only for Muon's Newton-Schulz: 3 for each of qkv, out, up, gate, down
    assert muon["dots"]["f32/f32/f32"] == 15 and set(muon["dots"]) == {"bf16/bf16/bf16", "f32/f32/f32"}


def test_packed_rows_with_cudnn_are_refused_before_lowering():
    cfg = load_config(None, SMALL + [*PACKED, "model.dtype=bfloat16", "model.attention=cudnn"])
    with pytest.raises(ConfigError, match="segment ids"):
        lower_train_step(cfg)


def test_a_program_that_breaks_a_promise_is_caught(monkeypatch):
    """The checks above can fail: each wrong program here is reported."""
    cfg = load_config(None, SMALL + ["model.dtype=bfloat16", "model.attention=xla"])
    xla = lower_train_step(cfg)
    assert broken_promises(xla) == []
    # An xla program passed off as pallas: no Triton kernel, and XLA builds the score tensors.
    wrong = broken_promises(dataclasses.replace(xla, attention="pallas"))
    assert any("expected 2 mha_forward" in line for line in wrong) and any("[T, T]" in line for line in wrong)
    # The scores' float32 cotangent left to flow into the backward matmuls: they run in float32.
    monkeypatch.setattr(attention, "_scores", lambda q, k: attention.jnp.einsum(
        "bkgtd,bksd->bkgts", q, k, preferred_element_type=attention.jnp.float32))
    assert any("not bf16" in line for line in broken_promises(lower_train_step(cfg)))
    # A step that does not donate the state.
    assert any("donation" in line for line in broken_promises(dataclasses.replace(xla, state_arrays=99)))
    # Packed rows whose segment ids never reach the Pallas kernel.
    packed = load_config(None, SMALL + [*PACKED, "model.dtype=bfloat16", "model.attention=pallas"])
    assert broken_promises(lower_train_step(packed)) == []
    kernel = attention.KERNELS["pallas"]
    monkeypatch.setitem(attention.KERNELS, "pallas", lambda q, k, v, segment_ids=None: kernel(q, k, v))
    assert any("segment ids" in line for line in broken_promises(lower_train_step(packed)))
