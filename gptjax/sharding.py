"""Where arrays live: the device mesh, and the one table that maps the model's logical axes to mesh axes.

The model names the axes of every parameter ('embed', 'heads', 'mlp', 'vocab', ...) and never mentions devices;
this module alone decides placement. Mesh axes:
    data    batch split, parameters replicated (plain data parallelism)
    fsdp    batch split too, and parameters and optimizer state split along 'embed' (fully sharded data parallel)
    tensor  attention heads and MLP width split (tensor parallelism)
"""

from __future__ import annotations

import math

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from gptjax.config import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axes it is split over (None: replicated). The batch goes over every data-parallel axis.
RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "embed": "fsdp",
    "heads": "tensor",
    "mlp": "tensor",
    "vocab": "tensor",
    "layers": None,  # the stacked-blocks axis of scan_layers: every device holds every layer's slice
    "position": None,
    "norm": None,
}


def make_mesh(mesh_cfg, devices: list | None = None) -> jax.sharding.Mesh:
    """A mesh of shape (data, fsdp, tensor) from config; -1 in one axis takes the devices the others leave."""
    devices = devices if devices is not None else jax.devices()
    n = len(devices)
    sizes = [mesh_cfg[axis] for axis in MESH_AXES]
    if sum(s == -1 for s in sizes) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"mesh {dict(zip(MESH_AXES, sizes))}: sizes must be positive, with at most one -1 "
                          "(the rest of the devices)")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n % known:
            raise ConfigError(f"mesh {dict(zip(MESH_AXES, sizes))} does not divide the {n} devices here; "
                              f"e.g. mesh.data={n} mesh.fsdp=1 mesh.tensor=1")
        sizes[sizes.index(-1)] = n // known
    if math.prod(sizes) != n:
        raise ConfigError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, but there are {n}; "
                          f"e.g. mesh.data=-1 mesh.fsdp={sizes[1] if n % sizes[1] == 0 else 1} mesh.tensor=1")
    return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                         devices=devices)


def partition_spec(names: tuple[str | None, ...], shape: tuple[int, ...], mesh) -> PartitionSpec:
    """The PartitionSpec for an array with these logical axis names. A dimension that the mesh axes do not divide
    evenly is replicated instead (a 65-symbol vocabulary on 2 tensor shards, say)."""
    spec = []
    for name, dim in zip(names, shape):
        axes = RULES.get(name) if name else None
        if axes is not None:
            axes = (axes,) if isinstance(axes, str) else axes
            axes = tuple(a for a in axes if mesh.shape[a] > 1) or None
        if axes is not None and dim % math.prod(mesh.shape[a] for a in axes):
            axes = None
        spec.append(axes[0] if axes is not None and len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def state_shardings(abstract_state, mesh):
    """NamedShardings for a whole train state: parameters and the optimizer moments that mirror them follow the
    logical axes on their Variables; everything else (step counters) is replicated."""

    def sharding(leaf):
        if isinstance(leaf, nnx.Variable) and isinstance(leaf.get_raw_value(), optax.MaskedNode):
            return leaf  # a parameter this part of the optimizer does not update (optim.name=muon): no arrays
        if isinstance(leaf, nnx.Variable):
            names = tuple(leaf.get_metadata().get("out_sharding") or ())
            shape = tuple(leaf.shape)
            names = names if len(names) == len(shape) else (None,) * len(shape)
            return NamedSharding(mesh, partition_spec(names, shape, mesh))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree.map(sharding, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def check_batch_split(batch_size: int, grad_accum: int, mesh) -> None:
    """Each micro-batch must split evenly over the data-parallel devices (mesh.data x mesh.fsdp)."""
    data_parallel = mesh.shape["data"] * mesh.shape["fsdp"]
    if (batch_size // grad_accum) % data_parallel:
        raise ConfigError(f"train.batch_size={batch_size} (per micro-batch: {batch_size // grad_accum}) does not "
                          f"split over the {data_parallel} data-parallel devices (mesh.data x mesh.fsdp); use a "
                          f"multiple of {data_parallel * grad_accum}")


def batch_sharding(mesh) -> NamedSharding:
    """Batches: rows split over every data-parallel axis, whatever else an array holds ([batch, time] tokens,
    [batch] per-row scores), so one sharding serves every leaf of a batch that is a dict of arrays."""
    return NamedSharding(mesh, partition_spec(("batch",), (0,), mesh))


def bytes_per_device(abstract_state, shardings) -> int:
    """Bytes of the train state held by one device (the largest share)."""
    total = 0
    leaves = jax.tree.leaves(abstract_state)
    for leaf, sharding in zip(leaves, jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))):
        shard = sharding.shard_shape(tuple(leaf.shape)) if leaf.shape else ()
        total += int(np.prod(shard, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
    return total
