"""Everything about a run's training state but its values: the model's structure, the optimizer, the state's
shapes and where each part lives on the mesh (Setup); and a fresh state, created directly in its shards.

The state is created by one jitted function, so its arrays are born on the device, already sharded, instead of
being built on the host first; a checkpoint is restored straight into Setup.target()'s abstract shapes.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from gptjax.model import GPT, ModelConfig, num_params
from gptjax.optim import build_optimizer, lr_schedule
from gptjax.sharding import bytes_per_device, make_mesh, state_shardings
from gptjax.step import TrainState


@dataclasses.dataclass
class Setup:
    model_config: ModelConfig
    graphdef: nnx.GraphDef
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    abstract_state: TrainState  # shapes and dtypes only
    mesh: jax.sharding.Mesh
    shardings: TrainState  # where each part of the state lives on the mesh

    def target(self) -> TrainState:
        """The state as ShapeDtypeStructs carrying this mesh's shardings: what a checkpoint is restored into, so a
        checkpoint saved on any mesh lands directly in this one's shards."""
        def with_sharding(sharding, subtree):
            return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), subtree)

        return jax.tree.map(with_sharding, self.shardings, self.abstract_state)

    def init(self, seed: int) -> TrainState:
        """A fresh state: GPT-2 initialization from `seed`, zero optimizer moments, step 0; each array is created
        directly in its shards, so no device ever holds the whole model."""
        init = jax.jit(partial(_init_state, self.model_config, self.tx), out_shardings=self.shardings)
        return init(jax.random.key(seed))

    def bytes_per_device(self) -> int:
        """Bytes of the training state (parameters, optimizer moments, step) that each device holds: each array's
        shard under its sharding, so fsdp and tensor parallelism show up as a smaller number."""
        return bytes_per_device(self.abstract_state, self.shardings)

    def __repr__(self) -> str:
        params = num_params(self.abstract_state.params)
        mesh = " x ".join(f"{name} {size}" for name, size in self.mesh.shape.items())
        devices = f"{self.mesh.size} device" + ("s" if self.mesh.size != 1 else "")
        return (f"Setup({params:,} parameters; mesh {mesh} ({devices}); state "
                f"{_human_bytes(self.bytes_per_device())} per device)")


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024


def _init_state(model_config: ModelConfig, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    params = nnx.state(GPT(model_config, rngs=nnx.Rngs(key)), nnx.Param)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def setup(cfg: ml_collections.ConfigDict, model_config: ModelConfig, mesh: jax.sharding.Mesh | None = None) -> Setup:
    """Everything about the state but its values. mesh: default from cfg.mesh over all devices."""
    mesh = mesh if mesh is not None else make_mesh(cfg.mesh)
    abstract_model = nnx.eval_shape(lambda: GPT(model_config, rngs=nnx.Rngs(0)))
    graphdef, abstract_params = nnx.split(abstract_model, nnx.Param)
    tx = build_optimizer(cfg.optim, cfg.train.steps, abstract_params)
    abstract_state = jax.eval_shape(
        lambda: TrainState(step=jnp.zeros((), jnp.int32), params=abstract_params, opt_state=tx.init(abstract_params)))
    return Setup(model_config, graphdef, tx, lr_schedule(cfg.optim, cfg.train.steps), abstract_state, mesh,
                 state_shardings(abstract_state, mesh))
