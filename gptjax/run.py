"""A finished run, loaded for use: its config, tokenizer and weights, on whatever devices this machine has.

    run = load_run("runs/baby")               # the newest checkpoint; step=N or best=True for another
    run.model(tokens)                         # logits

Sampling (gptjax.sample), evaluation (gptjax.evaluate) and Hugging Face export (gptjax.hf) take a Run; a Run knows
nothing of them. The notebook API (`gptjax.load_run`) returns one with .sample() and .evaluate() added.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ml_collections
from flax import nnx

from gptjax.checkpoint import CheckpointError, Checkpoints
from gptjax.config import ConfigError, load_config
from gptjax.errors import GptjaxError
from gptjax.model import GPT, ModelConfig, num_params
from gptjax.rundir import RunDir
from gptjax.sharding import make_mesh
from gptjax.state import setup
from gptjax.tokenizer import Tokenizer, load_tokenizer


class RunError(GptjaxError):
    """A directory that cannot be opened as a trained run: not a run directory, or no checkpoint yet."""


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
        return num_params(self.params)

    def __repr__(self) -> str:
        # Not the generated repr: that would print every parameter array and the whole config.
        mc = self.model_config
        where = f"{str(self.run_dir)!r}, " if self.run_dir is not None else ""
        heads = f"{mc.num_heads}" + (f" ({mc.kv_heads} kv)" if mc.kv_heads != mc.num_heads else "")
        return (f"Run({where}step {self.step}, {self.num_params:,} parameters: {mc.num_layers} layers, {heads} heads, "
                f"d_model {mc.d_model}, block {mc.block_size}, vocab {mc.vocab_size}; tokenizer {self.tokenizer!r})")


def _fit_mesh(mesh_cfg) -> dict:
    """The run's mesh if it fits the devices here; otherwise (a run trained on 8 devices, read on 1) data
    parallelism over whatever devices there are: reading weights works on any mesh."""
    sizes = {axis: mesh_cfg[axis] for axis in ("data", "fsdp", "tensor")}
    try:
        make_mesh(sizes)
        return sizes
    except ConfigError:
        return dict(data=-1, fsdp=1, tensor=1)


def load_run(run_dir: str | Path, step: int | None = None, *, best: bool = False, mesh=None) -> Run:
    """A trained run's weights (latest checkpoint, or `step`, or with best=True the lowest validation loss), placed
    on `mesh` (default: every device, as the run's mesh config says), whatever mesh it was trained on."""
    run_dir = RunDir(run_dir)
    if not run_dir.config.exists():
        raise RunError(f"{run_dir} has no config.yaml: is it a run directory written by gptjax.train?")
    cfg = load_config(run_dir.config)
    tokenizer = load_tokenizer(run_dir.tokenizer)
    model_config = ModelConfig.from_config(cfg.model, tokenizer.vocab_size)
    built = setup(cfg, model_config, mesh if mesh is not None else make_mesh(_fit_mesh(cfg.mesh)))
    if not run_dir.checkpoints.is_dir():
        raise RunError(f"{run_dir.checkpoints} holds no checkpoint yet: train (or resume) the run first")
    checkpoints = Checkpoints(run_dir.path, read_only=True)
    try:
        state, _ = checkpoints.restore(built.target(), step, best=best)
    except CheckpointError as e:  # reading, not training: the input is what is wrong
        raise RunError(str(e)) from None
    finally:
        checkpoints.close()
    return Run(cfg, model_config, tokenizer, built.graphdef, state.params, int(state.step), run_dir.path)
