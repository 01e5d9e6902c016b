"""Building a run's model and training state from its config, and loading a finished run for use.

The state is created by one jitted function, so its arrays are born on the device (and, once meshes arrive, born
sharded) instead of being built on the host first; a run being loaded is restored straight into abstract shapes.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from gptjax.checkpoint import Checkpoints
from gptjax.config import ConfigError, load_config
from gptjax.model import GPT, ModelConfig
from gptjax.optim import build_optimizer, lr_schedule
from gptjax.sharding import make_mesh, state_shardings
from gptjax.step import TrainState
from gptjax.tokenizer import Tokenizer, load_tokenizer


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


def _fit_mesh(mesh_cfg) -> dict:
    """The run's mesh if it fits the devices here; otherwise (a run trained on 8 devices, read on 1) data
    parallelism over whatever devices there are: reading weights works on any mesh."""
    sizes = {axis: mesh_cfg[axis] for axis in ("data", "fsdp", "tensor")}
    try:
        make_mesh(sizes)
        return sizes
    except ConfigError:
        return dict(data=-1, fsdp=1, tensor=1)


@dataclasses.dataclass
class Run:
    """A trained run, ready to sample from or evaluate."""

    config: ml_collections.ConfigDict
    model_config: ModelConfig
    tokenizer: Tokenizer
    graphdef: nnx.GraphDef
    params: nnx.State
    step: int

    @property
    def model(self) -> GPT:
        return nnx.merge(self.graphdef, self.params)


def load_run(run_dir: Path, step: int | None = None, *, best: bool = False, mesh=None) -> Run:
    """A trained run's weights (latest checkpoint, or `step`, or with best=True the lowest validation loss), placed
    on `mesh` (default: every device, as the run's mesh config says), whatever mesh it was trained on."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: is it a run directory written by gptjax.train?")
    cfg = load_config(config_path)
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    model_config = ModelConfig.from_config(cfg.model, tokenizer.vocab_size)
    built = setup(cfg, model_config, mesh if mesh is not None else make_mesh(_fit_mesh(cfg.mesh)))
    if not (run_dir / "checkpoints").is_dir():
        raise FileNotFoundError(f"{run_dir}/checkpoints holds no checkpoint yet: train (or resume) the run first")
    checkpoints = Checkpoints(run_dir, read_only=True)
    try:
        state, _ = checkpoints.restore(built.target(), step, best=best)
    finally:
        checkpoints.close()
    return Run(cfg, model_config, tokenizer, built.graphdef, state.params, int(state.step))
