"""Building a run's model and training state from its config, and loading a finished run for use.

The state is created by one jitted function, so its arrays are born on the device (and, once meshes arrive, born
sharded) instead of being built on the host first; a run being loaded is restored straight into abstract shapes.
"""

from __future__ import annotations

import dataclasses
import math
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

    def bytes_per_device(self) -> int:
        """Bytes of the training state (parameters, optimizer moments, step) that each device holds: each array's
        shard under its sharding, so fsdp and tensor parallelism show up as a smaller number."""
        def shard_bytes(sharding, subtree):  # as in target(): one sharding may cover a subtree of the state
            return sum(math.prod(sharding.shard_shape(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(subtree))

        return sum(jax.tree.leaves(jax.tree.map(shard_bytes, self.shardings, self.abstract_state)))

    def __repr__(self) -> str:
        params = sum(p.size for p in jax.tree.leaves(self.abstract_state.params))
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
    run_dir: Path | None = None  # where it was loaded from (load_run sets it); None for a run built in memory

    @property
    def model(self) -> GPT:
        return nnx.merge(self.graphdef, self.params)

    @property
    def num_params(self) -> int:
        return sum(p.size for p in jax.tree.leaves(self.params))

    def sample(self, prompt: str = "", max_new_tokens: int = 200, *, temperature: float = 0.8, top_k: int = 200,
               top_p: float = 1.0, seed: int = 0, stop: list[str] | str | None = None) -> str:
        """The prompt followed by one sampled continuation (cut before the first `stop` string), as
        `python -m gptjax.sample --prompt ...` prints it. temperature=0 decodes greedily. An empty prompt starts
        from end-of-text (or a newline for character models)."""
        from gptjax.sample import cut_at_stop, generate_batch, prompt_ids

        stop = [stop] if isinstance(stop, str) else list(stop or [])
        [row] = generate_batch(self.graphdef, self.params, [prompt_ids(self.tokenizer, prompt)],
                               block_size=self.model_config.block_size, max_new_tokens=max_new_tokens,
                               temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop_strings=stop,
                               tokenizer=self.tokenizer, vocab_size=self.tokenizer.vocab_size)
        return prompt + cut_at_stop(self.tokenizer.decode(row.tolist()), stop)

    def evaluate(self, task: str = "val_loss", data=None, **kwargs) -> dict:
        """gptjax.evaluate.evaluate_task on this run; val_loss defaults to the run's own validation split."""
        from gptjax.evaluate import evaluate_task

        kwargs.setdefault("run_dir", self.run_dir)
        return evaluate_task(self, task, data, **kwargs)

    def __repr__(self) -> str:
        # Not the generated repr: that would print every parameter array and the whole config.
        mc = self.model_config
        where = f"{str(self.run_dir)!r}, " if self.run_dir is not None else ""
        heads = f"{mc.num_heads}" + (f" ({mc.kv_heads} kv)" if mc.kv_heads != mc.num_heads else "")
        return (f"Run({where}step {self.step}, {self.num_params:,} parameters: {mc.num_layers} layers, {heads} heads, "
                f"d_model {mc.d_model}, block {mc.block_size}, vocab {mc.vocab_size}; tokenizer {self.tokenizer!r})")


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
    return Run(cfg, model_config, tokenizer, built.graphdef, state.params, int(state.step), run_dir)
