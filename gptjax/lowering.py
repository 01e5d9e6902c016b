"""A train step lowered for a platform this machine may not have (a CUDA GPU, from a CPU-only jaxlib), and what
the lowered program holds: the proof, without a GPU, that a config runs the kernels, dtypes and donation it
promises.

    lowered = lower_train_step(cfg, platform="cuda")   # built as the Trainer builds it; nothing runs
    lowered.kernels()          # {'mha_forward': 4, 'mha_backward': 4, ...}: Triton (Pallas) kernels and cuDNN calls
    lowered.dots()             # Counter of (lhs dtype, rhs dtype, result dtype) over every matmul
    lowered.donated()          # state arrays whose buffers the step reuses for its outputs
    lowered.score_matrices()   # [.., T, T] attention score tensors that XLA itself would build
    broken_promises(lowered)   # what the config promises that the program does not do ([] when all hold)

The program is the StableHLO that jit lowers for the platform (what jax.export would serialize), before
partitioning: shardings are annotations on it, and the collectives they imply are chosen later by XLA's SPMD
partitioner. `collectives(lowered)` compiles the same step for this machine's devices to count those
(the partitioner is the same pass on every platform).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import ml_collections

from gptjax import sharding
from gptjax.attention import check_packing, resolve_attention, target_backend
from gptjax.config import uses_segments
from gptjax.data.packing import batch_shapes
from gptjax.model import ModelConfig
from gptjax.optim import optimizer_labels
from gptjax.step import next_token_loss
from gptjax.trainer import Program, build_program

BACKENDS = {"cuda": "gpu", "rocm": "gpu", "cpu": "cpu", "tpu": "tpu"}  # export's platform -> JAX's backend name

_FUNC = re.compile(r"^  func\.func (?:public|private) @([\w$.]+)\(", re.M)
_CALL = re.compile(r"call @([\w$.]+)\(")
_TRITON_NAME = re.compile(r'name = "([\w$.]+)"')
_CUSTOM = re.compile(r"custom_call @([\w$.]+)\(")
_DOT = re.compile(r"stablehlo\.dot_general .*?: \(tensor<([^>]*)>, tensor<([^>]*)>\) -> tensor<([^>]*)>")


@dataclasses.dataclass
class Lowered:
    cfg: ml_collections.ConfigDict
    model_config: ModelConfig
    program: Program
    attention: str  # the kernel model.attention resolved to on the target
    module: str  # the exported StableHLO, as text
    state_arrays: int  # leaves of the train state: the step's first inputs

    def _functions(self) -> dict[str, str]:
        starts = [(m.group(1), m.start()) for m in _FUNC.finditer(self.module)]
        ends = [start for _, start in starts[1:]] + [len(self.module)]
        return {name: self.module[start:end] for (name, start), end in zip(starts, ends)}

    def kernels(self) -> collections.Counter:
        """Fused kernels by name, counted once per call site reached from the step (a loop body counts once):
        Triton kernels by their kernel name (mha_forward, ...), other custom calls by their target."""
        functions = self._functions()
        own = {}
        for name, body in functions.items():
            found = collections.Counter()
            for line in body.splitlines():
                if "custom_call @__gpu$xla.gpu.triton" in line:
                    found[(_TRITON_NAME.search(line) or _CUSTOM.search(line)).group(1)] += 1
                elif "custom_call @CustomSPMDPartitioning" in line:
                    # A call whose sharding its own Python rule decides (cuDNN attention on several devices):
                    # the real call is made when the program is partitioned. Named by its result count.
                    results = re.match(r"\s*%[\w.]+(?::(\d+))? =", line)
                    found[f"CustomSPMDPartitioning/{results and results.group(1) or 1}"] += 1
                elif match := _CUSTOM.search(line):
                    found[match.group(1)] += 1
            own[name] = (found, collections.Counter(_CALL.findall(body)))
        totals: dict[str, collections.Counter] = {}

        def total(name):  # the call graph has no recursion
            if name not in totals:
                found, calls = own.get(name, (collections.Counter(), collections.Counter()))
                result = collections.Counter(found)
                for callee, times in calls.items():
                    for kernel, n in total(callee).items():
                        result[kernel] += n * times
                totals[name] = result
            return totals[name]

        return +total("main")

    def kernel_operands(self, kernel: str) -> list[list[str]]:
        """The operand types ('2x64x4x32xbf16', ...) of each call of a Triton kernel, as written in the module."""
        calls = []
        for line in self.module.splitlines():
            if "custom_call @__gpu$xla.gpu.triton" in line and f'name = "{kernel}"' in line:
                signature = line[line.rindex(" : (") + 4:line.rindex(") ->")]
                calls.append(re.findall(r"tensor<([^>]*)>", signature))
        return calls

    def dots(self) -> collections.Counter:
        """(lhs, rhs, result) element types of every dot_general, e.g. ('bf16', 'bf16', 'f32')."""
        def dtype(tensor: str) -> str:
            return tensor.split("x")[-1]

        return collections.Counter((dtype(a), dtype(b), dtype(c)) for a, b, c in _DOT.findall(self.module))

    def donated(self) -> int:
        """How many of the step's inputs are aliased to an output (their buffers reused in place)."""
        main = self._functions()["main"]
        signature = main[:main.index("->")]
        arguments = re.split(r"%arg\d+: ", signature)[1:]
        return sum("tf.aliasing_output" in a or "jax.buffer_donor" in a for a in arguments)

    def score_matrices(self) -> list[str]:
        """Matmul results of shape [B, heads..., T, T] (T: block_size): attention scores built by XLA, which the
        fused kernels keep in on-chip tiles instead. (The xla kernel splits sequences of 2 * QUERY_BLOCK or more
        into blocks of queries, which this does not see.)"""
        T = self.model_config.block_size
        products = {c for _, _, c in _DOT.findall(self.module)}  # q.k products, not projections that happen to fit
        return sorted(t for t in products if re.fullmatch(rf"(?:\d+x){{2,}}{T}x{T}x\w+", t))


def abstract_batch(cfg: ml_collections.ConfigDict, program: Program, batch_size: int | None = None):
    """The batch the step takes (its loader's shapes and dtypes), as ShapeDtypeStructs on the batch sharding."""
    batch_size = batch_size or cfg.train.batch_size
    block = program.setup.model_config.block_size
    shapes = batch_shapes(cfg.data.source, batch_size, block)
    if shapes is None:
        return jax.ShapeDtypeStruct((batch_size, block + 1), jnp.int32, sharding=program.batch_sharding)
    return {k: jax.ShapeDtypeStruct(shape, jnp.dtype(dtype), sharding=program.batch_sharding)
            for k, (shape, dtype) in shapes.items()}


def lower_train_step(cfg: ml_collections.ConfigDict, vocab_size: int = 256, platform: str = "cuda",
                     devices: list | None = None) -> Lowered:
    """The train step that Trainer would build from cfg, lowered for `platform` ('cuda', 'rocm', 'tpu', 'cpu')
    with this machine's devices standing in for the target's (devices: the mesh's, default all). Attention
    kernels are resolved as on the target ('auto' picks cudnn for a bf16 model on a GPU)."""
    with target_backend(BACKENDS[platform]):
        if uses_segments(cfg):  # as the Trainer refuses cuDNN, or picks a kernel for auto
            cfg = cfg.copy_and_resolve_references()
            cfg.model.attention = check_packing(cfg.model.attention, cfg.model.dtype)
        model_config = ModelConfig.from_config(cfg.model, vocab_size)
        mesh = sharding.make_mesh(cfg.mesh, devices)
        # document_mask: any id stands in for the end-of-text token (the program does not depend on which)
        objective = functools.partial(next_token_loss, eot_id=0) if cfg.data.document_mask else None
        program = build_program(cfg, model_config, mesh, objective)
        attention = resolve_attention(model_config.attention, model_config.dtype)
    target = program.setup.target()
    batch = abstract_batch(cfg, program)
    # Lowered, not exported: jax.export would also serialize the program, which it cannot do for cuDNN attention
    # on a mesh of several devices (its custom partitioning is a Python callback).
    lowered = program.train_step.trace(target, batch).lower(lowering_platforms=(platform,))
    return Lowered(cfg, model_config, program, attention, lowered.as_text(), len(jax.tree.leaves(target)))


def broken_promises(lowered: Lowered) -> list[str]:
    """Each thing the config promises about the program that the lowered module does not show."""
    mc, broken = lowered.model_config, []
    kernels, layers = lowered.kernels(), mc.num_layers
    impl = lowered.attention
    per_layer = 1 if mc.scan_layers else layers  # a scanned stack holds one layer's program, run in a loop
    fused = {"pallas": ("mha_forward", "mha_backward"),
             "cudnn": ("__cudnn$fmhaSoftmax", "__cudnn$fmhaSoftmaxBackward")}
    if lowered.program.setup.mesh.size > 1:  # cuDNN's custom partitioning: forward (out, stats), backward (dq, dk, dv)
        fused["cudnn"] = ("CustomSPMDPartitioning/2", "CustomSPMDPartitioning/3")
    for name, (forward, backward) in fused.items():
        if name == impl:
            # The forward may run twice per layer: once, and again in the backward pass under remat.
            if kernels[forward] not in (per_layer, 2 * per_layer) or kernels[backward] != per_layer:
                broken.append(f"attention {impl}: expected {per_layer} {forward} (or {2 * per_layer} with remat) "
                              f"and {per_layer} {backward}, found {kernels[forward]} and {kernels[backward]}")
        elif kernels[forward] or kernels[backward]:
            broken.append(f"attention {impl}: found {name} kernels {dict(kernels)}")
    if uses_segments(lowered.cfg) and impl == "pallas":
        # packed rows, document masks: the kernel's own segment masking, an int32 [batch, T] operand of every call
        for kernel in fused["pallas"]:
            calls = lowered.kernel_operands(kernel)
            if not calls or not all(any(re.fullmatch(r"\d+x\d+xi32", t) for t in call) for call in calls):
                broken.append(f"packed rows: {kernel} is not given the segment ids")
    scores = lowered.score_matrices()
    if impl in fused and scores:
        broken.append(f"attention {impl}: XLA builds [T, T] score tensors {scores}")
    if impl == "xla" and not scores:
        broken.append("attention xla: no [T, T] score tensor found (is attention in the program?)")
    dots = lowered.dots()
    if mc.dtype == "bfloat16":
        wide = {d: n for d, n in dots.items() if d[0] != "bf16" or d[1] != "bf16"}
        if lowered.cfg.optim.name == "muon":
            # The optimizer's own matmuls: Newton-Schulz iterates on the f32 momentum of every matrix Muon
            # updates, three matmuls an iteration, in one loop (the model's matmuls stay bf16)
            matrices = sum(label == "muon" for label in
                           jax.tree.leaves(optimizer_labels(lowered.program.setup.abstract_state.params)))
            if (found := wide.pop(("f32", "f32", "f32"), 0)) != 3 * matrices:
                broken.append(f"optim.name=muon: expected {3 * matrices} f32 matmuls (3 per Newton-Schulz "
                              f"iteration of each of the {matrices} matrices it updates), found {found}")
        if wide:
            broken.append(f"dtype bfloat16: matmuls with inputs that are not bf16: {wide}")
        if impl == "xla" and not dots[("bf16", "bf16", "f32")]:
            broken.append("attention xla in bf16: the scores are not accumulated in f32")
    elif mc.dtype == "float32" and (narrow := {d: n for d, n in dots.items() if d != ("f32", "f32", "f32")}):
        broken.append(f"dtype float32: matmuls not in f32: {narrow}")
    if lowered.donated() != lowered.state_arrays:
        broken.append(f"state donation: {lowered.donated()} of {lowered.state_arrays} state arrays are donated")
    return broken


def collectives(lowered: Lowered) -> collections.Counter:
    """Collective operations in the lowered config's step compiled for this machine's devices, after SPMD
    partitioning."""
    program = lowered.program
    batch = abstract_batch(lowered.cfg, program)
    text = program.train_step.lower(program.setup.target(), batch).compile().as_text()
    ops = r"all-gather|reduce-scatter|all-reduce|all-to-all|collective-permute"
    return collections.Counter(re.findall(rf"\b({ops})(?:-start)?\(", text))
